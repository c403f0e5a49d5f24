//! GRPO end to end on CPU in seconds: a tiny random Llama (byte-level tokenizer, ChatML
//! template, written in Hugging Face layout) trained with the SWE-RL reward on RL instances.
//!
//! ```sh
//! cargo run --release --example train_tiny -- out/instances.jsonl runs/tiny 2
//! ```
//!
//! A random model writes no valid edit, so every reward is -1 and the update is zero: the point
//! is the whole loop (prompts through the chat template and the budget, sampling, the reward,
//! checkpoints). Replace the tiny model by any Hugging Face directory for a real run, or use
//! `swerl train`.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use swerl::grpo::llama::{LlamaPolicy, ModelSettings};
use swerl::grpo::{PromptOverflow, SweRlEnvironment, TrainConfig, TrainEvent, Trainer};
use swerl::reward::Dataset;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: train_tiny INSTANCES.jsonl OUT_DIR [STEPS]";
    let data = PathBuf::from(args.next().context(usage)?);
    let out = PathBuf::from(args.next().context(usage)?);
    let steps: u64 = args.next().map_or(Ok(2), |s| s.parse()).context(usage)?;

    // A tiny random model in Hugging Face layout (any HF directory, Hub id or GGUF works here).
    let model_dir = out.join("initial-model");
    swerl::model::testing::write_byte_level_checkpoint(&model_dir, 2, 7)?;
    let policy = LlamaPolicy::load(model_dir.to_str().context("utf-8 path")?, &ModelSettings::default())?;

    let config = TrainConfig {
        steps,
        prompts_per_step: 1,
        group_size: 2,
        max_new_tokens: 16,
        max_prompt_tokens: 4096,
        prompt_overflow: PromptOverflow::Truncate,
        micro_batch_size: 2,
        save_steps: 0,
        ..TrainConfig::default()
    };
    let dataset = Dataset::load(&data)?;
    let (env, report) =
        SweRlEnvironment::new(dataset, &policy, config.max_prompt_tokens, config.prompt_overflow)?;
    println!(
        "{} prompts ({} truncated, {} skipped)",
        report.fitted + report.truncated,
        report.truncated,
        report.skipped.len()
    );
    let optimizer = policy.optimizer(&config)?;
    let mut trainer = Trainer::new(config, policy, optimizer, &out)?;
    let summary = trainer.train(&env, &mut |event| {
        if let TrainEvent::Step(m) = event {
            println!(
                "step {}: reward {:.3}, format errors {:.2}, loss {:.4}",
                m.step, m.reward, m.format_error_rate, m.loss
            );
        }
    })?;
    let last = summary.last_checkpoint.context("no checkpoint written")?;
    println!("checkpoint: {}", last.display());
    Ok(())
}
