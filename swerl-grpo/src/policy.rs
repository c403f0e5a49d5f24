//! What the trainer needs from a model and an optimizer, as small traits over `swerl-model`'s
//! types ([`GenerationRequest`], [`Completion`], [`TokenScores`], [`Gradients`]): one vocabulary
//! from the model to the trainer. `swerl-model`'s Llama and AdamW implement them (see
//! [`crate::llama`]); tests plug in tiny models of their own.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use swerl_model::{Completion, FinishReason, GenerationRequest, Gradients, StopReason, TokenScores};

use crate::error::Result;

/// A causal language model the trainer can sample from and differentiate.
pub trait Policy {
    /// The device its tensors live on.
    fn device(&self) -> &Device;

    /// Samples one completion per request (each request carries its own sampling settings and
    /// seed; results must not depend on how requests are batched), at most `max_batch`
    /// sequences decoding at once. The trainer passes a step's requests in one call, the
    /// `group_size` samples of a prompt next to each other (an engine shares their prompt), and
    /// no stop tokens of its own, so a completion that ends on a token ended on end-of-sequence.
    fn generate(&mut self, requests: &[GenerationRequest], max_batch: usize) -> Result<Vec<Completion>>;

    /// Log-probs and entropies of each `(prompt, completion)` pair's completion tokens, with the
    /// logits divided by `temperature`, without gradients (implementations may use fused
    /// kernels): the sampling-time ("old") and reference log-probs. `(B, T)` with `T` the
    /// longest completion; positions past a completion's end hold arbitrary finite values.
    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64) -> Result<TokenScores>;

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
    fn scores(&self) -> &TokenScores;

    /// Back-propagates the scalar `loss` and adds the parameters' gradients to `grads`.
    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()>;
}

/// A [`TrainPass`] for policies whose log-probs are an ordinary candle autograd graph of their
/// parameters: `backward` is `loss.backward()`.
#[derive(Debug)]
pub struct AutogradPass {
    /// The differentiable scores.
    pub scores: TokenScores,
    /// The parameters whose gradients are collected.
    pub params: Vec<Var>,
}

impl TrainPass for AutogradPass {
    fn scores(&self) -> &TokenScores {
        &self.scores
    }

    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        let store = loss.backward()?;
        grads.accumulate_store(&store, &self.params)?;
        Ok(())
    }
}

/// The update rule. Gradients come already accumulated over micro-batches, summed over ranks
/// and clipped, holding every parameter of [`Policy::parameters`].
pub trait Optimizer {
    /// Applies one update with learning rate `lr`.
    fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()>;

    /// Saves the full state (moments, step count) to a file.
    fn save(&self, path: &Path) -> Result<()>;

    /// Restores a state written by [`Optimizer::save`].
    fn load(&mut self, path: &Path) -> Result<()>;
}

/// `swerl-model`'s AdamW (f32 moments, PyTorch's formula) is the trainer's optimizer.
impl Optimizer for swerl_model::AdamW {
    fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        Ok(swerl_model::AdamW::step(self, grads, lr)?)
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(swerl_model::AdamW::save(self, path)?)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        Ok(swerl_model::AdamW::load(self, path)?)
    }
}

/// How a sampled completion ended, as logged in `completions.jsonl`: `length` (cut at
/// `max_new_tokens`), `eos` (ended on an end-of-sequence token: the trainer asks for no other
/// stop token) or `stop` (a stop string).
pub fn finish_label(completion: &Completion) -> &'static str {
    match (&completion.finish_reason, &completion.stop) {
        (FinishReason::Length, _) => "length",
        (FinishReason::Stop, Some(StopReason::Token(_))) => "eos",
        (FinishReason::Stop, _) => "stop",
    }
}
