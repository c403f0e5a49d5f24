//! `swerl mine` end to end, on hour files written in-test.

use std::path::{Path, PathBuf};

use crate::helpers::{
    assert_code, jsonl, pr_event, run, stderr, stdout, summary, swerl, write_archive, write_gz,
};

fn mine(events: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    swerl().args(["mine", "--events"]).arg(events).arg("--out").arg(out).args(extra).output().expect("runs")
}

#[test]
fn mines_an_archive_and_writes_the_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 4);
    let out = tmp.path().join("out");
    let o = mine(&events, &out, &[]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("12 events"), "{}", stdout(&o));
    assert!(stdout(&o).contains("12 PRs, 12 merged"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(out.join("prs.jsonl")).unwrap().lines().count(), 12);
    assert_eq!(summary(&out)["prs"]["merged"], 12);
    assert!(!out.join("instances.jsonl").exists()); // no clones given
}

/// Items 6 and 18: `mine merge` failed in every argument order; invalid shards exited 1.
#[test]
fn the_two_shard_workflow_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 3);
    let whole = tmp.path().join("whole");
    assert_code(&mine(&events, &whole, &[]), 0);
    let shards: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("shard{i}"))).collect();
    for (i, d) in shards.iter().enumerate() {
        let o = mine(&events, d, &["--shard", &format!("{i}/2")]);
        assert_code(&o, 0);
        assert!(!d.join("prs.jsonl").exists());
    }
    let merged = tmp.path().join("merged");
    let o = swerl().args(["mine", "merge"]).args(&shards).arg("--out").arg(&merged).output().unwrap();
    assert_code(&o, 0);
    let again = tmp.path().join("merged-again");
    let o = swerl()
        .args(["mine", "merge", "--out"])
        .arg(&again)
        .arg(&shards[1])
        .arg(&shards[0])
        .output()
        .unwrap();
    assert_code(&o, 0);
    for f in ["prs.jsonl", "threads.jsonl"] {
        let want = std::fs::read(whole.join(f)).unwrap();
        assert_eq!(want, std::fs::read(merged.join(f)).unwrap(), "{f}");
        assert_eq!(want, std::fs::read(again.join(f)).unwrap(), "{f}");
    }
    assert_eq!(summary(&merged)["scan"]["events"], 9);

    // A missing or repeated shard would lose or double events: refused.
    let o = swerl()
        .args(["mine", "merge"])
        .arg(&shards[0])
        .arg("--out")
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(stderr(&o).contains("missing 1/2"), "{}", stderr(&o));
    let o = swerl()
        .args(["mine", "merge"])
        .args([&shards[0], &shards[0], &shards[1]])
        .arg("--out")
        .arg(tmp.path().join("y"))
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert!(stderr(&o).contains("twice"), "{}", stderr(&o));

    // Usage errors exit 2, like clap's.
    for bad in [["--shard", "2/2"], ["--range", "2021"]] {
        let o = mine(&events, &tmp.path().join("bad"), &bad);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(bad[1]), "{}", stderr(&o));
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = tempfile::tempdir().unwrap();
    let o = swerl().args(["mine", "--out"]).arg(out.path()).output().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--events"));
    let o = swerl().args(["mine", "--events", "/nonexistent/dir", "--out"]).arg(out.path()).output().unwrap();
    assert_code(&o, 1);
    assert!(stderr(&o).contains("/nonexistent/dir"));
    let o = swerl().args(["mine", "--prs", "x.jsonl", "--out"]).arg(out.path()).output().unwrap();
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--repos"), "{}", stderr(&o));
}

/// Item 15: `--print-config` required `--out`.
#[test]
fn prints_the_default_configuration_without_out() {
    let o = run(["mine", "--print-config"]);
    assert_code(&o, 0);
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(config["filters"]["max_changed_files"], 50);
    assert_eq!(config["relevant"]["max_files"], 3);
    assert_eq!(config["scan"]["max_line_bytes"], 16 << 20);
}

/// Item 12: unknown keys of `--config` were ignored.
#[test]
fn unknown_config_keys_are_refused_with_the_valid_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("mine.json");
    std::fs::write(&config, r#"{"filters": {"max_changed_filez": 3}}"#).unwrap();
    let o = swerl().args(["mine", "--print-config", "--config"]).arg(&config).output().unwrap();
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("filters.max_changed_filez") && err.contains("max_changed_files"), "{err}");
    assert!(err.contains("mine.json"), "{err}");
}

/// Item 7: a `dot -> .` link scanned the same file 41 times; a loop ran forever.
#[cfg(unix)]
#[test]
fn symlink_loops_end_and_each_file_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 2);
    std::os::unix::fs::symlink(".", events.join("dot")).unwrap();
    std::os::unix::fs::symlink(&events, events.join("loop")).unwrap();
    let out = tmp.path().join("out");
    let o = mine(&events, &out, &[]);
    assert_code(&o, 0);
    assert_eq!(summary(&out)["scan"]["files"], 3);
    assert_eq!(summary(&out)["scan"]["events"], 6);
}

/// Item 8: `-j 100000` spent minutes creating threads.
#[test]
fn jobs_are_capped() {
    let o = run(["mine", "--print-config", "-j", "100000"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("1024"), "{}", stderr(&o));
}

/// Item 9: a line had no length cap (a 512 MB line took 533 MB per worker).
#[test]
fn an_overlong_line_is_a_reported_malformed_line() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let long = format!("{{\"padding\": \"{}\"}}", "x".repeat(5000));
    write_gz(&events.join("2021-07-21-0.json.gz"), &[pr_event(1, "o/r", 1), long, pr_event(2, "o/r", 2)]);
    let config = tmp.path().join("mine.json");
    std::fs::write(&config, r#"{"scan": {"max_line_bytes": 1000}}"#).unwrap();
    let out = tmp.path().join("out");
    let o = mine(&events, &out, &["--config", config.to_str().unwrap()]);
    assert_code(&o, 0);
    let s = summary(&out);
    assert_eq!(s["scan"]["events"], 2);
    assert_eq!(s["scan"]["malformed_lines"], 1);
    let message = s["scan"]["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("longer than 1000"), "{message}");
    assert_eq!(s["scan"]["problems"][0]["line"], 2);
}

/// Item 14: an empty `--events` directory or an inverted `--range` "succeeded" with nothing.
#[test]
fn nothing_to_mine_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = mine(&empty, &tmp.path().join("out"), &[]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("nothing to mine"), "{}", stderr(&o));
    let events = tmp.path().join("events");
    write_archive(&events, 1);
    let o = mine(&events, &tmp.path().join("out"), &["--range", "2021-07-22..2021-07-21"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("FROM is after TO"), "{}", stderr(&o));
    let o = mine(&events, &tmp.path().join("out"), &["--range", "2022-01-01.."]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("in the --range"), "{}", stderr(&o));
}

/// Item 15: with `--out` inside `--events`, a second run read the first one's outputs.
#[test]
fn the_output_directory_is_never_read_as_input() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 2);
    let out = events.join("out");
    for _ in 0..2 {
        assert_code(&mine(&events, &out, &[]), 0);
        let s = summary(&out);
        assert_eq!(s["scan"]["files"], 3);
        assert_eq!(s["scan"]["malformed_lines"], 0);
    }
}

/// Item 3: `--resume` reused the checkpoint of a file replaced since it was cut short.
#[test]
fn resume_rescans_a_file_replaced_since_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 3);
    let hour = events.join("2021-07-21-1.json.gz");
    let full = std::fs::read(&hour).unwrap();
    std::fs::write(&hour, &full[..full.len() - 12]).unwrap();
    let out = tmp.path().join("out");
    assert_code(&mine(&events, &out, &[]), 0);
    assert_eq!(summary(&out)["scan"]["truncated_files"], 1);
    // The download completes: the same name, the whole file.
    std::fs::write(&hour, &full).unwrap();
    let o = mine(&events, &out, &["--resume"]);
    assert_code(&o, 0);
    let s = summary(&out);
    assert_eq!(s["scan"]["truncated_files"], 0, "{s}");
    assert_eq!(s["scan"]["events"], 9);
    assert!(!stderr(&o).contains("ends early"), "{}", stderr(&o));
}

/// Item 13: checkpoints depended on how the path was spelled.
#[test]
fn resume_reuses_checkpoints_whatever_the_path_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 2);
    let out = tmp.path().join("out");
    assert_code(&mine(&events, &out, &[]), 0);
    // Mark the checkpoints, so that reusing them shows.
    let mut marked = 0;
    for e in std::fs::read_dir(out.join("parts")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".stats.json") {
            let mut s: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            s["events"] = 100.into();
            std::fs::write(&p, s.to_string()).unwrap();
            marked += 1;
        }
    }
    assert_eq!(marked, 3);
    let respelled = tmp.path().join("events").join("..").join("events").join(".");
    assert_code(&mine(&respelled, &out, &["--resume"]), 0);
    assert_eq!(summary(&out)["scan"]["events"], 300);
}

/// Item 13: two miners on one `--out` collided on the same temporary names.
#[test]
fn a_locked_output_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events");
    write_archive(&events, 1);
    let out = tmp.path().join("out");
    let lock = swerl_data::lock_output(&out).unwrap();
    let o = mine(&events, &out, &[]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("another `swerl mine`"), "{}", stderr(&o));
    drop(lock);
    assert_code(&mine(&events, &out, &[]), 0);
}

/// SWE-bench rows become RL instances whose oracle answer scores 1.0 (the vendored Lite dev
/// split: 23 rows); a row without a patch is named and skipped.
#[test]
fn swebench_rows_become_rl_instances() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/swebench/lite-dev.json");
    let out = tmp.path().join("dev.jsonl");
    let o = run(["mine", "swebench", "--dataset", dev.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_code(&o, 0);
    let text = std::fs::read_to_string(&out).expect("written");
    let rows = jsonl(&text);
    assert_eq!(rows.len(), 23);
    let data = swerl_reward::Dataset::load(&out).expect("loads as RL instances");
    for inst in &data.instances {
        let answer = swerl_reward::oracle_answer(inst).expect("an oracle answer");
        assert_eq!(swerl_reward::reward(&inst.code_context, &inst.oracle_new_content, &answer), 1.0);
    }
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"instance_id": "a__b-1", "problem_statement": "p"}]"#).expect("write");
    let o = run(["mine", "swebench", "--dataset", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("skipped line 1"), "{}", stderr(&o));
}
