//! `swerl eval harness` until the CLI wires it: grade SWE-bench predictions without Docker.
//!
//! ```text
//! cargo run --release -p swerl-eval --example harness -- \
//!     --dataset lite-test-v5.jsonl.gz --predictions gold --repos /work/.mirror --run-id gold1
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use swerl_eval::env::Installer;
use swerl_eval::harness::Stage;
use swerl_eval::{Bucket, GradingMode, HarnessConfig, Progress, run_evaluation};

/// Grade SWE-bench predictions the way the official harness does, in a sandbox, without Docker.
#[derive(Debug, Parser)]
struct Args {
    /// Instances: .json, .jsonl, .jsonl.gz or .parquet.
    #[arg(long)]
    dataset: PathBuf,
    /// A predictions file (JSON list or dict, JSON lines), `gold` or `empty`.
    #[arg(long)]
    predictions: String,
    /// Directory of clones or bare mirrors (owner__name[.git], owner/name, owner+name/repo).
    #[arg(long)]
    repos: PathBuf,
    /// Run id; a rerun skips instances that have a report.
    #[arg(long)]
    run_id: String,
    /// Only these instances.
    #[arg(long, num_args = 1..)]
    instance_ids: Vec<String>,
    /// Parallel workers.
    #[arg(long, default_value_t = 4)]
    max_workers: usize,
    /// Seconds before a test run is killed.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Environments and checkouts.
    #[arg(long, default_value = ".swerl-eval-cache")]
    cache_dir: PathBuf,
    /// Where the summary and extras go.
    #[arg(long, default_value = ".")]
    report_dir: PathBuf,
    /// Upstream's logs/run_evaluation.
    #[arg(long, default_value = "logs/run_evaluation")]
    log_root: PathBuf,
    /// v4 (swebench 4.1) or v5.
    #[arg(long, default_value = "v4")]
    grading: GradingMode,
    /// Redo instances that have a report.
    #[arg(long)]
    force: bool,
    /// Mirror repositories missing from --repos from GitHub.
    #[arg(long)]
    clone_missing: bool,
    /// auto (uv for Python >= 3.8), uv or pip.
    #[arg(long, default_value = "auto")]
    installer: String,
    /// Keep checkouts.
    #[arg(long)]
    keep_worktrees: bool,
    /// Let the tests reach the network (untrusted patches then can too).
    #[arg(long)]
    allow_test_network: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SWERL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let installer = match a.installer.as_str() {
        "uv" => Installer::Uv,
        "pip" => Installer::Pip,
        "auto" => Installer::Auto,
        other => anyhow::bail!("--installer {other}: expected auto, uv or pip"),
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
        installer,
        keep_worktrees: a.keep_worktrees,
        test_network: a.allow_test_network,
        ..HarnessConfig::default()
    };
    let multi = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")?.progress_chars("=> ");
    let stages = [
        (Stage::Environment, "environment"),
        (Stage::Prepare, "prepare"),
        (Stage::Apply, "apply"),
        (Stage::Test, "test"),
        (Stage::Grade, "grade"),
    ];
    let bars: Vec<(Stage, ProgressBar)> = stages
        .iter()
        .map(|(s, name)| {
            let b = multi.add(ProgressBar::new(0).with_style(style.clone()));
            b.set_prefix(*name);
            (*s, b)
        })
        .collect();
    let done = multi.add(ProgressBar::new(0).with_style(style));
    done.set_prefix("finished");
    let progress = |p: Progress| match p {
        Progress::Planned { total, .. } => {
            for (_, b) in &bars {
                b.set_length(total as u64);
            }
            done.set_length(total as u64);
        }
        Progress::Stage { instance_id, stage } => {
            if let Some((_, b)) = bars.iter().find(|(s, _)| *s == stage) {
                b.inc(1);
                b.set_message(instance_id);
            }
        }
        Progress::Finished(o) => {
            done.inc(1);
            done.set_message(format!("{} {:?}", o.instance_id, o.bucket));
        }
        _ => {}
    };
    let result = run_evaluation(&cfg, &progress)?;
    multi.clear()?;
    let mut counts: BTreeMap<Bucket, usize> = BTreeMap::new();
    for o in result.extras.instances.values() {
        *counts.entry(o.bucket).or_default() += 1;
    }
    println!("grading: {}", cfg.grading.name());
    println!("{:<26}{:>6}", "bucket", "count");
    for (name, bucket) in [
        ("resolved", Bucket::Resolved),
        ("unresolved", Bucket::Unresolved),
        ("empty", Bucket::Empty),
        ("error", Bucket::Error),
        ("environment unavailable", Bucket::EnvironmentUnavailable),
    ] {
        println!("{name:<26}{:>6}", counts.get(&bucket).copied().unwrap_or(0));
    }
    for o in result.extras.instances.values() {
        if o.bucket != Bucket::Resolved {
            println!("  {} {:?}: {}", o.instance_id, o.bucket, o.reason.as_deref().unwrap_or(""));
        }
    }
    println!("summary: {}", result.summary_path.display());
    println!("extras:  {}", result.extras_path.display());
    Ok(())
}
