//! What the trainer needs from a model and an optimizer, as small traits. `swerl-model`'s Llama
//! and AdamW implement them (see [`crate::llama`]); tests plug in tiny models of their own.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
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
    /// logits divided by `temperature`. With `grad`, the result is differentiable with respect
    /// to [`Policy::parameters`]; without, implementations may use faster fused kernels.
    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64, grad: bool)
    -> Result<TokenLogProbs>;

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
