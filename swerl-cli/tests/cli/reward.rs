//! `swerl reward` end to end: files and pipes, malformed lines, jobs, and what is refused.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::helpers::{assert_code, jsonl, run, stderr, swerl};

const GOOD: &str = r#"{"instance_id": "a", "code_context": {"a.py": "x = 1\n"}, "oracle_new_content": {"a.py": "x = 2\n"}, "output": "<think>t</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n</solution>"}"#;
const UNINDENTED: &str = r#"{"code_context": {"a.py": "if x:\n    y = 1\n"}, "oracle_new_content": {"a.py": "if x:\n    y = 2\n"}, "output": "<think>t</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\ny = 1\n=======\ny = 2\n>>>>>>> REPLACE\n```\n</solution>"}"#;

fn parse(stdout: &[u8]) -> Vec<Value> {
    jsonl(&String::from_utf8_lossy(stdout))
}

#[test]
fn scores_a_file_in_order_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.jsonl");
    let output = dir.path().join("scores.jsonl");
    std::fs::write(&input, format!("{GOOD}\n{{\"output\": 3}}\n{UNINDENTED}\n")).unwrap();
    let o = swerl().args(["reward", "--input"]).arg(&input).arg("--output").arg(&output).output().unwrap();
    assert_code(&o, 1); // a malformed line makes the exit status 1
    assert!(stderr(&o).contains("1 invalid lines"), "{}", stderr(&o));
    let rows = parse(&std::fs::read(&output).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["reward"], 1.0);
    assert_eq!(rows[0]["instance_id"], "a");
    assert_eq!(rows[0]["similarities"][0]["path"], "a.py");
    assert_eq!(rows[1]["reward"], Value::Null);
    assert_eq!(rows[1]["error"]["line"], 2);
    assert!(rows[1]["error"]["message"].as_str().unwrap().starts_with("line 2: "));
    assert_eq!(rows[2]["reward"], -1.0);
    assert_eq!(rows[2]["error"]["kind"], "search_not_found");
    assert_eq!(rows[2]["error"]["path"], "a.py");
}

#[test]
fn pipes_and_jobs_give_the_same_output() {
    let input: String =
        (0..300).map(|i| if i % 4 == 0 { format!("{UNINDENTED}\n") } else { format!("{GOOD}\n") }).collect();
    let run = |jobs: &str| {
        let mut child = swerl()
            .args(["reward", "--jobs", jobs, "--patch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_code(&out, 0);
        out.stdout
    };
    let one = run("1");
    assert_eq!(one, run("3"));
    let rows = parse(&one);
    assert_eq!(rows.len(), 300);
    assert!(rows[1]["patch"].as_str().unwrap().starts_with("diff --git a/a.py b/a.py\n"));
    assert_eq!(rows.iter().filter(|r| r["reward"] == -1.0).count(), 75);
}

#[test]
fn a_missing_input_file_is_named() {
    let o = run(["reward", "--input", "/nonexistent/cases.jsonl"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("/nonexistent/cases.jsonl"));
}

/// Item 1: `-i X -o X` truncated X to 0 bytes and exited 0.
#[test]
fn the_input_file_is_never_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.jsonl");
    std::fs::write(&input, format!("{GOOD}\n")).unwrap();
    let other_spelling = dir.path().join(".").join("cases.jsonl");
    for out in [&input, &other_spelling] {
        let o = swerl().args(["reward", "-i"]).arg(&input).arg("-o").arg(out).output().unwrap();
        assert_code(&o, 2);
        assert!(stderr(&o).contains("is the input file"), "{}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&input).unwrap(), format!("{GOOD}\n"));
    }
    // Also when the input comes through stdin.
    let o = swerl()
        .args(["reward", "-o"])
        .arg(&input)
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_code(&o, 2);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), format!("{GOOD}\n"));
}

/// Item 1: an interrupted `reward -o` left a half-written file; now the old file stays whole
/// until the new one is complete, and no temporary file is left behind.
#[test]
fn the_output_is_replaced_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("scores.jsonl");
    std::fs::write(&output, "old\n").unwrap();
    // Reading a directory fails after the output is opened.
    let input = dir.path().join("a-directory");
    std::fs::create_dir(&input).unwrap();
    let o = swerl().args(["reward", "-i"]).arg(&input).arg("-o").arg(&output).output().unwrap();
    assert_code(&o, 1);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "old\n");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let cases = dir.path().join("cases.jsonl");
    std::fs::write(&cases, format!("{GOOD}\n")).unwrap();
    let o = swerl().args(["reward", "-i"]).arg(&cases).arg("-o").arg(&output).output().unwrap();
    assert_code(&o, 0);
    assert_eq!(parse(&std::fs::read(&output).unwrap())[0]["reward"], 1.0);
}

/// Item 2: one line of invalid UTF-8 aborted the batch; now it is one error row naming it.
#[test]
fn a_line_of_invalid_utf8_is_one_error_row() {
    let mut input = format!("{GOOD}\n").into_bytes();
    input.extend_from_slice(b"{\"output\": \"\xff\"}\n");
    input.extend_from_slice(format!("{GOOD}\n").as_bytes());
    let mut child = swerl()
        .args(["reward"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 1);
    let rows = parse(&o.stdout);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["error"]["line"], 2);
    assert!(rows[1]["error"]["message"].as_str().unwrap().contains("invalid UTF-8"), "{}", rows[1]);
    assert_eq!(rows[2]["reward"], 1.0);
}

/// Item 17: error rows dropped the instance id and did not name the field of the wrong type.
#[test]
fn error_rows_keep_the_instance_id_and_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.jsonl");
    std::fs::write(
        &input,
        "{\"instance_id\": \"o__r-1\", \"code_context\": {}, \"oracle_new_content\": {}, \"output\": 3}\n",
    )
    .unwrap();
    let o = swerl().args(["reward", "-i"]).arg(&input).output().unwrap();
    assert_code(&o, 1);
    let rows = parse(&o.stdout);
    assert_eq!(rows[0]["instance_id"], "o__r-1");
    let message = rows[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("field `output`"), "{message}");
}

/// Item 8: `--jobs` was uncapped (`-j 100000` spent minutes creating threads).
#[test]
fn jobs_are_capped() {
    let started = std::time::Instant::now();
    let o = run(["reward", "-j", "100000"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("1024"), "{}", stderr(&o));
    assert!(started.elapsed().as_secs() < 10);
}
