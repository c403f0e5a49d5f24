//! What the trainer needs from a model and an optimizer, as small traits. `swerl-model`'s Llama
//! and AdamW implement them (see [`crate::llama`]); tests plug in tiny models of their own.

use std::path::Path;

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, TensorId, Var};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Sampling settings shared by every request of a generation call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Maximum completion length in tokens.
    pub max_new_tokens: usize,
    /// Softmax temperature (> 0).
    pub temperature: f64,
    /// Nucleus mass (1.0 disables).
    pub top_p: f64,
    /// Top-k (0 disables).
    pub top_k: usize,
}

/// One completion to sample.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// Prompt token ids (chat template applied).
    pub prompt: &'a [u32],
    /// Seed of this request's random stream (results must not depend on batching).
    pub seed: u64,
}

/// Why sampling stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was sampled (it is the last token of the completion).
    Eos,
    /// `max_new_tokens` was reached.
    Length,
    /// A stop string or stop token other than end-of-sequence.
    Stop,
}

impl FinishReason {
    /// The name used in logs (`eos`, `length`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Length => "length",
            Self::Stop => "stop",
        }
    }
}

/// A sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Completion token ids, including a final end-of-sequence token when one was sampled.
    pub tokens: Vec<u32>,
    /// The decoded completion (special tokens skipped).
    pub text: String,
    /// Why it stopped.
    pub finish: FinishReason,
}

/// Per-token log-probabilities and entropies of completion tokens, `(B, T)` with `T` the longest
/// completion of the batch; positions past a completion's end hold arbitrary finite values.
#[derive(Debug, Clone)]
pub struct TokenLogProbs {
    /// `log p(completion_t | prompt, completion_<t)` under `softmax(logits / temperature)`.
    pub logp: Tensor,
    /// Entropy of that distribution at each completion position.
    pub entropy: Tensor,
}

/// A causal language model the trainer can sample from and differentiate.
pub trait Policy {
    /// The device its tensors live on.
    fn device(&self) -> &Device;

    /// Samples one completion per request.
    fn generate(
        &mut self,
        requests: &[GenerationRequest<'_>],
        params: &SamplingParams,
    ) -> Result<Vec<Generation>>;

    /// Log-probs and entropies of each `(prompt, completion)` pair's completion tokens, with the
    /// logits divided by `temperature`, without gradients (implementations may use fused
    /// kernels): the sampling-time ("old") and reference log-probs.
    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64) -> Result<TokenLogProbs>;

    /// The training forward pass over the same inputs: log-probs the loss is built from, and a
    /// backward pass that adds every parameter's gradient to a [`Gradients`].
    fn train_forward<'a>(
        &'a self,
        sequences: &[(&[u32], &[u32])],
        temperature: f64,
    ) -> Result<Box<dyn TrainPass + 'a>>;

    /// The trainable parameters (f32 master weights), in a stable order.
    fn parameters(&self) -> Vec<Var>;

    /// Writes the model where users load it from (Hugging Face layout for real models). Must
    /// keep full precision: [`Policy::load_weights`] restores the exact weights on resume.
    fn save(&self, dir: &Path) -> Result<()>;

    /// Loads weights written by [`Policy::save`] into this model's parameters.
    fn load_weights(&mut self, dir: &Path) -> Result<()>;

    /// A frozen copy of the current weights (the reference policy for the KL term).
    fn frozen_copy(&self) -> Result<Self>
    where
        Self: Sized;
}

/// One training forward pass (see [`Policy::train_forward`]).
pub trait TrainPass {
    /// Per-token log-probs and entropies; the loss must be a function of these.
    fn scores(&self) -> &TokenLogProbs;

    /// Back-propagates the scalar `loss` and adds the parameters' gradients to `grads`.
    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()>;
}

/// A [`TrainPass`] for policies whose log-probs are an ordinary candle autograd graph of their
/// parameters: `backward` is `loss.backward()`.
#[derive(Debug)]
pub struct AutogradPass {
    /// The differentiable scores.
    pub scores: TokenLogProbs,
}

impl TrainPass for AutogradPass {
    fn scores(&self) -> &TokenLogProbs {
        &self.scores
    }

    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        let store = loss.backward()?;
        grads.add_store(&store)
    }
}

/// Gradients accumulated over micro-batches, aligned with a parameter list.
#[derive(Debug)]
pub struct Gradients {
    params: Vec<Var>,
    slots: Vec<Option<Tensor>>,
    index: HashMap<TensorId, usize>,
}

impl Gradients {
    /// Empty gradients for `params`.
    pub fn new(params: &[Var]) -> Self {
        let index = params.iter().enumerate().map(|(i, v)| (v.as_tensor().id(), i)).collect();
        Self { params: params.to_vec(), slots: vec![None; params.len()], index }
    }

    /// Adds `grad` to the gradient of `var` (ignored when `var` is not a tracked parameter).
    pub fn add(&mut self, var: &Var, grad: &Tensor) -> Result<()> {
        if let Some(&i) = self.index.get(&var.as_tensor().id()) {
            self.add_at(i, grad)?;
        }
        Ok(())
    }

    /// Adds the gradients of every tracked parameter found in a candle `GradStore`.
    pub fn add_store(&mut self, store: &GradStore) -> Result<()> {
        for i in 0..self.params.len() {
            if let Some(g) = store.get(self.params[i].as_tensor()) {
                let g = g.clone();
                self.add_at(i, &g)?;
            }
        }
        Ok(())
    }

    fn add_at(&mut self, i: usize, grad: &Tensor) -> Result<()> {
        self.slots[i] = Some(match self.slots[i].take() {
            Some(prev) => (prev + grad)?,
            None => grad.clone(),
        });
        Ok(())
    }

    /// The gradients in parameter order (zeros for parameters that got none), contiguous.
    pub fn into_tensors(self) -> Result<Vec<Tensor>> {
        self.slots
            .into_iter()
            .zip(&self.params)
            .map(|(g, p)| {
                Ok(match g {
                    Some(g) => g.contiguous()?,
                    None => p.as_tensor().zeros_like()?,
                })
            })
            .collect()
    }
}

/// The update rule. Gradients come aligned with [`Policy::parameters`], already accumulated over
/// micro-batches, summed over ranks and clipped.
pub trait Optimizer {
    /// Applies one update with learning rate `lr`.
    fn step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<()>;

    /// Saves the full state (moments, step count) to a file.
    fn save(&self, path: &Path) -> Result<()>;

    /// Restores a state written by [`Optimizer::save`].
    fn load(&mut self, path: &Path) -> Result<()>;
}
