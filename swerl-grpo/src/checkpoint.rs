//! Checkpoint layout: `DIR/checkpoint-<step>/` holding
//!
//! | file | content |
//! | --- | --- |
//! | `model/` | the policy as [`crate::Policy::save`] writes it (Hugging Face layout for real models) |
//! | `optimizer.safetensors` | the optimizer's state (moments, update count) |
//! | `trainer_state.json` | [`TrainerState`]: step, updates, data position, seed scheme, token count |
//! | `config.toml` | the run's [`crate::TrainConfig`] |
//!
//! A checkpoint is written to `checkpoint-<step>.tmp` and renamed when complete, so a crash never
//! leaves a half-written `checkpoint-<step>`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::SamplerState;

/// Everything besides weights and optimizer moments that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: u64,
    /// Optimizer updates applied.
    pub updates: u64,
    /// Prompt + completion tokens processed.
    pub num_tokens: u64,
    /// Position in the data.
    pub sampler: SamplerState,
    /// Number of prompts the position refers to (a resumed run must see the same data).
    pub num_prompts: usize,
    /// The run's seed. Every random choice is a function of `(seed, step, prompt, sample)`
    /// (SplitMix64 mixing), so with `step` this is the whole RNG state.
    pub seed: u64,
    /// Steps in a row skipped for a non-finite loss or gradient.
    pub consecutive_nonfinite: u32,
}

impl TrainerState {
    /// The state of a run that has not started.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            updates: 0,
            num_tokens: 0,
            sampler: SamplerState::default(),
            num_prompts: 0,
            seed,
            consecutive_nonfinite: 0,
        }
    }
}

/// File names inside a checkpoint directory.
pub const MODEL_DIR: &str = "model";
/// The optimizer's state file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The trainer's state file.
pub const STATE_FILE: &str = "trainer_state.json";
/// The configuration file.
pub const CONFIG_FILE: &str = "config.toml";

/// `DIR/checkpoint-<step>`.
pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoint-{step}"))
}

/// The complete checkpoints in `out`, sorted by step.
pub fn list_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    if !out.exists() {
        return Ok(found);
    }
    for entry in fs_err::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(step) =
            name.to_str().and_then(|n| n.strip_prefix("checkpoint-")).and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).is_file() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint in `out`.
pub fn latest_checkpoint(out: &Path) -> Result<Option<(u64, PathBuf)>> {
    Ok(list_checkpoints(out)?.pop())
}

/// Reads a checkpoint's trainer state.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
}

/// Writes a trainer state file.
pub(crate) fn write_state(dir: &Path, state: &TrainerState) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let text =
        serde_json::to_string_pretty(state).map_err(|source| Error::Json { path: path.clone(), source })?;
    fs_err::write(path, text)?;
    Ok(())
}

/// The data sampler (`seed`, `shuffle`) of a run over `n` items: at the state's position when
/// `resumed` (which must have been made over the same `n` items, called `what`), else at the
/// start.
pub(crate) fn sampler_for(
    state: &TrainerState,
    out_dir: &Path,
    (n, seed, shuffle): (usize, u64, bool),
    resumed: bool,
    what: &str,
) -> Result<crate::PromptSampler> {
    let mut sampler = crate::PromptSampler::new(n, seed, shuffle);
    if resumed {
        if state.num_prompts != n {
            return Err(Error::Checkpoint {
                path: out_dir.to_owned(),
                message: format!(
                    "the checkpoint was made over {} {what} but the data now has {n}",
                    state.num_prompts
                ),
            });
        }
        sampler.restore(state.sampler);
    }
    Ok(sampler)
}

/// Refuses to save weights holding NaN or infinity (the checkpoint a resume or an evaluation
/// would pick up), naming the parameter.
pub(crate) fn check_finite(params: &[candle_core::Var], dir: &Path) -> Result<()> {
    for (i, var) in params.iter().enumerate() {
        let total =
            var.as_tensor().abs()?.sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        if !total.is_finite() {
            return Err(Error::Checkpoint {
                path: dir.to_owned(),
                message: format!(
                    "not saved: parameter {i} (shape {:?}) holds NaN or infinite values",
                    var.as_tensor().dims()
                ),
            });
        }
    }
    Ok(())
}

/// A new run must not append to another run's logs (`logs`, non-empty), nor leave its
/// checkpoints where a later resume would pick them up: the error names what is there.
pub(crate) fn refuse_busy_out_dir(out_dir: &Path, logs: &[&str]) -> Result<()> {
    let logged = logs
        .iter()
        .map(|name| out_dir.join(name))
        .find(|log| fs_err::metadata(log).is_ok_and(|m| m.len() > 0));
    let what = match (latest_checkpoint(out_dir)?, logged) {
        (Some((_, dir)), _) => dir.display().to_string(),
        (None, Some(log)) => format!("{}, and no checkpoint to resume", log.display()),
        (None, None) => return Ok(()),
    };
    Err(Error::InvalidConfig {
        key: "out".to_owned(),
        message: format!(
            "{} already holds a run ({what}): resume it, or start in another directory",
            out_dir.display()
        ),
    })
}

/// Records a starting run's settings in `out_dir/run_config.toml`, through a temporary file
/// renamed into place (a resume without a checkpoint restarts only a run with the same ones).
pub(crate) fn write_run_config(out_dir: &Path, toml: &str) -> Result<()> {
    fs_err::create_dir_all(out_dir)?;
    let file = crate::RUN_CONFIG_FILE;
    let tmp = out_dir.join(format!("{file}.tmp"));
    fs_err::write(&tmp, toml)?;
    fs_err::rename(&tmp, out_dir.join(file))?;
    Ok(())
}

/// Deletes the oldest checkpoints so at most `keep` remain (0 keeps all).
pub(crate) fn prune(out: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let all = list_checkpoints(out)?;
    if all.len() > keep {
        for (_, dir) in &all[..all.len() - keep] {
            fs_err::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_checkpoints_are_listed_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for step in [2u64, 10, 4] {
            let d = checkpoint_dir(dir.path(), step);
            fs_err::create_dir_all(&d).unwrap();
            write_state(&d, &TrainerState { step, ..TrainerState::new(1) }).unwrap();
        }
        fs_err::create_dir_all(dir.path().join("checkpoint-12.tmp")).unwrap();
        fs_err::create_dir_all(dir.path().join("checkpoint-11")).unwrap(); // no state: incomplete
        let steps: Vec<u64> = list_checkpoints(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![2, 4, 10]);
        assert_eq!(read_state(&checkpoint_dir(dir.path(), 4)).unwrap().step, 4);
        prune(dir.path(), 2).unwrap();
        let steps: Vec<u64> = list_checkpoints(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![4, 10]);
    }
}
