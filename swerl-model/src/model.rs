//! The trainable Llama: parameters (f32 master weights held in [`Var`]s under their Hugging Face
//! names), construction from loaded tensors or random initialisation, and the weight views the
//! forward passes use.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::rope::Rope;

/// Runtime options of a [`Llama`]: where it lives and in which precision it computes.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// The device holding the parameters and running the computation.
    pub device: Device,
    /// The dtype matrix products run in: `F32` (default) or `BF16`/`F16` on GPUs. Parameters stay
    /// `f32` (master weights) and are cast for each forward pass.
    pub compute_dtype: DType,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, compute_dtype: DType::F32 }
    }
}

/// Parameters of one transformer block.
#[derive(Clone, Debug)]
pub(crate) struct LayerVars {
    pub(crate) input_norm: Var,
    pub(crate) q: Var,
    pub(crate) k: Var,
    pub(crate) v: Var,
    pub(crate) o: Var,
    pub(crate) q_bias: Option<Var>,
    pub(crate) k_bias: Option<Var>,
    pub(crate) v_bias: Option<Var>,
    pub(crate) o_bias: Option<Var>,
    pub(crate) post_norm: Var,
    pub(crate) gate: Var,
    pub(crate) up: Var,
    pub(crate) down: Var,
    pub(crate) gate_bias: Option<Var>,
    pub(crate) up_bias: Option<Var>,
    pub(crate) down_bias: Option<Var>,
}

/// Tensors of one block as a forward pass uses them: cast to the compute dtype, either tracked
/// (gradients flow back to the `f32` [`Var`]s) or detached.
#[derive(Clone, Debug)]
pub(crate) struct LayerWeights {
    pub(crate) input_norm: Tensor,
    pub(crate) q: Tensor,
    pub(crate) k: Tensor,
    pub(crate) v: Tensor,
    pub(crate) o: Tensor,
    pub(crate) q_bias: Option<Tensor>,
    pub(crate) k_bias: Option<Tensor>,
    pub(crate) v_bias: Option<Tensor>,
    pub(crate) o_bias: Option<Tensor>,
    pub(crate) post_norm: Tensor,
    pub(crate) gate: Tensor,
    pub(crate) up: Tensor,
    pub(crate) down: Tensor,
    pub(crate) gate_bias: Option<Tensor>,
    pub(crate) up_bias: Option<Tensor>,
    pub(crate) down_bias: Option<Tensor>,
    /// q, k, v and gate, up stacked into two matrices (see [`LayerWeights::fused`]).
    pub(crate) fused: Option<FusedWeights>,
}

/// The projections that read the same input, stacked by rows: one product (one pass of the
/// threads) instead of three and two. `q`/`k`/`v` and `gate`/`up` of the [`LayerWeights`] are then
/// views of these, so nothing is held twice.
#[derive(Clone, Debug)]
pub(crate) struct FusedWeights {
    /// `(q_out + 2 kv_out, hidden)`.
    pub(crate) qkv: Tensor,
    pub(crate) qkv_bias: Option<Tensor>,
    /// `(2 intermediate, hidden)`.
    pub(crate) gate_up: Tensor,
    pub(crate) gate_up_bias: Option<Tensor>,
}

impl LayerWeights {
    /// Detached weights with q/k/v and gate/up stacked (no-gradient paths: the rollout engine).
    /// Models with biases on some of q/k/v (or gate/up) but not all keep separate products.
    pub(crate) fn fused(mut self) -> Result<Self> {
        fn stack(ws: &[&Tensor]) -> Result<Tensor> {
            Ok(Tensor::cat(ws, 0)?)
        }
        fn stack_bias(bs: &[&Option<Tensor>]) -> Result<Option<Option<Tensor>>> {
            if bs.iter().all(|b| b.is_none()) {
                return Ok(Some(None));
            }
            if bs.iter().any(|b| b.is_none()) {
                return Ok(None);
            }
            let bs: Vec<&Tensor> = bs.iter().filter_map(|b| b.as_ref()).collect();
            Ok(Some(Some(Tensor::cat(&bs, 0)?)))
        }
        let (Some(qkv_bias), Some(gate_up_bias)) = (
            stack_bias(&[&self.q_bias, &self.k_bias, &self.v_bias])?,
            stack_bias(&[&self.gate_bias, &self.up_bias])?,
        ) else {
            return Ok(self);
        };
        let qkv = stack(&[&self.q, &self.k, &self.v])?;
        let gate_up = stack(&[&self.gate, &self.up])?;
        let (nq, nk) = (self.q.dim(0)?, self.k.dim(0)?);
        let ni = self.gate.dim(0)?;
        self.q = qkv.narrow(0, 0, nq)?;
        self.k = qkv.narrow(0, nq, nk)?;
        self.v = qkv.narrow(0, nq + nk, nk)?;
        self.gate = gate_up.narrow(0, 0, ni)?;
        self.up = gate_up.narrow(0, ni, ni)?;
        self.fused = Some(FusedWeights { qkv, qkv_bias, gate_up, gate_up_bias });
        Ok(self)
    }
}

/// How a forward pass sees the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Track {
    /// Tracked: the result is differentiable with respect to the parameters.
    Grad,
    /// Detached: no autograd bookkeeping.
    NoGrad,
}

pub(crate) fn view(var: &Var, track: Track, dtype: DType) -> Result<Tensor> {
    let t = match track {
        Track::Grad => var.as_tensor().clone(),
        Track::NoGrad => var.as_tensor().detach(),
    };
    Ok(t.to_dtype(dtype)?)
}

fn view_opt(var: &Option<Var>, track: Track, dtype: DType) -> Result<Option<Tensor>> {
    var.as_ref().map(|v| view(v, track, dtype)).transpose()
}

impl LayerVars {
    pub(crate) fn weights(&self, track: Track, dtype: DType) -> Result<LayerWeights> {
        // Norm weights stay f32: RMSNorm runs in f32 and casts its output (as transformers).
        Ok(LayerWeights {
            input_norm: view(&self.input_norm, track, DType::F32)?,
            q: view(&self.q, track, dtype)?,
            k: view(&self.k, track, dtype)?,
            v: view(&self.v, track, dtype)?,
            o: view(&self.o, track, dtype)?,
            q_bias: view_opt(&self.q_bias, track, dtype)?,
            k_bias: view_opt(&self.k_bias, track, dtype)?,
            v_bias: view_opt(&self.v_bias, track, dtype)?,
            o_bias: view_opt(&self.o_bias, track, dtype)?,
            post_norm: view(&self.post_norm, track, DType::F32)?,
            gate: view(&self.gate, track, dtype)?,
            up: view(&self.up, track, dtype)?,
            down: view(&self.down, track, dtype)?,
            gate_bias: view_opt(&self.gate_bias, track, dtype)?,
            up_bias: view_opt(&self.up_bias, track, dtype)?,
            down_bias: view_opt(&self.down_bias, track, dtype)?,
            fused: None,
        })
    }
}

/// A Llama-family causal language model whose parameters can be trained.
///
/// Parameters are `f32` [`Var`]s named as in Hugging Face checkpoints
/// (`model.layers.0.self_attn.q_proj.weight`, ...); [`Llama::named_parameters`] lists them in a
/// stable order for optimizers and checkpoints. The forward passes live in
/// [`Llama::score`] and [`Llama::forward_train`] (scoring and training) and [`Llama::generate`] (sampling).
///
/// `clone()` is cheap and shares the parameters (an optimizer step through one clone is seen by
/// all); [`Llama::deep_clone`] copies them (a frozen reference policy).
#[derive(Clone, Debug)]
pub struct Llama {
    pub(crate) config: ModelConfig,
    pub(crate) embed: Var,
    pub(crate) layers: Vec<LayerVars>,
    pub(crate) norm: Var,
    /// `None` when the output projection is tied to the embedding.
    pub(crate) lm_head: Option<Var>,
    pub(crate) rope: Rope,
    pub(crate) device: Device,
    pub(crate) compute_dtype: DType,
    named: Vec<(String, Var)>,
}

/// Hugging Face names of the tensors of block `i`, in checkpoint order.
pub(crate) fn layer_tensor_names(cfg: &ModelConfig, i: usize) -> Vec<String> {
    let p = format!("model.layers.{i}");
    let mut names = vec![format!("{p}.input_layernorm.weight")];
    for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        names.push(format!("{p}.self_attn.{proj}.weight"));
        if cfg.attention_bias {
            names.push(format!("{p}.self_attn.{proj}.bias"));
        }
    }
    names.push(format!("{p}.post_attention_layernorm.weight"));
    for proj in ["gate_proj", "up_proj", "down_proj"] {
        names.push(format!("{p}.mlp.{proj}.weight"));
        if cfg.mlp_bias {
            names.push(format!("{p}.mlp.{proj}.bias"));
        }
    }
    names
}

/// The expected shape of every parameter, keyed by Hugging Face name, in checkpoint order.
pub fn parameter_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let f = cfg.intermediate_size;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab_size, d])];
    for i in 0..cfg.num_hidden_layers {
        for name in layer_tensor_names(cfg, i) {
            let shape = match name.rsplit('.').nth(1).unwrap_or_default() {
                "input_layernorm" | "post_attention_layernorm" => vec![d],
                "q_proj" if name.ends_with("bias") => vec![q],
                "k_proj" | "v_proj" if name.ends_with("bias") => vec![kv],
                "o_proj" | "down_proj" if name.ends_with("bias") => vec![d],
                "gate_proj" | "up_proj" if name.ends_with("bias") => vec![f],
                "q_proj" => vec![q, d],
                "k_proj" | "v_proj" => vec![kv, d],
                "o_proj" => vec![d, q],
                "gate_proj" | "up_proj" => vec![f, d],
                "down_proj" => vec![d, f],
                other => unreachable!("unknown layer tensor {other}"),
            };
            out.push((name, shape));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, d]));
    }
    out
}

impl Llama {
    /// Builds a model from named tensors (any float dtype, any device); they are converted to
    /// `f32` parameters on `opts.device`. Every tensor of [`parameter_shapes`] must be present
    /// with its shape; `lm_head.weight` is ignored when embeddings are tied. `source_name` names
    /// the checkpoint in errors.
    pub fn from_tensors(
        config: ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        opts: &ModelOptions,
        source_name: &str,
    ) -> Result<Self> {
        config.validate(source_name)?;
        check_compute_dtype(opts.compute_dtype)?;
        let mut named = Vec::new();
        for (name, shape) in parameter_shapes(&config) {
            let t = tensors.remove(&name).ok_or_else(|| Error::InvalidWeights {
                source_name: source_name.to_string(),
                tensor: name.clone(),
                message: "missing".into(),
            })?;
            if t.dims() != shape.as_slice() {
                return Err(Error::InvalidWeights {
                    source_name: source_name.to_string(),
                    tensor: name,
                    message: format!("expected shape {shape:?}, found {:?}", t.dims()),
                });
            }
            let t = t.to_device(&opts.device)?.to_dtype(DType::F32)?;
            named.push((name, Var::from_tensor(&t)?));
        }
        let leftover: Vec<_> = tensors
            .keys()
            .filter(|k| !(config.tie_word_embeddings && k.as_str() == "lm_head.weight"))
            .filter(|k| !k.ends_with("rotary_emb.inv_freq"))
            .cloned()
            .collect();
        if !leftover.is_empty() {
            tracing::warn!(source = source_name, unused = ?leftover, "ignoring unknown tensors");
        }
        Ok(Self::assemble(config, named, opts))
    }

    /// A model with random weights: projections and embeddings drawn from `N(0, std²)`
    /// (transformers' `initializer_range`, 0.02 by default), norms set to one, biases to zero.
    /// Deterministic for a given `seed`.
    pub fn new_random(config: ModelConfig, seed: u64, std: f64, opts: &ModelOptions) -> Result<Self> {
        config.validate("random init")?;
        check_compute_dtype(opts.compute_dtype)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0f32, std as f32).map_err(|e| Error::arg("std", e.to_string()))?;
        let mut named = Vec::new();
        for (name, shape) in parameter_shapes(&config) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            let t = Tensor::from_vec(data, shape, &opts.device)?;
            named.push((name, Var::from_tensor(&t)?));
        }
        Ok(Self::assemble(config, named, opts))
    }

    fn assemble(config: ModelConfig, named: Vec<(String, Var)>, opts: &ModelOptions) -> Self {
        let map: HashMap<&str, &Var> = named.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let get = |name: &str| -> Var {
            (*map.get(name).unwrap_or_else(|| panic!("parameter {name} was just created"))).clone()
        };
        let opt = |name: &str| map.get(name).map(|v| (*v).clone());
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                LayerVars {
                    input_norm: get(&format!("{p}.input_layernorm.weight")),
                    q: get(&format!("{p}.self_attn.q_proj.weight")),
                    k: get(&format!("{p}.self_attn.k_proj.weight")),
                    v: get(&format!("{p}.self_attn.v_proj.weight")),
                    o: get(&format!("{p}.self_attn.o_proj.weight")),
                    q_bias: opt(&format!("{p}.self_attn.q_proj.bias")),
                    k_bias: opt(&format!("{p}.self_attn.k_proj.bias")),
                    v_bias: opt(&format!("{p}.self_attn.v_proj.bias")),
                    o_bias: opt(&format!("{p}.self_attn.o_proj.bias")),
                    post_norm: get(&format!("{p}.post_attention_layernorm.weight")),
                    gate: get(&format!("{p}.mlp.gate_proj.weight")),
                    up: get(&format!("{p}.mlp.up_proj.weight")),
                    down: get(&format!("{p}.mlp.down_proj.weight")),
                    gate_bias: opt(&format!("{p}.mlp.gate_proj.bias")),
                    up_bias: opt(&format!("{p}.mlp.up_proj.bias")),
                    down_bias: opt(&format!("{p}.mlp.down_proj.bias")),
                }
            })
            .collect();
        let embed = get("model.embed_tokens.weight");
        let norm = get("model.norm.weight");
        let lm_head = opt("lm_head.weight");
        Self {
            rope: Rope::new(&config),
            config,
            embed,
            layers,
            norm,
            lm_head,
            device: opts.device.clone(),
            compute_dtype: opts.compute_dtype,
            named,
        }
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype matrix products run in.
    pub fn compute_dtype(&self) -> DType {
        self.compute_dtype
    }

    /// Changes the dtype matrix products run in (`F32`, `BF16` or `F16`).
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        check_compute_dtype(dtype)?;
        self.compute_dtype = dtype;
        Ok(())
    }

    /// All trainable parameters with their Hugging Face names, in checkpoint order.
    pub fn named_parameters(&self) -> &[(String, Var)] {
        &self.named
    }

    /// All trainable parameters, in checkpoint order.
    pub fn parameters(&self) -> Vec<Var> {
        self.named.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The parameter called `name`, if any.
    pub fn parameter(&self, name: &str) -> Option<&Var> {
        self.named.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Copies every parameter's current value (detached) into a name -> tensor map, e.g. to
    /// snapshot a frozen reference policy with [`Llama::from_tensors`].
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        self.named.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?))).collect()
    }

    /// An independent copy of the model (parameters copied, nothing shared): a frozen reference
    /// policy for a KL penalty, or an "old" policy.
    pub fn deep_clone(&self) -> Result<Self> {
        let named = self
            .named
            .iter()
            .map(|(n, v)| Ok((n.clone(), Var::from_tensor(&v.as_tensor().detach().copy()?)?)))
            .collect::<Result<Vec<_>>>()?;
        let opts = ModelOptions { device: self.device.clone(), compute_dtype: self.compute_dtype };
        Ok(Self::assemble(self.config.clone(), named, &opts))
    }

    /// The output projection: the untied `lm_head` or the embedding matrix.
    pub(crate) fn head_var(&self) -> &Var {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}

fn check_compute_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::BF16 | DType::F16 => Ok(()),
        other => Err(Error::arg(
            "compute_dtype",
            format!("{other:?} is not a float compute dtype (f32, bf16, f16)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> ModelConfig {
        ModelConfig {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn random_model_has_the_documented_parameters() {
        let cfg = tiny();
        let m = Llama::new_random(cfg.clone(), 7, 0.02, &ModelOptions::default()).unwrap();
        let count: usize = m.parameters().iter().map(|v| v.elem_count()).sum();
        assert_eq!(count, cfg.num_parameters());
        assert_eq!(m.named_parameters()[0].0, "model.embed_tokens.weight");
        assert!(m.parameter("lm_head.weight").is_none(), "tied");
        let again = Llama::new_random(cfg, 7, 0.02, &ModelOptions::default()).unwrap();
        let a = m.parameters()[1].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = again.parameters()[1].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "same seed, same weights");
    }

    #[test]
    fn from_tensors_names_missing_and_misshapen_weights() {
        let cfg = tiny();
        let m = Llama::new_random(cfg.clone(), 1, 0.02, &ModelOptions::default()).unwrap();
        let mut sd = m.state_dict().unwrap();
        sd.remove("model.layers.1.mlp.up_proj.weight");
        let err = Llama::from_tensors(cfg.clone(), sd, &ModelOptions::default(), "ckpt").unwrap_err();
        assert!(err.to_string().contains("model.layers.1.mlp.up_proj.weight"), "{err}");
        let mut sd = m.state_dict().unwrap();
        sd.insert("model.norm.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
        let err = Llama::from_tensors(cfg, sd, &ModelOptions::default(), "ckpt").unwrap_err();
        assert!(err.to_string().contains("expected shape [32]"), "{err}");
    }
}
