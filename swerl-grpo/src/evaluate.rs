//! The held-out check: greedy answers to an [`Environment`]'s prompts (for SWE-RL, the paper's
//! prompt with the oracle files), scored with its reward. It measures whether a model answers
//! in the format (`format_rate`) and how close its edits come to the real fix (`reward`), with
//! percentile-bootstrap intervals, so that checkpoints can be compared honestly. Used by
//! `swerl eval repair --oracle-files` and, every `eval_steps`, inside training.

use serde::{Deserialize, Serialize};
use swerl_model::{FinishReason, GenerationRequest, SamplingParams};

use crate::env::Environment;
use crate::error::{Error, Result};
use crate::policy::{Policy, finish_label};
use crate::sampler::{SplitMix64, derive_seed};

/// How the held-out check runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Tokens generated per answer at most. Default 1024.
    pub max_new_tokens: usize,
    /// Sequences decoding at once. Default 16.
    pub batch_size: usize,
    /// Bootstrap resamples for the intervals (0: no interval). Default 1000.
    pub bootstrap_samples: usize,
    /// Confidence level of the intervals. Default 0.95.
    pub confidence: f64,
    /// Seed of the bootstrap resampling and of sampled answers. Default 0.
    pub seed: u64,
    /// Answers per prompt. Default 1.
    pub samples: usize,
    /// Sampling temperature; 0 is greedy (the default).
    pub temperature: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 1024,
            batch_size: 16,
            bootstrap_samples: 1000,
            confidence: 0.95,
            seed: 0,
            samples: 1,
            temperature: 0.0,
        }
    }
}

impl EvalConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(Error::config("eval.max_new_tokens", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("eval.batch_size", "must be at least 1"));
        }
        if self.samples == 0 {
            return Err(Error::config("eval.samples", "must be at least 1"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::config("eval.temperature", "must be finite and >= 0 (0: greedy)"));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(Error::config("eval.confidence", "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// The held-out set checked during training.
pub struct HeldOut<'a> {
    /// Its prompts and reward.
    pub env: &'a dyn Environment,
    /// How it is answered.
    pub config: EvalConfig,
}

impl std::fmt::Debug for HeldOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldOut")
            .field("prompts", &self.env.prompts().len())
            .field("config", &self.config)
            .finish()
    }
}

/// One held-out answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The prompt's id (the instance id).
    pub id: String,
    /// Which answer of the prompt (0-based; always 0 with one sample).
    pub sample: usize,
    /// Its reward.
    pub reward: f64,
    /// Whether the answer broke the format (SWE-RL: reward -1).
    pub format_error: bool,
    /// Why the reward is what it is, for a format error (or a failing reward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `eos`, `length` or `stop`.
    pub finish: String,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// The answer.
    pub text: String,
}

/// A mean with its percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The sample mean.
    pub mean: f64,
    /// Lower end of the interval (the mean when no interval was asked for).
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EvalReport {
    /// Answers scored (prompts x samples).
    pub n: usize,
    /// Fraction of answers in the format (reward not a format error).
    pub format_rate: Estimate,
    /// Mean reward (format errors count as -1, as in training).
    pub reward: Estimate,
    /// Mean answer length in tokens.
    pub mean_length: f64,
    /// Fraction of answers cut at `max_new_tokens`.
    pub clipped_ratio: f64,
    /// Seconds spent generating.
    pub time_generation: f64,
    /// Every answer, in prompt order.
    pub records: Vec<EvalRecord>,
}

/// Answers every prompt of `env` (`samples` times; greedily by default) and scores the answers.
pub fn evaluate<P: Policy + ?Sized>(
    policy: &mut P,
    env: &dyn Environment,
    config: &EvalConfig,
) -> Result<EvalReport> {
    config.validate()?;
    let prompts = env.prompts();
    if prompts.is_empty() {
        return Err(Error::config("eval_data", "the held-out set has no prompt"));
    }
    let owners: Vec<(usize, usize)> =
        (0..prompts.len()).flat_map(|i| (0..config.samples).map(move |s| (i, s))).collect();
    let requests: Vec<GenerationRequest> = owners
        .iter()
        .map(|&(i, s)| GenerationRequest {
            prompt_ids: prompts[i].tokens.clone(),
            params: SamplingParams {
                temperature: config.temperature,
                seed: Some(derive_seed(config.seed, &[i as u64, s as u64])),
                ..SamplingParams::greedy(config.max_new_tokens)
            },
        })
        .collect();
    let start = std::time::Instant::now();
    let completions = policy.generate(&requests, config.batch_size)?;
    let time_generation = start.elapsed().as_secs_f64();
    if completions.len() != requests.len() {
        return Err(Error::Policy {
            step: 0,
            during: "held-out sampling",
            message: format!("{} completions for {} requests", completions.len(), requests.len()),
        });
    }
    let indices: Vec<usize> = owners.iter().map(|o| o.0).collect();
    let refs: Vec<_> = completions.iter().collect();
    let outcomes = env.score(&indices, &refs);
    let records: Vec<EvalRecord> = owners
        .iter()
        .zip(&completions)
        .zip(&outcomes)
        .map(|((&(i, sample), c), o)| EvalRecord {
            id: prompts[i].id.clone(),
            sample,
            reward: o.reward,
            format_error: o.format_error,
            reason: o.reason.clone(),
            finish: finish_label(c).to_owned(),
            completion_tokens: c.token_ids.len(),
            text: c.text.clone(),
        })
        .collect();
    let n = records.len() as f64;
    let formatted: Vec<f64> = records.iter().map(|r| if r.format_error { 0.0 } else { 1.0 }).collect();
    let rewards: Vec<f64> = records.iter().map(|r| r.reward).collect();
    Ok(EvalReport {
        n: records.len(),
        format_rate: bootstrap(&formatted, config, 1),
        reward: bootstrap(&rewards, config, 2),
        mean_length: records.iter().map(|r| r.completion_tokens as f64).sum::<f64>() / n,
        clipped_ratio: completions.iter().filter(|c| c.finish_reason == FinishReason::Length).count() as f64
            / n,
        time_generation,
        records,
    })
}

/// The mean of `values` with a percentile-bootstrap interval (`config.bootstrap_samples`
/// resamples with replacement, seeded by `(config.seed, stream)`).
pub fn bootstrap(values: &[f64], config: &EvalConfig, stream: u64) -> Estimate {
    let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| v.sum::<f64>() / n.max(1) as f64;
    let m = mean(&mut values.iter().copied(), values.len());
    if config.bootstrap_samples == 0 || values.len() < 2 {
        return Estimate { mean: m, low: m, high: m };
    }
    let mut rng = SplitMix64::new(derive_seed(config.seed, &[stream]));
    let mut means: Vec<f64> = (0..config.bootstrap_samples)
        .map(|_| mean(&mut (0..values.len()).map(|_| values[rng.below(values.len())]), values.len()))
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - config.confidence) / 2.0;
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Estimate { mean: m, low: at(tail), high: at(1.0 - tail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_contains_the_mean_and_narrows_with_more_data() {
        let cfg = EvalConfig::default();
        let small: Vec<f64> = (0..10).map(|i| (i % 2) as f64).collect();
        let large: Vec<f64> = (0..1000).map(|i| (i % 2) as f64).collect();
        let (s, l) = (bootstrap(&small, &cfg, 1), bootstrap(&large, &cfg, 1));
        assert_eq!(s.mean, 0.5);
        assert!(s.low < 0.5 && s.high > 0.5, "{s:?}");
        assert!(l.high - l.low < (s.high - s.low) / 4.0, "{s:?} {l:?}");
        // Deterministic for a seed; constant data has a zero-width interval.
        assert_eq!(bootstrap(&small, &cfg, 1), s);
        let flat = bootstrap(&[0.25; 7], &cfg, 1);
        assert_eq!((flat.low, flat.mean, flat.high), (0.25, 0.25, 0.25));
        // One value or no resampling: the interval is the mean.
        let one = bootstrap(&[0.7], &cfg, 1);
        assert_eq!((one.low, one.high), (0.7, 0.7));
    }
}
