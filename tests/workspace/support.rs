//! A small Python project with one merged bug-fix pull request, as a real git repository made
//! with the `git` command line in the layout `swerl mine --repos` reads (`clones/owner/name`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, ensure};

pub(crate) const REPO: &str = "acme/calc";
pub(crate) const CALC_V0: &str =
    "def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    return sum(values) / len(values)\n";
pub(crate) const CALC_V1: &str = "def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    if not values:\n        return 0.0\n    return sum(values) / len(values)\n";

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", "2024-01-02T10:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-02T10:00:00Z")
        .output()?;
    ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// `root/clones/acme/calc`: a base commit, a fix on `refs/pull/1/head` (code and test), and
/// GitHub's merge commit "Merge pull request #1" on `main`. Returns the clones directory.
pub(crate) fn make_clones(root: &Path) -> Result<PathBuf> {
    let clones = root.join("clones");
    let repo = clones.join(REPO);
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    std::fs::create_dir_all(repo.join("calc"))?;
    std::fs::create_dir_all(repo.join("tests"))?;
    std::fs::write(repo.join("calc/stats.py"), CALC_V0)?;
    std::fs::write(
        repo.join("tests/test_stats.py"),
        "from calc.stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n",
    )?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "initial"])?;
    git(&repo, &["checkout", "-q", "-b", "fix"])?;
    std::fs::write(repo.join("calc/stats.py"), CALC_V1)?;
    std::fs::write(
        repo.join("tests/test_stats.py"),
        "from calc.stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n\n\ndef test_empty():\n    assert mean([]) == 0.0\n",
    )?;
    git(
        &repo,
        &["commit", "-q", "-am", "Return 0 for the mean of nothing\n\nmean([]) raised ZeroDivisionError."],
    )?;
    let head = git(&repo, &["rev-parse", "HEAD"])?;
    git(&repo, &["update-ref", "refs/pull/1/head", &head])?;
    git(&repo, &["checkout", "-q", "main"])?;
    git(
        &repo,
        &[
            "merge",
            "-q",
            "--no-ff",
            "fix",
            "-m",
            "Merge pull request #1 from dev/fix\n\nmean of an empty list",
        ],
    )?;
    git(&repo, &["branch", "-q", "-D", "fix"])?;
    Ok(clones)
}
