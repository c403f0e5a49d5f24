//! The memory-bounded training pass: per-token log-probs with gradients for every parameter.
//!
//! [`Llama::forward_train`] runs the model without an autograd graph, saving per block either
//! what its hand-written backward pass needs ([`Recompute::Never`]) or only its input and
//! attention result ([`Recompute::Always`]: the rest is recomputed block by block during the
//! backward pass). The returned [`TrainForward`] exposes the log-probs and entropies as leaf
//! tensors: build any loss from them, then [`TrainForward::backward`] propagates it through the
//! output projection (chunk by chunk), the blocks (last to first, attention blockwise) and the
//! embedding. No full attention matrix exists at any time. The scored rows' logits are kept from
//! the forward pass when activations are saved and they fit the same budget (on the CPU in f32;
//! one output-projection product fewer, as PyTorch keeps them); otherwise each chunk's logits
//! are recomputed in the backward pass and the full `(scored rows, vocab)` logits never exist.

use candle_core::{D, DType, Tensor, Var};

use crate::attention::AttnOut;
use crate::batch::TokenBatch;
use crate::block::{BlockCtx, Saved, norm_forward};
use crate::error::{Error, Result};
use crate::grads::Gradients;
use crate::layer::Kernels;
use crate::logprobs::{Prepared, ScoreOptions};
use crate::model::{Llama, Track, view};

/// Whether the training pass recomputes block activations during the backward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Recompute when the saved activations would exceed about 2 GiB (the default); keep the
    /// scored rows' logits when they fit that budget too.
    #[default]
    Auto,
    /// Always recompute (least memory: one block's activations at a time, plus each block's
    /// input and attention output; about one extra forward pass of compute), the logits too.
    Always,
    /// Save every block's activations and the scored rows' logits (fastest; memory grows with
    /// tokens × layers, and with scored tokens × vocabulary).
    Never,
}

/// Bytes of saved activations (and kept logits) above which [`Recompute::Auto`] recomputes.
const SAVED_BUDGET: usize = 2 << 30;

/// Options of [`Llama::forward_train`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// Temperature, entropy and chunking of the output projection.
    pub score: ScoreOptions,
    /// Activation recomputation policy.
    pub recompute: Recompute,
}

enum Kept {
    /// Everything the block's backward pass needs.
    Full(Saved),
    /// The block input and attention result; the rest is recomputed.
    Checkpoint { x: Tensor, attn: AttnOut },
}

/// The result of [`Llama::forward_train`]: scores to build a loss from, plus what the backward
/// pass needs.
pub struct TrainForward<'m> {
    model: &'m Llama,
    prepared: Prepared,
    opts: ScoreOptions,
    kept: Vec<Kept>,
    /// Each output-projection chunk's f32 logits from the forward pass, or empty: recompute.
    logits: Vec<Tensor>,
    last: Tensor,
    logprobs: Var,
    entropies: Var,
    mask: Tensor,
    top1: Tensor,
}

impl Llama {
    /// Training forward pass over `batch`: log-probs and entropies of its scored tokens as leaf
    /// tensors of a new autograd graph (see [`TrainForward`]).
    ///
    /// Runs on a rayon worker, so that its parallel ops start from inside rayon's pool.
    pub fn forward_train(&self, batch: &TokenBatch, opts: &TrainOptions) -> Result<TrainForward<'_>> {
        crate::worker::on_worker(|| self.forward_train_here(batch, opts))
    }

    fn forward_train_here(&self, batch: &TokenBatch, opts: &TrainOptions) -> Result<TrainForward<'_>> {
        opts.score.check()?;
        let p = self.prepare(batch)?;
        let saved = self.saved_bytes(batch.batch_size() * batch.seq_len());
        let logits_bytes = p.rows.dim(0)? * self.config.vocab_size * DType::F32.size_in_bytes();
        let (keep, keep_logits) = match opts.recompute {
            Recompute::Always => (false, false),
            Recompute::Never => (true, true),
            Recompute::Auto => (saved < SAVED_BUDGET, saved + logits_bytes < SAVED_BUDGET),
        };
        let ctx = BlockCtx { cfg: &self.config, cos: &p.cos, sin: &p.sin, mask: &p.mask };
        let mut x = self.embed(&p.ids, batch.batch_size(), Track::NoGrad)?;
        let mut kept = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let w = layer.weights(Track::NoGrad, self.compute_dtype)?;
            let (out, saved) = ctx.forward(&w, &x, None)?;
            kept.push(if keep {
                Kept::Full(saved)
            } else {
                let (x, attn) = saved.into_checkpoint();
                Kept::Checkpoint { x, attn }
            });
            x = out;
        }
        let score = opts.score.clone();
        let mut logits = keep_logits.then(Vec::new);
        let (lp, ent, top1) =
            self.head_rows(&x, &p, &score, Track::NoGrad, Kernels::Fused, logits.as_mut())?;
        let scores = self.scatter_scores(batch, &p, &lp, ent.as_ref(), &top1)?;
        Ok(TrainForward {
            model: self,
            prepared: p,
            opts: score,
            kept,
            logits: logits.unwrap_or_default(),
            last: x,
            logprobs: Var::from_tensor(&scores.logprobs)?,
            entropies: Var::from_tensor(&scores.entropies)?,
            mask: scores.mask,
            top1: scores.top1,
        })
    }

    /// Rough bytes of saved activations with recomputation off.
    fn saved_bytes(&self, tokens: usize) -> usize {
        let c = &self.config;
        let q = c.num_attention_heads * c.head_dim;
        let kv = c.num_key_value_heads * c.head_dim;
        let per_token = 4 * c.hidden_size + 2 * q + 2 * kv + 2 * c.intermediate_size;
        tokens * per_token * self.compute_dtype.size_in_bytes() * c.num_hidden_layers
    }
}

impl TrainForward<'_> {
    /// `(batch, completion_len)` f32 log-probs of scored tokens (0 elsewhere): a leaf of the
    /// loss graph.
    pub fn logprobs(&self) -> &Tensor {
        self.logprobs.as_tensor()
    }

    /// `(batch, completion_len)` f32 entropies at scored positions (0 elsewhere, and all zeros
    /// when [`ScoreOptions::entropy`] is off): a leaf of the loss graph.
    pub fn entropies(&self) -> &Tensor {
        self.entropies.as_tensor()
    }

    /// `(batch, completion_len)` f32 mask of scored positions.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// `(batch, completion_len)` f32: 1 where the scored token is the most likely one (see
    /// [`crate::TokenScores::top1`]).
    pub fn top1(&self) -> &Tensor {
        &self.top1
    }

    /// Back-propagates `loss` (a scalar built from [`Self::logprobs`] and/or
    /// [`Self::entropies`]) through the model and adds every parameter's gradient to `grads`.
    ///
    /// Runs on a rayon worker, so that its parallel ops start from inside rayon's pool.
    pub fn backward(self, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        crate::worker::on_worker(|| self.backward_here(loss, grads))
    }

    fn backward_here(self, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        if loss.elem_count() != 1 {
            return Err(Error::arg("loss", format!("must be a scalar, found shape {:?}", loss.dims())));
        }
        let store = loss.sum_all()?.backward()?;
        let g_lp = store.get(self.logprobs.as_tensor()).cloned();
        let g_ent = store.get(self.entropies.as_tensor()).cloned();
        if g_lp.is_none() && g_ent.is_none() {
            return Err(Error::arg(
                "loss",
                "does not depend on the log-probs or entropies of this forward pass",
            ));
        }
        let m = self.model;
        let p = &self.prepared;
        let dtype = m.compute_dtype;
        let dev = &m.device;
        let slots = Tensor::from_vec(p.slots.clone(), p.slots.len(), dev)?;
        let per_row = |g: Option<Tensor>| -> Result<Option<Tensor>> {
            g.map(|g| Ok(g.flatten_all()?.to_dtype(DType::F32)?.index_select(&slots, 0)?)).transpose()
        };
        let g_lp = per_row(g_lp)?;
        let g_ent = if self.opts.entropy { per_row(g_ent)? } else { None };

        // Output projection, chunk by chunk.
        let (b, t, d) = self.last.dims3()?;
        let flat = self.last.reshape((b * t, d))?;
        let mut dx = Tensor::zeros((b * t, d), DType::F32, dev)?;
        let norm = view(&m.norm, Track::NoGrad, DType::F32)?;
        let head = view(m.head_var(), Track::NoGrad, dtype)?;
        let (mut g_norm, mut g_head) = (None, None);
        let n = p.rows.dim(0)?;
        let chunk = self.opts.chunk(m.config.vocab_size);
        // The forward pass's logits, when it kept every chunk's.
        let chunks = n.div_ceil(chunk.max(1));
        let mut kept_logits = if self.logits.len() == chunks { self.logits } else { Vec::new() }.into_iter();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let rows = p.rows.narrow(0, start, len)?;
            let h = flat.index_select(&rows, 0)?;
            let dh = head_backward(HeadChunk {
                h: &h,
                targets: &p.targets.narrow(0, start, len)?,
                norm: &norm,
                head: &head,
                eps: m.config.rms_norm_eps,
                temperature: self.opts.temperature,
                g_lp: g_lp.as_ref().map(|g| g.narrow(0, start, len)).transpose()?,
                g_ent: g_ent.as_ref().map(|g| g.narrow(0, start, len)).transpose()?,
                g_norm: &mut g_norm,
                g_head: &mut g_head,
                logits: kept_logits.next(),
            })?;
            dx = dx.index_add(&rows, &dh.to_dtype(DType::F32)?, 0)?;
            start += len;
        }
        if let Some(g) = g_norm {
            grads.accumulate(&m.norm, &g)?;
        }
        if let Some(g) = g_head {
            grads.accumulate(m.head_var(), &g)?;
        }
        let mut dx = dx.reshape((b, t, d))?.to_dtype(dtype)?;

        // Blocks, last to first.
        let ctx = BlockCtx { cfg: &m.config, cos: &p.cos, sin: &p.sin, mask: &p.mask };
        for (layer, kept) in m.layers.iter().zip(self.kept).rev() {
            let w = layer.weights(Track::NoGrad, dtype)?;
            let saved = match kept {
                Kept::Full(s) => s,
                Kept::Checkpoint { x, attn } => ctx.forward(&w, &x, Some(attn))?.1,
            };
            dx = ctx.backward(layer, &w, saved, &dx, grads)?;
        }

        // Embeddings: rows of the gradient added at the looked-up ids.
        let e = m.embed.as_tensor();
        let g_embed = Tensor::zeros(e.dims(), DType::F32, dev)?.index_add(
            &p.ids,
            &dx.reshape((b * t, d))?.to_dtype(DType::F32)?,
            0,
        )?;
        grads.accumulate(&m.embed, &g_embed)?;
        Ok(())
    }
}

/// One chunk of the output projection's backward pass.
struct HeadChunk<'a> {
    h: &'a Tensor,
    targets: &'a Tensor,
    norm: &'a Tensor,
    head: &'a Tensor,
    eps: f64,
    temperature: f64,
    g_lp: Option<Tensor>,
    g_ent: Option<Tensor>,
    g_norm: &'a mut Option<Tensor>,
    g_head: &'a mut Option<Tensor>,
    /// The chunk's f32 logits kept from the forward pass (overwritten with their gradient), or
    /// `None`: recompute them.
    logits: Option<Tensor>,
}

/// Takes a chunk's logits (kept, or recomputed) and back-propagates the gradients of its
/// log-probs and entropies: `d logp_t / d z = onehot_t - p`, `d H / d z = -p (log p + H)`.
/// Returns the gradient of the chunk's hidden rows.
fn head_backward(mut c: HeadChunk<'_>) -> Result<Tensor> {
    let dtype = c.head.dtype();
    let normed = norm_forward(c.h, c.norm, c.eps, dtype)?;
    let mut z = match c.logits.take() {
        Some(z) => z,
        None => normed.h.matmul(&c.head.t()?)?.to_dtype(DType::F32)?,
    };
    if crate::kernels::usable(&z) {
        // In place: the fresh logits become their gradient.
        let targets = c.targets.to_vec1::<u32>()?;
        let g_lp = c.g_lp.as_ref().map(Tensor::to_vec1::<f32>).transpose()?;
        let g_ent = c.g_ent.as_ref().map(Tensor::to_vec1::<f32>).transpose()?;
        crate::kernels::head_grad(&z, &targets, c.temperature, g_lp.as_deref(), g_ent.as_deref())?;
        return head_grad_to_inputs(c, &normed, z);
    }
    if c.temperature != 1.0 {
        z = (z / c.temperature)?;
    }
    let (n, vocab) = z.dims2()?;
    let z = z.broadcast_sub(&z.max_keepdim(D::Minus1)?)?;
    let e = z.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    let p = e.broadcast_div(&sum)?;
    let mut dz = Tensor::zeros((n, vocab), DType::F32, z.device())?;
    if let Some(g) = &c.g_lp {
        dz = p.broadcast_mul(&g.neg()?.unsqueeze(1)?)?;
        let at: Vec<u32> = c
            .targets
            .to_vec1::<u32>()?
            .iter()
            .enumerate()
            .map(|(i, &tgt)| (i * vocab) as u32 + tgt)
            .collect();
        let at = Tensor::from_vec(at, n, z.device())?;
        dz = dz.flatten_all()?.index_add(&at, g, 0)?.reshape((n, vocab))?;
    }
    if let Some(g) = &c.g_ent {
        let logp = z.broadcast_sub(&sum.log()?)?;
        let ent = (&p * &logp)?.sum_keepdim(D::Minus1)?.neg()?;
        let d_ent = (&p * logp.broadcast_add(&ent)?)?.broadcast_mul(&g.neg()?.unsqueeze(1)?)?;
        dz = (dz + d_ent)?;
    }
    if c.temperature != 1.0 {
        dz = (dz / c.temperature)?;
    }
    head_grad_to_inputs(c, &normed, dz)
}

/// From the logits' gradient `dz` of a chunk: adds the output projection's and final norm's
/// gradients and returns the gradient of the chunk's hidden rows.
fn head_grad_to_inputs(c: HeadChunk<'_>, normed: &crate::block::Normed, dz: Tensor) -> Result<Tensor> {
    let dtype = c.head.dtype();
    let dz = dz.to_dtype(dtype)?;
    let g_head = dz.t()?.matmul(&normed.h)?;
    *c.g_head = Some(match c.g_head.take() {
        Some(acc) => (acc + g_head.to_dtype(DType::F32)?)?,
        None => g_head.to_dtype(DType::F32)?,
    });
    let dhn = dz.matmul(c.head)?;
    crate::block::norm_backward(c.h, &normed.inv_rms, c.norm, &dhn, c.g_norm)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::config::ModelConfig;
    use crate::model::ModelOptions;

    fn tiny(tied: bool) -> Llama {
        let cfg = ModelConfig {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 40,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            tie_word_embeddings: tied,
            attention_bias: !tied,
            ..ModelConfig::default()
        };
        Llama::new_random(cfg, 3, 0.2, &ModelOptions::default()).unwrap()
    }

    fn batch() -> TokenBatch {
        TokenBatch::from_prompt_completions(
            &[vec![1, 7, 9, 11], vec![3, 4]],
            &[vec![5, 6, 2], vec![8, 8, 9, 10, 2]],
            0,
        )
        .unwrap()
    }

    /// A loss touching both outputs with distinct weights per position.
    fn loss(lp: &Tensor, ent: &Tensor) -> Tensor {
        let (b, c) = lp.dims2().unwrap();
        let w: Vec<f32> = (0..b * c).map(|i| 0.3 + (i as f32 * 0.37).sin()).collect();
        let w = Tensor::from_vec(w, (b, c), &Device::Cpu).unwrap();
        ((lp * &w).unwrap().sum_all().unwrap() + (ent * 0.5).unwrap().sum_all().unwrap()).unwrap()
    }

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        let scale = scale.to_scalar::<f32>().unwrap().max(1e-6);
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        d.to_scalar::<f32>().unwrap() / scale
    }

    #[test]
    fn training_pass_gradients_equal_plain_autograd_for_every_parameter() {
        for (tied, temperature) in [(true, 1.0), (false, 1.0), (false, 0.7)] {
            let m = tiny(tied);
            let b = batch();
            let opts = ScoreOptions { temperature, ..ScoreOptions::default() };
            let g = m.forward_graph(&b, &opts).unwrap();
            let store = loss(&g.logprobs, &g.entropies).backward().unwrap();
            let mut reference = Gradients::new();
            reference.accumulate_store(&store, &m.parameters()).unwrap();
            assert_eq!(reference.len(), m.parameters().len(), "tied={tied}");

            for recompute in [Recompute::Always, Recompute::Never] {
                let fwd = m
                    .forward_train(
                        &b,
                        &TrainOptions {
                            score: ScoreOptions { chunk_tokens: Some(3), ..opts.clone() },
                            recompute,
                        },
                    )
                    .unwrap();
                assert!(max_rel_diff(fwd.logprobs(), &g.logprobs) < 1e-5);
                assert!(max_rel_diff(fwd.entropies(), &g.entropies) < 1e-5);
                // Saved activations keep the logits (8 scored rows in chunks of 3); recomputation
                // recomputes them: both backward paths of the output projection are checked.
                let kept = if recompute == Recompute::Never { 3 } else { 0 };
                assert_eq!(fwd.logits.len(), kept, "{recompute:?}");
                let l = loss(fwd.logprobs(), fwd.entropies());
                let mut grads = Gradients::new();
                fwd.backward(&l, &mut grads).unwrap();
                for (name, var) in m.named_parameters() {
                    let got = grads.get(var).unwrap_or_else(|| panic!("{name}: no gradient"));
                    let want = reference.get(var).unwrap();
                    let nonzero = got.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(nonzero > 0.0, "{name}: zero gradient");
                    let d = max_rel_diff(got, want);
                    assert!(d < 2e-4, "{name} tied={tied} T={temperature} {recompute:?}: rel diff {d}");
                }
            }
        }
    }

    #[test]
    fn no_grad_scoring_matches_the_graph_and_padding_does_not_change_results() {
        let m = tiny(false);
        let b = batch();
        let opts = ScoreOptions::default();
        let s = m.score(&b, &opts).unwrap();
        let g = m.forward_graph(&b, &opts).unwrap();
        assert!(max_rel_diff(&s.logprobs, &g.logprobs) < 1e-5);
        assert!(max_rel_diff(&s.entropies, &g.entropies) < 1e-5);
        // Row 1 scored alone, without any padding, gives the same numbers.
        let alone = TokenBatch::from_prompt_completions(&[vec![3, 4]], &[vec![8, 8, 9, 10, 2]], 0).unwrap();
        let a = m.score(&alone, &opts).unwrap();
        let row1 = s.logprobs.narrow(0, 1, 1).unwrap();
        assert!(max_rel_diff(&row1, &a.logprobs) < 1e-5);
        // Log-probs are log-probabilities; entropies are within [0, ln V].
        let lp = s.logprobs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(lp.iter().all(|&x| x <= 0.0));
        let ent = s.entropies.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(ent.iter().all(|&x| (0.0..=(50f32).ln() + 1e-4).contains(&x)));
        let mask = s.mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(mask, vec![1., 1., 1., 0., 0., 1., 1., 1., 1., 1.]);
    }

    #[test]
    fn loss_must_depend_on_the_pass() {
        let m = tiny(true);
        let fwd = m.forward_train(&batch(), &TrainOptions::default()).unwrap();
        let unrelated = Var::ones((), DType::F32, &Device::Cpu).unwrap();
        let mut grads = Gradients::new();
        let err = fwd.backward(unrelated.as_tensor(), &mut grads).unwrap_err();
        assert!(err.to_string().contains("does not depend"), "{err}");
    }
}
