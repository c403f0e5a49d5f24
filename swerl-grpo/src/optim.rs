//! AdamW with f32 moments (PyTorch's `torch.optim.AdamW` update), global-norm gradient clipping
//! and the Hugging Face learning-rate schedules.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::path::Path;

use candle_core::{DType, Tensor, Var};

use crate::config::LrSchedule;
use crate::error::{Error, Result};
use crate::policy::Optimizer;

/// AdamW hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW whose moments are f32 whatever the parameters' dtype, updating f32 master weights.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    /// A fresh optimizer (moments are created on the first step).
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, step: 0, m: Vec::new(), v: Vec::new() }
    }

    /// Updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        if params.len() != grads.len() {
            return Err(Error::shape(
                "AdamW::step",
                format!("{} params, {} grads", params.len(), grads.len()),
            ));
        }
        if self.m.is_empty() {
            for p in params {
                self.m.push(p.zeros_like()?.to_dtype(DType::F32)?);
                self.v.push(p.zeros_like()?.to_dtype(DType::F32)?);
            }
        } else if self.m.len() != params.len() {
            return Err(Error::shape("AdamW::step", "parameter count changed between steps"));
        }
        self.step += 1;
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - beta1.powi(t);
        let bc2 = 1.0 - beta2.powi(t);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let g = g.to_dtype(DType::F32)?;
            let m = ((&self.m[i] * beta1)? + (&g * (1.0 - beta1))?)?;
            let v = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let master = p.as_tensor().to_dtype(DType::F32)?;
            let decayed = if weight_decay != 0.0 { (&master * (1.0 - lr * weight_decay))? } else { master };
            let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
            let update = ((&m / denom)? * (lr / bc1))?;
            let new = (decayed - update)?;
            p.set(&new.to_dtype(p.dtype())?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        let device = self.m.first().map(|t| t.device().clone());
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            map.insert(format!("exp_avg.{i}"), m.clone());
            map.insert(format!("exp_avg_sq.{i}"), v.clone());
        }
        let step = Tensor::new(&[self.step as f64], &device.unwrap_or(candle_core::Device::Cpu))?;
        map.insert("step".into(), step);
        candle_core::safetensors::save(&map, path)
            .map_err(|e| Error::Checkpoint { path: path.to_owned(), message: e.to_string() })
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Checkpoint { path: path.to_owned(), message };
        let device = self.m.first().map(|t| t.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let map = candle_core::safetensors::load(path, &device).map_err(|e| bad(e.to_string()))?;
        let step = map.get("step").ok_or_else(|| bad("no `step` tensor".into()))?;
        self.step = step.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64;
        let n = (map.len() - 1) / 2;
        self.m.clear();
        self.v.clear();
        for i in 0..n {
            let get = |k: String| map.get(&k).cloned().ok_or_else(|| bad(format!("no `{k}` tensor")));
            self.m.push(get(format!("exp_avg.{i}"))?);
            self.v.push(get(format!("exp_avg_sq.{i}"))?);
        }
        Ok(())
    }
}

/// Moves the optimizer's state to a device (after loading on the CPU).
impl AdamW {
    /// Moves every moment tensor to `device`.
    pub fn to_device(&mut self, device: &candle_core::Device) -> Result<()> {
        for t in self.m.iter_mut().chain(self.v.iter_mut()) {
            *t = t.to_device(device)?;
        }
        Ok(())
    }
}

/// The global L2 norm of `grads` (computed in f64).
pub fn global_grad_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0f64;
    for g in grads {
        sum += g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// Scales `grads` so their global norm is at most `max_norm` (PyTorch's `clip_grad_norm_`:
/// factor `max_norm / (norm + 1e-6)`, capped at 1). `max_norm == 0` disables clipping.
pub fn clip_grads(grads: &mut [Tensor], norm: f64, max_norm: f64) -> Result<()> {
    if max_norm <= 0.0 {
        return Ok(());
    }
    let factor = (max_norm / (norm + 1e-6)).min(1.0);
    if factor < 1.0 {
        for g in grads.iter_mut() {
            *g = (&*g * factor)?;
        }
    }
    Ok(())
}

/// The learning rate of update `update` (0-based) of `total`, as Hugging Face's schedulers give
/// it (`get_{constant,linear,cosine}_schedule_with_warmup`): the first warm-up update uses 0.
pub fn learning_rate(peak: f64, schedule: LrSchedule, warmup: u64, update: u64, total: u64) -> f64 {
    if update < warmup {
        return peak * update as f64 / warmup.max(1) as f64;
    }
    let progress = (update - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
    match schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Linear => peak * (1.0 - progress).max(0.0),
        LrSchedule::Cosine => peak * (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Two AdamW steps by hand (PyTorch's formula) on one scalar.
    #[test]
    fn adamw_matches_the_pytorch_formula() {
        let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let cfg = AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() };
        let mut opt = AdamW::new(cfg);
        let (lr, g1, g2) = (0.01f64, 0.5f64, -0.25f64);
        opt.step(std::slice::from_ref(&p), &[Tensor::new(&[g1 as f32], &Device::Cpu).unwrap()], lr).unwrap();
        opt.step(std::slice::from_ref(&p), &[Tensor::new(&[g2 as f32], &Device::Cpu).unwrap()], lr).unwrap();
        // reference
        let (mut x, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for (t, g) in [(1, g1), (2, g2)] {
            x *= 1.0 - lr * 0.1;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let bc1 = 1.0 - 0.9f64.powi(t);
            let bc2 = 1.0 - 0.999f64.powi(t);
            x -= lr / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
        assert!((got - x).abs() < 1e-6, "{got} vs {x}");
    }

    #[test]
    fn state_round_trips_and_resumed_updates_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let grads = |s: f32| vec![Tensor::new(&[s, -s, 2.0 * s], &Device::Cpu).unwrap()];
        let a = Var::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(AdamWConfig::default());
        opt.step(std::slice::from_ref(&a), &grads(0.3), 0.1).unwrap();
        opt.save(&dir.path().join("opt.safetensors")).unwrap();
        let b = Var::from_tensor(a.as_tensor()).unwrap();
        opt.step(std::slice::from_ref(&a), &grads(-0.7), 0.1).unwrap();
        let mut resumed = AdamW::new(AdamWConfig::default());
        resumed.load(&dir.path().join("opt.safetensors")).unwrap();
        assert_eq!(resumed.step_count(), 1);
        resumed.step(std::slice::from_ref(&b), &grads(-0.7), 0.1).unwrap();
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), b.as_tensor().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn clipping_and_norm() {
        let mut g = vec![
            Tensor::new(&[3.0f32], &Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        ];
        let n = global_grad_norm(&g).unwrap();
        assert!((n - 5.0).abs() < 1e-12);
        clip_grads(&mut g, n, 1.0).unwrap();
        let clipped = global_grad_norm(&g).unwrap();
        assert!((clipped - 5.0 / (5.0 + 1e-6)).abs() < 1e-6);
    }

    #[test]
    fn schedules_follow_hugging_face() {
        assert_eq!(learning_rate(1.0, LrSchedule::Constant, 2, 0, 10), 0.0);
        assert_eq!(learning_rate(1.0, LrSchedule::Constant, 2, 1, 10), 0.5);
        assert_eq!(learning_rate(1.0, LrSchedule::Constant, 2, 5, 10), 1.0);
        assert_eq!(learning_rate(1.0, LrSchedule::Linear, 2, 6, 10), 0.5);
        assert!((learning_rate(1.0, LrSchedule::Cosine, 0, 5, 10) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(1.0, LrSchedule::Linear, 0, 10, 10), 0.0);
    }
}
