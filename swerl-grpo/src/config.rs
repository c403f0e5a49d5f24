//! Hyperparameters: the GRPO objective ([`ObjectiveConfig`]) and the whole training run
//! ([`TrainConfig`]), with documented defaults, TOML loading and validation.
//!
//! Every field of [`TrainConfig`] is a key of the TOML file (`swerl train --config train.toml`)
//! and a flag of `swerl train` with the same name in kebab case. Unknown keys are rejected so a
//! typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};
use swerl_model::ScheduleKind;

use crate::error::{Error, Result};

/// How the group-centred rewards are scaled into advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's sample standard deviation (+1e-4): DeepSeekMath GRPO, TRL's default.
    #[default]
    Group,
    /// Divide by the standard deviation of every reward in the batch (+1e-4).
    Batch,
    /// No scaling (Dr. GRPO): advantages are `r - mean(group)`.
    None,
}

/// Level at which the importance ratio `exp(logp - logp_old)` is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceLevel {
    /// One ratio per token (GRPO, PPO).
    #[default]
    Token,
    /// One ratio per sequence, the exponential of the mean token log-ratio (GSPO).
    Sequence,
}

/// How per-token losses are reduced to the scalar that is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over sequences of each sequence's token mean (DeepSeekMath). Long completions get
    /// less weight per token.
    Grpo,
    /// Token mean over each micro-batch, averaged over micro-batches.
    Bnpo,
    /// Token sum divided by `sequences * max_new_tokens` (Dr. GRPO): a constant normaliser.
    DrGrpo,
    /// Token sum divided by the number of completion tokens in the whole accumulated batch,
    /// across gradient accumulation and ranks (DAPO). The default, as in TRL.
    #[default]
    Dapo,
}

/// What to do with a prompt longer than `max_prompt_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptOverflow {
    /// Drop context files the oracle does not change (largest first) until the prompt fits;
    /// skip the instance if it still does not.
    #[default]
    Truncate,
    /// Skip the instance.
    Skip,
}

/// The GRPO objective: everything [`crate::policy_loss`] and [`crate::compute_advantages`] need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectiveConfig {
    /// Advantage scaling. Default `group`.
    pub scale_rewards: ScaleRewards,
    /// Token- or sequence-level importance ratio. Default `token`.
    pub importance_sampling_level: ImportanceLevel,
    /// Lower clip range: ratios below `1 - epsilon_low` are clipped. Default 0.2.
    pub epsilon_low: f64,
    /// Upper clip range: ratios above `1 + epsilon_high` are clipped. Default 0.2 (DAPO's
    /// clip-higher uses 0.28).
    pub epsilon_high: f64,
    /// KL coefficient to the frozen reference policy (k3 estimator). Default 0.0: no reference
    /// model is loaded at all.
    pub beta: f64,
    /// Loss aggregation. Default `dapo`.
    pub loss_type: LossType,
    /// Upper cap of the ratio for two-sided clipping (`None`: off). Default none.
    pub delta: Option<f64>,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            scale_rewards: ScaleRewards::Group,
            importance_sampling_level: ImportanceLevel::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta: 0.0,
            loss_type: LossType::Dapo,
            delta: None,
        }
    }
}

impl ObjectiveConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.epsilon_low.is_finite() && (0.0..1.0).contains(&self.epsilon_low)) {
            return Err(Error::config("epsilon_low", "must be in [0, 1)"));
        }
        if !(self.epsilon_high.is_finite() && self.epsilon_high >= 0.0) {
            return Err(Error::config("epsilon_high", "must be finite and >= 0"));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::config("beta", "must be finite and >= 0"));
        }
        if let Some(delta) = self.delta
            && !(delta.is_finite() && delta > 1.0 + self.epsilon_high)
        {
            return Err(Error::config("delta", "must be greater than 1 + epsilon_high"));
        }
        Ok(())
    }
}

/// A whole training run. `Default` gives the documented defaults; the paper's own batch is
/// `prompts_per_step = 32`, `group_size = 16`, 16k tokens of context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of training steps (rollout batches). Default 100.
    pub steps: u64,
    /// Prompts sampled per step (P). Default 8 (paper: 32).
    pub prompts_per_step: usize,
    /// Completions per prompt (G). Default 8 (paper: 16). At least 2.
    pub group_size: usize,
    /// Maximum completion length in tokens. Default 4096.
    pub max_new_tokens: usize,
    /// Maximum prompt length in tokens (after the chat template). Default 12288 (with the
    /// default `max_new_tokens`, the paper's 16k context).
    pub max_prompt_tokens: usize,
    /// What to do with longer prompts. Default `truncate`.
    pub prompt_overflow: PromptOverflow,
    /// Sampling temperature; also divides the logits of the training forward, as in TRL.
    /// Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling mass (1.0 disables). Default 1.0.
    pub top_p: f64,
    /// Top-k sampling (0 disables). Default 0.
    pub top_k: usize,
    /// Most sequences sampled at once (the rollout engine's batch; bounds sampling memory).
    /// Default 64.
    pub generation_batch_size: usize,
    /// Sequences per forward/backward pass; gradients accumulate over the micro-batches of a step.
    /// Default 4.
    pub micro_batch_size: usize,
    /// Policy-gradient iterations per rollout batch (mu). With mu > 1 the log-probs of the
    /// sampling policy are recorded right after sampling and the ratio departs from 1. Default 1
    /// (on-policy, as in the paper).
    pub num_iterations: usize,
    /// Advantage scaling (see [`ObjectiveConfig::scale_rewards`]). Default `group`.
    pub scale_rewards: ScaleRewards,
    /// Token- or sequence-level importance ratio. Default `token`.
    pub importance_sampling_level: ImportanceLevel,
    /// Lower clip range. Default 0.2.
    pub epsilon_low: f64,
    /// Upper clip range. Default 0.2 (DAPO's clip-higher: 0.28).
    pub epsilon_high: f64,
    /// KL coefficient; 0 loads no reference model. Default 0.0.
    pub beta: f64,
    /// Loss aggregation. Default `dapo`.
    pub loss_type: LossType,
    /// Two-sided clipping (INTELLECT-2): importance ratios are also capped at `delta` (must be
    /// above `1 + epsilon_high`). Default: none.
    pub delta: Option<f64>,
    /// Exclude completions cut at `max_new_tokens` from the loss (DAPO's overlong filtering).
    /// Default false.
    pub mask_truncated_completions: bool,
    /// Peak learning rate of AdamW. Default 1e-6.
    pub learning_rate: f64,
    /// Decoupled weight decay of AdamW. Default 0.0.
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub adam_beta1: f64,
    /// AdamW beta2. Default 0.999.
    pub adam_beta2: f64,
    /// AdamW epsilon. Default 1e-8.
    pub adam_epsilon: f64,
    /// Global gradient-norm clipping threshold (0 disables). Default 1.0.
    pub max_grad_norm: f64,
    /// Learning-rate schedule after warm-up. Default `constant`.
    pub lr_scheduler: ScheduleKind,
    /// Linear warm-up length in optimizer updates. Default 0.
    pub warmup_steps: u64,
    /// Seed for data order and sampling; a run is a pure function of it. Default 42.
    pub seed: u64,
    /// Shuffle the data set each epoch. Default true.
    pub shuffle: bool,
    /// Save a checkpoint every this many steps (0: only at the end). Default 50.
    pub save_steps: u64,
    /// Keep at most this many checkpoints, deleting the oldest (0 keeps all). Default 0.
    pub save_total_limit: usize,
    /// Completions written to `completions.jsonl` per step. Default 4.
    pub log_completions: usize,
    /// Steps in a row with a non-finite loss or gradient before training stops with an error.
    /// A bad step is always skipped without touching the weights. Default 3.
    pub max_nonfinite_steps: u32,
    /// Dynamic sampling (DAPO): up to this many extra rounds of sampling per step, each drawing
    /// fresh prompts whose groups replace the groups with all-equal rewards (no learning
    /// signal) until none is left. 0 disables. Default 0.
    pub max_sampling_rounds: u32,
    /// DAPO's overlong reward shaping: completions longer than `max_new_tokens -
    /// overlong_buffer` lose `overlong_penalty_factor * (excess / overlong_buffer)` of reward
    /// (the whole factor at `max_new_tokens`), before advantages and dynamic sampling; 0
    /// disables. Default 0. (`mask_truncated_completions` is the other overlong treatment.)
    pub overlong_buffer: usize,
    /// The largest overlong penalty. Default 1.
    pub overlong_penalty_factor: f64,
    /// Run the held-out check every this many steps, and before the first and after the last
    /// (0: never; the check needs held-out data, `swerl train --eval-data`). Default 0.
    pub eval_steps: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            prompts_per_step: 8,
            group_size: 8,
            max_new_tokens: 4096,
            max_prompt_tokens: 12288,
            prompt_overflow: PromptOverflow::Truncate,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            generation_batch_size: 64,
            micro_batch_size: 4,
            num_iterations: 1,
            scale_rewards: ScaleRewards::Group,
            importance_sampling_level: ImportanceLevel::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta: 0.0,
            loss_type: LossType::Dapo,
            delta: None,
            mask_truncated_completions: false,
            learning_rate: 1e-6,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            lr_scheduler: ScheduleKind::Constant,
            warmup_steps: 0,
            seed: 42,
            shuffle: true,
            save_steps: 50,
            save_total_limit: 0,
            log_completions: 4,
            max_nonfinite_steps: 3,
            max_sampling_rounds: 0,
            overlong_buffer: 0,
            overlong_penalty_factor: 1.0,
            eval_steps: 0,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; absent keys take their defaults, unknown keys are an error.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs_err::read_to_string(path)?;
        Self::from_toml_str(&text).map_err(|source| Error::ConfigParse { path: path.to_owned(), source })
    }

    /// Parses TOML text (the error has the parser's line and column).
    pub fn from_toml_str(text: &str) -> std::result::Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Renders the configuration as TOML (what a checkpoint stores).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("TrainConfig always serialises to TOML")
    }

    /// The objective's part of the configuration.
    pub fn objective(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            scale_rewards: self.scale_rewards,
            importance_sampling_level: self.importance_sampling_level,
            epsilon_low: self.epsilon_low,
            epsilon_high: self.epsilon_high,
            beta: self.beta,
            loss_type: self.loss_type,
            delta: self.delta,
        }
    }

    /// The AdamW settings of the run (norms and biases excluded from weight decay).
    pub fn adamw(&self) -> swerl_model::AdamWConfig {
        swerl_model::AdamWConfig {
            lr: self.learning_rate,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
            decay_norms_and_biases: false,
        }
    }

    /// Number of sequences sampled per step (`prompts_per_step * group_size`).
    pub fn rollouts_per_step(&self) -> usize {
        self.prompts_per_step * self.group_size
    }

    /// Total number of optimizer updates of the run (`steps * num_iterations`).
    pub fn total_updates(&self) -> u64 {
        self.steps * self.num_iterations as u64
    }

    /// Checks every range and cross-field constraint.
    pub fn validate(&self) -> Result<()> {
        self.objective().validate()?;
        let positive = [
            ("prompts_per_step", self.prompts_per_step),
            ("max_new_tokens", self.max_new_tokens),
            ("max_prompt_tokens", self.max_prompt_tokens),
            ("generation_batch_size", self.generation_batch_size),
            ("micro_batch_size", self.micro_batch_size),
            ("num_iterations", self.num_iterations),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        if self.group_size < 2 {
            return Err(Error::config(
                "group_size",
                "must be at least 2 (a group of one has no baseline: every advantage is 0)",
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config(
                "temperature",
                "must be > 0 (GRPO samples; greedy decoding gives identical groups)",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::config("top_p", "must be in (0, 1]"));
        }
        validate_optimizer(&self.adamw())?;
        validate_update(self.max_grad_norm, self.max_nonfinite_steps)?;
        if self.overlong_buffer >= self.max_new_tokens {
            return Err(Error::config("overlong_buffer", "must be below max_new_tokens"));
        }
        if !(self.overlong_penalty_factor.is_finite() && self.overlong_penalty_factor >= 0.0) {
            return Err(Error::config("overlong_penalty_factor", "must be finite and >= 0"));
        }
        Ok(())
    }

    /// DAPO's soft overlong penalty (<= 0) of a completion of `len` tokens (see
    /// [`TrainConfig::overlong_buffer`]).
    pub fn overlong_penalty(&self, len: usize) -> f64 {
        let buffer = self.overlong_buffer;
        let expected = self.max_new_tokens.saturating_sub(buffer);
        if buffer == 0 || len <= expected {
            return 0.0;
        }
        -self.overlong_penalty_factor * ((len - expected) as f64 / buffer as f64).min(1.0)
    }
}

/// Checks AdamW's settings, naming the TOML key at fault.
pub(crate) fn validate_optimizer(c: &swerl_model::AdamWConfig) -> Result<()> {
    if !(c.lr.is_finite() && c.lr >= 0.0) {
        return Err(Error::config("learning_rate", "must be finite and >= 0"));
    }
    if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
        return Err(Error::config("weight_decay", "must be finite and >= 0"));
    }
    for (key, value) in [("adam_beta1", c.beta1), ("adam_beta2", c.beta2)] {
        if !(0.0..1.0).contains(&value) {
            return Err(Error::config(key, "must be in [0, 1)"));
        }
    }
    if !(c.eps.is_finite() && c.eps > 0.0) {
        return Err(Error::config("adam_epsilon", "must be > 0"));
    }
    Ok(())
}

/// Checks the clipping and non-finite-step settings.
pub(crate) fn validate_update(max_grad_norm: f64, max_nonfinite_steps: u32) -> Result<()> {
    if !(max_grad_norm.is_finite() && max_grad_norm >= 0.0) {
        return Err(Error::config("max_grad_norm", "must be finite and >= 0 (0 disables clipping)"));
    }
    if max_nonfinite_steps == 0 {
        return Err(Error::config("max_nonfinite_steps", "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let config = TrainConfig::default();
        config.validate().unwrap();
        let text = config.to_toml();
        assert_eq!(TrainConfig::from_toml_str(&text).unwrap(), config);
    }

    #[test]
    fn partial_file_keeps_defaults_and_flattened_objective_keys_are_flat() {
        let config = TrainConfig::from_toml_str(
            "steps = 7\nloss_type = \"dr_grpo\"\nepsilon_high = 0.28\nscale_rewards = \"none\"\n",
        )
        .unwrap();
        assert_eq!(config.steps, 7);
        assert_eq!(config.objective().loss_type, LossType::DrGrpo);
        assert_eq!(config.epsilon_high, 0.28);
        assert_eq!(config.scale_rewards, ScaleRewards::None);
        assert_eq!(config.group_size, TrainConfig::default().group_size);
    }

    #[test]
    fn overlong_penalty_is_dapos_linear_ramp() {
        let config = TrainConfig { max_new_tokens: 100, overlong_buffer: 20, ..TrainConfig::default() };
        let p: Vec<f64> = [0, 80, 81, 90, 100].iter().map(|&l| config.overlong_penalty(l)).collect();
        assert_eq!(p, [0.0, 0.0, -0.05, -0.5, -1.0]);
        let half = TrainConfig { overlong_penalty_factor: 0.5, ..config.clone() };
        assert_eq!(half.overlong_penalty(100), -0.5);
        assert_eq!(TrainConfig::default().overlong_penalty(4096), 0.0, "off by default");
        let bad = TrainConfig { overlong_buffer: 100, ..config };
        assert!(bad.validate().unwrap_err().to_string().contains("overlong_buffer"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_key() {
        let err = TrainConfig::from_toml_str("group_sise = 4\n").unwrap_err().to_string();
        assert!(err.contains("group_sise"), "{err}");
        let config = TrainConfig { group_size: 1, ..TrainConfig::default() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("group_size"), "{err}");
        let config = TrainConfig { epsilon_low: 1.5, ..TrainConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("epsilon_low"));
    }
}
