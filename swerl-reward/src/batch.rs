//! Scoring JSON-lines files of cases, in parallel, with per-line errors (what `swerl reward`
//! runs).
//!
//! Input: one JSON object per line, either a search/replace case
//! `{"code_context": {path: text}, "oracle_new_content": {path: text}, "output": "..."}` or a
//! unified-diff case `{"oracle_patches": ["..."], "pred_patches": ["..."]}`. Other fields are
//! ignored except `instance_id`, which is copied to the result.
//!
//! Output: one JSON object per input line, in input order: `{"reward": r, "similarities":
//! [{"path", "similarity"}], ...}`, with `"error"` holding the reason when `r` is -1. A line that
//! is not a valid case gets `{"reward": null, "error": {"kind": "invalid_case", "line": n,
//! "message": "..."}}` and the rest of the file is still scored.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::FormatError;
use crate::score::Scorer;
use crate::similarity::Similarity;
use crate::unidiff::{Dialect, unidiff_reward};

/// Lines scored per parallel batch: bounds memory on endless inputs while keeping cores busy.
const CHUNK: usize = 2048;

/// One input line (see [`parse_case`]).
#[derive(Debug, Clone)]
pub enum Case {
    /// A raw completion scored against an oracle's new contents.
    SearchReplace {
        /// Instance id, copied to the result.
        instance_id: Option<String>,
        /// Path -> original content.
        code_context: BTreeMap<String, String>,
        /// Path -> content after the real fix.
        oracle_new_content: BTreeMap<String, String>,
        /// The model's completion.
        output: String,
    },
    /// Predicted `git diff` texts scored against oracle ones.
    Unidiff {
        /// Instance id, copied to the result.
        instance_id: Option<String>,
        /// The oracle's diffs.
        oracle_patches: Vec<String>,
        /// The prediction's diffs.
        pred_patches: Vec<String>,
    },
}

/// A per-file similarity, as written to the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathSimilarity {
    /// The file.
    pub path: String,
    /// Its similarity, in [0, 1].
    pub similarity: f64,
}

/// Why a line has no reward or scores -1.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LineError {
    /// The completion is badly formatted (reward -1).
    Format {
        /// The structured reason.
        #[serde(flatten)]
        error: FormatError,
        /// The reason in words.
        message: String,
    },
    /// The line is not a valid case (no reward).
    Invalid {
        /// Always `"invalid_case"`.
        kind: &'static str,
        /// 1-based line number in the input.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// One output line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineResult {
    /// The instance id of the case, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The reward; `None` for an invalid line.
    pub reward: Option<f64>,
    /// Why the reward is -1, or why there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<LineError>,
    /// Per-file similarities (empty on errors), sorted by path.
    pub similarities: Vec<PathSimilarity>,
    /// The prediction as a `git diff`, when asked for and the completion is well formatted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// How to score a file of cases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchOptions {
    /// Worker threads; 0 means one per core.
    pub jobs: usize,
    /// Add each well-formatted prediction's `git diff` to its result.
    pub include_patch: bool,
    /// The `unidiff` release whose parser unified-diff cases follow.
    pub dialect: Dialect,
}

/// Totals of a [`score_jsonl`] run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Lines read.
    pub lines: usize,
    /// Lines that were not valid cases.
    pub invalid: usize,
    /// Cases scoring -1.
    pub format_errors: usize,
    /// Mean reward over valid cases (NaN when there are none).
    pub mean_reward: f64,
}

/// Errors reading or writing the case files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Reading the input failed at a line.
    #[error("reading line {line}: {source}")]
    Read {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the results failed.
    #[error("writing results: {0}")]
    Write(#[source] std::io::Error),
    /// The worker pool could not start.
    #[error("starting {jobs} worker threads: {message}")]
    Threads {
        /// Threads asked for.
        jobs: usize,
        /// The reason.
        message: String,
    },
}

/// Scores one JSON line (1-based `line` for error messages).
pub fn score_line(line: usize, text: &str, options: &BatchOptions) -> LineResult {
    let case = match parse_case(text) {
        Ok(case) => case,
        Err(error) => return invalid(line, instance_id_of(text), error.to_string()),
    };
    match case {
        Case::SearchReplace { instance_id, code_context, oracle_new_content, output } => {
            let scorer = Scorer::new(&code_context, &oracle_new_content);
            match scorer.score(&output) {
                Ok(score) => LineResult {
                    instance_id,
                    reward: Some(score.reward),
                    error: None,
                    similarities: similarities(score.similarities.iter().map(|s| (&s.path, s.similarity))),
                    patch: options.include_patch.then(|| score.git_patch(&code_context)),
                },
                Err(error) => LineResult {
                    instance_id,
                    reward: Some(FormatError::REWARD),
                    error: Some(LineError::Format { message: error.to_string(), error }),
                    similarities: Vec::new(),
                    patch: None,
                },
            }
        }
        Case::Unidiff { instance_id, oracle_patches, pred_patches } => {
            let Similarity { reward, files } =
                unidiff_reward(&oracle_patches, &pred_patches, options.dialect);
            LineResult {
                instance_id,
                reward: Some(reward),
                error: None,
                similarities: similarities(files.iter().map(|f| (&f.path, f.similarity))),
                patch: None,
            }
        }
    }
}

/// The string `instance_id` of a JSON object line, if it has one (for error rows).
fn instance_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        instance_id: String,
    }
    serde_json::from_str::<Id>(text).ok().map(|i| i.instance_id)
}

/// Why a line is not a [`Case`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The line is blank.
    #[error("empty line")]
    Empty,
    /// The line is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The line is JSON, but not an object.
    #[error("expected a JSON object")]
    NotAnObject,
    /// A field the case needs is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type.
    #[error("field `{field}`: {source}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What serde found.
        source: serde_json::Error,
    },
    /// The object has the fields of neither kind of case.
    #[error(
        "expected the fields code_context, oracle_new_content and output, or oracle_patches and pred_patches"
    )]
    UnknownShape,
}

/// Reads field `name` of `object`; a wrong type is an error naming the field.
fn field<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<Option<T>, CaseError> {
    match object.get(name) {
        None => Ok(None),
        Some(v) => T::deserialize(v).map(Some).map_err(|source| CaseError::WrongType { field: name, source }),
    }
}

fn required<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<T, CaseError> {
    field(object, name)?.ok_or(CaseError::MissingField(name))
}

/// Parses a case, with a precise error when the line is not one (naming the missing field or
/// the field of the wrong type).
pub fn parse_case(text: &str) -> Result<Case, CaseError> {
    if text.trim().is_empty() {
        return Err(CaseError::Empty);
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(CaseError::InvalidJson)?;
    let Some(object) = value.as_object() else {
        return Err(CaseError::NotAnObject);
    };
    let instance_id: Option<String> = field(object, "instance_id")?;
    if object.contains_key("output") || object.contains_key("code_context") {
        Ok(Case::SearchReplace {
            instance_id,
            code_context: required(object, "code_context")?,
            oracle_new_content: required(object, "oracle_new_content")?,
            output: required(object, "output")?,
        })
    } else if object.contains_key("pred_patches") || object.contains_key("oracle_patches") {
        Ok(Case::Unidiff {
            instance_id,
            oracle_patches: required(object, "oracle_patches")?,
            pred_patches: required(object, "pred_patches")?,
        })
    } else {
        Err(CaseError::UnknownShape)
    }
}

fn invalid(line: usize, instance_id: Option<String>, message: String) -> LineResult {
    let message = format!("line {line}: {message}");
    LineResult {
        instance_id,
        reward: None,
        error: Some(LineError::Invalid { kind: "invalid_case", line, message }),
        similarities: Vec::new(),
        patch: None,
    }
}

/// A line's text, or its instance id (when readable) and why it is not text.
type LineText = Result<String, (Option<String>, String)>;

/// A line without its `\n` or `\r\n`, as text, or why it is not UTF-8 (one bad line is one
/// error row, not the end of the batch).
fn line_text(bytes: &[u8]) -> LineText {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let id = instance_id_of(&String::from_utf8_lossy(bytes));
        (id, format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))
    })
}

fn similarities<'a>(items: impl Iterator<Item = (&'a String, f64)>) -> Vec<PathSimilarity> {
    items.map(|(path, similarity)| PathSimilarity { path: path.clone(), similarity }).collect()
}

/// Scores every line of `input` and writes one JSON result line per input line to `output`, in
/// input order, `options.jobs` lines at a time in parallel. The results do not depend on the
/// number of jobs. `progress` is called with the number of lines done after each batch.
pub fn score_jsonl(
    mut input: impl BufRead,
    mut output: impl Write,
    options: &BatchOptions,
    mut progress: impl FnMut(usize),
) -> Result<BatchSummary, BatchError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs)
        .build()
        .map_err(|e| BatchError::Threads { jobs: options.jobs, message: e.to_string() })?;
    let mut summary = BatchSummary::default();
    let mut reward_sum = 0.0;
    let mut chunk: Vec<(usize, LineText)> = Vec::with_capacity(CHUNK);
    let mut buf = Vec::new();
    loop {
        chunk.clear();
        while chunk.len() < CHUNK {
            let number = summary.lines + chunk.len() + 1;
            buf.clear();
            if input
                .read_until(b'\n', &mut buf)
                .map_err(|source| BatchError::Read { line: number, source })?
                == 0
            {
                break;
            }
            chunk.push((number, line_text(&buf)));
        }
        if chunk.is_empty() {
            break;
        }
        let results: Vec<LineResult> = pool.install(|| {
            chunk
                .par_iter()
                .map(|(n, text)| match text {
                    Ok(text) => score_line(*n, text, options),
                    Err((id, message)) => invalid(*n, id.clone(), message.clone()),
                })
                .collect()
        });
        for result in &results {
            match result.reward {
                None => summary.invalid += 1,
                Some(r) => {
                    reward_sum += r;
                    summary.format_errors += usize::from(r == FormatError::REWARD);
                }
            }
            serde_json::to_writer(&mut output, result).map_err(|e| BatchError::Write(e.into()))?;
            output.write_all(b"\n").map_err(BatchError::Write)?;
        }
        summary.lines += chunk.len();
        progress(summary.lines);
    }
    output.flush().map_err(BatchError::Write)?;
    let valid = summary.lines - summary.invalid;
    summary.mean_reward = if valid == 0 { f64::NAN } else { reward_sum / valid as f64 };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"instance_id": "x", "code_context": {"a.py": "x = 1\n"}, "oracle_new_content": {"a.py": "x = 2\n"}, "output": "<think>t</think><solution>\n```\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n</solution>"}"#;

    fn run(input: &str, jobs: usize) -> (String, BatchSummary) {
        let mut out = Vec::new();
        let options = BatchOptions { jobs, ..Default::default() };
        let summary = score_jsonl(input.as_bytes(), &mut out, &options, |_| {}).unwrap();
        (String::from_utf8(out).unwrap(), summary)
    }

    #[test]
    fn invalid_lines_are_reported_and_skipped() {
        let input = format!("{GOOD}\nnot json\n{{\"output\": \"x\"}}\n\n{GOOD}\n");
        let (out, summary) = run(&input, 2);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["reward"], 1.0);
        assert_eq!(lines[0]["instance_id"], "x");
        assert_eq!(lines[1]["reward"], serde_json::Value::Null);
        assert_eq!(lines[1]["error"]["line"], 2);
        assert_eq!(lines[2]["error"]["message"], "line 3: missing field `code_context`");
        assert_eq!(lines[3]["error"]["line"], 4);
        assert_eq!(lines[4]["reward"], 1.0);
        assert_eq!(summary, BatchSummary { lines: 5, invalid: 3, format_errors: 0, mean_reward: 1.0 });
    }

    #[test]
    fn a_line_of_invalid_utf8_is_one_error_row() {
        let mut input = format!("{GOOD}\n").into_bytes();
        input.extend_from_slice(b"{\"instance_id\": \"bad\", \"output\": \"\xff\xfe\"}\r\n");
        input.extend_from_slice(GOOD.as_bytes());
        let mut out = Vec::new();
        let summary = score_jsonl(&input[..], &mut out, &BatchOptions::default(), |_| {}).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["error"]["line"], 2);
        assert_eq!(lines[1]["instance_id"], "bad");
        assert!(lines[1]["error"]["message"].as_str().unwrap().contains("invalid UTF-8"), "{}", lines[1]);
        assert_eq!(lines[2]["reward"], 1.0);
        assert_eq!(summary.invalid, 1);
    }

    #[test]
    fn invalid_rows_keep_the_instance_id_and_name_the_wrong_field() {
        let r = score_line(
            7,
            r#"{"instance_id": "i-1", "code_context": {}, "oracle_new_content": {}, "output": 3}"#,
            &BatchOptions::default(),
        );
        assert_eq!(r.instance_id.as_deref(), Some("i-1"));
        let Some(LineError::Invalid { message, .. }) = &r.error else { panic!("{r:?}") };
        assert!(message.starts_with("line 7: field `output`: invalid type: integer `3`"), "{message}");
        let r = score_line(
            1,
            r#"{"instance_id": "i-2", "code_context": {"a": 1}, "oracle_new_content": {}, "output": ""}"#,
            &BatchOptions::default(),
        );
        let Some(LineError::Invalid { message, .. }) = &r.error else { panic!("{r:?}") };
        assert!(message.contains("field `code_context`"), "{message}");
        assert_eq!(r.instance_id.as_deref(), Some("i-2"));
    }

    #[test]
    fn results_do_not_depend_on_jobs() {
        let bad = GOOD.replace("<think>t</think>", "");
        let input: String =
            (0..50).map(|i| if i % 3 == 0 { format!("{bad}\n") } else { format!("{GOOD}\n") }).collect();
        let (one, s1) = run(&input, 1);
        let (many, s2) = run(&input, 4);
        assert_eq!(one, many);
        assert_eq!(s1, s2);
        assert_eq!(s1.format_errors, 17);
        let first: serde_json::Value = serde_json::from_str(one.lines().next().unwrap()).unwrap();
        assert_eq!(first["error"]["kind"], "tag_count");
        assert_eq!(first["error"]["tag"], "<think>");
    }

    #[test]
    fn unidiff_cases_are_scored() {
        let line = r#"{"oracle_patches": ["--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"], "pred_patches": ["--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"]}"#;
        let result = score_line(1, line, &BatchOptions::default());
        assert_eq!(result.reward, Some(1.0));
        assert_eq!(result.similarities[0].path, "x");
    }
}
