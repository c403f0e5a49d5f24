//! `swerl reward` end to end: files and pipes, malformed lines, jobs.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const GOOD: &str = r#"{"instance_id": "a", "code_context": {"a.py": "x = 1\n"}, "oracle_new_content": {"a.py": "x = 2\n"}, "output": "<think>t</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n</solution>"}"#;
const UNINDENTED: &str = r#"{"code_context": {"a.py": "if x:\n    y = 1\n"}, "oracle_new_content": {"a.py": "if x:\n    y = 2\n"}, "output": "<think>t</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\ny = 1\n=======\ny = 2\n>>>>>>> REPLACE\n```\n</solution>"}"#;

fn swerl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swerl"))
}

fn parse(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn scores_a_file_in_order_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.jsonl");
    let output = dir.path().join("scores.jsonl");
    std::fs::write(&input, format!("{GOOD}\n{{\"output\": 3}}\n{UNINDENTED}\n")).unwrap();
    let run = swerl().args(["reward", "--input"]).arg(&input).arg("--output").arg(&output).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "a malformed line makes the exit status non-zero");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("1 invalid lines"), "{stderr}");
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
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    let run = swerl().args(["reward", "--input", "/nonexistent/cases.jsonl"]).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("/nonexistent/cases.jsonl"));
}
