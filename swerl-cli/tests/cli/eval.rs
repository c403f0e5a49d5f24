//! `swerl eval harness` end to end: an in-test git repository with a Python package, graded
//! through the real environment build (PyPI) and the sandbox, then rerun.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};
use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};

use crate::helpers::{assert_code, run, stderr, stdout};

#[test]
fn usage_errors_exit_2_and_a_missing_dataset_is_named() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dataset = tmp.path().join("nothing.jsonl");
    let d = dataset.to_str().unwrap();
    let base = ["eval", "harness", "--dataset", d, "--predictions", "gold", "--repos", ".", "--run-id", "r"];
    for extra in [&["--max-workers", "0"][..], &["--grading", "v9"], &["--timeout", "0"]] {
        let o = run(base.iter().chain(extra));
        assert_code(&o, 2);
    }
    let o =
        run(["eval", "harness", "--dataset", d, "--predictions", "gold", "--repos", ".", "--run-id", "a/b"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("path separators"), "{}", stderr(&o));
    let o = run(base);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("nothing.jsonl"), "{}", stderr(&o));
    Ok(())
}

#[test]
fn grades_gold_wrong_and_empty_then_a_rerun_skips_them() -> Result<()> {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return Ok(());
    }
    swerl_eval::sandbox::check_available()?;
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let tmp = tempfile::tempdir()?;
    let calc = CalcRepo::create(&tmp.path().join("repos"))?;
    let path = |name: &str| tmp.path().join(name);
    let mut dataset = String::new();
    let mut preds = String::new();
    for (id, patch) in [
        ("calc-gold", calc.gold()?),
        ("calc-wrong", calc.patch_with("    return 0")?),
        ("calc-empty", String::new()),
    ] {
        dataset.push_str(&format!("{}\n", calc.instance(id)?));
        let pred = json!({"instance_id": id, "model_name_or_path": "org/m", "model_patch": patch});
        preds.push_str(&format!("{pred}\n"));
    }
    std::fs::write(path("dataset.jsonl"), dataset)?;
    std::fs::write(path("preds.jsonl"), preds)?;
    std::fs::write(path("specs.json"), json!({REPO: {"1.0": calc_spec(python)}}).to_string())?;
    // The environment cache is shared with swerl-eval's end-to-end test (same content key).
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let args: Vec<String> = [
        "eval",
        "harness",
        "--dataset",
        &s(&path("dataset.jsonl")),
        "--predictions",
        &s(&path("preds.jsonl")),
        "--repos",
        &s(&path("repos")),
        "--run-id",
        "cli",
        "--specs",
        &s(&path("specs.json")),
        "--cache-dir",
        &s(&cache),
        "--report-dir",
        &s(&path("reports")),
        "--log-root",
        &s(&path("logs")),
        "--max-workers",
        "2",
        "--timeout",
        "120",
    ]
    .map(str::to_owned)
    .to_vec();

    let first = run(&args);
    assert_code(&first, 0);
    let out = stdout(&first);
    for (bucket, n) in
        [("resolved", 1), ("unresolved", 1), ("empty", 1), ("error", 0), ("environment unavailable", 0)]
    {
        let line = out.lines().find(|l| l.trim_start().starts_with(bucket)).unwrap_or_default();
        assert!(line.split_whitespace().last() == Some(&n.to_string()), "{bucket}: {n} in\n{out}");
    }
    assert!(out.contains("grading v4"), "{out}");
    assert!(out.contains("calc-wrong [unresolved]"), "{out}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(path("reports/org__m.cli.json"))?)?;
    assert_eq!(summary["resolved_ids"], json!(["calc-gold"]));
    assert_eq!(summary["empty_patch_ids"], json!(["calc-empty"]));
    assert!(path("logs/cli/org__m/calc-gold/report.json").is_file());

    let again = run(&args);
    assert_code(&again, 0);
    assert!(stderr(&again).contains("already graded"), "{}", stderr(&again));
    assert_eq!(stdout(&again).lines().take(6).collect::<Vec<_>>(), out.lines().take(6).collect::<Vec<_>>());
    Ok(())
}
