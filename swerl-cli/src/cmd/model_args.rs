//! Arguments shared by subcommands that load a model (`logprobs`, `generate`, `serve`).

use swerl_model::{HubOptions, LoadOptions, LoadedModel, ModelOptions};

/// Which model to load and where to run it.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// A Hugging Face model directory, a `.gguf` file, or a Hub id (`org/name`, resolved through
    /// the Hugging Face cache; `HF_HUB_OFFLINE=1` uses the cache alone).
    #[arg(long, short = 'm')]
    pub(crate) model: String,

    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,

    /// Compute dtype: `f32`, `bf16` or `f16` (parameters stay f32). Sampling on the CPU
    /// (`generate`, `serve`, the GRPO rollouts) reads a bf16/f16 copy of the weights and keeps
    /// the KV cache and all sums in f32 (with bf16 on CPUs with AVX512-BF16, decoding rounds
    /// the activations of its products to bf16, as llama.cpp): 1.2-2.4x faster decoding than f32.
    #[arg(long, default_value = "f32")]
    pub(crate) dtype: String,

    /// Hub revision (branch, tag or commit) for Hub ids.
    #[arg(long)]
    pub(crate) revision: Option<String>,

    /// Never reach the Hub: read Hub ids from the local cache only.
    #[arg(long)]
    pub(crate) offline: bool,
}

impl ModelArgs {
    /// Loads the model, logging where it came from.
    pub(crate) fn load(&self) -> anyhow::Result<LoadedModel> {
        let opts = LoadOptions {
            model: ModelOptions {
                device: swerl_model::parse_device(&self.device)?,
                compute_dtype: swerl_model::parse_dtype(&self.dtype)?,
            },
            hub: HubOptions {
                cache_dir: None,
                offline: self.offline.then_some(true),
                revision: self.revision.clone(),
            },
        };
        let start = std::time::Instant::now();
        let loaded = swerl_model::load(&self.model, &opts)?;
        tracing::info!(
            model = %self.model,
            source = ?loaded.source,
            parameters = loaded.model.config().num_parameters(),
            seconds = start.elapsed().as_secs_f32(),
            "model loaded"
        );
        Ok(loaded)
    }
}
