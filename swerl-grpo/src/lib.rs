//! # swerl-grpo
//!
//! GRPO for SWE-RL (work in progress).

mod advantage;
pub mod checkpoint;
pub mod comm;
mod config;
mod data;
mod env;
mod error;
mod loss;
mod metrics;
mod optim;
mod policy;
mod prompt;
mod reward;
mod sampler;
mod trainer;

pub use advantage::{Advantages, STD_EPSILON, compute_advantages};
pub use checkpoint::TrainerState;
pub use comm::{Communicator, RankInfo, SingleProcess};
pub use config::{
    ImportanceLevel, LossType, LrSchedule, ObjectiveConfig, PromptOverflow, ScaleRewards, TrainConfig,
};
pub use data::{Dataset, RlInstance, SkippedRecord};
pub use env::{ChatEncoder, Environment, PreparedPrompt, PromptReport, SweRlEnvironment};
pub use error::{Error, Result};
pub use loss::{BatchNorm, LossInputs, LossStats, PolicyLoss, k3_kl, policy_loss};
pub use metrics::{CompletionRecord, JsonlWriter, StepMetrics, read_metrics, truncate_log_after};
pub use optim::{AdamW, AdamWConfig, clip_grads, global_grad_norm, learning_rate};
pub use policy::{
    AutogradPass, FinishReason, Generation, GenerationRequest, Gradients, Optimizer, Policy, SamplingParams,
    TokenLogProbs, TrainPass,
};
pub use prompt::{ChatMessage, EDIT_INSTRUCTIONS, SYSTEM_PROMPT, build_messages};
pub use reward::{RewardFunction, RewardOutcome, SweRlReward, score_all};
pub use sampler::{PromptSampler, SamplerState, derive_seed};
pub use trainer::{COMPLETIONS_FILE, METRICS_FILE, Phase, TrainEvent, TrainSummary, Trainer};
