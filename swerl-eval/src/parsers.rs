//! Log parsers: test output -> test id -> status, as upstream's `log_parsers/python.py`.
//!
//! Each parser exists in two flavours: swebench 4.1's and swebench 5's (which drops pytest's
//! `SKIPPED [N] file:line` summaries, keeps whole ids with spaces in `pytest-v2`, and no longer
//! crashes on short seaborn lines). Upstream's quirks are kept on purpose: `pytest-options` cuts
//! `name[/a/b/c]` to `name[/c]`, a django `FAIL:` line with no name crashes the 4.1 parser (the
//! instance becomes an error, as upstream's exception does), and so on.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::error::{Error, Result};
use crate::grading::GradingMode;

/// Test id -> raw status string (`PASSED`, `FAILED`, `SKIPPED`, `ERROR`, `XFAIL`, or whatever
/// token upstream's parser stored).
pub type StatusMap = BTreeMap<String, String>;

/// The statuses upstream knows, in its enum's order.
pub(crate) const STATUSES: [&str; 5] = ["FAILED", "PASSED", "SKIPPED", "ERROR", "XFAIL"];

/// A parser family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LogParser {
    /// `STATUS test_id` lines of `pytest -rA` (flask, xarray, pytest, astroid, ...).
    Pytest,
    /// Pytest with parametrised ids whose `[/abs/path]` option is cut to its last segment
    /// (requests, pylint, pydicom).
    PytestOptions,
    /// Pytest with ANSI colours stripped, also `test_id STATUS` lines (astropy, scikit-learn,
    /// sphinx).
    PytestV2,
    /// Django's `runtests.py --verbosity 2`.
    Django,
    /// Sympy's `bin/test`.
    Sympy,
    /// Seaborn's pytest output.
    Seaborn,
    /// Pytest with `MouseButton.LEFT`/`RIGHT` written as 1/3.
    Matplotlib,
}

/// The parser upstream crashed with; the instance is graded as an error, as upstream's
/// exception makes it one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream's {parser:?} parser raises on line {line:?}")]
pub struct ParserCrash {
    /// The parser.
    pub parser: LogParser,
    /// The line that makes it raise.
    pub line: String,
}

impl LogParser {
    /// Parser from a v5 registry name (`parse_log_django`) or a family name (`pytest-v2`).
    pub fn from_name(name: &str) -> Result<Self> {
        let n = name.strip_prefix("parse_log_").unwrap_or(name);
        Ok(match n.replace('-', "_").as_str() {
            "pytest" | "astroid" | "flask" | "marshmallow" | "pvlib" | "pyvista" | "sqlfluff" | "xarray" => {
                Self::Pytest
            }
            "pytest_options" | "pydicom" | "requests" | "pylint" => Self::PytestOptions,
            "pytest_v2" | "astropy" | "scikit" | "sphinx" => Self::PytestV2,
            "django" => Self::Django,
            "sympy" => Self::Sympy,
            "seaborn" => Self::Seaborn,
            "matplotlib" => Self::Matplotlib,
            _ => return Err(Error::UnknownParser(name.to_owned())),
        })
    }

    /// The parser upstream maps a repository to.
    pub fn for_repo(repo: &str) -> Result<Self> {
        let name = match repo {
            "astropy/astropy" | "scikit-learn/scikit-learn" | "sphinx-doc/sphinx" => "pytest-v2",
            "django/django" => "django",
            "matplotlib/matplotlib" => "matplotlib",
            "mwaskom/seaborn" => "seaborn",
            "psf/requests" | "pydicom/pydicom" | "pylint-dev/pylint" => "pytest-options",
            "sympy/sympy" => "sympy",
            "marshmallow-code/marshmallow"
            | "pallets/flask"
            | "pvlib/pvlib-python"
            | "pydata/xarray"
            | "pylint-dev/astroid"
            | "pytest-dev/pytest"
            | "pyvista/pyvista"
            | "sqlfluff/sqlfluff" => "pytest",
            _ => return Err(Error::UnknownParser(format!("(for repository {repo})"))),
        };
        Self::from_name(name)
    }

    /// Parses a log as upstream's parser of the given mode's swebench version does.
    pub fn parse(self, log: &str, mode: GradingMode) -> Result<StatusMap, ParserCrash> {
        let v5 = mode == GradingMode::V5;
        match self {
            Self::Pytest => Ok(pytest(log, v5, |l| l.to_owned())),
            Self::Matplotlib => {
                Ok(pytest(log, v5, |l| l.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3")))
            }
            Self::PytestOptions => Ok(pytest_options(log, v5)),
            Self::PytestV2 => Ok(pytest_v2(log, v5)),
            Self::Django => django(log),
            Self::Sympy => Ok(sympy(log)),
            Self::Seaborn => seaborn(log, v5),
        }
    }
}

/// Python's `str.isspace` for one character (Unicode whitespace plus the C0 separators).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.split()` with no argument.
pub(crate) fn py_split(s: &str) -> Vec<&str> {
    s.split(py_space).filter(|t| !t.is_empty()).collect()
}

/// Python's `str.strip()` with no argument.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

fn starts_with_status(line: &str) -> bool {
    STATUSES.iter().any(|s| line.starts_with(s))
}

/// v5's `SKIPPED [N] path:line: reason` summary, where `[N]` is not a test.
fn is_skip_summary(status: &str, name: &str) -> bool {
    static COUNT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\[\d+\]$").unwrap());
    status == "SKIPPED" && COUNT.is_match(name)
}

fn pytest(log: &str, v5: bool, rewrite: impl Fn(&str) -> String) -> StatusMap {
    let mut map = StatusMap::new();
    for line in log.split('\n') {
        let mut line = rewrite(line);
        if !starts_with_status(&line) {
            continue;
        }
        if line.starts_with("FAILED") {
            line = line.replace(" - ", " ");
        }
        let t = py_split(&line);
        if t.len() <= 1 || (v5 && is_skip_summary(t[0], t[1])) {
            continue;
        }
        map.insert(t[1].to_owned(), t[0].to_owned());
    }
    map
}

fn pytest_options(log: &str, v5: bool) -> StatusMap {
    static OPTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(.*?)\[(.*)\]").unwrap());
    let mut map = StatusMap::new();
    for line in log.split('\n') {
        if !starts_with_status(line) {
            continue;
        }
        let line = if line.starts_with("FAILED") { line.replace(" - ", " ") } else { line.to_owned() };
        let t = py_split(&line);
        if t.len() <= 1 || (v5 && is_skip_summary(t[0], t[1])) {
            continue;
        }
        let name = match OPTION.captures(t[1]) {
            Some(c) => {
                let (main, mut option) = (&c[1], c[2].to_owned());
                if option.starts_with('/') && !option.starts_with("//") && !option.contains('*') {
                    option = format!("/{}", option.rsplit('/').next().unwrap_or_default());
                }
                format!("{main}[{option}]")
            }
            None => t[1].to_owned(),
        };
        map.insert(name, t[0].to_owned());
    }
    map
}

fn pytest_v2(log: &str, v5: bool) -> StatusMap {
    static COLOUR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[(\d+)m").unwrap());
    let mut map = StatusMap::new();
    for line in log.split('\n') {
        let line = COLOUR.replace_all(line, "");
        let mut line: String = line.chars().filter(|&c| !('\x01'..='\x1f').contains(&c)).collect();
        if starts_with_status(&line) {
            if line.starts_with("FAILED") {
                line = if v5 {
                    line.split(" - ").next().unwrap_or_default().to_owned()
                } else {
                    line.replace(" - ", " ")
                };
            }
            let t = py_split(&line);
            if t.len() >= 2 {
                if !v5 {
                    map.insert(t[1].to_owned(), t[0].to_owned());
                } else if !is_skip_summary(t[0], t[1]) {
                    map.insert(t[1..].join(" "), t[0].to_owned());
                }
            }
        } else if STATUSES.iter().any(|s| line.ends_with(s)) {
            let t = py_split(&line);
            if t.len() >= 2 {
                if v5 {
                    map.insert(t[..t.len() - 1].join(" "), t[t.len() - 1].to_owned());
                } else {
                    map.insert(t[0].to_owned(), t[1].to_owned());
                }
            }
        }
    }
    map
}

fn django(log: &str) -> Result<StatusMap, ParserCrash> {
    static PATTERNS: LazyLock<[Regex; 3]> = LazyLock::new(|| {
        [
            r"(?m)^(.*?)\s\.\.\.\sTesting against Django installed in ((?s:.*?)) silenced\)\.\nok$",
            r"(?m)^(.*?)\s\.\.\.\sInternal Server Error: /(.*)/\nok$",
            r"(?m)^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$",
        ]
        .map(|p| Regex::new(p).unwrap())
    });
    let crash = |line: &str| ParserCrash { parser: LogParser::Django, line: line.to_owned() };
    let mut map = StatusMap::new();
    let mut prev_test: Option<String> = None;
    for raw in log.split('\n') {
        let mut line = py_strip(raw).to_owned();
        if line.contains("--version is equivalent to version") {
            map.insert("--version is equivalent to version".into(), "PASSED".into());
        }
        if let Some((head, _)) = line.split_once(" ... ") {
            prev_test = Some(head.to_owned());
        }
        for suffix in [" ... ok", " ... OK", " ...  OK"] {
            if line.ends_with(suffix) {
                if py_strip(&line).starts_with("Applying sites.0002_alter_domain_unique...test_no_migrations")
                {
                    line = py_strip(line.split_once("...").map_or(&line[..], |x| x.1)).to_owned();
                }
                let test = line.rsplit_once(suffix).map_or(&line[..], |x| x.0);
                map.insert(test.to_owned(), "PASSED".into());
                break;
            }
        }
        if let Some((test, _)) = line.split_once(" ... skipped") {
            map.insert(test.to_owned(), "SKIPPED".into());
        }
        if line.ends_with(" ... FAIL") {
            let test = line.split(" ... FAIL").next().unwrap_or_default();
            map.insert(test.to_owned(), "FAILED".into());
        }
        if line.starts_with("FAIL:") {
            let test = *py_split(&line).get(1).ok_or_else(|| crash(&line))?;
            map.insert(py_strip(test).to_owned(), "FAILED".into());
        }
        if line.ends_with(" ... ERROR") {
            let test = line.split(" ... ERROR").next().unwrap_or_default();
            map.insert(test.to_owned(), "ERROR".into());
        }
        if line.starts_with("ERROR:") {
            let test = *py_split(&line).get(1).ok_or_else(|| crash(&line))?;
            map.insert(py_strip(test).to_owned(), "ERROR".into());
        }
        if let Some(test) = prev_test.as_ref().filter(|_| line.trim_start_matches(py_space).starts_with("ok"))
        {
            map.insert(test.clone(), "PASSED".into());
        }
    }
    for pattern in PATTERNS.iter() {
        for c in pattern.captures_iter(log) {
            map.insert(c[1].to_owned(), "PASSED".into());
        }
    }
    Ok(map)
}

fn sympy(log: &str) -> StatusMap {
    static HEADER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(_*) (.*)\.py:(.*) (_*)").unwrap());
    let mut map = StatusMap::new();
    for c in HEADER.captures_iter(log) {
        map.insert(format!("{}.py:{}", &c[2], &c[3]), "FAILED".into());
    }
    for line in log.split('\n') {
        let line = py_strip(line);
        if !line.starts_with("test_") {
            continue;
        }
        let first = py_split(line)[0].to_owned();
        if line.ends_with(" E") {
            map.insert(first.clone(), "ERROR".into());
        }
        if line.ends_with(" F") {
            map.insert(first.clone(), "FAILED".into());
        }
        if line.ends_with(" ok") {
            map.insert(first, "PASSED".into());
        }
    }
    map
}

fn seaborn(log: &str, v5: bool) -> Result<StatusMap, ParserCrash> {
    let crash = |line: &str| ParserCrash { parser: LogParser::Seaborn, line: line.to_owned() };
    let mut map = StatusMap::new();
    for line in log.split('\n') {
        let parts = py_split(line);
        if v5 && parts.len() < 2 {
            continue;
        }
        let second = || parts.get(1).copied().ok_or_else(|| crash(line));
        if line.starts_with("FAILED") {
            map.insert(second()?.to_owned(), "FAILED".into());
        } else if line.contains(" PASSED ") {
            if second()? == "PASSED" {
                map.insert(parts[0].to_owned(), "PASSED".into());
            }
        } else if line.starts_with("PASSED") {
            map.insert(second()?.to_owned(), "PASSED".into());
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert_eq!(py_split(" a\x1cb\u{a0}c  "), ["a", "b", "c"]);
        assert_eq!(py_strip("\x1f x \t"), "x");
    }

    #[test]
    fn names_and_repos() {
        assert_eq!(LogParser::from_name("parse_log_scikit").unwrap(), LogParser::PytestV2);
        assert_eq!(LogParser::for_repo("psf/requests").unwrap(), LogParser::PytestOptions);
        assert!(LogParser::from_name("parse_log_cargo").is_err());
    }

    #[test]
    fn options_cut_to_last_segment() {
        let log = "PASSED test_x.py::t[/a/b/c.txt]\nPASSED test_x.py::u[//a/b]\nFAILED t.py::v[a] - boom";
        let m = LogParser::PytestOptions.parse(log, GradingMode::V4).unwrap();
        assert_eq!(m["test_x.py::t[/c.txt]"], "PASSED");
        assert_eq!(m["test_x.py::u[//a/b]"], "PASSED");
        assert_eq!(m["t.py::v[a]"], "FAILED");
    }

    #[test]
    fn django_crash_and_v5_seaborn() {
        assert!(LogParser::Django.parse("FAIL:\n", GradingMode::V4).is_err());
        assert!(LogParser::Seaborn.parse("FAILED\n", GradingMode::V4).is_err());
        assert!(LogParser::Seaborn.parse("FAILED\n", GradingMode::V5).unwrap().is_empty());
    }
}
