//! Grading: a test log and an instance's FAIL_TO_PASS / PASS_TO_PASS lists -> a report, as
//! upstream's `grading.py` of swebench 4.1 ([`GradingMode::V4`]) or 5 ([`GradingMode::V5`]).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::parsers::{LogParser, ParserCrash, StatusMap};

/// Marker the harness writes when no patch-apply command succeeded.
pub(crate) const APPLY_PATCH_FAIL: &str = ">>>>> Patch Apply Failed";
/// Marker for a failed reset.
pub(crate) const RESET_FAILED: &str = ">>>>> Reset Failed";
/// Marker for a test run that errored.
pub(crate) const TESTS_ERROR: &str = ">>>>> Tests Errored";
/// Marker for a test run that timed out.
pub(crate) const TESTS_TIMEOUT: &str = ">>>>> Tests Timed Out";
/// Start of the parsed region.
pub(crate) const START_TEST_OUTPUT: &str = ">>>>> Start Test Output";
/// End of the parsed region.
pub(crate) const END_TEST_OUTPUT: &str = ">>>>> End Test Output";
/// v5: the test command's exit status is written after this marker.
pub(crate) const TEST_EXIT_CODE: &str = ">>>>> Test Exit Code";

/// Which upstream release's rules grade the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradingMode {
    /// swebench 4.1: SKIPPED counts as neither pass nor fail; no exit-code check.
    #[default]
    V4,
    /// swebench 5: SKIPPED fails FAIL_TO_PASS but keeps PASS_TO_PASS; a non-zero test exit code
    /// with no FAILED/ERROR is invalid; an empty map with no sign of a run is invalid; truncated
    /// parametrised ids match by prefix.
    V5,
}

impl GradingMode {
    /// `v4` or `v5`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "v4",
            Self::V5 => "v5",
        }
    }
}

impl std::str::FromStr for GradingMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "v4" | "4" | "4.1" => Ok(Self::V4),
            "v5" | "5" => Ok(Self::V5),
            _ => Err(crate::Error::Config(format!("grading mode `{s}`: expected v4 or v5"))),
        }
    }
}

/// `pass_and_fail` (every Python repository) or `fail_only`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalType {
    /// A test must pass to count as a success.
    #[default]
    PassAndFail,
    /// Only an explicit FAILED counts as a failure.
    FailOnly,
}

impl EvalType {
    /// From the dataset's `eval_type` column (absent means `pass_and_fail`).
    pub fn from_column(s: Option<&str>) -> Self {
        match s {
            Some("fail_only") => Self::FailOnly,
            _ => Self::PassAndFail,
        }
    }
}

/// Success and failure lists of one test category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessFailure {
    /// Tests that met the expectation.
    pub success: Vec<String>,
    /// Tests that did not.
    pub failure: Vec<String>,
}

/// The four categories of upstream's `tests_status` (field order as upstream writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestsStatus {
    /// FAIL_TO_PASS.
    #[serde(rename = "FAIL_TO_PASS")]
    pub fail_to_pass: SuccessFailure,
    /// PASS_TO_PASS.
    #[serde(rename = "PASS_TO_PASS")]
    pub pass_to_pass: SuccessFailure,
    /// FAIL_TO_FAIL (always empty, as upstream).
    #[serde(rename = "FAIL_TO_FAIL")]
    pub fail_to_fail: SuccessFailure,
    /// PASS_TO_FAIL (always empty, as upstream).
    #[serde(rename = "PASS_TO_FAIL")]
    pub pass_to_fail: SuccessFailure,
}

/// What grading found in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEval {
    /// A valid log and its status map.
    Valid(StatusMap),
    /// An invalid log (apply failure, error/timeout marker, no markers, v5's exit-code check);
    /// upstream writes `patch_successfully_applied: false`.
    Invalid,
}

fn passing(status: &str) -> bool {
    status == "PASSED" || status == "XFAIL"
}

/// Upstream's `get_logs_eval`: the markers, the parse (between markers, else the whole log).
pub fn get_logs_eval(content: &str, parser: LogParser, mode: GradingMode) -> Result<LogEval, ParserCrash> {
    static SUITE_RAN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"(?m)Executed [1-9]\d* of \d+|TOTAL: [1-9]\d* (?:SUCCESS|FAILED)|[1-9]\d* passing",
            r"|Tests:\s+[1-9]\d*|Test Suites:\s+(?:\d+ \w+, )*[1-9]\d* total|^# tests [1-9]\d*",
            r"|[1-9]\d* specs?, \d+ failures?|': ok$"
        ))
        .unwrap()
    });
    let bad = [APPLY_PATCH_FAIL, RESET_FAILED, TESTS_ERROR, TESTS_TIMEOUT];
    if bad.iter().any(|m| content.contains(m))
        || !(content.contains(START_TEST_OUTPUT) && content.contains(END_TEST_OUTPUT))
    {
        return Ok(LogEval::Invalid);
    }
    let after = content.split(START_TEST_OUTPUT).nth(1).unwrap_or_default();
    let sliced = after.split(END_TEST_OUTPUT).next().unwrap_or_default();
    let mut map = parser.parse(sliced, mode)?;
    if map.is_empty() {
        map = parser.parse(content, mode)?;
    }
    if mode == GradingMode::V5 {
        if map.is_empty() && !SUITE_RAN.is_match(content) {
            return Ok(LogEval::Invalid);
        }
        let exit = parse_test_exit_code(content);
        if exit.is_some_and(|c| c != 0)
            && !map.is_empty()
            && !map.values().any(|s| s == "FAILED" || s == "ERROR")
        {
            return Ok(LogEval::Invalid);
        }
    }
    Ok(LogEval::Valid(map))
}

/// v5: the exit status recorded after [`TEST_EXIT_CODE`], if any.
pub(crate) fn parse_test_exit_code(content: &str) -> Option<i64> {
    static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r">>>>> Test Exit Code:\s*(-?\d+)").unwrap());
    RE.captures(content).and_then(|c| c[1].parse().ok())
}

/// v5's `_resolve_case`: exact id, else a truncated parametrised id matched by prefix when all
/// candidates agree on pass-vs-fail.
fn resolve<'m>(case: &str, map: &'m StatusMap, mode: GradingMode) -> Option<&'m str> {
    if let Some(s) = map.get(case) {
        return Some(s);
    }
    if mode == GradingMode::V4 || case.matches('[').count() <= case.matches(']').count() {
        return None;
    }
    // Upstream iterates a dict in insertion order and takes the first match; all matches agree
    // on pass-vs-fail, which is all grading reads, so any one of them gives the same result.
    let mut matches = map.iter().filter(|(k, _)| k.starts_with(case));
    let (_, first) = matches.next()?;
    let kind = passing(first);
    matches.all(|(_, s)| passing(s) == kind).then_some(first.as_str())
}

/// Upstream's `get_eval_tests_report` for one category.
fn grade_list(
    tests: &[String],
    map: &StatusMap,
    mode: GradingMode,
    eval_type: EvalType,
    maintained: bool,
) -> SuccessFailure {
    let mut out = SuccessFailure::default();
    for case in tests {
        let status = resolve(case, map, mode);
        let (ok, bad) = match eval_type {
            EvalType::FailOnly => {
                let failed = map.get(case).is_some_and(|s| s == "FAILED");
                (!failed, failed)
            }
            EvalType::PassAndFail => {
                let passed = status.is_some_and(passing);
                let kept = maintained && mode == GradingMode::V5 && status == Some("SKIPPED");
                let failed = match status {
                    None => true,
                    Some(s) => s == "FAILED" || s == "ERROR" || (mode == GradingMode::V5 && s == "SKIPPED"),
                };
                (passed || kept, failed)
            }
        };
        if ok {
            out.success.push(case.clone());
        } else if bad {
            out.failure.push(case.clone());
        }
    }
    out
}

/// The FAIL_TO_PASS and PASS_TO_PASS report of a status map.
pub(crate) fn tests_report(
    map: &StatusMap,
    fail_to_pass: &[String],
    pass_to_pass: &[String],
    mode: GradingMode,
    eval_type: EvalType,
) -> TestsStatus {
    TestsStatus {
        fail_to_pass: grade_list(fail_to_pass, map, mode, eval_type, false),
        pass_to_pass: grade_list(pass_to_pass, map, mode, eval_type, true),
        ..TestsStatus::default()
    }
}

fn rate(sf: &SuccessFailure) -> f64 {
    let total = sf.success.len() + sf.failure.len();
    if total == 0 { 1.0 } else { sf.success.len() as f64 / total as f64 }
}

/// Upstream's `ResolvedStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolvedStatus {
    /// `RESOLVED_FULL`.
    #[serde(rename = "RESOLVED_FULL")]
    Full,
    /// `RESOLVED_PARTIAL`.
    #[serde(rename = "RESOLVED_PARTIAL")]
    Partial,
    /// `RESOLVED_NO`.
    #[serde(rename = "RESOLVED_NO")]
    No,
}

/// Upstream's `get_resolution_status`.
pub(crate) fn resolution_status(report: &TestsStatus) -> ResolvedStatus {
    let f2p = rate(&report.fail_to_pass);
    let p2p = rate(&report.pass_to_pass);
    if f2p == 1.0 && p2p == 1.0 {
        ResolvedStatus::Full
    } else if f2p > 0.0 && f2p < 1.0 && p2p == 1.0 {
        ResolvedStatus::Partial
    } else {
        ResolvedStatus::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> StatusMap {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn skipped_differs_between_modes() {
        let m = map(&[("a", "SKIPPED"), ("b", "SKIPPED")]);
        let (f, p) = (vec!["a".to_owned()], vec!["b".to_owned()]);
        let v4 = tests_report(&m, &f, &p, GradingMode::V4, EvalType::PassAndFail);
        assert!(v4.fail_to_pass.success.is_empty() && v4.fail_to_pass.failure.is_empty());
        assert_eq!(resolution_status(&v4), ResolvedStatus::Full);
        let v5 = tests_report(&m, &f, &p, GradingMode::V5, EvalType::PassAndFail);
        assert_eq!(v5.fail_to_pass.failure, ["a"]);
        assert_eq!(v5.pass_to_pass.success, ["b"]);
        assert_eq!(resolution_status(&v5), ResolvedStatus::No);
    }

    #[test]
    fn exit_code_and_prefix() {
        let log = format!("{START_TEST_OUTPUT}\nPASSED t.py::x\n{END_TEST_OUTPUT}\n{TEST_EXIT_CODE}: 1\n");
        assert_eq!(get_logs_eval(&log, LogParser::Pytest, GradingMode::V5).unwrap(), LogEval::Invalid);
        assert!(matches!(
            get_logs_eval(&log, LogParser::Pytest, GradingMode::V4).unwrap(),
            LogEval::Valid(_)
        ));
        let m = map(&[("t[log(photon)]", "PASSED")]);
        let r = tests_report(&m, &["t[log(photon".to_owned()], &[], GradingMode::V5, EvalType::PassAndFail);
        assert_eq!(r.fail_to_pass.success.len(), 1);
    }
}
