//! Batched generation: [`Llama::generate`] samples a list of requests, each with its own
//! sampling parameters and seed, through the rollout [`Engine`](crate::engine::Engine)
//! (requests with the same prompt share its prefill and KV cache; finished sequences leave the
//! batch at once). Also the text bookkeeping the engine shares: streaming, stop strings.

#[cfg(test)]
use candle_core::{DType, Tensor};
#[cfg(test)]
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use crate::attention::{self, AttnMask};
use crate::engine::{EngineConfig, EngineEvent, EngineRequest};
use crate::error::{Error, Result};
#[cfg(test)]
use crate::layer::{Kernels, post_attention, pre_attention, rms_norm};
use crate::model::Llama;
#[cfg(test)]
use crate::model::{LayerWeights, Track, view};
use crate::sampling::SamplingParams;
#[cfg(test)]
use crate::sampling::choose;
use crate::tokenizer::{DecodeStream, Tokenizer};

/// One prompt to complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The prompt's token ids (non-empty).
    pub prompt_ids: Vec<u32>,
    /// How to sample.
    pub params: SamplingParams,
}

/// Why a completion ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string was produced.
    Stop,
    /// `max_new_tokens` was reached (or the model's context was full).
    Length,
}

/// A generated completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Generated token ids (a final stop token included).
    pub token_ids: Vec<u32>,
    /// Decoded text (special tokens skipped, cut before a stop string).
    pub text: String,
    /// Log-probability of each generated token under the temperature-scaled distribution.
    pub logprobs: Vec<f32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// The stop token or stop string that ended it, if any.
    pub stop: Option<StopReason>,
}

/// What stopped a completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop (or eos) token id.
    Token(u32),
    /// A stop string.
    String(String),
}

/// One generated token, reported while generating.
#[derive(Clone, Copy, Debug)]
pub struct StreamEvent<'a> {
    /// Index of the request in the batch.
    pub request: usize,
    /// The token.
    pub token_id: u32,
    /// New text completed by this token (may be empty mid-character; never includes text past
    /// a stop string).
    pub text: &'a str,
}

/// Settings shared by a batch of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Token ids that end every request (the model's eos ids).
    pub eos_ids: Vec<u32>,
    /// Padding id for the batch layout (any valid id; padded positions are masked).
    pub pad_id: u32,
    /// Most sequences decoding at once (the engine's [`EngineConfig::max_batch`]); `0`: all the
    /// requests at once. Samples wait for a free row; results do not depend on it.
    #[serde(default)]
    pub max_batch: usize,
    /// Precision of the weights sampled with ([`EngineConfig::weights`]).
    #[serde(default)]
    pub weights: crate::engine::WeightDtype,
}

/// Per-layer key/value cache `(batch, kv_heads, capacity, head_dim)`.
#[cfg(test)]
struct KvCache {
    k: Tensor,
    v: Tensor,
}

/// Per-sample decoding state.
pub(crate) struct Slot {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) request: usize,
    pub(crate) rng: StdRng,
    pub(crate) tokens: Vec<u32>,
    pub(crate) logprobs: Vec<f32>,
    pub(crate) text: String,
    /// Bytes of `text` already reported through `on_token`.
    pub(crate) emitted: usize,
    pub(crate) stream: DecodeStream,
    pub(crate) done: Option<(FinishReason, Option<StopReason>)>,
}

impl Slot {
    /// A fresh slot drawing from `rng`.
    pub(crate) fn new(request: usize, rng: StdRng) -> Self {
        Self {
            request,
            rng,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            text: String::new(),
            emitted: 0,
            stream: DecodeStream::new(),
            done: None,
        }
    }
}

impl Llama {
    /// Generates completions for `requests` with a KV cache; `on_token` sees every token as it
    /// is produced. `tokenizer` decodes text and finds stop strings.
    ///
    /// Runs on the rollout [`Engine`](crate::engine::Engine) with all requests in one batch:
    /// requests with identical prompts are prefilled once and share that prompt's KV cache (a
    /// GRPO group costs one prefill), and finished requests leave the batch at once. The cache
    /// takes `2 × layers × kv_heads × head_dim` values of the compute dtype per distinct prompt
    /// token and per generated token. `opts.pad_id` is not needed any more (nothing is padded).
    pub fn generate(
        &self,
        tokenizer: &Tokenizer,
        requests: &[GenerationRequest],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(StreamEvent<'_>),
    ) -> Result<Vec<Completion>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // Identical prompts become one engine request with several samples.
        let mut groups: Vec<EngineRequest> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut by_prompt: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
        for (i, r) in requests.iter().enumerate() {
            self.check_request(i, r)?;
            let g = *by_prompt.entry(&r.prompt_ids).or_insert_with(|| {
                groups.push(EngineRequest { prompt_ids: r.prompt_ids.clone(), samples: Vec::new() });
                members.push(Vec::new());
                groups.len() - 1
            });
            groups[g].samples.push(r.params.clone());
            members[g].push(i);
        }
        let config = EngineConfig {
            max_batch: if opts.max_batch == 0 { requests.len() } else { opts.max_batch },
            eos_ids: opts.eos_ids.clone(),
            weights: opts.weights,
            ..EngineConfig::default()
        };
        let out = self.generate_groups(tokenizer, &groups, &config, |ev| {
            if let EngineEvent::Token { request, sample, token_id, text, .. } = ev {
                on_token(StreamEvent {
                    request: members[*request as usize][*sample],
                    token_id: *token_id,
                    text,
                });
            }
        });
        let out = out.map_err(|e| match e {
            // Name the caller's request in argument errors.
            Error::InvalidArgument { name, message } => Error::arg(name, format!("request: {message}")),
            other => other,
        })?;
        let mut completions: Vec<Option<Completion>> = vec![None; requests.len()];
        for (g, samples) in out.into_iter().enumerate() {
            for (s, c) in samples.into_iter().enumerate() {
                completions[members[g][s]] = Some(c);
            }
        }
        Ok(completions.into_iter().map(|c| c.expect("every request finished")).collect())
    }
}

impl Llama {
    /// Request `i` has valid sampling settings and a non-empty prompt of in-vocabulary ids.
    fn check_request(&self, i: usize, r: &GenerationRequest) -> Result<()> {
        r.params.check(i)?;
        if r.prompt_ids.is_empty() {
            return Err(Error::arg("requests", format!("request {i} has an empty prompt")));
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(t) = r.prompt_ids.iter().find(|&&t| t >= vocab) {
            return Err(Error::arg(
                "requests",
                format!("request {i}: token id {t} is outside the vocabulary ({vocab})"),
            ));
        }
        Ok(())
    }
}

/// The static-batch generator the engine replaced (left-padded batch, a prefill per request):
/// the reference the engine's results are tested against.
#[cfg(test)]
impl Llama {
    /// Generates completions for `requests` in one static batch with a KV cache.
    ///
    /// The cache takes `2 × layers × requests × kv_heads × head_dim × (longest prompt + largest
    /// max_new_tokens)` values of the compute dtype, allocated up front; split very large
    /// batches. Finished requests leave the batch (their cache rows are dropped), so a batch
    /// gets cheaper as completions end.
    pub(crate) fn generate_static(
        &self,
        tokenizer: &Tokenizer,
        requests: &[GenerationRequest],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(StreamEvent<'_>),
    ) -> Result<Vec<Completion>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        for (i, r) in requests.iter().enumerate() {
            self.check_request(i, r)?;
        }
        let dtype = self.compute_dtype;
        let dev = self.device.clone();
        let weights: Vec<LayerWeights> =
            self.layers.iter().map(|l| l.weights(Track::NoGrad, dtype)).collect::<Result<_>>()?;
        let norm = view(&self.norm, Track::NoGrad, DType::F32)?;
        let head = view(self.head_var(), Track::NoGrad, dtype)?;

        // Prompts left-padded to a common length.
        let b = requests.len();
        let p_len = requests.iter().map(|r| r.prompt_ids.len()).max().unwrap_or(0);
        let max_new = requests.iter().map(|r| r.params.max_new_tokens).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * p_len);
        let mut valid = Vec::with_capacity(b * p_len);
        let mut positions = Vec::with_capacity(b * p_len);
        for r in requests {
            let pad = p_len - r.prompt_ids.len();
            ids.extend(std::iter::repeat_n(opts.pad_id, pad));
            ids.extend_from_slice(&r.prompt_ids);
            valid.extend(std::iter::repeat_n(false, pad));
            valid.extend(std::iter::repeat_n(true, r.prompt_ids.len()));
            positions.extend(std::iter::repeat_n(0u32, pad));
            positions.extend(0..r.prompt_ids.len() as u32);
        }
        let mut slots: Vec<Slot> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rng = match r.params.seed {
                    Some(s) => StdRng::seed_from_u64(s),
                    None => StdRng::from_os_rng(),
                };
                Slot::new(i, rng)
            })
            .collect();
        // Rows of the running batch: indices into `slots`; per row, its key validity and next
        // position.
        let mut rows: Vec<usize> = (0..b).collect();
        let mut key_valid: Vec<Vec<bool>> = valid.chunks(p_len).map(<[bool]>::to_vec).collect();
        let mut next_pos: Vec<u32> = requests.iter().map(|r| r.prompt_ids.len() as u32).collect();

        let capacity = p_len + max_new.max(1);
        let mut caches = Vec::with_capacity(weights.len());
        let hd = self.config.head_dim;
        let kvh = self.config.num_key_value_heads;
        for _ in 0..weights.len() {
            caches.push(KvCache {
                k: Tensor::zeros((b, kvh, capacity, hd), dtype, &dev)?,
                v: Tensor::zeros((b, kvh, capacity, hd), dtype, &dev)?,
            });
        }

        // Prefill.
        let input = Tensor::from_vec(ids, b * p_len, &dev)?;
        let mut logits =
            self.step(&weights, &norm, &head, &mut caches, &input, &positions, &key_valid, 0, p_len)?;
        let mut finished: Vec<Option<Completion>> = vec![None; b];
        for (step, len) in (0..max_new).zip(p_len..) {
            // Sample one token per running row.
            let rows_logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
            let mut next = Vec::with_capacity(rows.len());
            for (row, mut l) in rows.iter().zip(rows_logits) {
                let slot = &mut slots[*row];
                let params = &requests[slot.request].params;
                let c = choose(&mut l, params, &mut slot.rng).ok_or_else(|| Error::NonFiniteLogits {
                    context: format!("sampling token {} of request {}", slot.tokens.len(), slot.request),
                })?;
                slot.tokens.push(c.token);
                slot.logprobs.push(c.logprob);
                if opts.eos_ids.contains(&c.token) || params.stop_token_ids.contains(&c.token) {
                    slot.done = Some((FinishReason::Stop, Some(StopReason::Token(c.token))));
                } else if slot.tokens.len() >= params.max_new_tokens
                    || next_pos[slot.request] as usize + 1 >= self.config.max_position_embeddings
                {
                    slot.done = Some((FinishReason::Length, None));
                }
                let emitted = push_text(slot, tokenizer, c.token, params)?;
                on_token(StreamEvent { request: slot.request, token_id: c.token, text: &emitted });
                next.push(c.token);
            }
            // Retire finished rows.
            let keep: Vec<usize> = (0..rows.len()).filter(|&i| slots[rows[i]].done.is_none()).collect();
            for &r in &rows {
                if slots[r].done.is_some() && finished[r].is_none() {
                    finished[r] = Some(finish(&mut slots[r]));
                }
            }
            if keep.is_empty() || step + 1 == max_new {
                break;
            }
            if keep.len() < rows.len() {
                let idx =
                    Tensor::from_vec(keep.iter().map(|&i| i as u32).collect::<Vec<_>>(), keep.len(), &dev)?;
                for c in &mut caches {
                    c.k = c.k.index_select(&idx, 0)?;
                    c.v = c.v.index_select(&idx, 0)?;
                }
                rows = keep.iter().map(|&i| rows[i]).collect();
                key_valid = keep.iter().map(|&i| key_valid[i].clone()).collect();
                next = keep.iter().map(|&i| next[i]).collect();
            }
            // Decode one step.
            let pos: Vec<u32> = rows.iter().map(|&r| next_pos[slots[r].request]).collect();
            for (kv, _) in key_valid.iter_mut().zip(&rows) {
                kv.push(true);
            }
            let input = Tensor::from_vec(next, rows.len(), &dev)?;
            logits = self.step(&weights, &norm, &head, &mut caches, &input, &pos, &key_valid, len, 1)?;
            for &r in &rows {
                next_pos[slots[r].request] += 1;
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if finished[i].is_none() {
                slot.done.get_or_insert((FinishReason::Length, None));
                finished[i] = Some(finish(slot));
            }
        }
        Ok(finished.into_iter().map(|c| c.expect("every request finished")).collect())
    }

    /// Runs `t` new positions per row through the model, appending keys/values at cache index
    /// `start`; returns the last position's logits `(rows, vocab)`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        weights: &[LayerWeights],
        norm: &Tensor,
        head: &Tensor,
        caches: &mut [KvCache],
        input: &Tensor,
        positions: &[u32],
        key_valid: &[Vec<bool>],
        start: usize,
        t: usize,
    ) -> Result<Tensor> {
        let rows = key_valid.len();
        let keys = start + t;
        let mut x = self.embed(input, rows, Track::NoGrad)?;
        let (cos, sin) = self.rope.cos_sin(positions, rows, t, self.compute_dtype, &self.device)?;
        let all_valid = key_valid.iter().all(|kv| kv.iter().all(|&v| v));
        let mask = AttnMask::new((!all_valid).then(|| key_valid.concat()), keys, start);
        for (w, cache) in weights.iter().zip(caches.iter_mut()) {
            let qkv = pre_attention(&self.config, w, &x, &cos, &sin, Kernels::Fused)?;
            if keys > cache.k.dim(2)? {
                return Err(Error::arg("max_new_tokens", "KV cache overflow".to_string()));
            }
            cache.k.slice_set(&qkv.k.contiguous()?, 2, start)?;
            cache.v.slice_set(&qkv.v.contiguous()?, 2, start)?;
            let k = cache.k.narrow(2, 0, keys)?;
            let v = cache.v.narrow(2, 0, keys)?;
            let o = attention::forward(&qkv.q, &k, &v, &mask)?.o;
            x = post_attention(&self.config, w, &x, &o, Kernels::Fused)?;
        }
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        let h = rms_norm(&last, norm, self.config.rms_norm_eps, self.compute_dtype, Kernels::Fused)?;
        crate::layer::matmul_t(&h, head, Kernels::Fused)
    }
}

/// Adds `token`'s text to the slot, ends the slot on a stop string (text cut before it), and
/// returns the text that can be shown now: text that could still turn out to begin a stop
/// string is held back until the completion ends, so streamed text always equals the final
/// text.
pub(crate) fn push_text(
    slot: &mut Slot,
    tokenizer: &Tokenizer,
    token: u32,
    params: &SamplingParams,
) -> Result<String> {
    let before = slot.text.len();
    slot.text.push_str(&slot.stream.step(tokenizer, token)?);
    if slot.done.is_some() {
        slot.text.push_str(&slot.stream.flush(tokenizer)?);
    }
    if !params.stop_strings.is_empty() && slot.text.len() > before {
        let longest = params.stop_strings.iter().map(String::len).max().unwrap_or(0);
        // Only matches overlapping the new text are new.
        let mut from = before.saturating_sub(longest.saturating_sub(1));
        while !slot.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = params
            .stop_strings
            .iter()
            .filter_map(|s| slot.text[from..].find(s.as_str()).map(|i| (from + i, s)))
            .min_by_key(|(i, _)| *i);
        if let Some((at, s)) = found {
            slot.text.truncate(at);
            slot.done = Some((FinishReason::Stop, Some(StopReason::String(s.clone()))));
        }
    }
    let show_until = if slot.done.is_some() {
        slot.text.len()
    } else {
        slot.text.len() - held_back(&slot.text, &params.stop_strings)
    };
    let out = slot.text[slot.emitted.min(show_until)..show_until].to_string();
    slot.emitted = slot.emitted.max(show_until);
    Ok(out)
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .filter_map(|s| (1..s.len()).rev().find(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k])))
        .max()
        .unwrap_or(0)
}

/// The completion of a finished slot.
pub(crate) fn finish(slot: &mut Slot) -> Completion {
    let (finish_reason, stop) = slot.done.clone().unwrap_or((FinishReason::Length, None));
    Completion {
        token_ids: std::mem::take(&mut slot.tokens),
        text: std::mem::take(&mut slot.text),
        logprobs: std::mem::take(&mut slot.logprobs),
        finish_reason,
        stop,
    }
}
