//! One merged PR's change from a clone: merge base, intermediate commits, changed files with
//! their contents before and after, and the cumulative git-style diff.

use git2::{Delta, DiffFindOptions, DiffOptions, ObjectType, Oid, Repository, Sort};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the miner knows about a PR before looking at git.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrSpec {
    /// PR number (used for `refs/pull/N/head` and squash-message detection).
    pub number: u64,
    /// Base commit as reported by the event (the base branch tip), may be empty.
    pub base_sha: String,
    /// Head commit, may be empty or absent from the clone.
    pub head_sha: String,
    /// Merge commit on the base branch (merge, squash or last rebased commit), may be empty.
    pub merge_commit_sha: String,
    /// Number of commits of the PR, when known (rebase merges without the head).
    pub commits: Option<u64>,
}

/// How the PR's change was located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    /// From the PR head and the base: `merge-base(base, head)..head` (GitHub's PR diff).
    Head,
    /// From a two-parent merge commit: `merge-base(parent1, parent2)..parent2`.
    MergeCommit,
    /// From a one-parent squash commit: `parent..commit`.
    Squash,
    /// From rebased commits on the base branch: `commit~k..commit` with k the PR's commit count.
    Rebase,
}

/// A commit of the PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full sha.
    pub sha: String,
    /// Full message.
    pub message: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
}

/// Kind of change to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// New file.
    Added,
    /// Removed file.
    Deleted,
    /// Changed in place.
    Modified,
    /// Moved (possibly with changes).
    Renamed,
    /// Copied.
    Copied,
    /// File type changed (e.g. to a symlink).
    TypeChange,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Path before (None for added files).
    pub old_path: Option<String>,
    /// Path after (None for deleted files).
    pub new_path: Option<String>,
    /// Kind of change.
    pub status: ChangeStatus,
    /// Binary (or not valid UTF-8) on either side: contents are not kept.
    pub binary: bool,
    /// Content at the merge base (None when added or binary).
    pub old_content: Option<String>,
    /// Content after the PR (None when deleted or binary).
    pub new_content: Option<String>,
    /// This file's git-style diff (`diff --git` header, no `index` line).
    pub patch: String,
    /// Lines added.
    pub additions: usize,
    /// Lines deleted.
    pub deletions: usize,
}

impl FileChange {
    /// The path SWE-bench's splitter looks at: the old path of a deleted file, else the new one.
    pub fn path(&self) -> &str {
        self.new_path.as_deref().or(self.old_path.as_deref()).unwrap_or("")
    }
}

/// A PR located in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedPr {
    /// The merge base: where the PR's change starts; code context is read here.
    pub base_commit: String,
    /// The commit whose tree is the state after the PR.
    pub after_commit: String,
    /// How the change was located.
    pub merge_kind: MergeKind,
    /// The PR's commits, oldest first (at most [`MAX_COMMITS`]).
    pub commits: Vec<CommitInfo>,
    /// Changed files in diff order (sorted by path).
    pub files: Vec<FileChange>,
}

/// Why a PR could not be mined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unmined {
    /// Neither head nor merge commit is in the clone.
    #[error("commits missing: {0}")]
    CommitsMissing(String),
    /// More files changed than allowed (contents were not loaded).
    #[error("{0} files changed")]
    TooManyFiles(usize),
    /// git failed (a corrupt or unreadable clone).
    #[error(transparent)]
    Git(#[from] Error),
}

/// Most commits listed per PR.
pub const MAX_COMMITS: usize = 250;

fn find_commit<'r>(repo: &'r Repository, sha: &str) -> Option<git2::Commit<'r>> {
    if sha.is_empty() {
        return None;
    }
    let oid = Oid::from_str(sha).ok()?;
    repo.find_commit(oid).ok()
}

/// Resolves the PR head: the given sha when present, else `refs/pull/N/head`.
pub fn resolve_head<'r>(repo: &'r Repository, spec: &PrSpec) -> Option<git2::Commit<'r>> {
    find_commit(repo, &spec.head_sha).or_else(|| {
        let r = repo.find_reference(&format!("refs/pull/{}/head", spec.number)).ok()?;
        r.peel_to_commit().ok()
    })
}

/// Whether a commit message's first line ends with GitHub's squash suffix ` (#N)`.
pub fn is_squash_message(message: &str, number: u64) -> bool {
    message.lines().next().is_some_and(|l| l.trim_end().ends_with(&format!("(#{number})")))
}

/// Locates the PR and extracts its change. `name` is used in errors; `max_files` bounds the
/// number of changed files whose contents are loaded.
pub fn mine_pr(
    repo: &Repository,
    name: &str,
    spec: &PrSpec,
    max_files: usize,
) -> std::result::Result<MinedPr, Unmined> {
    let gerr = |step: String| move |e: git2::Error| Error::git(name, step, e);
    let head = resolve_head(repo, spec);
    let merge = find_commit(repo, &spec.merge_commit_sha);
    let base_tip = find_commit(repo, &spec.base_sha)
        .or_else(|| merge.as_ref().and_then(|m| m.parent(0).ok()))
        .or_else(|| {
            // Last resort for a head without base or merge commit (git-only mode): the default
            // branch tip, unless it already contains the head (the diff would be empty).
            let h = head.as_ref()?;
            let tip = repo.head().ok()?.peel_to_commit().ok()?;
            let contains = tip.id() == h.id() || repo.graph_descendant_of(tip.id(), h.id()).unwrap_or(false);
            (!contains).then_some(tip)
        });
    let (base, after, kind) = match (&head, &base_tip, &merge) {
        (Some(h), Some(b), _) => {
            let mb = repo.merge_base(b.id(), h.id()).map_err(gerr(format!(
                "merge-base {}..{}",
                b.id(),
                h.id()
            )))?;
            (mb, h.id(), MergeKind::Head)
        }
        (_, _, Some(m)) if m.parent_count() >= 2 => {
            let (p0, p1) = (m.parent_id(0), m.parent_id(1));
            let (p0, p1) = (p0.map_err(gerr("parents".into()))?, p1.map_err(gerr("parents".into()))?);
            let mb = repo.merge_base(p0, p1).map_err(gerr(format!("merge-base {p0}..{p1}")))?;
            (mb, p1, MergeKind::MergeCommit)
        }
        (_, _, Some(m)) if m.parent_count() == 1 => {
            let squash = is_squash_message(m.message().unwrap_or(""), spec.number);
            let k = if squash { 1 } else { spec.commits.unwrap_or(1).max(1) };
            let mut base = m.clone();
            for _ in 0..k {
                match base.parent(0) {
                    Ok(p) => base = p,
                    Err(_) => {
                        return Err(Unmined::CommitsMissing(format!(
                            "{} has fewer than {k} ancestors",
                            m.id()
                        )));
                    }
                }
            }
            (base.id(), m.id(), if squash || k == 1 { MergeKind::Squash } else { MergeKind::Rebase })
        }
        (Some(h), None, None) => match merged_into_default(repo, h, spec.commits) {
            Some(found) => found,
            None => {
                return Err(Unmined::CommitsMissing(format!(
                    "head {} found but no base, merge commit or default-branch merge",
                    h.id()
                )));
            }
        },
        _ => {
            return Err(Unmined::CommitsMissing(format!(
                "none of head {:?}, refs/pull/{}/head, merge {:?} found with a base",
                spec.head_sha, spec.number, spec.merge_commit_sha
            )));
        }
    };
    let base_tree = repo.find_commit(base).and_then(|c| c.tree()).map_err(gerr(format!("tree of {base}")))?;
    let after_tree =
        repo.find_commit(after).and_then(|c| c.tree()).map_err(gerr(format!("tree of {after}")))?;
    let mut opts = DiffOptions::new();
    opts.context_lines(3).indent_heuristic(true);
    let mut diff = repo
        .diff_tree_to_tree(Some(&base_tree), Some(&after_tree), Some(&mut opts))
        .map_err(gerr(format!("diff {base}..{after}")))?;
    let mut find = DiffFindOptions::new();
    find.renames(true);
    diff.find_similar(Some(&mut find)).map_err(gerr("rename detection".into()))?;
    if diff.deltas().len() > max_files {
        return Err(Unmined::TooManyFiles(diff.deltas().len()));
    }
    let mut files = Vec::with_capacity(diff.deltas().len());
    for (idx, delta) in diff.deltas().enumerate() {
        let status = match delta.status() {
            Delta::Added => ChangeStatus::Added,
            Delta::Deleted => ChangeStatus::Deleted,
            Delta::Renamed => ChangeStatus::Renamed,
            Delta::Copied => ChangeStatus::Copied,
            Delta::Typechange => ChangeStatus::TypeChange,
            _ => ChangeStatus::Modified,
        };
        let path_of = |f: git2::DiffFile<'_>| f.path().map(|p| p.to_string_lossy().into_owned());
        let old_path = (status != ChangeStatus::Added).then(|| path_of(delta.old_file())).flatten();
        let new_path = (status != ChangeStatus::Deleted).then(|| path_of(delta.new_file())).flatten();
        let blob_text = |id: Oid| -> Option<std::result::Result<String, ()>> {
            if id.is_zero() {
                return None;
            }
            let blob = repo.find_blob(id).ok()?;
            Some(if blob.is_binary() {
                Err(())
            } else {
                String::from_utf8(blob.content().to_vec()).map_err(|_| ())
            })
        };
        let old = if old_path.is_some() { blob_text(delta.old_file().id()) } else { None };
        let new = if new_path.is_some() { blob_text(delta.new_file().id()) } else { None };
        let mut binary =
            delta.flags().is_binary() || matches!(old, Some(Err(()))) || matches!(new, Some(Err(())));
        let (patch, additions, deletions) = match git2::Patch::from_diff(&diff, idx) {
            Ok(Some(mut p)) => {
                let (_, a, d) = p.line_stats().map_err(gerr("line stats".into()))?;
                let buf = p.to_buf().map_err(gerr("patch text".into()))?;
                let text = String::from_utf8_lossy(&buf).into_owned();
                binary |= text.contains("\nBinary files ") || text.starts_with("Binary files ");
                (strip_index_lines(&text), a, d)
            }
            _ => (String::new(), 0, 0),
        };
        let (old_content, new_content) =
            if binary { (None, None) } else { (old.and_then(|r| r.ok()), new.and_then(|r| r.ok())) };
        let patch = match &old_path {
            Some(p) if !binary => {
                crate::git::funcname::rewrite_hunk_headers(p, old_content.as_deref(), &patch)
            }
            _ => patch,
        };
        files.push(FileChange {
            old_path,
            new_path,
            status,
            binary,
            old_content,
            new_content,
            patch,
            additions,
            deletions,
        });
    }
    let commits = list_commits(repo, name, base, after)?;
    Ok(MinedPr {
        base_commit: base.to_string(),
        after_commit: after.to_string(),
        merge_kind: kind,
        commits,
        files,
    })
}

/// Most first-parent commits of the default branch searched by [`merged_into_default`].
const MAX_DEFAULT_WALK: usize = 100_000;

/// For a head already contained in the default branch (merged without GitHub's messages, or
/// fast-forwarded), finds where it entered: the first-parent commit `M` whose first parent does
/// not contain the head. A merge of the head itself (`M^2` is the head) gives
/// `merge-base(M^1, head)..head`; otherwise (a fast-forward, or the head arrived through the
/// merge of another branch) `head~k..head` with `k` the PR's commit count (1 when unknown).
fn merged_into_default(
    repo: &Repository,
    head: &git2::Commit<'_>,
    commits: Option<u64>,
) -> Option<(Oid, Oid, MergeKind)> {
    let tip = repo.head().ok()?.peel_to_commit().ok()?;
    let contains = |c: Oid| c == head.id() || repo.graph_descendant_of(c, head.id()).unwrap_or(false);
    if !contains(tip.id()) {
        return None;
    }
    let linear = || {
        let mut base = head.clone();
        for _ in 0..commits.unwrap_or(1).max(1) {
            base = base.parent(0).ok()?;
        }
        Some((base.id(), head.id(), MergeKind::Head))
    };
    let mut m = tip;
    for _ in 0..MAX_DEFAULT_WALK {
        if m.id() == head.id() {
            return linear();
        }
        let p0 = m.parent(0).ok()?;
        if !contains(p0.id()) {
            if m.parent_count() >= 2 && m.parent_id(1).ok() == Some(head.id()) {
                let mb = repo.merge_base(p0.id(), head.id()).ok()?;
                return Some((mb, head.id(), MergeKind::MergeCommit));
            }
            return linear();
        }
        m = p0;
    }
    None
}

/// Commits reachable from `after` but not from `base`, oldest first.
fn list_commits(repo: &Repository, name: &str, base: Oid, after: Oid) -> Result<Vec<CommitInfo>> {
    let gerr = |e| Error::git(name, format!("log {base}..{after}"), e);
    let mut walk = repo.revwalk().map_err(gerr)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE).map_err(gerr)?;
    walk.push(after).map_err(gerr)?;
    walk.hide(base).map_err(gerr)?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid.map_err(gerr)?;
        let Ok(c) = repo.find_commit(oid) else {
            continue;
        };
        out.push(CommitInfo {
            sha: oid.to_string(),
            message: String::from_utf8_lossy(c.message_bytes()).into_owned(),
            time: c.author().when().seconds(),
        });
        if out.len() >= MAX_COMMITS {
            break;
        }
    }
    Ok(out)
}

/// Makes libgit2's per-file diff read like git's (and GitHub's): no `index abc..def` line
/// (SWE-bench patches carry none), and no `---`/`+++` lines for a file without hunks (an empty
/// new or deleted file, a pure rename or mode change), where git prints the header alone.
fn strip_index_lines(patch: &str) -> String {
    let has_hunks = patch.lines().any(|l| l.starts_with("@@") || l.starts_with("Binary files"));
    let mut out = String::with_capacity(patch.len());
    let mut in_header = false;
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            in_header = true;
        } else if line.starts_with("@@") || line.starts_with("Binary files") {
            in_header = false;
        }
        if in_header
            && (line.starts_with("index ")
                || (!has_hunks && (line.starts_with("--- ") || line.starts_with("+++ "))))
        {
            continue;
        }
        if line.starts_with("+++ ") {
            in_header = false;
        }
        out.push_str(line);
    }
    out
}

/// Reads a text file at a commit (None when absent, binary or not UTF-8).
pub fn read_file_at(repo: &Repository, commit: &str, path: &str) -> Option<String> {
    let c = find_commit(repo, commit)?;
    let entry = c.tree().ok()?.get_path(std::path::Path::new(path)).ok()?;
    if entry.kind() != Some(ObjectType::Blob) {
        return None;
    }
    let blob = repo.find_blob(entry.id()).ok()?;
    if blob.is_binary() {
        return None;
    }
    String::from_utf8(blob.content().to_vec()).ok()
}

/// Every blob path of a commit's tree with its size, sorted.
pub fn list_files(repo: &Repository, commit: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let Some(c) = find_commit(repo, commit) else {
        return out;
    };
    let Ok(tree) = c.tree() else { return out };
    let Ok(odb) = repo.odb() else { return out };
    let _ = tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && let Some(name) = entry.name()
        {
            let size = odb.read_header(entry.id()).map(|(size, _)| size).unwrap_or(0);
            out.push((format!("{dir}{name}"), size));
        }
        git2::TreeWalkResult::Ok
    });
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_new_file_has_the_header_only() {
        let p = "diff --git a/e/x.py b/e/x.py\nnew file mode 100644\nindex 0000000..e69de29\n--- /dev/null\n+++ b/e/x.py\n";
        assert_eq!(strip_index_lines(p), "diff --git a/e/x.py b/e/x.py\nnew file mode 100644\n");
    }

    #[test]
    fn index_lines_are_removed_from_headers_only() {
        let p = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-index 3\n+index 4\n";
        assert_eq!(
            strip_index_lines(p),
            "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-index 3\n+index 4\n"
        );
    }

    #[test]
    fn squash_messages() {
        assert!(is_squash_message("Fix thing (#12)\n\n* a", 12));
        assert!(!is_squash_message("Fix thing (#123)", 12));
    }
}
