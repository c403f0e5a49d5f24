//! The search/replace reward: the paper's reward of a raw completion.

use std::collections::BTreeMap;

use crate::apply::apply;
use crate::error::FormatError;
use crate::files::FileMap;
use crate::gitpatch::git_diff;
use crate::parse::{ParsedOutput, parse};
use crate::similarity::{FileSimilarity, Similarity, change_similarities, normalized_patch};

/// A well-formatted completion's reward and everything computed on the way to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Score {
    /// The reward, in [0, 1].
    pub reward: f64,
    /// The thought, the answer and the parsed edits.
    pub parsed: ParsedOutput,
    /// The edited files' new contents, in order of first appearance in the answer.
    pub new_content: Vec<(String, String)>,
    /// The per-file similarities the reward averages, sorted by path.
    pub similarities: Vec<FileSimilarity>,
}

impl Score {
    /// The prediction as a `git diff` against `code_context` (what SWE-bench's harness applies).
    /// Pass the same `code_context` the score was computed with.
    pub fn git_patch(&self, code_context: &impl FileMap) -> String {
        git_diff(code_context, &self.new_content)
    }
}

/// Scores completions for one instance: holds the code context and the oracle's change texts,
/// computed once, so scoring the G completions of a GRPO group costs only their own work.
///
/// ```
/// use std::collections::HashMap;
/// use swerl_reward::Scorer;
///
/// let context = HashMap::from([("a.py", "def f():\n    return 1\n")]);
/// let oracle = HashMap::from([("a.py", "def f():\n    return 2\n")]);
/// let scorer = Scorer::new(&context, &oracle);
/// let good = "<think>f should return 2</think>\n<solution>\n```python\n### a.py\n<<<<<<< SEARCH\n    return 1\n=======\n    return 2\n>>>>>>> REPLACE\n```\n</solution>";
/// assert_eq!(scorer.reward(good), 1.0);
/// let unindented = good.replace("SEARCH\n    return 1", "SEARCH\nreturn 1");
/// assert_eq!(scorer.reward(&unindented), -1.0);
/// ```
#[derive(Debug, Clone)]
pub struct Scorer<'a, C: FileMap + ?Sized> {
    code_context: &'a C,
    oracle_patch: BTreeMap<String, String>,
}

impl<'a, C: FileMap + ?Sized> Scorer<'a, C> {
    /// Prepares scoring against `oracle_new_content` (path -> content after the real fix).
    pub fn new(code_context: &'a C, oracle_new_content: &impl FileMap) -> Self {
        let oracle_patch = normalized_patch(&code_context, oracle_new_content);
        Scorer { code_context, oracle_patch }
    }

    /// The oracle's change text per path (files the oracle changes).
    pub fn oracle_patch(&self) -> &BTreeMap<String, String> {
        &self.oracle_patch
    }

    /// The reward of a raw completion: -1.0 when it is badly formatted, else in [0, 1].
    pub fn reward(&self, output: &str) -> f64 {
        self.score(output).map_or(FormatError::REWARD, |s| s.reward)
    }

    /// Scores a raw completion, or says why it is badly formatted (reward -1).
    pub fn score(&self, output: &str) -> Result<Score, FormatError> {
        let parsed = parse(output)?;
        let new_content = apply(&self.code_context, &parsed.files)?;
        let Similarity { reward, files } = self.compare(&new_content);
        Ok(Score { reward, parsed: parsed.to_owned(), new_content, similarities: files })
    }

    /// The reward of predicted new contents, however they were produced.
    pub fn compare(&self, pred_new_content: &impl FileMap) -> Similarity {
        let pred_patch = normalized_patch(&self.code_context, pred_new_content);
        change_similarities(&pred_patch, &self.oracle_patch)
    }
}

/// Scores one completion (the reference's `calculate_search_replace_reward`).
///
/// For many completions of the same instance, build a [`Scorer`] once instead.
///
/// ```
/// use std::collections::BTreeMap;
///
/// let context = BTreeMap::from([("a.py", "x = 1\n")]);
/// let oracle = BTreeMap::from([("a.py", "x = 2\n")]);
/// let out = "<think>x must be 2</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n</solution>";
/// let score = swerl_reward::score(&context, &oracle, out).unwrap();
/// assert_eq!(score.reward, 1.0);
/// assert_eq!(score.similarities[0].path, "a.py");
/// assert!(score.git_patch(&context).starts_with("diff --git a/a.py b/a.py\n"));
/// ```
pub fn score(
    code_context: &impl FileMap,
    oracle_new_content: &impl FileMap,
    output: &str,
) -> Result<Score, FormatError> {
    Scorer::new(code_context, oracle_new_content).score(output)
}

/// The reward of one completion: -1.0 when badly formatted, else the mean per-file similarity
/// of its patch to the oracle patch, in [0, 1].
pub fn reward(code_context: &impl FileMap, oracle_new_content: &impl FileMap, output: &str) -> f64 {
    score(code_context, oracle_new_content, output).map_or(FormatError::REWARD, |s| s.reward)
}
