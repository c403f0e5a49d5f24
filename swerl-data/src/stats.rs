//! Per-stage counters written to `summary.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// At most this many problems are kept with their location; the rest are only counted.
pub const MAX_REPORTED_PROBLEMS: usize = 200;

/// A malformed line or unreadable file, with its location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    /// The archive file.
    pub path: PathBuf,
    /// 1-based line number (for a truncated file: the line at which reading stopped).
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

/// Statistics of the event-scanning stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScanStats {
    /// Archive files read.
    pub files: u64,
    /// Files skipped because their name dates them before 2015 (Timeline API schema).
    pub legacy_files: u64,
    /// Files that ended early (truncated or corrupt gzip); their complete lines were used.
    pub truncated_files: u64,
    /// Compressed bytes read.
    pub compressed_bytes: u64,
    /// Lines read (including malformed ones).
    pub lines: u64,
    /// Well-formed events.
    pub events: u64,
    /// Malformed lines (not JSON, not an event, bad payload).
    pub malformed_lines: u64,
    /// Events in the 2011-2014 schema found inside files (skipped).
    pub legacy_events: u64,
    /// Trimmed (October 2025+) PullRequestEvents: completed from git later.
    pub trimmed_pr_events: u64,
    /// Events per type.
    pub by_type: BTreeMap<String, u64>,
    /// Total number of problems (malformed lines and unreadable files).
    pub problem_count: u64,
    /// The first problems, sorted by file and line (at most [`MAX_REPORTED_PROBLEMS`]).
    pub problems: Vec<Problem>,
}

impl ScanStats {
    /// Records a problem.
    pub fn problem(&mut self, path: PathBuf, line: u64, message: String) {
        self.problem_count += 1;
        self.problems.push(Problem { path, line, message });
        if self.problems.len() > 2 * MAX_REPORTED_PROBLEMS {
            self.trim_problems();
        }
    }

    fn trim_problems(&mut self) {
        self.problems.sort();
        self.problems.dedup();
        self.problems.truncate(MAX_REPORTED_PROBLEMS);
    }

    /// Adds another shard's or file's statistics (order-independent).
    pub fn add(&mut self, o: &ScanStats) {
        self.files += o.files;
        self.legacy_files += o.legacy_files;
        self.truncated_files += o.truncated_files;
        self.compressed_bytes += o.compressed_bytes;
        self.lines += o.lines;
        self.events += o.events;
        self.malformed_lines += o.malformed_lines;
        self.legacy_events += o.legacy_events;
        self.trimmed_pr_events += o.trimmed_pr_events;
        for (k, v) in &o.by_type {
            *self.by_type.entry(k.clone()).or_default() += v;
        }
        self.problem_count += o.problem_count;
        self.problems.extend(o.problems.iter().cloned());
        self.trim_problems();
    }
}

/// Statistics of thread aggregation and PR records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrStats {
    /// Distinct (repository, number) threads.
    pub threads: u64,
    /// Threads that are pull requests with PR data.
    pub prs: u64,
    /// Of those, merged.
    pub merged: u64,
    /// PRs without a complete PullRequestEvent (only trimmed payloads or only review events):
    /// their merge state, title and body are completed from git when a clone is given.
    pub trimmed: u64,
    /// Trimmed PRs completed from git (merge state, title, body).
    pub completed_from_git: u64,
    /// PRs with at least one linked issue (from title and body).
    pub with_linked_issue: u64,
    /// Merged PRs with at least one linked issue.
    pub merged_with_linked_issue: u64,
    /// Issue threads (not PRs) with issue text.
    pub issues: u64,
}

/// The filter funnel from merged PRs to selected RL instances. Each `dropped_*` counts PRs
/// removed by that step, in the order the steps run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Funnel {
    /// Merged PRs entering the funnel.
    pub merged_prs: u64,
    /// Repository is a SWE-bench repository (decontamination).
    pub dropped_swebench_repo: u64,
    /// Authored or titled by a bot.
    pub dropped_bot: u64,
    /// Repository has no local clone.
    pub dropped_no_clone: u64,
    /// The commits could not be found in the clone (or git failed).
    pub dropped_commits_missing: u64,
    /// No change at all.
    pub dropped_empty: u64,
    /// Too many files or lines changed.
    pub dropped_oversized: u64,
    /// Only lock files, generated files or version bumps.
    pub dropped_noise_only: u64,
    /// The code patch equals a SWE-bench gold patch (decontamination).
    pub dropped_swebench_patch: u64,
    /// PRs after the paper's general filters (its ~11M stage).
    pub after_filters: u64,
    /// No linked issue.
    pub dropped_no_linked_issue: u64,
    /// Linked issues not found in the archives (no problem statement).
    pub dropped_issue_text_missing: u64,
    /// No linked issue asks for a bug fix.
    pub dropped_not_bug_fix: u64,
    /// No programming-language file in the code patch.
    pub dropped_no_code_files: u64,
    /// Instances written (the seed RL set).
    pub selected: u64,
    /// Git errors per repository or PR, counted (details are logged).
    pub git_errors: u64,
}

impl Funnel {
    /// Adds another shard's counts.
    pub fn add(&mut self, o: &Funnel) {
        let Funnel {
            merged_prs,
            dropped_no_clone,
            dropped_swebench_repo,
            dropped_bot,
            dropped_commits_missing,
            dropped_empty,
            dropped_oversized,
            dropped_noise_only,
            dropped_swebench_patch,
            after_filters,
            dropped_no_linked_issue,
            dropped_issue_text_missing,
            dropped_not_bug_fix,
            dropped_no_code_files,
            selected,
            git_errors,
        } = o;
        self.merged_prs += merged_prs;
        self.dropped_no_clone += dropped_no_clone;
        self.dropped_swebench_repo += dropped_swebench_repo;
        self.dropped_bot += dropped_bot;
        self.dropped_commits_missing += dropped_commits_missing;
        self.dropped_empty += dropped_empty;
        self.dropped_oversized += dropped_oversized;
        self.dropped_noise_only += dropped_noise_only;
        self.dropped_swebench_patch += dropped_swebench_patch;
        self.after_filters += after_filters;
        self.dropped_no_linked_issue += dropped_no_linked_issue;
        self.dropped_issue_text_missing += dropped_issue_text_missing;
        self.dropped_not_bug_fix += dropped_not_bug_fix;
        self.dropped_no_code_files += dropped_no_code_files;
        self.selected += selected;
        self.git_errors += git_errors;
    }
}

impl PrStats {
    /// Adds another group's counts.
    pub fn add(&mut self, o: &PrStats) {
        self.threads += o.threads;
        self.prs += o.prs;
        self.merged += o.merged;
        self.trimmed += o.trimmed;
        self.completed_from_git += o.completed_from_git;
        self.with_linked_issue += o.with_linked_issue;
        self.merged_with_linked_issue += o.merged_with_linked_issue;
        self.issues += o.issues;
    }
}

/// The whole `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Event scanning.
    pub scan: ScanStats,
    /// Aggregation into PR records.
    pub prs: PrStats,
    /// Instance funnel (present when clones were given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Funnel>,
    /// Which shard this is (`i/n`), when sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}
