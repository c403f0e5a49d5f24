//! `swerl train`: GRPO on RL instances with the SWE-RL reward.
//!
//! Settings come from the defaults, then `--config train.toml`, then flags (each flag is the
//! kebab-case form of a TOML key; see `swerl_grpo::TrainConfig` for every key and default).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::model_args::ModelArgs;
use swerl_grpo::llama::LlamaPolicy;
use swerl_grpo::{
    ImportanceLevel, LossType, Phase, PromptOverflow, ScaleRewards, SweRlEnvironment, TrainConfig,
    TrainEvent, Trainer,
};
use swerl_model::ScheduleKind;
use swerl_reward::Dataset;

/// Arguments of `swerl train`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// RL instances (JSONL: instance_id, problem_statement, code_context, oracle_new_content).
    #[arg(long)]
    data: PathBuf,
    /// Output directory: metrics.jsonl, completions.jsonl, checkpoint-<step>/.
    #[arg(long)]
    out: PathBuf,
    /// TOML file of training settings (keys as the flags below, in snake case).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    resume: bool,

    #[command(flatten)]
    overrides: Overrides,
}

/// One flag per `TrainConfig` key (see its docs for defaults).
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "Training settings (override the config file)")]
struct Overrides {
    /// Training steps (rollout batches) [default: 100].
    #[arg(long)]
    steps: Option<u64>,
    /// Prompts per step, P [default: 8; paper: 32].
    #[arg(long)]
    prompts_per_step: Option<usize>,
    /// Completions per prompt, G [default: 8; paper: 16].
    #[arg(long)]
    group_size: Option<usize>,
    /// Maximum completion length [default: 4096].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Maximum prompt length after the chat template [default: 12288].
    #[arg(long)]
    max_prompt_tokens: Option<usize>,
    /// `truncate` (drop unchanged context files) or `skip` [default: truncate].
    #[arg(long, value_parser = parse_enum::<PromptOverflow>)]
    prompt_overflow: Option<PromptOverflow>,
    /// Sampling temperature [default: 1.0].
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus sampling mass [default: 1.0].
    #[arg(long)]
    top_p: Option<f64>,
    /// Top-k sampling, 0 disables [default: 0].
    #[arg(long)]
    top_k: Option<usize>,
    /// Sequences per generation call [default: 64].
    #[arg(long)]
    generation_batch_size: Option<usize>,
    /// Sequences per forward/backward pass [default: 4].
    #[arg(long)]
    micro_batch_size: Option<usize>,
    /// Updates per rollout batch, mu [default: 1].
    #[arg(long)]
    num_iterations: Option<usize>,
    /// `group`, `batch` or `none` [default: group].
    #[arg(long, value_parser = parse_enum::<ScaleRewards>)]
    scale_rewards: Option<ScaleRewards>,
    /// `token` or `sequence` (GSPO) [default: token].
    #[arg(long, value_parser = parse_enum::<ImportanceLevel>)]
    importance_sampling_level: Option<ImportanceLevel>,
    /// Lower clip range [default: 0.2].
    #[arg(long)]
    epsilon_low: Option<f64>,
    /// Upper clip range [default: 0.2; DAPO: 0.28].
    #[arg(long)]
    epsilon_high: Option<f64>,
    /// Two-sided clipping: cap ratios at this value (> 1 + epsilon-high) [default: off].
    #[arg(long)]
    delta: Option<f64>,
    /// KL coefficient, 0 loads no reference model [default: 0].
    #[arg(long)]
    beta: Option<f64>,
    /// `grpo`, `bnpo`, `dr_grpo` or `dapo` [default: dapo].
    #[arg(long, value_parser = parse_enum::<LossType>)]
    loss_type: Option<LossType>,
    /// Exclude truncated completions from the loss [default: false].
    #[arg(long)]
    mask_truncated_completions: Option<bool>,
    /// Peak learning rate [default: 1e-6].
    #[arg(long)]
    learning_rate: Option<f64>,
    /// AdamW weight decay [default: 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// AdamW beta1 [default: 0.9].
    #[arg(long)]
    adam_beta1: Option<f64>,
    /// AdamW beta2 [default: 0.999].
    #[arg(long)]
    adam_beta2: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long)]
    adam_epsilon: Option<f64>,
    /// Gradient-norm clipping, 0 disables [default: 1.0].
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// `constant`, `linear` or `cosine` [default: constant].
    #[arg(long, value_parser = parse_enum::<ScheduleKind>)]
    lr_scheduler: Option<ScheduleKind>,
    /// Warm-up updates [default: 0].
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Seed of data order and sampling [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Shuffle the data each epoch [default: true].
    #[arg(long)]
    shuffle: Option<bool>,
    /// Checkpoint every N steps, 0: only at the end [default: 50].
    #[arg(long)]
    save_steps: Option<u64>,
    /// Keep at most N checkpoints, 0 keeps all [default: 0].
    #[arg(long)]
    save_total_limit: Option<usize>,
    /// Completions logged per step [default: 4].
    #[arg(long)]
    log_completions: Option<usize>,
    /// Consecutive non-finite steps before stopping [default: 3].
    #[arg(long)]
    max_nonfinite_steps: Option<u32>,
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|e| e.to_string())
}

impl Overrides {
    fn apply(&self, c: &mut TrainConfig) {
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(v) = self.$field.clone() { c.$field = v; })*
            };
        }
        if self.delta.is_some() {
            c.delta = self.delta;
        }
        set!(
            steps,
            prompts_per_step,
            group_size,
            max_new_tokens,
            max_prompt_tokens,
            prompt_overflow,
            temperature,
            top_p,
            top_k,
            generation_batch_size,
            micro_batch_size,
            num_iterations,
            scale_rewards,
            importance_sampling_level,
            epsilon_low,
            epsilon_high,
            beta,
            loss_type,
            mask_truncated_completions,
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
            log_completions,
            max_nonfinite_steps,
        );
    }
}

pub(crate) fn run(mut args: Args) -> Result<ExitCode> {
    // Launched by torchrun or a similar launcher: one process per GPU, NCCL between them.
    let rank = swerl_grpo::RankInfo::from_env()?;
    if let Some(info) = &rank {
        if cfg!(not(feature = "nccl")) {
            bail!(
                "WORLD_SIZE={} asks for data parallelism, but this swerl was built without \
                 `--features nccl`",
                info.world_size
            );
        }
        if args.model.device == "cuda" {
            args.model.device = format!("cuda:{}", info.local_rank);
        }
    }
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::default(),
    };
    args.overrides.apply(&mut config);
    config.validate()?;

    let dataset = Dataset::load(&args.data)?;
    for s in dataset.skipped.iter().take(20) {
        eprintln!("warning: {}: skipped {s}", args.data.display());
    }
    if dataset.skipped.len() > 20 {
        eprintln!("warning: ... and {} more skipped records", dataset.skipped.len() - 20);
    }
    eprintln!(
        "data: {} instances ({} malformed records skipped)",
        dataset.instances.len(),
        dataset.skipped.len()
    );

    let spinner = spinner("loading model");
    let loaded = args.model.load().with_context(|| format!("loading {}", args.model.model))?;
    let policy = LlamaPolicy::from_loaded(loaded);
    spinner.finish_and_clear();
    eprintln!("model: {} ({} parameters)", args.model.model, policy.num_parameters());

    let (env, report) =
        SweRlEnvironment::new(dataset, &policy, config.max_prompt_tokens, config.prompt_overflow)?;
    eprintln!(
        "prompts: {} fitted, {} truncated ({} context files dropped), {} skipped over {} tokens; longest {} tokens",
        report.fitted,
        report.truncated,
        report.dropped_files,
        report.skipped.len(),
        config.max_prompt_tokens,
        report.max_prompt_tokens
    );
    if report.fitted + report.truncated == 0 {
        bail!("no instance fits in --max-prompt-tokens {}", config.max_prompt_tokens);
    }

    let optimizer = policy.optimizer(&config)?;
    let mut trainer = Trainer::new(config.clone(), policy, optimizer, &args.out)?;
    if let Some(info) = &rank {
        trainer = with_nccl(trainer, info)?;
    }
    if args.resume {
        match trainer.resume()? {
            Some(step) => eprintln!("resumed from {}", args.out.join(format!("checkpoint-{step}")).display()),
            None => eprintln!("--resume: no checkpoint in {}, starting from scratch", args.out.display()),
        }
    }

    let bar = ProgressBar::new(config.steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let summary = trainer.train(&env, &mut |event| match event {
        TrainEvent::Started { start_step, .. } => bar.set_position(*start_step),
        TrainEvent::Phase { step, phase } => {
            let what = match phase {
                Phase::Generating => "sampling",
                Phase::Scoring => "scoring",
                Phase::LogProbs => "old/ref log-probs",
                Phase::Training => "training",
                _ => "working",
            };
            bar.set_message(format!("step {step}: {what}"));
        }
        TrainEvent::MicroBatch { step, index, total } => {
            bar.set_message(format!("step {step}: training micro-batch {}/{total}", index + 1));
        }
        TrainEvent::StepSkipped { reason, .. } => bar.println(format!("warning: {reason}")),
        TrainEvent::Step(m) => {
            bar.set_position(m.step);
            bar.println(format!(
                "step {:>5}  reward {:+.4} (std {:.3})  format_err {:.2}  zero_std {:.2}  len {:.0}  clipped {:.2}  loss {:+.5}  grad_norm {:.3}  kl {:.4}  entropy {:.3}  lr {:.2e}  {:.1}s",
                m.step,
                m.reward,
                m.reward_std,
                m.format_error_rate,
                m.frac_reward_zero_std,
                m.completions_mean_length,
                m.completions_clipped_ratio,
                m.loss,
                m.grad_norm,
                m.kl,
                m.entropy,
                m.learning_rate,
                m.step_time
            ));
        }
        TrainEvent::Checkpoint { path, .. } => bar.println(format!("saved {}", path.display())),
        _ => {}
    })?;
    bar.finish_and_clear();
    if let Some(path) = summary.last_checkpoint {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Joins the NCCL job described by `info` on the policy's GPU.
#[cfg(feature = "nccl")]
fn with_nccl(trainer: Trainer<LlamaPolicy>, info: &swerl_grpo::RankInfo) -> Result<Trainer<LlamaPolicy>> {
    let device = trainer.policy().model().device().clone();
    let comm = swerl_grpo::NcclCommunicator::init(info, &device, Duration::from_secs(600))?;
    eprintln!("rank {} of {} on {:?}", info.rank, info.world_size, device.location());
    Ok(trainer.with_communicator(Box::new(comm))?)
}

#[cfg(not(feature = "nccl"))]
fn with_nccl(_: Trainer<LlamaPolicy>, info: &swerl_grpo::RankInfo) -> Result<Trainer<LlamaPolicy>> {
    bail!("rank {} of {}: built without `--features nccl`", info.rank, info.world_size)
}

fn spinner(message: &'static str) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}
