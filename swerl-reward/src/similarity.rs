//! Per-file change texts and their similarity: the reward of a well-formatted completion.

use std::collections::BTreeMap;

use crate::difflib::{char_ratio, diff_lines};
use crate::files::FileMap;

/// Lines of context in the change texts (the reference's `n_context`).
pub const CONTEXT_LINES: usize = 3;

/// The similarity of one file's predicted change to its oracle change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileSimilarity {
    /// The file.
    pub path: String,
    /// `SequenceMatcher(None, pred_change, oracle_change, autojunk=False).ratio()` over code
    /// points, or 0.0 when either change is empty (the file was edited on one side only).
    pub similarity: f64,
    /// The predicted change text (hunks of a unified diff), empty when the prediction leaves the
    /// file alone.
    pub pred_change: String,
    /// The oracle change text, empty when the oracle leaves the file alone.
    pub oracle_change: String,
}

/// The reward of a set of predicted changes against the oracle's, with its per-file parts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Similarity {
    /// Mean of the per-file similarities over the union of changed paths; 1.0 when neither side
    /// changes anything. Always in [0, 1].
    pub reward: f64,
    /// One entry per path changed on either side, sorted by path.
    pub files: Vec<FileSimilarity>,
}

/// The change text of each file of `new_content` against `code_context` (missing files count as
/// empty): the hunks of `difflib.unified_diff(old.splitlines(), new.splitlines(), n=3,
/// lineterm="")` joined with `"\n"`. Files whose lines do not change are left out.
///
/// ```
/// use std::collections::HashMap;
///
/// let old = HashMap::from([("a.py", "x = 1\n")]);
/// let new = HashMap::from([("a.py", "x = 2\n"), ("b.py", "")]);
/// let patch = swerl_reward::normalized_patch(&old, &new);
/// assert_eq!(patch.len(), 1);
/// assert_eq!(patch["a.py"], "@@ -1 +1 @@\n-x = 1\n+x = 2");
/// ```
pub fn normalized_patch(code_context: &impl FileMap, new_content: &impl FileMap) -> BTreeMap<String, String> {
    let mut patch = BTreeMap::new();
    for path in new_content.paths() {
        if patch.contains_key(path) {
            continue;
        }
        let new = new_content.file(path).unwrap_or("");
        let change = diff_lines(code_context.file(path).unwrap_or(""), new, CONTEXT_LINES);
        if !change.is_empty() {
            patch.insert(path.to_owned(), change);
        }
    }
    patch
}

/// Compares predicted and oracle change texts path by path (the reference's
/// `compute_change_similarities` followed by the mean).
pub fn change_similarities(pred_patch: &impl FileMap, oracle_patch: &impl FileMap) -> Similarity {
    let mut paths: Vec<&str> = oracle_patch.paths().chain(pred_patch.paths()).collect();
    paths.sort_unstable();
    paths.dedup();
    let files: Vec<FileSimilarity> = paths
        .into_iter()
        .map(|path| {
            let pred = pred_patch.file(path).unwrap_or("");
            let oracle = oracle_patch.file(path).unwrap_or("");
            let similarity =
                if pred.is_empty() || oracle.is_empty() { 0.0 } else { char_ratio(pred, oracle) };
            FileSimilarity {
                path: path.to_owned(),
                similarity,
                pred_change: pred.to_owned(),
                oracle_change: oracle.to_owned(),
            }
        })
        .collect();
    let reward = if files.is_empty() {
        1.0
    } else {
        files.iter().map(|f| f.similarity).sum::<f64>() / files.len() as f64
    };
    Similarity { reward, files }
}

/// The reward of predicted new file contents against the oracle's, both relative to
/// `code_context` (the reference's general `calculate_reward`, for changes in any form).
///
/// ```
/// use std::collections::HashMap;
///
/// let context = HashMap::from([("a.py", "x = 1\n")]);
/// let oracle = HashMap::from([("a.py", "x = 2\n")]);
/// assert_eq!(swerl_reward::compare_contents(&context, &oracle, &oracle).reward, 1.0);
/// assert_eq!(swerl_reward::compare_contents(&context, &oracle, &context).reward, 0.0);
/// ```
pub fn compare_contents(
    code_context: &impl FileMap,
    oracle_new_content: &impl FileMap,
    pred_new_content: &impl FileMap,
) -> Similarity {
    let oracle = normalized_patch(code_context, oracle_new_content);
    let pred = normalized_patch(code_context, pred_new_content);
    change_similarities(&pred, &oracle)
}
