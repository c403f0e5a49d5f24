//! Predictions: what a model proposes for each instance, or the gold and empty pseudo-models.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{Instance, read_json_records};
use crate::error::{Error, Result};

/// The model name upstream gives the gold pseudo-predictions.
pub(crate) const GOLD_MODEL: &str = "gold";
/// The model name of the empty pseudo-predictions.
pub(crate) const EMPTY_MODEL: &str = "empty";

/// One prediction: `{instance_id, model_name_or_path, model_patch}` (the patch may be null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// The instance it answers.
    pub instance_id: String,
    /// The model's name; `/` becomes `__` in log paths.
    #[serde(default = "none_model")]
    pub model_name_or_path: String,
    /// A `git diff` text; `None` when the model produced nothing.
    #[serde(default)]
    pub model_patch: Option<String>,
}

fn none_model() -> String {
    "None".to_owned()
}

impl Prediction {
    /// The directory name upstream uses for the model (`/` replaced by `__`).
    pub fn model_dir(&self) -> String {
        self.model_name_or_path.replace('/', "__")
    }

    /// True when the patch is `None` or `""` (upstream's empty-patch bucket).
    pub fn is_empty(&self) -> bool {
        self.model_patch.as_deref().is_none_or(str::is_empty)
    }
}

/// Where predictions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictionSource {
    /// A JSON list, JSON dict (keyed by instance id) or JSON-lines file.
    File(std::path::PathBuf),
    /// The dataset's own patches, as model `gold`.
    Gold,
    /// Empty patches, as model `empty`.
    Empty,
}

impl PredictionSource {
    /// `gold`, `empty`, or a path.
    pub fn parse(s: &str) -> Self {
        match s {
            "gold" => Self::Gold,
            "empty" => Self::Empty,
            path => Self::File(path.into()),
        }
    }
}

/// Loads predictions keyed by instance id (a later duplicate is an error).
pub fn load_predictions(
    source: &PredictionSource,
    dataset: &[Instance],
) -> Result<BTreeMap<String, Prediction>> {
    let pseudo = |model: &str, gold: bool| {
        dataset
            .iter()
            .map(|i| {
                let p = Prediction {
                    instance_id: i.instance_id.clone(),
                    model_name_or_path: model.to_owned(),
                    model_patch: Some(if gold { i.patch.clone() } else { String::new() }),
                };
                (i.instance_id.clone(), p)
            })
            .collect()
    };
    match source {
        PredictionSource::Gold => Ok(pseudo(GOLD_MODEL, true)),
        PredictionSource::Empty => Ok(pseudo(EMPTY_MODEL, false)),
        PredictionSource::File(path) => load_prediction_file(path),
    }
}

fn load_prediction_file(path: &Path) -> Result<BTreeMap<String, Prediction>> {
    let mut out = BTreeMap::new();
    for (record, value) in read_json_records(path)? {
        let id = value.get("instance_id").and_then(|v| v.as_str()).map(str::to_owned);
        let p: Prediction = serde_json::from_value(value).map_err(|e| Error::InvalidRecord {
            path: path.to_owned(),
            record,
            instance: id,
            message: e.to_string(),
        })?;
        if out.contains_key(&p.instance_id) {
            return Err(Error::DuplicateInstance { path: path.to_owned(), instance: p.instance_id });
        }
        out.insert(p.instance_id.clone(), p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_dict_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("p.json");
        fs_err::write(&list, r#"[{"instance_id":"a","model_name_or_path":"org/m","model_patch":null}]"#)
            .unwrap();
        let dict = dir.path().join("d.json");
        fs_err::write(&dict, r#"{"a":{"model_name_or_path":"m","model_patch":"diff"}}"#).unwrap();
        let lines = dir.path().join("l.jsonl");
        fs_err::write(&lines, "{\"instance_id\":\"a\",\"model_name_or_path\":\"m\",\"model_patch\":\"\"}\n")
            .unwrap();
        let p = load_predictions(&PredictionSource::File(list), &[]).unwrap();
        assert_eq!(p["a"].model_dir(), "org__m");
        assert!(p["a"].is_empty() && p["a"].model_patch.is_none());
        let p = load_predictions(&PredictionSource::File(dict), &[]).unwrap();
        assert_eq!(p["a"].model_patch.as_deref(), Some("diff"));
        let p = load_predictions(&PredictionSource::File(lines), &[]).unwrap();
        assert!(p["a"].is_empty());
    }

    #[test]
    fn gold_and_empty() {
        let mut i = Instance::new("x__y-1", "x/y", "c", "1.0");
        i.patch = "diff --git a/f b/f".into();
        let g = load_predictions(&PredictionSource::parse("gold"), &[i.clone()]).unwrap();
        assert_eq!(g["x__y-1"].model_patch.as_deref(), Some(i.patch.as_str()));
        assert_eq!(g["x__y-1"].model_name_or_path, "gold");
        let e = load_predictions(&PredictionSource::parse("empty"), &[i]).unwrap();
        assert!(e["x__y-1"].is_empty());
    }
}
