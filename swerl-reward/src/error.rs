//! Why a completion scores -1.

/// The reason a completion is badly formatted and scores [`FormatError::REWARD`] (-1).
///
/// Each variant is one rule of the reference implementation, checked in the reference's order:
/// tag counts, an empty thought, no edit block, then each edit in order (identical SEARCH and
/// REPLACE, SEARCH not found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FormatError {
    /// One of `<think>`, `</think>`, `<solution>`, `</solution>` does not occur exactly once.
    #[error("expected exactly one `{tag}` tag, found {count}")]
    TagCount {
        /// The tag, e.g. `"</think>"`.
        tag: &'static str,
        /// How many non-overlapping occurrences there are.
        count: usize,
    },
    /// The text between `<think>` and `</think>` is empty after stripping whitespace.
    #[error("the <think> section is empty")]
    EmptyThought,
    /// The `<solution>` section holds no well-formed SEARCH/REPLACE block.
    #[error("no SEARCH/REPLACE block found in the <solution> section")]
    NoEdits,
    /// A block's SEARCH and REPLACE texts are identical.
    #[error("edit {index} of `{path}`: SEARCH and REPLACE are identical")]
    IdenticalEdit {
        /// The file the block edits.
        path: String,
        /// Position of the block among this file's blocks, from 0.
        index: usize,
    },
    /// A block's SEARCH text (anchored at a line start) does not occur in the file as edited by
    /// the blocks before it.
    #[error("edit {index} of `{path}`: SEARCH block not found in the file")]
    SearchNotFound {
        /// The file the block edits.
        path: String,
        /// Position of the block among this file's blocks, from 0.
        index: usize,
    },
    /// Scoring the completion would take more work than the scorer's [`Limits`](crate::Limits)
    /// allow. Not a rule of the reference, which keeps going (for minutes to hours on such
    /// input); never met by realistic completions with the default limits.
    #[error("scoring stopped: the {stage} exceed the limit of {limit} work units (see swerl_reward::Limits)")]
    LimitExceeded {
        /// What ran out: `"edits"` (bytes rewritten by SEARCH/REPLACE) or `"diffs"` (comparison
        /// work).
        stage: &'static str,
        /// The limit that was reached.
        limit: u64,
    },
}

impl FormatError {
    /// The reward of a badly formatted completion.
    pub const REWARD: f64 = -1.0;
}

/// What can fail in this crate's I/O and parsing helpers (loading RL instances, reading
/// patches). Scoring itself never fails: a badly formatted completion is a [`FormatError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A data set holds no usable RL instance.
    #[error("no usable RL instance in {path} ({skipped} malformed record(s) skipped)")]
    EmptyDataset {
        /// The file.
        path: std::path::PathBuf,
        /// How many records were skipped as malformed.
        skipped: usize,
    },

    /// A unified diff is malformed or touches no file.
    #[error("invalid patch: {message}")]
    InvalidPatch {
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
