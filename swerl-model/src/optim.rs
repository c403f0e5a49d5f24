//! AdamW with decoupled weight decay and `f32` moments (bit-for-bit the update order of
//! `torch.optim.AdamW`), learning-rate schedules as in transformers, and optimizer state
//! saved to safetensors for resuming.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grads::Gradients;

/// Hyper-parameters of [`AdamW`] (defaults: PyTorch's, `weight_decay` 0.01).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Peak learning rate (a schedule scales it per step).
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay (`p -= lr * weight_decay * p`).
    pub weight_decay: f64,
    /// Whether biases and norm weights are decayed too (transformers' Trainer excludes them;
    /// `false` by default).
    pub decay_norms_and_biases: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_norms_and_biases: false,
        }
    }
}

struct ParamState {
    name: String,
    var: Var,
    decay: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// The AdamW optimizer over named `f32` parameters.
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<ParamState>,
    step: u64,
}

impl std::fmt::Debug for AdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdamW")
            .field("config", &self.config)
            .field("params", &self.params.len())
            .field("step", &self.step)
            .finish()
    }
}

/// Biases and norm weights: excluded from weight decay unless asked.
fn is_norm_or_bias(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("norm")
}

impl AdamW {
    /// An optimizer for `params` (e.g. [`crate::Llama::named_parameters`]); they must be `f32`.
    pub fn new(params: &[(String, Var)], config: AdamWConfig) -> Result<Self> {
        let params = params
            .iter()
            .map(|(name, var)| {
                if var.dtype() != DType::F32 {
                    return Err(Error::arg(
                        "params",
                        format!("{name} is {:?}; AdamW keeps f32 master weights", var.dtype()),
                    ));
                }
                Ok(ParamState {
                    name: name.clone(),
                    var: var.clone(),
                    decay: config.decay_norms_and_biases || !is_norm_or_bias(name),
                    exp_avg: var.zeros_like()?.detach(),
                    exp_avg_sq: var.zeros_like()?.detach(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { config, params, step: 0 })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` (the schedule's value for this step) from `grads`.
    /// Parameters without a gradient are left untouched (as PyTorch).
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bias_correction1;
        for p in &mut self.params {
            let Some(g) = grads.get(&p.var) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?;
            let mut w = p.var.as_tensor().detach();
            if p.decay && c.weight_decay != 0.0 {
                w = w.affine(1.0 - lr * c.weight_decay, 0.0)?;
            }
            // exp_avg.lerp_(grad, 1 - beta1)
            let m = (&p.exp_avg + ((&g - &p.exp_avg)? * (1.0 - c.beta1))?)?;
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            let v = ((&p.exp_avg_sq * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / bias_correction2_sqrt)? + c.eps)?;
            let w = (w - (m.div(&denom)? * step_size)?)?;
            p.var.set(&w)?;
            p.exp_avg = m;
            p.exp_avg_sq = v;
        }
        Ok(())
    }

    /// Saves moments and step count to a safetensors file (`{name}.exp_avg`,
    /// `{name}.exp_avg_sq`; metadata `step` and `config`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors = Vec::with_capacity(2 * self.params.len());
        for p in &self.params {
            tensors.push((format!("{}.exp_avg", p.name), p.exp_avg.clone()));
            tensors.push((format!("{}.exp_avg_sq", p.name), p.exp_avg_sq.clone()));
        }
        let metadata: HashMap<String, String> = [
            ("step".to_string(), self.step.to_string()),
            ("config".to_string(), serde_json::to_string(&self.config).expect("config serialises")),
        ]
        .into();
        safetensors::tensor::serialize_to_file(tensors, Some(metadata), path)
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    }

    /// Restores moments and step count saved by [`Self::save`]; every parameter must be present
    /// with its shape. The hyper-parameters of `self` are kept.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bad = |message: String| Error::OptimizerState { path: path.to_path_buf(), message };
        let bytes = fs_err::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let step: u64 = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no `step` in the metadata".into()))?;
        let device = self.params.first().map(|p| p.var.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let mut tensors =
            candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| bad(e.to_string()))?;
        let mut restored = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mut take = |suffix: &str| -> Result<Tensor> {
                let key = format!("{}.{suffix}", p.name);
                let t = tensors.remove(&key).ok_or_else(|| bad(format!("missing `{key}`")))?;
                if t.dims() != p.var.dims() {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        p.var.dims()
                    )));
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            restored.push((take("exp_avg")?, take("exp_avg_sq")?));
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("`{extra}` matches no parameter")));
        }
        for (p, (m, v)) in self.params.iter_mut().zip(restored) {
            p.exp_avg = m;
            p.exp_avg_sq = v;
        }
        self.step = step;
        Ok(())
    }
}

/// The shape of a learning-rate schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant after warm-up (`get_constant_schedule_with_warmup`).
    #[default]
    Constant,
    /// Linear decay to zero at `total_steps` (`get_linear_schedule_with_warmup`).
    Linear,
    /// Half-cosine decay (`get_cosine_schedule_with_warmup`, or `cosine_with_min_lr` with
    /// `min_lr_ratio`).
    Cosine,
}

/// A learning-rate schedule: linear warm-up then `kind`; [`LrSchedule::lr`] gives the
/// learning rate of the update that follows `step` completed updates, as transformers'
/// `LambdaLR` schedules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LrSchedule {
    /// Decay shape after warm-up.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: u64,
    /// Total number of steps (where linear decay reaches zero).
    pub total_steps: u64,
    /// Floor of the cosine schedule as a fraction of the peak (0: decays to zero).
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Multiplier of the peak learning rate for the update after `step` completed ones.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (self.total_steps.saturating_sub(step) as f64 / decay_steps).max(0.0),
            ScheduleKind::Cosine => {
                let f = (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0);
                f * (1.0 - self.min_lr_ratio) + self.min_lr_ratio
            }
        }
    }

    /// `peak * factor(step)`.
    pub fn lr(&self, peak: f64, step: u64) -> f64 {
        peak * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_transformers_formulas() {
        let lin =
            LrSchedule { kind: ScheduleKind::Linear, warmup_steps: 2, total_steps: 10, min_lr_ratio: 0.0 };
        let f: Vec<f64> = (0..12).map(|s| lin.factor(s)).collect();
        assert_eq!(&f[..3], &[0.0, 0.5, 1.0]);
        assert!((f[6] - 0.5).abs() < 1e-12);
        assert_eq!(f[10], 0.0);
        assert_eq!(f[11], 0.0);
        let cos =
            LrSchedule { kind: ScheduleKind::Cosine, warmup_steps: 0, total_steps: 4, min_lr_ratio: 0.1 };
        assert!((cos.factor(0) - 1.0).abs() < 1e-12);
        assert!((cos.factor(2) - (0.5 * 0.9 + 0.1)).abs() < 1e-12);
        assert!((cos.factor(4) - 0.1).abs() < 1e-12);
        let constant = LrSchedule { warmup_steps: 4, ..LrSchedule::default() };
        assert_eq!(constant.factor(1), 0.25);
        assert_eq!(constant.factor(100), 1.0);
    }

    #[test]
    fn excludes_norms_and_biases_from_decay_by_default() {
        assert!(is_norm_or_bias("model.layers.0.input_layernorm.weight"));
        assert!(is_norm_or_bias("model.norm.weight"));
        assert!(is_norm_or_bias("model.layers.0.self_attn.q_proj.bias"));
        assert!(!is_norm_or_bias("model.layers.0.self_attn.q_proj.weight"));
    }
}
