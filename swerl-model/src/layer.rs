//! One transformer block, split around the attention core: the part before it (RMSNorm, q/k/v
//! projections, RoPE) and the part after it (output projection, residual, RMSNorm, SwiGLU MLP,
//! residual). Each part has a differentiable variant built only from ops with a backward pass,
//! and a fused variant for passes without gradients.

use candle_core::{D, DType, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::LayerWeights;
use crate::rope::{rope_diff, rope_fused};

/// Which kernels a pass may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// Only ops with a backward pass (RMSNorm, RoPE and softmax written out).
    Differentiable,
    /// candle's fused ops, which have no backward pass.
    Fused,
}

/// RMSNorm computed in f32 and cast back to `dtype`, then scaled by `weight` (f32), as
/// transformers' `LlamaRMSNorm`.
pub(crate) fn rms_norm(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    dtype: DType,
    kernels: Kernels,
) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    match kernels {
        Kernels::Differentiable => {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inv = (ms + eps)?.sqrt()?.recip()?;
            let normed = x.broadcast_mul(&inv)?;
            Ok(normed.broadcast_mul(weight)?.to_dtype(dtype)?)
        }
        Kernels::Fused => {
            Ok(candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32)?.to_dtype(dtype)?)
        }
    }
}

/// `x @ w.T + b` for `x` of shape `(..., in)` and `w` of shape `(out, in)`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, kernels: Kernels) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = dims[dims.len() - 1];
    let rows = x.elem_count() / inner;
    let y = matmul_t(&x.reshape((rows, inner))?, w, kernels)?;
    let y = match b {
        // Reduced-precision weights (CPU sampling) come with biases of their dtype.
        Some(b) if b.dtype() != y.dtype() => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out_dims = dims;
    let last = out_dims.len() - 1;
    out_dims[last] = w.dim(0)?;
    Ok(y.reshape(out_dims)?)
}

/// `x @ w.T` for a matrix `x`; few rows without gradients take [`crate::kernels::matmul_t_small`],
/// f32 `x` with bf16/f16 weights on the CPU [`crate::matvec::matmul_t_half`].
pub(crate) fn matmul_t(x: &Tensor, w: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if crate::kernels::usable(x) && crate::matvec::is_half_weight(w) && w.is_contiguous() {
        return crate::matvec::matmul_t_half(x, w);
    }
    if kernels == Kernels::Fused
        && x.dim(0)? <= crate::kernels::SMALL_ROWS
        && crate::kernels::usable(x)
        && crate::kernels::usable(w)
        && w.is_contiguous()
    {
        return crate::kernels::matmul_t_small(&x.contiguous()?, w);
    }
    Ok(x.matmul(&w.t()?)?)
}

/// Queries, keys and values of one block.
pub(crate) struct Qkv {
    /// `(batch, heads, seq, head_dim)`.
    pub(crate) q: Tensor,
    /// `(batch, kv_heads, seq, head_dim)`.
    pub(crate) k: Tensor,
    /// `(batch, kv_heads, seq, head_dim)`.
    pub(crate) v: Tensor,
}

/// RMSNorm, q/k/v projections and RoPE for `x` of shape `(batch, seq, hidden)`; `cos`/`sin` are
/// `(batch, seq, head_dim / 2)`.
pub(crate) fn pre_attention(
    cfg: &ModelConfig,
    w: &LayerWeights,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    kernels: Kernels,
) -> Result<Qkv> {
    let (b, t, _) = x.dims3()?;
    let dtype = x.dtype();
    let h = rms_norm(x, &w.input_norm, cfg.rms_norm_eps, dtype, kernels)?;
    let hd = cfg.head_dim;
    let heads = |y: Tensor, n: usize| -> Result<Tensor> {
        Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
    };
    let (nq, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let (q, k, v) = match &w.fused {
        Some(f) => {
            let y = linear(&h, &f.qkv, f.qkv_bias.as_ref(), kernels)?;
            (
                heads(y.narrow(D::Minus1, 0, nq * hd)?, nq)?,
                heads(y.narrow(D::Minus1, nq * hd, nkv * hd)?, nkv)?,
                heads(y.narrow(D::Minus1, (nq + nkv) * hd, nkv * hd)?, nkv)?,
            )
        }
        None => (
            heads(linear(&h, &w.q, w.q_bias.as_ref(), kernels)?, nq)?,
            heads(linear(&h, &w.k, w.k_bias.as_ref(), kernels)?, nkv)?,
            heads(linear(&h, &w.v, w.v_bias.as_ref(), kernels)?, nkv)?,
        ),
    };
    let (q, k) = match kernels {
        Kernels::Differentiable => (rope_diff(&q, cos, sin)?, rope_diff(&k, cos, sin)?),
        Kernels::Fused => (rope_fused(&q, cos, sin)?, rope_fused(&k, cos, sin)?),
    };
    Ok(Qkv { q, k, v })
}

/// Output projection of the attention result `o` (`(batch, heads, seq, head_dim)`), residual,
/// RMSNorm, SwiGLU MLP and residual; `x` is the block input `(batch, seq, hidden)`.
pub(crate) fn post_attention(
    cfg: &ModelConfig,
    w: &LayerWeights,
    x: &Tensor,
    o: &Tensor,
    kernels: Kernels,
) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let dtype = x.dtype();
    let o = o.transpose(1, 2)?.reshape((b, t, cfg.num_attention_heads * cfg.head_dim))?;
    let attn = linear(&o, &w.o, w.o_bias.as_ref(), kernels)?;
    let x1 = (x + attn)?;
    let h = rms_norm(&x1, &w.post_norm, cfg.rms_norm_eps, dtype, kernels)?;
    let (gate, up) = match &w.fused {
        Some(f) => {
            let y = linear(&h, &f.gate_up, f.gate_up_bias.as_ref(), kernels)?;
            let ni = cfg.intermediate_size;
            (y.narrow(D::Minus1, 0, ni)?.contiguous()?, y.narrow(D::Minus1, ni, ni)?.contiguous()?)
        }
        None => (
            linear(&h, &w.gate, w.gate_bias.as_ref(), kernels)?,
            linear(&h, &w.up, w.up_bias.as_ref(), kernels)?,
        ),
    };
    let act = match kernels {
        Kernels::Fused if crate::kernels::usable(&gate) => crate::kernels::swiglu(&gate, &up)?,
        _ => (gate.silu()? * up)?,
    };
    let mlp = linear(&act, &w.down, w.down_bias.as_ref(), kernels)?;
    debug_assert_eq!(mlp.dims(), &[b, t, d]);
    Ok((x1 + mlp)?)
}
