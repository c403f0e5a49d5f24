//! Agentless Mini end to end on the in-test calc repository: a scripted model (the only test
//! double) answers localization, repair, the regression-test question and reproduction; git, the
//! pipeline, the environment, the sandboxed test runs, the files it writes and the harness that
//! grades its prediction are real.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use swerl_eval::agentless::{
    AgentlessConfig, AgentlessProgress, ReproVerdict, RerankRule, Trajectory, run_agentless,
};
use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};
use swerl_eval::{ChatModel, ChatResponse, Completion, HarnessConfig, SampleParams, Usage, run_evaluation};
use swerl_reward::ChatMessage;

/// Which prompt a call is, as the scripted model tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Localize,
    Repair,
    Exclude,
    Reproduce,
}

/// Answers every prompt of the pipeline. Repair gets five samples: a SEARCH that is not in the
/// file (0), a wrong fix twice (1, 2: the same normalized patch, so the majority without tests),
/// the fix (3), and the fix that also breaks `sub` (4, caught by the regression test).
struct Scripted {
    calls: Mutex<Vec<(Call, usize)>>,
    /// Repair answers instead of the five above.
    repairs: Option<Vec<String>>,
}

fn edit(search: &str, replace: &str) -> String {
    format!(
        "<think>add subtracts</think>\n<solution>\n```python\n### calc/__init__.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n</solution>"
    )
}

/// A reproduction script: `add(2, 3)` must be 5.
const REPRO: &str = "from calc import add\n\ntry:\n    r = add(2, 3)\nexcept Exception:\n    print('Other issues')\nelse:\n    print('Issue resolved' if r == 5 else 'Issue reproduced')\n";

impl ChatModel for Scripted {
    fn name(&self) -> &str {
        "scripted/model"
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &SampleParams,
        n: usize,
    ) -> swerl_eval::Result<ChatResponse> {
        let prompt = &messages.last().unwrap().content;
        let call = if messages[0].role == "system" {
            Call::Repair
        } else if prompt.contains("--- BEGIN TESTS ---") {
            Call::Exclude
        } else if prompt.contains("Issue reproduced") {
            Call::Reproduce
        } else {
            Call::Localize
        };
        self.calls.lock().unwrap().push((call, n));
        let texts: Vec<String> = match call {
            Call::Repair if self.repairs.is_some() => self.repairs.clone().unwrap(),
            Call::Repair => {
                assert!(messages[1].content.contains("### calc/__init__.py"), "the localized file is shown");
                vec![
                    edit("    return a - c", "    return a + b"),
                    edit("    return a - b\n\n\ndef sub", "    return a * b\n\n\ndef sub"),
                    edit("    return a - b\n\n\ndef sub", "    return a * b  # multiply\n\n\ndef sub"),
                    edit("def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"),
                    edit(
                        "    return a - b\n\n\ndef sub(a, b):\n    return a - b",
                        "    return a + b\n\n\ndef sub(a, b):\n    return a + b",
                    ),
                ]
            }
            Call::Exclude => {
                assert!(prompt.contains("tests/test_calc.py::test_sub\n"), "{prompt}");
                assert_eq!(params.temperature, 0.0);
                vec!["```\n- `tests/test_calc.py::test_unknown`\n```".into()]
            }
            Call::Reproduce if params.temperature == 0.0 => vec![format!("```python\n{REPRO}```")],
            Call::Reproduce => vec![
                // The greedy script with a comment: the same normalized script (one group).
                format!("Sure.\n```python\n# check add\n{REPRO}```"),
                // Does not reproduce on the original code: dropped.
                "```python\nprint('Issue resolved')\n```".into(),
            ],
            Call::Localize => {
                assert!(prompt.contains("add is wrong"), "the issue is in the prompt");
                vec!["I would look at:\n```\ncalc/__init__.py\nnot/a/file.py\n```".into(); n]
            }
        };
        assert_eq!(texts.len(), n, "{call:?}");
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
fn agentless_tests_pick_the_fix_over_the_majority_and_the_harness_resolves_it() {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return;
    }
    swerl_eval::sandbox::check_available().expect("the sandbox (bubblewrap) is required");
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let (root, repos, calc) = calc_dataset();
    let specs = BTreeMap::from([(REPO.to_owned(), BTreeMap::from([("1.0".to_owned(), calc_spec(python))]))]);
    let cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let cfg = AgentlessConfig {
        dataset: root.path().join("dataset.jsonl"),
        repos_dir: repos.clone(),
        out_dir: root.path().join("out"),
        localization_samples: 2,
        repair_samples: 5,
        reproduction_samples: 3,
        reproduction_tests: 1,
        script_timeout_secs: 60,
        max_workers: 2,
        harness: HarnessConfig {
            timeout_secs: 120,
            cache_dir: cache_dir.clone(),
            extra_specs: specs.clone(),
            ..HarnessConfig::default()
        },
        ..AgentlessConfig::default()
    };
    let model = Scripted { calls: Mutex::new(Vec::new()), repairs: None };
    let events = Mutex::new(Vec::new());
    let summary = run_agentless(&cfg, &model, &|p| match p {
        AgentlessProgress::Finished { instance_id, has_patch, error } => {
            events.lock().unwrap().push(format!("{instance_id} {has_patch} {error:?}"))
        }
        AgentlessProgress::Stage { stage, .. } => events.lock().unwrap().push(format!("{stage:?}")),
        _ => {}
    })
    .unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            "Structure",
            "Localize",
            "Repair",
            "Regression",
            "Reproduction",
            "Rerank",
            "swerl__calc-1 true None"
        ]
    );
    assert_eq!((summary.instances, summary.skipped, summary.with_patch, summary.errors), (1, 0, 1, 0));
    assert_eq!(summary.usage, Usage { requests: 6, prompt_tokens: 30, completion_tokens: 42 });
    assert_eq!(
        *model.calls.lock().unwrap(),
        [
            (Call::Localize, 1),
            (Call::Localize, 1),
            (Call::Repair, 5),
            (Call::Exclude, 1),
            (Call::Reproduce, 1),
            (Call::Reproduce, 2)
        ]
    );
    assert!(summary.seconds.regression > 0.0 && summary.seconds.reproduction > 0.0, "{:?}", summary.seconds);

    // The prediction is the fix (sample 3): the wrong fix has the most votes (samples 1 and 2),
    // sample 4 fails the regression test, and only the fix passes the reproduction test.
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

    let tests = traj.tests.as_ref().unwrap();
    assert_eq!(tests.note, None);
    let reg = tests.regression.as_ref().unwrap();
    assert_eq!(reg.directives, ["tests/test_calc.py"]);
    assert_eq!(reg.original.passed().into_iter().collect::<Vec<_>>(), ["tests/test_calc.py::test_sub"]);
    assert_eq!(reg.exclusion.as_ref().unwrap().excluded, Vec::<String>::new());
    assert_eq!(reg.tests, ["tests/test_calc.py::test_sub"]);
    let failures: Vec<(Vec<usize>, usize)> =
        reg.runs.iter().map(|r| (r.samples.clone(), r.failures.len())).collect();
    assert_eq!(failures, [(vec![1], 0), (vec![2], 0), (vec![3], 0), (vec![4], 1)]);

    let repro = tests.reproduction.as_ref().unwrap();
    let verdicts: Vec<ReproVerdict> =
        repro.samples.iter().map(|s| s.original.as_ref().unwrap().verdict).collect();
    assert_eq!(verdicts, [ReproVerdict::Reproduced, ReproVerdict::Reproduced, ReproVerdict::Resolved]);
    assert_eq!(repro.selected.len(), 1);
    assert_eq!((repro.selected[0].id.as_str(), repro.selected[0].members.clone()), ("repro-0", vec![0, 1]));
    let passed: Vec<(Vec<usize>, Vec<String>)> =
        repro.runs.iter().map(|r| (r.samples.clone(), r.passed.clone())).collect();
    assert_eq!(
        passed,
        [
            (vec![1], vec![]),
            (vec![2], vec![]),
            (vec![3], vec!["repro-0".to_owned()]),
            (vec![4], vec!["repro-0".to_owned()])
        ]
    );

    let rerank = traj.rerank.as_ref().unwrap();
    let choice = rerank.choice.as_ref().unwrap();
    assert_eq!(
        (choice.sample, choice.rule, choice.pool.clone()),
        (3, RerankRule::RegressionThenReproduction, vec![3])
    );
    assert!(rerank.tests.contains("1 regression tests"), "{}", rerank.tests);
    // The checkout for the tests is gone (keep_worktrees is off).
    assert!(
        !cache_dir
            .join("work")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|d| d.path().join("swerl__calc-1").exists())
    );

    // A rerun reuses the complete trajectory without calling the model.
    let again = run_agentless(&cfg, &model, &|_| {}).unwrap();
    assert_eq!((again.skipped, again.with_patch, again.usage), (1, 1, Usage::default()));
    assert_eq!(model.calls.lock().unwrap().len(), 6);
    assert_eq!(fs_err::read_to_string(&again.predictions_path).unwrap(), preds);

    // The harness resolves the prediction (real venv, real sandbox).
    let harness = HarnessConfig {
        dataset: cfg.dataset.clone(),
        predictions: summary.predictions_path.display().to_string(),
        repos_dir: repos,
        run_id: "agentless".into(),
        max_workers: 1,
        timeout_secs: 120,
        cache_dir,
        report_dir: root.path().join("reports"),
        log_root: root.path().join("logs/run_evaluation"),
        extra_specs: specs,
        ..HarnessConfig::default()
    };
    let result = run_evaluation(&harness, &|_| {}).unwrap();
    assert_eq!(result.summary.resolved_ids, ["swerl__calc-1"], "{:?}", result.extras);
}

/// Without tests the rerank is the majority vote: the wrong fix (two votes) wins. No sandbox
/// and no environment are needed.
#[test]
fn agentless_without_tests_takes_the_majority() {
    let (root, repos, _calc) = calc_dataset();
    let cfg = AgentlessConfig {
        dataset: root.path().join("dataset.jsonl"),
        repos_dir: repos,
        out_dir: root.path().join("out"),
        localization_samples: 1,
        repair_samples: 5,
        run_tests: false,
        ..AgentlessConfig::default()
    };
    let model = Scripted { calls: Mutex::new(Vec::new()), repairs: None };
    let summary = run_agentless(&cfg, &model, &|_| {}).unwrap();
    assert_eq!(summary.with_patch, 1);
    assert_eq!(*model.calls.lock().unwrap(), [(Call::Localize, 1), (Call::Repair, 5)]);
    let traj: Trajectory = serde_json::from_str(
        &fs_err::read_to_string(cfg.out_dir.join("trajectories/swerl__calc-1.json")).unwrap(),
    )
    .unwrap();
    let choice = traj.rerank.as_ref().unwrap().choice.clone().unwrap();
    assert_eq!((choice.sample, choice.rule, choice.votes), (1, RerankRule::MajorityVote, 2));
    assert!(traj.tests.is_none());
    assert!(traj.model_patch.contains("+    return a * b\n"), "{}", traj.model_patch);
}

/// The calc repository under `repos/` and its instance in `dataset.jsonl`, in a temporary
/// directory.
fn calc_dataset() -> (tempfile::TempDir, std::path::PathBuf, CalcRepo) {
    let root = tempfile::tempdir().unwrap();
    let repos = root.path().join("repos");
    let calc = CalcRepo::create(&repos).unwrap();
    let mut record = calc.instance("swerl__calc-1").unwrap();
    record["problem_statement"] = "add is wrong: add(2, 2) returns 0.\n".into();
    fs_err::write(root.path().join("dataset.jsonl"), format!("{record}\n")).unwrap();
    (root, repos, calc)
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

/// Python's `ast` makes the vote key: the fix written twice in different layouts is one
/// patch with two votes (the Rust approximation would see three one-vote patches and take the
/// earliest, wrong one), and a sample leaving the file unparsable is invalid.
#[test]
fn python_ast_votes_and_syntax_check() {
    let (root, repos, _calc) = calc_dataset();
    let repairs = vec![
        edit("    return a - b\n\n\ndef sub", "    return a * b\n\n\ndef sub"),
        edit("    return a - b\n\n\ndef sub", "    return (a +\n            b)\n\n\ndef sub"),
        edit("    return a - b\n\n\ndef sub", "    return a + b\n\n\ndef sub"),
        edit("    return a - b\n\n\ndef sub", "    return a +\n\n\ndef sub"),
    ];
    for (python_ast, want) in [(true, (1, 2)), (false, (0, 1))] {
        let cfg = AgentlessConfig {
            dataset: root.path().join("dataset.jsonl"),
            repos_dir: repos.clone(),
            out_dir: root.path().join(format!("out-{python_ast}")),
            localization_samples: 1,
            repair_samples: 4,
            run_tests: false,
            python_ast,
            ..AgentlessConfig::default()
        };
        let model = Scripted { calls: Mutex::new(Vec::new()), repairs: Some(repairs.clone()) };
        run_agentless(&cfg, &model, &|_| {}).unwrap();
        let traj: Trajectory = serde_json::from_str(
            &fs_err::read_to_string(cfg.out_dir.join("trajectories/swerl__calc-1.json")).unwrap(),
        )
        .unwrap();
        let repair = traj.repair.as_ref().unwrap();
        let choice = traj.rerank.as_ref().unwrap().choice.clone().unwrap();
        assert_eq!((choice.sample, choice.votes), want, "python_ast {python_ast}: {}", repair.normalizer);
        if python_ast {
            assert!(repair.normalizer.starts_with("python ast ("), "{}", repair.normalizer);
            match &repair.samples[3].outcome {
                swerl_eval::agentless::RepairOutcome::Invalid { reason } => {
                    assert!(reason.contains("calc/__init__.py unparsable (line"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(repair.normalizer, "rust approximation");
            assert!(repair.samples[3].outcome.patch().is_some());
        }
    }
}
