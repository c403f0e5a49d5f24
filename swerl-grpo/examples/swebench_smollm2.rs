//! End to end on CPU: RL instances reconstructed from SWE-bench patches, a real model
//! (SmolLM2-135M-Instruct by default), the real SWE-RL reward, a few GRPO steps.
//!
//! ```sh
//! cargo run --release -p swerl-grpo --example swebench_smollm2 -- \
//!     --model "$(../shared/tools/smollm2-hf.sh)" \
//!     --swebench tests/data/swebench/lite-dev.json --out /tmp/swerl-smollm2 --steps 3
//! ```
//!
//! OUT must not hold another run (the trainer refuses to mix two). Writes
//! `OUT/rl_instances.jsonl` (the reconstructed instances), `OUT/metrics.jsonl`,
//! `OUT/completions.jsonl` and a final checkpoint, and prints one line per step. With
//! `--write-prompts FILE` it also writes each instance's chat messages (JSONL), which the TRL
//! benchmark feeds to TRL so both trainers see the same prompts. `--reward letters` swaps the
//! SWE-RL reward for the share of ASCII letters in a completion (the TRL benchmark's common reward:
//! it varies within every group even for an untrained model, so every step does the full update).
//! `--data FILE` trains on those RL instances instead of all the reconstructed ones.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use swerl_grpo::llama::{LlamaPolicy, ModelSettings};
use swerl_grpo::{
    Environment, PreparedPrompt, PromptOverflow, RewardOutcome, SweRlEnvironment, TrainConfig, TrainEvent,
    Trainer,
};
use swerl_model::Completion;
use swerl_reward::{Dataset, build_messages};

struct Args {
    model: String,
    swebench: PathBuf,
    out: PathBuf,
    steps: u64,
    prompts_per_step: usize,
    group_size: usize,
    max_new_tokens: usize,
    max_prompt_tokens: usize,
    learning_rate: f64,
    write_prompts: Option<PathBuf>,
    config: Option<PathBuf>,
    letters: bool,
    data: Option<PathBuf>,
}

/// The SWE-RL environment's prompts scored by the share of ASCII letters in each completion's
/// text (`sum(c.isascii() and c.isalpha() for c in text) / len(text)` in Python; 0 when empty).
struct LetterShare(SweRlEnvironment);

impl Environment for LetterShare {
    fn prompts(&self) -> &[PreparedPrompt] {
        self.0.prompts()
    }

    fn score(&self, _prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome> {
        completions
            .iter()
            .map(|c| {
                let chars = c.text.chars().count();
                let letters = c.text.chars().filter(char::is_ascii_alphabetic).count();
                RewardOutcome::scored(if chars == 0 { 0.0 } else { letters as f64 / chars as f64 })
            })
            .collect()
    }
}

fn parse() -> Result<Args> {
    let mut a = Args {
        model: String::new(),
        swebench: PathBuf::from("tests/data/swebench/lite-dev.json"),
        out: PathBuf::from("/tmp/swerl-smollm2"),
        steps: 3,
        prompts_per_step: 2,
        group_size: 4,
        max_new_tokens: 96,
        max_prompt_tokens: 1536,
        learning_rate: 1e-6,
        write_prompts: None,
        config: None,
        letters: false,
        data: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--swebench" => a.swebench = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--steps" => a.steps = value()?.parse()?,
            "--prompts-per-step" => a.prompts_per_step = value()?.parse()?,
            "--group-size" => a.group_size = value()?.parse()?,
            "--max-new-tokens" => a.max_new_tokens = value()?.parse()?,
            "--max-prompt-tokens" => a.max_prompt_tokens = value()?.parse()?,
            "--learning-rate" => a.learning_rate = value()?.parse()?,
            "--write-prompts" => a.write_prompts = Some(value()?.into()),
            "--config" => a.config = Some(value()?.into()),
            "--data" => a.data = Some(value()?.into()),
            "--reward" => {
                a.letters = match value()?.as_str() {
                    "letters" => true,
                    "swerl" => false,
                    other => bail!("--reward {other}: swerl | letters"),
                }
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if a.model.is_empty() {
        bail!("--model is required (e.g. the directory printed by ../shared/tools/smollm2-hf.sh)");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse()?;
    std::fs::create_dir_all(&args.out)?;

    // 1. RL instances from SWE-bench: files reconstructed from the gold patches.
    let text =
        std::fs::read_to_string(&args.swebench).with_context(|| args.swebench.display().to_string())?;
    let (instances, skipped) = swerl_data::swebench::rl_instances_from_swebench(&text, &args.swebench)?;
    let data_path = args.out.join("rl_instances.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&data_path)?);
    for inst in &instances {
        serde_json::to_writer(&mut f, inst)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    drop(f);
    // Sanity check of the reconstruction: the oracle change written as minimal SEARCH/REPLACE
    // edits (the SFT target) scores 1.0 with the real reward.
    let perfect = instances
        .iter()
        .filter(|inst| {
            swerl_reward::oracle_answer(inst).is_ok_and(|answer| {
                swerl_reward::reward(&inst.code_context, &inst.oracle_new_content, &answer) == 1.0
            })
        })
        .count();
    println!(
        "instances: {} from {} ({} skipped); gold edits scoring 1.0: {perfect}/{}",
        instances.len(),
        args.swebench.display(),
        skipped.len(),
        instances.len()
    );

    // 2. The model and the prompts (its own chat template, context budget).
    let t0 = std::time::Instant::now();
    let policy = LlamaPolicy::load(&args.model, &ModelSettings::default())?;
    println!(
        "model: {} ({} parameters) loaded in {:.1}s",
        args.model,
        policy.num_parameters(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.write_prompts {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for inst in &instances {
            let files: Vec<&str> = inst.code_context.keys().map(String::as_str).collect();
            let messages = build_messages(inst, &files);
            serde_json::to_writer(
                &mut f,
                &serde_json::json!({"instance_id": inst.instance_id, "messages": messages}),
            )?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
    }
    let mut config = match &args.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig {
            steps: args.steps,
            prompts_per_step: args.prompts_per_step,
            group_size: args.group_size,
            max_new_tokens: args.max_new_tokens,
            max_prompt_tokens: args.max_prompt_tokens,
            prompt_overflow: PromptOverflow::Skip,
            micro_batch_size: 2,
            learning_rate: args.learning_rate,
            save_steps: 0,
            log_completions: 2,
            ..TrainConfig::default()
        },
    };
    config.steps = args.steps;
    let dataset = Dataset::load(args.data.as_ref().unwrap_or(&data_path))?;
    let (env, report) =
        SweRlEnvironment::new(dataset, &policy, config.max_prompt_tokens, config.prompt_overflow)?;
    println!(
        "prompts: {} fit in {} tokens (longest {}), {} skipped",
        report.fitted + report.truncated,
        config.max_prompt_tokens,
        report.max_prompt_tokens,
        report.skipped.len()
    );

    // 3. Train.
    let optimizer = policy.optimizer(&config)?;
    let mut trainer = Trainer::new(config, policy, optimizer, &args.out)?;
    trainer.resume()?;
    let letters;
    let env: &dyn Environment = if args.letters {
        letters = LetterShare(env);
        &letters
    } else {
        &env
    };
    trainer.train(env, &mut |e| {
        if let TrainEvent::Step(m) = e {
            println!(
                "step {}: reward {:+.3} (std {:.3}) format_error_rate {:.2} len {:.0} loss {:+.5} grad_norm {:.3} entropy {:.3} | {:.1}s (sampling {:.1}s, reward {:.3}s, train {:.1}s) tokens {}",
                m.step, m.reward, m.reward_std, m.format_error_rate, m.completions_mean_length, m.loss,
                m.grad_norm, m.entropy, m.step_time, m.time_generation, m.time_reward, m.time_train, m.num_tokens
            );
        }
    })?;
    println!("metrics: {}", args.out.join("metrics.jsonl").display());
    Ok(())
}
