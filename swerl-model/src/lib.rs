//! A trainable Llama-family causal language model in [candle](https://github.com/huggingface/candle):
//! the model side of swerl's GRPO trainer.
//!
//! - [`Llama`]: grouped-query attention, RoPE (Llama 3 and linear scaling), RMSNorm, SwiGLU,
//!   tied or untied embeddings; `f32` master parameters ([`candle_core::Var`]s under their
//!   Hugging Face names) with an optional `bf16`/`f16` compute dtype.
//! - Per-token log-probabilities and entropies of completion tokens ([`TokenBatch`]):
//!   [`Llama::score`] without gradients (fused kernels), [`Llama::forward_train`] +
//!   [`TrainForward::backward`] with gradients for every parameter, activation recomputation
//!   per block, blockwise attention and a chunked output projection (the full
//!   `(batch, seq, vocab)` logits are never built), and [`Llama::forward_graph`] as one plain
//!   autograd graph.
//!
//! # Example
//!
//! ```
//! use swerl_model::{Gradients, Llama, ModelConfig, ModelOptions, TokenBatch, TrainOptions};
//!
//! # fn main() -> swerl_model::Result<()> {
//! let config = ModelConfig {
//!     vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
//!     num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8,
//!     ..ModelConfig::default()
//! };
//! let model = Llama::new_random(config, 0, 0.02, &ModelOptions::default())?;
//! // Two prompts with their sampled completions.
//! let batch = TokenBatch::from_prompt_completions(&[vec![1, 5, 9], vec![1, 7]],
//!                                                 &[vec![3, 4], vec![8, 2, 2]], 0)?;
//! let fwd = model.forward_train(&batch, &TrainOptions::default())?;
//! // Any loss of the per-token log-probs: here the mean negative log-likelihood.
//! let loss = ((fwd.logprobs() * fwd.mask())?.sum_all()? / -(batch.num_scored() as f64))?;
//! let mut grads = Gradients::new();
//! fwd.backward(&loss, &mut grads)?;
//! assert_eq!(grads.len(), model.parameters().len());
//! # Ok(())
//! # }
//! ```
//!
//! Loading and sampling:
//!
//! ```
//! # fn main() -> swerl_model::Result<()> {
//! # let dir = tempfile::tempdir().expect("temp dir");
//! # swerl_model::testing::write_tiny_checkpoint(dir.path(), 0)?;
//! # let path = dir.path().to_str().expect("utf-8");
//! use swerl_model::{ChatMessage, GenerateOptions, GenerationRequest, LoadOptions, SamplingParams};
//!
//! // A Hugging Face directory, a Hub id (`org/name`) or a `.gguf` file.
//! let loaded = swerl_model::load(path, &LoadOptions::default())?;
//! let prompt = loaded.tokenizer.encode_chat(&[ChatMessage::user("Fix the bug.")], true)?;
//! let requests = vec![GenerationRequest {
//!     prompt_ids: prompt,
//!     params: SamplingParams { temperature: 0.8, top_p: 0.95, max_new_tokens: 8, seed: Some(1),
//!                              ..SamplingParams::default() },
//! }];
//! let opts = GenerateOptions { eos_ids: loaded.eos_ids(), pad_id: loaded.pad_id(), max_batch: 0, ..Default::default() };
//! let out = loaded.model.generate(&loaded.tokenizer, &requests, &opts, |_token| {})?;
//! assert_eq!(out[0].logprobs.len(), out[0].token_ids.len());
//! # Ok(())
//! # }
//! ```
//!
//! # Map
//!
//! Every item is at the crate root (the modules are private: one path per item).
//!
//! - Configuration: [`ModelConfig`] (`config.json`, both RoPE spellings, validated),
//!   [`GenerationConfig`].
//! - The model: [`Llama`] parameters and construction, [`ModelOptions`], [`parameter_shapes`].
//! - Scoring and training: [`TokenBatch`] (padded prompt + completion layout), [`Llama::score`]
//!   with [`ScoreOptions`] -> [`TokenScores`]; [`Llama::forward_train`] with [`TrainOptions`] and
//!   [`Recompute`] -> [`TrainForward`]; [`Gradients`] (accumulation, global-norm clipping);
//!   [`AdamW`], [`LrSchedule`].
//! - Sampling: [`Llama::generate`] with [`GenerationRequest`], [`SamplingParams`],
//!   [`GenerateOptions`] -> [`Completion`], on the rollout [`Engine`] (continuous batching, a
//!   prompt's KV cache shared by its samples, token-budgeted chunked prefill);
//!   [`Llama::generate_groups`] for G samples of each prompt.
//! - Loading and saving: [`load()`] from a directory, Hub id ([`HubRepo`]) or GGUF file
//!   ([`GgufFile`]); [`save_pretrained`] in Hugging Face layout.
//! - Text: [`Tokenizer`], [`DecodeStream`], [`ChatTemplate`] (minijinja) rendering
//!   [`ChatMessage`]s.
//! - Devices: [`parse_device`], [`parse_dtype`].
//!
//! Test support (tiny checkpoints written through the real savers) is not public API: it is
//! compiled only with the `testing` feature, which the workspace's tests turn on.
//!
//! # Features
//!
//! - `hub` (default): download Hub models with `hf-hub`; without it Hub ids resolve from the
//!   local cache only.
//! - `cuda`, `nccl`: GPU backends of candle, chosen at run time with [`parse_device`].

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

mod batch;
mod chat;
mod config;
mod device;
mod engine;
mod error;
mod generate;
mod gguf;
mod gguf_check;
mod grads;
mod hub;
mod load;
mod logprobs;
mod model;
mod optim;
mod sampling;
mod save;
mod tokenizer;
mod train;

mod attention;
mod block;
mod decode_attention;
mod kernels;
mod layer;
mod matvec;
mod rope;
// The pool hands borrowed closures to its threads (see the module's docs).
#[allow(unsafe_code)]
mod spin;
mod worker;

pub use batch::TokenBatch;
pub use chat::{ChatMessage, ChatTemplate, SpecialTokens};
pub use config::{GenerationConfig, ModelConfig, RopeScaling, TokenIds};
pub use device::{parse_device, parse_dtype, rayon_threads_env};
pub use engine::{
    BF16_LOGPROB_TOL, Engine, EngineConfig, EngineEvent, EngineRequest, EngineStats, F16_LOGPROB_TOL,
    RequestId, WeightDtype,
};
pub use error::{Error, Result};
pub use generate::{Completion, FinishReason, GenerateOptions, GenerationRequest, StopReason, StreamEvent};
pub use gguf::{GgufFile, permute_for_gguf};
pub use grads::Gradients;
pub use hub::{HubOptions, HubRepo, cached_file, default_cache_dir, looks_like_repo_id};
pub use load::{
    LoadOptions, LoadedModel, ModelSource, load, load_dir, load_gguf, load_hub, read_safetensors,
};
pub use logprobs::{ScoreOptions, TokenScores};
pub use model::{Llama, ModelOptions, parameter_shapes};
pub use optim::{AdamW, AdamWConfig, LrSchedule, ScheduleKind};
pub use sampling::SamplingParams;
pub use save::{SaveOptions, save_pretrained};
pub use tokenizer::{DecodeStream, Tokenizer};
pub use train::{Recompute, TrainForward, TrainOptions};

pub use candle_core::{DType, Device, Tensor, Var};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
