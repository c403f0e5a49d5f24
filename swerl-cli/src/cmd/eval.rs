//! `swerl eval harness`: grade SWE-bench predictions the way the official harness does, without
//! Docker, each test run in a sandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swerl_eval::env::Installer;
use swerl_eval::specs::Spec;
use swerl_eval::{Bucket, GradingMode, HarnessConfig, Progress, RunResult, Stage, run_evaluation};

use crate::cmd::usage;

/// Evaluation on SWE-bench.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: EvalCommand,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Grade SWE-bench predictions as the official harness does (reports byte-compatible with
    /// it), without Docker: environments are virtual environments built from PyPI, every test
    /// run is sandboxed (no network, read-only user files, resource limits, killed on timeout).
    Harness(Box<HarnessArgs>),
}

/// Which tool builds the environments.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum InstallerArg {
    /// uv for Python >= 3.8 (uv does not support older interpreters), pip otherwise.
    Auto,
    /// Always uv.
    Uv,
    /// Always pip.
    Pip,
}

#[derive(Debug, clap::Args)]
pub(crate) struct HarnessArgs {
    /// SWE-bench instances: .json, .jsonl, .jsonl.gz or .parquet (FAIL_TO_PASS and
    /// PASS_TO_PASS as JSON strings or lists).
    #[arg(long)]
    dataset: PathBuf,
    /// Predictions: a JSON list or dict, or JSON lines, of {instance_id, model_name_or_path,
    /// model_patch}; or `gold` (the dataset's patches) or `empty`.
    #[arg(long)]
    predictions: String,
    /// Directory of clones or bare mirrors: owner__name[.git], owner/name (as `swerl mine
    /// --repos`) or owner+name. Nothing is cloned unless --clone-missing.
    #[arg(long)]
    repos: PathBuf,
    /// Run id: logs go to <log-root>/<run-id>/<model>/<instance>/; a rerun with the same id
    /// skips instances that have a report (see --force).
    #[arg(long)]
    run_id: String,
    /// Only these instances (all of the predictions' by default).
    #[arg(long, num_args = 1..)]
    instance_ids: Vec<String>,
    /// Instances graded in parallel.
    #[arg(long, default_value_t = HarnessConfig::default().max_workers)]
    max_workers: usize,
    /// Seconds before a test run is killed with its whole process tree.
    #[arg(long, default_value_t = HarnessConfig::default().timeout_secs)]
    timeout: u64,
    /// Environments (cached by content key), uv and per-instance checkouts.
    #[arg(long, default_value_os_t = HarnessConfig::default().cache_dir)]
    cache_dir: PathBuf,
    /// Where the run summary <model>.<run-id>.json and our extras file go.
    #[arg(long, default_value_os_t = HarnessConfig::default().report_dir)]
    report_dir: PathBuf,
    /// The per-instance logs' root (upstream's logs/run_evaluation).
    #[arg(long, default_value_os_t = HarnessConfig::default().log_root)]
    log_root: PathBuf,
    /// Grading rules: v4 (swebench 4.1, leaderboard-comparable) or v5 (its SKIPPED and
    /// exit-code rules).
    #[arg(long, default_value = HarnessConfig::default().grading.name())]
    grading: GradingMode,
    /// Redo instances that already have a report.
    #[arg(long)]
    force: bool,
    /// Mirror repositories missing from --repos from GitHub (needs the network).
    #[arg(long)]
    clone_missing: bool,
    /// What builds the environments.
    #[arg(long, value_enum, default_value = "auto")]
    installer: InstallerArg,
    /// Specs for repositories or versions the built-in table lacks, consulted first: a JSON
    /// file {"owner/name": {"version": {python, packages, pip_packages, install, test_cmd, ...}}}.
    #[arg(long)]
    specs: Option<PathBuf>,
    /// Keep the per-instance checkouts (for debugging).
    #[arg(long)]
    keep_worktrees: bool,
    /// Let the tests reach the network. Off by default: the patch is untrusted code. Some
    /// upstream tests need it (requests' call httpbin.org).
    #[arg(long)]
    allow_test_network: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        EvalCommand::Harness(args) => harness(*args),
    }
}

fn harness(a: HarnessArgs) -> Result<ExitCode> {
    if a.max_workers == 0 {
        usage!("--max-workers must be at least 1");
    }
    if a.max_workers as u64 > crate::cmd::MAX_JOBS {
        usage!("--max-workers {} is more than {}", a.max_workers, crate::cmd::MAX_JOBS);
    }
    if a.timeout == 0 {
        usage!("--timeout must be at least 1 second");
    }
    if a.run_id.is_empty() || a.run_id.contains(['/', '\\']) || a.run_id == "." || a.run_id == ".." {
        usage!("--run-id {:?} must be a non-empty name without path separators", a.run_id);
    }
    let extra_specs = match &a.specs {
        Some(path) => read_specs(path)?,
        None => BTreeMap::new(),
    };
    let cfg = HarnessConfig {
        dataset: a.dataset,
        predictions: a.predictions,
        repos_dir: a.repos,
        run_id: a.run_id,
        instance_ids: a.instance_ids,
        max_workers: a.max_workers,
        timeout_secs: a.timeout,
        cache_dir: a.cache_dir,
        report_dir: a.report_dir,
        log_root: a.log_root,
        grading: a.grading,
        force: a.force,
        clone_missing: a.clone_missing,
        installer: match a.installer {
            InstallerArg::Auto => Installer::Auto,
            InstallerArg::Uv => Installer::Uv,
            InstallerArg::Pip => Installer::Pip,
        },
        keep_worktrees: a.keep_worktrees,
        extra_specs,
        test_network: a.allow_test_network,
        ..HarnessConfig::default()
    };
    let bars = StageBars::new();
    let result = run_evaluation(&cfg, &|p| bars.update(p))?;
    bars.finish();
    print_table(&cfg, &result);
    Ok(ExitCode::SUCCESS)
}

/// Reads a `--specs` file: repository -> version -> spec.
fn read_specs(path: &std::path::Path) -> Result<BTreeMap<String, BTreeMap<String, Spec>>> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text).with_context(|| {
        format!("{}: expected {{\"owner/name\": {{\"version\": {{spec}}}}}}", path.display())
    })
}

/// One progress bar per stage, and one of finished instances, on stderr.
struct StageBars {
    multi: MultiProgress,
    stages: Vec<(Stage, ProgressBar)>,
    done: ProgressBar,
}

impl StageBars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> ");
        let bar = |name: &str| {
            let b = multi.add(ProgressBar::new(0).with_style(style.clone()));
            b.set_prefix(name.to_owned());
            b
        };
        let stages = [
            (Stage::Environment, "environment"),
            (Stage::Prepare, "prepare"),
            (Stage::Apply, "apply"),
            (Stage::Test, "test"),
            (Stage::Grade, "grade"),
        ]
        .into_iter()
        .map(|(s, name)| (s, bar(name)))
        .collect();
        let done = bar("finished");
        Self { multi, stages, done }
    }

    fn update(&self, p: Progress) {
        match p {
            Progress::Planned { total, skipped } => {
                for (_, b) in &self.stages {
                    b.set_length(total as u64);
                }
                self.done.set_length(total as u64);
                if skipped > 0 {
                    self.multi.suspend(|| {
                        eprintln!("{skipped} instances already graded in this run id (--force redoes them)");
                    });
                }
            }
            Progress::Stage { instance_id, stage } => {
                if let Some((_, b)) = self.stages.iter().find(|(s, _)| *s == stage) {
                    b.inc(1);
                    b.set_message(instance_id);
                }
            }
            Progress::Finished(o) => {
                self.done.inc(1);
                self.done.set_message(format!("{} {}", o.instance_id, bucket_name(o.bucket)));
            }
            _ => {}
        }
    }

    fn finish(&self) {
        self.multi.clear().ok();
    }
}

fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Resolved => "resolved",
        Bucket::Unresolved => "unresolved",
        Bucket::Empty => "empty",
        Bucket::Error => "error",
        Bucket::EnvironmentUnavailable => "environment unavailable",
    }
}

/// The final table on stdout: count per bucket, then every instance not resolved with why.
fn print_table(cfg: &HarnessConfig, result: &RunResult) {
    let instances = &result.extras.instances;
    let mut counts: BTreeMap<Bucket, usize> = BTreeMap::new();
    for o in instances.values() {
        *counts.entry(o.bucket).or_default() += 1;
    }
    println!("run {} ({} instances), grading {}", cfg.run_id, instances.len(), cfg.grading.name());
    for bucket in
        [Bucket::Resolved, Bucket::Unresolved, Bucket::Empty, Bucket::Error, Bucket::EnvironmentUnavailable]
    {
        println!("  {:<26}{:>6}", bucket_name(bucket), counts.get(&bucket).copied().unwrap_or(0));
    }
    for o in instances.values().filter(|o| o.bucket != Bucket::Resolved) {
        println!("  {} [{}] {}", o.instance_id, bucket_name(o.bucket), o.reason.as_deref().unwrap_or(""));
    }
    println!("summary: {}", result.summary_path.display());
    println!("extras:  {}", result.extras_path.display());
}
