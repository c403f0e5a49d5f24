//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `swerl-eval`, naming the file, line, instance or step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed (fs-err's messages name the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON document or JSON line could not be read.
    #[error("{path}{}: {source}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Json {
        /// The file.
        path: PathBuf,
        /// The 1-based line for JSON-lines files.
        line: Option<usize>,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A parquet file could not be read.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        source: parquet::errors::ParquetError,
    },
    /// A record lacks a field or has one of the wrong type.
    #[error("{path}: record {record}{}: {message}", instance.as_ref().map(|i| format!(" ({i})")).unwrap_or_default())]
    InvalidRecord {
        /// The file.
        path: PathBuf,
        /// The 1-based record (line for JSON lines, row for parquet, element for JSON).
        record: usize,
        /// The instance id when the record has one.
        instance: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Two records share an instance id.
    #[error("{path}: instance `{instance}` appears twice")]
    DuplicateInstance {
        /// The file.
        path: PathBuf,
        /// The repeated id.
        instance: String,
    },
    /// An `--instance-ids` entry is not in the dataset.
    #[error("instance `{0}` is not in the dataset")]
    UnknownInstance(String),
    /// A file's format could not be recognised from its name.
    #[error("{path}: unknown file format (expected .json, .jsonl, .jsonl.gz or .parquet)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// No log parser has this name (or the repository has none).
    #[error("no log parser named `{0}`")]
    UnknownParser(String),
    /// The spec table has no entry for this repository and version.
    #[error("no spec for {repo} version {version}")]
    NoSpec {
        /// `owner/name`.
        repo: String,
        /// The dataset's version string.
        version: String,
    },
    /// An external command failed.
    #[error("{step}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// What the harness was doing.
        step: String,
        /// The command line.
        command: String,
        /// Its exit status in words.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The sandbox could not be set up (bubblewrap missing or the kernel refused namespaces).
    #[error("sandbox unavailable: {0}")]
    Sandbox(String),
    /// The repository's clone is not in the repositories directory.
    #[error("no clone of {repo} under {dir} (looked for owner__name, owner__name.git, owner/name)")]
    MissingClone {
        /// `owner/name`.
        repo: String,
        /// The repositories directory.
        dir: PathBuf,
    },
    /// A request to a model server failed (after retries where the failure was transient).
    #[error("model request to {url} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Model {
        /// The endpoint.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// The server's message or the transport error.
        message: String,
    },
    /// A usage error in the harness configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
