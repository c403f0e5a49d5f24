//! Test support for this workspace's tests, not public API: a tiny Python repository made with
//! git, with a bug, a test patch that exposes it and patches that fix it (or not).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::specs::Spec;

/// The repository's SWE-bench name.
pub const REPO: &str = "swerl/calc";

/// `add` subtracts: the bug the instances are about.
const BUGGY: &str = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n";

/// A git repository `swerl__calc` holding a package `calc` whose `add` is wrong.
#[derive(Debug, Clone)]
pub struct CalcRepo {
    /// The clone, `<repos>/swerl__calc`.
    pub dir: PathBuf,
    /// The commit instances start from.
    pub base: String,
    /// Adds `tests/test_calc.py::test_add` (FAIL_TO_PASS); `test_sub` is PASS_TO_PASS.
    pub test_patch: String,
}

fn git(dir: &Path, args: &[&str]) -> io::Result<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(dir: &Path, rel: &str, text: &str) -> io::Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(p, text)
}

impl CalcRepo {
    /// Creates the repository under `repos`.
    pub fn create(repos: &Path) -> io::Result<Self> {
        let dir = repos.join("swerl__calc");
        fs_err::create_dir_all(&dir)?;
        git(&dir, &["init", "-q", "-b", "main"])?;
        git(&dir, &["config", "user.email", "t@example.com"])?;
        git(&dir, &["config", "user.name", "t"])?;
        write(
            &dir,
            "setup.py",
            "from setuptools import setup\nsetup(name='calc', version='0.1', packages=['calc'])\n",
        )?;
        write(&dir, "calc/__init__.py", BUGGY)?;
        write(
            &dir,
            "tests/test_calc.py",
            "from calc import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n",
        )?;
        git(&dir, &["add", "-A"])?;
        git(&dir, &["commit", "-qm", "base"])?;
        let base = git(&dir, &["rev-parse", "HEAD"])?.trim().to_owned();
        let mut repo = Self { dir, base, test_patch: String::new() };
        repo.test_patch = repo.diff_of(|r| {
            write(
                r,
                "tests/test_calc.py",
                "from calc import add, sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n\n\ndef test_add():\n    assert add(2, 2) == 4\n",
            )
        })?;
        Ok(repo)
    }

    /// The `git diff` of an edit made by `edit` in the clone, reverted afterwards.
    pub fn diff_of(&self, edit: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<String> {
        edit(&self.dir)?;
        git(&self.dir, &["add", "-A"])?;
        let d = git(&self.dir, &["diff", "--cached"])?;
        git(&self.dir, &["reset", "--hard", "-q"])?;
        git(&self.dir, &["clean", "-fdq"])?;
        Ok(d)
    }

    /// A patch giving `add` the body `body` (indented lines).
    pub fn patch_with(&self, body: &str) -> io::Result<String> {
        self.diff_of(|r| {
            write(
                r,
                "calc/__init__.py",
                &BUGGY.replace("    return a - b\n\n\ndef sub", &format!("{body}\n\n\ndef sub")),
            )
        })
    }

    /// The fix.
    pub fn gold(&self) -> io::Result<String> {
        self.patch_with("    return a + b")
    }

    /// A SWE-bench record of instance `id` with the gold patch, version `1.0`.
    pub fn instance(&self, id: &str) -> io::Result<serde_json::Value> {
        Ok(serde_json::json!({
            "instance_id": id, "repo": REPO, "base_commit": self.base, "version": "1.0",
            "patch": self.gold()?, "test_patch": self.test_patch, "environment_setup_commit": self.base,
            "FAIL_TO_PASS": "[\"tests/test_calc.py::test_add\"]",
            "PASS_TO_PASS": ["tests/test_calc.py::test_sub"],
            "log_parser": "parse_log_pytest",
        }))
    }
}

/// The spec of [`REPO`] version `1.0` on Python `python`: pytest, an editable install.
pub fn calc_spec(python: &str) -> Spec {
    Spec {
        python: python.into(),
        pip_packages: vec!["pytest".into()],
        install: Some("python -m pip install --no-build-isolation -e .".into()),
        test_cmd: "pytest -rA".into(),
        ..Spec::default()
    }
}

/// A Python interpreter the tests can use (pyenv 3.9-3.12), if any.
pub fn test_python() -> Option<&'static str> {
    ["3.11", "3.12", "3.10", "3.9"].into_iter().find(|v| crate::python::find_interpreter(v).is_ok())
}
