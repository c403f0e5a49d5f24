//! `swerl eval repair --oracle-files`: the held-out check as a command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use swerl_grpo::llama::LlamaPolicy;
use swerl_grpo::{Environment, EvalConfig, PromptOverflow, evaluate};

use super::heldout::{describe, environment};
use super::model_args::ModelArgs;
use crate::cmd::usage;

/// Arguments of `swerl eval repair`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// RL instances (JSONL, as `swerl mine` writes them) or SWE-bench rows (the files as far as
    /// the gold patch's hunks show them).
    #[arg(long, alias = "dataset")]
    data: PathBuf,
    /// Put the files the real fix changed in the prompt (the only mode: localization is
    /// `swerl eval agentless`).
    #[arg(long)]
    oracle_files: bool,
    /// Prompt budget in tokens.
    #[arg(long, default_value_t = swerl_grpo::sft::SftConfig::default().max_prompt_tokens)]
    max_prompt_tokens: usize,
    /// `truncate` (drop unchanged context files) or `skip`.
    #[arg(long, default_value = "truncate", value_parser = super::train::parse_enum::<PromptOverflow>)]
    prompt_overflow: PromptOverflow,
    /// Most tokens per answer.
    #[arg(long, default_value_t = EvalConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Answers decoding at once.
    #[arg(long, default_value_t = EvalConfig::default().batch_size)]
    batch_size: usize,
    /// Answers per instance.
    #[arg(long, default_value_t = EvalConfig::default().samples)]
    samples: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = EvalConfig::default().temperature)]
    temperature: f64,
    /// Seed of the sampled answers and of the bootstrap.
    #[arg(long, default_value_t = EvalConfig::default().seed)]
    seed: u64,
    /// Bootstrap resamples of the intervals.
    #[arg(long, default_value_t = EvalConfig::default().bootstrap_samples)]
    bootstrap_samples: usize,
    /// Output directory: summary.json and answers.jsonl (every answer with its reward).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(a: RepairArgs) -> Result<ExitCode> {
    if !a.oracle_files {
        usage!("`swerl eval repair` needs --oracle-files (localization is `swerl eval agentless`)");
    }
    let config = EvalConfig {
        max_new_tokens: a.max_new_tokens,
        batch_size: a.batch_size,
        bootstrap_samples: a.bootstrap_samples,
        samples: a.samples,
        temperature: a.temperature,
        seed: a.seed,
        ..EvalConfig::default()
    };
    if let Err(e) = config.validate() {
        usage!("{e}");
    }
    let loaded = a.model.load().with_context(|| format!("loading {}", a.model.model))?;
    let mut policy = LlamaPolicy::from_loaded(loaded);
    let env = environment(&a.data, &policy, a.max_prompt_tokens, a.prompt_overflow, "data")?;
    let report = evaluate(&mut policy, &env, &config)?;
    eprintln!("{}", describe(0, &report));
    let summary = serde_json::json!({
        "model": a.model.model,
        "data": a.data,
        "instances": env.prompts().len(),
        "samples": a.samples,
        "temperature": a.temperature,
        "n": report.n,
        "format_rate": report.format_rate,
        "mean_reward": report.reward,
        "mean_length": report.mean_length,
        "clipped_ratio": report.clipped_ratio,
        "seconds": report.time_generation,
    });
    if let Some(dir) = &a.out {
        fs_err::create_dir_all(dir)?;
        let mut rows = Vec::new();
        for r in &report.records {
            serde_json::to_writer(&mut rows, r)?;
            rows.push(b'\n');
        }
        super::io::write_atomic(&dir.join("answers.jsonl"), &rows)?;
        super::io::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
