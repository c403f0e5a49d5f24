//! The paper's filters and seed selection, with configurable thresholds.
//!
//! Defaults (the paper published none):
//! - bots: author, title or body contains `[bot]`, `dependabot`, `renovate`, `bump` or
//!   `automerge` (case-insensitive);
//! - empty: fewer than 1 changed line and no file added, deleted or renamed;
//! - oversized: more than 50 changed files or 2,000 changed lines;
//! - noise-only: every changed file is a lock file, generated, or a manifest whose changed lines
//!   are all version strings;
//! - decontamination: the SWE-bench repositories shipped in `data/swebench_repos.txt`, plus the
//!   repositories and gold patches of any SWE-bench files given;
//! - seed selection: a linked issue whose text is known, that asks for a bug fix (a label
//!   containing `bug`, `defect`, `regression` or `crash`, or a bug word in its title or body),
//!   and a programming-language file in the code patch.

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::git::mine::FileChange;
use crate::lang;

/// The shipped list of SWE-bench repositories.
pub const SWEBENCH_REPOS: &str = include_str!("../data/swebench_repos.txt");

/// Thresholds and switches of the filters and the seed selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterConfig {
    /// Case-insensitive substrings marking bot PRs in author, title or body.
    pub bot_patterns: Vec<String>,
    /// Fewer changed lines than this (and no added/deleted/renamed file) is an empty change.
    pub min_changed_lines: usize,
    /// More changed files than this is oversized.
    pub max_changed_files: usize,
    /// More changed lines (additions + deletions) than this is oversized.
    pub max_changed_lines: usize,
    /// Drop SWE-bench repositories and PRs whose code patch equals a SWE-bench gold patch.
    pub decontaminate: bool,
    /// Further repositories (`owner/name`) to drop.
    pub excluded_repos: Vec<String>,
    /// Seed selection: require a linked issue with known text.
    pub require_linked_issue: bool,
    /// Seed selection: require a linked issue that asks for a bug fix.
    pub require_bug_fix: bool,
    /// Seed selection: require a programming-language file in the code patch.
    pub require_code_files: bool,
    /// Label substrings (case-insensitive) that mark a bug report.
    pub bug_labels: Vec<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            bot_patterns: ["[bot]", "dependabot", "renovate", "bump", "automerge"].map(String::from).to_vec(),
            min_changed_lines: 1,
            max_changed_files: 50,
            max_changed_lines: 2000,
            decontaminate: true,
            excluded_repos: Vec::new(),
            require_linked_issue: true,
            require_bug_fix: true,
            require_code_files: true,
            bug_labels: ["bug", "defect", "regression", "crash"].map(String::from).to_vec(),
        }
    }
}

static BUG_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(bugs?|fix(es|ed)?|errors?|exceptions?|crash(es|ed|ing)?|fail(s|ed|ing|ure)?|broken|incorrect(ly)?|wrong|traceback|regression|unexpected(ly)?|doesn'?t work|does not work|not working|panics?|segfault|raises?)\b",
    )
    .expect("valid regex")
});

impl FilterConfig {
    /// Whether a PR looks bot-made.
    pub fn is_bot(&self, author: &str, title: &str, body: &str) -> bool {
        let hay = [author, title, body].map(str::to_lowercase);
        self.bot_patterns.iter().any(|p| {
            let p = p.to_lowercase();
            hay.iter().any(|h| h.contains(&p))
        })
    }

    /// Whether an issue asks for a bug fix.
    pub fn is_bug_report(&self, title: &str, body: &str, labels: &[String]) -> bool {
        labels.iter().any(|l| {
            let l = l.to_lowercase();
            self.bug_labels.iter().any(|b| l.contains(&b.to_lowercase()))
        }) || BUG_WORDS.is_match(title)
            || BUG_WORDS.is_match(body)
    }

    /// Whether the change is empty.
    pub fn is_empty(&self, files: &[FileChange]) -> bool {
        let lines: usize = files.iter().map(|f| f.additions + f.deletions).sum();
        let structural = files.iter().any(|f| {
            !matches!(f.status, crate::git::mine::ChangeStatus::Modified) || (f.binary && !f.patch.is_empty())
        });
        lines < self.min_changed_lines && !structural
    }

    /// Whether the change is too large.
    pub fn is_oversized(&self, files: &[FileChange]) -> bool {
        let lines: usize = files.iter().map(|f| f.additions + f.deletions).sum();
        files.len() > self.max_changed_files || lines > self.max_changed_lines
    }
}

/// Whether every changed file is noise (lock file, generated file, version bump).
pub(crate) fn is_noise_only(files: &[FileChange]) -> bool {
    !files.is_empty()
        && files.iter().all(|f| {
            let p = f.path();
            lang::is_lock_file(p)
                || lang::is_generated(p, f.new_content.as_deref().or(f.old_content.as_deref()))
                || (lang::is_manifest(p) && lang::is_version_bump(&f.patch))
        })
}

/// Normalised fingerprint of a patch: per file, the path and the changed lines with trailing
/// whitespace removed; files sorted by path. Equal for the same change whatever the context
/// lines, hunk offsets or `index` lines.
pub fn patch_fingerprint(patch: &str) -> u64 {
    let mut files: Vec<(String, Vec<&str>)> = Vec::new();
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            let path = rest.rsplit_once(" b/").map(|(_, b)| b).unwrap_or(rest).to_owned();
            files.push((path, Vec::new()));
        } else if line.starts_with("+++") || line.starts_with("---") {
            continue;
        } else if (line.starts_with('+') || line.starts_with('-'))
            && let Some((_, lines)) = files.last_mut()
        {
            lines.push(line.trim_end());
        }
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, lines) in &files {
        for part in std::iter::once(path.as_str()).chain(lines.iter().copied()) {
            for b in part.bytes().chain(std::iter::once(b'\n')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h ^= 0xff;
    }
    h
}

/// Decontamination data: repositories and gold-patch fingerprints to exclude.
#[derive(Debug, Clone, Default)]
pub struct Decontamination {
    repos: HashSet<String>,
    patches: HashSet<u64>,
}

#[derive(Deserialize)]
struct SweBenchRow {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    patch: String,
}

impl Decontamination {
    /// The shipped repository list plus `extra` repositories.
    pub fn with_shipped(extra: &[String]) -> Self {
        let mut d = Self::default();
        for line in SWEBENCH_REPOS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            d.repos.insert(line.to_ascii_lowercase());
        }
        for r in extra {
            d.repos.insert(r.to_ascii_lowercase());
        }
        d
    }

    /// Adds the repositories and gold patches of a SWE-bench file (JSON array or JSONL).
    pub fn load_swebench(&mut self, path: &Path) -> Result<usize> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rows: Vec<SweBenchRow> = if text.trim_start().starts_with('[') {
            serde_json::from_str(&text).map_err(|e| Error::InvalidRecord {
                path: path.to_path_buf(),
                line: e.line() as u64,
                message: e.to_string(),
            })?
        } else {
            let mut rows = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                rows.push(serde_json::from_str(line).map_err(|e| Error::InvalidRecord {
                    path: path.to_path_buf(),
                    line: i as u64 + 1,
                    message: e.to_string(),
                })?);
            }
            rows
        };
        for r in &rows {
            if !r.repo.is_empty() {
                self.repos.insert(r.repo.to_ascii_lowercase());
            }
            if !r.patch.is_empty() {
                self.patches.insert(patch_fingerprint(&r.patch));
            }
        }
        Ok(rows.len())
    }

    /// Whether the repository is excluded.
    pub fn is_excluded_repo(&self, repo: &str) -> bool {
        self.repos.contains(&repo.to_ascii_lowercase())
    }

    /// Whether the code patch equals a known gold patch.
    pub fn matches_gold_patch(&self, patch: &str) -> bool {
        !self.patches.is_empty() && self.patches.contains(&patch_fingerprint(patch))
    }

    /// Number of gold patches loaded.
    pub fn gold_patches(&self) -> usize {
        self.patches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_and_bugs() {
        let f = FilterConfig::default();
        assert!(f.is_bot("dependabot[bot]", "x", ""));
        assert!(f.is_bot("me", "Bump lodash from 1 to 2", ""));
        assert!(!f.is_bot("me", "Fix parser", "closes #3"));
        assert!(f.is_bug_report("Crash when x is None", "", &[]));
        assert!(f.is_bug_report("Question", "", &["type: Bug".into()]));
        assert!(!f.is_bug_report("Add dark mode", "It would be nice", &["enhancement".into()]));
    }

    #[test]
    fn fingerprints_ignore_context_and_offsets() {
        let a = "diff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n";
        let b = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -10,2 +10,2 @@\n-b \n+c\n";
        assert_eq!(patch_fingerprint(a), patch_fingerprint(b));
        assert_ne!(patch_fingerprint(a), patch_fingerprint(&a.replace("+c", "+e")));
        let d = Decontamination::with_shipped(&["Me/Mine".into()]);
        assert!(d.is_excluded_repo("django/django") && d.is_excluded_repo("me/mine"));
        assert!(!d.matches_gold_patch(a));
    }
}
