//! RL instances: the JSONL records the reward scores against and GRPO trains on (what
//! `swerl mine` writes as `instances.jsonl`), loaded with per-line errors.
//!
//! One JSON object per line with at least `instance_id`, `problem_statement`, `code_context`
//! (path -> file content before the fix) and `oracle_new_content` (path -> content after the fix).
//! Other fields (repo, base commit, patches, ...) may be present and are ignored. A malformed
//! record is reported with its line number and skipped; the rest of the file still loads.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One RL instance (the paper's: issue, code context, oracle new contents).
///
/// The mined instance of `swerl-data` embeds this type (its other fields sit beside these four in
/// the same JSON object), so a line of `instances.jsonl` is an RL instance by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlInstance {
    /// Unique id, e.g. `owner__repo-123`.
    pub instance_id: String,
    /// The issue text the model must resolve.
    pub problem_statement: String,
    /// Path -> file content before the fix (the files to edit and other relevant files).
    pub code_context: BTreeMap<String, String>,
    /// Path -> file content after the real fix.
    pub oracle_new_content: BTreeMap<String, String>,
}

/// A record that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SkippedRecord {
    /// 1-based line number in the file.
    pub line: usize,
    /// The instance id, when the record had a readable one.
    pub instance_id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl SkippedRecord {
    /// A record skipped at 1-based `line` (with its id when readable) because of `message`.
    pub fn new(line: usize, instance_id: Option<String>, message: impl Into<String>) -> Self {
        Self { line, instance_id, message: message.into() }
    }
}

impl std::fmt::Display for SkippedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance_id {
            Some(id) => write!(f, "line {} ({id}): {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// A loaded data set: the usable instances, in file order, and what was skipped.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Dataset {
    /// Where it came from.
    pub path: PathBuf,
    /// Usable instances in file order.
    pub instances: Vec<RlInstance>,
    /// Malformed or duplicate records, in file order.
    pub skipped: Vec<SkippedRecord>,
}

impl Dataset {
    /// Reads a JSONL file of RL instances. I/O errors are fatal; malformed records are not.
    /// Fails with [`Error::EmptyDataset`] when no record is usable.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let dataset = Self::from_reader(std::io::BufReader::new(file), path)?;
        if dataset.instances.is_empty() {
            return Err(Error::EmptyDataset { path: path.to_owned(), skipped: dataset.skipped.len() });
        }
        Ok(dataset)
    }

    /// A data set of already-built instances (duplicates are the caller's business).
    pub fn from_instances(path: impl Into<PathBuf>, instances: Vec<RlInstance>) -> Self {
        Self { path: path.into(), instances, skipped: Vec::new() }
    }

    /// Parses JSONL from any reader; `path` only names the source in messages. A line that is
    /// not UTF-8 is a skipped record like any other malformed one.
    pub fn from_reader(mut reader: impl BufRead, path: &Path) -> Result<Self, Error> {
        let mut dataset = Self { path: path.to_owned(), ..Self::default() };
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut bytes = Vec::new();
        let mut number = 0;
        loop {
            bytes.clear();
            let read = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|source| Error::Io { path: path.to_owned(), source })?;
            if read == 0 {
                break;
            }
            number += 1;
            let line = match std::str::from_utf8(&bytes) {
                Ok(line) => line,
                Err(e) => {
                    let message = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                    dataset.skipped.push(SkippedRecord { line: number, instance_id: None, message });
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match parse_record(line) {
                Ok(instance) => {
                    if let Some(first) = seen.get(&instance.instance_id) {
                        dataset.skipped.push(SkippedRecord {
                            line: number,
                            instance_id: Some(instance.instance_id),
                            message: format!("duplicate instance_id (first seen on line {first})"),
                        });
                    } else {
                        seen.insert(instance.instance_id.clone(), number);
                        dataset.instances.push(instance);
                    }
                }
                Err((instance_id, message)) => {
                    dataset.skipped.push(SkippedRecord { line: number, instance_id, message });
                }
            }
        }
        Ok(dataset)
    }
}

/// Parses and validates one record; on failure returns the id (if readable) and a message.
fn parse_record(line: &str) -> std::result::Result<RlInstance, (Option<String>, String)> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| (None, format!("invalid JSON: {e}")))?;
    let object = value.as_object().ok_or((None, "not a JSON object".to_owned()))?;
    let instance_id = match object.get("instance_id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(serde_json::Value::String(_)) => return Err((None, "empty `instance_id`".into())),
        Some(_) => return Err((None, "`instance_id` is not a string".into())),
        None => return Err((None, "missing `instance_id`".into())),
    };
    let id = Some(instance_id.clone());
    let problem_statement = match object.get("problem_statement") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err((id, "`problem_statement` is not a string".into())),
        None => return Err((id, "missing `problem_statement`".into())),
    };
    let code_context = file_map(object, "code_context").map_err(|m| (id.clone(), m))?;
    let oracle_new_content = file_map(object, "oracle_new_content").map_err(|m| (id.clone(), m))?;
    if oracle_new_content.is_empty() {
        return Err((id, "`oracle_new_content` is empty: nothing to learn".into()));
    }
    Ok(RlInstance { instance_id, problem_statement, code_context, oracle_new_content })
}

fn file_map(
    object: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let map = match object.get(key) {
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => return Err(format!("`{key}` is not an object of path -> content")),
        None => return Err(format!("missing `{key}`")),
    };
    map.iter()
        .map(|(path, content)| match content {
            serde_json::Value::String(s) => Ok((path.clone(), s.clone())),
            _ => Err(format!("`{key}[{path:?}]` is not a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Dataset {
        Dataset::from_reader(text.as_bytes(), Path::new("x.jsonl")).unwrap()
    }

    #[test]
    fn good_records_load_and_extra_fields_are_ignored() {
        let d = load(concat!(
            r#"{"instance_id":"a__b-1","problem_statement":"p","code_context":{"f.py":"x\n"},"oracle_new_content":{"f.py":"y\n"},"repo":"a/b"}"#,
            "\n\n",
            r#"{"instance_id":"a__b-2","problem_statement":"q","code_context":{},"oracle_new_content":{"g.py":"z"}}"#,
            "\n"
        ));
        assert_eq!(d.instances.len(), 2);
        assert!(d.skipped.is_empty());
        assert_eq!(d.instances[0].code_context["f.py"], "x\n");
    }

    #[test]
    fn malformed_records_are_skipped_with_line_and_reason() {
        let d = load(concat!(
            "not json\n",
            r#"[1,2]"#,
            "\n",
            r#"{"problem_statement":"p","code_context":{},"oracle_new_content":{"f":"x"}}"#,
            "\n",
            r#"{"instance_id":"i1","problem_statement":3,"code_context":{},"oracle_new_content":{"f":"x"}}"#,
            "\n",
            r#"{"instance_id":"i2","problem_statement":"p","code_context":{"f":1},"oracle_new_content":{"f":"x"}}"#,
            "\n",
            r#"{"instance_id":"i3","problem_statement":"p","code_context":{},"oracle_new_content":{}}"#,
            "\n",
            r#"{"instance_id":"ok","problem_statement":"p","code_context":{},"oracle_new_content":{"f":"x"}}"#,
            "\n",
            r#"{"instance_id":"ok","problem_statement":"p","code_context":{},"oracle_new_content":{"f":"x"}}"#,
            "\n",
        ));
        assert_eq!(d.instances.len(), 1);
        let lines: Vec<usize> = d.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 8]);
        assert!(d.skipped[0].message.starts_with("invalid JSON"));
        assert!(d.skipped[2].message.contains("missing `instance_id`"));
        assert_eq!(d.skipped[3].instance_id.as_deref(), Some("i1"));
        assert!(d.skipped[4].to_string().contains("code_context[\"f\"]"), "{}", d.skipped[4]);
        assert!(d.skipped[5].message.contains("empty"));
        assert!(d.skipped[6].message.contains("duplicate instance_id (first seen on line 7)"));
    }

    #[test]
    fn a_file_without_usable_records_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{}\n").unwrap();
        let err = Dataset::load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl") && err.contains("1 malformed"), "{err}");
        let err = Dataset::load(dir.path().join("missing.jsonl")).unwrap_err().to_string();
        assert!(err.contains("missing.jsonl"), "{err}");
    }

    #[test]
    fn a_line_that_is_not_utf8_is_one_skipped_record() {
        let mut text = br#"{"instance_id":"a","problem_statement":"p","code_context":{},"oracle_new_content":{"f":"x"}}"#.to_vec();
        text.extend_from_slice(b"\n\xff\xfe\n");
        text.extend_from_slice(br#"{"instance_id":"b","problem_statement":"p","code_context":{},"oracle_new_content":{"f":"x"}}"#);
        let d = Dataset::from_reader(&text[..], Path::new("x.jsonl")).unwrap();
        assert_eq!(d.instances.len(), 2);
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].line, 2);
        assert!(d.skipped[0].message.contains("UTF-8"), "{}", d.skipped[0]);
    }
}
