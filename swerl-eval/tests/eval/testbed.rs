//! The `Testbed` on the in-test calc repository (real environment, real sandbox): tests of the
//! original code and with a patch, scripts, and every run starting from the prepared commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use swerl_eval::testing::{CalcRepo, REPO, calc_spec, test_python};
use swerl_eval::{HarnessConfig, Instance, Testbed};

#[test]
fn testbed_runs_tests_and_scripts_each_from_the_prepared_commit() {
    if std::env::var_os("SWERL_EVAL_SKIP_SANDBOX").is_some() {
        return;
    }
    let python = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let root = tempfile::tempdir().unwrap();
    let calc = CalcRepo::create(&root.path().join("repos")).unwrap();
    let instance: Instance = serde_json::from_value(calc.instance("calc-1").unwrap()).unwrap();
    let cfg = HarnessConfig {
        repos_dir: root.path().join("repos"),
        cache_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache"),
        timeout_secs: 120,
        extra_specs: BTreeMap::from([(REPO.into(), BTreeMap::from([("1.0".into(), calc_spec(python))]))]),
        ..HarnessConfig::default()
    };
    let mut bed = Testbed::prepare(&cfg, &instance, &root.path().join("work")).unwrap();
    // The test patch's file exists at base_commit (it gains test_add): its directive.
    let directives = bed.existing_test_directives();
    assert_eq!(directives, ["tests/test_calc.py"]);

    let original = bed.run_tests("", &directives).unwrap();
    assert!(original.applied && !original.invalid_log && !original.timed_out, "{original:?}");
    assert_eq!(original.passed().into_iter().collect::<Vec<_>>(), ["tests/test_calc.py::test_sub"]);
    // A patch that breaks `sub` fails it; the next run is from the prepared commit again.
    let breaks_sub = calc
        .diff_of(|r| {
            let f = r.join("calc/__init__.py");
            let text = fs_err::read_to_string(&f)?;
            fs_err::write(f, text.replace("def sub(a, b):\n    return a - b", "def sub(a, b):\n    return 0"))
        })
        .unwrap();
    let broken = bed.run_tests(&breaks_sub, &directives).unwrap();
    assert_eq!(broken.statuses["tests/test_calc.py::test_sub"], "FAILED", "{broken:?}");
    assert!(bed.run_tests("", &directives).unwrap().passed().contains("tests/test_calc.py::test_sub"));
    let not_a_patch = bed
        .run_tests(
            "diff --git a/nothing b/nothing\n--- a/nothing\n+++ b/nothing\n@@ -1 +1 @@\n-x\n+y\n",
            &directives,
        )
        .unwrap();
    assert!(!not_a_patch.applied);

    // Scripts: the gold patch changes what the script prints; a file a patch adds is gone in the
    // next run; a script past its time is killed.
    let script = "from calc import add\nprint('Issue resolved' if add(2, 3) == 5 else 'Issue reproduced')\n";
    let t = Duration::from_secs(60);
    let before = bed.run_script("", script, t).unwrap();
    assert_eq!(before.output.trim(), "Issue reproduced", "{before:?}");
    let after = bed.run_script(&calc.gold().unwrap(), script, t).unwrap();
    assert_eq!(after.output.trim(), "Issue resolved", "{after:?}");
    let adds = calc.diff_of(|r| fs_err::write(r.join("calc/extra.py"), "X = 1\n")).unwrap();
    let check = "import os\nprint(os.path.exists('calc/extra.py'))\n";
    assert_eq!(bed.run_script(&adds, check, t).unwrap().output.trim(), "True");
    assert_eq!(bed.run_script("", check, t).unwrap().output.trim(), "False");
    let slow = bed.run_script("", "import time\ntime.sleep(30)\n", Duration::from_secs(1)).unwrap();
    assert!(slow.timed_out && slow.seconds < 20.0, "{slow:?}");
    bed.remove().unwrap();
    assert!(!root.path().join("work").exists());
}
