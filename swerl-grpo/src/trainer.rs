//! The GRPO training loop: sample P prompts x G completions, score them in parallel, compute
//! group advantages, run micro-batched forward/backward passes with gradient accumulation, clip
//! the global gradient norm and apply the optimizer, `num_iterations` times per batch; log
//! metrics and completions; checkpoint and resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor, Var};

use crate::advantage::compute_advantages;
use crate::checkpoint::{
    self, CONFIG_FILE, MODEL_DIR, OPTIMIZER_FILE, TrainerState, checkpoint_dir, latest_checkpoint,
};
use crate::comm::{Communicator, SingleProcess};
use crate::config::{LossType, TrainConfig};
use crate::env::Environment;
use crate::error::{Error, Result};
use crate::loss::{BatchNorm, LossInputs, LossStats, policy_loss};
use crate::metrics::{CompletionRecord, JsonlWriter, StepMetrics, truncate_log_after};
use crate::optim::{clip_grads, global_grad_norm, learning_rate};
use crate::policy::{
    FinishReason, Generation, GenerationRequest, Gradients, Optimizer, Policy, SamplingParams, TokenLogProbs,
};
use crate::sampler::{PromptSampler, derive_seed};

/// The metrics file in the output directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The sampled-completions file in the output directory.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";

/// What a training step is doing (for progress displays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Sampling completions.
    Generating,
    /// Scoring completions.
    Scoring,
    /// Computing the sampling policy's and the reference policy's log-probs.
    LogProbs,
    /// Forward/backward passes and the optimizer.
    Training,
}

/// Progress reports; the library never prints, the caller decides what to show.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainEvent<'a> {
    /// Training starts (or resumes) at `start_step` of `total_steps`.
    Started {
        /// Steps already done (non-zero after a resume).
        start_step: u64,
        /// Steps of the whole run.
        total_steps: u64,
        /// Prompts available.
        prompts: usize,
    },
    /// A step entered a phase.
    Phase {
        /// The step (1-based).
        step: u64,
        /// The phase.
        phase: Phase,
    },
    /// A micro-batch finished its backward pass.
    MicroBatch {
        /// The step.
        step: u64,
        /// 0-based index among `total` micro-batches of all iterations.
        index: usize,
        /// Micro-batches of the step.
        total: usize,
    },
    /// A step's update was skipped (non-finite loss or gradient); weights are unchanged.
    StepSkipped {
        /// The step.
        step: u64,
        /// Why.
        reason: &'a str,
    },
    /// A step finished.
    Step(&'a StepMetrics),
    /// A checkpoint was written.
    Checkpoint {
        /// The step.
        step: u64,
        /// Its directory.
        path: &'a Path,
    },
}

/// The outcome of [`Trainer::train`].
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Metrics of the steps run by this call.
    pub steps: Vec<StepMetrics>,
    /// The final checkpoint.
    pub last_checkpoint: Option<PathBuf>,
}

/// The GRPO trainer over a policy `P`.
pub struct Trainer<P: Policy> {
    config: TrainConfig,
    policy: P,
    reference: Option<P>,
    optimizer: Box<dyn Optimizer>,
    comm: Box<dyn Communicator>,
    out_dir: PathBuf,
    state: TrainerState,
    params: Vec<Var>,
    resumed_sampler: bool,
    /// `resume` found no checkpoint and cleared the logs: the directory is this run's.
    restarted: bool,
}

impl<P: Policy> std::fmt::Debug for Trainer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("out_dir", &self.out_dir)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// One sampled completion with everything the update needs.
struct Rollout {
    prompt: usize,
    sample: usize,
    generation: Generation,
    reward: f64,
    format_error: bool,
    failed: bool,
    reason: Option<String>,
    advantage: f64,
}

impl<P: Policy> Trainer<P> {
    /// A trainer writing to `out_dir` (created). Validates the configuration; with `beta > 0`
    /// takes a frozen copy of `policy` as the reference *now* (before any resume), so a resumed
    /// run keeps the original reference.
    pub fn new(
        config: TrainConfig,
        policy: P,
        optimizer: Box<dyn Optimizer>,
        out_dir: impl AsRef<Path>,
    ) -> Result<Self> {
        config.validate()?;
        let out_dir = out_dir.as_ref().to_owned();
        fs_err::create_dir_all(&out_dir)?;
        let reference = if config.beta != 0.0 { Some(policy.frozen_copy()?) } else { None };
        let params = policy.parameters();
        let state = TrainerState::new(config.seed);
        Ok(Self {
            config,
            policy,
            reference,
            optimizer,
            comm: Box::new(SingleProcess),
            out_dir,
            state,
            params,
            resumed_sampler: false,
            restarted: false,
        })
    }

    /// Uses `comm` for data parallelism (default: [`SingleProcess`]). Each rank takes
    /// `prompts_per_step / world_size` prompts of every step.
    pub fn with_communicator(mut self, comm: Box<dyn Communicator>) -> Result<Self> {
        if !self.config.prompts_per_step.is_multiple_of(comm.world_size()) {
            return Err(Error::config(
                "prompts_per_step",
                format!(
                    "{} is not divisible by the world size {}",
                    self.config.prompts_per_step,
                    comm.world_size()
                ),
            ));
        }
        self.comm = comm;
        Ok(self)
    }

    /// The policy being trained.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The run's progress.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Loads the newest checkpoint of the output directory (weights, optimizer, data position)
    /// and cuts the logs back to it. Returns its step, or `None` when there is none (a run that
    /// stopped before its first checkpoint: its log lines are dropped and training restarts).
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(&self.out_dir)? else {
            if self.comm.is_main() {
                truncate_log_after(self.out_dir.join(METRICS_FILE), 0)?;
                truncate_log_after(self.out_dir.join(COMPLETIONS_FILE), 0)?;
            }
            self.restarted = true;
            return Ok(None);
        };
        self.resume_from(&dir)?;
        Ok(Some(step))
    }

    /// A new run must not append to another run's logs, nor leave its checkpoints where a later
    /// `resume` would pick them up.
    fn check_fresh_out_dir(&self) -> Result<()> {
        let metrics = self.out_dir.join(METRICS_FILE);
        let logged = fs_err::metadata(&metrics).map(|m| m.len() > 0).unwrap_or(false);
        let checkpoint = latest_checkpoint(&self.out_dir)?;
        if logged || checkpoint.is_some() {
            let what = match checkpoint {
                Some((_, dir)) => dir.display().to_string(),
                None => metrics.display().to_string(),
            };
            return Err(Error::config(
                "out",
                format!(
                    "{} already holds a run ({what}): resume it, or start in another directory",
                    self.out_dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Loads a given checkpoint directory.
    pub fn resume_from(&mut self, dir: &Path) -> Result<()> {
        let state = checkpoint::read_state(dir)?;
        let saved = fs_err::read_to_string(dir.join(CONFIG_FILE))
            .ok()
            .and_then(|text| TrainConfig::from_toml_str(&text).ok());
        if let Some(saved) = saved {
            let differing = differing_keys(&saved, &self.config);
            if !differing.is_empty() {
                tracing::warn!(
                    checkpoint = %dir.display(),
                    keys = ?differing,
                    "resuming with settings that differ from the checkpoint's: the run will not \
                     reproduce an uninterrupted one"
                );
            }
        }
        self.policy.load_weights(&dir.join(MODEL_DIR))?;
        self.optimizer.load(&dir.join(OPTIMIZER_FILE))?;
        if self.comm.is_main() {
            truncate_log_after(self.out_dir.join(METRICS_FILE), state.step)?;
            truncate_log_after(self.out_dir.join(COMPLETIONS_FILE), state.step)?;
        }
        tracing::info!(checkpoint = %dir.display(), step = state.step, "resumed");
        self.state = state;
        self.resumed_sampler = true;
        Ok(())
    }

    /// Writes `checkpoint-<step>` (rank 0 only; other ranks return the path without writing).
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let dir = checkpoint_dir(&self.out_dir, self.state.step);
        if !self.comm.is_main() {
            return Ok(dir);
        }
        let tmp = self.out_dir.join(format!("checkpoint-{}.tmp", self.state.step));
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        fs_err::create_dir_all(tmp.join(MODEL_DIR))?;
        self.policy.save(&tmp.join(MODEL_DIR))?;
        self.optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
        fs_err::write(tmp.join(CONFIG_FILE), self.config.to_toml())?;
        checkpoint::write_state(&tmp, &self.state)?;
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::rename(&tmp, &dir)?;
        checkpoint::prune(&self.out_dir, self.config.save_total_limit)?;
        Ok(dir)
    }

    /// Runs the remaining steps of the configured run on `env`.
    pub fn train(
        &mut self,
        env: &dyn Environment,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<TrainSummary> {
        let n = env.prompts().len();
        if n == 0 {
            return Err(Error::config("data", "the environment has no prompt"));
        }
        if !self.resumed_sampler && !self.restarted && self.state.step == 0 && self.comm.is_main() {
            self.check_fresh_out_dir()?;
        }
        let mut sampler = PromptSampler::new(n, self.config.seed, self.config.shuffle);
        if self.resumed_sampler {
            if self.state.num_prompts != n {
                return Err(Error::Checkpoint {
                    path: self.out_dir.clone(),
                    message: format!(
                        "the checkpoint was made over {} prompts but the data now has {n}",
                        self.state.num_prompts
                    ),
                });
            }
            sampler.restore(self.state.sampler);
        }
        self.state.num_prompts = n;
        progress(&TrainEvent::Started {
            start_step: self.state.step,
            total_steps: self.config.steps,
            prompts: n,
        });
        let mut metrics_log =
            self.comm.is_main().then(|| JsonlWriter::append(self.out_dir.join(METRICS_FILE))).transpose()?;
        let mut completions_log = self
            .comm
            .is_main()
            .then(|| JsonlWriter::append(self.out_dir.join(COMPLETIONS_FILE)))
            .transpose()?;
        let mut summary = TrainSummary { steps: Vec::new(), last_checkpoint: None };
        while self.state.step < self.config.steps {
            let (metrics, records) = self.step(env, &mut sampler, progress)?;
            if let Some(log) = metrics_log.as_mut() {
                log.write(&metrics)?;
            }
            if let Some(log) = completions_log.as_mut() {
                for r in &records {
                    log.write(r)?;
                }
            }
            progress(&TrainEvent::Step(&metrics));
            summary.steps.push(metrics);
            let last = self.state.step == self.config.steps;
            if last || (self.config.save_steps > 0 && self.state.step.is_multiple_of(self.config.save_steps))
            {
                let path = self.save_checkpoint()?;
                progress(&TrainEvent::Checkpoint { step: self.state.step, path: &path });
                summary.last_checkpoint = Some(path);
            }
        }
        Ok(summary)
    }

    /// One step: rollouts, rewards, advantages, `num_iterations` updates.
    fn step(
        &mut self,
        env: &dyn Environment,
        sampler: &mut PromptSampler,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<(StepMetrics, Vec<CompletionRecord>)> {
        let start = Instant::now();
        let step = self.state.step + 1;
        let cfg = self.config.clone();
        let (rank, world) = (self.comm.rank(), self.comm.world_size());
        let group = cfg.group_size;
        let p_local = cfg.prompts_per_step / world;
        let indices = sampler.next_batch(cfg.prompts_per_step);
        let local = &indices[rank * p_local..(rank + 1) * p_local];

        // 1. Sampling.
        progress(&TrainEvent::Phase { step, phase: Phase::Generating });
        let prompts = env.prompts();
        let mut requests = Vec::with_capacity(p_local * group);
        let mut owners = Vec::with_capacity(p_local * group);
        for (j, &pi) in local.iter().enumerate() {
            let pos = rank * p_local + j;
            for g in 0..group {
                let seed = derive_seed(cfg.seed, &[step, pos as u64, g as u64]);
                requests.push(GenerationRequest { prompt: &prompts[pi].tokens, seed });
                owners.push((pi, pos, g));
            }
        }
        let params = SamplingParams {
            max_new_tokens: cfg.max_new_tokens,
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            top_k: cfg.top_k,
        };
        let mut generations = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(cfg.generation_batch_size) {
            let out = self.policy.generate(chunk, &params)?;
            if out.len() != chunk.len() {
                return Err(Error::Policy {
                    step,
                    during: "sampling",
                    message: format!("{} completions for {} requests", out.len(), chunk.len()),
                });
            }
            generations.extend(out);
        }
        let time_generation = start.elapsed().as_secs_f64();

        // 2. Rewards (parallel, never fatal).
        progress(&TrainEvent::Phase { step, phase: Phase::Scoring });
        let t_reward = Instant::now();
        let prompt_of: Vec<usize> = owners.iter().map(|o| o.0).collect();
        let refs: Vec<&Generation> = generations.iter().collect();
        let outcomes = env.score(&prompt_of, &refs);
        if outcomes.len() != generations.len() {
            return Err(Error::Policy {
                step,
                during: "scoring",
                message: format!("{} rewards for {} completions", outcomes.len(), generations.len()),
            });
        }
        let time_reward = t_reward.elapsed().as_secs_f64();

        // 3. Advantages over the global batch (rewards gathered from every rank).
        let n_local = p_local * group;
        let mut all_rewards = vec![0.0; cfg.prompts_per_step * group];
        for (i, o) in outcomes.iter().enumerate() {
            all_rewards[rank * n_local + i] = if o.reward.is_finite() { o.reward } else { -1.0 };
        }
        self.comm.all_reduce_f64(&mut all_rewards)?;
        let advantages = compute_advantages(&all_rewards, group, cfg.scale_rewards)?;
        let mut rollouts: Vec<Rollout> = generations
            .into_iter()
            .zip(outcomes)
            .zip(owners)
            .enumerate()
            .map(|(i, ((generation, o), (prompt, _, sample)))| Rollout {
                prompt,
                sample,
                generation,
                reward: all_rewards[rank * n_local + i],
                format_error: o.format_error,
                failed: o.reason.as_deref().is_some_and(|r| {
                    r.starts_with("reward function panicked") || r.starts_with("non-finite")
                }),
                reason: o.reason,
                advantage: advantages.values[rank * n_local + i],
            })
            .collect();

        // 4. Updates.
        let t_train = Instant::now();
        let update = self.update(step, &mut rollouts, prompts, progress)?;
        let time_train = t_train.elapsed().as_secs_f64();

        // 5. Metrics (global).
        let lengths: Vec<f64> = rollouts.iter().map(|r| r.generation.tokens.len() as f64).collect();
        let clipped = rollouts.iter().filter(|r| r.generation.finish == FinishReason::Length).count() as f64;
        let terminated: Vec<f64> = rollouts
            .iter()
            .filter(|r| r.generation.finish != FinishReason::Length)
            .map(|r| r.generation.tokens.len() as f64)
            .collect();
        let prompt_tokens: f64 = rollouts.iter().map(|r| prompts[r.prompt].tokens.len() as f64).sum();
        let mut sums = [
            lengths.iter().sum::<f64>(),
            clipped,
            terminated.iter().sum::<f64>(),
            terminated.len() as f64,
            rollouts.iter().filter(|r| r.format_error).count() as f64,
            rollouts.iter().filter(|r| r.failed).count() as f64,
            prompt_tokens + lengths.iter().sum::<f64>(),
            lengths.len() as f64,
        ];
        self.comm.all_reduce_f64(&mut sums)?;
        let mut extremes = [
            -lengths.iter().copied().fold(f64::INFINITY, f64::min),
            lengths.iter().copied().fold(0.0, f64::max),
        ];
        if world > 1 {
            // max via sums of one-hot per rank is not possible; gather per rank instead.
            let mut per_rank = vec![0.0; 2 * world];
            per_rank[2 * rank] = extremes[0];
            per_rank[2 * rank + 1] = extremes[1];
            self.comm.all_reduce_f64(&mut per_rank)?;
            extremes[0] = per_rank.iter().step_by(2).copied().fold(f64::NEG_INFINITY, f64::max);
            extremes[1] = per_rank.iter().skip(1).step_by(2).copied().fold(0.0, f64::max);
        }
        let total = sums[7].max(1.0);
        self.state.step = step;
        self.state.num_tokens += sums[6] as u64;
        self.state.sampler = sampler.state();
        let n_prompts = prompts.len() as f64;
        let metrics = StepMetrics {
            step,
            epoch: (sampler.state().epoch as f64) + sampler.state().offset as f64 / n_prompts,
            reward: advantages.reward_mean(),
            reward_std: advantages.batch_std,
            frac_reward_zero_std: advantages.frac_zero_std(),
            format_error_rate: sums[4] / total,
            reward_failures: sums[5] as u64,
            completions_mean_length: sums[0] / total,
            completions_min_length: -extremes[0],
            completions_max_length: extremes[1],
            completions_clipped_ratio: sums[1] / total,
            completions_mean_terminated_length: if sums[3] > 0.0 { sums[2] / sums[3] } else { 0.0 },
            kl: update.stats.kl_mean(),
            entropy: update.entropy,
            clip_ratio_low_mean: update.stats.clip_low_mean(),
            clip_ratio_high_mean: update.stats.clip_high_mean(),
            clip_ratio_region_mean: update.stats.clip_region_mean(),
            loss: update.loss,
            grad_norm: update.grad_norm,
            learning_rate: update.learning_rate,
            updates: update.updates,
            skipped: update.skipped,
            num_tokens: self.state.num_tokens,
            step_time: start.elapsed().as_secs_f64(),
            time_generation,
            time_reward,
            time_train,
        };
        let records = self.sample_records(step, &rollouts, prompts);
        Ok((metrics, records))
    }

    fn sample_records(
        &self,
        step: u64,
        rollouts: &[Rollout],
        prompts: &[crate::env::PreparedPrompt],
    ) -> Vec<CompletionRecord> {
        let n = rollouts.len();
        let groups = (n / self.config.group_size).max(1);
        (0..self.config.log_completions.min(n))
            .map(|k| (k % groups) * self.config.group_size + k / groups)
            .filter(|&i| i < n)
            .map(|i| {
                let r = &rollouts[i];
                CompletionRecord {
                    step,
                    prompt_id: prompts[r.prompt].id.clone(),
                    sample: r.sample,
                    completion: r.generation.text.clone(),
                    reward: r.reward,
                    advantage: r.advantage,
                    length: r.generation.tokens.len(),
                    finish_reason: r.generation.finish.as_str().to_owned(),
                    reason: r.reason.clone(),
                }
            })
            .collect()
    }
}

/// What the update phase of a step reports.
struct UpdateReport {
    loss: f64,
    grad_norm: f64,
    learning_rate: f64,
    entropy: f64,
    stats: LossStats,
    updates: u64,
    skipped: Option<String>,
}

impl<P: Policy> Trainer<P> {
    fn update(
        &mut self,
        step: u64,
        rollouts: &mut [Rollout],
        prompts: &[crate::env::PreparedPrompt],
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<UpdateReport> {
        let cfg = self.config.clone();
        let device = self.policy.device().clone();
        let objective = cfg.objective();

        // Micro-batches of similar total length (less padding), in a deterministic order.
        let mut order: Vec<usize> = (0..rollouts.len()).collect();
        order.sort_by_key(|&i| {
            (
                std::cmp::Reverse(
                    prompts[rollouts[i].prompt].tokens.len() + rollouts[i].generation.tokens.len(),
                ),
                i,
            )
        });
        // Without a KL term, a completion whose advantage is 0 (e.g. every completion of a group
        // that all failed the format) has exactly zero gradient and zero loss: skip its forward
        // and backward passes. The normalisation counts below still include it, so the update is
        // the same as computing it. (`bnpo` is defined per micro-batch, so it keeps them.)
        if cfg.beta == 0.0 && cfg.loss_type != LossType::Bnpo {
            order.retain(|&i| rollouts[i].advantage != 0.0);
        }
        let batches: Vec<Vec<usize>> = order.chunks(cfg.micro_batch_size).map(<[usize]>::to_vec).collect();
        let included =
            |r: &Rollout| !(cfg.mask_truncated_completions && r.generation.finish == FinishReason::Length);

        // Global normalisation counts.
        let local_tokens: usize =
            rollouts.iter().filter(|r| included(r)).map(|r| r.generation.tokens.len()).sum();
        let mut counts = [rollouts.len() as f64, local_tokens as f64, batches.len() as f64];
        self.comm.all_reduce_f64(&mut counts)?;
        let norm = BatchNorm {
            sequences: counts[0] as usize,
            tokens: counts[1] as usize,
            micro_batches: counts[2] as usize,
            max_completion_len: cfg.max_new_tokens,
        };

        // Per micro-batch inputs that do not change across iterations.
        struct Micro {
            mask: Tensor,
            advantages: Tensor,
            old: Option<Tensor>,
            reference: Option<Tensor>,
            width: usize,
        }
        let need_old = cfg.num_iterations > 1;
        if need_old || self.reference.is_some() {
            progress(&TrainEvent::Phase { step, phase: Phase::LogProbs });
        }
        let mut micros = Vec::with_capacity(batches.len());
        for batch in &batches {
            let width = batch.iter().map(|&i| rollouts[i].generation.tokens.len()).max().unwrap_or(0);
            let mut mask = vec![0f32; batch.len() * width];
            for (row, &i) in batch.iter().enumerate() {
                if included(&rollouts[i]) {
                    for m in &mut mask[row * width..row * width + rollouts[i].generation.tokens.len()] {
                        *m = 1.0;
                    }
                }
            }
            let mask = Tensor::from_vec(mask, (batch.len(), width), &device)?;
            let adv: Vec<f32> = batch.iter().map(|&i| rollouts[i].advantage as f32).collect();
            let advantages = Tensor::from_vec(adv, batch.len(), &device)?;
            let seqs: Vec<(&[u32], &[u32])> = batch
                .iter()
                .map(|&i| {
                    (prompts[rollouts[i].prompt].tokens.as_slice(), rollouts[i].generation.tokens.as_slice())
                })
                .collect();
            let old = if need_old && width > 0 {
                let out = self.policy.logprobs(&seqs, cfg.temperature)?;
                check_scores(&out, step, seqs.len(), width)?;
                Some(out.logp)
            } else {
                None
            };
            let reference = match (&self.reference, width > 0) {
                (Some(r), true) => {
                    let out = r.logprobs(&seqs, cfg.temperature)?;
                    check_scores(&out, step, seqs.len(), width)?;
                    Some(out.logp)
                }
                _ => None,
            };
            micros.push(Micro { mask, advantages, old, reference, width });
        }

        progress(&TrainEvent::Phase { step, phase: Phase::Training });
        let total_micro = batches.len() * cfg.num_iterations;
        let mut report = UpdateReport {
            loss: 0.0,
            grad_norm: 0.0,
            learning_rate: 0.0,
            entropy: 0.0,
            stats: LossStats::default(),
            updates: 0,
            skipped: None,
        };
        let mut entropy_sum = 0.0;
        let mut micro_index = 0;
        for _iteration in 0..cfg.num_iterations {
            let mut acc = Gradients::new(&self.params);
            let mut loss_sum = 0.0;
            for (batch, micro) in batches.iter().zip(&micros) {
                micro_index += 1;
                if micro.width == 0 {
                    continue;
                }
                let seqs: Vec<(&[u32], &[u32])> = batch
                    .iter()
                    .map(|&i| {
                        (
                            prompts[rollouts[i].prompt].tokens.as_slice(),
                            rollouts[i].generation.tokens.as_slice(),
                        )
                    })
                    .collect();
                let pass = self.policy.train_forward(&seqs, cfg.temperature)?;
                check_scores(pass.scores(), step, seqs.len(), micro.width)?;
                let entropy = pass.scores().entropy.detach();
                let out = policy_loss(
                    &LossInputs {
                        logp: &pass.scores().logp,
                        old_logp: micro.old.as_ref(),
                        ref_logp: micro.reference.as_ref(),
                        advantages: &micro.advantages,
                        mask: &micro.mask,
                    },
                    &objective,
                    &norm,
                )?;
                let loss_value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                loss_sum += loss_value;
                report.stats.add(&out.stats);
                entropy_sum += (entropy.to_dtype(DType::F32)? * micro.mask.to_dtype(DType::F32)?)?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                if loss_value.is_finite() {
                    pass.backward(&out.loss, &mut acc)?;
                }
                progress(&TrainEvent::MicroBatch { step, index: micro_index - 1, total: total_micro });
            }
            // Sum over ranks: gradients and the loss.
            let mut grads = acc.into_tensors()?;
            for g in &grads {
                self.comm.all_reduce_sum(g)?;
            }
            let mut loss_arr = [loss_sum];
            self.comm.all_reduce_f64(&mut loss_arr)?;
            let loss = loss_arr[0];
            let norm_value = global_grad_norm(&grads)?;
            report.loss += loss / cfg.num_iterations as f64;
            report.grad_norm += norm_value / cfg.num_iterations as f64;
            let bad = if !loss.is_finite() {
                Some("loss")
            } else if !norm_value.is_finite() {
                Some("gradient norm")
            } else {
                None
            };
            if let Some(what) = bad {
                self.state.consecutive_nonfinite += 1;
                let reason = format!(
                    "non-finite {what} (loss {loss}, grad norm {norm_value}) at step {step}: update skipped, weights unchanged"
                );
                tracing::error!("{reason}");
                progress(&TrainEvent::StepSkipped { step, reason: &reason });
                if self.state.consecutive_nonfinite >= cfg.max_nonfinite_steps {
                    return Err(Error::NonFinite {
                        step,
                        what,
                        consecutive: self.state.consecutive_nonfinite,
                    });
                }
                report.skipped = Some(reason);
                break;
            }
            clip_grads(&mut grads, norm_value, cfg.max_grad_norm)?;
            let lr = learning_rate(
                cfg.learning_rate,
                cfg.lr_scheduler,
                cfg.warmup_steps,
                self.state.updates,
                cfg.total_updates(),
            );
            self.optimizer.step(&self.params, &grads, lr)?;
            self.state.updates += 1;
            report.updates += 1;
            report.learning_rate = lr;
        }
        if report.skipped.is_none() {
            self.state.consecutive_nonfinite = 0;
        }
        let mut global = report.stats.to_array().to_vec();
        global.push(entropy_sum);
        self.comm.all_reduce_f64(&mut global)?;
        let entropy_sum = global.pop().unwrap_or(0.0);
        report.stats = LossStats::from_array(global.try_into().expect("six sums"));
        // Over the completions trained on (NaN, logged as null, when every advantage was 0).
        report.entropy = if report.stats.tokens > 0.0 { entropy_sum / report.stats.tokens } else { f64::NAN };
        Ok(report)
    }
}

/// Settings that differ between two configurations (ignoring `steps`, which a resumed run may
/// extend).
fn differing_keys(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    a.iter().filter(|(k, v)| *k != "steps" && b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect()
}

fn check_scores(out: &TokenLogProbs, step: u64, rows: usize, width: usize) -> Result<()> {
    let expected = [rows, width];
    if out.logp.dims() != expected || out.entropy.dims() != expected {
        return Err(Error::Policy {
            step,
            during: "computing log-probs",
            message: format!(
                "expected {expected:?}, got logp {:?} and entropy {:?}",
                out.logp.dims(),
                out.entropy.dims()
            ),
        });
    }
    Ok(())
}
