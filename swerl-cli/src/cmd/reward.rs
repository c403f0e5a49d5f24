//! `swerl reward`: score JSON-lines cases with the SWE-RL reward.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use swerl_reward::batch::{BatchOptions, score_jsonl};
use swerl_reward::unidiff::Dialect;

use super::io::{Output, open_input};

/// Arguments of `swerl reward`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each input line is {\"code_context\": {path: text}, \"oracle_new_content\": {path: text}, \
\"output\": \"<completion>\"} (or {\"oracle_patches\": [...], \"pred_patches\": [...]} for the unified-diff reward). \
Each output line, in input order, is {\"reward\": r, \"similarities\": [...]} with \"error\" when r is -1. \
Invalid lines get an error naming the line; the rest is still scored and the exit status is 1."
)]
pub(crate) struct Args {
    /// Cases to score, one JSON object per line (`-` for stdin).
    #[arg(long, short, default_value = "-")]
    input: PathBuf,

    /// Where to write the results (stdout when absent). Written to a temporary file renamed at
    /// the end; never the input file.
    #[arg(long, short)]
    output: Option<PathBuf>,

    /// Worker threads (0: one per core; at most 1024).
    #[arg(long, short, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=super::MAX_JOBS))]
    jobs: u64,

    /// Add each well-formatted prediction's `git diff` (the SWE-bench patch) to its result.
    #[arg(long)]
    patch: bool,

    /// The Python `unidiff` release whose parser the unified-diff reward follows.
    #[arg(long, value_enum, default_value_t = DialectArg::V1)]
    unidiff: DialectArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DialectArg {
    /// unidiff 1.0.x (current)
    #[value(name = "1.0")]
    V1,
    /// unidiff 0.7.5 (current when SWE-RL was published)
    #[value(name = "0.7")]
    V0_7,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = open_input(&args.input)?;
    let mut output = Output::create(args.output.as_deref(), &args.input)?;
    let options = BatchOptions {
        jobs: args.jobs as usize,
        include_patch: args.patch,
        dialect: match args.unidiff {
            DialectArg::V1 => Dialect::V1,
            DialectArg::V0_7 => Dialect::V0_7,
        },
    };
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} cases scored ({per_sec})").expect("valid template"),
    );
    let start = Instant::now();
    let summary = score_jsonl(input, output.writer(), &options, |done| bar.set_position(done as u64))
        .with_context(|| format!("scoring {}", args.input.display()))?;
    output.commit()?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "scored {} cases in {secs:.2}s: mean reward {:.4}, {} format errors (-1), {} invalid lines",
        summary.lines - summary.invalid,
        summary.mean_reward,
        summary.format_errors,
        summary.invalid
    );
    if summary.invalid > 0 {
        eprintln!(
            "error: {} input lines were not valid cases (see their \"error\" in the output)",
            summary.invalid
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
