//! The `swerl` binary: parses arguments and calls the library crates. It owns all terminal output
//! (results on stdout, logs and progress on stderr).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cmd;
mod plot;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// SWE-RL in Rust: mine software history, score patches, sample and train language models,
/// evaluate them on SWE-bench.
#[derive(Debug, Parser)]
#[command(name = "swerl", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter for stderr (e.g. `info`, `swerl_grpo=debug`); also read from `RUST_LOG`.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mine GH Archive events and git clones into PR records and RL instances.
    Mine(Box<cmd::mine::Args>),
    /// Score model completions with the SWE-RL reward (JSONL in, JSONL out).
    Reward(cmd::reward::Args),
    /// Train a model with GRPO on RL instances and the SWE-RL reward.
    Train(Box<cmd::train::Args>),
    /// Supervised fine-tuning on RL instances' oracle answers (the paper's SFT baseline).
    Sft(Box<cmd::sft::Args>),
    /// Per-token log-probabilities of texts under a model (JSONL in, JSONL out).
    Logprobs(cmd::logprobs::Args),
    /// Sample completions of a prompt from a model, streaming tokens.
    Generate(cmd::generate::Args),
    /// Evaluate on SWE-bench: grade predictions with the harness (no Docker, sandboxed).
    Eval(cmd::eval::Args),
    /// Draw training curves (reward, format errors, KL, entropy, length, held-out checks, SFT
    /// loss) of one or more runs into a PNG or SVG image.
    Plot(cmd::plot::Args),
    /// Serve a model over an OpenAI-compatible HTTP API (completions, chat, streaming).
    Serve(Box<cmd::serve::Args>),
}

/// The command line with the help defaults that come from the code's own defaults.
fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("train", |c| {
            let defaults = cmd::train::help_defaults();
            cmd::help::with_defaults(c, defaults.iter().map(|(k, v)| (k.as_str(), v.clone())))
        })
        .mut_subcommand("sft", |c| {
            let defaults = cmd::sft::help_defaults();
            cmd::help::with_defaults(c, defaults.iter().map(|(k, v)| (k.as_str(), v.clone())))
        })
        .mut_subcommand("generate", |c| cmd::help::with_defaults(c, cmd::generate::help_defaults()))
}

fn main() -> ExitCode {
    // candle would otherwise count the CPU's cores in every matrix product
    // (`swerl_model::rayon_threads_env`).
    if let Some(n) = swerl_model::rayon_threads_env() {
        // SAFETY: first thing in `main`, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n)
        };
    }
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let result = match cli.command {
        Command::Mine(args) => cmd::mine::run(*args),
        Command::Reward(args) => cmd::reward::run(args),
        Command::Train(args) => cmd::train::run(*args),
        Command::Sft(args) => cmd::sft::run(*args),
        Command::Logprobs(args) => cmd::logprobs::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Plot(args) => cmd::plot::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if err.is::<cmd::UsageError>() => {
            eprintln!("error: {err:#}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
