//! Causal grouped-query attention computed in blocks of queries, with an explicit,
//! memory-efficient backward pass (the FlashAttention recurrences written with tensor ops).
//!
//! Peak memory is `O(batch * heads * block * keys)` instead of `O(batch * heads * seq²)`: the
//! forward pass keeps only the output and one log-sum-exp per query row, and the backward pass
//! recomputes the attention probabilities block by block. Keys of padding positions are masked;
//! query rows with no visible key (left padding) produce finite garbage that nothing reads.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;
use crate::kernels::{self, MASKED, ScoreRows};

/// `(batch, q0, n, kend)` of a mask block.
type BlockKey = (usize, usize, usize, usize);

/// Which keys each query may attend to.
#[derive(Clone, Debug)]
pub(crate) struct AttnMask {
    /// `batch * keys` flags (row-major): `false` for padding keys. `None`: all keys are valid.
    pub(crate) key_valid: Option<Vec<bool>>,
    /// Number of keys (the key sequence length).
    pub(crate) keys: usize,
    /// Absolute position (key index) of query 0: query `i` sees keys `0..=q_offset + i`.
    pub(crate) q_offset: usize,
    /// The last block built, keyed by `(batch, q0, n, kend)`: every layer (and the backward
    /// pass) asks for the same blocks.
    memo: Arc<Mutex<Option<(BlockKey, Tensor)>>>,
}

impl AttnMask {
    /// Causal attention over `keys` keys, query 0 at key position `q_offset`, with the given
    /// key validity (`batch * keys` flags, `None`: all valid).
    pub(crate) fn new(key_valid: Option<Vec<bool>>, keys: usize, q_offset: usize) -> Self {
        Self { key_valid, keys, q_offset, memo: Arc::default() }
    }

    /// Additive mask `(batch, 1, n, kend)` for queries `q0..q0 + n` over keys `0..kend`.
    fn block(&self, batch: usize, q0: usize, n: usize, kend: usize, device: &Device) -> Result<Tensor> {
        let key = (batch, q0, n, kend);
        let mut memo = self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, t)) = memo.as_ref()
            && *k == key
        {
            return Ok(t.clone());
        }
        let t = self.build_block(batch, q0, n, kend, device)?;
        *memo = Some((key, t.clone()));
        Ok(t)
    }

    fn build_block(&self, batch: usize, q0: usize, n: usize, kend: usize, device: &Device) -> Result<Tensor> {
        let rows = if self.key_valid.is_some() { batch } else { 1 };
        let mut m = vec![0f32; rows * n * kend];
        for b in 0..rows {
            for i in 0..n {
                let qpos = self.q_offset + q0 + i;
                let row = &mut m[(b * n + i) * kend..(b * n + i + 1) * kend];
                for (j, slot) in row.iter_mut().enumerate() {
                    let visible = j <= qpos && self.key_valid.as_ref().is_none_or(|kv| kv[b * self.keys + j]);
                    if !visible {
                        *slot = MASKED;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(m, (rows, 1, n, kend), device)?)
    }

    /// The rows of a score block for the fused CPU kernels.
    fn rows(&self, heads: usize, q0: usize, n: usize) -> ScoreRows<'_> {
        ScoreRows {
            heads,
            queries: n,
            first: self.q_offset + q0,
            key_valid: self.key_valid.as_deref(),
            keys: self.keys,
        }
    }

    /// Keys a block of queries ending at (exclusive) `q_end` can see.
    fn key_end(&self, q_end: usize) -> usize {
        (self.q_offset + q_end).min(self.keys)
    }
}

/// A key/value slice ready for a batched matmul. On the CPU, gemm takes any row stride, so a
/// prefix of the KV cache (`narrow` on the sequence axis) is used in place rather than copied
/// (a full copy of the cache per layer and step otherwise); other backends get a contiguous
/// copy.
fn gemm_ready(t: &Tensor) -> Result<Tensor> {
    if t.device().is_cpu() { Ok(t.clone()) } else { Ok(t.contiguous()?) }
}

/// Queries per block so that one block's scores stay near `budget` bytes.
pub(crate) fn block_size(batch: usize, heads: usize, seq: usize, keys: usize) -> usize {
    const BUDGET: usize = 64 << 20;
    // At most 128 queries per block, so that causal blocks skip the keys they cannot see (the
    // score work is then about half of the full square on long sequences).
    const MAX_BLOCK: usize = 128;
    let per_query = (batch * heads * keys * 4).max(1);
    (BUDGET / per_query).clamp(16, seq.clamp(16, MAX_BLOCK))
}

/// Output of [`forward`].
pub(crate) struct AttnOut {
    /// `(batch, heads, seq, head_dim)`, in the dtype of `q`.
    pub(crate) o: Tensor,
    /// Log-sum-exp of each query row's scores, `(batch, heads, seq)` f32.
    pub(crate) lse: Tensor,
}

/// Splits queries `(b, heads, n, hd)` into `(b, kv_heads, rep * n, hd)` so one matmul per key
/// head serves its whole query group.
fn group(q: &Tensor, kv_heads: usize) -> Result<Tensor> {
    let (b, h, n, hd) = q.dims4()?;
    Ok(q.contiguous()?.reshape((b, kv_heads, (h / kv_heads) * n, hd))?)
}

fn ungroup(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, _kv, rn, last) = x.dims4()?;
    let kv = x.dim(1)?;
    Ok(x.reshape((b, heads, rn * kv / heads, last))?)
}

/// Scaled, masked scores in f32 `(b, heads, n, kend)` for one query block.
fn scores(
    qb: &Tensor,
    k: &Tensor,
    mask: &Tensor,
    scale: f64,
    heads: usize,
    kv_heads: usize,
) -> Result<Tensor> {
    let s = group(qb, kv_heads)?.matmul(&k.t()?)?;
    let s = (ungroup(&s, heads)?.to_dtype(DType::F32)? * scale)?;
    Ok(s.broadcast_add(mask)?)
}

/// Attention without gradients: `q` is `(b, heads, t, hd)`, `k`/`v` are `(b, kv_heads, s, hd)`.
pub(crate) fn forward(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask) -> Result<AttnOut> {
    let (b, heads, t, _) = q.dims4()?;
    if t <= crate::decode_attention::DIRECT_QUERIES
        && kernels::usable(q)
        && kernels::usable(k)
        && kernels::usable(v)
    {
        let (o, lse) = crate::decode_attention::attention(q, k, v, mask.rows(heads, 0, t))?;
        return Ok(AttnOut { o, lse: Tensor::from_vec(lse, (b, heads, t), q.device())? });
    }
    forward_blocks(q, k, v, mask, block_size(b, heads, t, mask.keys), kernels::usable(q))
}

/// `fused`: softmax rows through [`kernels::softmax_rows`] (CPU, f32) instead of candle ops.
fn forward_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttnMask,
    block: usize,
    fused: bool,
) -> Result<AttnOut> {
    let (b, heads, t, hd) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut outs = Vec::new();
    let mut lses = Vec::new();
    let mut q0 = 0;
    while q0 < t {
        let n = block.min(t - q0);
        let kend = mask.key_end(q0 + n);
        let (kb, vb) = (gemm_ready(&k.narrow(2, 0, kend)?)?, gemm_ready(&v.narrow(2, 0, kend)?)?);
        if fused {
            let p = group(&q.narrow(2, q0, n)?, kv_heads)?.matmul(&kb.t()?)?;
            let lse = kernels::softmax_rows(&p, scale as f32, mask.rows(heads, q0, n))?;
            outs.push(ungroup(&p.matmul(&vb)?, heads)?);
            lses.push(Tensor::from_vec(lse, (b, heads, n), q.device())?);
            q0 += n;
            continue;
        }
        let m = mask.block(b, q0, n, kend, q.device())?;
        let s = scores(&q.narrow(2, q0, n)?, &kb, &m, scale, heads, kv_heads)?;
        let max = s.max_keepdim(D::Minus1)?;
        let p = s.broadcast_sub(&max)?.exp()?;
        let sum = p.sum_keepdim(D::Minus1)?;
        let p = p.broadcast_div(&sum)?.to_dtype(q.dtype())?;
        let o = group(&p, kv_heads)?.matmul(&vb)?;
        outs.push(ungroup(&o, heads)?);
        lses.push((max + sum.log()?)?.squeeze(D::Minus1)?);
        q0 += n;
    }
    let o = if outs.len() == 1 { outs.pop().expect("one block") } else { Tensor::cat(&outs, 2)? };
    let lse = if lses.len() == 1 { lses.pop().expect("one block") } else { Tensor::cat(&lses, 2)? };
    Ok(AttnOut { o, lse })
}

/// Gradients of attention with respect to `q`, `k` and `v` given the gradient `d_o` of its
/// output, recomputing probabilities block by block from the saved `lse`.
pub(crate) fn backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &AttnOut,
    d_o: &Tensor,
    mask: &AttnMask,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, heads, t, _) = q.dims4()?;
    backward_blocks(q, k, v, out, d_o, mask, block_size(b, heads, t, mask.keys), kernels::usable(q))
}

#[allow(clippy::too_many_arguments)]
fn backward_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &AttnOut,
    d_o: &Tensor,
    mask: &AttnMask,
    block: usize,
    fused: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, heads, t, hd) = q.dims4()?;
    let b = q.dim(0)?;
    let kv_heads = k.dim(1)?;
    let dtype = q.dtype();
    let scale = 1.0 / (hd as f64).sqrt();
    let dk = Tensor::zeros(k.dims(), DType::F32, q.device())?;
    let dv = Tensor::zeros(v.dims(), DType::F32, q.device())?;
    let d_o = d_o.to_dtype(dtype)?;
    // D_i = rowsum(dO_i * O_i), the softmax-backward correction term.
    let delta = (d_o.to_dtype(DType::F32)? * out.o.to_dtype(DType::F32)?)?.sum_keepdim(D::Minus1)?;
    // Per-row statistics for the fused kernels, `(batch, heads, t)` row-major.
    let (lse_all, delta_all) = if fused {
        (out.lse.flatten_all()?.to_vec1::<f32>()?, delta.flatten_all()?.to_vec1::<f32>()?)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut dqs = Vec::new();
    let mut q0 = 0;
    while q0 < t {
        let n = block.min(t - q0);
        let kend = mask.key_end(q0 + n);
        let (kb, vb) = (gemm_ready(&k.narrow(2, 0, kend)?)?, gemm_ready(&v.narrow(2, 0, kend)?)?);
        let qb = q.narrow(2, q0, n)?;
        let dob = d_o.narrow(2, q0, n)?;
        if fused {
            // Row r of the block is (batch * heads + head) * n + i: query q0 + i of that head.
            let pick = |all: &[f32]| -> Vec<f32> {
                (0..b * heads * n).map(|r| all[(r / n) * t + q0 + r % n]).collect()
            };
            let (qg, dog) = (group(&qb, kv_heads)?, group(&dob, kv_heads)?);
            let p = qg.matmul(&kb.t()?)?;
            kernels::probs_rows(&p, scale as f32, mask.rows(heads, q0, n), &pick(&lse_all))?;
            let ds = dog.matmul(&vb.t()?)?;
            kernels::score_grad_rows(&ds, &p, scale as f32, &pick(&delta_all))?;
            dqs.push(ungroup(&ds.matmul(&kb)?, heads)?);
            let acc_k = (dk.narrow(2, 0, kend)? + ds.t()?.matmul(&qg)?)?;
            dk.slice_set(&acc_k, 2, 0)?;
            let acc_v = (dv.narrow(2, 0, kend)? + p.t()?.matmul(&dog)?)?;
            dv.slice_set(&acc_v, 2, 0)?;
            q0 += n;
            continue;
        }
        let m = mask.block(b, q0, n, kend, q.device())?;
        let s = scores(&qb, &kb, &m, scale, heads, kv_heads)?;
        let lse = out.lse.narrow(2, q0, n)?.unsqueeze(D::Minus1)?;
        let p = s.broadcast_sub(&lse)?.exp()?;
        // dP = dO V^T, dS = P * (dP - D).
        let dp = group(&dob, kv_heads)?.matmul(&vb.t()?)?;
        let dp = ungroup(&dp, heads)?.to_dtype(DType::F32)?;
        let ds = (p.clone() * dp.broadcast_sub(&delta.narrow(2, q0, n)?)?)?;
        let ds_g = group(&ds.to_dtype(dtype)?, kv_heads)?;
        dqs.push(ungroup(&(ds_g.matmul(&kb)? * scale)?, heads)?);
        // Key/value gradients sum over the query heads of each group.
        let dkb = (ds_g.t()?.matmul(&group(&qb, kv_heads)?)? * scale)?.to_dtype(DType::F32)?;
        let dvb = group(&p.to_dtype(dtype)?, kv_heads)?
            .t()?
            .matmul(&group(&dob, kv_heads)?)?
            .to_dtype(DType::F32)?;
        let acc_k = (dk.narrow(2, 0, kend)? + dkb)?;
        dk.slice_set(&acc_k, 2, 0)?;
        let acc_v = (dv.narrow(2, 0, kend)? + dvb)?;
        dv.slice_set(&acc_v, 2, 0)?;
        q0 += n;
    }
    let dq = if dqs.len() == 1 { dqs.pop().expect("one block") } else { Tensor::cat(&dqs, 2)? };
    Ok((dq, dk.to_dtype(dtype)?, dv.to_dtype(dtype)?))
}

/// Attention as one differentiable expression (full score matrix in the autograd graph): the
/// reference the blocked passes are tested against, and the path of
/// [`crate::Llama::forward_graph`].
pub(crate) fn forward_graph(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask) -> Result<Tensor> {
    let (b, heads, t, hd) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let m = mask.block(b, 0, t, mask.keys, q.device())?;
    let s = scores(q, k, &m, scale, heads, kv_heads)?;
    // Softmax with the row maximum detached: the shift cancels in the gradient.
    let max = s.max_keepdim(D::Minus1)?.detach();
    let e = s.broadcast_sub(&max)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(q.dtype())?;
    let o = group(&p, kv_heads)?.matmul(&gemm_ready(v)?)?;
    ungroup(&o, heads)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn blocked_attention_and_its_backward_match_autograd() {
        let dev = Device::Cpu;
        let (b, h, kv, t, hd) = (2, 4, 2, 40, 8);
        let q = Var::randn(0f32, 1., (b, h, t, hd), &dev).unwrap();
        let k = Var::randn(0f32, 1., (b, kv, t, hd), &dev).unwrap();
        let v = Var::randn(0f32, 1., (b, kv, t, hd), &dev).unwrap();
        // Row 0 has 5 left-padding positions; row 1 none.
        let mut valid = vec![true; b * t];
        valid[..5].iter_mut().for_each(|x| *x = false);
        let mask = AttnMask::new(Some(valid), t, 0);
        // Padding query rows get no gradient in the model (nothing reads them).
        let d_o = Tensor::randn(0f32, 1., (b, h, t, hd), &dev).unwrap();
        let keep = Tensor::from_vec(
            (0..b * t).map(|i| if i < 5 { 0f32 } else { 1. }).collect::<Vec<_>>(),
            (b, 1, t, 1),
            &dev,
        )
        .unwrap();
        let d_o = d_o.broadcast_mul(&keep).unwrap();
        let reference = forward_graph(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask).unwrap();
        let grads = (reference.clone() * &d_o).unwrap().sum_all().unwrap().backward().unwrap();

        // Blocks of 16 queries: three blocks, the last one partial. Both the candle-op path and
        // the fused CPU kernels.
        for fused in [false, true] {
            let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let out = forward_blocks(qt, kt, vt, &mask, 16, fused).unwrap();
            // Padding query rows are garbage by design; compare valid rows only.
            let o_valid = out.o.narrow(2, 5, t - 5).unwrap();
            let r_valid = reference.narrow(2, 5, t - 5).unwrap();
            assert!(max_diff(&o_valid, &r_valid) < 1e-5, "fused {fused}");
            let (dq, dk, dv) = backward_blocks(qt, kt, vt, &out, &d_o, &mask, 16, fused).unwrap();
            assert!(max_diff(&dq, grads.get(qt).unwrap()) < 1e-4, "fused {fused}");
            assert!(max_diff(&dk, grads.get(kt).unwrap()) < 1e-4, "fused {fused}");
            assert!(max_diff(&dv, grads.get(vt).unwrap()) < 1e-4, "fused {fused}");
        }
    }

    /// Decoding-shaped attention (a few queries, keys read in place from a wider cache, an
    /// offset, padding keys) through the direct kernel equals the blocked matmul path.
    #[test]
    fn direct_decode_attention_equals_the_blocked_path() {
        let dev = Device::Cpu;
        let (b, h, kv, cap, hd) = (2, 6, 2, 40, 16);
        let k_cache = Tensor::randn(0f32, 1., (b, kv, cap, hd), &dev).unwrap();
        let v_cache = Tensor::randn(0f32, 1., (b, kv, cap, hd), &dev).unwrap();
        for (t, keys, offset) in [(1, 30, 29), (3, 30, 27), (5, 12, 11), (2, 7, 2)] {
            let q = Tensor::randn(0f32, 1., (b, h, t, hd), &dev).unwrap();
            let (k, v) = (k_cache.narrow(2, 0, keys).unwrap(), v_cache.narrow(2, 0, keys).unwrap());
            let mut valid = vec![true; b * keys];
            valid[..2].iter_mut().for_each(|x| *x = false);
            valid[keys + 3] = false;
            let mask = AttnMask::new(Some(valid), keys, offset);
            let direct = forward(&q, &k, &v, &mask).unwrap();
            let blocked =
                forward_blocks(&q, &k.contiguous().unwrap(), &v.contiguous().unwrap(), &mask, 16, false)
                    .unwrap();
            assert!(max_diff(&direct.o, &blocked.o) < 1e-5, "t {t}, keys {keys}");
            assert!(max_diff(&direct.lse, &blocked.lse) < 1e-5, "t {t}, keys {keys}");
        }
    }

    #[test]
    fn block_size_bounds_memory() {
        assert_eq!(block_size(1, 9, 100, 100), 100);
        assert_eq!(block_size(1, 9, 512, 512), 128, "causal blocks skip invisible keys");
        let long = block_size(1, 64, 16384, 16384);
        assert!(long * 64 * 16384 * 4 <= 64 << 20, "{long}");
        assert!(long >= 16);
    }
}
