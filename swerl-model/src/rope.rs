//! Rotary position embeddings (half-split layout, as Hugging Face Llama), with Llama 3 and linear
//! frequency scaling.

use candle_core::{DType, Device, Tensor};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;

/// Inverse frequencies of one attention head, computed in `f32` exactly as transformers does.
#[derive(Clone, Debug)]
pub(crate) struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub(crate) fn new(cfg: &ModelConfig) -> Self {
        Self { inv_freq: inv_freq(cfg) }
    }
}

/// Inverse frequencies of one head, computed in `f32` as transformers does (Llama 3 scaling
/// from `_compute_llama3_parameters`).
pub(crate) fn inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let dim = cfg.head_dim;
    let base = cfg.rope_theta as f32;
    let mut inv_freq: Vec<f32> =
        (0..dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / dim as f32)).collect();
    match &cfg.rope_scaling {
        None => {}
        Some(RopeScaling::Linear { factor }) => {
            let factor = *factor as f32;
            inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let factor = *factor as f32;
            let (low, high) = (*low_freq_factor as f32, *high_freq_factor as f32);
            let old_len = *original_max_position_embeddings as f32;
            let low_freq_wavelen = old_len / low;
            let high_freq_wavelen = old_len / high;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                let scaled = if wavelen > low_freq_wavelen { *f / factor } else { *f };
                let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                *f = if medium {
                    let smooth = (old_len / wavelen - low) / (high - low);
                    (1.0 - smooth) * scaled / factor + smooth * scaled
                } else {
                    scaled
                };
            }
        }
    }
    inv_freq
}

impl Rope {
    /// `cos` and `sin` of shape `(batch, seq, head_dim / 2)` for the given positions (row-major,
    /// `batch * seq` entries), in `dtype`.
    pub(crate) fn cos_sin(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (batch, seq, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (batch, seq, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Differentiable half-split RoPE: `x` is `(batch, heads, seq, head_dim)`, `cos`/`sin` are
/// `(batch, seq, head_dim / 2)`.
pub(crate) fn rope_diff(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    let cos = cos.unsqueeze(1)?;
    let sin = sin.unsqueeze(1)?;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[a, b], 3)?)
}

/// Fused (no-gradient) half-split RoPE; same contract as [`rope_diff`].
pub(crate) fn rope_fused(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_matches_transformers_formula() {
        let cfg = ModelConfig {
            head_dim: 128,
            rope_theta: 500_000.0,
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            ..ModelConfig::default()
        };
        let r = Rope::new(&cfg);
        // High frequencies are untouched, low ones divided by the factor (values from
        // transformers' `_compute_llama3_parameters`).
        assert_eq!(r.inv_freq[0], 1.0);
        let plain = 1.0 / 500_000f32.powf(126.0 / 128.0);
        assert!((r.inv_freq[63] - plain / 8.0).abs() < 1e-12);
        // A medium frequency is smoothly interpolated between the two.
        let i = 30;
        let f = 1.0 / 500_000f32.powf(2.0 * i as f32 / 128.0);
        assert!(r.inv_freq[i] < f && r.inv_freq[i] > f / 8.0, "{}", r.inv_freq[i]);
    }

    #[test]
    fn fused_and_differentiable_rope_agree() {
        let cfg = ModelConfig { head_dim: 8, ..ModelConfig::default() };
        let r = Rope::new(&cfg);
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 5, 8), &dev).unwrap();
        let pos: Vec<u32> = (0..10).map(|i| i * 7 % 11).collect();
        let (cos, sin) = r.cos_sin(&pos, 2, 5, DType::F32, &dev).unwrap();
        let a = rope_diff(&x, &cos, &sin).unwrap();
        let b = rope_fused(&x, &cos, &sin).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
