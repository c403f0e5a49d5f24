//! The RL instance record and the PR record, and how a mined PR becomes an instance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use swerl_reward::RlInstance;

use crate::git::mine::{FileChange, MergeKind, MinedPr};
use crate::git::pullindex::parse_rfc3339;
use crate::lang;
use crate::thread::{Comment, CommentKind, Thread};

/// One aggregated pull request (a line of `prs.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrRecord {
    /// `owner/name`.
    pub repo: String,
    /// PR number.
    pub number: u64,
    /// Merged.
    pub merged: bool,
    /// Title.
    pub title: String,
    /// Description.
    pub body: String,
    /// Author login.
    pub author: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Merged (RFC 3339).
    pub merged_at: String,
    /// Base branch.
    pub base_ref: String,
    /// Base sha reported by the events.
    pub base_sha: String,
    /// Head branch.
    pub head_ref: String,
    /// Head sha.
    pub head_sha: String,
    /// Merge commit sha.
    pub merge_commit_sha: String,
    /// Linked same-repository issues (from title and body; instances add commit messages).
    pub linked_issues: Vec<u64>,
    /// Conversation comments, reviews and review comments in time order.
    pub comments: Vec<Comment>,
    /// Commits, additions, deletions, changed files as reported by the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    /// Lines added (events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additions: Option<u64>,
    /// Lines deleted (events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
    /// Files changed (events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_files: Option<u64>,
    /// Every PullRequestEvent was trimmed (October 2025+).
    pub trimmed: bool,
    /// Fields were completed from git (trimmed events or git-only mode).
    pub from_git: bool,
    /// Number of archive events about this PR.
    pub events: u64,
}

/// One mined RL instance (a line of `instances.jsonl`).
///
/// It embeds the reward's and the trainer's [`RlInstance`] (`instance_id` as `owner__repo-N`,
/// `problem_statement` as each linked issue's title, newline, body, newline in SWE-bench's
/// format, `code_context` as path -> content at the base for the files the code patch changes
/// and the relevant files, `oracle_new_content` as path -> content after the PR for the files
/// the code patch changes, "" when deleted), flattened into the same JSON object as the mining
/// metadata below: every line of `instances.jsonl` is an [`RlInstance`] by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// What the reward scores against and the trainer prompts with.
    #[serde(flatten)]
    pub rl: RlInstance,
    /// `owner/name`.
    pub repo: String,
    /// PR number.
    pub pr_number: u64,
    /// Merge base: the commit the code context is read at and the patches apply to.
    pub base_commit: String,
    /// Linked-issue comments made before the PR's first commit, newline-joined (SWE-bench's
    /// `hints_text`).
    #[serde(alias = "hints_text")]
    pub hints: String,
    /// The code part of the PR's diff (git style).
    pub patch: String,
    /// The test part (see [`crate::lang::is_test_path`]).
    pub test_patch: String,
    /// Documentation and changelog changes, kept apart unless configured otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc_patch: String,
    /// Unchanged files added to the code context.
    pub relevant_files: Vec<String>,
    /// Programming languages of the code patch's files.
    pub languages: Vec<String>,
    /// PR creation time (RFC 3339).
    pub created_at: String,
    /// PR title.
    pub title: String,
    /// Linked issue numbers.
    pub linked_issues: Vec<u64>,
    /// How the change was located in git.
    pub merge_kind: MergeKind,
    /// The PR's commits, oldest first.
    pub commits: Vec<String>,
}

/// Options of instance construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceConfig {
    /// Put documentation/changelog files in `patch` (SWE-bench's shipped patches leave them
    /// out, and so does the default).
    pub docs_in_patch: bool,
    /// Put test files in `code_context`/`oracle_new_content` too (default: only code files,
    /// as the model is asked to fix code and the tests judge it).
    pub tests_in_oracle: bool,
    /// Changed files larger than this are kept in the patch but not in the maps.
    pub max_file_bytes: usize,
    /// When no linked issue has text (always so in git-only mode, where issues are unknown),
    /// the problem statement is the PR's own title and body, SWE-bench style (`title\nbody\n`).
    /// Off by default: the paper's problem statements are issues. Such text describes the
    /// change rather than a bug report; pair it with `filters.require_linked_issue = false`.
    pub pr_text_as_problem: bool,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            docs_in_patch: false,
            tests_in_oracle: false,
            max_file_bytes: 512 * 1024,
            pr_text_as_problem: false,
        }
    }
}

/// Where a changed file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The code patch.
    Code,
    /// The test patch.
    Test,
    /// The documentation patch.
    Doc,
}

/// Classifies a file: tests first ([`lang::is_test_path`]), then documentation.
pub(crate) fn part_of(file: &FileChange, config: &InstanceConfig) -> Part {
    let p = file.path();
    if lang::is_test_path(p) {
        Part::Test
    } else if !config.docs_in_patch && lang::is_doc_path(p) {
        Part::Doc
    } else {
        Part::Code
    }
}

/// The problem statement of linked issues: `title\nbody\n` each, in link order.
pub fn problem_statement<'a>(issues: impl IntoIterator<Item = &'a Thread>) -> String {
    let mut s = String::new();
    for t in issues {
        s.push_str(t.title());
        s.push('\n');
        s.push_str(t.body());
        s.push('\n');
    }
    s
}

/// Conversation comments of the issues made before `before` (seconds), newline-joined.
pub fn hints<'a>(issues: impl IntoIterator<Item = &'a Thread>, before: Option<i64>) -> String {
    let mut out: Vec<&str> = Vec::new();
    for t in issues {
        for c in t.comments.iter().filter(|c| c.kind == CommentKind::Conversation) {
            let early = match (before, parse_rfc3339(&c.created_at)) {
                (Some(b), Some(at)) => at < b,
                _ => false,
            };
            if early {
                out.push(&c.body);
            }
        }
    }
    out.join("\n")
}

/// Assembles the patches and maps of an instance from a mined PR.
pub struct Assembled {
    /// Code patch.
    pub patch: String,
    /// Test patch.
    pub test_patch: String,
    /// Documentation patch.
    pub doc_patch: String,
    /// Files of the code patch at the base.
    pub code_context: BTreeMap<String, String>,
    /// Files of the code patch after.
    pub oracle_new_content: BTreeMap<String, String>,
    /// Languages of the code patch.
    pub languages: Vec<String>,
    /// Paths of the code patch's files.
    pub code_paths: Vec<String>,
}

/// Splits a mined PR into the instance's patches and maps.
pub fn assemble(mined: &MinedPr, config: &InstanceConfig) -> Assembled {
    let mut a = Assembled {
        patch: String::new(),
        test_patch: String::new(),
        doc_patch: String::new(),
        code_context: BTreeMap::new(),
        oracle_new_content: BTreeMap::new(),
        languages: Vec::new(),
        code_paths: Vec::new(),
    };
    for f in &mined.files {
        let part = part_of(f, config);
        match part {
            Part::Code => a.patch.push_str(&f.patch),
            Part::Test => a.test_patch.push_str(&f.patch),
            Part::Doc => a.doc_patch.push_str(&f.patch),
        }
        if part == Part::Code || (part == Part::Test && config.tests_in_oracle) {
            if part == Part::Code {
                a.code_paths.push(f.path().to_owned());
                if let Some(l) = lang::language(f.path())
                    && !a.languages.iter().any(|x| x == l)
                {
                    a.languages.push(l.to_owned());
                }
            }
            if f.binary {
                continue;
            }
            let fits = |c: &Option<String>| c.as_ref().is_none_or(|c| c.len() <= config.max_file_bytes);
            if !fits(&f.old_content) || !fits(&f.new_content) {
                continue;
            }
            if let (Some(p), Some(c)) = (&f.old_path, &f.old_content) {
                a.code_context.insert(p.clone(), c.clone());
            }
            match (&f.new_path, &f.new_content) {
                (Some(p), Some(c)) => {
                    a.oracle_new_content.insert(p.clone(), c.clone());
                }
                (None, _) => {
                    if let Some(p) = &f.old_path {
                        a.oracle_new_content.insert(p.clone(), String::new());
                    }
                }
                _ => {}
            }
            if f.status == crate::git::mine::ChangeStatus::Renamed
                && let Some(old) = &f.old_path
            {
                // The old path disappears.
                a.oracle_new_content.insert(old.clone(), String::new());
            }
        }
    }
    a.languages.sort();
    a
}

/// `owner__repo-N`.
pub fn instance_id(repo: &str, number: u64) -> String {
    format!("{}-{number}", repo.replace('/', "__"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::mine::ChangeStatus;

    fn change(path: &str, old: Option<&str>, new: Option<&str>) -> FileChange {
        FileChange {
            old_path: old.map(|_| path.to_owned()),
            new_path: new.map(|_| path.to_owned()),
            status: match (old, new) {
                (None, _) => ChangeStatus::Added,
                (_, None) => ChangeStatus::Deleted,
                _ => ChangeStatus::Modified,
            },
            binary: false,
            old_content: old.map(str::to_owned),
            new_content: new.map(str::to_owned),
            patch: format!("diff --git a/{path} b/{path}\n"),
            additions: 1,
            deletions: 1,
        }
    }

    #[test]
    fn split_follows_swebench_rule() {
        let mined = MinedPr {
            base_commit: "b".into(),
            after_commit: "a".into(),
            merge_kind: MergeKind::Head,
            commits: vec![],
            files: vec![
                change("CHANGELOG.rst", Some("x"), Some("y")),
                change("src/m.py", Some("old"), Some("new")),
                change("src/gone.py", Some("bye"), None),
                change("tests/test_m.py", Some("t"), Some("t2")),
                change("src/test_new.py", None, Some("c")),
            ],
        };
        let a = assemble(&mined, &InstanceConfig::default());
        assert_eq!(a.patch, "diff --git a/src/m.py b/src/m.py\ndiff --git a/src/gone.py b/src/gone.py\n");
        assert!(a.test_patch.contains("tests/test_m.py") && a.test_patch.contains("src/test_new.py"));
        assert!(a.doc_patch.contains("CHANGELOG.rst"));
        assert_eq!(a.code_context.keys().collect::<Vec<_>>(), ["src/gone.py", "src/m.py"]);
        assert_eq!(a.oracle_new_content.get("src/gone.py").map(String::as_str), Some(""));
        assert_eq!(a.languages, ["Python"]);
        assert_eq!(instance_id("o/r", 5), "o__r-5");
    }
}
