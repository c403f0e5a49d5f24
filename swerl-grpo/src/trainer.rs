//! The GRPO training loop: sample P prompts x G completions, score them in parallel, compute
//! group advantages, run micro-batched forward/backward passes with gradient accumulation, clip
//! the global gradient norm and apply the optimizer, `num_iterations` times per batch; log
//! metrics and completions; checkpoint and resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use swerl_model::{
    Completion, FinishReason, GenerationRequest, Gradients, LrSchedule, SamplingParams, TokenScores,
};

use crate::advantage::{Advantages, compute_advantages, has_signal};
use crate::checkpoint::{
    self, CONFIG_FILE, MODEL_DIR, OPTIMIZER_FILE, TrainerState, checkpoint_dir, latest_checkpoint,
};
use crate::comm::{Communicator, SingleProcess};
use crate::config::{LossType, TrainConfig};
use crate::env::{Environment, PreparedPrompt};
use crate::error::{Error, Result};
use crate::evaluate::{EvalReport, HeldOut, evaluate};
use crate::loss::{BatchNorm, LossInputs, LossStats, PolicyLoss, policy_loss};
use crate::metrics::{
    CompletionRecord, EVAL_ANSWERS_FILE, EVAL_FILE, EvalMetrics, JsonlWriter, StepMetrics, empty_log,
    log_answers, log_scalars, truncate_log_after,
};
use crate::policy::{Optimizer, Policy, finish_label};
use crate::reward::RewardOutcome;
use crate::sampler::{PromptSampler, derive_seed};
use crate::tensorboard::EventWriter;

pub use crate::metrics::METRICS_FILE;
/// The sampled-completions file in the output directory.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";
/// The settings of the run in an output directory, written when it starts (a resume without a
/// checkpoint restarts only a run with the same settings).
pub const RUN_CONFIG_FILE: &str = "run_config.toml";

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
    /// A held-out check finished.
    Eval {
        /// Steps done when it ran (0: before training).
        step: u64,
        /// Its report.
        report: &'a EvalReport,
    },
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
#[non_exhaustive]
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
    /// `resume` found no checkpoint, and nothing or only this run's logs: the directory is this
    /// run's.
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

/// Who a sampled completion belongs to: its prompt, its index in the group, its seed.
struct Owner {
    prompt: usize,
    sample: usize,
    seed: u64,
}

/// Completion statistics of a step (sums over every rank, then extremes).
#[derive(Debug, Default)]
struct CompletionStats {
    length_sum: f64,
    completions: f64,
    clipped: f64,
    terminated: f64,
    terminated_length_sum: f64,
    format_errors: f64,
    reward_failures: f64,
    /// Prompt and completion tokens.
    tokens: f64,
    min_length: f64,
    max_length: f64,
}

impl CompletionStats {
    fn sums(&self) -> [f64; 8] {
        [
            self.length_sum,
            self.completions,
            self.clipped,
            self.terminated,
            self.terminated_length_sum,
            self.format_errors,
            self.reward_failures,
            self.tokens,
        ]
    }

    fn from_sums(s: [f64; 8]) -> Self {
        let [
            length_sum,
            completions,
            clipped,
            terminated,
            terminated_length_sum,
            format_errors,
            reward_failures,
            tokens,
        ] = s;
        Self {
            length_sum,
            completions,
            clipped,
            terminated,
            terminated_length_sum,
            format_errors,
            reward_failures,
            tokens,
            min_length: 0.0,
            max_length: 0.0,
        }
    }

    /// The number of completions (at least 1, as a divisor).
    fn count(&self) -> f64 {
        self.completions.max(1.0)
    }
}

/// Scores every completion through the environment (in parallel, never fatal).
fn score_rollouts(
    step: u64,
    env: &dyn Environment,
    owners: &[Owner],
    generations: &[Completion],
) -> Result<Vec<RewardOutcome>> {
    let prompt_of: Vec<usize> = owners.iter().map(|o| o.prompt).collect();
    let refs: Vec<&Completion> = generations.iter().collect();
    let outcomes = env.score(&prompt_of, &refs);
    if outcomes.len() != generations.len() {
        return Err(Error::Policy {
            step,
            during: "scoring",
            message: format!("{} rewards for {} completions", outcomes.len(), generations.len()),
        });
    }
    Ok(outcomes)
}

/// The reward an outcome contributes to its group's advantage: a non-finite one (already
/// replaced by the reward function's failure value, normally) counts as -1.
fn advantage_reward(o: &RewardOutcome) -> f64 {
    if o.reward.is_finite() { o.reward } else { -1.0 }
}

/// The next `g` items (one group).
fn next_group<T>(items: &mut impl Iterator<Item = T>, g: usize) -> Vec<T> {
    items.by_ref().take(g).collect()
}

/// A step's sampled groups after dynamic sampling, with what it cost.
#[derive(Default)]
struct Drawn {
    owners: Vec<Owner>,
    generations: Vec<Completion>,
    outcomes: Vec<RewardOutcome>,
    /// Extra rounds, groups drawn, groups replaced (summed over ranks).
    counts: [f64; 3],
    time_generation: f64,
    time_reward: f64,
}

/// One sampled completion with everything the update needs.
struct Rollout {
    prompt: usize,
    sample: usize,
    generation: Completion,
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
    /// Fails, touching nothing, when the directory has no checkpoint but holds logs of a run
    /// with other settings (or of unknown origin).
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(&self.out_dir)? else {
            // Nothing to resume: start from scratch. Logs without a checkpoint are emptied only
            // when they are this run's (it stopped before its first checkpoint: same settings in
            // `run_config.toml`); anyone else's make the resume fail, untouched.
            if self.comm.is_main() {
                if self.is_own_unsaved_run() {
                    for log in [METRICS_FILE, COMPLETIONS_FILE, EVAL_FILE, EVAL_ANSWERS_FILE] {
                        empty_log(&self.out_dir.join(log))?;
                    }
                } else {
                    self.check_fresh_out_dir()?;
                }
            }
            self.restarted = true;
            return Ok(None);
        };
        self.resume_from(&dir)?;
        Ok(Some(step))
    }

    /// The output directory's logs come from a run with this run's settings (`run_config.toml`,
    /// written when a run starts), which stopped before its first checkpoint.
    fn is_own_unsaved_run(&self) -> bool {
        fs_err::read_to_string(self.out_dir.join(RUN_CONFIG_FILE))
            .ok()
            .and_then(|text| TrainConfig::from_toml_str(&text).ok())
            .is_some_and(|saved| differing_keys(&saved, &self.config).is_empty())
    }

    /// Refuses an output directory holding another run's logs or checkpoints.
    fn check_fresh_out_dir(&self) -> Result<()> {
        checkpoint::refuse_busy_out_dir(&self.out_dir, &[METRICS_FILE, COMPLETIONS_FILE, EVAL_FILE])
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
            for log in [METRICS_FILE, COMPLETIONS_FILE, EVAL_FILE, EVAL_ANSWERS_FILE] {
                truncate_log_after(self.out_dir.join(log), state.step)?;
            }
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
        checkpoint::check_finite(&self.policy.parameters(), &dir)?;
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
        self.train_with_eval(env, None, progress)
    }

    /// [`Trainer::train`], with the held-out check (`eval.jsonl`) before the first step, every
    /// `eval_steps` steps and after the last, when `eval_steps > 0` and `held_out` is given
    /// (rank 0 runs it; other ranks skip it).
    pub fn train_with_eval(
        &mut self,
        env: &dyn Environment,
        held_out: Option<HeldOut<'_>>,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<TrainSummary> {
        if let Some(h) = &held_out {
            h.config.validate()?;
        }
        let held_out = held_out.filter(|_| self.config.eval_steps > 0 && self.comm.is_main());
        let n = env.prompts().len();
        if n == 0 {
            return Err(Error::config("data", "the environment has no prompt"));
        }
        if !self.resumed_sampler && self.state.step == 0 && self.comm.is_main() {
            if !self.restarted {
                self.check_fresh_out_dir()?;
            }
            checkpoint::write_run_config(&self.out_dir, &self.config.to_toml())?;
        }
        let mut sampler = checkpoint::sampler_for(
            &self.state,
            &self.out_dir,
            (n, self.config.seed, self.config.shuffle),
            self.resumed_sampler,
            "prompts",
        )?;
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
        let mut eval_log =
            held_out.as_ref().map(|_| JsonlWriter::append(self.out_dir.join(EVAL_FILE))).transpose()?;
        // A (re)start: TensorBoard drops whatever earlier files logged from the next step on.
        let mut tb = self.comm.is_main().then(|| EventWriter::create(&self.out_dir)).transpose()?;
        if let Some(tb) = tb.as_mut() {
            tb.session_start(self.state.step as i64 + 1)?;
        }
        if self.state.step == 0 {
            self.held_out_check(held_out.as_ref(), eval_log.as_mut(), tb.as_mut(), progress)?;
        }
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
            if let Some(tb) = tb.as_mut() {
                log_scalars(tb, metrics.step, "train/", &metrics)?;
            }
            progress(&TrainEvent::Step(&metrics));
            summary.steps.push(metrics);
            let last = self.state.step == self.config.steps;
            if last || self.state.step.is_multiple_of(self.config.eval_steps.max(1)) {
                self.held_out_check(held_out.as_ref(), eval_log.as_mut(), tb.as_mut(), progress)?;
            }
            if last || (self.config.save_steps > 0 && self.state.step.is_multiple_of(self.config.save_steps))
            {
                let path = self.save_checkpoint()?;
                progress(&TrainEvent::Checkpoint { step: self.state.step, path: &path });
                summary.last_checkpoint = Some(path);
            }
        }
        Ok(summary)
    }

    /// Greedy answers to the held-out prompts, logged to `eval.jsonl` (nothing without a
    /// held-out set).
    fn held_out_check(
        &mut self,
        held_out: Option<&HeldOut<'_>>,
        log: Option<&mut JsonlWriter>,
        tb: Option<&mut EventWriter>,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<()> {
        let (Some(h), Some(log)) = (held_out, log) else { return Ok(()) };
        let report = evaluate(&mut self.policy, h.env, &h.config)?;
        let line = EvalMetrics::new(self.state.step, &report);
        log_answers(&self.out_dir, self.state.step, &report)?;
        log.write(&line)?;
        if let Some(tb) = tb {
            log_scalars(tb, self.state.step, "", &line)?;
        }
        progress(&TrainEvent::Eval { step: self.state.step, report: &report });
        Ok(())
    }

    /// One step: rollouts, rewards, advantages, `num_iterations` updates, metrics.
    fn step(
        &mut self,
        env: &dyn Environment,
        sampler: &mut PromptSampler,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<(StepMetrics, Vec<CompletionRecord>)> {
        let start = Instant::now();
        let step = self.state.step + 1;
        let prompts = env.prompts();

        let drawn = self.draw(step, env, sampler, progress)?;
        let (time_generation, time_reward) = (drawn.time_generation, drawn.time_reward);
        let counts = drawn.counts;
        let (mut rollouts, advantages) = self.rollouts(drawn.owners, drawn.generations, drawn.outcomes)?;

        let t_train = Instant::now();
        let update = self.update(step, &mut rollouts, prompts, progress)?;
        let time_train = t_train.elapsed().as_secs_f64();

        let lengths = self.completion_stats(&rollouts, prompts)?;
        self.state.step = step;
        self.state.num_tokens += lengths.tokens as u64;
        self.state.sampler = sampler.state();
        let n_prompts = prompts.len() as f64;
        let metrics = StepMetrics {
            step,
            epoch: (sampler.state().epoch as f64) + sampler.state().offset as f64 / n_prompts,
            reward: advantages.reward_mean(),
            reward_std: advantages.batch_std,
            frac_reward_zero_std: advantages.frac_zero_std(),
            format_error_rate: lengths.format_errors / lengths.count(),
            reward_failures: lengths.reward_failures as u64,
            completions_mean_length: lengths.length_sum / lengths.count(),
            completions_min_length: lengths.min_length,
            completions_max_length: lengths.max_length,
            completions_clipped_ratio: lengths.clipped / lengths.count(),
            completions_mean_terminated_length: if lengths.terminated > 0.0 {
                lengths.terminated_length_sum / lengths.terminated
            } else {
                0.0
            },
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
            sampling_extra_rounds: counts[0] as u64,
            sampling_groups_drawn: counts[1] as u64,
            sampling_groups_replaced: counts[2] as u64,
            num_tokens: self.state.num_tokens,
            step_time: start.elapsed().as_secs_f64(),
            time_generation,
            time_reward,
            time_train,
        };
        let records = self.sample_records(step, &rollouts, prompts);
        Ok((metrics, records))
    }

    /// Samples and scores this rank's groups; with dynamic sampling, further rounds of fresh
    /// prompts replace the groups whose rewards are all equal, until none is left on any rank
    /// or `max_sampling_rounds` is spent (every rank runs the same rounds, so the prompt
    /// sampler stays in step across ranks).
    fn draw(
        &mut self,
        step: u64,
        env: &dyn Environment,
        sampler: &mut PromptSampler,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<Drawn> {
        let g = self.config.group_size;
        let owners = self.local_requests(step, sampler, 0);
        let mut drawn = Drawn { counts: [0.0, (owners.len() / g) as f64, 0.0], ..Drawn::default() };
        let (generations, outcomes) = self.sample_and_score(step, env, &owners, &mut drawn, progress)?;
        (drawn.owners, drawn.generations, drawn.outcomes) = (owners, generations, outcomes);
        for round in 1..=self.config.max_sampling_rounds {
            let rewards = |o: &[RewardOutcome]| -> Vec<f64> { o.iter().map(advantage_reward).collect() };
            let all = rewards(&drawn.outcomes);
            let flat: Vec<usize> =
                (0..all.len() / g).filter(|&k| !has_signal(&all[k * g..(k + 1) * g])).collect();
            let mut total = [flat.len() as f64];
            self.comm.all_reduce_f64(&mut total)?;
            if total[0] == 0.0 {
                break;
            }
            drawn.counts[0] += 1.0;
            let fresh = self.local_requests(step, sampler, round);
            drawn.counts[1] += (fresh.len() / g) as f64;
            let (generations, outcomes) = self.sample_and_score(step, env, &fresh, &mut drawn, progress)?;
            let fresh_rewards = rewards(&outcomes);
            let mut slots = flat.into_iter();
            let (mut fresh, mut generations, mut outcomes) =
                (fresh.into_iter(), generations.into_iter(), outcomes.into_iter());
            for k in 0..fresh_rewards.len() / g {
                let (o, c, r) = (
                    next_group(&mut fresh, g),
                    next_group(&mut generations, g),
                    next_group(&mut outcomes, g),
                );
                if !has_signal(&fresh_rewards[k * g..(k + 1) * g]) {
                    continue;
                }
                let Some(slot) = slots.next() else { break };
                let range = slot * g..(slot + 1) * g;
                drawn.owners.splice(range.clone(), o);
                drawn.generations.splice(range.clone(), c);
                drawn.outcomes.splice(range, r);
                drawn.counts[2] += 1.0;
            }
        }
        self.comm.all_reduce_f64(&mut drawn.counts)?;
        // Every rank ran the same rounds: count them once.
        drawn.counts[0] /= self.comm.world_size() as f64;
        Ok(drawn)
    }

    /// Samples `owners` and scores the completions, adding the time spent to `drawn`.
    fn sample_and_score(
        &mut self,
        step: u64,
        env: &dyn Environment,
        owners: &[Owner],
        drawn: &mut Drawn,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<(Vec<Completion>, Vec<RewardOutcome>)> {
        progress(&TrainEvent::Phase { step, phase: Phase::Generating });
        let t = Instant::now();
        let generations = self.sample(step, env.prompts(), owners)?;
        drawn.time_generation += t.elapsed().as_secs_f64();
        progress(&TrainEvent::Phase { step, phase: Phase::Scoring });
        let t = Instant::now();
        let mut outcomes = score_rollouts(step, env, owners, &generations)?;
        if self.config.overlong_buffer > 0 {
            for (o, g) in outcomes.iter_mut().zip(&generations) {
                o.reward += self.config.overlong_penalty(g.token_ids.len());
            }
        }
        drawn.time_reward += t.elapsed().as_secs_f64();
        Ok((generations, outcomes))
    }

    /// This rank's share of the step's prompts, `group_size` samples each, in a fixed order.
    /// Round 0 is the step's batch; later rounds (dynamic sampling) draw fresh prompts, with
    /// seeds of their own.
    fn local_requests(&self, step: u64, sampler: &mut PromptSampler, round: u32) -> Vec<Owner> {
        let cfg = &self.config;
        let rank = self.comm.rank();
        let p_local = cfg.prompts_per_step / self.comm.world_size();
        let indices = sampler.next_batch(cfg.prompts_per_step);
        let local = &indices[rank * p_local..(rank + 1) * p_local];
        let mut owners = Vec::with_capacity(p_local * cfg.group_size);
        for (j, &prompt) in local.iter().enumerate() {
            let position = rank * p_local + j;
            for sample in 0..cfg.group_size {
                let seed = if round == 0 {
                    derive_seed(cfg.seed, &[step, position as u64, sample as u64])
                } else {
                    derive_seed(cfg.seed, &[step, position as u64, sample as u64, u64::from(round)])
                };
                owners.push(Owner { prompt, sample, seed });
            }
        }
        owners
    }

    /// Samples one completion per owner: the whole step in one call, at most
    /// `generation_batch_size` sequences decoding at once (continuous batching; a prompt's
    /// group shares its prefill).
    fn sample(&mut self, step: u64, prompts: &[PreparedPrompt], owners: &[Owner]) -> Result<Vec<Completion>> {
        let cfg = &self.config;
        let requests: Vec<GenerationRequest> = owners
            .iter()
            .map(|o| GenerationRequest {
                prompt_ids: prompts[o.prompt].tokens.clone(),
                params: SamplingParams {
                    max_new_tokens: cfg.max_new_tokens,
                    temperature: cfg.temperature,
                    top_p: cfg.top_p,
                    top_k: cfg.top_k,
                    seed: Some(o.seed),
                    ..SamplingParams::default()
                },
            })
            .collect();
        let generations = self.policy.generate(&requests, cfg.generation_batch_size)?;
        if generations.len() != requests.len() {
            return Err(Error::Policy {
                step,
                during: "sampling",
                message: format!("{} completions for {} requests", generations.len(), requests.len()),
            });
        }
        Ok(generations)
    }

    /// Group advantages over the global batch (rewards gathered from every rank), and the
    /// rollouts that carry them.
    fn rollouts(
        &mut self,
        owners: Vec<Owner>,
        generations: Vec<Completion>,
        outcomes: Vec<RewardOutcome>,
    ) -> Result<(Vec<Rollout>, Advantages)> {
        let cfg = &self.config;
        let n_local = owners.len();
        let offset = self.comm.rank() * n_local;
        let mut all_rewards = vec![0.0; cfg.prompts_per_step * cfg.group_size];
        for (i, o) in outcomes.iter().enumerate() {
            all_rewards[offset + i] = advantage_reward(o);
        }
        self.comm.all_reduce_f64(&mut all_rewards)?;
        let advantages = compute_advantages(&all_rewards, cfg.group_size, cfg.scale_rewards)?;
        let rollouts = generations
            .into_iter()
            .zip(outcomes)
            .zip(owners)
            .enumerate()
            .map(|(i, ((generation, o), owner))| Rollout {
                prompt: owner.prompt,
                sample: owner.sample,
                generation,
                reward: all_rewards[offset + i],
                format_error: o.format_error,
                failed: o.failure.is_some(),
                reason: o.reason,
                advantage: advantages.values[offset + i],
            })
            .collect();
        Ok((rollouts, advantages))
    }

    /// Length, format and failure statistics of the step's completions over every rank.
    fn completion_stats(&self, rollouts: &[Rollout], prompts: &[PreparedPrompt]) -> Result<CompletionStats> {
        let mut stats = CompletionStats::default();
        for r in rollouts {
            let len = r.generation.token_ids.len() as f64;
            stats.length_sum += len;
            stats.completions += 1.0;
            stats.tokens += len + prompts[r.prompt].tokens.len() as f64;
            if r.generation.finish_reason == FinishReason::Length {
                stats.clipped += 1.0;
            } else {
                stats.terminated += 1.0;
                stats.terminated_length_sum += len;
            }
            stats.format_errors += f64::from(u8::from(r.format_error));
            stats.reward_failures += f64::from(u8::from(r.failed));
        }
        let mut sums = stats.sums();
        self.comm.all_reduce_f64(&mut sums)?;
        stats = CompletionStats::from_sums(sums);
        let local_min =
            rollouts.iter().map(|r| r.generation.token_ids.len() as f64).fold(f64::INFINITY, f64::min);
        let local_max = rollouts.iter().map(|r| r.generation.token_ids.len() as f64).fold(0.0, f64::max);
        let (rank, world) = (self.comm.rank(), self.comm.world_size());
        // Extremes over ranks: each rank fills its own slots of a zeroed vector, summed.
        let mut per_rank = vec![0.0; 2 * world];
        per_rank[2 * rank] = -local_min;
        per_rank[2 * rank + 1] = local_max;
        if world > 1 {
            self.comm.all_reduce_f64(&mut per_rank)?;
        }
        stats.min_length = -per_rank.iter().step_by(2).copied().fold(f64::NEG_INFINITY, f64::max);
        stats.max_length = per_rank.iter().skip(1).step_by(2).copied().fold(0.0, f64::max);
        Ok(stats)
    }

    fn sample_records(
        &self,
        step: u64,
        rollouts: &[Rollout],
        prompts: &[PreparedPrompt],
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
                    length: r.generation.token_ids.len(),
                    finish_reason: finish_label(&r.generation).to_owned(),
                    reason: r.reason.clone(),
                }
            })
            .collect()
    }
}

/// What the update phase of a step reports.
#[derive(Default)]
struct UpdateReport {
    loss: f64,
    grad_norm: f64,
    learning_rate: f64,
    entropy: f64,
    stats: LossStats,
    updates: u64,
    skipped: Option<String>,
}

/// Per micro-batch inputs that do not change across the iterations of a step.
struct Micro {
    /// Rollout indices.
    rows: Vec<usize>,
    mask: Tensor,
    advantages: Tensor,
    old: Option<Tensor>,
    reference: Option<Tensor>,
    width: usize,
}

/// The `(prompt, completion)` token sequences of some rollouts.
fn sequences<'a>(
    rows: &[usize],
    rollouts: &'a [Rollout],
    prompts: &'a [PreparedPrompt],
) -> Vec<(&'a [u32], &'a [u32])> {
    rows.iter()
        .map(|&i| {
            (prompts[rollouts[i].prompt].tokens.as_slice(), rollouts[i].generation.token_ids.as_slice())
        })
        .collect()
}

impl<P: Policy> Trainer<P> {
    /// The update phase: micro-batches, `num_iterations` optimizer updates over them (each a
    /// gradient accumulation, an all-reduce, clipping and a step), and the step's loss report.
    fn update(
        &mut self,
        step: u64,
        rollouts: &mut [Rollout],
        prompts: &[PreparedPrompt],
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<UpdateReport> {
        let rollouts: &[Rollout] = rollouts;
        let batches = self.micro_batches(rollouts, prompts);
        let norm = self.normalisation(rollouts, &batches)?;
        if self.config.num_iterations > 1 || self.reference.is_some() {
            progress(&TrainEvent::Phase { step, phase: Phase::LogProbs });
        }
        let micros = batches
            .into_iter()
            .map(|rows| self.prepare_micro(step, rows, rollouts, prompts))
            .collect::<Result<Vec<_>>>()?;

        progress(&TrainEvent::Phase { step, phase: Phase::Training });
        let iterations = self.config.num_iterations;
        let mut report = UpdateReport::default();
        let mut entropy_sum = 0.0;
        let mut done = 0;
        for _ in 0..iterations {
            let (grads, loss_sum) =
                self.accumulate(step, &micros, rollouts, prompts, &norm, |out, entropy| {
                    report.stats.add(&out.stats);
                    entropy_sum += entropy;
                    done += 1;
                    progress(&TrainEvent::MicroBatch {
                        step,
                        index: done - 1,
                        total: micros.len() * iterations,
                    });
                })?;
            if !self.apply_update(step, grads, loss_sum, &mut report, progress)? {
                break;
            }
        }
        if report.skipped.is_none() {
            self.state.consecutive_nonfinite = 0;
        }
        self.finish_report(report, entropy_sum)
    }

    /// Micro-batches of similar total length (less padding), in a deterministic order.
    fn micro_batches(&self, rollouts: &[Rollout], prompts: &[PreparedPrompt]) -> Vec<Vec<usize>> {
        let cfg = &self.config;
        let mut order: Vec<usize> = (0..rollouts.len()).collect();
        order.sort_by_key(|&i| {
            let len = prompts[rollouts[i].prompt].tokens.len() + rollouts[i].generation.token_ids.len();
            (std::cmp::Reverse(len), i)
        });
        // Without a KL term, a completion whose advantage is 0 (e.g. every completion of a group
        // that all failed the format) has exactly zero gradient and zero loss: skip its forward
        // and backward passes. The normalisation counts still include it, so the update is the
        // same as computing it. (`bnpo` is defined per micro-batch, so it keeps them.)
        if cfg.beta == 0.0 && cfg.loss_type != LossType::Bnpo {
            order.retain(|&i| rollouts[i].advantage != 0.0);
        }
        order.chunks(cfg.micro_batch_size).map(<[usize]>::to_vec).collect()
    }

    /// Whether a rollout's tokens count in the loss (truncated completions may be masked out).
    fn included(&self, r: &Rollout) -> bool {
        !(self.config.mask_truncated_completions && r.generation.finish_reason == FinishReason::Length)
    }

    /// The loss normalisation counts over every rank.
    fn normalisation(&self, rollouts: &[Rollout], batches: &[Vec<usize>]) -> Result<BatchNorm> {
        let local_tokens: usize =
            rollouts.iter().filter(|r| self.included(r)).map(|r| r.generation.token_ids.len()).sum();
        let mut counts = [rollouts.len() as f64, local_tokens as f64, batches.len() as f64];
        self.comm.all_reduce_f64(&mut counts)?;
        Ok(BatchNorm {
            sequences: counts[0] as usize,
            tokens: counts[1] as usize,
            micro_batches: counts[2] as usize,
            max_completion_len: self.config.max_new_tokens,
        })
    }

    /// The mask and advantages of a micro-batch, with its sampling-time ("old") log-probs when
    /// several iterations reuse the batch and the reference log-probs when `beta > 0`.
    fn prepare_micro(
        &self,
        step: u64,
        rows: Vec<usize>,
        rollouts: &[Rollout],
        prompts: &[PreparedPrompt],
    ) -> Result<Micro> {
        let device = self.policy.device();
        let temperature = self.config.temperature;
        let width = rows.iter().map(|&i| rollouts[i].generation.token_ids.len()).max().unwrap_or(0);
        let mut mask = vec![0f32; rows.len() * width];
        for (row, &i) in rows.iter().enumerate() {
            if self.included(&rollouts[i]) {
                mask[row * width..row * width + rollouts[i].generation.token_ids.len()].fill(1.0);
            }
        }
        let mask = Tensor::from_vec(mask, (rows.len(), width), device)?;
        let adv: Vec<f32> = rows.iter().map(|&i| rollouts[i].advantage as f32).collect();
        let advantages = Tensor::from_vec(adv, rows.len(), device)?;
        let seqs = sequences(&rows, rollouts, prompts);
        let old = if self.config.num_iterations > 1 && width > 0 {
            let out = self.policy.logprobs(&seqs, temperature)?;
            check_scores(&out, step, seqs.len(), width)?;
            Some(out.logprobs)
        } else {
            None
        };
        let reference = match (&self.reference, width > 0) {
            (Some(r), true) => {
                let out = r.logprobs(&seqs, temperature)?;
                check_scores(&out, step, seqs.len(), width)?;
                Some(out.logprobs)
            }
            _ => None,
        };
        Ok(Micro { rows, mask, advantages, old, reference, width })
    }

    /// Forward and backward passes over every micro-batch: the accumulated gradients and the
    /// sum of the micro-batch losses. `on_micro` sees each micro-batch's loss and entropy sum.
    fn accumulate(
        &self,
        step: u64,
        micros: &[Micro],
        rollouts: &[Rollout],
        prompts: &[PreparedPrompt],
        norm: &BatchNorm,
        mut on_micro: impl FnMut(&PolicyLoss, f64),
    ) -> Result<(Gradients, f64)> {
        let objective = self.config.objective();
        let mut grads = Gradients::new();
        let mut loss_sum = 0.0;
        for micro in micros {
            if micro.width == 0 {
                continue;
            }
            let seqs = sequences(&micro.rows, rollouts, prompts);
            let pass = self.policy.train_forward(&seqs, self.config.temperature)?;
            check_scores(pass.scores(), step, seqs.len(), micro.width)?;
            let out = policy_loss(
                &LossInputs {
                    logp: &pass.scores().logprobs,
                    old_logp: micro.old.as_ref(),
                    ref_logp: micro.reference.as_ref(),
                    advantages: &micro.advantages,
                    mask: &micro.mask,
                },
                &objective,
                norm,
            )?;
            let loss_value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            loss_sum += loss_value;
            let entropy = (pass.scores().entropies.detach().to_dtype(DType::F32)?
                * micro.mask.to_dtype(DType::F32)?)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
            if loss_value.is_finite() {
                pass.backward(&out.loss, &mut grads)?;
            }
            on_micro(&out, entropy);
        }
        Ok((grads, loss_sum))
    }

    /// Sums the gradients and the loss over ranks, then clips and applies one optimizer update.
    /// Returns false when the update was skipped for a non-finite loss or gradient norm (the
    /// weights are left alone; too many skips in a row stop the run).
    fn apply_update(
        &mut self,
        step: u64,
        accumulated: Gradients,
        loss_sum: f64,
        report: &mut UpdateReport,
        progress: &mut dyn FnMut(&TrainEvent<'_>),
    ) -> Result<bool> {
        let cfg = &self.config;
        let mut grads = self.all_reduce_gradients(&accumulated)?;
        let mut loss_arr = [loss_sum];
        self.comm.all_reduce_f64(&mut loss_arr)?;
        let loss = loss_arr[0];
        let norm_value = grads.global_norm()?;
        let iterations = cfg.num_iterations as f64;
        report.loss += loss / iterations;
        report.grad_norm += norm_value / iterations;
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
                return Err(Error::NonFinite { step, what, consecutive: self.state.consecutive_nonfinite });
            }
            report.skipped = Some(reason);
            return Ok(false);
        }
        if cfg.max_grad_norm > 0.0 {
            grads.clip_global_norm(cfg.max_grad_norm)?;
        }
        let schedule = LrSchedule {
            kind: cfg.lr_scheduler,
            warmup_steps: cfg.warmup_steps,
            total_steps: cfg.total_updates(),
            min_lr_ratio: 0.0,
        };
        let lr = schedule.lr(cfg.learning_rate, self.state.updates);
        self.optimizer.step(&grads, lr)?;
        self.state.updates += 1;
        report.updates += 1;
        report.learning_rate = lr;
        Ok(true)
    }

    /// Sums the loss statistics and the entropy over ranks.
    fn finish_report(&self, mut report: UpdateReport, entropy_sum: f64) -> Result<UpdateReport> {
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

impl<P: Policy> Trainer<P> {
    /// The gradients summed over ranks, one for every parameter in [`Policy::parameters`] order
    /// (zeros for a parameter no micro-batch reached), so every rank reduces the same tensors in
    /// the same order.
    fn all_reduce_gradients(&self, acc: &Gradients) -> Result<Gradients> {
        let mut out = Gradients::new();
        for p in &self.params {
            let g = match acc.get(p) {
                Some(g) => g.contiguous()?,
                None => p.as_tensor().zeros_like()?,
            };
            self.comm.all_reduce_sum(&g)?;
            out.set(p, g)?;
        }
        Ok(out)
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

fn check_scores(out: &TokenScores, step: u64, rows: usize, width: usize) -> Result<()> {
    let expected = [rows, width];
    if out.logprobs.dims() != expected || out.entropies.dims() != expected {
        return Err(Error::Policy {
            step,
            during: "computing log-probs",
            message: format!(
                "expected {expected:?}, got logp {:?} and entropy {:?}",
                out.logprobs.dims(),
                out.entropies.dims()
            ),
        });
    }
    Ok(())
}
