//! `cache_instances`: the first run keeps the prepared instance, later runs start from a fresh
//! copy of it (no install step), and what one run's untrusted code writes (here a `.pth` planted
//! in the venv that kills every later Python) never reaches the next run.

use std::collections::BTreeMap;
use std::path::Path;

use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};
use swerl_eval::{Bucket, HarnessConfig, run_evaluation};

#[test]
fn prepared_instances_are_reused_and_stay_clean() {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return;
    }
    swerl_eval::sandbox::check_available().expect("the sandbox (bubblewrap) is required");
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let root = tempfile::tempdir().unwrap();
    let calc = CalcRepo::create(&root.path().join("repos")).unwrap();
    // A fresh instance id per test run, so the first run really prepares (the environment itself
    // comes from the e2e test's cache).
    let id = format!("swerl__calc-cache{}", std::process::id());
    fs_err::write(root.path().join("dataset.jsonl"), format!("{}\n", calc.instance(&id).unwrap())).unwrap();
    let poison = calc
        .patch_with(
            "    import os, sysconfig\n    open(os.path.join(sysconfig.get_paths()['purelib'], 'zz_poison.pth'), 'w').write('import os; os._exit(3)\\n')\n    open('UNTRACKED_POISON', 'w').write('x')\n    return a + b + 1",
        )
        .unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let run = |run_id: &str, patch: &str, keep: bool| {
        let pred = serde_json::json!({"instance_id": id, "model_name_or_path": "m", "model_patch": patch});
        let preds = root.path().join(format!("{run_id}.jsonl"));
        fs_err::write(&preds, format!("{pred}\n")).unwrap();
        let cfg = HarnessConfig {
            dataset: root.path().join("dataset.jsonl"),
            predictions: preds.display().to_string(),
            repos_dir: root.path().join("repos"),
            run_id: run_id.into(),
            max_workers: 1,
            timeout_secs: 60,
            cache_dir: cache.clone(),
            report_dir: root.path().join("reports"),
            log_root: root.path().join("logs"),
            cache_instances: true,
            keep_worktrees: keep,
            extra_specs: BTreeMap::from([(REPO.into(), BTreeMap::from([("1.0".into(), calc_spec(python))]))]),
            ..HarnessConfig::default()
        };
        let result = run_evaluation(&cfg, &|_| {}).unwrap();
        let log = fs_err::read_to_string(
            root.path().join("logs").join(run_id).join("m").join(&id).join("run_instance.log"),
        )
        .unwrap();
        (result.extras.instances[&id].clone(), log)
    };

    let (first, log) = run("poison", &poison, true);
    assert_eq!(first.bucket, Bucket::Unresolved, "{log}");
    assert!(log.contains("Prepared instance: kept in the cache"), "{log}");
    assert!(log.contains("Install step"), "{log}");
    let slot = fs_err::read_dir(cache.join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-"))))
        .unwrap();
    // The poison really landed in the run's copy (kept for inspection here).
    assert!(slot.join("run/testbed/UNTRACKED_POISON").is_file());
    assert!(walk(&slot.join("run/venv")).into_iter().any(|p| p.ends_with("zz_poison.pth")));

    let gold = calc.gold().unwrap();
    let (second, log) = run("gold", &gold, false);
    assert_eq!(second.bucket, Bucket::Resolved, "{:?}\n{log}", second.reason);
    assert!(log.contains("Prepared instance: copied from the cache"), "{log}");
    assert!(!log.contains("Install step"), "{log}");

    // The kept copy holds neither poison, and no run directory is left behind.
    let kept: Vec<_> = fs_err::read_dir(cache.join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-"))))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let pristine = kept[0].join("pristine");
    assert!(pristine.join("testbed").is_dir() && !pristine.join("testbed/UNTRACKED_POISON").exists());
    let planted = walk(&pristine.join("venv")).into_iter().any(|p| p.ends_with("zz_poison.pth"));
    assert!(!planted);
    assert!(!kept[0].join("run").exists());
    let _ = fs_err::remove_dir_all(&kept[0]);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
