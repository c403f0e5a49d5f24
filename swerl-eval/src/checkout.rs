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
    // git checks out what it can and exits 0 when the clone lacks some blobs (snapshots that
    // leave out large files): the tree would be tested without them.
    let missing = git(dst, &["ls-files", "--deleted"], "checkout base_commit")?;
    if !missing.trim().is_empty() {
        let files: Vec<&str> = missing.lines().collect();
        return Err(Error::Command {
            step: "checkout base_commit".into(),
            command: format!("git checkout {commit}"),
            status: "incomplete".into(),
            stderr: format!(
                "{} does not hold every file of {commit}: {} missing ({}{}); use a complete clone",
                clone.display(),
                files.len(),
                files.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                if files.len() > 3 { ", ..." } else { "" }
            ),
        });
    }
    git(dst, &["config", "user.email", "setup@swebench.config"], "git config")?;
    git(dst, &["config", "user.name", "SWE-bench"], "git config")?;
    git(dst, &["config", "core.fileMode", "false"], "git config")?;
    Ok(())
}

/// The `owner/name` of a GitHub repository URL (`https://github.com/o/n.git`,
/// `git://github.com/o/n`, `git@github.com:o/n.git`).
fn github_name(url: &str) -> Option<String> {
    let rest = [
        "https://github.com/",
        "http://github.com/",
        "git://github.com/",
        "git@github.com:",
        "ssh://git@github.com/",
    ]
    .iter()
    .find_map(|p| url.strip_prefix(p))?;
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/')).then(|| format!("{owner}/{name}"))
}

/// Checks out the submodules of the tree at `dst` whose repositories are in `repos` (as
/// `find_clone` finds them, from their GitHub URLs), so that an install step that initialises
/// them (astropy 1.3's `astropy_helpers`) needs no network. Returns a line per submodule: done
/// from a local clone, or why not (left to the install step, as upstream does).
pub fn local_submodules(repos: &Path, dst: &Path) -> Vec<String> {
    if !dst.join(".gitmodules").is_file() {
        return Vec::new();
    }
    let Ok(urls) =
        git(dst, &["config", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.url$"], "submodules")
    else {
        return vec!["submodules: .gitmodules unreadable; left to the install step".into()];
    };
    let mut lines = Vec::new();
    for entry in urls.lines() {
        let Some((key, url)) = entry.split_once(' ') else { continue };
        let Some(name) = key.strip_prefix("submodule.").and_then(|k| k.strip_suffix(".url")) else {
            continue;
        };
        let Ok(path) =
            git(dst, &["config", "-f", ".gitmodules", &format!("submodule.{name}.path")], "submodule path")
        else {
            continue;
        };
        let path = path.trim();
        let Some(local) = github_name(url).and_then(|repo| find_clone(repos, &repo).ok()) else {
            lines.push(format!(
                "submodule {path}: no clone of {url} in {}; left to the install step",
                repos.display()
            ));
            continue;
        };
        let local = local.canonicalize().unwrap_or(local);
        let done = git(
            dst,
            &["config", &format!("submodule.{name}.url"), &local.display().to_string()],
            "submodule url",
        )
        .and_then(|_| {
            git(
                dst,
                &["-c", "protocol.file.allow=always", "submodule", "update", "--init", "--quiet", "--", path],
                "submodule update",
            )
        });
        lines.push(match done {
            Ok(_) => format!("submodule {path}: checked out from {}", local.display()),
            Err(e) => format!("submodule {path}: {e}; left to the install step"),
        });
    }
    lines
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
    fn github_urls_name_repositories() {
        for url in [
            "https://github.com/astropy/astropy-helpers.git",
            "git://github.com/astropy/astropy-helpers",
            "git@github.com:astropy/astropy-helpers.git",
            "https://github.com/astropy/astropy-helpers/",
        ] {
            assert_eq!(github_name(url).as_deref(), Some("astropy/astropy-helpers"), "{url}");
        }
        assert_eq!(github_name("https://gitlab.com/a/b.git"), None);
        assert_eq!(github_name("https://github.com/a"), None);
        assert_eq!(github_name("https://github.com/a/b/c"), None);
    }

    #[test]
    fn submodules_come_from_local_clones() {
        let d = tempfile::tempdir().unwrap();
        let run = |dir: &Path, args: &[&str]| {
            let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let init = |dir: &Path| {
            fs_err::create_dir_all(dir).unwrap();
            run(dir, &["init", "-q", "-b", "main"]);
            run(dir, &["config", "user.email", "t@t"]);
            run(dir, &["config", "user.name", "t"]);
        };
        let repos = d.path().join("repos");
        let helpers = repos.join("astropy__astropy-helpers");
        init(&helpers);
        fs_err::write(helpers.join("ah.py"), "X = 1\n").unwrap();
        run(&helpers, &["add", "."]);
        run(&helpers, &["commit", "-qm", "helpers"]);
        let main = repos.join("astropy__astropy");
        init(&main);
        fs_err::write(main.join("setup.py"), "\n").unwrap();
        run(&main, &["add", "."]);
        run(
            &main,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &helpers.display().to_string(),
                "astropy_helpers",
            ],
        );
        run(
            &main,
            &[
                "config",
                "-f",
                ".gitmodules",
                "submodule.astropy_helpers.url",
                "https://github.com/astropy/astropy-helpers.git",
            ],
        );
        run(&main, &["add", "."]);
        run(&main, &["commit", "-qm", "main"]);
        let head = git(&main, &["rev-parse", "HEAD"], "head").unwrap();

        let tree = d.path().join("tree");
        fresh_checkout(&main, head.trim(), &tree).unwrap();
        assert!(!tree.join("astropy_helpers/ah.py").exists());
        let lines = local_submodules(&repos, &tree);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("checked out from"), "{lines:?}");
        assert_eq!(fs_err::read_to_string(tree.join("astropy_helpers/ah.py")).unwrap(), "X = 1\n");

        // Without a local clone the submodule is left alone, and the line says so.
        let tree2 = d.path().join("tree2");
        fresh_checkout(&main, head.trim(), &tree2).unwrap();
        let lines = local_submodules(&d.path().join("elsewhere"), &tree2);
        assert!(lines[0].contains("left to the install step"), "{lines:?}");
        assert!(!tree2.join("astropy_helpers/ah.py").exists());
    }

    #[test]
    fn a_clone_without_some_blobs_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        fs_err::create_dir_all(&repo).unwrap();
        for args in [&["init", "-q"][..], &["config", "user.email", "t@t"], &["config", "user.name", "t"]] {
            git(&repo, args, "setup").unwrap();
        }
        fs_err::write(repo.join("big.dat"), "large data\n").unwrap();
        fs_err::write(repo.join("code.py"), "x = 1\n").unwrap();
        git(&repo, &["add", "."], "add").unwrap();
        git(&repo, &["commit", "-qm", "c"], "commit").unwrap();
        let head = git(&repo, &["rev-parse", "HEAD"], "head").unwrap();
        fresh_checkout(&repo, head.trim(), &d.path().join("ok")).unwrap();

        let blob = git(&repo, &["rev-parse", "HEAD:big.dat"], "blob").unwrap();
        let blob = blob.trim();
        fs_err::remove_file(repo.join(".git/objects").join(&blob[..2]).join(&blob[2..])).unwrap();
        let err = fresh_checkout(&repo, head.trim(), &d.path().join("broken")).unwrap_err().to_string();
        assert!(err.contains("1 missing (big.dat)") && err.contains("complete clone"), "{err}");
    }

    #[test]
    fn clone_layouts() {
        let d = tempfile::tempdir().unwrap();
        assert!(find_clone(d.path(), "a/b").is_err());
        fs_err::create_dir_all(d.path().join("a__b.git")).unwrap();
        fs_err::write(d.path().join("a__b.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(find_clone(d.path(), "a/b").unwrap(), d.path().join("a__b.git"));
    }
}
