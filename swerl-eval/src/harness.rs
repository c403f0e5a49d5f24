//! The harness: every selected instance through environment, preparation, patch, tests and
//! grading, in parallel, with upstream's log layout and run summary plus our extras.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkout::{commit_setup, find_clone, fresh_checkout};
use crate::dataset::{Instance, load_dataset};
use crate::env::{Installer, SharedEnv, ensure_shared_env, make_instance_venv, requirements};
use crate::error::{Error, Result};
use crate::grading::GradingMode;
use crate::parsers::LogParser;
use crate::patch::{apply_script, check_policy};
use crate::predictions::{Prediction, PredictionSource, load_predictions};
use crate::report::{
    LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT, RunSummary, eval_report, instance_log_dir, make_run_summary,
    report_json, summary_file_name, summary_json,
};
use crate::sandbox::{Limits, SandboxCommand, check_available, run};
use crate::script::{VenvContext, translate_for_venv, upstream_eval_script};
use crate::specs::{Spec, spec_for};

/// Everything a run needs; `Default` gives upstream's defaults where upstream has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Keep checkouts after grading (for debugging).
    pub keep_worktrees: bool,
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
            keep_worktrees: false,
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

struct Context<'a> {
    cfg: &'a HarnessConfig,
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

/// The run_instance.log writer.
struct InstanceLog(fs_err::File);

impl InstanceLog {
    fn line(&mut self, text: &str) {
        use std::io::Write;
        let _ = writeln!(self.0, "{text}");
    }
}

struct Failure(Bucket, String);

fn run_instance(ctx: &Context<'_>, instance: &Instance, pred: &Prediction) -> InstanceOutcome {
    let cfg = ctx.cfg;
    let start = Instant::now();
    let log_dir = instance_log_dir(&cfg.log_root, &cfg.run_id, pred);
    let mut outcome = InstanceOutcome {
        instance_id: instance.instance_id.clone(),
        bucket: Bucket::Error,
        reason: None,
        grading: cfg.grading,
        environment: None,
        environment_cached: None,
        timings: Timings::default(),
        skipped: false,
    };
    let _span = tracing::info_span!("instance", id = %instance.instance_id).entered();
    let result = (|| -> std::result::Result<(), Failure> {
        let infra = |e: Error| Failure(Bucket::Error, e.to_string());
        if log_dir.exists() {
            fs_err::remove_dir_all(&log_dir).map_err(|e| infra(e.into()))?;
        }
        fs_err::create_dir_all(&log_dir).map_err(|e| infra(e.into()))?;
        let file = fs_err::File::create(log_dir.join(LOG_INSTANCE)).map_err(|e| infra(e.into()))?;
        let mut log = InstanceLog(file);
        log.line(&format!(
            "Grading mode: {} (swebench {})",
            cfg.grading.name(),
            match cfg.grading {
                GradingMode::V4 => "4.1",
                GradingMode::V5 => "5",
            }
        ));
        let patch = pred.model_patch.clone().unwrap_or_default();
        fs_err::write(log_dir.join("patch.diff"), &patch).map_err(|e| infra(e.into()))?;
        pipeline(ctx, instance, pred, &patch, &log_dir, &mut log, &mut outcome)
    })();
    if let Err(Failure(bucket, reason)) = result {
        outcome.bucket = bucket;
        outcome.reason = Some(reason);
    }
    outcome.timings.total = start.elapsed().as_secs_f64();
    if let Ok(text) = serde_json::to_string_pretty(&outcome) {
        let _ = fs_err::write(log_dir.join(EXTRAS_FILE), text + "\n");
    }
    if !cfg.keep_worktrees {
        let _ = fs_err::remove_dir_all(work_dir(cfg, pred));
    }
    outcome
}

fn work_dir(cfg: &HarnessConfig, pred: &Prediction) -> PathBuf {
    cfg.cache_dir.join("work").join(&cfg.run_id).join(pred.model_dir()).join(&pred.instance_id)
}

fn stage(ctx: &Context<'_>, instance: &Instance, stage: Stage) {
    tracing::info!(?stage, "stage");
    (ctx.progress)(Progress::Stage { instance_id: instance.instance_id.clone(), stage });
}

fn spec_of<'a>(cfg: &'a HarnessConfig, instance: &Instance) -> Option<&'a Spec> {
    cfg.extra_specs
        .get(&instance.repo)
        .and_then(|v| v.get(&instance.version))
        .or_else(|| spec_for(&instance.repo, &instance.version).ok())
}

fn environment(
    ctx: &Context<'_>,
    instance: &Instance,
    spec: &Spec,
    clone: &Path,
    log: &mut InstanceLog,
) -> std::result::Result<SharedEnv, Failure> {
    let unavailable = |r: String| Failure(Bucket::EnvironmentUnavailable, r);
    let name = format!("{}-{}-py{}", instance.repo, instance.version, spec.python);
    if let Some(reason) = ctx.env_failures.lock().expect("poisoned").get(&name) {
        return Err(unavailable(reason.clone()));
    }
    let result = (|| {
        let interpreter = crate::python::find_interpreter(&spec.python)?;
        log.line(&format!(
            "Interpreter: {} ({} from {})",
            interpreter.path.display(),
            interpreter.version,
            interpreter.source
        ));
        let commit = if instance.environment_setup_commit.is_empty() {
            &instance.base_commit
        } else {
            &instance.environment_setup_commit
        };
        let reqs = requirements(&instance.repo, spec, clone, commit)?;
        ensure_shared_env(&ctx.cfg.cache_dir, &name, &interpreter, &reqs, ctx.cfg.installer)
            .map_err(|e| format!("environment build failed: {e}"))
    })();
    result.map_err(|reason| {
        ctx.env_failures.lock().expect("poisoned").insert(name, reason.clone());
        unavailable(reason)
    })
}

struct Place<'a> {
    testbed: &'a Path,
    venv: &'a Path,
    clone: &'a Path,
    env: &'a SharedEnv,
}

fn sandbox_for(
    cfg: &HarnessConfig,
    script: String,
    place: &Place<'_>,
    extra_ro: Vec<PathBuf>,
) -> SandboxCommand {
    let Place { testbed, venv, clone, env } = *place;
    let mut cmd = SandboxCommand::bash(&script, testbed);
    cmd.writable = vec![testbed.to_owned(), venv.to_owned()];
    cmd.read_only = vec![env.dir.clone(), clone.to_owned()];
    if let Some(prefix) = env.interpreter.path.parent().and_then(Path::parent) {
        cmd.read_only.push(prefix.to_owned());
    }
    cmd.read_only.extend(extra_ro);
    cmd.read_only.retain(|p| p.starts_with("/tmp"));
    cmd.timeout = Duration::from_secs(cfg.timeout_secs);
    cmd.max_output = cfg.max_output;
    cmd.limits = cfg.limits.clone();
    cmd.env = vec![("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into())];
    cmd
}

fn pipeline(
    ctx: &Context<'_>,
    instance: &Instance,
    pred: &Prediction,
    patch: &str,
    log_dir: &Path,
    log: &mut InstanceLog,
    outcome: &mut InstanceOutcome,
) -> std::result::Result<(), Failure> {
    let cfg = ctx.cfg;
    let infra = |e: Error| Failure(Bucket::Error, e.to_string());
    let io = |e: std::io::Error| Failure(Bucket::Error, e.to_string());
    let parser = match &instance.log_parser {
        Some(name) => LogParser::from_name(name),
        None => LogParser::for_repo(&instance.repo),
    }
    .map_err(infra)?;

    // 1. Environment.
    stage(ctx, instance, Stage::Environment);
    let t = Instant::now();
    let spec = spec_of(cfg, instance).ok_or_else(|| {
        Failure(
            Bucket::EnvironmentUnavailable,
            format!("no spec for {} version {}", instance.repo, instance.version),
        )
    })?;
    let clone = match find_clone(&cfg.repos_dir, &instance.repo) {
        Ok(c) => c,
        Err(_) if cfg.clone_missing => mirror(&cfg.repos_dir, &instance.repo).map_err(infra)?,
        Err(e) => return Err(infra(e)),
    };
    let env = environment(ctx, instance, spec, &clone, log)?;
    outcome.environment = env.dir.file_name().map(|n| n.to_string_lossy().into_owned());
    outcome.environment_cached = Some(env.cached);
    log.line(&format!(
        "Environment: {} ({}, {} by {}, build log {})",
        env.dir.display(),
        if env.cached { "cached" } else { "built" },
        env.key,
        env.installer,
        env.log.display()
    ));
    outcome.timings.environment = t.elapsed().as_secs_f64();

    // 2. Preparation.
    stage(ctx, instance, Stage::Prepare);
    let t = Instant::now();
    let work = work_dir(cfg, pred);
    let testbed = work.join("testbed");
    let venv = work.join("venv");
    fresh_checkout(&clone, &instance.base_commit, &testbed).map_err(infra)?;
    let place = Place { testbed: &testbed, venv: &venv, clone: &clone, env: &env };
    make_instance_venv(&env, &venv).map_err(|e| Failure(Bucket::EnvironmentUnavailable, e))?;
    let mut setup = format!("set -x\nsource '{}/bin/activate'\n", venv.display());
    for line in &spec.pre_install {
        if line.trim_start().starts_with("apt-get") {
            log.line(&format!("Skipped pre_install (needs root packages): {line}"));
        } else {
            setup.push_str(&format!("{line}\n"));
        }
    }
    setup.push_str("set -e\n");
    if let Some(install) = &spec.install {
        setup.push_str(&format!("{install}\n"));
    }
    let mut cmd = sandbox_for(cfg, setup, &place, vec![]);
    cmd.network = true;
    // A pip cache shared by the install steps (they run before the untrusted patch is applied):
    // build isolation then reuses downloaded wheels instead of fetching them per instance.
    let pip_cache = cfg.cache_dir.join("pip-cache");
    fs_err::create_dir_all(&pip_cache).map_err(io)?;
    cmd.writable.push(pip_cache.clone());
    cmd.env.push(("PIP_CACHE_DIR".into(), pip_cache.display().to_string()));
    let out = run(&cmd).map_err(infra)?;
    log.line(&format!("Install step ({:.1}s):\n{}", out.elapsed.as_secs_f64(), out.output));
    if !out.success() {
        return Err(Failure(
            Bucket::EnvironmentUnavailable,
            format!(
                "install step failed (exit {:?}, timed out: {}); see {LOG_INSTANCE}",
                out.code, out.timed_out
            ),
        ));
    }
    commit_setup(&testbed).map_err(infra)?;
    outcome.timings.prepare = t.elapsed().as_secs_f64();

    // 3. Patch.
    stage(ctx, instance, Stage::Apply);
    let t = Instant::now();
    if let Some(violation) = check_policy(patch, &instance.test_patch) {
        log.line(&violation.to_string());
        let report = crate::report::InstanceReport {
            patch_exists: true,
            infra_failure: (cfg.grading == GradingMode::V5).then_some(false),
            ..Default::default()
        };
        let text = crate::pyjson::to_python_json(
            &BTreeMap::from([(instance.instance_id.as_str(), PolicyReport(report, violation.to_string()))]),
            4,
        );
        fs_err::write(log_dir.join(LOG_REPORT), text).map_err(io)?;
        outcome.bucket = Bucket::Unresolved;
        outcome.reason = Some(violation.to_string());
        return Ok(());
    }
    let patch_file = work.join("patch.diff");
    fs_err::write(&patch_file, patch).map_err(io)?;
    let cmd = sandbox_for(cfg, apply_script(cfg.grading, &patch_file), &place, vec![patch_file.clone()]);
    let out = run(&cmd).map_err(infra)?;
    log.line(&out.output);
    outcome.timings.apply = t.elapsed().as_secs_f64();
    if !out.success() {
        return Err(Failure(Bucket::Error, "patch did not apply (>>>>> Patch Apply Failed)".into()));
    }

    // 4. Tests.
    stage(ctx, instance, Stage::Test);
    let t = Instant::now();
    let upstream = match instance.eval_script.as_deref() {
        Some(s) if !s.trim().is_empty() => s.to_owned(),
        _ => upstream_eval_script(instance, spec),
    };
    let ctx_v = VenvContext { venv: &venv, repo_dir: &testbed };
    let script = translate_for_venv(&upstream, &ctx_v, cfg.grading == GradingMode::V5);
    fs_err::write(log_dir.join("eval.sh"), &script).map_err(io)?;
    let eval_file = work.join("eval.sh");
    fs_err::write(&eval_file, &script).map_err(io)?;
    let mut cmd = sandbox_for(cfg, String::new(), &place, vec![eval_file.clone()]);
    cmd.argv = vec!["/bin/bash".into(), eval_file.display().to_string()];
    cmd.network = cfg.test_network;
    let out = run(&cmd).map_err(infra)?;
    outcome.timings.test = t.elapsed().as_secs_f64();
    log.line(&format!("Test runtime: {:.2} seconds", out.elapsed.as_secs_f64()));
    let mut text = out.output;
    if out.timed_out {
        text.push_str(&format!("\n\nTimeout error: {} seconds exceeded.", cfg.timeout_secs));
    }
    fs_err::write(log_dir.join(LOG_TEST_OUTPUT), &text).map_err(io)?;
    if out.timed_out {
        log.line(&format!("Test timed out after {} seconds.", cfg.timeout_secs));
        return Err(Failure(
            Bucket::Error,
            format!("tests timed out after {} s (process tree killed)", cfg.timeout_secs),
        ));
    }

    // 5. Grading.
    stage(ctx, instance, Stage::Grade);
    let report = eval_report(instance, pred, &text, parser, cfg.grading)
        .map_err(|e| Failure(Bucket::Error, e.to_string()))?;
    fs_err::write(log_dir.join(LOG_REPORT), report_json(&instance.instance_id, &report)).map_err(io)?;
    log.line(&format!("Result for {}: resolved: {}", instance.instance_id, report.resolved));
    if report.resolved {
        outcome.bucket = Bucket::Resolved;
    } else if !report.patch_successfully_applied {
        outcome.bucket = Bucket::Unresolved;
        outcome.reason =
            Some("invalid test log (markers missing, error marker, or v5 exit-code check)".into());
    } else {
        outcome.bucket = Bucket::Unresolved;
        let failing = report
            .tests_status
            .as_ref()
            .map_or(0, |t| t.fail_to_pass.failure.len() + t.pass_to_pass.failure.len());
        outcome.reason = Some(format!("{failing} FAIL_TO_PASS/PASS_TO_PASS test(s) failed"));
    }
    Ok(())
}

/// report.json of a patch refused by the policy: upstream's fields plus the reason.
struct PolicyReport(crate::report::InstanceReport, String);

impl Serialize for PolicyReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = &self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("patch_is_None", &r.patch_is_none)?;
        m.serialize_entry("patch_exists", &r.patch_exists)?;
        m.serialize_entry("patch_successfully_applied", &r.patch_successfully_applied)?;
        m.serialize_entry("resolved", &r.resolved)?;
        if let Some(i) = r.infra_failure {
            m.serialize_entry("infra_failure", &i)?;
        }
        m.serialize_entry("patch_policy_violation", &self.1)?;
        m.end()
    }
}

/// `git clone --mirror https://github.com/<repo>` into `repos/owner__name.git` (only with
/// `clone_missing`).
fn mirror(repos: &Path, repo: &str) -> Result<PathBuf> {
    let dst = repos.join(format!("{}.git", repo.replace('/', "__")));
    fs_err::create_dir_all(repos)?;
    crate::checkout::git(
        repos,
        &["clone", "--quiet", "--mirror", &format!("https://github.com/{repo}"), &dst.display().to_string()],
        "clone missing repository",
    )?;
    Ok(dst)
}
