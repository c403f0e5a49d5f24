//! End to end: an in-test git repository with a tiny Python package and pytest tests, its own
//! instance records and patches, graded through the real venv build (PyPI) and the sandbox.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};
use swerl_eval::{Bucket, EXTRAS_FILE, GradingMode, HarnessConfig, run_evaluation};

const SLEEP_MARK: &str = "987654";

#[test]
fn harness_end_to_end() {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return;
    }
    swerl_eval::sandbox::check_available().expect("the sandbox (bubblewrap) is required");
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let root = tempfile::tempdir().unwrap();
    let repos = root.path().join("repos");
    let calc = CalcRepo::create(&repos).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let gold = calc.gold().unwrap();
    let wrong = calc.patch_with("    return a + b + 1").unwrap();
    let sleeper = calc
        .patch_with(&format!(
            "    import subprocess, time\n    subprocess.Popen(['sleep', '{SLEEP_MARK}'])\n    time.sleep(1000)\n    return a + b"
        ))
        .unwrap();
    let socket = calc
        .patch_with(&format!(
            "    import socket\n    for host, port in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n        try:\n            socket.create_connection((host, port), timeout=3)\n            print('NETWORK-REACHED', host)\n            return a - b\n        except OSError as e:\n            print('NETWORK-BLOCKED', host, e)\n    return a + b"
        ))
        .unwrap();
    let conftest = calc
        .diff_of(|r| {
            fs_err::write(
                r.join("tests/conftest.py"),
                "import pytest\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n    out = yield\n    out.get_result().outcome = 'passed'\n",
            )
        })
        .unwrap();
    let not_applying = gold.replace("-    return a - b", "-    return a - c");

    let cases: [(&str, Option<&str>); 7] = [
        ("gold", Some(&gold)),
        ("empty", Some("")),
        ("wrong", Some(&wrong)),
        ("not_applying", Some(&not_applying)),
        ("sleeper", Some(&sleeper)),
        ("socket", Some(&socket)),
        ("conftest", Some(&conftest)),
    ];
    let mut dataset = String::new();
    let mut preds = String::new();
    for (name, patch) in cases {
        let id = format!("swerl__calc-{name}");
        let record = calc.instance(&id).unwrap();
        dataset.push_str(&format!("{record}\n"));
        let pred =
            serde_json::json!({"instance_id": id, "model_name_or_path": "org/model", "model_patch": patch});
        preds.push_str(&format!("{pred}\n"));
    }
    fs_err::write(root.path().join("dataset.jsonl"), dataset).unwrap();
    fs_err::write(root.path().join("preds.jsonl"), preds).unwrap();

    let spec = calc_spec(python);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let cfg = HarnessConfig {
        dataset: root.path().join("dataset.jsonl"),
        predictions: root.path().join("preds.jsonl").display().to_string(),
        repos_dir: repos.clone(),
        run_id: "e2e".into(),
        max_workers: 2,
        timeout_secs: 25,
        cache_dir: cache,
        report_dir: root.path().join("reports"),
        log_root: root.path().join("logs/run_evaluation"),
        extra_specs: BTreeMap::from([(REPO.into(), BTreeMap::from([("1.0".into(), spec)]))]),
        ..HarnessConfig::default()
    };
    let result = run_evaluation(&cfg, &|_| {}).unwrap();
    let bucket = |name: &str| {
        let o = &result.extras.instances[&format!("swerl__calc-{name}")];
        (o.bucket, o.reason.clone().unwrap_or_default())
    };
    let logs = cfg.log_root.join("e2e/org__model");
    let read = |name: &str, file: &str| {
        fs_err::read_to_string(logs.join(format!("swerl__calc-{name}")).join(file)).unwrap_or_default()
    };

    assert_eq!(
        bucket("gold").0,
        Bucket::Resolved,
        "{:?}\n{}",
        bucket("gold"),
        read("gold", "run_instance.log")
    );
    for f in ["report.json", "test_output.txt", "patch.diff", "eval.sh", "run_instance.log", EXTRAS_FILE] {
        assert!(logs.join("swerl__calc-gold").join(f).is_file(), "{f}");
    }
    assert!(read("gold", "report.json").contains("\"resolved\": true"));
    assert_eq!(bucket("empty").0, Bucket::Empty);
    assert_eq!(bucket("wrong").0, Bucket::Unresolved, "{}", read("wrong", "run_instance.log"));
    assert!(read("wrong", "report.json").contains("\"resolved\": false"));
    let (b, reason) = bucket("not_applying");
    assert_eq!(b, Bucket::Error);
    assert!(reason.contains("did not apply"), "{reason}");
    assert!(read("not_applying", "run_instance.log").contains(">>>>> Patch Apply Failed"));
    let (b, reason) = bucket("sleeper");
    assert_eq!(b, Bucket::Error);
    assert!(reason.contains("timed out"), "{reason}");
    assert!(read("sleeper", "test_output.txt").contains("Timeout error: 25 seconds exceeded."));
    let survivors = Command::new("pgrep").args(["-f", &format!("sleep {SLEEP_MARK}")]).output().unwrap();
    assert!(
        !survivors.status.success(),
        "a sleeper survived: {}",
        String::from_utf8_lossy(&survivors.stdout)
    );
    let out = read("socket", "test_output.txt");
    assert!(out.contains("NETWORK-BLOCKED 127.0.0.1") && out.contains("NETWORK-BLOCKED 1.1.1.1"), "{out}");
    assert!(!out.contains("NETWORK-REACHED 127") && !out.contains("NETWORK-REACHED 1.1"));
    assert_eq!(bucket("socket").0, Bucket::Resolved);
    let (b, reason) = bucket("conftest");
    assert_eq!(b, Bucket::Unresolved);
    assert!(reason.contains("conftest.py"), "{reason}");
    assert!(read("conftest", "report.json").contains("\"patch_policy_violation\""));

    let s = &result.summary;
    assert_eq!(s.resolved_ids, ["swerl__calc-gold", "swerl__calc-socket"]);
    assert_eq!(s.empty_patch_ids, ["swerl__calc-empty"]);
    assert_eq!(s.unresolved_ids, ["swerl__calc-conftest", "swerl__calc-wrong"]);
    assert_eq!(s.error_ids, ["swerl__calc-not_applying", "swerl__calc-sleeper"]);
    assert!(result.summary_path.ends_with("org__model.e2e.json"));
    drop(listener);

    // A rerun skips the finished instances and reruns the errored ones only.
    let mut again = cfg.clone();
    again.instance_ids = vec!["swerl__calc-gold".into(), "swerl__calc-not_applying".into()];
    let rerun = run_evaluation(&again, &|_| {}).unwrap();
    assert!(rerun.extras.instances["swerl__calc-gold"].skipped);
    assert!(!rerun.extras.instances["swerl__calc-not_applying"].skipped);

    // v5 grading on the gold patch, forced.
    let mut v5 = cfg.clone();
    v5.grading = GradingMode::V5;
    v5.force = true;
    v5.run_id = "e2e-v5".into();
    v5.instance_ids = vec!["swerl__calc-gold".into()];
    let r = run_evaluation(&v5, &|_| {}).unwrap();
    assert_eq!(r.summary.resolved_ids, ["swerl__calc-gold"]);
    let test_output =
        fs_err::read_to_string(cfg.log_root.join("e2e-v5/org__model/swerl__calc-gold/test_output.txt"))
            .unwrap();
    assert!(test_output.contains(">>>>> Test Exit Code: 0"));
}
