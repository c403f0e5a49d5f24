//! Checkpoints and `--resume`: a run interrupted after a checkpoint and resumed gives the same
//! metrics and weights as an uninterrupted one; non-finite steps leave the weights untouched.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use anyhow::Result;
use swerl_grpo::{Error, LossType, StepMetrics, TrainConfig, TrainEvent, Trainer, read_metrics};

use crate::toy::{Bigram, TargetTask, bigram_trainer};

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        prompts_per_step: 2,
        group_size: 4,
        max_new_tokens: 5,
        micro_batch_size: 3,
        num_iterations: 2,
        beta: 0.04,
        epsilon_high: 0.28,
        loss_type: LossType::Grpo,
        learning_rate: 0.05,
        warmup_steps: 2,
        lr_scheduler: swerl_model::ScheduleKind::Cosine,
        save_steps: 3,
        seed: 5,
        ..TrainConfig::default()
    }
}

fn trainer(cfg: TrainConfig, dir: &std::path::Path) -> Result<Trainer<Bigram>> {
    Ok(bigram_trainer(cfg, dir)?)
}

fn strip(m: Vec<StepMetrics>) -> Vec<StepMetrics> {
    m.into_iter().map(|m| m.without_timings()).collect()
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_one() -> Result<()> {
    let task = TargetTask::new(5, 5, 1.0);
    let straight = tempfile::tempdir()?;
    let mut a = trainer(config(7), straight.path())?;
    a.train(&task, &mut |_| {})?;
    let expected = strip(read_metrics(straight.path().join("metrics.jsonl"))?);
    assert_eq!(expected.len(), 7);
    assert!(expected.iter().all(|m| m.updates == 2 && m.kl >= 0.0));
    assert!(expected.iter().skip(1).any(|m| m.kl > 0.0), "KL never moved");

    // Interrupted after step 4 (a checkpoint exists at step 3 only).
    let broken = tempfile::tempdir()?;
    let mut b = trainer(config(7), broken.path())?;
    let crash = catch_unwind(AssertUnwindSafe(|| {
        b.train(&task, &mut |e| {
            if let TrainEvent::Step(m) = e
                && m.step == 4
            {
                panic!("simulated crash");
            }
        })
    }));
    assert!(crash.is_err());
    assert_eq!(read_metrics(broken.path().join("metrics.jsonl"))?.len(), 4);

    let mut c = trainer(config(7), broken.path())?;
    assert_eq!(c.resume()?, Some(3));
    c.train(&task, &mut |_| {})?;
    let got = strip(read_metrics(broken.path().join("metrics.jsonl"))?);
    assert_eq!(got, expected);
    assert_eq!(c.policy().weights(), a.policy().weights());
    assert!(broken.path().join("checkpoint-7/model/model.safetensors").is_file());
    assert!(broken.path().join("checkpoint-7/optimizer.safetensors").is_file());
    assert!(broken.path().join("checkpoint-7/config.toml").is_file());

    // A new run in a directory holding one is refused instead of mixing the two.
    let err = trainer(config(7), straight.path())?.train(&task, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already holds a run"), "{err}");
    assert_eq!(read_metrics(straight.path().join("metrics.jsonl"))?.len(), 7);
    Ok(())
}

#[test]
fn resuming_a_run_without_checkpoint_restarts_it_cleanly() -> Result<()> {
    let task = TargetTask::new(5, 5, 1.0);
    let cfg = TrainConfig { save_steps: 0, ..config(3) };
    let straight = tempfile::tempdir()?;
    trainer(cfg.clone(), straight.path())?.train(&task, &mut |_| {})?;
    let expected = strip(read_metrics(straight.path().join("metrics.jsonl"))?);

    // Crashed at step 2, before any checkpoint (the final one comes at the end).
    let broken = tempfile::tempdir()?;
    let mut b = trainer(cfg.clone(), broken.path())?;
    let crash = catch_unwind(AssertUnwindSafe(|| {
        b.train(&task, &mut |e| {
            if let TrainEvent::Step(m) = e
                && m.step == 2
            {
                panic!("simulated crash");
            }
        })
    }));
    assert!(crash.is_err());
    assert_eq!(read_metrics(broken.path().join("metrics.jsonl"))?.len(), 2);
    let mut c = trainer(cfg, broken.path())?;
    assert_eq!(c.resume()?, None);
    c.train(&task, &mut |_| {})?;
    assert_eq!(strip(read_metrics(broken.path().join("metrics.jsonl"))?), expected);
    Ok(())
}

#[test]
fn non_finite_steps_are_skipped_without_touching_weights_then_stop() -> Result<()> {
    let task = TargetTask::new(4, 5, 1.0);
    let dir2 = tempfile::tempdir()?;
    let cfg =
        TrainConfig { num_iterations: 1, beta: 0.0, max_nonfinite_steps: 2, save_steps: 0, ..config(6) };
    let mut t = trainer(TrainConfig { steps: 2, ..cfg.clone() }, dir2.path())?;
    t.train(&task, &mut |_| {})?;
    let before = t.policy().weights();
    let mut t2 = trainer(cfg, dir2.path())?;
    t2.resume()?;
    t2.policy().poison.store(true, Ordering::SeqCst);
    let mut skipped = Vec::new();
    let err = t2
        .train(&task, &mut |e| {
            if let TrainEvent::StepSkipped { step, reason } = e {
                skipped.push((*step, reason.to_string()));
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::NonFinite { step: 4, consecutive: 2, .. }), "{err}");
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].1.contains("non-finite loss"), "{}", skipped[0].1);
    assert_eq!(t2.policy().weights(), before, "weights changed by a non-finite step");
    let m = read_metrics(dir2.path().join("metrics.jsonl"))?;
    assert_eq!(m.len(), 3);
    assert_eq!(m[2].updates, 0);
    assert!(m[2].skipped.is_some());
    Ok(())
}

#[test]
fn resume_without_a_checkpoint_never_empties_another_runs_logs() -> Result<()> {
    let task = TargetTask::new(5, 5, 1.0);
    let dir = tempfile::tempdir()?;
    // Logs of a run with other settings that never checkpointed, and logs of unknown origin.
    let mut other = trainer(TrainConfig { save_steps: 0, ..config(2) }, dir.path())?;
    other.train(&task, &mut |_| {})?;
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        }
    }
    let metrics = std::fs::read(dir.path().join("metrics.jsonl"))?;
    let completions = std::fs::read(dir.path().join("completions.jsonl"))?;
    assert!(!metrics.is_empty() && !completions.is_empty());
    let untouched = || -> Result<()> {
        assert_eq!(std::fs::read(dir.path().join("metrics.jsonl"))?, metrics);
        assert_eq!(std::fs::read(dir.path().join("completions.jsonl"))?, completions);
        Ok(())
    };

    let mut c = trainer(TrainConfig { seed: 99, ..config(2) }, dir.path())?;
    let err = c.resume().unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl, and no checkpoint to resume"), "{err}");
    untouched()?;

    std::fs::remove_file(dir.path().join(swerl_grpo::RUN_CONFIG_FILE))?;
    let mut c = trainer(TrainConfig { save_steps: 0, ..config(2) }, dir.path())?;
    let err = c.resume().unwrap_err().to_string();
    assert!(err.contains("already holds a run"), "{err}");
    untouched()
}

#[test]
fn a_model_with_non_finite_weights_is_never_checkpointed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let t = trainer(config(2), dir.path())?;
    let table = &t.policy().table;
    let nan = (table.as_tensor().ones_like()? * f64::NAN)?;
    table.set(&nan)?;
    let err = t.save_checkpoint().unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("holds NaN or infinite values"), "{err}");
    assert!(swerl_grpo::latest_checkpoint(dir.path())?.is_none());
    assert!(!dir.path().join("checkpoint-0.tmp").exists());
    Ok(())
}
