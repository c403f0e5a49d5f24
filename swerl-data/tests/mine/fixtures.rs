//! Helpers: archive files and git repositories built in-test.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature, Time};
use serde_json::json;

/// The real samples vendored in the repository (`tests/data` at the workspace root).
pub(crate) fn vendored_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// The opt-in bigger data set (`SWERL_SHARED_DATA`, same layout as `tests/data`), if set.
pub(crate) fn shared_data() -> Option<PathBuf> {
    std::env::var_os("SWERL_SHARED_DATA").map(PathBuf::from)
}

/// Writes lines as one gzip member per chunk of `per_member` lines (multi-member file).
pub(crate) fn write_gz(path: &Path, lines: &[String], per_member: usize) -> anyhow::Result<()> {
    let mut out = std::fs::File::create(path)?;
    for chunk in lines.chunks(per_member.max(1)) {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for l in chunk {
            enc.write_all(l.as_bytes())?;
            enc.write_all(b"\n")?;
        }
        out.write_all(&enc.finish()?)?;
    }
    Ok(())
}

/// An archive event line.
pub(crate) fn event(id: u64, kind: &str, repo: &str, at: &str, payload: serde_json::Value) -> String {
    json!({
        "id": id.to_string(),
        "type": kind,
        "actor": {"id": 1, "login": "someone"},
        "repo": {"id": 1, "name": repo, "url": format!("https://api.github.com/repos/{repo}")},
        "payload": payload,
        "public": true,
        "created_at": at,
    })
    .to_string()
}

/// A PullRequestEvent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pr_event(
    id: u64,
    repo: &str,
    at: &str,
    action: &str,
    number: u64,
    title: &str,
    body: &str,
    base: &str,
    head: &str,
    merge: Option<&str>,
) -> String {
    event(
        id,
        "PullRequestEvent",
        repo,
        at,
        json!({
            "action": action,
            "number": number,
            "pull_request": {
                "url": "u", "id": number, "number": number, "state": if action == "closed" { "closed" } else { "open" },
                "title": title, "body": body, "user": {"login": "dev"},
                "created_at": "2019-08-20T10:00:00Z",
                "merged": merge.is_some(), "merge_commit_sha": merge,
                "merged_at": merge.map(|_| at),
                "base": {"ref": "dev", "sha": base, "repo": {"name": repo}},
                "head": {"ref": "fix", "sha": head, "repo": {"name": repo}},
                "commits": 2, "additions": 3, "deletions": 1, "changed_files": 2,
                "labels": [],
            }
        }),
    )
}

/// An IssuesEvent.
pub(crate) fn issue_event(
    id: u64,
    repo: &str,
    at: &str,
    number: u64,
    title: &str,
    body: &str,
    labels: &[&str],
) -> String {
    let labels: Vec<_> = labels.iter().map(|l| json!({"name": l})).collect();
    event(
        id,
        "IssuesEvent",
        repo,
        at,
        json!({"action": "opened", "issue": {
            "number": number, "title": title, "body": body, "user": {"login": "reporter"},
            "labels": labels, "state": "open", "created_at": at,
        }}),
    )
}

/// An IssueCommentEvent on an issue.
pub(crate) fn comment_event(
    id: u64,
    repo: &str,
    at: &str,
    number: u64,
    comment_id: u64,
    body: &str,
) -> String {
    event(
        id,
        "IssueCommentEvent",
        repo,
        at,
        json!({"action": "created",
            "issue": {"number": number, "title": "", "body": null, "user": {"login": "reporter"}, "labels": [], "state": "open"},
            "comment": {"id": comment_id, "body": body, "user": {"login": "helper"}, "created_at": at}}),
    )
}

/// A small git repository written through libgit2.
pub(crate) struct TestRepo {
    pub(crate) repo: Repository,
}

impl TestRepo {
    pub(crate) fn init(path: &Path) -> anyhow::Result<Self> {
        let repo = Repository::init(path)?;
        Ok(Self { repo })
    }

    fn sig(time: i64) -> anyhow::Result<Signature<'static>> {
        Ok(Signature::new("Dev", "dev@example.com", &Time::new(time, 0))?)
    }

    /// Commits `files` (path -> Some(content) to write, None to delete) on top of `parents`'
    /// first tree, updating `refname` when given.
    pub(crate) fn commit(
        &self,
        refname: Option<&str>,
        parents: &[Oid],
        files: &[(&str, Option<&[u8]>)],
        message: &str,
        time: i64,
    ) -> anyhow::Result<Oid> {
        let base_tree = match parents.first() {
            Some(p) => Some(self.repo.find_commit(*p)?.tree()?),
            None => None,
        };
        let mut idx = git2::Index::new()?;
        if let Some(t) = &base_tree {
            idx.read_tree(t)?;
        }
        for (path, content) in files {
            match content {
                Some(bytes) => {
                    let oid = self.repo.blob(bytes)?;
                    let entry = git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                        file_size: bytes.len() as u32,
                        id: oid,
                        flags: 0,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    };
                    idx.add(&entry)?;
                }
                None => idx.remove_path(Path::new(path))?,
            }
        }
        let tree_id = idx.write_tree_to(&self.repo)?;
        let tree = self.repo.find_tree(tree_id)?;
        let parents: Vec<git2::Commit<'_>> =
            parents.iter().map(|p| self.repo.find_commit(*p)).collect::<Result<_, _>>()?;
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = Self::sig(time)?;
        let oid = self.repo.commit(None, &sig, &sig, message, &tree, &parent_refs)?;
        if let Some(r) = refname {
            self.repo.reference(r, oid, true, "test")?;
        }
        Ok(oid)
    }

    pub(crate) fn set_head(&self, branch: &str) -> anyhow::Result<()> {
        self.repo.set_head(branch)?;
        Ok(())
    }
}
