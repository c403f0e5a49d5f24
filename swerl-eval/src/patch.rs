//! Model patches: the policy against planted test-outcome hooks, and upstream's apply chain.

use std::path::Path;

use crate::directives::touched_paths;
use crate::grading::GradingMode;

/// Why a patch is refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyViolation {
    /// The offending path.
    pub path: String,
    /// The rule, in words.
    pub rule: String,
}

impl std::fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "patch policy: {} ({})", self.path, self.rule)
    }
}

/// Refuses patches that can change how tests are collected or reported rather than what they
/// test: `conftest.py`, `sitecustomize.py`/`usercustomize.py`, `*.pth`, and any file the
/// test patch touches (upstream graded a conftest-only patch as resolved, SWE-bench issue 631).
pub fn check_policy(model_patch: &str, test_patch: &str) -> Option<PolicyViolation> {
    let test_files = touched_paths(test_patch);
    for path in touched_paths(model_patch) {
        let name = path.rsplit('/').next().unwrap_or(&path);
        let rule = if name == "conftest.py" {
            "conftest.py can rewrite test outcomes"
        } else if name == "sitecustomize.py" || name == "usercustomize.py" {
            "runs at interpreter start-up"
        } else if name.ends_with(".pth") {
            ".pth files run at interpreter start-up"
        } else if test_files.contains(&path) && path != "/dev/null" {
            "edits a file of the test patch"
        } else {
            continue;
        };
        return Some(PolicyViolation { path, rule: rule.to_owned() });
    }
    None
}

/// The apply commands of a grading mode's upstream release, each followed by the patch file.
pub fn apply_chain(mode: GradingMode) -> &'static [&'static str] {
    match mode {
        GradingMode::V4 => {
            &["git apply --verbose", "git apply --verbose --reject", "patch --batch --fuzz=5 -p1 -i"]
        }
        GradingMode::V5 => &[
            "git apply --verbose",
            "git apply --verbose --3way",
            "git apply --verbose --reject",
            "patch --batch --forward --fuzz=5 -p1 -i",
        ],
    }
}

/// The shell script that runs the chain on `patch_file` (v5 resets the tree between tries and
/// finally accepts a patch that is already applied), printing upstream's markers.
pub fn apply_script(mode: GradingMode, patch_file: &Path) -> String {
    let file = patch_file.display();
    let mut s = String::from("set +e\n");
    for (i, cmd) in apply_chain(mode).iter().enumerate() {
        if i > 0 && mode == GradingMode::V5 {
            s.push_str("git checkout -- . ; git clean -fdq\n");
        }
        s.push_str(&format!(
            "if {cmd} '{file}'; then echo '>>>>> Applied Patch ({cmd})'; exit 0; fi\necho 'Failed to apply patch: {cmd}'\n"
        ));
    }
    if mode == GradingMode::V5 {
        s.push_str(&format!(
            "if git apply --check --reverse '{file}'; then echo '>>>>> Applied Patch: verified already applied'; exit 0; fi\n"
        ));
    }
    s.push_str("echo '>>>>> Patch Apply Failed'\nexit 1\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let test = "diff --git a/tests/test_a.py b/tests/test_a.py\n";
        let conftest = "diff --git a/tests/conftest.py b/tests/conftest.py\n";
        assert_eq!(check_policy(conftest, test).unwrap().path, "tests/conftest.py");
        assert!(check_policy("diff --git a/x.pth b/x.pth\n", test).is_some());
        assert!(check_policy(test, test).is_some());
        assert!(check_policy("diff --git a/src/a.py b/src/a.py\n", test).is_none());
        assert!(apply_script(GradingMode::V5, Path::new("/p")).contains("--3way"));
    }
}
