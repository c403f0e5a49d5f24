//! Golden vectors produced by `tests/golden/make_golden.py` from CPython's difflib, the Python
//! `unidiff` releases and the paper's own reward.py. Every value must agree within 1e-9.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;
use swerl_reward::difflib::SequenceMatcher;
use swerl_reward::unidiff::{Dialect, unidiff_reward};
use swerl_reward::{FormatError, Scorer, normalized_patch, pystr};

const TOLERANCE: f64 = 1e-9;

fn rows(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).expect("a map of strings")
}

fn float_map(v: &Value) -> BTreeMap<String, f64> {
    serde_json::from_value(v.clone()).expect("a map of floats")
}

fn error_json(err: &FormatError) -> (String, Value) {
    let mut v = serde_json::to_value(err).expect("errors serialize");
    let kind = v["kind"].as_str().expect("tagged").to_owned();
    v.as_object_mut().expect("object").remove("kind");
    (kind, v)
}

#[test]
fn search_replace_rewards_match_python() {
    let tasks = rows("reward_cases.jsonl.gz");
    let mut checked = 0;
    for task in &tasks {
        let id = task["id"].as_str().unwrap();
        let context = string_map(&task["code_context"]);
        let oracle = string_map(&task["oracle_new_content"]);
        let scorer = Scorer::new(&context, &oracle);
        for case in task["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let output = case["output"].as_str().unwrap();
            let want = case["reward"].as_f64().unwrap();
            let at = format!("{id}/{name}");
            match scorer.score(output) {
                Ok(score) => {
                    assert!(
                        case["error"].is_null(),
                        "{at}: expected {}, got reward {}",
                        case["error"],
                        score.reward
                    );
                    assert!(
                        (score.reward - want).abs() <= TOLERANCE,
                        "{at}: reward {} != {want}",
                        score.reward
                    );
                    let sims: BTreeMap<String, f64> =
                        score.similarities.iter().map(|s| (s.path.clone(), s.similarity)).collect();
                    let want_sims = float_map(&case["similarities"]);
                    assert_eq!(sims.keys().collect::<Vec<_>>(), want_sims.keys().collect::<Vec<_>>(), "{at}");
                    for (path, s) in &sims {
                        assert!(
                            (s - want_sims[path]).abs() <= TOLERANCE,
                            "{at}: {path}: {s} != {}",
                            want_sims[path]
                        );
                    }
                }
                Err(err) => {
                    assert_eq!(want, -1.0, "{at}: unexpected error {err}");
                    let (kind, fields) = error_json(&err);
                    assert_eq!(kind, case["error"].as_str().unwrap(), "{at}");
                    assert_eq!(fields, case["error_fields"], "{at}");
                    assert_eq!(scorer.reward(output), -1.0);
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 5000, "only {checked} cases");
}

fn opcodes_json(ops: &[swerl_reward::difflib::Opcode]) -> Value {
    ops.iter().map(|o| serde_json::json!([o.tag.as_str(), o.i1, o.i2, o.j1, o.j2])).collect()
}

fn check_matcher(m: &SequenceMatcher, want: &Value, at: &str) {
    let blocks: Vec<[usize; 3]> = m.matching_blocks().iter().map(|b| [b.a, b.b, b.size]).collect();
    assert_eq!(serde_json::to_value(&blocks).unwrap(), want["blocks"], "{at}: blocks");
    assert_eq!(opcodes_json(&m.opcodes()), want["opcodes"], "{at}: opcodes");
    for n in [0usize, 1, 3] {
        let groups: Vec<Value> = m.grouped_opcodes(n).iter().map(|g| opcodes_json(g)).collect();
        assert_eq!(Value::from(groups), want["grouped"][n.to_string()], "{at}: grouped({n})");
    }
    assert_eq!(m.ratio(), want["ratio"].as_f64().unwrap(), "{at}: ratio");
    assert_eq!(m.quick_ratio(), want["quick_ratio"].as_f64().unwrap(), "{at}: quick_ratio");
    let l = m.find_longest_match(0, m.len_a(), 0, m.len_b());
    assert_eq!(serde_json::json!([l.a, l.b, l.size]), want["longest"], "{at}: longest");
}

#[test]
fn sequence_matcher_matches_python() {
    let cases = rows("matcher_cases.jsonl.gz");
    assert!(cases.len() >= 1500);
    for (i, case) in cases.iter().enumerate() {
        let autojunk = case["autojunk"].as_bool().unwrap();
        let junk: Vec<char> = case["junk"].as_str().map(|s| s.chars().collect()).unwrap_or_default();
        let at = format!("matcher case {i}");
        if case["kind"] == "chars" {
            let a: Vec<char> = case["a"].as_str().unwrap().chars().collect();
            let b: Vec<char> = case["b"].as_str().unwrap().chars().collect();
            let m = SequenceMatcher::with_junk(&a, &b, autojunk, |c| junk.contains(c));
            check_matcher(&m, &case["expected"], &at);
        } else {
            let a: Vec<String> = serde_json::from_value(case["a"].clone()).unwrap();
            let b: Vec<String> = serde_json::from_value(case["b"].clone()).unwrap();
            let m = SequenceMatcher::with_autojunk(&a, &b, autojunk);
            check_matcher(&m, &case["expected"], &at);
        }
    }
}

#[test]
fn python_text_semantics_and_change_texts() {
    for (i, case) in rows("text_cases.jsonl.gz").iter().enumerate() {
        if case["kind"] == "text" {
            let text = case["text"].as_str().unwrap();
            let lines: Vec<&str> = pystr::splitlines(text).collect();
            assert_eq!(
                serde_json::to_value(&lines).unwrap(),
                case["lines"],
                "case {i}: splitlines({text:?})"
            );
            assert_eq!(pystr::strip(text), case["strip"].as_str().unwrap(), "case {i}: strip({text:?})");
        } else {
            let old = BTreeMap::from([("f", case["old"].as_str().unwrap())]);
            let new = BTreeMap::from([("f", case["new"].as_str().unwrap())]);
            let patch = normalized_patch(&old, &new);
            let got = patch.get("f").map_or("", String::as_str);
            assert_eq!(got, case["text"].as_str().unwrap(), "case {i}");
        }
    }
}

#[test]
fn unidiff_rewards_match_both_releases() {
    let cases = rows("unidiff_cases.jsonl.gz");
    assert!(cases.len() > 2000);
    for case in &cases {
        let at = format!("{}/{}", case["id"].as_str().unwrap(), case["variant"].as_str().unwrap());
        let oracle: Vec<String> = serde_json::from_value(case["oracle"].clone()).unwrap();
        let pred: Vec<String> = serde_json::from_value(case["pred"].clone()).unwrap();
        for (key, dialect) in [("v1", Dialect::V1), ("v0_7", Dialect::V0_7)] {
            let want = &case["expected"][key];
            let got = unidiff_reward(&oracle, &pred, dialect);
            let want_reward = want["reward"].as_f64().unwrap();
            assert!(
                (got.reward - want_reward).abs() <= TOLERANCE,
                "{at} ({key}): {} != {want_reward}",
                got.reward
            );
            let sims: BTreeMap<String, f64> =
                got.files.iter().map(|f| (f.path.clone(), f.similarity)).collect();
            let want_sims = float_map(&want["similarities"]);
            assert_eq!(sims.keys().collect::<Vec<_>>(), want_sims.keys().collect::<Vec<_>>(), "{at} ({key})");
            for (path, s) in &sims {
                assert!((s - want_sims[path]).abs() <= TOLERANCE, "{at} ({key}): {path}");
            }
        }
    }
}
