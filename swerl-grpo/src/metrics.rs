//! Per-step metrics with the names TRL users know, and the JSONL writers for `metrics.jsonl` and
//! `completions.jsonl`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The metrics of one training step (one rollout batch), one line of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepMetrics {
    /// 1-based step number.
    pub step: u64,
    /// Epoch (fractional: prompts drawn / data-set size).
    pub epoch: f64,
    /// Mean reward of the batch.
    pub reward: f64,
    /// Sample standard deviation of the batch's rewards.
    pub reward_std: f64,
    /// Fraction of groups whose rewards are all equal (no learning signal).
    pub frac_reward_zero_std: f64,
    /// Fraction of completions with reward -1 (SWE-RL's format errors).
    pub format_error_rate: f64,
    /// Completions whose reward failed (panic, non-finite) and were given the failure reward.
    pub reward_failures: u64,
    /// Mean completion length in tokens.
    #[serde(rename = "completions/mean_length")]
    pub completions_mean_length: f64,
    /// Shortest completion.
    #[serde(rename = "completions/min_length")]
    pub completions_min_length: f64,
    /// Longest completion.
    #[serde(rename = "completions/max_length")]
    pub completions_max_length: f64,
    /// Fraction of completions cut at `max_new_tokens` (no end-of-sequence).
    #[serde(rename = "completions/clipped_ratio")]
    pub completions_clipped_ratio: f64,
    /// Mean length of the completions that ended by themselves.
    #[serde(rename = "completions/mean_terminated_length")]
    pub completions_mean_terminated_length: f64,
    /// Mean per-token k3 KL to the reference policy (0 when `beta == 0`).
    #[serde(deserialize_with = "null_as_nan")]
    pub kl: f64,
    /// Mean per-token entropy of the policy over completion tokens.
    #[serde(deserialize_with = "null_as_nan")]
    pub entropy: f64,
    /// Fraction of tokens (or sequences) clipped below with a negative advantage.
    #[serde(rename = "clip_ratio/low_mean")]
    #[serde(deserialize_with = "null_as_nan")]
    pub clip_ratio_low_mean: f64,
    /// Fraction clipped above with a positive advantage.
    #[serde(rename = "clip_ratio/high_mean")]
    #[serde(deserialize_with = "null_as_nan")]
    pub clip_ratio_high_mean: f64,
    /// Fraction clipped either way.
    #[serde(rename = "clip_ratio/region_mean")]
    #[serde(deserialize_with = "null_as_nan")]
    pub clip_ratio_region_mean: f64,
    /// The objective of the batch (mean over the `num_iterations` updates).
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    /// Global gradient norm before clipping (mean over the updates).
    #[serde(deserialize_with = "null_as_nan")]
    pub grad_norm: f64,
    /// Learning rate of the (last) update.
    pub learning_rate: f64,
    /// Optimizer updates applied this step (0 when the step was skipped as non-finite).
    pub updates: u64,
    /// Why the update was skipped, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Sampling rounds of the step beyond the first (dynamic sampling; summed over ranks).
    #[serde(default, rename = "sampling/extra_rounds")]
    pub sampling_extra_rounds: u64,
    /// Groups sampled this step, replacements included (summed over ranks).
    #[serde(default, rename = "sampling/groups_drawn")]
    pub sampling_groups_drawn: u64,
    /// Groups with all-equal rewards that dynamic sampling replaced (summed over ranks).
    #[serde(default, rename = "sampling/groups_replaced")]
    pub sampling_groups_replaced: u64,
    /// Tokens (prompt + completion) processed since the start of the run.
    pub num_tokens: u64,
    /// Wall-clock seconds of the step.
    pub step_time: f64,
    /// Seconds spent sampling.
    #[serde(rename = "time/generation")]
    pub time_generation: f64,
    /// Seconds spent scoring.
    #[serde(rename = "time/reward")]
    pub time_reward: f64,
    /// Seconds spent in forward/backward passes and the optimizer.
    #[serde(rename = "time/train")]
    pub time_train: f64,
}

/// Empties a log of a run that restarts from scratch (nothing to do when it does not exist).
pub(crate) fn empty_log(path: &Path) -> Result<()> {
    if path.exists() {
        fs_err::write(path, "")?;
    }
    Ok(())
}

/// Writes every number of `record` (a metrics line; `step` excluded) to TensorBoard at `step`,
/// tagged `prefix` + its `metrics.jsonl` key, and flushes.
pub(crate) fn log_scalars<T: Serialize>(
    writer: &mut crate::tensorboard::EventWriter,
    step: u64,
    prefix: &str,
    record: &T,
) -> Result<()> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(record) else { return Ok(()) };
    let tags: Vec<(String, f64)> = map
        .iter()
        .filter(|(k, _)| *k != "step")
        .filter_map(|(k, v)| {
            Some((format!("{prefix}{k}"), v.as_f64().unwrap_or(f64::NAN))).filter(|_| !v.is_string())
        })
        .collect();
    let refs: Vec<(&str, f64)> = tags.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    writer.add_scalars(step as i64, &refs)?;
    writer.flush()?;
    Ok(())
}

/// The held-out check's log in a run directory, one [`EvalMetrics`] per check.
pub const EVAL_FILE: &str = "eval.jsonl";
/// Every held-out answer of every check (an [`crate::EvalRecord`] with its `step`).
pub const EVAL_ANSWERS_FILE: &str = "eval_answers.jsonl";

/// Appends a check's answers to `eval_answers.jsonl`, each with the check's `step`.
pub(crate) fn log_answers(dir: &Path, step: u64, report: &crate::EvalReport) -> Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        step: u64,
        #[serde(flatten)]
        record: &'a crate::EvalRecord,
    }
    let mut log = JsonlWriter::append(dir.join(EVAL_ANSWERS_FILE))?;
    for record in &report.records {
        log.write(&Line { step, record })?;
    }
    Ok(())
}

/// One held-out check of a run (a line of `eval.jsonl`): format-correct rate and mean reward of
/// greedy answers with their bootstrap intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EvalMetrics {
    /// Steps done when the check ran (0: before training).
    pub step: u64,
    /// Fraction of answers in the format.
    #[serde(rename = "eval/format_rate")]
    pub format_rate: f64,
    /// Lower end of its interval.
    #[serde(rename = "eval/format_rate_low")]
    pub format_rate_low: f64,
    /// Upper end of its interval.
    #[serde(rename = "eval/format_rate_high")]
    pub format_rate_high: f64,
    /// Mean reward.
    #[serde(rename = "eval/reward")]
    pub reward: f64,
    /// Lower end of its interval.
    #[serde(rename = "eval/reward_low")]
    pub reward_low: f64,
    /// Upper end of its interval.
    #[serde(rename = "eval/reward_high")]
    pub reward_high: f64,
    /// Answers scored.
    #[serde(rename = "eval/n")]
    pub n: usize,
    /// Mean answer length in tokens.
    #[serde(rename = "eval/mean_length")]
    pub mean_length: f64,
    /// Fraction of answers cut at the token limit.
    #[serde(rename = "eval/clipped_ratio")]
    pub clipped_ratio: f64,
    /// Seconds the check took to generate.
    #[serde(rename = "eval/time")]
    pub time: f64,
}

impl EvalMetrics {
    /// The line of a check run after `step` steps.
    pub fn new(step: u64, report: &crate::EvalReport) -> Self {
        Self {
            step,
            format_rate: report.format_rate.mean,
            format_rate_low: report.format_rate.low,
            format_rate_high: report.format_rate.high,
            reward: report.reward.mean,
            reward_low: report.reward.low,
            reward_high: report.reward.high,
            n: report.n,
            mean_length: report.mean_length,
            clipped_ratio: report.clipped_ratio,
            time: report.time_generation,
        }
    }
}

/// The metrics file in the output directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// JSON has no NaN: serde_json writes non-finite floats as `null`; read them back as NaN.
pub(crate) fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl StepMetrics {
    /// The same metrics without the wall-clock fields (for comparing runs).
    pub fn without_timings(&self) -> Self {
        Self { step_time: 0.0, time_generation: 0.0, time_reward: 0.0, time_train: 0.0, ..self.clone() }
    }
}

/// One logged completion with its reward (a line of `completions.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletionRecord {
    /// The step.
    pub step: u64,
    /// Which prompt (instance id, or index for custom tasks).
    pub prompt_id: String,
    /// Index of the completion within its group.
    pub sample: usize,
    /// The decoded completion.
    pub completion: String,
    /// Its reward.
    pub reward: f64,
    /// Its advantage.
    pub advantage: f64,
    /// Length in tokens.
    pub length: usize,
    /// Why sampling stopped (`eos`, `length`, `stop`).
    pub finish_reason: String,
    /// The reward's explanation of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Appends JSON lines to a file, flushing each line so a crash loses nothing written.
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    file: std::io::BufWriter<fs_err::File>,
}

impl JsonlWriter {
    /// Opens `path` for appending (creating it).
    pub fn append(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let file = fs_err::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, file: std::io::BufWriter::new(file) })
    }

    /// Writes one record as a line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        serde_json::to_writer(&mut self.file, record)
            .map_err(|source| Error::Json { path: self.path.clone(), source })?;
        self.file.write_all(b"\n").map_err(|e| io_at(&self.path, e))?;
        self.file.flush().map_err(|e| io_at(&self.path, e))?;
        Ok(())
    }
}

fn io_at(path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Keeps only the lines of a JSONL log whose `step` is at most `max_step` (used on resume, so the
/// log of a resumed run equals that of an uninterrupted one). A missing file is fine.
pub fn truncate_log_after(path: impl AsRef<Path>, max_step: u64) -> Result<()> {
    let path = path.as_ref();
    if !path.exists() {
        return Ok(());
    }
    let reader = std::io::BufReader::new(fs_err::File::open(path)?);
    let mut kept = String::new();
    for line in reader.lines() {
        let line = line.map_err(|e| io_at(path, e))?;
        let step = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64));
        if step.is_some_and(|s| s <= max_step) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    fs_err::write(&tmp, kept)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// Reads every `StepMetrics` line of a `metrics.jsonl`.
pub fn read_metrics(path: impl AsRef<Path>) -> Result<Vec<StepMetrics>> {
    let path = path.as_ref();
    let reader = std::io::BufReader::new(fs_err::File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| io_at(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let m = serde_json::from_str(&line).map_err(|e| Error::InvalidRecord {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trls() {
        let v = serde_json::to_value(StepMetrics::default()).unwrap();
        for key in [
            "reward",
            "reward_std",
            "frac_reward_zero_std",
            "completions/mean_length",
            "completions/clipped_ratio",
            "kl",
            "entropy",
            "clip_ratio/low_mean",
            "clip_ratio/high_mean",
            "clip_ratio/region_mean",
            "loss",
            "grad_norm",
            "learning_rate",
            "step_time",
            "num_tokens",
            "format_error_rate",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn write_read_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = JsonlWriter::append(&path).unwrap();
        for step in 1..=4 {
            w.write(&StepMetrics { step, reward: step as f64, ..StepMetrics::default() }).unwrap();
        }
        drop(w);
        truncate_log_after(&path, 2).unwrap();
        let m = read_metrics(&path).unwrap();
        assert_eq!(m.iter().map(|m| m.step).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(m[1].reward, 2.0);
    }
}
