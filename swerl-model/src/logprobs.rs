//! Per-token log-probabilities and entropies of scored tokens, without materialising the full
//! `(batch, seq, vocab)` logits: the output projection runs over chunks of scored positions.
//!
//! Three passes share the code here: [`Llama::score`] (no gradients, fused kernels: old and
//! reference log-probs), [`Llama::forward_graph`] (one autograd graph: simple, for short
//! sequences and as the reference in tests) and [`Llama::forward_train`] (memory-bounded
//! training pass, see [`crate::train`]).

use candle_core::{D, DType, Tensor};

use crate::attention::{self, AttnMask};
use crate::batch::TokenBatch;
use crate::error::{Error, Result};
use crate::layer::{Kernels, post_attention, pre_attention, rms_norm};
use crate::model::{Llama, Track, view};

/// Options of the scoring and training passes.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreOptions {
    /// Logits are divided by this before the softmax (as TRL does with its sampling
    /// temperature, so training log-probs match the sampling distribution). Default 1.
    pub temperature: f64,
    /// Whether to compute per-token entropies (costs one extra pass over each logits chunk).
    pub entropy: bool,
    /// Scored positions per output-projection chunk; `None`: sized so one chunk of f32 logits
    /// takes about 256 MiB.
    pub chunk_tokens: Option<usize>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { temperature: 1.0, entropy: true, chunk_tokens: None }
    }
}

impl ScoreOptions {
    pub(crate) fn chunk(&self, vocab: usize) -> usize {
        self.chunk_tokens.unwrap_or_else(|| ((256usize << 20) / (vocab * 4)).max(1)).max(1)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::arg("temperature", format!("{} is not a positive number", self.temperature)));
        }
        Ok(())
    }
}

/// Log-probabilities (and entropies) of the scored tokens of a [`TokenBatch`].
#[derive(Clone, Debug)]
pub struct TokenScores {
    /// `(batch, completion_len)` f32: `log p(token_t | tokens_<t)` at scored positions, 0
    /// elsewhere.
    pub logprobs: Tensor,
    /// `(batch, completion_len)` f32: entropy of the predictive distribution at scored
    /// positions, 0 elsewhere (all zeros when entropies were not requested).
    pub entropies: Tensor,
    /// `(batch, completion_len)` f32: 1 at scored positions, 0 elsewhere.
    pub mask: Tensor,
    /// `(batch, completion_len)` f32, no gradient: 1 at scored positions whose token is the
    /// most likely one (the argmax; a tie counts), 0 elsewhere: token accuracy.
    pub top1: Tensor,
}

/// Inputs of a forward pass prepared once: embeddings lookup ids, RoPE tables and mask.
pub(crate) struct Prepared {
    pub(crate) ids: Tensor,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    pub(crate) mask: AttnMask,
    pub(crate) rows: Tensor,
    pub(crate) targets: Tensor,
    pub(crate) slots: Vec<u32>,
}

impl Llama {
    pub(crate) fn prepare(&self, batch: &TokenBatch) -> Result<Prepared> {
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = batch.ids().iter().find(|&&t| t >= vocab) {
            return Err(Error::arg(
                "ids",
                format!("token id {bad} is outside the vocabulary (size {vocab})"),
            ));
        }
        let (b, t) = (batch.batch_size(), batch.seq_len());
        let dev = &self.device;
        let ids = Tensor::from_vec(batch.ids().to_vec(), b * t, dev)?;
        let (cos, sin) = self.rope.cos_sin(&batch.positions(), b, t, self.compute_dtype, dev)?;
        let mask = AttnMask::new(batch.has_padding().then(|| batch.attention().to_vec()), t, 0);
        let (rows, targets, slots) = batch.scored_rows();
        let n = rows.len();
        Ok(Prepared {
            ids,
            cos,
            sin,
            mask,
            rows: Tensor::from_vec(rows, n, dev)?,
            targets: Tensor::from_vec(targets, n, dev)?,
            slots,
        })
    }

    /// Token embeddings `(batch, seq, hidden)` in the compute dtype.
    pub(crate) fn embed(&self, ids: &Tensor, batch: usize, track: Track) -> Result<Tensor> {
        let e = view(&self.embed, track, DType::F32)?;
        let x = e.index_select(ids, 0)?.to_dtype(self.compute_dtype)?;
        let (n, d) = x.dims2()?;
        Ok(x.reshape((batch, n / batch, d))?)
    }

    /// No-gradient log-probabilities of the scored tokens, with candle's fused kernels (old and
    /// reference policy log-probs).
    ///
    /// Runs on a rayon worker, so that its parallel ops start from inside rayon's pool.
    pub fn score(&self, batch: &TokenBatch, opts: &ScoreOptions) -> Result<TokenScores> {
        crate::worker::on_worker(|| self.score_here(batch, opts))
    }

    fn score_here(&self, batch: &TokenBatch, opts: &ScoreOptions) -> Result<TokenScores> {
        opts.check()?;
        let p = self.prepare(batch)?;
        let mut x = self.embed(&p.ids, batch.batch_size(), Track::NoGrad)?;
        for layer in &self.layers {
            let w = layer.weights(Track::NoGrad, self.compute_dtype)?;
            let qkv = pre_attention(&self.config, &w, &x, &p.cos, &p.sin, Kernels::Fused)?;
            let o = attention::forward(&qkv.q, &qkv.k, &qkv.v, &p.mask)?.o;
            x = post_attention(&self.config, &w, &x, &o, Kernels::Fused)?;
        }
        let (lp, ent, top1) = self.head_rows(&x, &p, opts, Track::NoGrad, Kernels::Fused, None)?;
        // A NaN or infinite logit makes its row's log-sum-exp, hence the row's log-prob, NaN.
        // (A legitimately impossible token would be -inf; a finite model never gives one.)
        if lp.elem_count() > 0 && !lp.sum_all()?.to_scalar::<f32>()?.is_finite() {
            return Err(Error::NonFiniteLogits {
                context: format!("scoring a batch of {} sequences", batch.batch_size()),
            });
        }
        self.scatter_scores(batch, &p, &lp, ent.as_ref(), &top1)
    }

    /// Log-probabilities as one autograd graph over the whole model: `loss.backward()` on any
    /// function of the result gives every parameter's gradient (collect them with
    /// [`crate::Gradients::accumulate_store`]). Memory grows with the full attention matrices
    /// and every activation; prefer [`Llama::forward_train`] for long sequences.
    pub fn forward_graph(&self, batch: &TokenBatch, opts: &ScoreOptions) -> Result<TokenScores> {
        opts.check()?;
        let p = self.prepare(batch)?;
        let mut x = self.embed(&p.ids, batch.batch_size(), Track::Grad)?;
        for layer in &self.layers {
            let w = layer.weights(Track::Grad, self.compute_dtype)?;
            let qkv = pre_attention(&self.config, &w, &x, &p.cos, &p.sin, Kernels::Differentiable)?;
            let o = attention::forward_graph(&qkv.q, &qkv.k, &qkv.v, &p.mask)?;
            x = post_attention(&self.config, &w, &x, &o, Kernels::Differentiable)?;
        }
        let (lp, ent, top1) = self.head_rows(&x, &p, opts, Track::Grad, Kernels::Differentiable, None)?;
        self.scatter_scores(batch, &p, &lp, ent.as_ref(), &top1)
    }

    /// Full logits `(batch, seq, vocab)` (f32, no gradients) of padded sequences: `ids` and
    /// `attention` are `batch * seq` row-major. For checks against other implementations; the
    /// scoring and sampling paths never build this tensor.
    pub fn logits(&self, ids: &[u32], attention: &[bool], batch: usize) -> Result<Tensor> {
        let seq = ids.len() / batch.max(1);
        let tb = TokenBatch::new(ids.to_vec(), attention.to_vec(), batch, 0, None)?;
        let p = self.prepare(&tb)?;
        let mut x = self.embed(&p.ids, batch, Track::NoGrad)?;
        for layer in &self.layers {
            let w = layer.weights(Track::NoGrad, self.compute_dtype)?;
            let qkv = pre_attention(&self.config, &w, &x, &p.cos, &p.sin, Kernels::Fused)?;
            let o = attention::forward(&qkv.q, &qkv.k, &qkv.v, &p.mask)?.o;
            x = post_attention(&self.config, &w, &x, &o, Kernels::Fused)?;
        }
        let norm = view(&self.norm, Track::NoGrad, DType::F32)?;
        let h = rms_norm(&x, &norm, self.config.rms_norm_eps, self.compute_dtype, Kernels::Fused)?;
        let head = view(self.head_var(), Track::NoGrad, self.compute_dtype)?;
        let logits =
            h.reshape((batch * seq, self.config.hidden_size))?.matmul(&head.t()?)?.to_dtype(DType::F32)?;
        Ok(logits.reshape((batch, seq, self.config.vocab_size))?)
    }

    /// Log-probs (and entropies) of the scored rows of `x` (`(batch, seq, hidden)`), chunk by
    /// chunk, and whether each target was the most likely token; results are `(n_scored,)` f32.
    /// With `keep`, each chunk's f32 logits are pushed there when the fused kernels computed
    /// them (CPU, f32 logits), for the training pass's backward.
    pub(crate) fn head_rows(
        &self,
        x: &Tensor,
        p: &Prepared,
        opts: &ScoreOptions,
        track: Track,
        kernels: Kernels,
        mut keep: Option<&mut Vec<Tensor>>,
    ) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        let d = self.config.hidden_size;
        let (b, t, _) = x.dims3()?;
        let flat = x.reshape((b * t, d))?;
        let n = p.rows.dim(0)?;
        let chunk = opts.chunk(self.config.vocab_size);
        let norm = view(&self.norm, track, DType::F32)?;
        let head = view(self.head_var(), track, self.compute_dtype)?;
        let (mut lps, mut ents, mut top1s) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let h = flat.index_select(&p.rows.narrow(0, start, len)?, 0)?;
            let targets = p.targets.narrow(0, start, len)?;
            let (lp, ent, top1, logits) = self.head_chunk(&h, &targets, &norm, &head, opts, kernels)?;
            if let (Some(keep), Some(logits)) = (keep.as_deref_mut(), logits) {
                keep.push(logits);
            }
            lps.push(lp);
            top1s.push(top1);
            ents.extend(ent);
            start += len;
        }
        let cat = |v: Vec<Tensor>| -> Result<Tensor> {
            Ok(match v.len() {
                0 => Tensor::zeros(0, DType::F32, &self.device)?,
                1 => v.into_iter().next().expect("one chunk"),
                _ => Tensor::cat(&v, 0)?,
            })
        };
        let ent = if opts.entropy { Some(cat(ents)?) } else { None };
        Ok((cat(lps)?, ent, cat(top1s)?))
    }

    /// Final norm, output projection and log-softmax for hidden rows `h` (`(n, hidden)`); with
    /// the fused kernels, also the logits they were computed from (left unchanged).
    pub(crate) fn head_chunk(
        &self,
        h: &Tensor,
        targets: &Tensor,
        norm: &Tensor,
        head: &Tensor,
        opts: &ScoreOptions,
        kernels: Kernels,
    ) -> Result<(Tensor, Option<Tensor>, Tensor, Option<Tensor>)> {
        let hn = rms_norm(h, norm, self.config.rms_norm_eps, self.compute_dtype, kernels)?;
        let mut logits = hn.matmul(&head.t()?)?.to_dtype(DType::F32)?;
        if matches!(kernels, Kernels::Fused) && crate::kernels::usable(&logits) {
            let targets = targets.to_vec1::<u32>()?;
            let (lp, ent, top1) =
                crate::kernels::head_scores(&logits, &targets, opts.temperature, opts.entropy)?;
            return Ok((lp, ent, top1, Some(logits)));
        }
        if opts.temperature != 1.0 {
            logits = (logits / opts.temperature)?;
        }
        // Shift by the (detached) row maximum: the shift cancels in every gradient.
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let z = logits.broadcast_sub(&max)?;
        let e = z.exp()?;
        let sum = e.sum_keepdim(D::Minus1)?;
        let lse = sum.log()?;
        let picked = z.gather(&targets.unsqueeze(1)?, 1)?;
        // `z` is shifted by the row maximum: the target is the most likely token where it is 0.
        let top1 = picked.detach().ge(0f64)?.to_dtype(DType::F32)?.squeeze(1)?;
        let lp = (picked - &lse)?.squeeze(1)?;
        let ent = if opts.entropy {
            // H = lse - E_p[z]
            let mean_z = (e * &z)?.sum_keepdim(D::Minus1)?.broadcast_div(&sum)?;
            Some((lse - mean_z)?.squeeze(1)?)
        } else {
            None
        };
        Ok((lp, ent, top1, None))
    }

    /// Places per-row results into `(batch, completion_len)` tensors (differentiably).
    pub(crate) fn scatter_scores(
        &self,
        batch: &TokenBatch,
        p: &Prepared,
        lp: &Tensor,
        ent: Option<&Tensor>,
        top1: &Tensor,
    ) -> Result<TokenScores> {
        let (b, c) = (batch.batch_size(), batch.completion_len());
        let mask = batch.completion_mask_tensor(&self.device)?;
        let slots = Tensor::from_vec(p.slots.clone(), p.slots.len(), &self.device)?;
        let place = |v: &Tensor| -> Result<Tensor> {
            let zeros = Tensor::zeros(b * c, DType::F32, &self.device)?;
            Ok(zeros.index_add(&slots, v, 0)?.reshape((b, c))?)
        };
        let logprobs = place(lp)?;
        let entropies = match ent {
            Some(e) => place(e)?,
            None => Tensor::zeros((b, c), DType::F32, &self.device)?,
        };
        let top1 = place(top1)?;
        Ok(TokenScores { logprobs, entropies, mask, top1 })
    }
}
