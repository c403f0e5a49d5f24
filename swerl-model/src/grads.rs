//! Accumulated parameter gradients: summed over backward passes (gradient accumulation over
//! micro-batches), measured and clipped by global norm, consumed by the optimizer.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId, Var};

use crate::error::Result;

/// Gradients of parameters, keyed by the parameter ([`Var`]), kept in `f32`. Iteration (norms)
/// follows first-accumulation order, so results are reproducible run to run.
#[derive(Debug, Default)]
pub struct Gradients {
    index: HashMap<TensorId, usize>,
    grads: Vec<Tensor>,
}

impl Gradients {
    /// No gradients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Collects the gradients of `vars` from a candle [`GradStore`] (the result of
    /// `loss.backward()` on a graph built by [`crate::Llama::forward_graph`]), adding them to
    /// what is already accumulated.
    pub fn accumulate_store(&mut self, store: &GradStore, vars: &[Var]) -> Result<()> {
        for var in vars {
            if let Some(g) = store.get(var.as_tensor()) {
                self.accumulate(var, g)?;
            }
        }
        Ok(())
    }

    /// Adds `grad` to the gradient of `var`.
    pub fn accumulate(&mut self, var: &Var, grad: &Tensor) -> Result<()> {
        let grad = grad.detach().to_dtype(DType::F32)?;
        match self.index.get(&var.as_tensor().id()) {
            Some(&i) => self.grads[i] = (&self.grads[i] + grad)?,
            None => {
                self.index.insert(var.as_tensor().id(), self.grads.len());
                self.grads.push(grad);
            }
        }
        Ok(())
    }

    /// The accumulated gradient of `var`, if any backward pass reached it.
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.index.get(&var.as_tensor().id()).map(|&i| &self.grads[i])
    }

    /// Replaces the gradient of `var` (e.g. with its all-reduced value across ranks; iterate
    /// [`crate::Llama::parameters`] for an order every rank agrees on).
    pub fn set(&mut self, var: &Var, grad: Tensor) -> Result<()> {
        if grad.dims() != var.dims() {
            return Err(crate::error::Error::arg(
                "grad",
                format!("shape {:?} does not match the parameter's {:?}", grad.dims(), var.dims()),
            ));
        }
        let grad = grad.detach().to_dtype(DType::F32)?;
        match self.index.get(&var.as_tensor().id()) {
            Some(&i) => self.grads[i] = grad,
            None => {
                self.index.insert(var.as_tensor().id(), self.grads.len());
                self.grads.push(grad);
            }
        }
        Ok(())
    }

    /// Number of parameters holding a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no gradient has been accumulated.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Drops every gradient (after an optimizer step).
    pub fn clear(&mut self) {
        self.index.clear();
        self.grads.clear();
    }

    /// Multiplies every gradient by `factor` (e.g. `1 / accumulation_steps`).
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in &mut self.grads {
            *g = g.affine(factor, 0.)?;
        }
        Ok(())
    }

    /// The L2 norm of all gradients taken together (as `torch.nn.utils.clip_grad_norm_`).
    pub fn global_norm(&self) -> Result<f64> {
        if self.grads.is_empty() {
            return Ok(0.0);
        }
        // One device-to-host transfer for all per-tensor sums of squares.
        let sums = self.grads.iter().map(|g| Ok(g.sqr()?.sum_all()?)).collect::<Result<Vec<_>>>()?;
        let sums: Vec<f32> = Tensor::stack(&sums, 0)?.to_vec1()?;
        Ok(sums.iter().map(|&x| f64::from(x)).sum::<f64>().sqrt())
    }

    /// Scales gradients so their global norm is at most `max_norm`, as
    /// `torch.nn.utils.clip_grad_norm_` (factor `max_norm / (norm + 1e-6)`, applied only when
    /// below one). Returns the norm before clipping; a non-finite norm is returned unchanged and
    /// gradients are left alone, so the caller can skip the step.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        if norm.is_finite() {
            let factor = max_norm / (norm + 1e-6);
            if factor < 1.0 {
                self.scale(factor)?;
            }
        }
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn accumulates_and_clips_like_torch() {
        let dev = Device::Cpu;
        let a = Var::zeros(2, DType::F32, &dev).unwrap();
        let b = Var::zeros(1, DType::F32, &dev).unwrap();
        let mut g = Gradients::new();
        g.accumulate(&a, &Tensor::new(&[1f32, 2.], &dev).unwrap()).unwrap();
        g.accumulate(&a, &Tensor::new(&[2f32, 2.], &dev).unwrap()).unwrap();
        g.accumulate(&b, &Tensor::new(&[12f32], &dev).unwrap()).unwrap();
        assert_eq!(g.len(), 2);
        // sqrt(3² + 4² + 12²) = 13
        let norm = g.clip_global_norm(1.0).unwrap();
        assert!((norm - 13.0).abs() < 1e-6);
        assert!((g.global_norm().unwrap() - 1.0).abs() < 1e-6);
        let ga = g.get(&a).unwrap().to_vec1::<f32>().unwrap();
        assert!((ga[0] - 3.0 / (13.0 + 1e-6) as f32).abs() < 1e-7);
        // Below the threshold: untouched.
        assert!((g.clip_global_norm(10.0).unwrap() - 1.0).abs() < 1e-6);
        assert!((g.global_norm().unwrap() - 1.0).abs() < 1e-6);
    }
}
