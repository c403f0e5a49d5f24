//! `swerl sft`: supervised fine-tuning on RL instances' oracle answers (the paper's SFT
//! baseline). Settings come from the defaults, then `--config sft.toml`, then flags (see
//! `swerl_grpo::sft::SftConfig` for every key and default).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use swerl_grpo::HeldOut;
use swerl_grpo::PromptOverflow;
use swerl_grpo::llama::LlamaPolicy;
use swerl_grpo::sft::{SftConfig, SftEvent, SftTrainer, build_examples};
use swerl_model::ScheduleKind;

use super::heldout::{EvalFlags, describe, environment};
use super::model_args::ModelArgs;

/// Every `SftConfig` key with its default, for the help.
pub(crate) fn help_defaults() -> Vec<(String, String)> {
    super::help::config_defaults(&SftConfig::default())
}

/// Arguments of `swerl sft`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// RL instances (JSONL); each example is the paper's prompt and the oracle answer.
    #[arg(long)]
    data: PathBuf,
    /// Output directory: metrics.jsonl, eval.jsonl, TensorBoard events, checkpoint-<step>/,
    /// final/ (each a Hugging Face model).
    #[arg(long)]
    out: PathBuf,
    /// TOML file of settings (keys as the flags below, in snake case).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    overrides: Overrides,
    #[command(flatten)]
    eval: EvalFlags,
}

/// One flag per `SftConfig` key.
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "SFT settings (override the config file)")]
struct Overrides {
    /// Passes over the data.
    #[arg(long)]
    epochs: Option<f64>,
    /// Optimizer steps (0: from --epochs).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Examples per optimizer step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Padded tokens per forward pass at most (length-grouped micro-batches).
    #[arg(long)]
    micro_batch_tokens: Option<usize>,
    /// Prompt budget in tokens.
    #[arg(long)]
    max_prompt_tokens: Option<usize>,
    /// `truncate` (drop unchanged context files) or `skip`.
    #[arg(long, value_parser = super::train::parse_enum::<PromptOverflow>)]
    prompt_overflow: Option<PromptOverflow>,
    /// Examples with a longer answer are skipped.
    #[arg(long)]
    max_answer_tokens: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// AdamW beta1.
    #[arg(long)]
    adam_beta1: Option<f64>,
    /// AdamW beta2.
    #[arg(long)]
    adam_beta2: Option<f64>,
    /// AdamW epsilon.
    #[arg(long)]
    adam_epsilon: Option<f64>,
    /// Gradient-norm clipping, 0 disables.
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// `constant`, `linear` or `cosine`.
    #[arg(long, value_parser = super::train::parse_enum::<ScheduleKind>)]
    lr_scheduler: Option<ScheduleKind>,
    /// Warm-up steps.
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Seed of the data order.
    #[arg(long)]
    seed: Option<u64>,
    /// Shuffle the examples each epoch.
    #[arg(long)]
    shuffle: Option<bool>,
    /// Checkpoint every N steps, 0: only at the end.
    #[arg(long)]
    save_steps: Option<u64>,
    /// Keep at most N checkpoints, 0 keeps all.
    #[arg(long)]
    save_total_limit: Option<usize>,
    /// Held-out check every N steps (needs --eval-data), 0: never.
    #[arg(long)]
    eval_steps: Option<u64>,
    /// Consecutive non-finite steps before stopping.
    #[arg(long)]
    max_nonfinite_steps: Option<u32>,
}

impl Overrides {
    fn apply(&self, c: &mut SftConfig) {
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(v) = self.$field.clone() { c.$field = v; })*
            };
        }
        set!(
            epochs,
            max_steps,
            batch_size,
            micro_batch_tokens,
            max_prompt_tokens,
            prompt_overflow,
            max_answer_tokens,
            learning_rate,
            weight_decay,
            adam_beta1,
            adam_beta2,
            adam_epsilon,
            max_grad_norm,
            lr_scheduler,
            warmup_steps,
            seed,
            shuffle,
            save_steps,
            save_total_limit,
            eval_steps,
            max_nonfinite_steps,
        );
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => SftConfig::from_toml_file(path)?,
        None => SftConfig::default(),
    };
    args.overrides.apply(&mut config);
    config.validate()?;

    let loaded = args.model.load().with_context(|| format!("loading {}", args.model.model))?;
    let policy = LlamaPolicy::from_loaded(loaded);
    eprintln!("model: {} ({} parameters)", args.model.model, policy.num_parameters());
    let env = environment(&args.data, &policy, config.max_prompt_tokens, config.prompt_overflow, "data")?;
    let (examples, report) = build_examples(&env, &policy, config.max_answer_tokens)?;
    eprintln!(
        "examples: {} ({} prompt + {} answer tokens); skipped: {} without an oracle answer, {} answers over {} tokens, {} not exact",
        report.kept,
        report.prompt_tokens,
        report.answer_tokens,
        report.no_answer.len(),
        report.too_long.len(),
        config.max_answer_tokens,
        report.not_exact.len()
    );
    for (id, why) in report.no_answer.iter().take(20) {
        eprintln!("warning: {id}: no oracle answer: {why}");
    }
    if examples.is_empty() {
        bail!("no training example in {}", args.data.display());
    }
    let held_out = args.eval.load(
        &policy,
        config.eval_steps,
        config.max_prompt_tokens,
        config.prompt_overflow,
        config.max_answer_tokens,
    )?;

    let optimizer = policy.adamw(config.adamw())?;
    let total = config.total_steps(examples.len());
    let mut trainer = SftTrainer::new(config, policy, optimizer, &args.out)?;
    if args.resume {
        match trainer.resume()? {
            Some(step) => eprintln!("resumed from {}", args.out.join(format!("checkpoint-{step}")).display()),
            None => eprintln!("--resume: no checkpoint in {}, starting from scratch", args.out.display()),
        }
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let held = held_out.as_ref().map(|(env, config)| HeldOut { env, config: config.clone() });
    trainer.train(&examples, held, &mut |event| match event {
        SftEvent::Started { start_step, .. } => bar.set_position(*start_step),
        SftEvent::Step(m) => {
            bar.set_position(m.step);
            super::heldout::say(&bar, format!(
                "step {:>5}  epoch {:.2}  loss {:.4}  token_acc {:.3}  grad_norm {:.3}  lr {:.2e}  {:.0} tok/s  {:.1}s{}",
                m.step,
                m.epoch,
                m.loss,
                m.mean_token_accuracy,
                m.grad_norm,
                m.learning_rate,
                m.tokens_per_second,
                m.step_time,
                m.skipped.as_deref().map(|s| format!("  SKIPPED: {s}")).unwrap_or_default()
            ));
        }
        SftEvent::Eval { step, report } => super::heldout::say(&bar, describe(*step, report)),
        SftEvent::Saved { path, .. } => super::heldout::say(&bar, format!("saved {}", path.display())),
        _ => {}
    })?;
    bar.finish_and_clear();
    println!("{}", args.out.join(swerl_grpo::sft::FINAL_DIR).display());
    Ok(ExitCode::SUCCESS)
}
