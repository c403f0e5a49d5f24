//! SWE-bench instance files: JSON arrays, JSON lines (optionally gzipped) and parquet.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// One SWE-bench task instance. Fields beyond the ones the harness uses are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Instance {
    /// `owner__repo-PR`.
    pub instance_id: String,
    /// `owner/repo`.
    pub repo: String,
    /// The commit the task starts from.
    pub base_commit: String,
    /// The issue text the model is asked to resolve.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub problem_statement: String,
    /// The gold code change.
    #[serde(default)]
    pub patch: String,
    /// The change to the tests that checks the fix.
    #[serde(default)]
    pub test_patch: String,
    /// The spec-table key (`"3.0"`).
    #[serde(default, deserialize_with = "string_or_number")]
    pub version: String,
    /// The commit whose requirements build the environment.
    #[serde(default)]
    pub environment_setup_commit: String,
    /// Tests that must go from failing to passing.
    #[serde(rename = "FAIL_TO_PASS", default, deserialize_with = "test_list")]
    pub fail_to_pass: Vec<String>,
    /// Tests that must keep passing.
    #[serde(rename = "PASS_TO_PASS", default, deserialize_with = "test_list")]
    pub pass_to_pass: Vec<String>,
    /// v5 column: the whole script the official image runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_script: Option<String>,
    /// v5 column: the parser's registry name (`parse_log_django`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_parser: Option<String>,
    /// v5 column: `pass_and_fail` or `fail_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_type: Option<String>,
    /// v5 column: the official image's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Instance {
    /// A minimal instance, for tests and for building records programmatically.
    pub fn new(instance_id: &str, repo: &str, base_commit: &str, version: &str) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            repo: repo.to_owned(),
            base_commit: base_commit.to_owned(),
            version: version.to_owned(),
            ..Self::default()
        }
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!("expected a string, found {other}"))),
    }
}

/// FAIL_TO_PASS / PASS_TO_PASS: a JSON list, or a JSON list encoded in a string.
fn test_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        serde_json::Value::String(s) => serde_json::from_str(&s)
            .map_err(|e| D::Error::custom(format!("test list string is not a JSON list: {e}"))),
        serde_json::Value::Null => Ok(Vec::new()),
        v @ serde_json::Value::Array(_) => serde_json::from_value(v).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!("expected a list of test ids, found {other}"))),
    }
}

/// How a file is stored, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    JsonLines { gzip: bool },
    Parquet,
}

pub(crate) fn format_of(path: &Path) -> Result<Format> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let (stem, gzip) = match name.strip_suffix(".gz") {
        Some(s) => (s.to_owned(), true),
        None => (name.clone(), false),
    };
    if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        Ok(Format::JsonLines { gzip })
    } else if stem.ends_with(".json") && !gzip {
        Ok(Format::Json)
    } else if stem.ends_with(".parquet") && !gzip {
        Ok(Format::Parquet)
    } else {
        Err(Error::UnknownFormat { path: path.to_owned() })
    }
}

/// Reads the JSON values of a JSON array, a JSON object of objects, or a JSON-lines file, each
/// with its 1-based record number.
pub(crate) fn read_json_records(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    match format_of(path)? {
        Format::Json => {
            let text = fs_err::read_to_string(path)?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.to_owned(),
                line: None,
                source,
            })?;
            match value {
                serde_json::Value::Array(items) => {
                    Ok(items.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect())
                }
                serde_json::Value::Object(map) => Ok(map
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, mut v))| {
                        if let serde_json::Value::Object(obj) = &mut v {
                            obj.entry("instance_id").or_insert(serde_json::Value::String(key));
                        }
                        (i + 1, v)
                    })
                    .collect()),
                _ => Err(Error::InvalidRecord {
                    path: path.to_owned(),
                    record: 1,
                    instance: None,
                    message: "expected a JSON list or object".into(),
                }),
            }
        }
        Format::JsonLines { gzip } => {
            let file = fs_err::File::open(path)?;
            let reader: Box<dyn Read> =
                if gzip { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
            let mut out = Vec::new();
            for (i, line) in BufReader::new(reader).lines().enumerate() {
                let line = line.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}:{}: {e}", path.display(), i + 1))
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let value = serde_json::from_str(&line).map_err(|source| Error::Json {
                    path: path.to_owned(),
                    line: Some(i + 1),
                    source,
                })?;
                out.push((i + 1, value));
            }
            Ok(out)
        }
        Format::Parquet => crate::parquet_rows::read_rows(path),
    }
}

/// Loads a dataset file (`.json`, `.jsonl`, `.jsonl.gz`, `.parquet`); instance ids must be unique.
pub fn load_dataset(path: impl AsRef<Path>) -> Result<Vec<Instance>> {
    let path = path.as_ref();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (record, value) in read_json_records(path)? {
        let id = value.get("instance_id").and_then(|v| v.as_str()).map(str::to_owned);
        let instance: Instance = serde_json::from_value(value).map_err(|e| Error::InvalidRecord {
            path: path.to_owned(),
            record,
            instance: id.clone(),
            message: e.to_string(),
        })?;
        if !seen.insert(instance.instance_id.clone()) {
            return Err(Error::DuplicateInstance { path: path.to_owned(), instance: instance.instance_id });
        }
        out.push(instance);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lists_as_strings_or_lists() {
        let a: Instance = serde_json::from_str(
            r#"{"instance_id":"a__b-1","repo":"a/b","base_commit":"c","version":3.1,
               "FAIL_TO_PASS":"[\"t1\", \"t2\"]","PASS_TO_PASS":["t3"]}"#,
        )
        .unwrap();
        assert_eq!(a.fail_to_pass, ["t1", "t2"]);
        assert_eq!(a.pass_to_pass, ["t3"]);
        assert_eq!(a.version, "3.1");
        let bad = serde_json::from_str::<Instance>(
            r#"{"instance_id":"x","repo":"a/b","base_commit":"c","FAIL_TO_PASS":"nope"}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("not a JSON list"));
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(format_of(Path::new("a.JSONL.gz")).unwrap(), Format::JsonLines { gzip: true });
        assert_eq!(format_of(Path::new("a.json")).unwrap(), Format::Json);
        assert_eq!(format_of(Path::new("a.parquet")).unwrap(), Format::Parquet);
        assert!(format_of(Path::new("a.csv")).is_err());
    }

    #[test]
    fn errors_name_file_line_and_instance() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        fs_err::write(&p, "{\"instance_id\":\"a\",\"repo\":\"r\",\"base_commit\":\"c\"}\n{oops\n").unwrap();
        let e = load_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:2"), "{e}");
        fs_err::write(
            &p,
            "{\"instance_id\":\"a\",\"repo\":\"r\",\"base_commit\":\"c\",\"FAIL_TO_PASS\":3}\n",
        )
        .unwrap();
        let e = load_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("record 1 (a)"), "{e}");
        fs_err::write(&p, "{\"instance_id\":\"a\",\"repo\":\"r\",\"base_commit\":\"c\"}\n{\"instance_id\":\"a\",\"repo\":\"r\",\"base_commit\":\"c\"}\n").unwrap();
        assert!(matches!(load_dataset(&p), Err(Error::DuplicateInstance { .. })));
    }
}
