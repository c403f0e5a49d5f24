//! The harness: every selected instance through environment, preparation, patch, tests and
//! grading, in parallel, with upstream's log layout and run summary plus our extras.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

mod instance;
mod testbed;
use instance::run_instance;
use serde::{Deserialize, Serialize};
pub use testbed::{ScriptRun, TESTBED_LOG, TestRun, Testbed};

use crate::dataset::{Instance, load_dataset};
use crate::env::Installer;
use crate::error::{Error, Result};
use crate::grading::GradingMode;
use crate::predictions::{Prediction, PredictionSource, load_predictions};
use crate::report::{
    LOG_REPORT, RunSummary, instance_log_dir, make_run_summary, summary_file_name, summary_json,
};
use crate::sandbox::{Limits, check_available};
use crate::specs::Spec;

/// Everything a run needs; `Default` gives upstream's defaults where upstream has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HarnessConfig {
    /// The dataset file.
    pub dataset: PathBuf,
    /// A predictions file, `gold` or `empty`.
    pub predictions: String,
    /// The directory of clones or bare mirrors.
    pub repos_dir: PathBuf,
    /// The run id (a rerun with the same id skips finished instances).
    pub run_id: String,
    /// Only these instances (all when empty).
    pub instance_ids: Vec<String>,
    /// Parallel workers.
    pub max_workers: usize,
    /// Seconds before a test run is killed (upstream: 1800).
    pub timeout_secs: u64,
    /// Environments, uv and the per-instance checkouts live here.
    pub cache_dir: PathBuf,
    /// Where the run summary and the extras file go (upstream: the current directory).
    pub report_dir: PathBuf,
    /// Upstream's `logs/run_evaluation` (relative to the current directory by default).
    pub log_root: PathBuf,
    /// Grading rules.
    pub grading: GradingMode,
    /// Redo instances that already have a report.
    pub force: bool,
    /// Mirror missing repositories from GitHub into `repos_dir`.
    pub clone_missing: bool,
    /// uv or pip for environments.
    pub installer: Installer,
    /// Resolve from PyPI as of this date (`YYYY-MM-DD` or an RFC 3339 time; uv's
    /// `--exclude-newer`), as an environment built that day would have: the environments, and
    /// the packages the install step adds (a dated resolution passed to pip as constraints).
    /// Upstream's images froze PyPI when they were built; without a date, open-ended
    /// requirements resolve to today's releases (sphinx 3.x then gets a docutils without
    /// `docutils.utils.roman`). Needs Python >= 3.8 (uv); older environments resolve undated.
    pub exclude_newer: Option<String>,
    /// Keep checkouts after grading (for debugging).
    pub keep_worktrees: bool,
    /// Keep each prepared instance (checkout and install step done) under
    /// `<cache_dir>/instances`, as upstream keeps instance images, and start later runs of the
    /// instance from a copy of it: reruns and other models' predictions skip the install step.
    /// Costs a tree and venv of disk per instance. The copy the patch runs in is fresh each time;
    /// the kept one is never given to a sandbox.
    pub cache_instances: bool,
    /// Specs consulted before the built-in table: repo -> version -> spec.
    pub extra_specs: BTreeMap<String, BTreeMap<String, Spec>>,
    /// Sandbox rlimits.
    pub limits: Limits,
    /// Bytes of test output kept.
    pub max_output: usize,
    /// Let the eval script reach the network. Off by default: the patch is untrusted. Some
    /// upstream tests need it (requests' tests call httpbin.org).
    pub test_network: bool,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::new(),
            predictions: "gold".into(),
            repos_dir: PathBuf::from("repos"),
            run_id: "swerl".into(),
            instance_ids: Vec::new(),
            max_workers: 4,
            timeout_secs: 1800,
            cache_dir: PathBuf::from(".swerl-eval-cache"),
            report_dir: PathBuf::from("."),
            log_root: PathBuf::from("logs/run_evaluation"),
            grading: GradingMode::V4,
            force: false,
            clone_missing: false,
            installer: Installer::Auto,
            exclude_newer: None,
            keep_worktrees: false,
            cache_instances: false,
            extra_specs: BTreeMap::new(),
            limits: Limits::default(),
            max_output: 32 << 20,
            test_network: false,
        }
    }
}

/// Where an instance ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// FAIL_TO_PASS pass and PASS_TO_PASS kept.
    Resolved,
    /// Graded and not resolved (including patches refused by the policy).
    Unresolved,
    /// No patch: not run (upstream's `empty_patch_ids`).
    Empty,
    /// The patch did not apply, the tests timed out, the log was invalid, or the harness failed.
    Error,
    /// The environment (interpreter, packages, install step) could not be built.
    EnvironmentUnavailable,
}

/// A pipeline stage, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Building or reusing the shared environment.
    Environment,
    /// Checkout, instance venv, install step, commit.
    Prepare,
    /// The patch policy and apply chain.
    Apply,
    /// The eval script in the sandbox.
    Test,
    /// Parsing and grading.
    Grade,
}

/// What the progress callback hears.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The run starts `total` instances (after skipping finished ones).
    Planned {
        /// Instances to run.
        total: usize,
        /// Instances skipped because their report exists.
        skipped: usize,
    },
    /// An instance entered a stage.
    Stage {
        /// The instance.
        instance_id: String,
        /// The stage.
        stage: Stage,
    },
    /// An instance finished.
    Finished(Box<InstanceOutcome>),
}

/// Wall time per stage, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Building (or waiting for, or reusing) the shared environment.
    pub environment: f64,
    /// Checkout, instance venv, install step and commit.
    pub prepare: f64,
    /// Policy and apply chain.
    pub apply: f64,
    /// The eval script.
    pub test: f64,
    /// Everything.
    pub total: f64,
}

/// One instance's result and our extras about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceOutcome {
    /// The instance.
    pub instance_id: String,
    /// Where it ended up.
    pub bucket: Bucket,
    /// Why, for everything but resolved.
    pub reason: Option<String>,
    /// The grading mode.
    pub grading: GradingMode,
    /// The shared environment's directory name (`repo-version-key`).
    pub environment: Option<String>,
    /// True when the environment was reused rather than built by this instance.
    pub environment_cached: Option<bool>,
    /// Per-stage wall time.
    pub timings: Timings,
    /// True when a report from an earlier run was reused.
    pub skipped: bool,
}

/// Our file beside the summary: `<model>.<run_id>.swerl.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunExtras {
    /// The run id.
    pub run_id: String,
    /// The grading mode.
    pub grading: GradingMode,
    /// Count per bucket.
    pub buckets: BTreeMap<Bucket, usize>,
    /// Per instance.
    pub instances: BTreeMap<String, InstanceOutcome>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Upstream's summary.
    pub summary: RunSummary,
    /// Our extras.
    pub extras: RunExtras,
    /// Where the summary was written.
    pub summary_path: PathBuf,
    /// Where the extras were written.
    pub extras_path: PathBuf,
}

/// What every worker shares.
struct Context<'a> {
    cfg: &'a HarnessConfig,
    /// Environments that failed in this run, by name, so they are not rebuilt per instance.
    env_failures: Mutex<HashMap<String, String>>,
    progress: &'a (dyn Fn(Progress) + Sync),
}

/// Runs an evaluation; errors only for usage or infrastructure problems (a bad file, no
/// sandbox), never for an instance's own failure.
pub fn run_evaluation(cfg: &HarnessConfig, progress: &(dyn Fn(Progress) + Sync)) -> Result<RunResult> {
    // The sandbox binds paths by name: make them absolute once.
    let mut owned = cfg.clone();
    for p in [&mut owned.cache_dir, &mut owned.repos_dir, &mut owned.log_root, &mut owned.report_dir] {
        *p = std::path::absolute(&*p)?;
    }
    let cfg = &owned;
    let mut dataset = load_dataset(&cfg.dataset)?;
    if !cfg.instance_ids.is_empty() {
        for id in &cfg.instance_ids {
            if !dataset.iter().any(|i| &i.instance_id == id) {
                return Err(Error::UnknownInstance(id.clone()));
            }
        }
        dataset.retain(|i| cfg.instance_ids.contains(&i.instance_id));
    }
    let mut predictions = load_predictions(&PredictionSource::parse(&cfg.predictions), &dataset)?;
    if !cfg.instance_ids.is_empty() {
        predictions.retain(|id, _| cfg.instance_ids.contains(id));
    }
    if let Some(id) = predictions.keys().find(|id| !dataset.iter().any(|i| &i.instance_id == *id)) {
        return Err(Error::UnknownInstance(id.clone()));
    }
    if predictions.is_empty() {
        return Err(Error::Config("no predictions to evaluate".into()));
    }
    check_available()?;
    if cfg.max_workers == 0 {
        return Err(Error::Config("max_workers must be at least 1".into()));
    }
    let ctx = Context { cfg, env_failures: Mutex::new(HashMap::new()), progress };
    let mut todo = Vec::new();
    let mut outcomes = BTreeMap::new();
    for instance in &dataset {
        let Some(pred) = predictions.get(&instance.instance_id) else { continue };
        let dir = instance_log_dir(&cfg.log_root, &cfg.run_id, pred);
        if pred.is_empty() {
            outcomes.insert(instance.instance_id.clone(), empty_outcome(instance, cfg.grading));
        } else if !cfg.force && dir.join(LOG_REPORT).is_file() {
            outcomes.insert(instance.instance_id.clone(), reused_outcome(instance, &dir, cfg.grading));
        } else {
            todo.push((instance, pred));
        }
    }
    progress(Progress::Planned { total: todo.len(), skipped: outcomes.len() });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.max_workers)
        .build()
        .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    let done: Vec<InstanceOutcome> = pool.install(|| {
        todo.par_iter()
            .map(|(instance, pred)| {
                let outcome = run_instance(&ctx, instance, pred);
                progress(Progress::Finished(Box::new(outcome.clone())));
                outcome
            })
            .collect()
    });
    for o in done {
        outcomes.insert(o.instance_id.clone(), o);
    }
    let summary = make_run_summary(&predictions, &dataset, &cfg.run_id, &cfg.log_root, cfg.grading);
    let model_dir = predictions.values().next().map(Prediction::model_dir).unwrap_or_default();
    fs_err::create_dir_all(&cfg.report_dir)?;
    let summary_path = cfg.report_dir.join(summary_file_name(&model_dir, &cfg.run_id));
    fs_err::write(&summary_path, summary_json(&summary))?;
    let mut buckets = BTreeMap::new();
    for o in outcomes.values() {
        *buckets.entry(o.bucket).or_insert(0) += 1;
    }
    let extras = RunExtras { run_id: cfg.run_id.clone(), grading: cfg.grading, buckets, instances: outcomes };
    let extras_path = cfg.report_dir.join(format!("{model_dir}.{}.swerl.json", cfg.run_id));
    let text = serde_json::to_string_pretty(&extras).expect("plain data serialises");
    fs_err::write(&extras_path, text + "\n")?;
    Ok(RunResult { summary, extras, summary_path, extras_path })
}

fn empty_outcome(instance: &Instance, grading: GradingMode) -> InstanceOutcome {
    InstanceOutcome {
        instance_id: instance.instance_id.clone(),
        bucket: Bucket::Empty,
        reason: Some("empty patch (not run, as upstream)".into()),
        grading,
        environment: None,
        environment_cached: None,
        timings: Timings::default(),
        skipped: false,
    }
}

fn reused_outcome(instance: &Instance, dir: &Path, grading: GradingMode) -> InstanceOutcome {
    let previous: Option<InstanceOutcome> =
        fs_err::read_to_string(dir.join(EXTRAS_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
    let mut o = previous.unwrap_or_else(|| {
        let resolved = fs_err::read_to_string(dir.join(LOG_REPORT))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v[&instance.instance_id]["resolved"].as_bool())
            .unwrap_or(false);
        InstanceOutcome {
            instance_id: instance.instance_id.clone(),
            bucket: if resolved { Bucket::Resolved } else { Bucket::Unresolved },
            reason: None,
            grading,
            environment: None,
            environment_cached: None,
            timings: Timings::default(),
            skipped: true,
        }
    });
    o.skipped = true;
    o
}

/// Our per-instance extras file, beside upstream's files.
pub const EXTRAS_FILE: &str = "swerl.json";
