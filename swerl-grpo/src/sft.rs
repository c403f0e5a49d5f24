//! Supervised fine-tuning on RL instances: the paper's baseline (Llama3-SWE-SFT), and the way a
//! small model learns the answer format before GRPO can reward it.
//!
//! Each example is the paper's prompt (through the model's chat template, within a token
//! budget) followed by the oracle answer of [`swerl_reward::oracle_answer`]: a short `<think>`
//! and a `<solution>` of minimal, unique SEARCH/REPLACE edits that rebuild the oracle files
//! exactly. Every target is checked when the data is built: the answer, tokenised and decoded
//! back, must score reward 1.0; an instance whose answer does not is reported and skipped.
//!
//! The loss is the mean negative log-likelihood of the answer tokens of an optimizer step (the
//! prompt is context only), whatever the micro-batching: each step's examples are sorted by
//! length and cut into micro-batches of at most `micro_batch_tokens` padded tokens
//! (length-grouped, so little padding is computed), and the gradients accumulate. Checkpoints
//! are `DIR/checkpoint-<step>/` in the layout of transformers' Trainer (a Hugging Face model
//! with `optimizer.safetensors`, `trainer_state.json` and `sft_config.toml` beside it), the end
//! model `DIR/final/`; both load wherever a model is taken. A resumed run continues exactly
//! where the checkpoint stopped (weights, moments, data position, schedule).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use swerl_model::{Gradients, LrSchedule, ScheduleKind};
use swerl_reward::{Scorer, oracle_answer};

use crate::checkpoint::{self, OPTIMIZER_FILE, TrainerState, checkpoint_dir, latest_checkpoint};
use crate::env::{Environment, SweRlEnvironment};
use crate::error::{Error, Result};
pub use crate::evaluate::HeldOut;
use crate::evaluate::{EvalReport, evaluate};
use crate::metrics::{
    EVAL_ANSWERS_FILE, EVAL_FILE, EvalMetrics, JsonlWriter, METRICS_FILE, empty_log, log_answers,
    log_scalars, truncate_log_after,
};
use crate::policy::{Optimizer, Policy};
use crate::sampler::PromptSampler;
use crate::tensorboard::EventWriter;
use crate::trainer::RUN_CONFIG_FILE;

/// The configuration file inside an SFT checkpoint.
pub const SFT_CONFIG_FILE: &str = "sft_config.toml";
/// The directory of the end model.
pub const FINAL_DIR: &str = "final";

/// An SFT run's settings. `Default` gives the documented defaults (TRL's `SFTConfig` where it
/// has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Passes over the data. Default 3.
    pub epochs: f64,
    /// Optimizer steps of the run; 0: `ceil(epochs * examples / batch_size)`. Default 0.
    pub max_steps: u64,
    /// Examples per optimizer step. Default 8.
    pub batch_size: usize,
    /// Padded tokens (rows x longest row) per forward pass at most; a longer example runs
    /// alone. Default 4096.
    pub micro_batch_tokens: usize,
    /// Prompt budget in tokens (see `prompt_overflow`). Default 1536.
    pub max_prompt_tokens: usize,
    /// What to do with a prompt over the budget (`truncate` drops unchanged context files,
    /// `skip` drops the instance). Default `truncate`.
    pub prompt_overflow: crate::PromptOverflow,
    /// Examples whose answer is longer are skipped (reported). Default 1024.
    pub max_answer_tokens: usize,
    /// Peak learning rate. Default 2e-5.
    pub learning_rate: f64,
    /// AdamW weight decay. Default 0.
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub adam_beta1: f64,
    /// AdamW beta2. Default 0.999.
    pub adam_beta2: f64,
    /// AdamW epsilon. Default 1e-8.
    pub adam_epsilon: f64,
    /// Global gradient-norm clip (0: none). Default 1.
    pub max_grad_norm: f64,
    /// Learning-rate decay after warm-up. Default `linear` (transformers' default).
    pub lr_scheduler: ScheduleKind,
    /// Warm-up steps. Default 0.
    pub warmup_steps: u64,
    /// Seed of the data order. Default 42.
    pub seed: u64,
    /// Shuffle the examples each epoch. Default true.
    pub shuffle: bool,
    /// Checkpoint every this many steps (0: only at the end). Default 50.
    pub save_steps: u64,
    /// Keep only this many newest checkpoints (0: all). Default 0.
    pub save_total_limit: usize,
    /// Run the held-out check every this many steps, and before the first and after the last
    /// (0: never; needs held-out data). Default 0.
    pub eval_steps: u64,
    /// Stop after this many consecutive non-finite steps. Default 3.
    pub max_nonfinite_steps: u32,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            epochs: 3.0,
            max_steps: 0,
            batch_size: 8,
            micro_batch_tokens: 4096,
            max_prompt_tokens: 1536,
            prompt_overflow: crate::PromptOverflow::Truncate,
            max_answer_tokens: 1024,
            learning_rate: 2e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            lr_scheduler: ScheduleKind::Linear,
            warmup_steps: 0,
            seed: 42,
            shuffle: true,
            save_steps: 50,
            save_total_limit: 0,
            eval_steps: 0,
            max_nonfinite_steps: 3,
        }
    }
}

impl SftConfig {
    /// Reads a TOML file; absent keys take their defaults, unknown keys are an error.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs_err::read_to_string(path)?;
        toml::from_str(&text).map_err(|source| Error::ConfigParse { path: path.to_owned(), source })
    }

    /// Renders the configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("SftConfig always serialises to TOML")
    }

    /// Steps of a run over `examples` examples.
    pub fn total_steps(&self, examples: usize) -> u64 {
        if self.max_steps > 0 {
            return self.max_steps;
        }
        ((self.epochs * examples as f64) / self.batch_size as f64).ceil().max(1.0) as u64
    }

    /// The AdamW settings of the run.
    pub fn adamw(&self) -> swerl_model::AdamWConfig {
        swerl_model::AdamWConfig {
            lr: self.learning_rate,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
            decay_norms_and_biases: false,
        }
    }

    /// Checks every range.
    pub fn validate(&self) -> Result<()> {
        if !(self.epochs.is_finite() && self.epochs > 0.0) {
            return Err(Error::config("epochs", "must be finite and > 0"));
        }
        for (key, value) in [
            ("batch_size", self.batch_size),
            ("micro_batch_tokens", self.micro_batch_tokens),
            ("max_prompt_tokens", self.max_prompt_tokens),
            ("max_answer_tokens", self.max_answer_tokens),
        ] {
            if value == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        crate::config::validate_optimizer(&self.adamw())?;
        crate::config::validate_update(self.max_grad_norm, self.max_nonfinite_steps)?;
        Ok(())
    }
}

/// Turns an answer into the tokens a model is trained to produce, and back.
pub trait AnswerEncoder {
    /// The answer's tokens followed by the end-of-turn token the model stops on.
    fn encode_answer(&self, text: &str) -> Result<Vec<u32>>;
    /// The text a model producing `tokens` would be scored on (special tokens skipped).
    fn decode_answer(&self, tokens: &[u32]) -> Result<String>;
}

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    /// The instance id.
    pub id: String,
    /// Prompt tokens (chat template applied, generation prompt included).
    pub prompt: Vec<u32>,
    /// Target tokens (the oracle answer, end-of-turn token included).
    pub answer: Vec<u32>,
}

/// What building the examples kept and dropped, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SftDataReport {
    /// Examples built.
    pub kept: usize,
    /// Instances without an oracle answer (no change, unwritable edit), with the reason.
    pub no_answer: Vec<(String, String)>,
    /// Instances whose answer was longer than `max_answer_tokens`.
    pub too_long: Vec<String>,
    /// Instances whose tokenised answer did not score 1.0 (should not happen; reported).
    pub not_exact: Vec<(String, f64)>,
    /// Answer tokens in total.
    pub answer_tokens: usize,
    /// Prompt tokens in total.
    pub prompt_tokens: usize,
}

/// Builds the examples of `env`'s instances (prompts already fitted to the budget), checking
/// that each answer, as the model would produce it, scores reward 1.0.
pub fn build_examples(
    env: &SweRlEnvironment,
    encoder: &dyn AnswerEncoder,
    max_answer_tokens: usize,
) -> Result<(Vec<SftExample>, SftDataReport)> {
    let mut report = SftDataReport::default();
    let mut examples = Vec::new();
    for (inst, prompt) in env.instances().iter().zip(env.prompts()) {
        let answer = match oracle_answer(inst) {
            Ok(a) => a,
            Err(e) => {
                report.no_answer.push((inst.instance_id.clone(), e.to_string()));
                continue;
            }
        };
        let tokens = encoder.encode_answer(&answer)?;
        if tokens.len() > max_answer_tokens {
            report.too_long.push(inst.instance_id.clone());
            continue;
        }
        let decoded = encoder.decode_answer(&tokens)?;
        let reward = Scorer::new(&inst.code_context, &inst.oracle_new_content).reward(&decoded);
        if reward != 1.0 {
            tracing::warn!(instance = %inst.instance_id, reward, "oracle answer does not score 1.0: skipped");
            report.not_exact.push((inst.instance_id.clone(), reward));
            continue;
        }
        report.answer_tokens += tokens.len();
        report.prompt_tokens += prompt.tokens.len();
        examples.push(SftExample {
            id: inst.instance_id.clone(),
            prompt: prompt.tokens.clone(),
            answer: tokens,
        });
    }
    report.kept = examples.len();
    Ok((examples, report))
}

/// One line of an SFT run's `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SftMetrics {
    /// 1-based step.
    pub step: u64,
    /// Epoch (fractional).
    pub epoch: f64,
    /// Mean negative log-likelihood of the step's answer tokens.
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub loss: f64,
    /// Fraction of answer tokens that are the model's most likely next token.
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub mean_token_accuracy: f64,
    /// Global gradient norm before clipping.
    #[serde(deserialize_with = "crate::metrics::null_as_nan")]
    pub grad_norm: f64,
    /// Learning rate of the update.
    pub learning_rate: f64,
    /// Answer tokens of the step (what the loss averages over).
    pub answer_tokens: u64,
    /// Prompt + answer tokens since the start of the run.
    pub num_tokens: u64,
    /// Prompt + answer tokens per second of the step.
    pub tokens_per_second: f64,
    /// Forward passes of the step.
    pub micro_batches: u64,
    /// Wall-clock seconds of the step.
    pub step_time: f64,
    /// Why the update was skipped, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Progress reports of [`SftTrainer::train`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SftEvent<'a> {
    /// Training starts (or resumes) at `start_step` of `total_steps`.
    Started {
        /// Steps already done.
        start_step: u64,
        /// Steps of the run.
        total_steps: u64,
        /// Examples.
        examples: usize,
    },
    /// A step finished.
    Step(&'a SftMetrics),
    /// A held-out check finished.
    Eval {
        /// The step it ran after (0: before training).
        step: u64,
        /// Its report.
        report: &'a EvalReport,
    },
    /// A checkpoint (or the final model) was written.
    Saved {
        /// The step.
        step: u64,
        /// The directory.
        path: &'a Path,
    },
}

/// The SFT trainer.
pub struct SftTrainer<P: Policy> {
    config: SftConfig,
    policy: P,
    optimizer: Box<dyn Optimizer>,
    out_dir: PathBuf,
    state: TrainerState,
    params: Vec<Var>,
    resumed: bool,
}

impl<P: Policy> std::fmt::Debug for SftTrainer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftTrainer").field("out_dir", &self.out_dir).field("state", &self.state).finish()
    }
}

impl<P: Policy> SftTrainer<P> {
    /// A trainer writing to `out_dir` (created).
    pub fn new(
        config: SftConfig,
        policy: P,
        optimizer: Box<dyn Optimizer>,
        out_dir: impl AsRef<Path>,
    ) -> Result<Self> {
        config.validate()?;
        let out_dir = out_dir.as_ref().to_owned();
        fs_err::create_dir_all(&out_dir)?;
        let params = policy.parameters();
        let state = TrainerState::new(config.seed);
        Ok(Self { config, policy, optimizer, out_dir, state, params, resumed: false })
    }

    /// The model being trained.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The run's progress.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// Loads the newest checkpoint (weights, optimizer, data position) and cuts the logs back to
    /// it; `None` when there is none and the directory holds nothing but this run's own logs
    /// (same settings: they are emptied and the run restarts). Logs of another run, without a
    /// checkpoint, make it fail and are left alone.
    pub fn resume(&mut self) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(&self.out_dir)? else {
            let own = fs_err::read_to_string(self.out_dir.join(RUN_CONFIG_FILE))
                .ok()
                .and_then(|t| toml::from_str::<SftConfig>(&t).ok())
                .is_some_and(|saved| same_run(&saved, &self.config));
            if own {
                for log in [METRICS_FILE, EVAL_FILE, EVAL_ANSWERS_FILE] {
                    empty_log(&self.out_dir.join(log))?;
                }
            } else {
                self.check_fresh_out_dir()?;
            }
            return Ok(None);
        };
        let state = checkpoint::read_state(&dir)?;
        self.policy.load_weights(&dir)?;
        self.optimizer.load(&dir.join(OPTIMIZER_FILE))?;
        for log in [METRICS_FILE, EVAL_FILE, EVAL_ANSWERS_FILE] {
            truncate_log_after(self.out_dir.join(log), state.step)?;
        }
        self.state = state;
        self.resumed = true;
        Ok(Some(step))
    }

    fn check_fresh_out_dir(&self) -> Result<()> {
        checkpoint::refuse_busy_out_dir(&self.out_dir, &[METRICS_FILE, EVAL_FILE])
    }

    /// Writes `checkpoint-<step>/` (through a `.tmp` directory renamed when complete).
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let dir = checkpoint_dir(&self.out_dir, self.state.step);
        let tmp = self.out_dir.join(format!("checkpoint-{}.tmp", self.state.step));
        checkpoint::check_finite(&self.params, &dir)?;
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        fs_err::create_dir_all(&tmp)?;
        self.policy.save(&tmp)?;
        self.optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
        fs_err::write(tmp.join(SFT_CONFIG_FILE), self.config.to_toml())?;
        checkpoint::write_state(&tmp, &self.state)?;
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::rename(&tmp, &dir)?;
        checkpoint::prune(&self.out_dir, self.config.save_total_limit)?;
        Ok(dir)
    }

    /// Writes the model alone to `DIR/final/` (atomically).
    pub fn save_final(&self) -> Result<PathBuf> {
        let dir = self.out_dir.join(FINAL_DIR);
        let tmp = self.out_dir.join(format!("{FINAL_DIR}.tmp"));
        checkpoint::check_finite(&self.params, &dir)?;
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        self.policy.save(&tmp)?;
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::rename(&tmp, &dir)?;
        Ok(dir)
    }

    /// Runs the remaining steps over `examples`, checking `held_out` every `eval_steps`.
    pub fn train(
        &mut self,
        examples: &[SftExample],
        mut held_out: Option<HeldOut<'_>>,
        progress: &mut dyn FnMut(&SftEvent<'_>),
    ) -> Result<Vec<SftMetrics>> {
        let n = examples.len();
        if n == 0 {
            return Err(Error::config("data", "no training example"));
        }
        if let Some(h) = &held_out {
            h.config.validate()?;
        }
        let total = self.config.total_steps(n);
        let mut sampler = checkpoint::sampler_for(
            &self.state,
            &self.out_dir,
            (n, self.config.seed, self.config.shuffle),
            self.resumed,
            "examples",
        )?;
        if !self.resumed && self.state.step == 0 {
            self.check_fresh_out_dir()?;
            checkpoint::write_run_config(&self.out_dir, &self.config.to_toml())?;
        }
        self.state.num_prompts = n;
        progress(&SftEvent::Started { start_step: self.state.step, total_steps: total, examples: n });
        let mut metrics_log = JsonlWriter::append(self.out_dir.join(METRICS_FILE))?;
        let mut eval_log = JsonlWriter::append(self.out_dir.join(EVAL_FILE))?;
        // A (re)start: TensorBoard drops whatever earlier files logged from the next step on.
        let mut tb = EventWriter::create(&self.out_dir)?;
        tb.session_start(self.state.step as i64 + 1)?;
        let every = self.config.eval_steps;
        if self.state.step == 0 && every > 0 {
            self.held_out_check(held_out.as_mut(), &mut eval_log, &mut tb, progress)?;
        }
        let mut out = Vec::new();
        while self.state.step < total {
            let metrics = self.step(examples, &mut sampler, total)?;
            metrics_log.write(&metrics)?;
            log_scalars(&mut tb, metrics.step, "train/", &metrics)?;
            progress(&SftEvent::Step(&metrics));
            out.push(metrics);
            let step = self.state.step;
            let last = step == total;
            if every > 0 && (last || step.is_multiple_of(every)) {
                self.held_out_check(held_out.as_mut(), &mut eval_log, &mut tb, progress)?;
            }
            if last || (self.config.save_steps > 0 && step.is_multiple_of(self.config.save_steps)) {
                let path = self.save_checkpoint()?;
                progress(&SftEvent::Saved { step, path: &path });
            }
        }
        let path = self.save_final()?;
        progress(&SftEvent::Saved { step: self.state.step, path: &path });
        Ok(out)
    }

    fn held_out_check(
        &mut self,
        held_out: Option<&mut HeldOut<'_>>,
        log: &mut JsonlWriter,
        tb: &mut EventWriter,
        progress: &mut dyn FnMut(&SftEvent<'_>),
    ) -> Result<()> {
        let Some(h) = held_out else { return Ok(()) };
        let report = evaluate(&mut self.policy, h.env, &h.config)?;
        let line = EvalMetrics::new(self.state.step, &report);
        log_answers(&self.out_dir, self.state.step, &report)?;
        log.write(&line)?;
        log_scalars(tb, self.state.step, "", &line)?;
        progress(&SftEvent::Eval { step: self.state.step, report: &report });
        Ok(())
    }

    /// Micro-batches of one step: rows sorted longest first, cut at `micro_batch_tokens`
    /// padded tokens.
    fn micro_batches(&self, examples: &[SftExample], rows: &[usize]) -> Vec<Vec<usize>> {
        let len = |i: usize| examples[i].prompt.len() + examples[i].answer.len();
        let mut order = rows.to_vec();
        order.sort_by_key(|&i| (std::cmp::Reverse(len(i)), i));
        let mut out: Vec<Vec<usize>> = Vec::new();
        for i in order {
            match out.last_mut() {
                // Sorted longest first: the batch's first row is its widest.
                Some(b) if (b.len() + 1) * len(b[0]) <= self.config.micro_batch_tokens => b.push(i),
                _ => out.push(vec![i]),
            }
        }
        out
    }

    fn step(
        &mut self,
        examples: &[SftExample],
        sampler: &mut PromptSampler,
        total: u64,
    ) -> Result<SftMetrics> {
        let start = Instant::now();
        let step = self.state.step + 1;
        let rows = sampler.next_batch(self.config.batch_size);
        let answer_tokens: usize = rows.iter().map(|&i| examples[i].answer.len()).sum();
        let all_tokens: usize =
            rows.iter().map(|&i| examples[i].prompt.len() + examples[i].answer.len()).sum();
        let micros = self.micro_batches(examples, &rows);
        let device = self.policy.device().clone();
        let mut grads = Gradients::new();
        let (mut loss_sum, mut correct) = (0.0, 0.0);
        for micro in &micros {
            let seqs: Vec<(&[u32], &[u32])> = micro
                .iter()
                .map(|&i| (examples[i].prompt.as_slice(), examples[i].answer.as_slice()))
                .collect();
            let pass = self.policy.train_forward(&seqs, 1.0)?;
            let scores = pass.scores();
            let width = micro.iter().map(|&i| examples[i].answer.len()).max().unwrap_or(0);
            if scores.logprobs.dims() != [micro.len(), width] {
                return Err(Error::Policy {
                    step,
                    during: "the SFT forward pass",
                    message: format!("expected [{}, {width}], got {:?}", micro.len(), scores.logprobs.dims()),
                });
            }
            let mut mask = vec![0f32; micro.len() * width];
            for (r, &i) in micro.iter().enumerate() {
                mask[r * width..r * width + examples[i].answer.len()].fill(1.0);
            }
            let mask = Tensor::from_vec(mask, (micro.len(), width), &device)?;
            let logp = scores.logprobs.to_dtype(DType::F32)?;
            let loss = ((logp.broadcast_mul(&mask)?.sum_all()? * (-1.0 / answer_tokens as f64))?)
                .to_dtype(DType::F32)?;
            correct += count_top1(&scores.top1, &mask)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            loss_sum += value;
            if value.is_finite() {
                pass.backward(&loss, &mut grads)?;
            }
        }
        let grad_norm = grads.global_norm()?;
        let lr = LrSchedule {
            kind: self.config.lr_scheduler,
            warmup_steps: self.config.warmup_steps,
            total_steps: total,
            min_lr_ratio: 0.0,
        }
        .lr(self.config.learning_rate, self.state.updates);
        let mut skipped = None;
        if loss_sum.is_finite() && grad_norm.is_finite() {
            let mut grads = self.full_gradients(grads)?;
            if self.config.max_grad_norm > 0.0 {
                grads.clip_global_norm(self.config.max_grad_norm)?;
            }
            self.optimizer.step(&grads, lr)?;
            self.state.updates += 1;
            self.state.consecutive_nonfinite = 0;
        } else {
            self.state.consecutive_nonfinite += 1;
            let what = if loss_sum.is_finite() { "gradient norm" } else { "loss" };
            if self.state.consecutive_nonfinite >= self.config.max_nonfinite_steps {
                return Err(Error::NonFinite { step, what, consecutive: self.state.consecutive_nonfinite });
            }
            skipped = Some(format!("non-finite {what} at step {step}: update skipped, weights unchanged"));
        }
        self.state.step = step;
        self.state.num_tokens += all_tokens as u64;
        self.state.sampler = sampler.state();
        let time = start.elapsed().as_secs_f64();
        Ok(SftMetrics {
            step,
            epoch: sampler.state().epoch as f64 + sampler.state().offset as f64 / examples.len() as f64,
            loss: loss_sum,
            mean_token_accuracy: correct / answer_tokens.max(1) as f64,
            grad_norm,
            learning_rate: lr,
            answer_tokens: answer_tokens as u64,
            num_tokens: self.state.num_tokens,
            tokens_per_second: all_tokens as f64 / time.max(1e-9),
            micro_batches: micros.len() as u64,
            step_time: time,
            skipped,
        })
    }

    /// Every parameter's gradient (zeros for one no pass reached), as the optimizer expects.
    fn full_gradients(&self, acc: Gradients) -> Result<Gradients> {
        let mut out = Gradients::new();
        for p in &self.params {
            let g = match acc.get(p) {
                Some(g) => g.clone(),
                None => p.as_tensor().zeros_like()?,
            };
            out.set(p, g)?;
        }
        Ok(out)
    }
}

/// Answer tokens that were the model's most likely next token.
fn count_top1(top1: &Tensor, mask: &Tensor) -> Result<f64> {
    Ok(f64::from(top1.to_dtype(DType::F32)?.broadcast_mul(mask)?.sum_all()?.to_scalar::<f32>()?))
}

/// Whether two configurations describe the same run (the length may be extended).
fn same_run(a: &SftConfig, b: &SftConfig) -> bool {
    SftConfig { epochs: b.epochs, max_steps: b.max_steps, ..a.clone() } == *b
}
