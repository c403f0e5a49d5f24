//! Upstream's report files: the per-instance `report.json` and the run summary
//! `<model>.<run_id>.json`, byte for byte, plus our extras in a separate file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::dataset::Instance;
use crate::error::Result;
use crate::grading::{
    EvalType, GradingMode, LogEval, ResolvedStatus, TestsStatus, get_logs_eval, resolution_status,
    tests_report,
};
use crate::parsers::{LogParser, ParserCrash};
use crate::predictions::Prediction;
use crate::pyjson::to_python_json;

/// The per-instance file name.
pub(crate) const LOG_REPORT: &str = "report.json";
/// The test log's file name.
pub(crate) const LOG_TEST_OUTPUT: &str = "test_output.txt";
/// The harness log's file name.
pub(crate) const LOG_INSTANCE: &str = "run_instance.log";

/// The body of `report.json` (`{instance_id: InstanceReport}`), fields in upstream's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The prediction's patch was `null`.
    #[serde(rename = "patch_is_None")]
    pub patch_is_none: bool,
    /// The prediction has a patch (possibly empty).
    pub patch_exists: bool,
    /// The log is valid (upstream's name: markers found, no error markers).
    pub patch_successfully_applied: bool,
    /// FAIL_TO_PASS all pass and PASS_TO_PASS all kept.
    pub resolved: bool,
    /// v5 only: the log carries an environment-fault signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infra_failure: Option<bool>,
    /// v5 only: which signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infra_failure_reason: Option<String>,
    /// The per-test lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests_status: Option<TestsStatus>,
}

/// Upstream's `get_eval_report` with `include_tests_status=True`, from a test log's text.
pub fn eval_report(
    instance: &Instance,
    prediction: &Prediction,
    test_log: &str,
    parser: LogParser,
    mode: GradingMode,
) -> Result<InstanceReport, ParserCrash> {
    let mut r = InstanceReport {
        infra_failure: (mode == GradingMode::V5).then_some(false),
        ..InstanceReport::default()
    };
    if prediction.model_patch.is_none() {
        r.patch_is_none = true;
        return Ok(r);
    }
    r.patch_exists = true;
    let LogEval::Valid(map) = get_logs_eval(test_log, parser, mode)? else {
        if let Some((reason, environment)) = classify_failure(test_log).filter(|_| mode == GradingMode::V5) {
            r.infra_failure = Some(environment);
            r.infra_failure_reason = Some(reason.to_owned());
        }
        return Ok(r);
    };
    r.patch_successfully_applied = true;
    let eval_type = match mode {
        GradingMode::V4 => EvalType::PassAndFail,
        GradingMode::V5 => EvalType::from_column(instance.eval_type.as_deref()),
    };
    let tests = tests_report(&map, &instance.fail_to_pass, &instance.pass_to_pass, mode, eval_type);
    r.resolved = resolution_status(&tests) == ResolvedStatus::Full;
    r.tests_status = Some(tests);
    Ok(r)
}

/// The text of `report.json` for one instance (`json.dumps(..., indent=4)`, no newline).
pub fn report_json(instance_id: &str, report: &InstanceReport) -> String {
    to_python_json(&BTreeMap::from([(instance_id, report)]), 4)
}

/// v5's post-hoc classification (`infra_failure.py`): `(reason, is_environment_tier)`.
pub(crate) fn classify_failure(text: &str) -> Option<(&'static str, bool)> {
    static SIGNATURES: LazyLock<Vec<(&'static str, bool, Regex)>> = LazyLock::new(|| {
        [
            ("browser_launch_failed", true, r"Failed to launch|Failed to connect to the bus"),
            ("display_unavailable", true, r"cannot open display|Missing X server|unable to open X display"),
            ("out_of_memory", true, r"Cannot allocate memory|OutOfMemoryError|^Killed$"),
            (
                "container_unavailable",
                true,
                r"Error response from daemon|Cannot connect to the Docker daemon",
            ),
            ("network_unreachable", true, r"Could not resolve host|Temporary failure in name resolution"),
            ("missing_module", false, r"Cannot find module|MODULE_NOT_FOUND|ModuleNotFoundError"),
            ("no_tests_collected", false, r"no tests ran|collected 0 items"),
            ("tests_timed_out", false, r"Timeout error: \d+ seconds exceeded"),
        ]
        .into_iter()
        .map(|(r, t, p)| (r, t, Regex::new(&format!("(?m){p}")).unwrap()))
        .collect()
    });
    if text.is_empty() {
        return None;
    }
    SIGNATURES.iter().find(|(_, _, re)| re.is_match(text)).map(|(r, t, _)| (*r, *t))
}

/// Upstream's run summary (`make_run_report`), fields in its order. Fields that only one
/// grading mode writes are options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RunSummary {
    pub total_instances: usize,
    pub submitted_instances: usize,
    pub completed_instances: usize,
    pub resolved_instances: usize,
    pub unresolved_instances: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infra_failure_instances: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous_failure_instances: Option<usize>,
    pub empty_patch_instances: usize,
    pub error_instances: usize,
    pub completed_ids: Vec<String>,
    pub incomplete_ids: Vec<String>,
    pub empty_patch_ids: Vec<String>,
    pub submitted_ids: Vec<String>,
    pub resolved_ids: Vec<String>,
    pub unresolved_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infra_failure_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous_failure_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reasons: Option<BTreeMap<String, String>>,
    pub error_ids: Vec<String>,
    pub schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstopped_instances: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstopped_containers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unremoved_images: Option<Vec<String>>,
}

/// The directory of one instance's logs: `<log_root>/<run_id>/<model>/<instance_id>`.
pub(crate) fn instance_log_dir(log_root: &Path, run_id: &str, pred: &Prediction) -> PathBuf {
    log_root.join(run_id).join(pred.model_dir()).join(&pred.instance_id)
}

/// Upstream's `make_run_report` without Docker: reads the report files under
/// `log_root` (upstream's `logs/run_evaluation`) and counts.
pub fn make_run_summary(
    predictions: &BTreeMap<String, Prediction>,
    dataset: &[Instance],
    run_id: &str,
    log_root: &Path,
    mode: GradingMode,
) -> RunSummary {
    let mut completed = BTreeSet::new();
    let mut resolved = BTreeSet::new();
    let mut unresolved = BTreeSet::new();
    let mut errors = BTreeSet::new();
    let mut incomplete = BTreeSet::new();
    let mut empty = BTreeSet::new();
    for instance in dataset {
        let id = &instance.instance_id;
        let Some(pred) = predictions.get(id) else {
            incomplete.insert(id.clone());
            continue;
        };
        if pred.is_empty() {
            empty.insert(id.clone());
            continue;
        }
        let file = instance_log_dir(log_root, run_id, pred).join(LOG_REPORT);
        let Ok(text) = fs_err::read_to_string(&file) else {
            errors.insert(id.clone());
            continue;
        };
        completed.insert(id.clone());
        let value: Option<serde_json::Value> = serde_json::from_str(text.trim()).ok();
        match value.as_ref().and_then(|v| v.get(id)?.get("resolved")) {
            Some(r) if py_truthy(r) => resolved.insert(id.clone()),
            Some(_) => unresolved.insert(id.clone()),
            None => errors.insert(id.clone()),
        };
    }
    let v5 = mode == GradingMode::V5;
    let mut reasons = BTreeMap::new();
    let (mut infra, mut ambiguous) = (BTreeSet::new(), BTreeSet::new());
    if v5 {
        for id in unresolved.iter().chain(&errors) {
            let dir = instance_log_dir(log_root, run_id, &predictions[id]);
            let texts: Vec<String> = [LOG_TEST_OUTPUT, LOG_INSTANCE]
                .iter()
                .filter_map(|f| fs_err::read(dir.join(f)).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            if let Some((reason, environment)) = classify_failure(&texts.join("\n")) {
                reasons.insert(id.clone(), reason.to_owned());
                if environment {
                    infra.insert(id.clone());
                } else {
                    ambiguous.insert(id.clone());
                }
            }
        }
    }
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    RunSummary {
        total_instances: dataset.len(),
        submitted_instances: predictions.len(),
        completed_instances: completed.len(),
        resolved_instances: resolved.len(),
        unresolved_instances: unresolved.len(),
        infra_failure_instances: v5.then_some(infra.len()),
        ambiguous_failure_instances: v5.then_some(ambiguous.len()),
        empty_patch_instances: empty.len(),
        error_instances: errors.len(),
        completed_ids: list(&completed),
        incomplete_ids: list(&incomplete),
        empty_patch_ids: list(&empty),
        submitted_ids: predictions.keys().cloned().collect(),
        resolved_ids: list(&resolved),
        unresolved_ids: list(&unresolved),
        infra_failure_ids: v5.then(|| list(&infra)),
        ambiguous_failure_ids: v5.then(|| list(&ambiguous)),
        failure_reasons: v5.then_some(reasons),
        error_ids: list(&errors),
        schema_version: 2,
        // swebench 4.1 writes these when it has no Docker client (an inverted test upstream).
        unstopped_instances: (!v5).then_some(0),
        unstopped_containers: (!v5).then(Vec::new),
        unremoved_images: (!v5).then(Vec::new),
    }
}

/// Python truthiness of a JSON value (`if report[id]["resolved"]:`).
fn py_truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

/// The summary's file name: `<model>.<run_id>.json`.
pub(crate) fn summary_file_name(model_dir: &str, run_id: &str) -> String {
    format!("{model_dir}.{run_id}.json")
}

/// The summary's text (`json.dumps(..., indent=4)` plus `print`'s newline).
pub fn summary_json(summary: &RunSummary) -> String {
    to_python_json(summary, 4) + "\n"
}
