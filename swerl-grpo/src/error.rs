//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `swerl-grpo`. Variants name what failed (file, line, step,
/// rank) so a message is actionable without a backtrace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed (the message names the path; `fs-err` adds it).
    #[error("{0}")]
    Io(#[from] std::io::Error),

    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid configuration: `{key}`: {message}")]
    InvalidConfig {
        /// The configuration key (TOML name) at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// A configuration file could not be parsed.
    #[error("cannot parse config file {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        source: toml::de::Error,
    },

    /// A record of an input file is malformed. Loaders report these and skip the record; the
    /// variant is returned only where a whole file is unusable.
    #[error("{path}:{line}: {message}")]
    InvalidRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the record.
        message: String,
    },

    /// Inputs to an algorithm function have inconsistent shapes or sizes.
    #[error("shape mismatch in {what}: {message}")]
    Shape {
        /// The function or quantity.
        what: &'static str,
        /// What was expected and what was found.
        message: String,
    },

    /// The model library failed (loading, saving, sampling, scoring).
    #[error("model: {0}")]
    Model(#[from] swerl_model::Error),

    /// Loading RL instances failed (unreadable file, no usable record).
    #[error(transparent)]
    Data(#[from] swerl_reward::Error),

    /// The policy (model) failed while sampling or computing log-probabilities.
    #[error("policy failed at step {step} while {during}: {message}")]
    Policy {
        /// The training step.
        step: u64,
        /// The phase (`"sampling"`, `"computing log-probs"`, ...).
        during: &'static str,
        /// The underlying message.
        message: String,
    },

    /// A checkpoint directory is missing a file or holds inconsistent state.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Too many consecutive steps had a non-finite loss or gradient.
    #[error(
        "training stopped at step {step}: {consecutive} consecutive step(s) with non-finite {what}; \
         weights were left as they were before the first bad step"
    )]
    NonFinite {
        /// The step at which training stopped.
        step: u64,
        /// `"loss"` or `"gradient norm"`.
        what: &'static str,
        /// How many steps in a row were bad.
        consecutive: u32,
    },

    /// A collective operation (gradient all-reduce, rendezvous) failed or timed out.
    #[error("communicator (rank {rank} of {world}): {message}")]
    Communicator {
        /// This process's rank.
        rank: usize,
        /// The number of processes.
        world: usize,
        /// What failed; for timeouts, which peer did not answer.
        message: String,
    },

    /// A JSON document could not be written or read.
    #[error("JSON error in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig { key: key.to_owned(), message: message.into() }
    }

    /// Shorthand for [`Error::Shape`].
    pub(crate) fn shape(what: &'static str, message: impl Into<String>) -> Self {
        Self::Shape { what, message: message.into() }
    }
}
