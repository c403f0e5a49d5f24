//! The trainer's view of `swerl-model`: [`LlamaPolicy`] implements [`Policy`] (batched KV-cache
//! sampling, fused no-grad scoring, the memory-bounded recomputing training pass, Hugging Face
//! saving) and [`ChatEncoder`] (the checkpoint's own chat template); [`LlamaPolicy::optimizer`]
//! builds `swerl-model`'s AdamW (f32 moments, norms and biases excluded from weight decay as in
//! transformers' Trainer) with the run's hyperparameters.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use swerl_model::{
    ChatMessage, Completion, GenerateOptions, GenerationConfig, GenerationRequest, Gradients, Llama,
    LoadOptions, LoadedModel, ModelOptions, Recompute, SaveOptions, ScoreOptions, TokenBatch, TokenScores,
    Tokenizer, TrainForward, TrainOptions, WeightDtype,
};

use crate::config::TrainConfig;
use crate::env::ChatEncoder;
use crate::error::{Error, Result};
use crate::policy::{Optimizer, Policy, TrainPass};

/// Where the model runs and in which precision its matrix products are computed.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// The device.
    pub device: Device,
    /// Compute dtype (`F32`, `BF16`, `F16`); master weights are always f32.
    pub dtype: DType,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32 }
    }
}

impl ModelSettings {
    /// Parses `cpu` / `cuda` / `cuda:N` and `f32` / `bf16` / `f16`.
    pub fn parse(device: &str, dtype: &str) -> Result<Self> {
        Ok(Self { device: swerl_model::parse_device(device)?, dtype: swerl_model::parse_dtype(dtype)? })
    }
}

/// A `swerl-model` Llama with its tokenizer, as a GRPO policy.
#[derive(Debug)]
pub struct LlamaPolicy {
    model: Llama,
    tokenizer: Tokenizer,
    generation_config: GenerationConfig,
    eos: Vec<u32>,
    pad: u32,
    settings: ModelSettings,
    rollout_weights: WeightDtype,
}

impl LlamaPolicy {
    /// Loads a Hugging Face directory, a Hub id (local cache) or a GGUF file.
    pub fn load(spec: &str, settings: &ModelSettings) -> Result<Self> {
        let opts = LoadOptions {
            model: ModelOptions { device: settings.device.clone(), compute_dtype: settings.dtype },
            ..LoadOptions::default()
        };
        Ok(Self::from_loaded(swerl_model::load(spec, &opts)?))
    }

    /// Wraps a model loaded with `swerl_model::load` (its eos and pad ids, generation config and
    /// device settings are kept).
    pub fn from_loaded(loaded: LoadedModel) -> Self {
        let eos = loaded.eos_ids();
        let pad = loaded.pad_id();
        let settings =
            ModelSettings { device: loaded.model.device().clone(), dtype: loaded.model.compute_dtype() };
        Self {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            generation_config: loaded.generation_config,
            eos,
            pad,
            settings,
            rollout_weights: WeightDtype::Model,
        }
    }

    /// Wraps an in-memory model (tests, custom loading).
    pub fn new(model: Llama, tokenizer: Tokenizer, eos: Vec<u32>, pad: u32) -> Self {
        let generation_config = GenerationConfig::from_model_config(model.config());
        let settings = ModelSettings { device: model.device().clone(), dtype: model.compute_dtype() };
        Self { model, tokenizer, generation_config, eos, pad, settings, rollout_weights: WeightDtype::Model }
    }

    /// Samples rollouts with weights of this precision (on the CPU: bf16/f16 copies of the
    /// weights with f32 activations and sums, about 1.7x faster decoding); training, scoring and
    /// the master weights stay in [`ModelSettings::dtype`]. Default: the compute dtype.
    pub fn set_rollout_weights(&mut self, weights: WeightDtype) {
        self.rollout_weights = weights;
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        self.model.config().num_parameters()
    }

    /// AdamW over this model's parameters with the run's hyperparameters.
    pub fn optimizer(&self, config: &TrainConfig) -> Result<Box<dyn Optimizer>> {
        self.adamw(config.adamw())
    }

    /// AdamW over this model's parameters with the given settings (e.g.
    /// [`crate::sft::SftConfig::adamw`]).
    pub fn adamw(&self, config: swerl_model::AdamWConfig) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(swerl_model::AdamW::new(self.model.named_parameters(), config)?))
    }

    fn batch(&self, sequences: &[(&[u32], &[u32])]) -> Result<TokenBatch> {
        let prompts: Vec<&[u32]> = sequences.iter().map(|s| s.0).collect();
        let completions: Vec<&[u32]> = sequences.iter().map(|s| s.1).collect();
        Ok(TokenBatch::from_prompt_completions(&prompts, &completions, self.pad)?)
    }

    fn score_options(temperature: f64) -> ScoreOptions {
        ScoreOptions { temperature, entropy: true, chunk_tokens: None }
    }
}

impl crate::sft::AnswerEncoder for LlamaPolicy {
    fn encode_answer(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false)?;
        let end = self.eos.first().copied().ok_or_else(|| {
            Error::config("model", "the model has no end-of-sequence token to end an answer with")
        })?;
        ids.push(end);
        Ok(ids)
    }

    fn decode_answer(&self, tokens: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(tokens, true)?)
    }
}

impl ChatEncoder for LlamaPolicy {
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode_chat(messages, true)?)
    }
}

impl Policy for LlamaPolicy {
    fn device(&self) -> &Device {
        self.model.device()
    }

    fn generate(&mut self, requests: &[GenerationRequest], max_batch: usize) -> Result<Vec<Completion>> {
        let opts = GenerateOptions {
            eos_ids: self.eos.clone(),
            pad_id: self.pad,
            max_batch,
            weights: self.rollout_weights,
        };
        Ok(self.model.generate(&self.tokenizer, requests, &opts, |_| {})?)
    }

    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64) -> Result<TokenScores> {
        Ok(self.model.score(&self.batch(sequences)?, &Self::score_options(temperature))?)
    }

    fn train_forward<'a>(
        &'a self,
        sequences: &[(&[u32], &[u32])],
        temperature: f64,
    ) -> Result<Box<dyn TrainPass + 'a>> {
        let opts = TrainOptions { score: Self::score_options(temperature), recompute: Recompute::Auto };
        let forward = self.model.forward_train(&self.batch(sequences)?, &opts)?;
        let scores = TokenScores {
            logprobs: forward.logprobs().clone(),
            entropies: forward.entropies().clone(),
            mask: forward.mask().clone(),
            top1: forward.top1().clone(),
        };
        Ok(Box::new(LlamaPass { forward, scores }))
    }

    fn parameters(&self) -> Vec<Var> {
        self.model.parameters()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        swerl_model::save_pretrained(
            dir,
            &self.model,
            Some(&self.tokenizer),
            Some(&self.generation_config),
            &SaveOptions::default(),
        )?;
        Ok(())
    }

    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let opts = ModelOptions { device: self.settings.device.clone(), compute_dtype: self.settings.dtype };
        let saved = swerl_model::load_dir(dir, &opts)?;
        for (name, var) in self.model.named_parameters() {
            let src = saved.model.parameter(name).ok_or_else(|| Error::Checkpoint {
                path: dir.to_owned(),
                message: format!("no parameter `{name}`"),
            })?;
            var.set(src.as_tensor())?;
        }
        Ok(())
    }

    fn frozen_copy(&self) -> Result<Self> {
        Ok(Self {
            model: self.model.deep_clone()?,
            tokenizer: self.tokenizer.clone(),
            generation_config: self.generation_config.clone(),
            eos: self.eos.clone(),
            pad: self.pad,
            settings: self.settings.clone(),
            rollout_weights: self.rollout_weights,
        })
    }
}

struct LlamaPass<'a> {
    forward: TrainForward<'a>,
    scores: TokenScores,
}

impl TrainPass for LlamaPass<'_> {
    fn scores(&self) -> &TokenScores {
        &self.scores
    }

    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        Ok(self.forward.backward(loss, grads)?)
    }
}
