//! Agentless Mini end to end on the in-test calc repository: a scripted model (the only test
//! double) answers localization and repair; git, the pipeline, the files it writes and the
//! harness that grades its prediction are real.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use swerl_eval::agentless::{AgentlessConfig, AgentlessProgress, Trajectory, run_agentless};
use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};
use swerl_eval::{ChatModel, ChatResponse, Completion, HarnessConfig, SampleParams, Usage, run_evaluation};
use swerl_reward::ChatMessage;

/// Answers localization with the buggy file and repair with four samples: a SEARCH that is not
/// in the file, a wrong fix, the fix, and the fix with a comment (the same normalized patch).
struct Scripted {
    calls: Mutex<Vec<(bool, usize)>>,
}

fn edit(search: &str, replace: &str) -> String {
    format!(
        "<think>add subtracts</think>\n<solution>\n```python\n### calc/__init__.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n</solution>"
    )
}

impl ChatModel for Scripted {
    fn name(&self) -> &str {
        "scripted/model"
    }

    fn chat(&self, messages: &[ChatMessage], _: &SampleParams, n: usize) -> swerl_eval::Result<ChatResponse> {
        let repair = messages[0].role == "system";
        self.calls.lock().unwrap().push((repair, n));
        let texts: Vec<String> = if repair {
            assert!(messages[1].content.contains("### calc/__init__.py"), "the localized file is shown");
            vec![
                edit("    return a - c", "    return a + b"),
                edit("    return a - b", "    return a * b"),
                edit("def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"),
                edit("    return a - b\n\n\ndef sub", "    return a + b  # fixed\n\n\ndef sub"),
            ]
        } else {
            assert!(messages[0].content.contains("add is wrong"), "the issue is in the prompt");
            vec!["I would look at:\n```\ncalc/__init__.py\nnot/a/file.py\n```".into(); n]
        };
        assert_eq!(texts.len(), n);
        Ok(ChatResponse {
            completions: texts
                .into_iter()
                .map(|text| Completion { text, finish_reason: Some("stop".into()) })
                .collect(),
            usage: Usage { requests: 1, prompt_tokens: 5, completion_tokens: 7 },
        })
    }
}

#[test]
fn agentless_produces_a_prediction_the_harness_resolves() {
    let root = tempfile::tempdir().unwrap();
    let repos = root.path().join("repos");
    let calc = CalcRepo::create(&repos).unwrap();
    let mut record = calc.instance("swerl__calc-1").unwrap();
    record["problem_statement"] = "add is wrong: add(2, 2) returns 0.\n".into();
    fs_err::write(root.path().join("dataset.jsonl"), format!("{record}\n")).unwrap();
    let cfg = AgentlessConfig {
        dataset: root.path().join("dataset.jsonl"),
        repos_dir: repos.clone(),
        out_dir: root.path().join("out"),
        localization_samples: 2,
        repair_samples: 4,
        max_workers: 2,
        ..AgentlessConfig::default()
    };
    let model = Scripted { calls: Mutex::new(Vec::new()) };
    let finished = Mutex::new(Vec::new());
    let summary = run_agentless(&cfg, &model, &|p| {
        if let AgentlessProgress::Finished { instance_id, has_patch, error } = p {
            finished.lock().unwrap().push((instance_id, has_patch, error));
        }
    })
    .unwrap();
    assert_eq!(*finished.lock().unwrap(), [("swerl__calc-1".to_owned(), true, None)]);
    assert_eq!((summary.instances, summary.skipped, summary.with_patch, summary.errors), (1, 0, 1, 0));
    assert_eq!(summary.usage, Usage { requests: 3, prompt_tokens: 15, completion_tokens: 21 });
    assert_eq!(*model.calls.lock().unwrap(), [(false, 1), (false, 1), (true, 4)]);

    // The prediction is sample 2's patch: samples 2 and 3 share a normalized patch (the comment
    // is dropped), the wrong fix has one vote, sample 0 did not apply.
    let preds = fs_err::read_to_string(&summary.predictions_path).unwrap();
    let pred: serde_json::Value = serde_json::from_str(preds.trim()).unwrap();
    assert_eq!(pred["instance_id"], "swerl__calc-1");
    assert_eq!(pred["model_name_or_path"], "scripted/model");
    assert_eq!(pred["model_patch"], without_index_line(&calc.gold().unwrap()));
    let traj: Trajectory = serde_json::from_str(
        &fs_err::read_to_string(cfg.out_dir.join("trajectories/swerl__calc-1.json")).unwrap(),
    )
    .unwrap();
    assert!(traj.complete);
    let loc = traj.localization.as_ref().unwrap();
    assert_eq!(loc.files, ["calc/__init__.py"]);
    assert_eq!(loc.samples.len(), 2);
    let repair = traj.repair.as_ref().unwrap();
    assert_eq!(repair.prompt.shown, ["calc/__init__.py"]);
    assert!(repair.samples[0].outcome.patch().is_none());
    let rerank = traj.rerank.as_ref().unwrap();
    let choice = rerank.choice.as_ref().unwrap();
    assert_eq!((choice.sample, choice.votes, choice.pool.clone()), (2, 2, vec![1, 2, 3]));
    assert!(rerank.reason.contains("sample 2"), "{}", rerank.reason);

    // A rerun reuses the complete trajectory without calling the model.
    let again = run_agentless(&cfg, &model, &|_| {}).unwrap();
    assert_eq!((again.skipped, again.with_patch, again.usage), (1, 1, Usage::default()));
    assert_eq!(model.calls.lock().unwrap().len(), 3);
    assert_eq!(fs_err::read_to_string(&again.predictions_path).unwrap(), preds);

    // The harness resolves the prediction (real venv, real sandbox).
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return;
    }
    swerl_eval::sandbox::check_available().expect("the sandbox (bubblewrap) is required");
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let harness = HarnessConfig {
        dataset: cfg.dataset.clone(),
        predictions: summary.predictions_path.display().to_string(),
        repos_dir: repos,
        run_id: "agentless".into(),
        max_workers: 1,
        timeout_secs: 120,
        cache_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache"),
        report_dir: root.path().join("reports"),
        log_root: root.path().join("logs/run_evaluation"),
        extra_specs: BTreeMap::from([(REPO.into(), BTreeMap::from([("1.0".into(), calc_spec(python))]))]),
        ..HarnessConfig::default()
    };
    let result = run_evaluation(&harness, &|_| {}).unwrap();
    assert_eq!(result.summary.resolved_ids, ["swerl__calc-1"], "{:?}", result.extras);
}

/// `git diff` adds `index <old>..<new> <mode>`; our diffs, like the paper's, have no such line.
fn without_index_line(diff: &str) -> String {
    diff.split_inclusive('\n').filter(|l| !l.starts_with("index ")).collect()
}

/// The prompts as the model sees them, for the calc repository (snapshots: review changes).
#[test]
fn prompt_snapshots() {
    use swerl_eval::agentless::{LocalizationVariant, RepoStructure, localization_messages, repair_prompt};
    let repo = RepoStructure::from_files([
        ("calc/__init__.py", "def add(a, b):\n    return a - b\n"),
        ("calc/util/fmt.py", "def show(x):\n    return str(x)\n"),
        ("setup.py", "from setuptools import setup\n"),
    ]);
    let issue = "add is wrong: add(2, 2) returns 0.\n";
    let loc = localization_messages(issue, &repo, &LocalizationVariant::GREEDY);
    insta::assert_snapshot!("localization_prompt", loc[0].content);
    let files = vec![("calc/__init__.py".to_owned(), repo.get("calc/__init__.py").unwrap().content.clone())];
    let repair = repair_prompt("swerl__calc-1", issue, &files, 10_000);
    insta::assert_snapshot!("repair_prompt_user", repair.messages[1].content);
}

/// The structure of real repositories (opt-in: `SWERL_AGENTLESS_MIRRORS=/work/.mirror`): every
/// outline span lies inside its file and classes and functions are found in the big packages.
#[test]
#[allow(clippy::print_stdout)] // the opt-in measurement reports its numbers (run with --nocapture)
fn structure_of_real_mirrors() {
    let Some(dir) = std::env::var_os("SWERL_AGENTLESS_MIRRORS") else { return };
    for repo in ["pytest-dev/pytest", "sympy/sympy", "sphinx-doc/sphinx"] {
        let Ok(clone) = swerl_eval::checkout::find_clone(Path::new(&dir), repo) else { continue };
        let start = std::time::Instant::now();
        let s = swerl_eval::agentless::RepoStructure::read(&clone, "HEAD", false).unwrap();
        let (mut classes, mut functions) = (0, 0);
        for f in &s.files {
            let lines = f.content.lines().count();
            for c in &f.outline.classes {
                assert!(c.start <= c.end && c.end <= lines, "{} {}", f.path, c.name);
                classes += 1;
                for m in &c.methods {
                    assert!(c.start < m.start && m.end <= c.end, "{} {}.{}", f.path, c.name, m.name);
                    functions += 1;
                }
            }
            for g in &f.outline.functions {
                assert!(g.start <= g.end && g.end <= lines, "{} {}", f.path, g.name);
                functions += 1;
            }
        }
        println!(
            "{repo}: {} files, {classes} classes, {functions} functions in {:.2} s",
            s.files.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(classes > 10 && functions > 100);
    }
}
