//! Repository checkouts: a clone found in the repositories directory, a fresh shared clone at
//! `base_commit` per instance, the spec's install step and a commit so later diffs are clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Finds `owner/name`'s clone or bare mirror under `repos`: `owner__name`, `owner__name.git`,
/// `owner/name`, `owner/name.git`, or a `repo/` directory inside one of those (the mirror tool's
/// layout).
pub fn find_clone(repos: &Path, repo: &str) -> Result<PathBuf> {
    let flat = repo.replace('/', "__");
    let plus = repo.replace('/', "+");
    let candidates = [
        repos.join(&flat),
        repos.join(format!("{flat}.git")),
        repos.join(repo),
        repos.join(format!("{repo}.git")),
        repos.join(&plus).join("repo"),
        repos.join(&plus),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("HEAD").is_file() || p.join(".git").exists())
        .ok_or_else(|| Error::MissingClone { repo: repo.to_owned(), dir: repos.to_owned() })
}

/// Runs git, returning stdout; a failure names the step.
pub fn git(dir: &Path, args: &[&str], step: &str) -> Result<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).env("GIT_TERMINAL_PROMPT", "0").output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            step: step.to_owned(),
            command: format!("git {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A fresh working tree of `clone` at `commit` in `dst` (a `--shared` clone: objects are
/// borrowed, the index and `.git` are the tree's own, so the sandbox can write them).
pub fn fresh_checkout(clone: &Path, commit: &str, dst: &Path) -> Result<()> {
    if dst.exists() {
        fs_err::remove_dir_all(dst)?;
    }
    let parent = dst.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let status = Command::new("git")
        .args(["clone", "--quiet", "--shared", "--no-checkout"])
        .arg(clone)
        .arg(dst)
        .output()?;
    if !status.status.success() {
        return Err(Error::Command {
            step: "clone".into(),
            command: format!("git clone --shared {}", clone.display()),
            status: status.status.to_string(),
            stderr: String::from_utf8_lossy(&status.stderr).trim().to_owned(),
        });
    }
    git(dst, &["checkout", "--quiet", "--detach", commit], "checkout base_commit")?;
    git(dst, &["config", "user.email", "setup@swebench.config"], "git config")?;
    git(dst, &["config", "user.name", "SWE-bench"], "git config")?;
    git(dst, &["config", "core.fileMode", "false"], "git config")?;
    Ok(())
}

/// Upstream's clean-diff commit after the install step (`git commit --allow-empty -am`).
pub fn commit_setup(dst: &Path) -> Result<()> {
    git(dst, &["commit", "--quiet", "--allow-empty", "-am", "SWE-bench"], "setup commit")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_layouts() {
        let d = tempfile::tempdir().unwrap();
        assert!(find_clone(d.path(), "a/b").is_err());
        fs_err::create_dir_all(d.path().join("a__b.git")).unwrap();
        fs_err::write(d.path().join("a__b.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(find_clone(d.path(), "a/b").unwrap(), d.path().join("a__b.git"));
    }
}
