//! Parsers, report.json and the run summary against upstream's own output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use swerl_eval::{GradingMode, Instance, LogParser, Prediction, eval_report};
use swerl_eval::{make_run_summary, report_json, summary_json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load(name: &str) -> Value {
    let text = fs_err::read_to_string(golden_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn modes() -> [(GradingMode, Value); 2] {
    [(GradingMode::V4, load("expected-v4.json")), (GradingMode::V5, load("expected-v5.json"))]
}

#[test]
fn parsers_match_upstream() {
    for (mode, expected) in modes() {
        let mut checked = 0;
        for (log_name, families) in expected["parsers"].as_object().unwrap() {
            let log = fs_err::read_to_string(golden_dir().join("logs").join(log_name)).unwrap();
            for (family, want) in families.as_object().unwrap() {
                let parser = LogParser::from_name(family).unwrap();
                let got = match parser.parse(&log, mode) {
                    Ok(map) => serde_json::to_value(map).unwrap(),
                    Err(_) => serde_json::json!({"__crash__": "IndexError"}),
                };
                assert_eq!(&got, want, "{mode:?} {family} on {log_name}");
                checked += 1;
            }
        }
        assert_eq!(checked, 12 * 7);
    }
}

#[test]
fn reports_match_upstream_byte_for_byte() {
    let cases = load("cases.json");
    for (mode, expected) in modes() {
        for case in cases["reports"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let id = format!("inst__{name}");
            let log = match case.get("log_file") {
                Some(f) => {
                    fs_err::read_to_string(golden_dir().join("logs").join(f.as_str().unwrap())).unwrap()
                }
                None => case["log"].as_str().unwrap().to_owned(),
            };
            let mut instance =
                Instance::new(&id, case["repo"].as_str().unwrap(), "base", case["version"].as_str().unwrap());
            instance.fail_to_pass = serde_json::from_value(case["FAIL_TO_PASS"].clone()).unwrap();
            instance.pass_to_pass = serde_json::from_value(case["PASS_TO_PASS"].clone()).unwrap();
            instance.eval_type = case["eval_type"].as_str().map(str::to_owned);
            let prediction = Prediction {
                instance_id: id.clone(),
                model_name_or_path: "m".into(),
                model_patch: match case.get("patch") {
                    Some(Value::Null) => None,
                    _ => Some("diff".into()),
                },
            };
            let parser = LogParser::from_name(case["log_parser"].as_str().unwrap()).unwrap();
            let want = &expected["reports"][name];
            match eval_report(&instance, &prediction, &log, parser, mode) {
                Ok(report) => {
                    assert_eq!(report_json(&id, &report), want.as_str().unwrap(), "{mode:?} {name}")
                }
                Err(crash) => assert!(want.get("__crash__").is_some(), "{mode:?} {name}: {crash}"),
            }
        }
    }
}

#[test]
fn run_summary_matches_upstream_byte_for_byte() {
    let case = &load("cases.json")["summary"];
    let run_id = case["run_id"].as_str().unwrap();
    let model = case["model"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs/run_evaluation");
    for (rel, content) in case["files"].as_object().unwrap() {
        let path = root.join(run_id).join(model.replace('/', "__")).join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, content.as_str().unwrap()).unwrap();
    }
    let dataset: Vec<Instance> = case["dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| Instance::new(id.as_str().unwrap(), "o/r", "c", "1"))
        .collect();
    let predictions: BTreeMap<String, Prediction> = case["predictions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, patch)| {
            let p = Prediction {
                instance_id: id.clone(),
                model_name_or_path: model.into(),
                model_patch: patch.as_str().map(str::to_owned),
            };
            (id.clone(), p)
        })
        .collect();
    for (mode, expected) in modes() {
        let summary = make_run_summary(&predictions, &dataset, run_id, &root, mode);
        assert_eq!(summary_json(&summary), expected["summary"].as_str().unwrap(), "{mode:?}");
    }
}

#[test]
fn directives_and_eval_scripts_match_upstream() {
    let expected = load("expected-v4.json");
    let dataset = swerl_eval::load_dataset(golden_dir().join("../fixtures/lite-sample.jsonl")).unwrap();
    assert_eq!(dataset.len(), 13);
    for instance in &dataset {
        let want = &expected["scripts"][&instance.instance_id];
        let directives = swerl_eval::directives::test_directives(&instance.repo, &instance.test_patch);
        assert_eq!(serde_json::to_value(&directives).unwrap(), want["directives"]);
        let modified = swerl_eval::directives::modified_files(&instance.test_patch);
        assert_eq!(serde_json::to_value(&modified).unwrap(), want["modified_files"]);
        let spec = swerl_eval::specs::spec_for(&instance.repo, &instance.version).unwrap();
        let script = swerl_eval::script::upstream_eval_script(instance, spec);
        assert_eq!(script, want["eval_script"].as_str().unwrap(), "{}", instance.instance_id);
    }
}

#[test]
fn parquet_and_jsonl_copies_agree() {
    let fixtures = golden_dir().join("../fixtures");
    let jsonl = swerl_eval::load_dataset(fixtures.join("lite-sample.jsonl")).unwrap();
    let parquet = swerl_eval::load_dataset(fixtures.join("lite-sample.parquet")).unwrap();
    assert_eq!(jsonl, parquet);
    let lists = swerl_eval::load_dataset(fixtures.join("lists.parquet")).unwrap();
    assert_eq!(lists[0].fail_to_pass, ["t1", "t2"]);
}
