//! The spec table: per repository and version, the interpreter, packages and pins, install step
//! and test command (SWE-bench's facts for the twelve Lite/Verified repositories, written to
//! `specs/python.json` by `specs/make_specs.py` from pip's `swebench==4.1.0`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One (repository, version) entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Spec {
    /// Interpreter version, `"3.9"`.
    pub python: String,
    /// `requirements.txt`, `environment.yml`, or a space-separated package list.
    #[serde(default)]
    pub packages: Option<String>,
    /// Extra pip requirements, with pins.
    #[serde(default)]
    pub pip_packages: Vec<String>,
    /// Shell commands run before the install step.
    #[serde(default)]
    pub pre_install: Vec<String>,
    /// The install step (`python -m pip install -e .`).
    #[serde(default)]
    pub install: Option<String>,
    /// The test command the directives are appended to.
    pub test_cmd: String,
    /// Commands run at the start of the eval script (locale setup).
    #[serde(default)]
    pub eval_commands: Vec<String>,
    /// Conda detail upstream uses for one matplotlib version (ignored without conda).
    #[serde(default)]
    pub no_use_env: Option<bool>,
}

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
pub struct SpecTable {
    /// Extensions of test-patch files that are not test directives.
    pub non_test_exts: Vec<String>,
    /// Where each repository's requirements file lives (first that exists wins).
    pub requirements_paths: BTreeMap<String, Vec<String>>,
    /// Where each repository's conda `environment.yml` lives.
    pub environment_yml_paths: BTreeMap<String, Vec<String>>,
    /// repo -> version -> spec.
    pub specs: BTreeMap<String, BTreeMap<String, Spec>>,
}

static TABLE: LazyLock<SpecTable> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../specs/python.json"))
        .expect("specs/python.json is checked by the crate's tests")
});

/// The built-in table.
pub fn table() -> &'static SpecTable {
    &TABLE
}

/// The spec of a repository at a version.
pub fn spec_for(repo: &str, version: &str) -> Result<&'static Spec> {
    TABLE
        .specs
        .get(repo)
        .and_then(|v| v.get(version))
        .ok_or_else(|| Error::NoSpec { repo: repo.to_owned(), version: version.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_loads_and_has_lite_entries() {
        let s = spec_for("django/django", "3.0").unwrap();
        assert_eq!(s.python, "3.6");
        assert!(s.test_cmd.starts_with("./tests/runtests.py"));
        assert_eq!(spec_for("pallets/flask", "2.3").unwrap().python, "3.11");
        assert!(spec_for("pallets/flask", "0.0").is_err());
        assert!(table().non_test_exts.contains(&".json".to_owned()));
    }
}
