//! `swerl sft`, `swerl eval repair --oracle-files`, `swerl train --eval-data` and `swerl plot`
//! end to end on a tiny random model: checkpoints and final model in Hugging Face layout,
//! held-out lines, TensorBoard files read by TensorBoard's own reader, images.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::helpers::{assert_code, jsonl, python_with, run, stderr, stdout};

const TENSORBOARD: &str = "tensorboard==2.21.0";

fn write_inputs(dir: &Path) -> Result<(String, String)> {
    let model = dir.join("model");
    swerl_model::testing::write_byte_level_checkpoint(&model, 1, 3)?;
    let data = dir.join("rl.jsonl");
    let lines: Vec<String> = (0..2)
        .map(|i| {
            serde_json::json!({
                "instance_id": format!("o__r-{i}"),
                "problem_statement": format!("f{i} returns the wrong value"),
                "code_context": {format!("m{i}.py"): format!("def f{i}():\n    return {i}\n")},
                "oracle_new_content": {format!("m{i}.py"): format!("def f{i}():\n    return {}\n", i + 1)},
            })
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n")?;
    Ok((model.display().to_string(), data.display().to_string()))
}

/// TensorBoard's scalars of a run directory, `{tag: [[step, value]]}`.
fn tensorboard_scalars(dir: &Path) -> BTreeMap<String, Vec<(u64, f64)>> {
    let python = python_with(TENSORBOARD, "tensorboard");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/read_tfevents.py");
    let out = std::process::Command::new(python).arg(script).arg(dir).output().expect("runs python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: BTreeMap<String, Vec<(u64, Value)>> = serde_json::from_slice(&out.stdout).expect("JSON");
    parsed
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|(s, x)| (s, x.as_f64().unwrap_or(f64::NAN))).collect()))
        .collect()
}

#[test]
fn sft_writes_checkpoints_final_model_logs_and_tensorboard_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (model, data) = write_inputs(tmp.path())?;
    let out = tmp.path().join("sft");
    let args = [
        "sft",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--save-steps",
        "2",
        "--learning-rate",
        "1e-3",
        "--eval-data",
        &data,
        "--eval-steps",
        "2",
        "--eval-max-new-tokens",
        "4",
        "--max-prompt-tokens",
        "4000",
    ];
    let o = run(args);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), out.join("final").display().to_string());
    assert!(stderr(&o).contains("examples: 2 ("), "{}", stderr(&o));
    for dir in ["checkpoint-2", "checkpoint-4", "final"] {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(out.join(dir).join(f).is_file(), "{dir}/{f}");
        }
    }
    assert!(out.join("checkpoint-4/optimizer.safetensors").is_file());
    let metrics = jsonl(&std::fs::read_to_string(out.join("metrics.jsonl"))?);
    assert_eq!(metrics.len(), 4);
    let evals = jsonl(&std::fs::read_to_string(out.join("eval.jsonl"))?);
    assert_eq!(evals.iter().map(|e| e["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 2, 4]);

    // TensorBoard reads the same numbers.
    let tb = tensorboard_scalars(&out);
    let losses: Vec<(u64, f64)> =
        metrics.iter().map(|m| (m["step"].as_u64().unwrap(), m["loss"].as_f64().unwrap())).collect();
    let tb_losses = &tb["train/loss"];
    assert_eq!(tb_losses.len(), 4);
    for ((s, want), (t, got)) in losses.iter().zip(tb_losses) {
        assert_eq!(s, t);
        assert_eq!(*got as f32, *want as f32, "step {s}");
    }
    assert_eq!(tb["eval/format_rate"].len(), 3);

    // The final model is a model every command takes: here, the held-out check as a command.
    let final_dir = out.join("final");
    let report_dir = tmp.path().join("repair");
    let repair = [
        "eval",
        "repair",
        "--oracle-files",
        "--model",
        final_dir.to_str().unwrap(),
        "--dataset",
        &data,
        "--max-new-tokens",
        "4",
        "--max-prompt-tokens",
        "4000",
        "--samples",
        "3",
        "--temperature",
        "1.0",
        "--out",
        report_dir.to_str().unwrap(),
    ];
    let o = run(repair);
    assert_code(&o, 0);
    let summary: Value = serde_json::from_str(stdout(&o).trim())?;
    assert_eq!((summary["instances"].as_u64(), summary["n"].as_u64()), (Some(2), Some(6)));
    let answers = jsonl(&std::fs::read_to_string(report_dir.join("answers.jsonl"))?);
    let samples: Vec<(String, u64)> = answers
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["sample"].as_u64().unwrap()))
        .collect();
    assert_eq!(samples[..3], [("o__r-0".into(), 0), ("o__r-0".into(), 1), ("o__r-0".into(), 2)]);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(report_dir.join("summary.json"))?)?;
    assert_eq!(written, summary);
    // SWE-bench rows work too (the vendored Lite dev split, the files as the gold hunks show them).
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/swebench/lite-dev.json");
    let o = run([
        "eval",
        "repair",
        "--oracle-files",
        "--model",
        final_dir.to_str().unwrap(),
        "--dataset",
        dev.to_str().unwrap(),
        "--max-new-tokens",
        "2",
        "--max-prompt-tokens",
        "4000",
        "--prompt-overflow",
        "skip",
    ]);
    assert_code(&o, 0);
    let summary: Value = serde_json::from_str(stdout(&o).trim())?;
    assert!(summary["instances"].as_u64().is_some_and(|n| (5..=23).contains(&n)), "{summary}");

    // Resuming a finished run changes nothing; after a crash past the step-2 checkpoint, the
    // resumed run logs steps 3 and 4 again and TensorBoard drops the crashed run's values.
    let mut again = args.to_vec();
    again.push("--resume");
    assert_code(&run(&again), 0);
    assert_eq!(jsonl(&std::fs::read_to_string(out.join("metrics.jsonl"))?).len(), 4);
    for gone in ["checkpoint-4", "final"] {
        std::fs::remove_dir_all(out.join(gone))?;
    }
    assert_code(&run(&again), 0);
    let resumed = jsonl(&std::fs::read_to_string(out.join("metrics.jsonl"))?);
    assert_eq!(resumed.iter().map(|m| m["step"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let tb = tensorboard_scalars(&out);
    assert_eq!(tb["train/loss"].iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4], "{tb:?}");
    assert_eq!(tb["eval/reward"].iter().map(|p| p.0).collect::<Vec<_>>(), [0, 2, 4], "{tb:?}");
    // Every held-out answer of every check, once, with why it failed.
    let answers = jsonl(&std::fs::read_to_string(out.join("eval_answers.jsonl"))?);
    let keys: Vec<(u64, &str)> =
        answers.iter().map(|a| (a["step"].as_u64().unwrap(), a["id"].as_str().unwrap())).collect();
    assert_eq!(
        keys,
        [(0, "o__r-0"), (0, "o__r-1"), (2, "o__r-0"), (2, "o__r-1"), (4, "o__r-0"), (4, "o__r-1")]
    );
    assert!(answers.iter().all(|a| a["format_error"] == true && a["reason"].is_string()), "{answers:?}");
    let o = run(args);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("already holds a run"), "{}", stderr(&o));
    Ok(())
}

#[test]
fn train_runs_the_held_out_check_and_plot_draws_both_runs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (model, data) = write_inputs(tmp.path())?;
    let out = tmp.path().join("grpo");
    let o = run([
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--prompts-per-step",
        "1",
        "--group-size",
        "2",
        "--max-new-tokens",
        "4",
        "--save-steps",
        "0",
        "--eval-data",
        &data,
        "--eval-steps",
        "1",
        "--overlong-buffer",
        "2",
    ]);
    assert_code(&o, 0);
    let evals = jsonl(&std::fs::read_to_string(out.join("eval.jsonl"))?);
    assert_eq!(evals.iter().map(|e| e["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(evals.iter().all(|e| e["eval/n"] == 2 && e["eval/reward"].as_f64().is_some()));
    assert!(stderr(&o).contains("held-out @ step 2: format"), "{}", stderr(&o));
    // Every completion breaks the format (-1), and those past 4 - 2 tokens lose up to 1 more.
    let metrics = jsonl(&std::fs::read_to_string(out.join("metrics.jsonl"))?);
    for m in &metrics {
        let (reward, len) = (m["reward"].as_f64().unwrap(), m["completions/max_length"].as_f64().unwrap());
        assert!(m["format_error_rate"] == 1.0 && (-2.0..=-1.0).contains(&reward), "{m}");
        assert_eq!(reward < -1.0, len > 2.0, "{m}");
    }
    let tb = tensorboard_scalars(&out);
    assert_eq!(tb["train/reward"].len(), 2);

    // --eval-data without --eval-steps is a usage error.
    let o = run([
        "train",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        tmp.path().join("x").to_str().unwrap(),
        "--eval-data",
        &data,
    ]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--eval-steps"), "{}", stderr(&o));

    // One image with both runs' curves (a GRPO run and an SFT-like run of metrics lines).
    let sft = tmp.path().join("sft");
    std::fs::create_dir(&sft)?;
    std::fs::write(
        sft.join("metrics.jsonl"),
        "{\"step\":1,\"loss\":2.0}\nnot json\n{\"step\":2,\"loss\":1.0}\n",
    )?;
    for ext in ["png", "svg"] {
        let image = tmp.path().join(format!("curves.{ext}"));
        let o = run(["plot", out.to_str().unwrap(), sft.to_str().unwrap(), "--out", image.to_str().unwrap()]);
        assert_code(&o, 0);
        assert!(stderr(&o).contains("metrics.jsonl:2: not a metrics line"), "{}", stderr(&o));
        let bytes = std::fs::read(&image)?;
        if ext == "png" {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{} bytes", bytes.len());
        } else {
            let svg = String::from_utf8(bytes)?;
            for text in ["grpo", "sft", "held-out reward", "loss"] {
                assert!(svg.contains(text), "{text} missing from the SVG");
            }
        }
    }
    let o = run(["plot", out.to_str().unwrap(), "--out", tmp.path().join("c.gif").to_str().unwrap()]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("c.gif"), "{}", stderr(&o));
    Ok(())
}

#[test]
fn repair_needs_oracle_files() {
    let o = run(["eval", "repair", "--model", "m", "--data", "d"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--oracle-files"), "{}", stderr(&o));
}
