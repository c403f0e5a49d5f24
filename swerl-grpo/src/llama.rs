//! The trainer's view of `swerl-model`: [`LlamaPolicy`] implements [`Policy`] (batched KV-cache
//! sampling, fused no-grad scoring, the memory-bounded recomputing training pass, Hugging Face
//! saving) and [`ChatEncoder`] (the checkpoint's own chat template); [`ModelAdamW`] wraps
//! `swerl-model`'s AdamW (f32 moments, norms and biases excluded from weight decay as in
//! transformers' Trainer) as an [`Optimizer`].

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use swerl_model::{
    GenerateOptions, GenerationConfig, Llama, LoadOptions, LoadedModel, ModelOptions, Recompute, SaveOptions,
    ScoreOptions, TokenBatch, Tokenizer, TrainForward, TrainOptions,
};

use crate::config::TrainConfig;
use crate::env::ChatEncoder;
use crate::error::{Error, Result};
use crate::policy::{
    FinishReason, Generation, GenerationRequest, Gradients, Optimizer, Policy, SamplingParams, TokenLogProbs,
    TrainPass,
};
use crate::prompt::ChatMessage;

impl From<swerl_model::Error> for Error {
    fn from(e: swerl_model::Error) -> Self {
        Error::Model(e.to_string())
    }
}

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
        }
    }

    /// Wraps an in-memory model (tests, custom loading).
    pub fn new(model: Llama, tokenizer: Tokenizer, eos: Vec<u32>, pad: u32) -> Self {
        let generation_config = GenerationConfig::from_model_config(model.config());
        let settings = ModelSettings { device: model.device().clone(), dtype: model.compute_dtype() };
        Self { model, tokenizer, generation_config, eos, pad, settings }
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
        let cfg = swerl_model::AdamWConfig {
            lr: config.learning_rate,
            beta1: config.adam_beta1,
            beta2: config.adam_beta2,
            eps: config.adam_epsilon,
            weight_decay: config.weight_decay,
            decay_norms_and_biases: false,
        };
        Ok(Box::new(ModelAdamW(swerl_model::AdamW::new(self.model.named_parameters(), cfg)?)))
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

impl ChatEncoder for LlamaPolicy {
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode_chat(messages, true)?)
    }
}

impl Policy for LlamaPolicy {
    fn device(&self) -> &Device {
        self.model.device()
    }

    fn generate(
        &mut self,
        requests: &[GenerationRequest<'_>],
        params: &SamplingParams,
    ) -> Result<Vec<Generation>> {
        let reqs: Vec<swerl_model::GenerationRequest> = requests
            .iter()
            .map(|r| swerl_model::GenerationRequest {
                prompt_ids: r.prompt.to_vec(),
                params: swerl_model::SamplingParams {
                    temperature: params.temperature,
                    top_p: params.top_p,
                    top_k: params.top_k,
                    max_new_tokens: params.max_new_tokens,
                    stop_token_ids: Vec::new(),
                    stop_strings: Vec::new(),
                    seed: Some(r.seed),
                },
            })
            .collect();
        let opts = GenerateOptions { eos_ids: self.eos.clone(), pad_id: self.pad };
        let out = self.model.generate(&self.tokenizer, &reqs, &opts, |_| {})?;
        Ok(out
            .into_iter()
            .map(|c| {
                let finish = match (&c.finish_reason, &c.stop) {
                    (swerl_model::FinishReason::Length, _) => FinishReason::Length,
                    (_, Some(swerl_model::StopReason::Token(t))) if self.eos.contains(t) => FinishReason::Eos,
                    _ => FinishReason::Stop,
                };
                Generation { tokens: c.token_ids, text: c.text, finish }
            })
            .collect())
    }

    fn logprobs(&self, sequences: &[(&[u32], &[u32])], temperature: f64) -> Result<TokenLogProbs> {
        let scores = self.model.score(&self.batch(sequences)?, &Self::score_options(temperature))?;
        Ok(TokenLogProbs { logp: scores.logprobs, entropy: scores.entropies })
    }

    fn train_forward<'a>(
        &'a self,
        sequences: &[(&[u32], &[u32])],
        temperature: f64,
    ) -> Result<Box<dyn TrainPass + 'a>> {
        let opts = TrainOptions { score: Self::score_options(temperature), recompute: Recompute::Auto };
        let forward = self.model.forward_train(&self.batch(sequences)?, &opts)?;
        let scores = TokenLogProbs { logp: forward.logprobs().clone(), entropy: forward.entropies().clone() };
        Ok(Box::new(LlamaPass { forward, scores, model: &self.model }))
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
        })
    }
}

struct LlamaPass<'a> {
    forward: TrainForward<'a>,
    scores: TokenLogProbs,
    model: &'a Llama,
}

impl TrainPass for LlamaPass<'_> {
    fn scores(&self) -> &TokenLogProbs {
        &self.scores
    }

    fn backward(self: Box<Self>, loss: &Tensor, grads: &mut Gradients) -> Result<()> {
        let mut theirs = swerl_model::Gradients::new();
        let model = self.model;
        self.forward.backward(loss, &mut theirs)?;
        for (_, var) in model.named_parameters() {
            if let Some(g) = theirs.get(var) {
                grads.add(var, g)?;
            }
        }
        Ok(())
    }
}

/// `swerl-model`'s AdamW as an [`Optimizer`].
#[derive(Debug)]
pub struct ModelAdamW(pub swerl_model::AdamW);

impl Optimizer for ModelAdamW {
    fn step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        let mut g = swerl_model::Gradients::new();
        for (p, t) in params.iter().zip(grads) {
            g.accumulate(p, t)?;
        }
        self.0.step(&g, lr)?;
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<()> {
        Ok(self.0.save(path)?)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        Ok(self.0.load(path)?)
    }
}
