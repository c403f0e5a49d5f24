//! `swerl eval harness`: grade SWE-bench predictions the way the official harness does, without
//! Docker, each test run in a sandbox. `swerl eval agentless`: Agentless Mini against an
//! OpenAI-compatible model server, writing predictions for the harness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swerl_eval::agentless::{AgentlessConfig, AgentlessProgress, AnswerFormat, run_agentless};
use swerl_eval::env::Installer;
use swerl_eval::specs::Spec;
use swerl_eval::{
    Bucket, ChatModel, GradingMode, HarnessConfig, OpenAiClient, OpenAiConfig, Progress, RunResult, Stage,
    run_evaluation,
};

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
    /// Agentless Mini (the SWE-RL paper's scaffold) against an OpenAI-compatible model server:
    /// per instance, localize files from the repository structure at base_commit, sample
    /// SEARCH/REPLACE repairs, run regression and reproduction tests in the harness's sandbox
    /// and environments, pick one patch (fewest regression failures, then reproduction tests
    /// passed, then majority vote over normalized patches). Writes
    /// <out>/predictions.jsonl (for `swerl eval harness`) and <out>/trajectories/<id>.json; a
    /// rerun skips instances whose trajectory is complete.
    Agentless(Box<AgentlessArgs>),
    /// The repair step alone, as a diagnostic of a model (and the held-out check of training):
    /// with --oracle-files, each RL instance's prompt holds the files the real fix changed (the
    /// paper's training prompt), the model answers greedily, and the SWE-RL reward scores the
    /// answer. Prints the format-correct rate and the mean reward with bootstrap intervals.
    Repair(Box<super::repair::RepairArgs>),
}

#[derive(Debug, clap::Args)]
pub(crate) struct AgentlessArgs {
    /// SWE-bench instances: .json, .jsonl, .jsonl.gz or .parquet (with problem_statement).
    #[arg(long)]
    dataset: PathBuf,
    /// Directory of clones or bare mirrors (as for `swerl eval harness`).
    #[arg(long)]
    repos: PathBuf,
    /// An OpenAI-compatible API root (vLLM, SGLang, `swerl serve`, a hosted API);
    /// /chat/completions is appended. Without it, --model is loaded in this process.
    #[arg(long)]
    base_url: Option<String>,
    /// With --base-url, the served model's name; otherwise the model to load (a Hugging Face
    /// directory, a .gguf file or a Hub id). Also the predictions' model_name_or_path.
    #[arg(long)]
    model: String,
    /// In-process model: device (`cpu`, `cuda`, `cuda:N`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// In-process model: compute dtype (`f32`, `bf16`, `f16`).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// In-process model: sequences decoding at once.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// The environment variable holding the API key, sent as a bearer token when set.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Output directory: predictions.jsonl and trajectories/.
    #[arg(long)]
    out: PathBuf,
    /// Only these instances (all by default).
    #[arg(long, num_args = 1..)]
    instance_ids: Vec<String>,
    /// Repair samples per instance (the paper: 500).
    #[arg(long, default_value_t = AgentlessConfig::default().repair_samples)]
    samples: usize,
    /// Localization samples per instance (1: one greedy prompt).
    #[arg(long, default_value_t = AgentlessConfig::default().localization_samples)]
    localization_samples: usize,
    /// Files kept after merging the localization samples.
    #[arg(long, default_value_t = AgentlessConfig::default().top_files)]
    top_files: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = AgentlessConfig::default().temperature)]
    temperature: f64,
    /// Most new tokens per completion.
    #[arg(long, default_value_t = AgentlessConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// How repair answers are read: `thinking` (the paper's <think>/<solution>, as the reward
    /// reads them) or `plain` (edits from <solution> if present, else from the whole answer).
    #[arg(long, value_enum, default_value = "thinking")]
    answer_format: AnswerFormatArg,
    /// Characters of file contents in the repair prompt (about 4 per token).
    #[arg(long, default_value_t = AgentlessConfig::default().max_file_chars)]
    max_file_chars: usize,
    /// Instances processed at once (also the most requests in flight).
    #[arg(long, default_value_t = AgentlessConfig::default().max_workers)]
    max_workers: usize,
    /// Seed of the localization prompts' variations and of the server's sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds before a model request is abandoned (then retried).
    #[arg(long, default_value_t = OpenAiConfig::default().timeout_secs)]
    request_timeout: u64,
    /// Retries of a request after a 429, a 5xx or a connection error.
    #[arg(long, default_value_t = OpenAiConfig::default().max_retries)]
    max_retries: u32,
    /// Skip regression and reproduction tests: the rerank is a majority vote over normalized
    /// patches only (no environments are built).
    #[arg(long)]
    no_tests: bool,
    /// Skip the regression tests (the test patch's existing test files, run on the original
    /// code and with each distinct patch).
    #[arg(long)]
    no_regression_tests: bool,
    /// Reproduction scripts sampled per instance: one greedy, the rest at
    /// --repro-temperature (upstream Agentless: 40); 0 turns reproduction tests off.
    #[arg(long, default_value_t = AgentlessConfig::default().reproduction_samples)]
    repro_samples: usize,
    /// Reproduction tests kept for the rerank: the largest groups of identical scripts that
    /// reproduce the issue on the original code (upstream Agentless: 1; the paper: up to 30).
    #[arg(long, default_value_t = AgentlessConfig::default().reproduction_tests)]
    repro_tests: usize,
    /// Temperature of the reproduction samples after the greedy one.
    #[arg(long, default_value_t = AgentlessConfig::default().reproduction_temperature)]
    repro_temperature: f64,
    /// Seconds a reproduction script may run before its process tree is killed.
    #[arg(long, default_value_t = AgentlessConfig::default().script_timeout_secs)]
    script_timeout: u64,
    #[command(flatten)]
    env: EnvArgs,
    /// Do not parse edited Python files with Python's `ast` (no syntax check; the vote key is
    /// the pure-Rust approximation).
    #[arg(long)]
    no_python_ast: bool,
    /// Diagnostic: the dataset's gold patch is the only repair sample (the model is not asked
    /// to repair), to check the tests, the rerank and the harness from repair to report.
    #[arg(long)]
    inject_gold_patch: bool,
    /// Redo instances whose trajectory is complete.
    #[arg(long)]
    force: bool,
}

/// How repair answers are read.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AnswerFormatArg {
    /// <think> and <solution> exactly once each (the reward's rules).
    Thinking,
    /// Edits from <solution> when present, otherwise from the whole answer.
    Plain,
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
    #[command(flatten)]
    env: EnvArgs,
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
    /// Keep each prepared instance (checkout and install step done) in the cache, as upstream
    /// keeps instance images: reruns and other models' predictions start from a fresh copy of
    /// it and skip the install step. Costs a checkout and venv of disk per instance.
    #[arg(long)]
    cache_instances: bool,
}

/// Environments and sandboxed test runs (shared by `eval harness` and `eval agentless`).
#[derive(Debug, clap::Args)]
pub(crate) struct EnvArgs {
    /// Seconds before a test run is killed with its whole process tree.
    #[arg(long, default_value_t = HarnessConfig::default().timeout_secs)]
    timeout: u64,
    /// Environments (cached by content key), uv and per-instance checkouts.
    #[arg(long, default_value_os_t = HarnessConfig::default().cache_dir)]
    cache_dir: PathBuf,
    /// What builds the environments.
    #[arg(long, value_enum, default_value = "auto")]
    installer: InstallerArg,
    /// Resolve packages from PyPI as of this date (YYYY-MM-DD or an RFC 3339 time, uv's
    /// --exclude-newer), as an environment built that day would: the environments and what the
    /// install step adds. Upstream's images froze PyPI when they were built (2024-10-31 comes
    /// close to the published ones); without it, open-ended requirements get today's releases.
    /// Python >= 3.8 only (older environments resolve undated).
    #[arg(long, value_name = "DATE", value_parser = parse_exclude_newer)]
    exclude_newer: Option<String>,
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

/// `YYYY-MM-DD`, optionally followed by an RFC 3339 time (`T12:00:00Z`).
fn parse_exclude_newer(value: &str) -> std::result::Result<String, String> {
    let b = value.as_bytes();
    let date_ok = b.len() >= 10
        && b[..10]
            .iter()
            .enumerate()
            .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    let rest_ok = || {
        b.len() == 10
            || (b[10] == b'T' && value[11..].bytes().all(|c| c.is_ascii_digit() || b":.+-Z".contains(&c)))
    };
    if date_ok && rest_ok() {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a date: expected YYYY-MM-DD or an RFC 3339 time (2024-10-31T00:00:00Z)"
        ))
    }
}

impl EnvArgs {
    /// The harness settings these flags make, on top of `base`.
    pub(crate) fn apply(&self, base: HarnessConfig) -> Result<HarnessConfig> {
        if self.timeout == 0 {
            usage!("--timeout must be at least 1 second");
        }
        let extra_specs = match &self.specs {
            Some(path) => read_specs(path)?,
            None => BTreeMap::new(),
        };
        Ok(HarnessConfig {
            timeout_secs: self.timeout,
            cache_dir: self.cache_dir.clone(),
            installer: match self.installer {
                InstallerArg::Auto => Installer::Auto,
                InstallerArg::Uv => Installer::Uv,
                InstallerArg::Pip => Installer::Pip,
            },
            keep_worktrees: self.keep_worktrees,
            exclude_newer: self.exclude_newer.clone(),
            extra_specs,
            test_network: self.allow_test_network,
            ..base
        })
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        EvalCommand::Harness(args) => harness(*args),
        EvalCommand::Agentless(args) => agentless(*args),
        EvalCommand::Repair(args) => super::repair::run(*args),
    }
}

fn harness(a: HarnessArgs) -> Result<ExitCode> {
    if a.max_workers == 0 {
        usage!("--max-workers must be at least 1");
    }
    if a.max_workers as u64 > crate::cmd::MAX_JOBS {
        usage!("--max-workers {} is more than {}", a.max_workers, crate::cmd::MAX_JOBS);
    }
    if a.run_id.is_empty() || a.run_id.contains(['/', '\\']) || a.run_id == "." || a.run_id == ".." {
        usage!("--run-id {:?} must be a non-empty name without path separators", a.run_id);
    }
    let cfg = a.env.apply(HarnessConfig {
        dataset: a.dataset,
        predictions: a.predictions,
        repos_dir: a.repos,
        run_id: a.run_id,
        instance_ids: a.instance_ids,
        max_workers: a.max_workers,
        report_dir: a.report_dir,
        log_root: a.log_root,
        grading: a.grading,
        force: a.force,
        clone_missing: a.clone_missing,
        cache_instances: a.cache_instances,
        ..HarnessConfig::default()
    })?;
    let bars = StageBars::new();
    let result = run_evaluation(&cfg, &|p| bars.update(p))?;
    bars.finish();
    print_table(&cfg, &result);
    Ok(ExitCode::SUCCESS)
}

fn agentless(a: AgentlessArgs) -> Result<ExitCode> {
    for (flag, value) in [
        ("--repro-tests", a.repro_tests),
        ("--script-timeout", a.script_timeout as usize),
        ("--samples", a.samples),
        ("--localization-samples", a.localization_samples),
        ("--top-files", a.top_files),
        ("--max-workers", a.max_workers),
    ] {
        if value == 0 {
            usage!("{flag} must be at least 1");
        }
    }
    if a.max_workers as u64 > crate::cmd::MAX_JOBS {
        usage!("--max-workers {} is more than {}", a.max_workers, crate::cmd::MAX_JOBS);
    }
    for (flag, t) in [("--temperature", a.temperature), ("--repro-temperature", a.repro_temperature)] {
        if !t.is_finite() || t < 0.0 {
            usage!("{flag} must be a finite number >= 0");
        }
    }
    let harness = a.env.apply(HarnessConfig { max_workers: a.max_workers, ..HarnessConfig::default() })?;
    if a.max_batch == 0 {
        usage!("--max-batch must be at least 1");
    }
    let client: Box<dyn ChatModel> = match &a.base_url {
        Some(url) => Box::new(OpenAiClient::new(OpenAiConfig {
            base_url: url.clone(),
            model: a.model.clone(),
            api_key: std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty()),
            max_concurrency: a.max_workers,
            max_retries: a.max_retries,
            timeout_secs: a.request_timeout,
            ..OpenAiConfig::default()
        })?),
        None => {
            let args = super::model_args::ModelArgs {
                model: a.model.clone(),
                device: a.device.clone(),
                dtype: a.dtype.clone(),
                revision: None,
                offline: false,
            };
            Box::new(
                super::local_chat::LocalChat::load(&args, a.max_batch)
                    .with_context(|| format!("loading {}", a.model))?,
            )
        }
    };
    let cfg = AgentlessConfig {
        dataset: a.dataset,
        repos_dir: a.repos,
        out_dir: a.out,
        instance_ids: a.instance_ids,
        model_name: Some(a.model),
        localization_samples: a.localization_samples,
        top_files: a.top_files,
        repair_samples: a.samples,
        temperature: a.temperature,
        max_new_tokens: a.max_new_tokens,
        answer_format: match a.answer_format {
            AnswerFormatArg::Thinking => AnswerFormat::Thinking,
            AnswerFormatArg::Plain => AnswerFormat::Plain,
        },
        max_file_chars: a.max_file_chars,
        max_workers: a.max_workers,
        seed: a.seed,
        run_tests: !a.no_tests,
        regression_tests: !a.no_regression_tests,
        reproduction_samples: a.repro_samples,
        reproduction_tests: a.repro_tests,
        reproduction_temperature: a.repro_temperature,
        script_timeout_secs: a.script_timeout,
        harness,
        python_ast: !a.no_python_ast,
        inject_gold_patch: a.inject_gold_patch,
        force: a.force,
    };
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("agentless");
    let summary = run_agentless(&cfg, client.as_ref(), &|p| match p {
        AgentlessProgress::Planned { total, skipped } => {
            bar.set_length(total as u64);
            if skipped > 0 {
                bar.suspend(|| {
                    eprintln!(
                        "{skipped} instances already complete in {} (--force redoes them)",
                        cfg.out_dir.display()
                    )
                });
            }
        }
        AgentlessProgress::Stage { instance_id, stage } => {
            bar.set_message(format!("{instance_id} {stage:?}"))
        }
        AgentlessProgress::Finished { instance_id, error, .. } => {
            bar.inc(1);
            if let Some(e) = error {
                bar.suspend(|| eprintln!("{instance_id}: {e}"));
            }
        }
        _ => {}
    })?;
    bar.finish_and_clear();
    println!(
        "{} instances ({} reused): {} with a patch, {} errors",
        summary.instances, summary.skipped, summary.with_patch, summary.errors
    );
    println!(
        "model usage: {} requests, {} prompt tokens, {} completion tokens",
        summary.usage.requests, summary.usage.prompt_tokens, summary.usage.completion_tokens
    );
    let t = &summary.seconds;
    println!(
        "seconds: structure {:.1}, localize {:.1}, repair {:.1}, test setup {:.1}, regression {:.1}, reproduction {:.1}, total {:.1}",
        t.structure, t.localize, t.repair, t.test_setup, t.regression, t.reproduction, t.total
    );
    println!("predictions: {}", summary.predictions_path.display());
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

#[cfg(test)]
mod tests {
    use super::parse_exclude_newer;

    #[test]
    fn exclude_newer_takes_dates_and_rfc3339_times() {
        for ok in ["2024-10-31", "2024-10-31T00:00:00Z", "2024-10-31T12:30:00+02:00"] {
            assert_eq!(parse_exclude_newer(ok).as_deref(), Ok(ok));
        }
        for bad in
            ["", "2024", "2024-1-31", "31-10-2024", "2024-10-31 12:00", "2024-10-31Tnoon", "2024-10-3é"]
        {
            let err = parse_exclude_newer(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
    }
}
