//! The crate's error type.

use std::path::PathBuf;

/// Everything that can stop a mining step. Malformed input records are *not* errors: they are
/// counted and reported in the run's statistics ([`crate::ScanStats::problems`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record in an input file could not be used.
    #[error("{path}:{line}: {message}")]
    InvalidRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        message: String,
    },
    /// A command-line style specification (shard, date range, config value) is invalid.
    #[error("invalid {what} `{value}`: {message}")]
    InvalidSpec {
        /// What was being parsed (e.g. "shard").
        what: &'static str,
        /// The offending text.
        value: String,
        /// Why it was rejected.
        message: String,
    },
    /// A git operation failed on a repository.
    #[error("git {step} in {repo}: {source}")]
    Git {
        /// The repository (owner/name or path).
        repo: String,
        /// What was being done (e.g. "merge-base 1a2b..3c4d").
        step: String,
        /// The libgit2 error.
        source: git2::Error,
    },
    /// A relevant-file predictor failed.
    #[error("relevant-file predictor failed for {instance_id}: {source}")]
    Predictor {
        /// The instance being predicted.
        instance_id: String,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// There is nothing to mine: no archive file under the inputs, or none in the range.
    #[error("nothing to mine: {message}")]
    NoInput {
        /// What was searched and why nothing was found.
        message: String,
    },
    /// Another run holds the output directory's lock.
    #[error("{path}: another `swerl mine` is writing this output directory (it holds {path}/.lock)")]
    Locked {
        /// The output directory.
        path: PathBuf,
    },
    /// A configuration file has an unknown key.
    #[error("{path}: unknown key `{key}`; valid keys there: {valid}")]
    UnknownKey {
        /// The configuration file.
        path: PathBuf,
        /// The key, dotted from the top (`filters.max_files`).
        key: String,
        /// The valid keys of the object holding it.
        valid: String,
    },
    /// JSON (de)serialisation of an output record failed.
    #[error("{path}: JSON: {source}")]
    Json {
        /// The file being written or read.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Wraps a git error with the repository and step.
    pub fn git(repo: impl Into<String>, step: impl Into<String>, source: git2::Error) -> Self {
        Self::Git { repo: repo.into(), step: step.into(), source }
    }
}
