//! The rollout engine: continuous batching over a KV cache whose prompt part is shared (see
//! [`Engine`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use candle_core::{D, DType, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::attention::{self, AttnMask};
use crate::error::{Error, Result};
use crate::generate::{Completion, FinishReason, Slot, StopReason, finish, push_text};
use crate::layer::{Kernels, matmul_t, post_attention, pre_attention, rms_norm};
use crate::model::{LayerWeights, Llama, Track, view};
use crate::sampling::{SamplingParams, choose};
use crate::tokenizer::Tokenizer;

/// Settings of an [`Engine`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Most sequences decoding at once; further samples wait for a finished one.
    pub max_batch: usize,
    /// Most prompt tokens prefilled per step.
    pub prefill_chunk: usize,
    /// Prefill the prompt of a request once for all its samples (`false`: once per sample, as a
    /// batch of independent requests would; for comparisons).
    pub share_prefix: bool,
    /// Token ids that end every sample (the model's eos ids).
    pub eos_ids: Vec<u32>,
    /// The precision of the weights the engine samples with (a copy taken when it starts; the
    /// model's f32 master weights are untouched).
    pub weights: WeightDtype,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            prefill_chunk: 512,
            share_prefix: true,
            eos_ids: Vec::new(),
            weights: WeightDtype::Model,
        }
    }
}

/// Largest difference between a sampled token's log-prob with bf16 weights on the CPU and the
/// f32 model's, relative to the log-prob's size past 1 (tested on a tiny model). On CPUs with
/// AVX512-BF16 the decoding products round the activations to bf16 too, as llama.cpp does
/// (worst seen 0.052 on the tiny model; 0.025 when only the weights were rounded).
pub const BF16_LOGPROB_TOL: f32 = 0.1;

/// [`BF16_LOGPROB_TOL`] for f16 weights (3 more mantissa bits).
pub const F16_LOGPROB_TOL: f32 = 0.01;

/// The precision of an [`Engine`]'s copy of the weights.
///
/// On the CPU, activations, the KV cache and every sum stay f32 whatever the weights: bf16 or
/// f16 weights halve the bytes each decoding step reads (decoding is bound by memory), and a
/// dedicated kernel widens them in registers. The one exception: on CPUs with AVX512-BF16, the
/// products of up to 16 rows with bf16 weights (decoding steps) round their input activations
/// to bf16 and multiply with `vdpbf16ps`, summing in f32 (see [`BF16_LOGPROB_TOL`]). On a GPU
/// the whole forward pass runs in the weights' dtype, as candle's kernels do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// The model's compute dtype ([`Llama::compute_dtype`]).
    #[default]
    Model,
    /// f32 weights.
    F32,
    /// bfloat16 weights.
    Bf16,
    /// IEEE half-precision weights.
    F16,
}

impl WeightDtype {
    /// The candle dtype for a model computing in `compute`.
    pub fn resolve(self, compute: DType) -> DType {
        match self {
            WeightDtype::Model => compute,
            WeightDtype::F32 => DType::F32,
            WeightDtype::Bf16 => DType::BF16,
            WeightDtype::F16 => DType::F16,
        }
    }
}

impl std::str::FromStr for WeightDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "model" => Ok(WeightDtype::Model),
            "f32" => Ok(WeightDtype::F32),
            "bf16" => Ok(WeightDtype::Bf16),
            "f16" => Ok(WeightDtype::F16),
            other => Err(Error::arg("weights", format!("`{other}` is not model, f32, bf16 or f16"))),
        }
    }
}

/// One prompt and the samples to draw from it (they share the prompt's KV cache).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineRequest {
    /// The prompt's token ids (non-empty, shorter than the model's context).
    pub prompt_ids: Vec<u32>,
    /// One entry per completion to sample (at least one).
    pub samples: Vec<SamplingParams>,
}

impl EngineRequest {
    /// `n` samples of `prompt_ids` with the same parameters; with a seed `s`, sample `i` uses
    /// seed `s + i` (as `swerl generate -n`).
    pub fn repeated(prompt_ids: Vec<u32>, params: &SamplingParams, n: usize) -> Self {
        let samples = (0..n)
            .map(|i| SamplingParams { seed: params.seed.map(|s| s.wrapping_add(i as u64)), ..params.clone() })
            .collect();
        Self { prompt_ids, samples }
    }
}

/// Identifies a request submitted to an [`Engine`].
pub type RequestId = u64;

/// What one [`Engine::step`] produced.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A sample produced a token.
    Token {
        /// The request.
        request: RequestId,
        /// Index of the sample within the request.
        sample: usize,
        /// The token.
        token_id: u32,
        /// Its log-probability under the temperature-scaled distribution.
        logprob: f32,
        /// New text completed by this token (held back while it could begin a stop string;
        /// never past a stop string).
        text: String,
    },
    /// A sample ended; this is its last event.
    Finished {
        /// The request.
        request: RequestId,
        /// Index of the sample within the request.
        sample: usize,
        /// The whole completion.
        completion: Completion,
    },
}

/// Counters of an engine's work since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Prompt tokens run through the model (a shared prompt counts once).
    pub prefill_tokens: usize,
    /// Decoding steps (one token for every running sequence).
    pub decode_steps: usize,
    /// Tokens sampled.
    pub sampled_tokens: usize,
    /// Largest number of sequences decoded together.
    pub peak_batch: usize,
}

/// A prompt's prefilled keys and values, shared by its samples.
struct Prefix {
    /// Per layer, `(1, kv_heads, len, head_dim)`.
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    /// Logits `(vocab,)` after the last prompt token.
    logits: Vec<f32>,
}

/// A prompt being prefilled.
struct Prefill {
    request: RequestId,
    prompt: Vec<u32>,
    samples: Vec<(usize, SamplingParams)>,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    done: usize,
}

/// Prefilled samples waiting for room in the batch.
struct Ready {
    request: RequestId,
    prefix: Arc<Prefix>,
    samples: VecDeque<(usize, SamplingParams)>,
}

/// A running sample: one row of the batch.
struct Seq {
    request: RequestId,
    sample: usize,
    params: SamplingParams,
    prefix: Arc<Prefix>,
    slot: Slot,
    /// The last sampled token, whose keys and values are not yet cached.
    pending: u32,
    /// First suffix-cache column of this row.
    start: usize,
}

/// The running batch's own keys and values: per layer `(rows, kv_heads, capacity, head_dim)`;
/// columns `start..width` of a row are its tokens.
#[derive(Default)]
struct Suffix {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    width: usize,
}

/// Columns the suffix cache grows by.
const GROW: usize = 64;

/// The rollout engine: continuous batching over a KV cache whose prompt part is shared.
///
/// A request is one prompt with any number of samples (a GRPO group, or an OpenAI request with
/// `n > 1`). Its prompt is prefilled once, in chunks of at most
/// [`EngineConfig::prefill_chunk`] tokens per [`Engine::step`] so a long prompt never stalls the
/// sequences already decoding, into a *prefix* KV cache `(1, kv_heads, prompt, head_dim)` per
/// layer that all its samples read (nothing is copied). Each sample then owns only the keys and
/// values of its own tokens, a row of the running batch's *suffix* cache.
///
/// Attention of a decoding token is computed in two parts and merged with their
/// log-sum-exps (cascade attention): over its prompt's prefix, one product per prompt for all
/// of that prompt's running samples (the prefix is read once per step, not once per sample),
/// and over its own suffix, one batched product for the whole batch.
///
/// Every [`Engine::step`] prefills up to the token budget, admits prefilled samples while the
/// batch has room (sampling their first token from the prompt's last logits), decodes one token
/// for every running sequence and retires the finished ones, so a request submitted at any time
/// joins the batch at the next step (continuous batching).
///
/// Results do not depend on batching: each sample draws from its own seeded generator, and the
/// numbers it sees differ between batch compositions (or with sharing off) only by
/// floating-point rounding.
///
/// Drive it with [`Engine::add`] and [`Engine::step`] (from one thread; a server runs it on a
/// thread of its own and passes requests in).
pub struct Engine<'t> {
    model: Llama,
    tokenizer: Cow<'t, Tokenizer>,
    config: EngineConfig,
    /// dtype of activations and of the KV cache.
    act: DType,
    weights: Vec<LayerWeights>,
    norm: Tensor,
    head: Tensor,
    next_id: RequestId,
    prefilling: VecDeque<Prefill>,
    ready: VecDeque<Ready>,
    running: Vec<Seq>,
    suffix: Suffix,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("prefilling", &self.prefilling.len())
            .field("ready", &self.ready.len())
            .field("running", &self.running.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'t> Engine<'t> {
    /// An idle engine sampling from `model` (a cheap clone sharing its parameters; weights are
    /// read as they are now: build a new engine after an optimizer step).
    pub fn new(model: &Llama, tokenizer: &'t Tokenizer, config: EngineConfig) -> Result<Self> {
        Self::with_tokenizer(model, Cow::Borrowed(tokenizer), config)
    }

    /// [`Engine::new`] owning its tokenizer (an engine that lives on its own thread).
    pub fn new_owned(model: &Llama, tokenizer: Tokenizer, config: EngineConfig) -> Result<Engine<'static>> {
        Engine::with_tokenizer(model, Cow::Owned(tokenizer), config)
    }

    fn with_tokenizer(model: &Llama, tokenizer: Cow<'t, Tokenizer>, config: EngineConfig) -> Result<Self> {
        if config.max_batch == 0 {
            return Err(Error::arg("max_batch", "must be at least 1"));
        }
        if config.prefill_chunk == 0 {
            return Err(Error::arg("prefill_chunk", "must be at least 1"));
        }
        let dtype = config.weights.resolve(model.compute_dtype);
        let act = if model.device.is_cpu() { DType::F32 } else { dtype };
        let weights = model
            .layers
            .iter()
            .map(|l| l.weights(Track::NoGrad, dtype)?.fused())
            .collect::<Result<Vec<_>>>()?;
        let norm = view(&model.norm, Track::NoGrad, DType::F32)?;
        let head = view(model.head_var(), Track::NoGrad, dtype)?;
        Ok(Self {
            model: model.clone(),
            tokenizer,
            config,
            act,
            weights,
            norm,
            head,
            next_id: 0,
            prefilling: VecDeque::new(),
            ready: VecDeque::new(),
            running: Vec::new(),
            suffix: Suffix::default(),
            stats: EngineStats::default(),
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The tokenizer it decodes with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Work counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Whether any request is unfinished.
    pub fn has_work(&self) -> bool {
        !(self.prefilling.is_empty() && self.ready.is_empty() && self.running.is_empty())
    }

    /// Sequences decoding now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Samples not yet decoding (prompts being prefilled, or waiting for room in the batch).
    pub fn waiting(&self) -> usize {
        self.prefilling.iter().map(|p| p.samples.len()).sum::<usize>()
            + self.ready.iter().map(|r| r.samples.len()).sum::<usize>()
    }

    /// Checks a request without submitting it.
    pub fn validate(&self, request: &EngineRequest) -> Result<()> {
        let vocab = self.model.config.vocab_size as u32;
        if request.samples.is_empty() {
            return Err(Error::arg("samples", "a request needs at least one sample"));
        }
        for (i, p) in request.samples.iter().enumerate() {
            p.check(i)?;
        }
        if request.prompt_ids.is_empty() {
            return Err(Error::arg("prompt_ids", "the prompt is empty"));
        }
        if let Some(t) = request.prompt_ids.iter().find(|&&t| t >= vocab) {
            return Err(Error::arg(
                "prompt_ids",
                format!("token id {t} is outside the vocabulary ({vocab})"),
            ));
        }
        let context = self.model.config.max_position_embeddings;
        if request.prompt_ids.len() >= context {
            return Err(Error::arg(
                "prompt_ids",
                format!(
                    "the prompt has {} tokens; the model's context is {context}",
                    request.prompt_ids.len()
                ),
            ));
        }
        Ok(())
    }

    /// Submits a request; its samples are reported by later [`Engine::step`]s under the returned
    /// id.
    pub fn add(&mut self, request: EngineRequest) -> Result<RequestId> {
        self.validate(&request)?;
        let id = self.next_id;
        self.next_id += 1;
        let samples: Vec<(usize, SamplingParams)> = request.samples.into_iter().enumerate().collect();
        let jobs: Vec<Vec<(usize, SamplingParams)>> = if self.config.share_prefix {
            vec![samples]
        } else {
            samples.into_iter().map(|s| vec![s]).collect()
        };
        for samples in jobs {
            self.prefilling.push_back(Prefill {
                request: id,
                prompt: request.prompt_ids.clone(),
                samples,
                k: Vec::new(),
                v: Vec::new(),
                done: 0,
            });
        }
        Ok(id)
    }

    /// Drops a request (e.g. its client went away); no further events are reported for it.
    pub fn abort(&mut self, request: RequestId) -> Result<()> {
        self.prefilling.retain(|p| p.request != request);
        self.ready.retain(|r| r.request != request);
        let keep: Vec<usize> =
            (0..self.running.len()).filter(|&i| self.running[i].request != request).collect();
        if keep.len() < self.running.len() {
            self.retain_rows(&keep)?;
        }
        Ok(())
    }

    /// One scheduling step: prefill up to the token budget, admit prefilled samples, decode one
    /// token for every running sequence, retire the finished ones. Returns what happened, in
    /// order.
    pub fn step(&mut self) -> Result<Vec<EngineEvent>> {
        let mut events = Vec::new();
        self.prefill_some()?;
        self.admit(&mut events)?;
        if !self.running.is_empty() {
            self.decode(&mut events)?;
        }
        Ok(events)
    }

    /// Runs prompts through the model, at most `prefill_chunk` tokens in all, unless enough
    /// samples already wait for room in the batch.
    fn prefill_some(&mut self) -> Result<()> {
        let mut budget = self.config.prefill_chunk;
        while budget > 0 {
            let waiting: usize = self.ready.iter().map(|r| r.samples.len()).sum();
            if waiting + self.running.len() >= 2 * self.config.max_batch {
                break;
            }
            let Some(job) = self.prefilling.front_mut() else { break };
            let t = budget.min(job.prompt.len() - job.done);
            let logits = prefill_chunk(&self.model, &self.weights, &self.norm, &self.head, self.act, job, t)?;
            self.stats.prefill_tokens += t;
            budget -= t;
            if let Some(logits) = logits {
                let job = self.prefilling.pop_front().expect("the job just prefilled");
                let prefix = Prefix { len: job.prompt.len(), k: job.k, v: job.v, logits };
                self.ready.push_back(Ready {
                    request: job.request,
                    prefix: Arc::new(prefix),
                    samples: job.samples.into(),
                });
            }
        }
        Ok(())
    }

    /// Moves prefilled samples into the batch while it has room, sampling their first token.
    fn admit(&mut self, events: &mut Vec<EngineEvent>) -> Result<()> {
        let mut fresh = Vec::new();
        while self.running.len() + fresh.len() < self.config.max_batch {
            let Some(ready) = self.ready.front_mut() else { break };
            let Some((sample, params)) = ready.samples.pop_front() else {
                self.ready.pop_front();
                continue;
            };
            let prefix = Arc::clone(&ready.prefix);
            let request = ready.request;
            let mut slot = Slot::new(
                request as usize,
                params.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64),
            );
            let mut logits = prefix.logits.clone();
            let token = self.sample(&mut slot, &params, &mut logits, prefix.len, events, request, sample)?;
            let seq = Seq { request, sample, params, prefix, slot, pending: token, start: 0 };
            if seq.slot.done.is_some() {
                self.retire(seq, events);
            } else {
                fresh.push(seq);
            }
        }
        if let Some(r) = self.ready.front()
            && r.samples.is_empty()
        {
            self.ready.pop_front();
        }
        if fresh.is_empty() {
            return Ok(());
        }
        // New rows start writing at the current width; columns before it are masked for them.
        let n = fresh.len();
        let width = self.suffix.width;
        for s in &mut fresh {
            s.start = width;
        }
        let cfg = &self.model.config;
        let (kvh, hd) = (cfg.num_key_value_heads, cfg.head_dim);
        let cap = if self.running.is_empty() { GROW } else { self.suffix.k[0].dim(2)? };
        let (dtype, dev) = (self.act, &self.model.device);
        let zeros = || Tensor::zeros((n, kvh, cap, hd), dtype, dev);
        if self.running.is_empty() {
            let layers = self.weights.len();
            self.suffix = Suffix {
                k: (0..layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
                v: (0..layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?,
                width: 0,
            };
            for s in &mut fresh {
                s.start = 0;
            }
        } else {
            let zeros = zeros()?;
            for t in self.suffix.k.iter_mut().chain(self.suffix.v.iter_mut()) {
                *t = Tensor::cat(&[&*t, &zeros], 0)?;
            }
        }
        self.running.extend(fresh);
        self.stats.peak_batch = self.stats.peak_batch.max(self.running.len());
        Ok(())
    }

    /// Samples a token for `slot` from `logits`, records it and reports it; marks the slot done
    /// on a stop token, a stop string, `max_new_tokens` or a full context.
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        slot: &mut Slot,
        params: &SamplingParams,
        logits: &mut [f32],
        prompt_len: usize,
        events: &mut Vec<EngineEvent>,
        request: RequestId,
        sample: usize,
    ) -> Result<u32> {
        let c = choose(logits, params, &mut slot.rng).ok_or_else(|| Error::NonFiniteLogits {
            context: format!("sampling token {} of request {request:?}, sample {sample}", slot.tokens.len()),
        })?;
        slot.tokens.push(c.token);
        slot.logprobs.push(c.logprob);
        self.stats.sampled_tokens += 1;
        if self.config.eos_ids.contains(&c.token) || params.stop_token_ids.contains(&c.token) {
            slot.done = Some((FinishReason::Stop, Some(StopReason::Token(c.token))));
        } else if slot.tokens.len() >= params.max_new_tokens
            || prompt_len + slot.tokens.len() >= self.model.config.max_position_embeddings
        {
            slot.done = Some((FinishReason::Length, None));
        }
        let text = push_text(slot, &self.tokenizer, c.token, params)?;
        events.push(EngineEvent::Token { request, sample, token_id: c.token, logprob: c.logprob, text });
        Ok(c.token)
    }

    fn retire(&mut self, mut seq: Seq, events: &mut Vec<EngineEvent>) {
        events.push(EngineEvent::Finished {
            request: seq.request,
            sample: seq.sample,
            completion: finish(&mut seq.slot),
        });
    }

    /// Keeps only the running rows `keep` (in that order), dropping suffix columns no row uses.
    fn retain_rows(&mut self, keep: &[usize]) -> Result<()> {
        let mut old: Vec<Option<Seq>> = std::mem::take(&mut self.running).into_iter().map(Some).collect();
        self.running = keep.iter().map(|&i| old[i].take().expect("each row kept once")).collect();
        if self.running.is_empty() {
            self.suffix = Suffix::default();
            return Ok(());
        }
        let first = self.running.iter().map(|s| s.start).min().unwrap_or(0);
        let idx = Tensor::from_vec(
            keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            keep.len(),
            &self.model.device,
        )?;
        let width = self.suffix.width;
        for t in self.suffix.k.iter_mut().chain(self.suffix.v.iter_mut()) {
            let cap = t.dim(2)?;
            let mut kept = t.index_select(&idx, 0)?;
            if first > 0 {
                kept = kept.narrow(2, first, cap - first)?.contiguous()?;
            }
            *t = kept;
        }
        if first > 0 {
            for s in &mut self.running {
                s.start -= first;
            }
            self.suffix.width = width - first;
        }
        Ok(())
    }

    /// Feeds every running row its pending token, samples the next one and retires finished
    /// rows.
    fn decode(&mut self, events: &mut Vec<EngineEvent>) -> Result<()> {
        let cfg = &self.model.config;
        let (dtype, dev) = (self.act, self.model.device.clone());
        let b = self.running.len();
        let width = self.suffix.width;
        if width == self.suffix.k[0].dim(2)? {
            let (kvh, hd) = (cfg.num_key_value_heads, cfg.head_dim);
            let more = Tensor::zeros((b, kvh, GROW, hd), dtype, &dev)?;
            for t in self.suffix.k.iter_mut().chain(self.suffix.v.iter_mut()) {
                *t = Tensor::cat(&[&*t, &more], 2)?;
            }
        }
        let keys = width + 1;
        let ids: Vec<u32> = self.running.iter().map(|s| s.pending).collect();
        let pos: Vec<u32> =
            self.running.iter().map(|s| (s.prefix.len + s.slot.tokens.len() - 1) as u32).collect();
        let input = Tensor::from_vec(ids, b, &dev)?;
        let mut x = self.model.embed(&input, b, Track::NoGrad)?.to_dtype(dtype)?;
        let (cos, sin) = self.model.rope.cos_sin(&pos, b, 1, dtype, &dev)?;
        let valid = self.running.iter().any(|s| s.start > 0).then(|| {
            self.running.iter().flat_map(|s| (0..keys).map(move |j| j >= s.start)).collect::<Vec<bool>>()
        });
        let suffix_mask = AttnMask::new(valid, keys, width);
        // Rows by prompt: each prefix is attended to once for all its rows.
        let mut groups: Vec<(Arc<Prefix>, Vec<u32>)> = Vec::new();
        for (i, s) in self.running.iter().enumerate() {
            match groups.iter_mut().find(|g| Arc::ptr_eq(&g.0, &s.prefix)) {
                Some(g) => g.1.push(i as u32),
                None => groups.push((Arc::clone(&s.prefix), vec![i as u32])),
            }
        }
        let order: Vec<u32> = groups.iter().flat_map(|g| g.1.iter().copied()).collect();
        let mut inverse = vec![0u32; b];
        for (at, &row) in order.iter().enumerate() {
            inverse[row as usize] = at as u32;
        }
        let single = groups.len() == 1;
        let inverse = Tensor::from_vec(inverse, b, &dev)?;
        let group_idx: Vec<Tensor> = groups
            .iter()
            .map(|g| Tensor::from_vec(g.1.clone(), g.1.len(), &dev))
            .collect::<candle_core::Result<_>>()?;
        for (l, w) in self.weights.iter().enumerate() {
            let qkv = pre_attention(cfg, w, &x, &cos, &sin, Kernels::Fused)?;
            self.suffix.k[l].slice_set(&qkv.k.contiguous()?, 2, width)?;
            self.suffix.v[l].slice_set(&qkv.v.contiguous()?, 2, width)?;
            let k = self.suffix.k[l].narrow(2, 0, keys)?;
            let v = self.suffix.v[l].narrow(2, 0, keys)?;
            let own = attention::forward(&qkv.q, &k, &v, &suffix_mask)?;
            let mut outs = Vec::with_capacity(groups.len());
            let mut lses = Vec::with_capacity(groups.len());
            for ((prefix, _), idx) in groups.iter().zip(&group_idx) {
                // The group's queries as one sequence `(1, heads, rows, head_dim)`.
                let q = if single { qkv.q.clone() } else { qkv.q.index_select(idx, 0)? };
                let q = q.transpose(0, 2)?;
                let mask = AttnMask::new(None, prefix.len, prefix.len - 1);
                let out = attention::forward(&q, &prefix.k[l], &prefix.v[l], &mask)?;
                outs.push(out.o.transpose(0, 2)?);
                lses.push(out.lse.transpose(0, 2)?);
            }
            let (mut o_pre, mut l_pre) = if single {
                (outs.pop().expect("one group"), lses.pop().expect("one group"))
            } else {
                (
                    Tensor::cat(&outs, 0)?.index_select(&inverse, 0)?,
                    Tensor::cat(&lses, 0)?.index_select(&inverse, 0)?,
                )
            };
            o_pre = o_pre.contiguous()?;
            l_pre = l_pre.contiguous()?;
            let o = merge(&o_pre, &l_pre, &own.o, &own.lse)?;
            x = post_attention(cfg, w, &x, &o, Kernels::Fused)?;
        }
        self.suffix.width = keys;
        let last = x.squeeze(1)?;
        let h = rms_norm(&last, &self.norm, cfg.rms_norm_eps, dtype, Kernels::Fused)?;
        let logits: Vec<Vec<f32>> =
            matmul_t(&h, &self.head, Kernels::Fused)?.to_dtype(DType::F32)?.to_vec2()?;
        self.stats.decode_steps += 1;

        let mut running = std::mem::take(&mut self.running);
        for (seq, mut l) in running.iter_mut().zip(logits) {
            let (request, sample, plen) = (seq.request, seq.sample, seq.prefix.len);
            seq.pending = self.sample(&mut seq.slot, &seq.params, &mut l, plen, events, request, sample)?;
        }
        let keep: Vec<usize> = (0..running.len()).filter(|&i| running[i].slot.done.is_none()).collect();
        let done: Vec<usize> = (0..running.len()).filter(|&i| running[i].slot.done.is_some()).collect();
        self.running = running;
        if !done.is_empty() {
            for &i in &done {
                let (request, sample) = (self.running[i].request, self.running[i].sample);
                let completion = finish(&mut self.running[i].slot);
                events.push(EngineEvent::Finished { request, sample, completion });
            }
            self.retain_rows(&keep)?;
        }
        Ok(())
    }
}

/// Runs the next `t` prompt tokens of `job` through the model into its prefix cache; returns
/// the last position's logits once the whole prompt is in.
fn prefill_chunk(
    model: &Llama,
    weights: &[LayerWeights],
    norm: &Tensor,
    head: &Tensor,
    dtype: DType,
    job: &mut Prefill,
    t: usize,
) -> Result<Option<Vec<f32>>> {
    let cfg = &model.config;
    let dev = &model.device;
    let p = job.prompt.len();
    if job.k.is_empty() {
        // One buffer per layer and per key/value (clones would share storage).
        let zeros = || Tensor::zeros((1, cfg.num_key_value_heads, p, cfg.head_dim), dtype, dev);
        job.k = (0..weights.len()).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
        job.v = (0..weights.len()).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
    }
    let start = job.done;
    let input = Tensor::from_slice(&job.prompt[start..start + t], t, dev)?;
    let mut x = model.embed(&input, 1, Track::NoGrad)?.to_dtype(dtype)?;
    let positions: Vec<u32> = (start as u32..(start + t) as u32).collect();
    let (cos, sin) = model.rope.cos_sin(&positions, 1, t, dtype, dev)?;
    let keys = start + t;
    let mask = AttnMask::new(None, keys, start);
    for (l, w) in weights.iter().enumerate() {
        let qkv = pre_attention(cfg, w, &x, &cos, &sin, Kernels::Fused)?;
        job.k[l].slice_set(&qkv.k.contiguous()?, 2, start)?;
        job.v[l].slice_set(&qkv.v.contiguous()?, 2, start)?;
        let k = job.k[l].narrow(2, 0, keys)?;
        let v = job.v[l].narrow(2, 0, keys)?;
        let o = attention::forward(&qkv.q, &k, &v, &mask)?.o;
        x = post_attention(cfg, w, &x, &o, Kernels::Fused)?;
    }
    job.done = keys;
    if job.done < p {
        return Ok(None);
    }
    let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
    let h = rms_norm(&last, norm, cfg.rms_norm_eps, dtype, Kernels::Fused)?;
    let logits = matmul_t(&h, head, Kernels::Fused)?.to_dtype(DType::F32)?.squeeze(0)?.to_vec1()?;
    Ok(Some(logits))
}

/// Merges two attention results over disjoint key sets, each `(rows, heads, 1, head_dim)` with
/// its log-sum-exp `(rows, heads, 1)`.
fn merge(o1: &Tensor, l1: &Tensor, o2: &Tensor, l2: &Tensor) -> Result<Tensor> {
    let m = l1.maximum(l2)?;
    let w1 = l1.broadcast_sub(&m)?.exp()?;
    let w2 = l2.broadcast_sub(&m)?.exp()?;
    let sum = (&w1 + &w2)?;
    let w1 = (w1 / &sum)?.unsqueeze(D::Minus1)?;
    let w2 = (w2 / &sum)?.unsqueeze(D::Minus1)?;
    let dtype = o1.dtype();
    let o = (o1.to_dtype(DType::F32)?.broadcast_mul(&w1)? + o2.to_dtype(DType::F32)?.broadcast_mul(&w2)?)?;
    Ok(o.to_dtype(dtype)?)
}

impl Llama {
    /// Samples every request's completions through an [`Engine`] (prompt prefilled once per
    /// request, continuous batching); returns them per request, in order. `on_event` sees
    /// every event as it happens, with the request's index in `requests`.
    ///
    /// This is the GRPO rollout call: one request per prompt, one [`SamplingParams`] (seed) per
    /// group member.
    pub fn generate_groups(
        &self,
        tokenizer: &Tokenizer,
        requests: &[EngineRequest],
        config: &EngineConfig,
        mut on_event: impl FnMut(&EngineEvent),
    ) -> Result<Vec<Vec<Completion>>> {
        let mut engine = Engine::new(self, tokenizer, config.clone())?;
        for r in requests {
            engine.validate(r)?;
        }
        let mut out: Vec<Vec<Option<Completion>>> =
            requests.iter().map(|r| vec![None; r.samples.len()]).collect();
        for r in requests {
            engine.add(r.clone())?;
        }
        while engine.has_work() {
            for ev in engine.step()? {
                on_event(&ev);
                if let EngineEvent::Finished { request, sample, completion } = ev {
                    out[request as usize][sample] = Some(completion);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.expect("every sample finished")).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::config::ModelConfig;
    use crate::generate::{GenerateOptions, GenerationRequest};
    use crate::load::LoadedModel;

    fn tiny() -> (LoadedModel, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let loaded = crate::testing::write_tiny_checkpoint(dir.path(), 5).expect("tiny model");
        (loaded, dir)
    }

    /// Three prompts (lengths 37, 5 and 120) of random ids below the eos id.
    fn prompts(vocab: usize) -> Vec<Vec<u32>> {
        let mut rng = StdRng::seed_from_u64(9);
        [37usize, 5, 120]
            .iter()
            .map(|&n| (0..n).map(|_| rng.random_range(0..vocab as u32 - 1)).collect())
            .collect()
    }

    fn params(i: usize) -> SamplingParams {
        match i % 3 {
            0 => SamplingParams {
                temperature: 0.9,
                max_new_tokens: 24,
                seed: Some(100 + i as u64),
                ..Default::default()
            },
            1 => SamplingParams {
                temperature: 1.3,
                top_p: 0.9,
                top_k: 20,
                max_new_tokens: 7 + i,
                seed: Some(7 * i as u64),
                ..Default::default()
            },
            _ => SamplingParams::greedy(16),
        }
    }

    /// Groups of `g` samples of each prompt.
    fn groups(vocab: usize, g: usize) -> Vec<EngineRequest> {
        prompts(vocab)
            .into_iter()
            .map(|p| EngineRequest { prompt_ids: p, samples: (0..g).map(params).collect() })
            .collect()
    }

    /// [`groups`] as one [`GenerationRequest`] per sample (the static generator's input).
    fn flat_requests(vocab: usize, g: usize) -> Vec<GenerationRequest> {
        groups(vocab, g)
            .into_iter()
            .flat_map(|r| {
                r.samples
                    .into_iter()
                    .map(move |params| GenerationRequest { prompt_ids: r.prompt_ids.clone(), params })
            })
            .collect()
    }

    fn assert_same(a: &[Completion], b: &[Completion], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.token_ids, y.token_ids, "{what}: sample {i}");
            assert_eq!(x.text, y.text, "{what}: sample {i}");
            assert_eq!(x.finish_reason, y.finish_reason, "{what}: sample {i}");
            // Within 1e-5, relative to the log-prob's size past 1 (f32 rounding of large
            // log-probs: the largest difference seen, 1.05e-5, was at a log-prob below -1).
            for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
                let tol = 1e-5 * p.abs().max(1.0);
                assert!((p - q).abs() <= tol, "{what}: sample {i}: log-probs {p} vs {q}");
            }
        }
    }

    #[test]
    fn engine_equals_the_static_generator() {
        let (m, _dir) = tiny();
        let vocab = m.model.config().vocab_size;
        let eos = m.eos_ids();
        let requests = flat_requests(vocab, 4);
        let opts = GenerateOptions { eos_ids: eos, pad_id: m.pad_id(), max_batch: 0, ..Default::default() };
        let mut streamed = vec![String::new(); requests.len()];
        let engine = m
            .model
            .generate(&m.tokenizer, &requests, &opts, |e| streamed[e.request].push_str(e.text))
            .unwrap();
        let reference = m.model.generate_static(&m.tokenizer, &requests, &opts, |_| {}).unwrap();
        assert_same(&engine, &reference, "engine vs static batch");
        for (s, c) in streamed.iter().zip(&engine) {
            assert_eq!(s, &c.text);
        }
        assert!(engine.iter().any(|c| c.token_ids.len() > 10), "some completions are long");
    }

    #[test]
    fn sharing_batch_size_and_prefill_chunks_do_not_change_results() {
        let (m, _dir) = tiny();
        let vocab = m.model.config().vocab_size;
        let reqs = groups(vocab, 5);
        let prompt_tokens: usize = reqs.iter().map(|r| r.prompt_ids.len()).sum();
        let run = |config: EngineConfig| {
            let mut engine = Engine::new(&m.model, &m.tokenizer, config).unwrap();
            let mut out: Vec<Vec<Option<Completion>>> =
                reqs.iter().map(|r| vec![None; r.samples.len()]).collect();
            for r in &reqs {
                engine.add(r.clone()).unwrap();
            }
            while engine.has_work() {
                for ev in engine.step().unwrap() {
                    if let EngineEvent::Finished { request, sample, completion } = ev {
                        out[request as usize][sample] = Some(completion);
                    }
                }
            }
            let flat: Vec<Completion> = out.into_iter().flatten().map(Option::unwrap).collect();
            (flat, engine.stats())
        };
        let base = EngineConfig { eos_ids: m.eos_ids(), ..EngineConfig::default() };
        let (want, stats) = run(base.clone());
        assert_eq!(stats.prefill_tokens, prompt_tokens, "each prompt prefilled once");
        assert!(stats.peak_batch > 5 && stats.peak_batch <= 15, "{stats:?}");
        for (share, max_batch, chunk) in
            [(false, 64, 512), (true, 1, 512), (true, 4, 16), (false, 3, 7), (true, 64, 1)]
        {
            let (got, stats) =
                run(EngineConfig { share_prefix: share, max_batch, prefill_chunk: chunk, ..base.clone() });
            let what = format!("share {share}, max_batch {max_batch}, chunk {chunk}");
            assert_same(&got, &want, &what);
            let copies = if share { 1 } else { 5 };
            assert_eq!(stats.prefill_tokens, copies * prompt_tokens, "{what}");
            assert!(stats.peak_batch <= max_batch, "{what}");
        }
    }

    #[test]
    fn requests_join_and_leave_a_running_batch() {
        let (m, _dir) = tiny();
        let vocab = m.model.config().vocab_size;
        let reqs = groups(vocab, 2);
        let config = EngineConfig { eos_ids: m.eos_ids(), prefill_chunk: 8, ..EngineConfig::default() };
        let alone: Vec<Vec<Completion>> = reqs
            .iter()
            .map(|r| {
                m.model
                    .generate_groups(&m.tokenizer, std::slice::from_ref(r), &config, |_| {})
                    .unwrap()
                    .remove(0)
            })
            .collect();
        // Submit one request per step while the earlier ones decode; abort a fourth one midway.
        let mut engine = Engine::new(&m.model, &m.tokenizer, config).unwrap();
        let mut out: Vec<Vec<Option<Completion>>> =
            reqs.iter().map(|r| vec![None; r.samples.len()]).collect();
        let mut pending = reqs.clone().into_iter();
        let doomed = engine.add(reqs[0].clone()).unwrap();
        let mut step = 0;
        let mut overlapped = false;
        while engine.has_work() || pending.len() > 0 {
            if step % 3 == 0
                && let Some(r) = pending.next()
            {
                engine.add(r).unwrap();
            }
            if step == 4 {
                engine.abort(doomed).unwrap();
            }
            let events = engine.step().unwrap();
            let busy: std::collections::HashSet<RequestId> = events
                .iter()
                .map(|e| match e {
                    EngineEvent::Token { request, .. } | EngineEvent::Finished { request, .. } => *request,
                })
                .collect();
            overlapped |= busy.len() >= 2 && !busy.contains(&doomed);
            for ev in events {
                if let EngineEvent::Finished { request, sample, completion } = ev {
                    assert_ne!(request, doomed, "aborted requests report nothing");
                    out[request as usize - 1][sample] = Some(completion);
                }
            }
            step += 1;
        }
        assert!(overlapped, "requests decoded in the same steps");
        for (i, (got, want)) in out.into_iter().zip(&alone).enumerate() {
            let got: Vec<Completion> = got.into_iter().map(Option::unwrap).collect();
            assert_same(&got, want, &format!("request {i}"));
        }
    }

    /// The f32 model's log-probs of a sampled completion's tokens (full forward pass, at the
    /// sample's temperature).
    fn full_forward_logprobs(model: &Llama, prompt: &[u32], p: &SamplingParams, c: &Completion) -> Vec<f32> {
        let batch = crate::TokenBatch::from_prompt_completions(
            std::slice::from_ref(&prompt.to_vec()),
            std::slice::from_ref(&c.token_ids),
            0,
        )
        .unwrap();
        let t = if p.temperature == 0.0 { 1.0 } else { p.temperature };
        let s = model.score(&batch, &crate::ScoreOptions { temperature: t, ..Default::default() }).unwrap();
        s.logprobs.squeeze(0).unwrap().to_vec1().unwrap()
    }

    #[test]
    fn sampled_logprobs_equal_a_full_forward() {
        let (m, _dir) = tiny();
        let vocab = m.model.config().vocab_size;
        let reqs = groups(vocab, 3);
        let config = EngineConfig { eos_ids: m.eos_ids(), prefill_chunk: 13, ..EngineConfig::default() };
        let out = m.model.generate_groups(&m.tokenizer, &reqs, &config, |_| {}).unwrap();
        for (r, samples) in reqs.iter().zip(&out) {
            for (p, c) in r.samples.iter().zip(samples) {
                let full = full_forward_logprobs(&m.model, &r.prompt_ids, p, c);
                for (a, b) in full.iter().zip(&c.logprobs) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }

    /// The engine stacks q/k/v and gate/up into single products; with biases on every
    /// projection (Qwen-style attention biases, MLP biases) it still equals the unstacked static
    /// generator.
    #[test]
    fn stacked_projections_with_biases_equal_the_static_generator() {
        let (m, _dir) = tiny();
        let cfg = ModelConfig { attention_bias: true, mlp_bias: true, ..m.model.config().clone() };
        let opts = crate::ModelOptions::default();
        let base = Llama::new_random(cfg.clone(), 3, 0.3, &opts).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let sd: std::collections::HashMap<String, Tensor> = base
            .state_dict()
            .unwrap()
            .into_iter()
            .map(|(n, t)| {
                if n.ends_with(".bias") {
                    let v: Vec<f32> = (0..t.elem_count()).map(|_| rng.random_range(-0.5..0.5)).collect();
                    (n, Tensor::from_vec(v, t.dims(), t.device()).unwrap())
                } else {
                    (n, t)
                }
            })
            .collect();
        let model = Llama::from_tensors(cfg, sd, &opts, "biased").unwrap();
        let requests = flat_requests(model.config().vocab_size, 2);
        let gopts =
            GenerateOptions { eos_ids: m.eos_ids(), pad_id: m.pad_id(), max_batch: 0, ..Default::default() };
        let engine = model.generate(&m.tokenizer, &requests, &gopts, |_| {}).unwrap();
        let reference = model.generate_static(&m.tokenizer, &requests, &gopts, |_| {}).unwrap();
        assert_same(&engine, &reference, "biased model: engine vs static batch");
        let config = EngineConfig { weights: WeightDtype::Bf16, ..EngineConfig::default() };
        let half =
            model.generate_groups(&m.tokenizer, &groups(model.config().vocab_size, 1), &config, |_| {});
        assert!(half.is_ok(), "bf16 weights with biases: {half:?}");
    }

    /// bf16 and f16 weights on the CPU: the sampled tokens' log-probs against the f32 model's
    /// full forward pass on the same tokens differ by the weights' rounding only.
    #[test]
    fn half_precision_weights_sample_within_a_stated_tolerance_of_f32() {
        let (m, _dir) = tiny();
        let vocab = m.model.config().vocab_size;
        let reqs = groups(vocab, 3);
        for (weights, tol) in [(WeightDtype::Bf16, BF16_LOGPROB_TOL), (WeightDtype::F16, F16_LOGPROB_TOL)] {
            let config =
                EngineConfig { eos_ids: m.eos_ids(), prefill_chunk: 13, weights, ..Default::default() };
            let out = m.model.generate_groups(&m.tokenizer, &reqs, &config, |_| {}).unwrap();
            let mut worst = 0f32;
            let mut tokens = 0;
            for (r, samples) in reqs.iter().zip(&out) {
                for (p, c) in r.samples.iter().zip(samples) {
                    let full = full_forward_logprobs(&m.model, &r.prompt_ids, p, c);
                    for (a, b) in full.iter().zip(&c.logprobs) {
                        worst = worst.max((a - b).abs() / a.abs().max(1.0));
                        tokens += 1;
                    }
                }
            }
            assert!(tokens > 100, "{tokens}");
            assert!(worst <= tol, "{weights:?}: {worst} > {tol}");
            // The rounding is real: the kernel did not silently run f32 weights.
            assert!(worst > 1e-6, "{weights:?}: {worst}");
        }
        let err = "f64".parse::<WeightDtype>().unwrap_err();
        assert!(err.to_string().contains("`f64` is not model, f32, bf16 or f16"), "{err}");
        assert_eq!("bf16".parse::<WeightDtype>().unwrap(), WeightDtype::Bf16);
    }

    #[test]
    fn bad_requests_are_argument_errors() {
        let (m, _dir) = tiny();
        let engine = Engine::new(&m.model, &m.tokenizer, EngineConfig::default()).unwrap();
        let vocab = m.model.config().vocab_size as u32;
        let bad = [
            EngineRequest { prompt_ids: vec![], samples: vec![SamplingParams::default()] },
            EngineRequest { prompt_ids: vec![1], samples: vec![] },
            EngineRequest { prompt_ids: vec![vocab], samples: vec![SamplingParams::default()] },
            EngineRequest { prompt_ids: vec![1; 512], samples: vec![SamplingParams::default()] },
            EngineRequest {
                prompt_ids: vec![1],
                samples: vec![SamplingParams { top_p: 0.0, ..Default::default() }],
            },
        ];
        for r in bad {
            assert!(matches!(engine.validate(&r), Err(Error::InvalidArgument { .. })), "{r:?}");
        }
        assert!(
            Engine::new(&m.model, &m.tokenizer, EngineConfig { max_batch: 0, ..Default::default() }).is_err()
        );
    }
}
