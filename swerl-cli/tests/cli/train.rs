//! `swerl train` end to end on a tiny random model written in Hugging Face layout.

use std::path::Path;

use anyhow::Result;

use crate::helpers::{assert_code, stderr, swerl};

fn write_tiny_model(dir: &Path) -> Result<()> {
    Ok(swerl_model::testing::write_byte_level_checkpoint(dir, 1, 1)?)
}

fn write_data(path: &Path) -> Result<()> {
    let mut lines = Vec::new();
    for i in 0..3 {
        lines.push(
            serde_json::json!({
                "instance_id": format!("o__r-{i}"),
                "problem_statement": format!("f{i} returns the wrong value"),
                "code_context": {format!("m{i}.py"): format!("def f{i}():\n    return {i}\n")},
                "oracle_new_content": {format!("m{i}.py"): format!("def f{i}():\n    return {}\n", i + 1)},
                "repo": "o/r"
            })
            .to_string(),
        );
    }
    lines.insert(1, "{\"instance_id\": 5}".to_owned());
    std::fs::write(path, lines.join("\n") + "\n")?;
    Ok(())
}

fn train(args: &[&str]) -> std::process::Output {
    swerl().args(args).output().expect("runs swerl")
}

#[test]
fn trains_checkpoints_and_resumes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;
    let data = tmp.path().join("rl.jsonl");
    write_data(&data)?;
    let config = tmp.path().join("train.toml");
    std::fs::write(
        &config,
        "group_size = 2\nmax_new_tokens = 3\nmicro_batch_size = 2\nsave_steps = 1\nlearning_rate = 1e-3\n",
    )?;
    let out = tmp.path().join("run");
    let (m, d, o, c) =
        (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap(), config.to_str().unwrap());
    let common = [
        "train",
        "--model",
        m,
        "--data",
        d,
        "--out",
        o,
        "--config",
        c,
        "--prompts-per-step",
        "1",
        "--seed",
        "4",
    ];

    let first = train(&[&common[..], &["--steps", "2"]].concat());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("instance_id"),
        "malformed line not reported: {stderr}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    assert_eq!(metrics.lines().count(), 2);
    let step: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap())?;
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
        assert!(step.get(key).is_some(), "metrics miss {key}");
    }
    assert_eq!(step["format_error_rate"], 1.0, "a random model cannot write the format");
    assert!(out.join("checkpoint-2/model/model.safetensors").is_file());
    assert!(out.join("checkpoint-2/optimizer.safetensors").is_file());
    assert!(out.join("completions.jsonl").is_file());
    assert!(String::from_utf8_lossy(&first.stdout).contains("checkpoint-2"));

    let resumed = train(&[&common[..], &["--steps", "3", "--resume"]].concat());
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resumed from"));
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl"))?.lines().count(), 3);
    Ok(())
}

#[test]
fn bad_settings_are_reported_with_their_key() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, "group_sise = 4\n")?;
    let data = tmp.path().join("rl.jsonl");
    write_data(&data)?;
    let out = train(&[
        "train",
        "--model",
        "missing",
        "--data",
        data.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("group_sise"));
    let out = train(&[
        "train",
        "--model",
        "missing",
        "--data",
        data.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--group-size",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("group_size"));
    Ok(())
}

#[test]
#[cfg(not(feature = "nccl"))]
fn a_launcher_environment_without_nccl_is_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("rl.jsonl");
    write_data(&data)?;
    let out = swerl()
        .args(["train", "--model", "missing", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path())
        .env("WORLD_SIZE", "2")
        .env("RANK", "0")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WORLD_SIZE=2") && stderr.contains("--features nccl"), "{stderr}");
    Ok(())
}

/// Items 2 and 16: a line of invalid UTF-8 aborted the run; skipped and truncated instances
/// were counted, never named.
#[test]
fn names_bad_lines_and_the_instances_the_prompt_budget_skips() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;
    let data = tmp.path().join("rl.jsonl");
    write_data(&data)?;
    let mut bytes = std::fs::read(&data)?;
    bytes.extend_from_slice(b"{\"instance_id\": \"\xff\"}\n");
    std::fs::write(&data, bytes)?;
    let out = train(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        tmp.path().join("run").to_str().unwrap(),
        "--max-prompt-tokens",
        "8",
        "--prompt-overflow",
        "skip",
    ]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("line 5: invalid UTF-8"), "{err}");
    assert!(err.contains("3 instances skipped") && err.contains("o__r-0, o__r-1, o__r-2"), "{err}");
    assert!(err.contains("no instance fits"), "{err}");
    Ok(())
}

fn tiny_run_args<'a>(model: &'a str, data: &'a str, out: &'a str, seed: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        model,
        "--data",
        data,
        "--out",
        out,
        "--steps",
        "1",
        "--prompts-per-step",
        "1",
        "--group-size",
        "2",
        "--max-new-tokens",
        "3",
        "--save-steps",
        "0",
        "--seed",
        seed,
    ]
}

/// A tiny model, RL data and a run directory under `dir`: their paths (model, data, out).
fn tiny_run_files(dir: &Path) -> Result<[String; 3]> {
    let model = dir.join("model");
    write_tiny_model(&model)?;
    let data = dir.join("rl.jsonl");
    write_data(&data)?;
    Ok([model, data, dir.join("run")].map(|p| p.to_string_lossy().into_owned()))
}

/// Rollouts sampled with bf16 weights (f32 training): a step runs and is logged; a bad
/// precision is refused before anything loads.
#[test]
fn rollouts_sample_with_the_rollout_dtype() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let [m, d, o] = tiny_run_files(tmp.path())?;
    let (m, d, o) = (m.as_str(), d.as_str(), o.as_str());
    let out = Path::new(o);
    let mut args = tiny_run_args(m, d, o, "3");
    args.extend(["--rollout-dtype", "bf16"]);
    let run = train(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl"))?.lines().count(), 1);
    let mut args = tiny_run_args(m, d, o, "3");
    args.extend(["--rollout-dtype", "f64"]);
    let bad = train(&args);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--rollout-dtype") && err.contains("`f64` is not model, f32, bf16 or f16"), "{err}");
    Ok(())
}

/// Item 4: `--resume` on a directory without a checkpoint emptied another run's logs.
#[test]
fn resume_without_a_checkpoint_leaves_other_runs_logs_alone() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let [m, d, o] = tiny_run_files(tmp.path())?;
    let (m, d, o) = (m.as_str(), d.as_str(), o.as_str());
    let out = Path::new(o);
    let first = train(&tiny_run_args(m, d, o, "1"));
    assert_code(&first, 0);
    std::fs::remove_dir_all(out.join("checkpoint-1"))?;
    let logs = |name: &str| std::fs::read(out.join(name)).unwrap();
    let (metrics, completions) = (logs("metrics.jsonl"), logs("completions.jsonl"));
    assert!(!metrics.is_empty() && !completions.is_empty());

    // Another run (another seed) asked to resume: refused, nothing touched.
    let other = train(&[&tiny_run_args(m, d, o, "2")[..], &["--resume"]].concat());
    assert_code(&other, 1);
    assert!(stderr(&other).contains("no checkpoint to resume"), "{}", stderr(&other));
    assert_eq!((logs("metrics.jsonl"), logs("completions.jsonl")), (metrics.clone(), completions));

    // The same run (it stopped before its first checkpoint) restarts cleanly.
    let same = train(&[&tiny_run_args(m, d, o, "1")[..], &["--resume"]].concat());
    assert_code(&same, 0);
    assert!(stderr(&same).contains("starting from scratch"), "{}", stderr(&same));
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl"))?.lines().count(), 1);
    Ok(())
}

/// Item 5: a model with NaN weights trained "successfully" and was checkpointed.
#[test]
fn a_model_with_nan_weights_is_refused_not_checkpointed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;
    let loaded = swerl_model::load(model.to_str().unwrap(), &swerl_model::LoadOptions::default())?;
    for (_, var) in loaded.model.named_parameters() {
        var.set(&(var.as_tensor().ones_like()? * f64::NAN)?)?;
    }
    let opts = swerl_model::SaveOptions::default();
    swerl_model::save_pretrained(&model, &loaded.model, None, None, &opts)?;
    let data = tmp.path().join("rl.jsonl");
    write_data(&data)?;
    let out = tmp.path().join("run");
    let run =
        train(&tiny_run_args(model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap(), "1"));
    assert_code(&run, 1);
    assert!(stderr(&run).contains("non-finite logits"), "{}", stderr(&run));
    assert!(!out.join("checkpoint-1").exists());
    Ok(())
}
