//! # swerl-reward
//!
//! The reward of SWE-RL ([Wei et al., 2025](https://arxiv.org/abs/2502.18449)), equal to the
//! paper's Python reference on every input and much faster: a badly formatted completion scores
//! -1; a well-formatted one scores the similarity of its patch to the oracle patch, in [0, 1].
//!
//! ````
//! use std::collections::HashMap;
//!
//! let code_context = HashMap::from([("calc.py", "def add(a, b):\n    return a - b\n")]);
//! let oracle = HashMap::from([("calc.py", "def add(a, b):\n    return a + b\n")]);
//! let completion = "<think>add subtracts; it should add.</think>
//! <solution>
//! ```python
//! #### calc.py
//! <<<<<<< SEARCH
//!     return a - b
//! =======
//!     return a + b
//! >>>>>>> REPLACE
//! ```
//! </solution>";
//!
//! let score = swerl_reward::score(&code_context, &oracle, completion).unwrap();
//! assert_eq!(score.reward, 1.0);
//! assert_eq!(score.new_content[0].1, "def add(a, b):\n    return a + b\n");
//! println!("{}", score.git_patch(&code_context)); // what SWE-bench's harness applies
//!
//! // A badly formatted completion scores -1, with the reason.
//! let err = swerl_reward::score(&code_context, &oracle, "just a + b").unwrap_err();
//! assert_eq!(err.to_string(), "expected exactly one `<think>` tag, found 0");
//! assert_eq!(swerl_reward::reward(&code_context, &oracle, "just a + b"), -1.0);
//! ````
//!
//! ## The rule (see the project's `spec/reward.md`)
//! 1. **Format**: `<think>`, `</think>`, `<solution>`, `</solution>` each occur once; the thought
//!    is not empty; the solution holds at least one SEARCH/REPLACE block ([`parse_output`]).
//! 2. **Edits**: each block replaces every occurrence of its SEARCH text, anchored at a line
//!    start, in the file as edited so far ([`apply_edits`]). A SEARCH equal to its REPLACE or not
//!    found scores -1.
//! 3. **Patches**: each changed file's `difflib.unified_diff` hunks ([`normalized_patch`]).
//! 4. **Similarity**: per path changed on either side, `difflib.SequenceMatcher` ratio of the
//!    predicted and oracle hunk texts (0 when one side is missing); the reward is their mean
//!    ([`change_similarities`]).
//!
//! ## Modules
//! - [`difflib`]: exact port of CPython's `SequenceMatcher` and `unified_diff`.
//! - [`pystr`]: Python's `str.splitlines`, `strip`, `count`, `replace`, `isspace`.
//! - [`batch`]: JSON-lines files of cases scored in parallel (what `swerl reward` runs).
//! - [`unidiff`]: the second entry point, comparing `git diff` texts ([`unidiff::unidiff_reward`]).
//! - The crate root: parsing, applying edits, patches, similarity, [`Scorer`] (reuses the
//!   oracle's work across the completions of a GRPO group) and [`git_diff`] (SWE-bench patches).
//! - The format the reward is defined over, shared by the miner, the trainer and the evaluation:
//!   [`RlInstance`] and its JSONL loader [`Dataset`]; the paper's prompt ([`build_messages`],
//!   [`SYSTEM_PROMPT`], [`EDIT_INSTRUCTIONS`]) as [`ChatMessage`]s.

pub mod batch;
pub mod difflib;
pub mod pystr;
pub mod unidiff;

mod apply;
mod error;
mod files;
mod gitpatch;
mod instance;
mod oracle;
mod parse;
mod prompt;
mod score;
mod similarity;

pub use apply::apply_edits;
pub use error::{Error, FormatError, Result};
pub use files::FileMap;
pub use gitpatch::git_diff;
pub use instance::{Dataset, RlInstance, SkippedRecord};
pub use oracle::{OracleError, oracle_answer, oracle_edits};
pub use parse::{
    EDIT_BLOCK_PATTERN, Edit, FileEdits, ParsedOutput, SOLUTION_END, SOLUTION_START, THINK_END, THINK_START,
    parse_output,
};
pub use prompt::{ChatMessage, EDIT_INSTRUCTIONS, SYSTEM_PROMPT, build_messages};
pub use score::{Limits, Score, Scorer, reward, score};
pub use similarity::{
    CONTEXT_LINES, FileSimilarity, Similarity, change_similarities, compare_contents, normalized_patch,
};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
