//! One instance through the pipeline: environment, preparation, patch, tests, grading.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Bucket, Context, EXTRAS_FILE, HarnessConfig, InstanceOutcome, Progress, Stage, Timings};
use crate::checkout::{commit_setup, find_clone, fresh_checkout, local_submodules};
use crate::dataset::Instance;
use crate::env::{
    EnvError, SharedEnv, dated_install_lines, ensure_shared_env, find_or_install_uv, make_instance_venv,
    requirements, short_key,
};
use crate::error::{Error, Result};
use crate::grading::GradingMode;
use crate::parsers::LogParser;
use crate::patch::{apply_script, check_policy};
use crate::predictions::Prediction;
use crate::report::{LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT, eval_report, instance_log_dir, report_json};
use crate::sandbox::{SandboxCommand, run};
use crate::script::{VenvContext, translate_for_venv, upstream_eval_script};
use crate::specs::{Spec, spec_for};

/// The run_instance.log writer.
pub(super) struct InstanceLog(pub(super) fs_err::File);

impl InstanceLog {
    pub(super) fn line(&mut self, text: &str) {
        use std::io::Write;
        let _ = writeln!(self.0, "{text}");
    }
}

pub(super) struct Failure(pub(super) Bucket, pub(super) String);

pub(super) fn run_instance(ctx: &Context<'_>, instance: &Instance, pred: &Prediction) -> InstanceOutcome {
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
    cfg: &HarnessConfig,
    env_failures: &Mutex<HashMap<String, String>>,
    instance: &Instance,
    spec: &Spec,
    clone: &Path,
    log: &mut InstanceLog,
) -> std::result::Result<SharedEnv, Failure> {
    let unavailable = |r: String| Failure(Bucket::EnvironmentUnavailable, r);
    let name = format!("{}-{}-py{}", instance.repo, instance.version, spec.python);
    if let Some(reason) = env_failures.lock().expect("poisoned").get(&name) {
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
        ensure_shared_env(
            &cfg.cache_dir,
            &name,
            &interpreter,
            &reqs,
            cfg.installer,
            cfg.exclude_newer.as_deref(),
        )
        .map_err(|e| EnvError::Build(format!("environment build failed: {e}")))
    })();
    result.map_err(|error| {
        // The reason, in words, is what the report and later instances of this environment see.
        let reason = error.to_string();
        env_failures.lock().expect("poisoned").insert(name, reason.clone());
        unavailable(reason)
    })
}

pub(super) struct Place<'a> {
    pub(super) testbed: &'a Path,
    pub(super) venv: &'a Path,
    pub(super) clone: &'a Path,
    pub(super) env: &'a SharedEnv,
}

pub(super) fn sandbox_for(
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

/// What preparation leaves: the shared environment, a checkout at `base_commit` with the spec's
/// install step done and committed, and the instance's virtual environment.
pub(super) struct Prepared {
    pub(super) spec: Spec,
    pub(super) clone: PathBuf,
    pub(super) env: SharedEnv,
    pub(super) testbed: PathBuf,
    pub(super) venv: PathBuf,
    /// The cached instance's slot, held (locked) while this preparation is in use.
    slot: Option<InstanceSlot>,
}

/// A prepared instance kept in the cache (`cache_instances`), as upstream keeps instance
/// images: `<cache>/instances/<id>-<key>/pristine` is the tree and venv right after the install
/// step and is never given to a sandbox; each use copies it to `run/` beside it (the same
/// absolute paths, which the venv and editable installs record), where the patch and the tests
/// run, and `run/` is removed when the slot is dropped. The lock serialises uses of one instance.
struct InstanceSlot {
    root: PathBuf,
    keep: bool,
    _lock: fs_err::File,
}

impl InstanceSlot {
    fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    fn pristine(&self) -> PathBuf {
        self.root.join("pristine")
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs_err::remove_dir_all(self.run());
        }
    }
}

/// The cache key of a prepared instance: what the checkout and the install step depend on.
fn instance_key(instance: &Instance, spec: &Spec, env: &SharedEnv) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let pre_install = spec.pre_install.join("\n");
    for part in [
        "swerl-instance-1",
        instance.instance_id.as_str(),
        instance.repo.as_str(),
        instance.base_commit.as_str(),
        env.key.as_str(),
        pre_install.as_str(),
        spec.install.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    short_key(h)
}

/// `cp -a src dst` (symlinks, modes and times kept).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let out = std::process::Command::new("cp").arg("-a").arg(src).arg(dst).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp -a {} {}: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Prepared {
    pub(super) fn place(&self) -> Place<'_> {
        Place { testbed: &self.testbed, venv: &self.venv, clone: &self.clone, env: &self.env }
    }
}

/// Environment and preparation (the harness's stages 1 and 2) in `work`.
pub(super) fn prepare(
    cfg: &HarnessConfig,
    env_failures: &Mutex<HashMap<String, String>>,
    instance: &Instance,
    work: &Path,
    log: &mut InstanceLog,
    timings: &mut Timings,
    on_stage: &dyn Fn(Stage),
) -> std::result::Result<Prepared, Failure> {
    let infra = |e: Error| Failure(Bucket::Error, e.to_string());
    let io = |e: std::io::Error| Failure(Bucket::Error, e.to_string());

    // 1. Environment.
    on_stage(Stage::Environment);
    let t = Instant::now();
    let spec = spec_of(cfg, instance).cloned().ok_or_else(|| {
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
    let env = environment(cfg, env_failures, instance, &spec, &clone, log)?;
    log.line(&format!(
        "Environment: {} ({}, {} by {}, build log {})",
        env.dir.display(),
        if env.cached { "cached" } else { "built" },
        env.key,
        env.installer,
        env.log.display()
    ));
    timings.environment = t.elapsed().as_secs_f64();

    // 2. Preparation.
    on_stage(Stage::Prepare);
    let t = Instant::now();
    let mut slot = None;
    let mut work = work.to_path_buf();
    if cfg.cache_instances {
        let key = instance_key(instance, &spec, &env);
        let root = cfg.cache_dir.join("instances").join(format!("{}-{key}", instance.instance_id));
        fs_err::create_dir_all(&root).map_err(io)?;
        let lock = fs_err::File::create(root.join("lock")).map_err(io)?;
        lock.file().lock().map_err(io)?;
        let cached = root.join("complete").is_file();
        let kept = InstanceSlot { root, keep: cfg.keep_worktrees, _lock: lock };
        let run = kept.run();
        if run.exists() {
            fs_err::remove_dir_all(&run).map_err(io)?;
        }
        if cached {
            copy_tree(&kept.pristine(), &run).map_err(io)?;
            log.line(&format!("Prepared instance: copied from the cache ({})", kept.pristine().display()));
            timings.prepare = t.elapsed().as_secs_f64();
            return Ok(Prepared {
                testbed: run.join("testbed"),
                venv: run.join("venv"),
                spec,
                clone,
                env,
                slot: Some(kept),
            });
        }
        work = run;
        slot = Some(kept);
    }
    let testbed = work.join("testbed");
    let venv = work.join("venv");
    fresh_checkout(&clone, &instance.base_commit, &testbed).map_err(infra)?;
    for line in local_submodules(&cfg.repos_dir, &testbed) {
        log.line(&line);
    }
    let prepared = Prepared { spec, clone, env, testbed, venv, slot };
    let place = prepared.place();
    make_instance_venv(&prepared.env, &prepared.venv)
        .map_err(|e| Failure(Bucket::EnvironmentUnavailable, e.to_string()))?;
    let mut setup = format!("set -x\nsource '{}/bin/activate'\n", prepared.venv.display());
    for line in &prepared.spec.pre_install {
        if line.trim_start().starts_with("apt-get") {
            log.line(&format!("Skipped pre_install (needs root packages): {line}"));
        } else {
            setup.push_str(&format!("{line}\n"));
        }
    }
    let mut extra_ro = Vec::new();
    let mut uv_cache = None;
    if let (Some(date), Some(install)) = (&cfg.exclude_newer, &prepared.spec.install) {
        let dated = if prepared.env.interpreter.supports_uv() {
            let uv = find_or_install_uv(&cfg.cache_dir)
                .map_err(|e| Failure(Bucket::EnvironmentUnavailable, e.to_string()))?;
            dated_install_lines(install, &uv, date).map(|lines| (lines, uv))
        } else {
            None
        };
        match dated {
            Some((lines, uv)) => {
                setup.push_str(&lines);
                extra_ro.extend(uv.parent().and_then(Path::parent).map(Path::to_path_buf));
                uv_cache = Some(cfg.cache_dir.join("uv-cache"));
            }
            None => log.line(&format!(
                "--exclude-newer {date}: the install step resolves undated (needs a pip install command and Python >= 3.8)"
            )),
        }
    }
    setup.push_str("set -e\n");
    if let Some(install) = &prepared.spec.install {
        setup.push_str(&format!("{install}\n"));
    }
    let mut cmd = sandbox_for(cfg, setup, &place, extra_ro);
    cmd.network = true;
    if let Some(dir) = uv_cache {
        fs_err::create_dir_all(&dir).map_err(io)?;
        cmd.writable.push(dir.clone());
        cmd.env.push(("UV_CACHE_DIR".into(), dir.display().to_string()));
    }
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
    commit_setup(&prepared.testbed).map_err(infra)?;
    if let Some(slot) = &prepared.slot {
        // Keep the prepared state before any patch touches it: copy, then mark it complete.
        let pristine = slot.pristine();
        if pristine.exists() {
            fs_err::remove_dir_all(&pristine).map_err(io)?;
        }
        copy_tree(&slot.run(), &pristine).map_err(io)?;
        fs_err::write(slot.root.join("complete"), "").map_err(io)?;
        log.line(&format!("Prepared instance: kept in the cache ({})", pristine.display()));
    }
    timings.prepare = t.elapsed().as_secs_f64();
    Ok(prepared)
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

    let work = work_dir(cfg, pred);
    let prepared = prepare(cfg, &ctx.env_failures, instance, &work, log, &mut outcome.timings, &|s| {
        stage(ctx, instance, s)
    })?;
    outcome.environment = prepared.env.dir.file_name().map(|n| n.to_string_lossy().into_owned());
    outcome.environment_cached = Some(prepared.env.cached);
    let place = prepared.place();
    let (testbed, venv, env, spec) = (&prepared.testbed, &prepared.venv, &prepared.env, &prepared.spec);

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
    fs_err::create_dir_all(&work).map_err(io)?;
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
    let site_packages = [venv, &env.dir]
        .map(|root| crate::env::site_packages(root, &env.interpreter).display().to_string())
        .into();
    let ctx_v = VenvContext { venv, repo_dir: testbed, site_packages };
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
