//! One transformer block with a hand-written backward pass, for training.
//!
//! The forward pass uses candle's fused kernels and saves what the backward pass needs (or only
//! the block input and attention output, when activations are recomputed); the backward pass is
//! written out op by op (matrix products, RMSNorm, SwiGLU, RoPE, blockwise attention), so no
//! autograd graph, no zero-filled gradient buffers and no fused op without a backward are
//! involved. [`crate::Llama::forward_graph`] is the autograd reference it is tested against.

use candle_core::{D, DType, Tensor};

use crate::attention::{self, AttnMask, AttnOut};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::grads::Gradients;
use crate::model::{LayerVars, LayerWeights};

/// RMSNorm with its inverse root-mean-square kept for the backward pass.
pub(crate) struct Normed {
    /// `weight * x / rms(x)` in the compute dtype.
    pub(crate) h: Tensor,
    /// `1 / rms(x)`, f32, `(..., 1)`.
    pub(crate) inv_rms: Tensor,
}

/// Forward RMSNorm of `x` (any float dtype) with an f32 `weight`, output in `dtype`.
pub(crate) fn norm_forward(x: &Tensor, weight: &Tensor, eps: f64, dtype: DType) -> Result<Normed> {
    let x32 = x.to_dtype(DType::F32)?;
    let inv_rms = (x32.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    let h = candle_nn::ops::rms_norm(&x32.contiguous()?, weight, eps as f32)?.to_dtype(dtype)?;
    Ok(Normed { h, inv_rms })
}

/// Backward RMSNorm: gradient of the input from `dh`, adding the weight's gradient to `dw`.
pub(crate) fn norm_backward(
    x: &Tensor,
    inv_rms: &Tensor,
    weight: &Tensor,
    dh: &Tensor,
    dw: &mut Option<Tensor>,
) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let xhat = x.to_dtype(DType::F32)?.broadcast_mul(inv_rms)?;
    let dh = dh.to_dtype(DType::F32)?;
    let gw = (&dh * &xhat)?.reshape(((), d))?.sum(0)?;
    *dw = Some(match dw.take() {
        Some(acc) => (acc + gw)?,
        None => gw,
    });
    let dxhat = dh.broadcast_mul(weight)?;
    let m = (&dxhat * &xhat)?.mean_keepdim(D::Minus1)?;
    Ok(dxhat.broadcast_sub(&xhat.broadcast_mul(&m)?)?.broadcast_mul(inv_rms)?.to_dtype(x.dtype())?)
}

/// `x @ w.T (+ b)` for 2-D `x`.
fn linear2(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// Gradients of `y = x @ w.T + b`: returns `dx`, and the weight and bias gradients.
fn linear2_backward(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let dx = dy.matmul(w)?;
    let dw = dy.t()?.matmul(x)?;
    let db = if bias { Some(dy.to_dtype(DType::F32)?.sum(0)?) } else { None };
    Ok((dx, dw, db))
}

/// What a block's backward pass needs from its forward pass.
pub(crate) struct Saved {
    x: Tensor,
    inv_rms1: Tensor,
    h1: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn: AttnOut,
    x1: Tensor,
    inv_rms2: Tensor,
    h2: Tensor,
    gate: Tensor,
    up: Tensor,
}

/// Inputs shared by every block of one pass.
pub(crate) struct BlockCtx<'a> {
    pub(crate) cfg: &'a ModelConfig,
    pub(crate) cos: &'a Tensor,
    pub(crate) sin: &'a Tensor,
    pub(crate) mask: &'a AttnMask,
}

impl BlockCtx<'_> {
    /// Runs the block on `x` (`(batch, seq, hidden)`); `attn` reuses an attention result
    /// computed before (activation recomputation). Returns the output and the saved state.
    pub(crate) fn forward(
        &self,
        w: &LayerWeights,
        x: &Tensor,
        attn: Option<AttnOut>,
    ) -> Result<(Tensor, Saved)> {
        let cfg = self.cfg;
        let (b, t, d) = x.dims3()?;
        let dtype = w.q.dtype();
        let hd = cfg.head_dim;
        let n1 = norm_forward(x, &w.input_norm, cfg.rms_norm_eps, dtype)?;
        let h1 = n1.h.reshape((b * t, d))?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(linear2(&h1, &w.q, w.q_bias.as_ref())?, cfg.num_attention_heads)?;
        let k = heads(linear2(&h1, &w.k, w.k_bias.as_ref())?, cfg.num_key_value_heads)?;
        let v = heads(linear2(&h1, &w.v, w.v_bias.as_ref())?, cfg.num_key_value_heads)?;
        let q = candle_nn::rotary_emb::rope(&q, self.cos, self.sin)?;
        let k = candle_nn::rotary_emb::rope(&k, self.cos, self.sin)?;
        let attn = match attn {
            Some(a) => a,
            None => attention::forward(&q, &k, &v, self.mask)?,
        };
        let o = attn.o.transpose(1, 2)?.reshape((b * t, cfg.num_attention_heads * hd))?;
        let x1 = (x + linear2(&o, &w.o, w.o_bias.as_ref())?.reshape((b, t, d))?)?;
        let n2 = norm_forward(&x1, &w.post_norm, cfg.rms_norm_eps, dtype)?;
        let h2 = n2.h.reshape((b * t, d))?;
        let gate = linear2(&h2, &w.gate, w.gate_bias.as_ref())?;
        let up = linear2(&h2, &w.up, w.up_bias.as_ref())?;
        let act = if crate::kernels::usable(&gate) {
            crate::kernels::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * &up)?
        };
        let out = (&x1 + linear2(&act, &w.down, w.down_bias.as_ref())?.reshape((b, t, d))?)?;
        let saved = Saved {
            x: x.clone(),
            inv_rms1: n1.inv_rms,
            h1,
            q,
            k,
            v,
            attn,
            x1,
            inv_rms2: n2.inv_rms,
            h2,
            gate,
            up,
        };
        Ok((out, saved))
    }

    /// Back-propagates `dout` through the block: adds every parameter's gradient to `grads`
    /// and returns the gradient of the block input.
    pub(crate) fn backward(
        &self,
        vars: &LayerVars,
        w: &LayerWeights,
        s: Saved,
        dout: &Tensor,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let cfg = self.cfg;
        let (b, t, d) = s.x.dims3()?;
        let hd = cfg.head_dim;
        let dtype = w.q.dtype();
        let dout = dout.to_dtype(dtype)?.reshape((b * t, d))?;
        let mut put = |var: &Option<candle_core::Var>, g: Option<Tensor>| -> Result<()> {
            if let (Some(var), Some(g)) = (var, g) {
                grads.accumulate(var, &g)?;
            }
            Ok(())
        };

        // MLP: out = x1 + down(silu(gate) * up).
        let fused = crate::kernels::usable(&s.gate);
        let (act, sig) = if fused {
            (crate::kernels::swiglu(&s.gate, &s.up)?, None)
        } else {
            let sig = candle_nn::ops::sigmoid(&s.gate)?;
            ((&s.gate * &sig)?.mul(&s.up)?, Some(sig))
        };
        let (d_act, g_down, gb_down) = linear2_backward(&act, &w.down, &dout, w.down_bias.is_some())?;
        put(&Some(vars.down.clone()), Some(g_down))?;
        put(&vars.down_bias, gb_down)?;
        let (d_gate, d_up) = match sig {
            None => crate::kernels::swiglu_backward(&s.gate, &s.up, &d_act)?,
            Some(sig) => {
                let d_up = (&d_act * (&s.gate * &sig)?)?;
                // silu'(g) = s * (1 + g * (1 - s))
                let dsilu = (&sig * (&s.gate * sig.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)?;
                ((&d_act * &s.up)?.mul(&dsilu)?, d_up)
            }
        };
        let (dh2_g, g_gate, gb_gate) = linear2_backward(&s.h2, &w.gate, &d_gate, w.gate_bias.is_some())?;
        let (dh2_u, g_up, gb_up) = linear2_backward(&s.h2, &w.up, &d_up, w.up_bias.is_some())?;
        put(&Some(vars.gate.clone()), Some(g_gate))?;
        put(&vars.gate_bias, gb_gate)?;
        put(&Some(vars.up.clone()), Some(g_up))?;
        put(&vars.up_bias, gb_up)?;
        let dh2 = (dh2_g + dh2_u)?.reshape((b, t, d))?;
        let mut g_norm2 = None;
        let dx1_norm = norm_backward(&s.x1, &s.inv_rms2, &w.post_norm, &dh2, &mut g_norm2)?;
        put(&Some(vars.post_norm.clone()), g_norm2)?;
        let dx1 = (dout.reshape((b, t, d))? + dx1_norm)?;

        // Attention output projection: x1 = x + o_proj(attn).
        let heads_q = cfg.num_attention_heads;
        let o = s.attn.o.transpose(1, 2)?.reshape((b * t, heads_q * hd))?;
        let dx1_flat = dx1.reshape((b * t, d))?;
        let (d_o, g_o, gb_o) = linear2_backward(&o, &w.o, &dx1_flat, w.o_bias.is_some())?;
        put(&Some(vars.o.clone()), Some(g_o))?;
        put(&vars.o_bias, gb_o)?;
        let d_o = d_o.reshape((b, t, heads_q, hd))?.transpose(1, 2)?.contiguous()?;
        let (dq, dk, dv) = attention::backward(&s.q, &s.k, &s.v, &s.attn, &d_o, self.mask)?;
        // RoPE is a rotation: its transpose rotates by the opposite angle.
        let neg_sin = self.sin.neg()?;
        let dq = candle_nn::rotary_emb::rope(&dq.contiguous()?, self.cos, &neg_sin)?;
        let dk = candle_nn::rotary_emb::rope(&dk.contiguous()?, self.cos, &neg_sin)?;
        let flat =
            |g: Tensor, n: usize| -> Result<Tensor> { Ok(g.transpose(1, 2)?.reshape((b * t, n * hd))?) };
        let kvh = cfg.num_key_value_heads;
        let (dh1_q, g_q, gb_q) = linear2_backward(&s.h1, &w.q, &flat(dq, heads_q)?, w.q_bias.is_some())?;
        let (dh1_k, g_k, gb_k) = linear2_backward(&s.h1, &w.k, &flat(dk, kvh)?, w.k_bias.is_some())?;
        let (dh1_v, g_v, gb_v) = linear2_backward(&s.h1, &w.v, &flat(dv, kvh)?, w.v_bias.is_some())?;
        put(&Some(vars.q.clone()), Some(g_q))?;
        put(&vars.q_bias, gb_q)?;
        put(&Some(vars.k.clone()), Some(g_k))?;
        put(&vars.k_bias, gb_k)?;
        put(&Some(vars.v.clone()), Some(g_v))?;
        put(&vars.v_bias, gb_v)?;
        let dh1 = ((dh1_q + dh1_k)? + dh1_v)?.reshape((b, t, d))?;
        let mut g_norm1 = None;
        let dx_norm = norm_backward(&s.x, &s.inv_rms1, &w.input_norm, &dh1, &mut g_norm1)?;
        put(&Some(vars.input_norm.clone()), g_norm1)?;
        Ok((dx1 + dx_norm)?)
    }
}

impl Saved {
    /// Drops everything but the block input and the attention result (kept for recomputing
    /// the rest in the backward pass).
    pub(crate) fn into_checkpoint(self) -> (Tensor, AttnOut) {
        (self.x, self.attn)
    }
}
