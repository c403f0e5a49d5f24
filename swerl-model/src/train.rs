//! The memory-bounded training pass: per-token log-probs with gradients for every parameter.
//!
//! [`Llama::forward_train`] runs the model without an autograd graph and keeps, per block, only
//! its input, its attention output and one log-sum-exp per query row (or, with recomputation
//! off, the block's graph). The returned [`TrainForward`] exposes the log-probs and entropies as
//! leaf tensors: build any loss from them, then [`TrainForward::backward`] propagates the loss
//! back block by block, recomputing each block's projections from its saved input
//! (activation recomputation), running the attention backward blockwise, and
//! recomputing the output projection chunk by chunk, so neither full logits nor full attention
//! matrices ever exist.

use candle_core::{DType, Tensor, Var};

use crate::attention::{self, AttnOut};
use crate::batch::TokenBatch;
use crate::error::{Error, Result};
use crate::grads::Gradients;
use crate::layer::{Kernels, Qkv, post_attention, pre_attention};
use crate::logprobs::{Prepared, ScoreOptions};
use crate::model::{Llama, Track, view};

/// Whether the training pass recomputes block activations during the backward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Recompute when the kept graphs would exceed about 2 GiB (the default).
    #[default]
    Auto,
    /// Always recompute (least memory; about one extra forward pass of compute).
    Always,
    /// Keep every block's graph (fastest; memory grows with tokens × layers).
    Never,
}

/// Options of [`Llama::forward_train`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// Temperature, entropy and chunking of the output projection.
    pub score: ScoreOptions,
    /// Activation recomputation policy.
    pub recompute: Recompute,
}

enum Saved {
    /// Block input and attention result; projections are recomputed in the backward pass.
    Recompute { x: Tensor, attn: AttnOut },
    /// The block's autograd graphs, kept from the forward pass.
    Kept {
        x: Var,
        qkv: Qkv,
        o: Var,
        attn: AttnOut,
        out: Tensor,
    },
}

/// The result of [`Llama::forward_train`]: scores to build a loss from, plus what the backward
/// pass needs.
pub struct TrainForward<'m> {
    model: &'m Llama,
    prepared: Prepared,
    opts: ScoreOptions,
    batch: usize,
    saved: Vec<Saved>,
    last: Tensor,
    logprobs: Var,
    entropies: Var,
    mask: Tensor,
}

impl Llama {
    /// Training forward pass over `batch`: log-probs and entropies of its scored tokens as leaf
    /// tensors of a new autograd graph (see [`TrainForward`]).
    pub fn forward_train(
        &self,
        batch: &TokenBatch,
        opts: &TrainOptions,
    ) -> Result<TrainForward<'_>> {
        let p = self.prepare(batch)?;
        let keep = match opts.recompute {
            Recompute::Always => false,
            Recompute::Never => true,
            Recompute::Auto => self.graph_bytes(batch.batch_size() * batch.seq_len()) < 2 << 30,
        };
        let mut x = self.embed(&p.ids, batch.batch_size(), Track::NoGrad)?;
        let mut saved = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            if keep {
                let w = layer.weights(Track::Grad, self.compute_dtype)?;
                let xv = Var::from_tensor(&x)?;
                let qkv = pre_attention(
                    &self.config,
                    &w,
                    xv.as_tensor(),
                    &p.cos,
                    &p.sin,
                    Kernels::Differentiable,
                )?;
                let attn =
                    attention::forward(&qkv.q.detach(), &qkv.k.detach(), &qkv.v.detach(), &p.mask)?;
                let o = Var::from_tensor(&attn.o)?;
                let out = post_attention(
                    &self.config,
                    &w,
                    xv.as_tensor(),
                    o.as_tensor(),
                    Kernels::Differentiable,
                )?;
                x = out.detach();
                saved.push(Saved::Kept {
                    x: xv,
                    qkv,
                    o,
                    attn,
                    out,
                });
            } else {
                let w = layer.weights(Track::NoGrad, self.compute_dtype)?;
                let qkv = pre_attention(&self.config, &w, &x, &p.cos, &p.sin, Kernels::Fused)?;
                let attn = attention::forward(&qkv.q, &qkv.k, &qkv.v, &p.mask)?;
                let next = post_attention(&self.config, &w, &x, &attn.o, Kernels::Fused)?;
                saved.push(Saved::Recompute {
                    x: std::mem::replace(&mut x, next),
                    attn,
                });
            }
        }
        let opts_s = opts.score.clone();
        let (lp, ent) = self.head_rows(&x, &p, &opts_s, Track::NoGrad, Kernels::Fused)?;
        let scores = self.scatter_scores(batch, &p, &lp, ent.as_ref())?;
        Ok(TrainForward {
            model: self,
            prepared: p,
            opts: opts_s,
            batch: batch.batch_size(),
            saved,
            last: x,
            logprobs: Var::from_tensor(&scores.logprobs)?,
            entropies: Var::from_tensor(&scores.entropies)?,
            mask: scores.mask,
        })
    }

    /// Rough bytes of autograd graph kept per block when recomputation is off.
    fn graph_bytes(&self, tokens: usize) -> usize {
        let c = &self.config;
        let per_token = 24 * c.hidden_size + 6 * c.intermediate_size;
        tokens * per_token * 4 * c.num_hidden_layers
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

    /// Back-propagates `loss` (a scalar built from [`Self::logprobs`] and/or
    /// [`Self::entropies`]) through the model and adds every parameter's gradient to `grads`.
    pub fn backward(self, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        if loss.elem_count() != 1 {
            return Err(Error::arg(
                "loss",
                format!("must be a scalar, found shape {:?}", loss.dims()),
            ));
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
            g.map(|g| {
                Ok(g.flatten_all()?
                    .to_dtype(DType::F32)?
                    .index_select(&slots, 0)?)
            })
            .transpose()
        };
        let g_lp = per_row(g_lp)?;
        let g_ent = if self.opts.entropy {
            per_row(g_ent)?
        } else {
            None
        };

        // Output projection, chunk by chunk.
        let (b, t, d) = self.last.dims3()?;
        let flat = self.last.reshape((b * t, d))?;
        let mut dx = Tensor::zeros((b * t, d), DType::F32, dev)?;
        let norm = view(&m.norm, Track::Grad, DType::F32)?;
        let head = view(m.head_var(), Track::Grad, dtype)?;
        let head_vars = [m.norm.clone(), m.head_var().clone()];
        let n = p.rows.dim(0)?;
        let chunk = self.opts.chunk(m.config.vocab_size);
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let rows = p.rows.narrow(0, start, len)?;
            let h = Var::from_tensor(&flat.index_select(&rows, 0)?)?;
            let targets = p.targets.narrow(0, start, len)?;
            let (lp, ent) = m.head_chunk(
                h.as_tensor(),
                &targets,
                &norm,
                &head,
                &self.opts,
                Kernels::Differentiable,
            )?;
            let mut surrogate = Tensor::zeros((), DType::F32, dev)?;
            if let Some(g) = &g_lp {
                surrogate = (surrogate + (lp * g.narrow(0, start, len)?)?.sum_all()?)?;
            }
            if let (Some(g), Some(e)) = (&g_ent, ent) {
                surrogate = (surrogate + (e * g.narrow(0, start, len)?)?.sum_all()?)?;
            }
            let store = surrogate.backward()?;
            grads.accumulate_store(&store, &head_vars)?;
            if let Some(gh) = store.get(h.as_tensor()) {
                dx = dx.index_add(&rows, &gh.to_dtype(DType::F32)?, 0)?;
            }
            start += len;
        }
        let mut dx = dx.reshape((b, t, d))?.to_dtype(dtype)?;

        // Blocks, last to first.
        for (layer, saved) in m.layers.iter().zip(self.saved).rev() {
            let post_vars: Vec<Var> = layer.post_attention_vars().into_iter().cloned().collect();
            let pre_vars: Vec<Var> = layer.pre_attention_vars().into_iter().cloned().collect();
            let (x, qkv, o, attn, out) = match saved {
                Saved::Kept {
                    x,
                    qkv,
                    o,
                    attn,
                    out,
                } => (x, qkv, o, attn, out),
                Saved::Recompute { x, attn } => {
                    let w = layer.weights(Track::Grad, dtype)?;
                    let x = Var::from_tensor(&x)?;
                    let qkv = pre_attention(
                        &m.config,
                        &w,
                        x.as_tensor(),
                        &p.cos,
                        &p.sin,
                        Kernels::Differentiable,
                    )?;
                    let o = Var::from_tensor(&attn.o)?;
                    let out = post_attention(
                        &m.config,
                        &w,
                        x.as_tensor(),
                        o.as_tensor(),
                        Kernels::Differentiable,
                    )?;
                    (x, qkv, o, attn, out)
                }
            };
            // After the attention core: gradients of o_proj, norm, MLP, the attention output
            // and (through the residual) the block input.
            let store = (out * &dx)?.sum_all()?.backward()?;
            grads.accumulate_store(&store, &post_vars)?;
            let d_o = store.get(o.as_tensor()).cloned().ok_or_else(|| {
                candle_core::Error::Msg("attention output has no gradient".into())
            })?;
            let dx_post = store.get(x.as_tensor()).cloned();
            drop(store);
            // The attention core, blockwise.
            let (dq, dk, dv) = attention::backward(
                &qkv.q.detach(),
                &qkv.k.detach(),
                &qkv.v.detach(),
                &attn,
                &d_o,
                &p.mask,
            )?;
            // Before the attention core: norm and q/k/v projections.
            let surrogate = ((&qkv.q * dq)?.sum_all()?
                + (&qkv.k * dk)?.sum_all()?
                + (&qkv.v * dv)?.sum_all()?)?;
            let store = surrogate.to_dtype(DType::F32)?.backward()?;
            grads.accumulate_store(&store, &pre_vars)?;
            let dx_pre = store.get(x.as_tensor()).cloned();
            dx = match (dx_post, dx_pre) {
                (Some(a), Some(b)) => (a + b)?,
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => dx.zeros_like()?,
            };
        }

        // Embeddings.
        let e = view(&m.embed, Track::Grad, DType::F32)?;
        let x0 = e.index_select(&p.ids, 0)?.to_dtype(dtype)?;
        let x0 = x0.reshape((self.batch, x0.dim(0)? / self.batch, x0.dim(1)?))?;
        let store = (x0 * dx)?.sum_all()?.to_dtype(DType::F32)?.backward()?;
        grads.accumulate_store(&store, std::slice::from_ref(&m.embed))?;
        Ok(())
    }
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
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        d.to_scalar::<f32>().unwrap() / scale
    }

    #[test]
    fn training_pass_gradients_equal_plain_autograd_for_every_parameter() {
        for tied in [true, false] {
            let m = tiny(tied);
            let b = batch();
            let opts = ScoreOptions::default();
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
                            score: ScoreOptions {
                                chunk_tokens: Some(3),
                                ..opts.clone()
                            },
                            recompute,
                        },
                    )
                    .unwrap();
                assert!(max_rel_diff(fwd.logprobs(), &g.logprobs) < 1e-5);
                assert!(max_rel_diff(fwd.entropies(), &g.entropies) < 1e-5);
                let l = loss(fwd.logprobs(), fwd.entropies());
                let mut grads = Gradients::new();
                fwd.backward(&l, &mut grads).unwrap();
                for (name, var) in m.named_parameters() {
                    let got = grads
                        .get(var)
                        .unwrap_or_else(|| panic!("{name}: no gradient"));
                    let want = reference.get(var).unwrap();
                    let nonzero = got
                        .abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    assert!(nonzero > 0.0, "{name}: zero gradient");
                    let d = max_rel_diff(got, want);
                    assert!(d < 2e-4, "{name} tied={tied} {recompute:?}: rel diff {d}");
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
        let alone =
            TokenBatch::from_prompt_completions(&[vec![3, 4]], &[vec![8, 8, 9, 10, 2]], 0).unwrap();
        let a = m.score(&alone, &opts).unwrap();
        let row1 = s.logprobs.narrow(0, 1, 1).unwrap();
        assert!(max_rel_diff(&row1, &a.logprobs) < 1e-5);
        // Log-probs are log-probabilities; entropies are within [0, ln V].
        let lp = s.logprobs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(lp.iter().all(|&x| x <= 0.0));
        let ent = s.entropies.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            ent.iter()
                .all(|&x| (0.0..=(50f32).ln() + 1e-4).contains(&x))
        );
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
