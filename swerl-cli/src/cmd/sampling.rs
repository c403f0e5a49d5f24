//! Sampling flags shared by `generate` and `train`: declared once, flattened into both. Their
//! defaults differ per subcommand (the model's generation config for `generate`, the training
//! config for `train`) and are added to the help text by [`super::help`].

/// How completions are sampled.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct SamplingArgs {
    /// Maximum number of new tokens per completion.
    #[arg(long, value_name = "N")]
    pub(crate) max_new_tokens: Option<usize>,

    /// Sampling temperature (0: greedy).
    #[arg(long, value_name = "T")]
    pub(crate) temperature: Option<f64>,

    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, value_name = "P")]
    pub(crate) top_p: Option<f64>,

    /// Top-k sampling (0: off).
    #[arg(long, value_name = "K")]
    pub(crate) top_k: Option<usize>,

    /// Random seed.
    #[arg(long, value_name = "SEED")]
    pub(crate) seed: Option<u64>,
}
