//! `swerl eval agentless` end to end: the binary talks HTTP to a small OpenAI-shaped server on
//! loopback (canned answers: the test double of a model server), reads the in-test calc
//! repository with git and writes predictions and trajectories.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Value, json};
use swerl_eval::testing::CalcRepo;

use crate::helpers::{assert_code, jsonl, run, stderr, stdout};

const FIX: &str = "<think>add subtracts</think>\n<solution>\n```python\n### calc/__init__.py\n<<<<<<< SEARCH\n    return a - b\n\n\ndef sub\n=======\n    return a + b\n\n\ndef sub\n>>>>>>> REPLACE\n```\n</solution>";

/// Serves `/v1/chat/completions` until the test ends: the repair prompt (it has a system
/// message) gets `n` copies of the fix after one 503, localization gets the buggy file.
fn model_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut failed_once = false;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request: Value = serde_json::from_slice(&body).unwrap();
            log.lock().unwrap().push(request.clone());
            let repair = request["messages"][0]["role"] == "system";
            let (status, reply) = if repair && !failed_once {
                failed_once = true;
                (503, "busy".to_owned())
            } else {
                let text = if repair { FIX } else { "```\ncalc/__init__.py\n```" };
                let n = request["n"].as_u64().unwrap();
                let choices: Vec<Value> = (0..n)
                    .map(|i| json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}))
                    .collect();
                (
                    200,
                    json!({"choices": choices, "usage": {"prompt_tokens": 100, "completion_tokens": 10}})
                        .to_string(),
                )
            };
            let out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            reader.get_mut().write_all(out.as_bytes()).ok();
        }
    });
    (url, seen)
}

#[test]
fn agentless_writes_predictions_through_an_http_model_then_resumes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let calc = CalcRepo::create(&tmp.path().join("repos"))?;
    let mut record = calc.instance("calc-1")?;
    record["problem_statement"] = "add(2, 2) returns 0".into();
    std::fs::write(tmp.path().join("dataset.jsonl"), format!("{record}\n"))?;
    let (url, seen) = model_server();
    let s = |p: &str| tmp.path().join(p).to_str().unwrap().to_owned();
    let args: Vec<String> = [
        "eval",
        "agentless",
        "--dataset",
        &s("dataset.jsonl"),
        "--repos",
        &s("repos"),
        "--base-url",
        &url,
        "--model",
        "org/m",
        "--out",
        &s("out"),
        "--samples",
        "3",
        "--localization-samples",
        "2",
        "--no-tests",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let o = run(&args);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("1 instances (0 reused): 1 with a patch, 0 errors"), "{}", stdout(&o));
    let preds = jsonl(&std::fs::read_to_string(tmp.path().join("out/predictions.jsonl"))?);
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0]["instance_id"], "calc-1");
    assert_eq!(preds[0]["model_name_or_path"], "org/m");
    assert_eq!(preds[0]["model_patch"], without_index_line(&calc.gold()?));
    let traj: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out/trajectories/calc-1.json"))?)?;
    assert_eq!(traj["complete"], true);
    assert_eq!(traj["usage"]["requests"], 3);
    {
        let seen = seen.lock().unwrap();
        // Two localization requests, the repair request twice (503, then 200) with n = 3.
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[3]["n"], 3);
        assert_eq!(seen[3]["model"], "org/m");
    }
    // A rerun reuses the trajectory.
    let o = run(&args);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("1 instances (1 reused)"), "{}", stdout(&o));
    assert_eq!(seen.lock().unwrap().len(), 4);
    Ok(())
}

#[test]
fn agentless_usage_errors_exit_2() {
    let base = ["eval", "agentless", "--dataset", "d.jsonl", "--repos", ".", "--model", "m", "--out", "o"];
    let o = run(base);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--no-tests"), "{}", stderr(&o));
    for extra in [&["--samples", "0"][..], &["--max-workers", "0"], &["--temperature", "-1"]] {
        let o = run(base.iter().copied().chain(["--no-tests"]).chain(extra.iter().copied()));
        assert_code(&o, 2);
    }
}

/// `git diff` adds `index <old>..<new> <mode>`; our diffs, like the paper's, have no such line.
fn without_index_line(diff: &str) -> String {
    diff.split_inclusive('\n').filter(|l| !l.starts_with("index ")).collect()
}
