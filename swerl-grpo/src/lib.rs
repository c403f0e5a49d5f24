//! # swerl-grpo
//!
//! The GRPO trainer of SWE-RL: a policy samples `G` completions for each of `P` issues, the
//! SWE-RL reward scores them, group-normalised advantages weight a clipped policy-gradient loss,
//! and AdamW updates the model, step after step, with checkpoints that resume exactly.
//!
//! The objective follows DeepSeekMath's GRPO with TRL's conventions and its variants, checked
//! against TRL 1.16's own loss code (`tests/golden/make_loss_golden.py`):
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use swerl_grpo::{BatchNorm, LossInputs, ObjectiveConfig, ScaleRewards, compute_advantages, policy_loss};
//!
//! # fn main() -> swerl_grpo::Result<()> {
//! // Two prompts, two completions each (G = 2): rewards -> advantages.
//! let adv = compute_advantages(&[1.0, 0.0, -1.0, -1.0], 2, ScaleRewards::Group)?;
//! assert!(adv.values[0] > 0.0 && adv.values[1] < 0.0);
//! assert_eq!(adv.frac_zero_std(), 0.5); // the second group teaches nothing
//!
//! // Per-token log-probs of the completions (B = 4, T = 3) and their mask.
//! let logp = Var::new(&[[-1.0f32, -2.0, -0.5]; 4], &Device::Cpu)?;
//! let mask = Tensor::new(&[[1.0f32, 1.0, 0.0]; 4], &Device::Cpu)?;
//! let advantages = Tensor::new(adv.values.iter().map(|&a| a as f32).collect::<Vec<_>>(), &Device::Cpu)?;
//! let inputs = LossInputs { logp: logp.as_tensor(), old_logp: None, ref_logp: None, advantages: &advantages, mask: &mask };
//! let out = policy_loss(&inputs, &ObjectiveConfig::default(), &BatchNorm::single(&mask, 3)?)?;
//! let grads = out.loss.backward()?;
//! assert!(grads.get(&logp).is_some());
//! # Ok(()) }
//! ```
//!
//! Training a real model: `swerl train --model DIR --data rl.jsonl --out runs/x` (see the
//! crate README), or in code: load a [`llama::LlamaPolicy`], build a [`SweRlEnvironment`] from a
//! `swerl_reward::Dataset` of RL instances, and call [`Trainer::train`] with a progress callback.
//!
//! ## Modules
//!
//! | item | what it does |
//! | --- | --- |
//! | [`compute_advantages`] | group / batch / no std scaling, TRL's `1e-4`, zero-std fraction |
//! | [`policy_loss`], [`k3_kl`] | clipped token- or sequence-level (GSPO) surrogate, k3 KL, `grpo` / `bnpo` / `dr_grpo` / `dapo` aggregation, clip statistics |
//! | [`TrainConfig`] | every hyperparameter, its default, TOML loading and validation |
//! | [`SweRlEnvironment`] | the paper's prompt (`swerl_reward::build_messages`) through the model's chat template, context budget, reward |
//! | [`score_all`], [`SweRlReward`] | parallel scoring that never crashes the run |
//! | [`Policy`], [`TrainPass`], [`Optimizer`] | what the trainer needs from a model and an optimizer, in `swerl-model`'s types |
//! | [`llama`] | `swerl-model`'s Llama and AdamW behind those traits |
//! | [`Trainer`] | the loop: sampling, rewards, advantages, micro-batches, clipping, updates, metrics, checkpoints, resume, NaN guard |
//! | [`StepMetrics`] | `metrics.jsonl` with TRL's metric names |
//! | [`evaluate`], [`EvalMetrics`] | the held-out check: greedy answers, format-correct rate and reward with bootstrap intervals, `eval.jsonl` |
//! | [`tensorboard`] | TensorBoard event files (scalars) beside `metrics.jsonl`, written by both trainers |
//! | [`sft`] | supervised fine-tuning on oracle answers (the paper's SFT baseline): examples, packing, checkpoints, exact resume |
//! | [`checkpoint_dir`], [`TrainerState`] | `checkpoint-<step>/` layout |
//! | [`Communicator`], [`RankInfo`] | data parallelism: rendezvous, NCCL (feature `nccl`: `NcclCommunicator`) |
//!
//! The library never prints: it reports through [`TrainEvent`] callbacks and `tracing`.

mod advantage;
mod checkpoint;
mod comm;
mod config;
mod env;
mod error;
mod evaluate;
pub mod llama;
mod loss;
mod metrics;
mod policy;
mod reward;
mod sampler;
pub mod sft;
pub mod tensorboard;
mod trainer;

pub use advantage::{Advantages, STD_EPSILON, compute_advantages};
pub use checkpoint::{
    CONFIG_FILE, MODEL_DIR, OPTIMIZER_FILE, STATE_FILE, TrainerState, checkpoint_dir, latest_checkpoint,
    list_checkpoints, read_state,
};
#[cfg(feature = "nccl")]
pub use comm::NcclCommunicator;
pub use comm::{Communicator, RankInfo, SingleProcess, rendezvous_broadcast};
pub use config::{ImportanceLevel, LossType, ObjectiveConfig, PromptOverflow, ScaleRewards, TrainConfig};
pub use env::{ChatEncoder, Environment, PreparedPrompt, PromptReport, SweRlEnvironment};
pub use error::{Error, Result};
pub use evaluate::{Estimate, EvalConfig, EvalRecord, EvalReport, HeldOut, bootstrap, evaluate};
pub use loss::{BatchNorm, LossInputs, LossStats, PolicyLoss, k3_kl, policy_loss};
pub use metrics::{
    CompletionRecord, EVAL_ANSWERS_FILE, EVAL_FILE, EvalMetrics, JsonlWriter, StepMetrics, read_metrics,
    truncate_log_after,
};
pub use policy::{AutogradPass, Optimizer, Policy, TrainPass, finish_label};
pub use reward::{RewardFailure, RewardFunction, RewardOutcome, SweRlReward, score_all};
pub use sampler::{PromptSampler, SamplerState, derive_seed};
pub use trainer::{
    COMPLETIONS_FILE, METRICS_FILE, Phase, RUN_CONFIG_FILE, TrainEvent, TrainSummary, Trainer,
};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
