//! A tiny trainable policy and a task with a known optimum, for tests that must run in seconds.
//!
//! The policy is a bigram language model: the next-token logits are a learned row of a
//! `V x V` table indexed by the previous token. The task: prompts are a single start token;
//! the reward of a completion is the fraction of its `max_new_tokens` slots holding the target
//! token (so the optimum, 1.0, is "always emit the target, never stop early"); a uniform policy
//! scores about `1 / V`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{D, DType, Device, Tensor, Var};
use swerl_grpo::{
    AutogradPass, Environment, Policy, PreparedPrompt, Result, RewardOutcome, TrainConfig, TrainPass, Trainer,
};
use swerl_model::{Completion, FinishReason, GenerationRequest, StopReason, TokenScores};

pub const VOCAB: usize = 8;
pub const EOS: u32 = 7;
pub const TARGET: u32 = 3;
pub const START: u32 = 0;

pub struct Bigram {
    pub table: Var,
    /// When set, log-probs come back as NaN (to test the non-finite guard).
    pub poison: AtomicBool,
}

impl Bigram {
    pub fn new() -> Self {
        // Uniform start: every next token equally likely.
        let table = Var::zeros((VOCAB, VOCAB), DType::F32, &Device::Cpu).unwrap();
        Self { table, poison: AtomicBool::new(false) }
    }

    pub fn weights(&self) -> Vec<f32> {
        self.table.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// A trainer over a fresh [`Bigram`] with `swerl-model`'s AdamW (no weight decay).
pub fn bigram_trainer(config: TrainConfig, dir: impl AsRef<Path>) -> Result<Trainer<Bigram>> {
    let policy = Bigram::new();
    let adamw = swerl_model::AdamWConfig { weight_decay: 0.0, ..Default::default() };
    let optimizer = swerl_model::AdamW::new(&[("table".to_owned(), policy.table.clone())], adamw)?;
    Trainer::new(config, policy, Box::new(optimizer), dir)
}

fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

impl Bigram {
    fn scores(&self, sequences: &[(&[u32], &[u32])], temperature: f64, grad: bool) -> Result<TokenScores> {
        let b = sequences.len();
        let t = sequences.iter().map(|s| s.1.len()).max().unwrap_or(0);
        let mut prev = vec![0u32; b * t];
        let mut next = vec![0u32; b * t];
        for (i, (prompt, completion)) in sequences.iter().enumerate() {
            let mut p = *prompt.last().unwrap_or(&START);
            for (j, &tok) in completion.iter().enumerate() {
                prev[i * t + j] = p;
                next[i * t + j] = tok;
                p = tok;
            }
        }
        let table = if grad { self.table.as_tensor().clone() } else { self.table.as_tensor().detach() };
        let prev = Tensor::from_vec(prev, b * t, &Device::Cpu)?;
        let next = Tensor::from_vec(next, (b * t, 1), &Device::Cpu)?;
        let logits = (table.index_select(&prev, 0)? / temperature)?;
        let logp_all = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let logp = logp_all.gather(&next, 1)?.reshape((b, t))?;
        let entropy = (logp_all.exp()? * &logp_all)?.sum(D::Minus1)?.neg()?.reshape((b, t))?;
        let logp = if self.poison.load(Ordering::SeqCst) { (logp * f64::NAN)? } else { logp };
        let mask = logp.ones_like()?;
        let best = logp_all.max_keepdim(D::Minus1)?.reshape((b, t))?.detach();
        let top1 = logp.detach().ge(&best)?.to_dtype(DType::F32)?;
        Ok(TokenScores { logprobs: logp, entropies: entropy, mask, top1 })
    }
}

impl Policy for Bigram {
    fn device(&self) -> &Device {
        self.table.device()
    }

    fn generate(&mut self, requests: &[GenerationRequest], _max_batch: usize) -> Result<Vec<Completion>> {
        let table = self.table.as_tensor().to_vec2::<f32>()?;
        Ok(requests
            .iter()
            .map(|r| {
                let params = &r.params;
                let mut rng = params.seed.expect("the trainer seeds every request");
                let mut prev = *r.prompt_ids.last().unwrap_or(&START) as usize;
                let mut tokens = Vec::new();
                let mut finish = FinishReason::Length;
                for _ in 0..params.max_new_tokens {
                    let logits: Vec<f64> =
                        table[prev].iter().map(|&l| l as f64 / params.temperature).collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    let mut u = splitmix(&mut rng) * total;
                    let mut next = VOCAB - 1;
                    for (i, w) in weights.iter().enumerate() {
                        if u < *w {
                            next = i;
                            break;
                        }
                        u -= w;
                    }
                    tokens.push(next as u32);
                    if next as u32 == EOS {
                        finish = FinishReason::Stop;
                        break;
                    }
                    prev = next;
                }
                let text = tokens.iter().map(|t| char::from(b'a' + *t as u8)).collect();
                let stop = (finish == FinishReason::Stop).then_some(StopReason::Token(EOS));
                Completion { token_ids: tokens, text, logprobs: Vec::new(), finish_reason: finish, stop }
            })
            .collect())
    }

    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64) -> Result<TokenScores> {
        let out = self.scores(sequences, temperature, false)?;
        Ok(TokenScores {
            logprobs: out.logprobs.detach(),
            entropies: out.entropies.detach(),
            mask: out.mask,
            top1: out.top1,
        })
    }

    fn train_forward<'a>(
        &'a self,
        sequences: &[(&[u32], &[u32])],
        temperature: f64,
    ) -> Result<Box<dyn TrainPass + 'a>> {
        Ok(Box::new(AutogradPass {
            scores: self.scores(sequences, temperature, true)?,
            params: vec![self.table.clone()],
        }))
    }

    fn parameters(&self) -> Vec<Var> {
        vec![self.table.clone()]
    }

    fn save(&self, dir: &Path) -> Result<()> {
        self.table.as_tensor().save_safetensors("table", dir.join("model.safetensors"))?;
        Ok(())
    }

    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)?;
        self.table.set(&map["table"])?;
        Ok(())
    }

    fn frozen_copy(&self) -> Result<Self> {
        Ok(Self { table: Var::from_tensor(&self.table.as_tensor().copy()?)?, poison: AtomicBool::new(false) })
    }
}

/// The task: `prompts` copies of the start token; reward = target count / max_new_tokens.
/// `sign = -1.0` negates the reward (which flips every advantage).
pub struct TargetTask {
    pub prompts: Vec<PreparedPrompt>,
    pub max_new_tokens: usize,
    pub sign: f64,
}

impl TargetTask {
    pub fn new(n: usize, max_new_tokens: usize, sign: f64) -> Self {
        let prompts = (0..n).map(|i| PreparedPrompt { id: format!("p{i}"), tokens: vec![START] }).collect();
        Self { prompts, max_new_tokens, sign }
    }

    pub fn true_reward(tokens: &[u32], max_new_tokens: usize) -> f64 {
        tokens.iter().filter(|&&t| t == TARGET).count() as f64 / max_new_tokens as f64
    }
}

impl Environment for TargetTask {
    fn prompts(&self) -> &[PreparedPrompt] {
        &self.prompts
    }

    fn score(&self, _prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome> {
        completions
            .iter()
            .map(|g| RewardOutcome::scored(self.sign * Self::true_reward(&g.token_ids, self.max_new_tokens)))
            .collect()
    }
}
