//! A prepared instance for repeated sandboxed runs: the harness's environment and preparation
//! once, then any number of (patch, tests) or (patch, script) runs, each from the prepared
//! commit. Agentless Mini's regression and reproduction tests run here.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::instance::{Failure, InstanceLog, Prepared, prepare, sandbox_for};
use super::{HarnessConfig, Timings};
use crate::dataset::Instance;
use crate::directives::{modified_files, test_directives};
use crate::error::{Error, Result};
use crate::grading::{GradingMode, LogEval, get_logs_eval};
use crate::parsers::{LogParser, StatusMap};
use crate::patch::apply_script;
use crate::sandbox::run;
use crate::script::{VenvContext, existing_tests_script, translate_for_venv};

/// The log of preparation, in the work directory.
pub const TESTBED_LOG: &str = "testbed.log";

/// One instance, prepared once for many runs (see the module docs).
///
/// Every run starts by resetting the checkout to the prepared commit inside the sandbox
/// (`git reset --hard`, `git clean -fd`: files the install step left and git ignores stay), so a
/// run never sees an earlier one's patch. Runs of one `Testbed` are sequential (`&mut self`).
pub struct Testbed {
    cfg: HarnessConfig,
    instance: Instance,
    prepared: Prepared,
    parser: LogParser,
    work: PathBuf,
    /// Seconds spent building or reusing the environment and preparing the checkout.
    pub timings: Timings,
}

impl std::fmt::Debug for Testbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testbed")
            .field("instance", &self.instance.instance_id)
            .field("work", &self.work)
            .finish_non_exhaustive()
    }
}

/// A test command's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    /// False when the patch did not apply (no tests ran).
    pub applied: bool,
    /// Test name -> status (`PASSED`, `FAILED`, ...), as the repository's log parser reads the
    /// log; empty when the log was invalid.
    pub statuses: StatusMap,
    /// The log had no markers, or an error marker (upstream's invalid log).
    pub invalid_log: bool,
    /// The wall clock ran out and the process tree was killed.
    pub timed_out: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl TestRun {
    /// Tests that passed (upstream's `PASSED` or `XFAIL`).
    pub fn passed(&self) -> BTreeSet<String> {
        self.statuses
            .iter()
            .filter(|(_, s)| *s == "PASSED" || *s == "XFAIL")
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// A script's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptRun {
    /// False when the patch did not apply (the script did not run).
    pub applied: bool,
    /// stdout and stderr, interleaved (middle dropped past the harness's output limit).
    pub output: String,
    /// Exit code (`None` when killed or not run).
    pub code: Option<i32>,
    /// The wall clock ran out and the process tree was killed.
    pub timed_out: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Testbed {
    /// Builds (or reuses) the instance's environment and prepares a checkout in `work` (removed
    /// first if it exists), as the harness does before applying a patch. `cfg` supplies the
    /// repositories, cache, installer, specs, limits and timeout; its dataset and predictions
    /// are not used. Preparation's log is `work/testbed.log`.
    pub fn prepare(cfg: &HarnessConfig, instance: &Instance, work: &Path) -> Result<Self> {
        crate::sandbox::check_available()?;
        let mut cfg = cfg.clone();
        for p in [&mut cfg.cache_dir, &mut cfg.repos_dir] {
            *p = std::path::absolute(&*p)?;
        }
        let work = std::path::absolute(work)?;
        if work.exists() {
            fs_err::remove_dir_all(&work)?;
        }
        fs_err::create_dir_all(&work)?;
        let parser = match &instance.log_parser {
            Some(name) => LogParser::from_name(name),
            None => LogParser::for_repo(&instance.repo),
        }?;
        let mut log = InstanceLog(fs_err::File::create(work.join(TESTBED_LOG))?);
        let mut timings = Timings::default();
        let failures = Mutex::new(HashMap::new());
        let prepared = prepare(&cfg, &failures, instance, &work, &mut log, &mut timings, &|_| {}).map_err(
            |Failure(bucket, reason)| {
                Error::Config(format!(
                    "{}: cannot prepare a testbed ({bucket:?}): {reason}",
                    instance.instance_id
                ))
            },
        )?;
        // What the install step left untracked (and not ignored: in-place build outputs of some
        // projects) is committed too, so that the reset before every run (`git clean`) keeps it.
        // This runs before any untrusted code has touched the checkout.
        let testbed = &prepared.testbed;
        crate::checkout::git(testbed, &["add", "-A"], "commit the prepared testbed")?;
        crate::checkout::git(
            testbed,
            &["commit", "--quiet", "--allow-empty", "-m", "testbed"],
            "commit the prepared testbed",
        )?;
        Ok(Self { cfg, instance: instance.clone(), prepared, parser, work, timings })
    }

    /// The checkout (the stand-in for upstream's `/testbed`).
    pub fn checkout(&self) -> &Path {
        &self.prepared.testbed
    }

    /// The interpreter of the instance's environment.
    pub fn python(&self) -> PathBuf {
        self.prepared.venv.join("bin").join("python")
    }

    /// The test directives of the test patch's files that exist at `base_commit` (new test
    /// files are left out: the original repository has no such file), in upstream's form.
    pub fn existing_test_directives(&self) -> Vec<String> {
        let headers: String = modified_files(&self.instance.test_patch)
            .into_iter()
            .filter(|p| self.prepared.testbed.join(p).is_file())
            .map(|p| format!("diff --git a/{p} b/{p}\n"))
            .collect();
        test_directives(&self.instance.repo, &headers)
    }

    /// Resets the checkout, applies `patch` (if not empty) with the grading mode's apply chain,
    /// in the sandbox. Returns false when the patch did not apply.
    fn reset_and_apply(&mut self, patch: &str) -> Result<bool> {
        let mut script = String::from("git reset --quiet --hard HEAD && git clean -fdq || exit 1\n");
        let mut extra = Vec::new();
        if !patch.trim().is_empty() {
            let file = self.work.join("patch.diff");
            fs_err::write(&file, patch)?;
            script.push_str(&apply_script(GradingMode::V4, &file));
            extra.push(file);
        }
        let cmd = sandbox_for(&self.cfg, script, &self.prepared.place(), extra);
        Ok(run(&cmd)?.success())
    }

    /// Runs the spec's test command on `directives` with `patch` applied (no test patch) and
    /// reads the statuses with the repository's log parser.
    pub fn run_tests(&mut self, patch: &str, directives: &[String]) -> Result<TestRun> {
        let start = Instant::now();
        if !self.reset_and_apply(patch)? {
            return Ok(TestRun { seconds: start.elapsed().as_secs_f64(), ..TestRun::default() });
        }
        let env = &self.prepared.env;
        let site_packages = [&self.prepared.venv, &env.dir]
            .map(|root| crate::env::site_packages(root, &env.interpreter).display().to_string())
            .into();
        let ctx = VenvContext { venv: &self.prepared.venv, repo_dir: &self.prepared.testbed, site_packages };
        let script = translate_for_venv(&existing_tests_script(&self.prepared.spec, directives), &ctx, false);
        let file = self.work.join("tests.sh");
        fs_err::write(&file, &script)?;
        let mut cmd = sandbox_for(&self.cfg, String::new(), &self.prepared.place(), vec![file.clone()]);
        cmd.argv = vec!["/bin/bash".into(), file.display().to_string()];
        cmd.network = self.cfg.test_network;
        let out = run(&cmd)?;
        let (statuses, invalid_log) = match get_logs_eval(&out.output, self.parser, GradingMode::V4) {
            Ok(LogEval::Valid(map)) if !out.timed_out => (map, false),
            _ => (StatusMap::new(), true),
        };
        Ok(TestRun {
            applied: true,
            statuses,
            invalid_log,
            timed_out: out.timed_out,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Runs `python <code>` from the checkout's root with `patch` applied, in the instance's
    /// environment, within `timeout`. The script file lives outside the checkout (read-only in
    /// the sandbox), so nothing the patch plants there can redirect the write.
    pub fn run_script(&mut self, patch: &str, code: &str, timeout: Duration) -> Result<ScriptRun> {
        let start = Instant::now();
        if !self.reset_and_apply(patch)? {
            return Ok(ScriptRun { seconds: start.elapsed().as_secs_f64(), ..ScriptRun::default() });
        }
        let file = self.work.join("script.py");
        fs_err::write(&file, code)?;
        let bash = format!(
            "source '{}/bin/activate'\nexec python '{}'\n",
            self.prepared.venv.display(),
            file.display()
        );
        let mut cmd = sandbox_for(&self.cfg, bash, &self.prepared.place(), vec![file]);
        cmd.timeout = timeout;
        cmd.network = self.cfg.test_network;
        let out = run(&cmd)?;
        Ok(ScriptRun {
            applied: true,
            output: out.output,
            code: out.code,
            timed_out: out.timed_out,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Removes the work directory (checkout and instance venv).
    pub fn remove(self) -> Result<()> {
        fs_err::remove_dir_all(&self.work)?;
        Ok(())
    }
}
