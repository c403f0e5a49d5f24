//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `swerl-model`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error, out of memory, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A JSON file (config, tokenizer config, index) could not be parsed.
    #[error("invalid JSON in {path}: {message}")]
    InvalidJson {
        /// The file that failed to parse.
        path: PathBuf,
        /// What went wrong, with line and column when known.
        message: String,
    },

    /// The model configuration is valid JSON but describes something unsupported or inconsistent.
    #[error("invalid model config ({source_name}): {message}")]
    InvalidConfig {
        /// Where the config came from (a path or a GGUF file).
        source_name: String,
        /// What is wrong.
        message: String,
    },

    /// A weight is missing or has the wrong shape.
    #[error("invalid weights in {source_name}: tensor `{tensor}`: {message}")]
    InvalidWeights {
        /// Where the weights came from.
        source_name: String,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },

    /// A GGUF file is malformed or uses something unsupported.
    #[error("invalid GGUF file {path}: {message}")]
    InvalidGguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The tokenizer could not be loaded, or failed to encode or decode.
    #[error("tokenizer error ({context}): {message}")]
    Tokenizer {
        /// What was being done (a file path, or `encode`/`decode`).
        context: String,
        /// The tokenizer's message.
        message: String,
    },

    /// A chat template failed to compile or render.
    #[error("chat template error ({context}): {message}")]
    ChatTemplate {
        /// Where the template came from, or what was being rendered.
        context: String,
        /// The template engine's message (with the template line when known).
        message: String,
    },

    /// A model could not be found in the Hugging Face hub cache (offline) or downloaded.
    #[error("hub error for `{repo}` (file `{file}`): {message}")]
    Hub {
        /// The repository id, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`.
        repo: String,
        /// The file that was requested.
        file: String,
        /// What went wrong.
        message: String,
    },

    /// A model specification (path, hub id or GGUF file) that cannot be resolved.
    #[error("cannot load model `{spec}`: {message}")]
    ModelNotFound {
        /// What the user asked for.
        spec: String,
        /// Why it could not be resolved.
        message: String,
    },

    /// An argument given to an API is invalid (empty batch, token id out of range, ...).
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// The model computed NaN or infinite logits: its weights are broken (a diverged update, a
    /// corrupted file), and nothing sampled or scored from it means anything.
    #[error("the model computed non-finite logits (NaN or infinity) {context}: its weights are broken")]
    NonFiniteLogits {
        /// Where: which pass, request or batch.
        context: String,
    },

    /// A saved optimizer state does not match the parameters it is loaded for.
    #[error("optimizer state {path} does not match the model: {message}")]
    OptimizerState {
        /// The state file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`] that names `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Builds an [`Error::InvalidArgument`].
    pub(crate) fn arg(name: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument { name, message: message.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
