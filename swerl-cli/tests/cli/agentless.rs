//! `swerl eval agentless` end to end. With a real `swerl serve` on loopback (a tiny model
//! written in-test), the whole pipeline to predictions, then `swerl eval harness` grades them.
//! With a small OpenAI-shaped server of canned answers (a test double, for what a real server
//! cannot be made to do: a 503 and then a given fix), retries and resumption.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Value, json};
use swerl_eval::testing::CalcRepo;

use crate::helpers::{assert_code, jsonl, run, stderr, stdout};
use crate::serve::{MODEL, Server, tiny_model};

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

/// Everything real: `swerl serve` with a tiny random model, `swerl eval agentless` with tests,
/// `swerl eval harness`. The model's repairs are noise (no patch, an empty prediction); a second
/// run injects the gold patch as the repair so the tests (regression runs in the sandbox, the
/// model's exclusion and reproduction answers over HTTP) and the harness see a real patch.
#[test]
fn agentless_against_swerl_serve_then_the_harness() -> Result<()> {
    let Some((tmp, calc)) = sandboxed_calc()? else { return Ok(()) };
    let path = |name: &str| tmp.path().join(name);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    // The environment cache is shared with swerl-eval's end-to-end test (same content key).
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    tiny_model(&path("model"));
    let server = Server::start(&path("model"), &path("serve.log"), &[]);
    let url = server.url();
    let agentless = |out: &str, extra: &[&str]| {
        let in_process = extra.contains(&"--in-process");
        let extra: Vec<&str> = extra.iter().copied().filter(|e| *e != "--in-process").collect();
        let model = if in_process { s(&path("model")) } else { MODEL.to_owned() };
        let mut args: Vec<String> = [
            "eval",
            "agentless",
            "--dataset",
            &s(&path("dataset.jsonl")),
            "--repos",
            &s(&path("repos")),
            "--model",
            &model,
            "--out",
            &s(&path(out)),
            "--samples",
            "2",
            "--localization-samples",
            "2",
            "--max-new-tokens",
            "48",
            "--repro-samples",
            "2",
            "--specs",
            &s(&path("specs.json")),
            "--cache-dir",
            &s(&cache),
            "--timeout",
            "120",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if !in_process {
            args.extend(["--base-url".to_owned(), url.clone()]);
        }
        args.extend(extra.iter().map(|e| (*e).to_owned()));
        let o = run(&args);
        assert_code(&o, 0);
        assert!(stdout(&o).contains("1 instances (0 reused)"), "{}\n{}", stdout(&o), server.logs());
        assert!(stdout(&o).contains("seconds: structure"), "{}", stdout(&o));
        let traj: Value = serde_json::from_str(
            &std::fs::read_to_string(path(out).join("trajectories/calc-1.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(traj["complete"], true, "{traj}");
        assert_eq!(traj["model_name_or_path"], model);
        assert!(traj["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "the server's token counts: {traj}");
        traj
    };
    let grade = |out: &str, run_id: &str| {
        let o = run([
            "eval",
            "harness",
            "--dataset",
            &s(&path("dataset.jsonl")),
            "--predictions",
            &s(&path(out).join("predictions.jsonl")),
            "--repos",
            &s(&path("repos")),
            "--run-id",
            run_id,
            "--specs",
            &s(&path("specs.json")),
            "--cache-dir",
            &s(&cache),
            "--report-dir",
            &s(&path("reports")),
            "--log-root",
            &s(&path("logs")),
        ]);
        assert_code(&o, 0);
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(path("reports").join(format!("{MODEL}.{run_id}.json"))).unwrap(),
        )
        .unwrap();
        summary
    };

    // The model repairs: its answers are noise, so no sample applies and tests are not run.
    let traj = agentless("noise", &[]);
    assert_eq!(traj["repair"]["samples"].as_array().unwrap().len(), 2);
    assert_eq!(traj["model_patch"], "");
    assert_eq!(traj["tests"]["note"], "not run: no repair sample has a patch");
    // Two localization requests and one repair request (n = 2).
    assert_eq!(traj["usage"]["requests"], 3);
    let summary = grade("noise", "noise");
    assert_eq!(summary["empty_patch_ids"], json!(["calc-1"]));

    // The same run with the model loaded in this process (no server): the same seeds give the
    // same answers, the greedy localization and the sampled repairs alike.
    let local = agentless("local", &["--in-process"]);
    for (stage, samples) in [("localization", "samples"), ("repair", "samples")] {
        let texts = |t: &Value| -> Vec<Value> {
            t[stage][samples].as_array().unwrap().iter().map(|x| x["completion"]["text"].clone()).collect()
        };
        assert_eq!(texts(&local), texts(&traj), "{stage}");
    }
    assert_eq!(local["usage"], traj["usage"]);

    // The gold patch injected: regression tests run on the original code and with the patch,
    // the model is asked which tests to exclude and for reproduction scripts; the harness
    // resolves the prediction.
    let traj = agentless("gold", &["--inject-gold-patch"]);
    assert_eq!(traj["model_patch"], calc.gold()?);
    let regression = &traj["tests"]["regression"];
    assert_eq!(regression["directives"], json!(["tests/test_calc.py"]));
    assert_eq!(regression["original"]["statuses"]["tests/test_calc.py::test_sub"], "PASSED", "{traj}");
    assert_eq!(regression["runs"][0]["failures"], json!([]));
    assert!(regression["exclusion"]["completion"]["text"].is_string());
    assert_eq!(traj["tests"]["reproduction"]["samples"].as_array().unwrap().len(), 2);
    // Localization (2), exclusion (1), reproduction (greedy, then one sampled): no repair call.
    assert_eq!(traj["usage"]["requests"], 5);
    assert_eq!(traj["rerank"]["choice"]["sample"], 0);
    let summary = grade("gold", "gold");
    assert_eq!(summary["resolved_ids"], json!(["calc-1"]), "{summary}");
    Ok(())
}

/// `swerl eval repair --oracle-files` against servers, with whole files from the clone and the
/// harness: the canned server's fix is format-correct, scores 1.0 and resolves; the tiny model
/// served by `swerl serve` answers noise (format errors, nothing resolved).
#[test]
fn repair_diagnostic_through_a_server_with_the_harness() -> Result<()> {
    let Some((tmp, calc)) = sandboxed_calc()? else { return Ok(()) };
    let path = |name: &str| tmp.path().join(name);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let repair = |url: &str, model: &str, out: &str| {
        let o = run([
            "eval",
            "repair",
            "--oracle-files",
            "--base-url",
            url,
            "--model",
            model,
            "--dataset",
            &s(&path("dataset.jsonl")),
            "--repos",
            &s(&path("repos")),
            "--harness",
            "--samples",
            "2",
            "--temperature",
            "1",
            "--max-new-tokens",
            "32",
            "--out",
            &s(&path(out)),
            "--specs",
            &s(&path("specs.json")),
            "--cache-dir",
            &s(&cache),
            "--timeout",
            "120",
        ]);
        assert_code(&o, 0);
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(path(out).join("summary.json")).unwrap()).unwrap();
        let answers = jsonl(&std::fs::read_to_string(path(out).join("answers.jsonl")).unwrap());
        (summary, answers)
    };
    let (canned, _) = model_server();
    let (summary, answers) = repair(&canned, "org/m", "fix");
    assert_eq!(summary["n"], 2);
    assert_eq!(summary["format_rate"]["mean"], 1.0, "{summary}");
    assert_eq!(summary["mean_reward"]["mean"], 1.0, "{summary}");
    assert_eq!(summary["resolved_rate"]["mean"], 1.0, "{summary}");
    assert!(answers.iter().all(|a| a["resolved"] == true && a["reward"] == 1.0), "{answers:?}");
    let preds = jsonl(&std::fs::read_to_string(path("fix").join("predictions-s1.jsonl"))?);
    assert_eq!(preds[0]["model_patch"], without_index_line(&calc.gold()?));

    tiny_model(&path("model"));
    let server = Server::start(&path("model"), &path("serve.log"), &[]);
    let (summary, answers) = repair(&server.url(), MODEL, "noise");
    assert_eq!(summary["format_rate"]["mean"], 0.0, "{summary}");
    assert_eq!(summary["resolved_rate"]["mean"], 0.0, "{summary}");
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a["resolved"] == false && a["format_error"] == true), "{answers:?}");
    Ok(())
}

#[test]
fn agentless_usage_errors_exit_2() {
    let base = ["eval", "agentless", "--dataset", "d.jsonl", "--repos", ".", "--model", "m", "--out", "o"];
    for extra in [
        &["--samples", "0"][..],
        &["--max-workers", "0"],
        &["--temperature", "-1"],
        &["--repro-temperature", "nan"],
        &["--repro-tests", "0"],
        &["--timeout", "0"],
    ] {
        let o = run(base.iter().copied().chain(["--no-tests"]).chain(extra.iter().copied()));
        assert_code(&o, 2);
        assert!(stderr(&o).contains(extra[0]) || stderr(&o).contains(extra[1]), "{extra:?}: {}", stderr(&o));
    }
}

/// The calc repository with one instance (`dataset.jsonl`) and its spec (`specs.json`) in a
/// temporary directory; `None` where the sandbox is switched off (`SWERL_EVAL_SKIP_SANDBOX`).
fn sandboxed_calc() -> Result<Option<(tempfile::TempDir, CalcRepo)>> {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return Ok(None);
    }
    swerl_eval::sandbox::check_available()?;
    let python = swerl_eval::testing::test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let tmp = tempfile::tempdir()?;
    let calc = CalcRepo::create(&tmp.path().join("repos"))?;
    let mut record = calc.instance("calc-1")?;
    record["problem_statement"] = "add(2, 2) returns 0".into();
    std::fs::write(tmp.path().join("dataset.jsonl"), format!("{record}\n"))?;
    std::fs::write(
        tmp.path().join("specs.json"),
        json!({swerl_eval::testing::REPO: {"1.0": swerl_eval::testing::calc_spec(python)}}).to_string(),
    )?;
    Ok(Some((tmp, calc)))
}

/// `git diff` adds `index <old>..<new> <mode>`; our diffs, like the paper's, have no such line.
fn without_index_line(diff: &str) -> String {
    diff.split_inclusive('\n').filter(|l| !l.starts_with("index ")).collect()
}
