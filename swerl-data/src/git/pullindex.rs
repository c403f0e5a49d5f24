//! What a clone alone says about its pull requests: `refs/pull/N/head` refs and the merge and
//! squash commits GitHub writes on the default branch. Completes trimmed archive events and
//! drives the git-only mode.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use git2::{Oid, Repository};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::git::mine::MergeKind;

static MERGE_MSG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^Merge pull request #(\d+) from (\S+)").expect("valid regex"));
static SQUASH_MSG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.*) \(#(\d+)\)\s*$").expect("valid regex"));

/// A PR merge found on the default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// The merge or squash commit.
    pub sha: String,
    /// Merge commit (two parents) or squash commit.
    pub kind: MergeKind,
    /// PR title recovered from the message.
    pub title: String,
    /// PR description recovered from the message (squash: the commit body).
    pub body: String,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// Pull requests known to a clone.
#[derive(Debug, Clone, Default)]
pub struct PullIndex {
    /// PR number -> merge found on the default branch (newest wins).
    pub merges: BTreeMap<u64, MergeInfo>,
    /// PR number -> `refs/pull/N/head` target.
    pub heads: BTreeMap<u64, String>,
    /// The default branch tip the merges were searched from.
    pub default_tip: Option<String>,
}

/// Splits a commit message into (first paragraph's first line, rest after the blank line).
fn split_message(msg: &str) -> (&str, &str) {
    let msg = msg.trim_end();
    match msg.split_once('\n') {
        Some((first, rest)) => (first.trim_end(), rest.trim_start_matches(['\n', '\r'])),
        None => (msg, ""),
    }
}

impl PullIndex {
    /// Lists `refs/pull/*/head` and walks the first-parent history of `HEAD` and then of every
    /// other branch (at most `max_commits` commits in all) for GitHub merge and squash
    /// messages; a PR merged into a maintenance branch is found too.
    pub fn build(repo: &Repository, name: &str, max_commits: usize) -> Result<PullIndex> {
        let mut index = PullIndex::default();
        let gerr = |step: &str| {
            let step = step.to_owned();
            move |e| Error::git(name, step, e)
        };
        if let Ok(refs) = repo.references_glob("refs/pull/*/head") {
            for r in refs.flatten() {
                let Some(n) =
                    r.name().and_then(|n| n.strip_prefix("refs/pull/")).and_then(|n| n.strip_suffix("/head"))
                else {
                    continue;
                };
                if let (Ok(n), Ok(c)) = (n.parse::<u64>(), r.peel_to_commit()) {
                    index.heads.insert(n, c.id().to_string());
                }
            }
        }
        let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
            return Ok(index);
        };
        index.default_tip = Some(head.id().to_string());
        let mut tips = vec![head.id()];
        if let Ok(branches) = repo.references_glob("refs/heads/*") {
            let mut others: Vec<(String, Oid)> = branches
                .flatten()
                .filter_map(|r| Some((r.name()?.to_owned(), r.peel_to_commit().ok()?.id())))
                .collect();
            others.sort();
            tips.extend(others.into_iter().map(|(_, id)| id).filter(|id| *id != head.id()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut budget = max_commits;
        for tip in tips {
            budget = index.scan_branch(repo, tip, budget, &mut seen).map_err(gerr("revwalk"))?;
        }
        Ok(index)
    }

    fn scan_branch(
        &mut self,
        repo: &Repository,
        tip: Oid,
        mut budget: usize,
        seen: &mut std::collections::HashSet<Oid>,
    ) -> std::result::Result<usize, git2::Error> {
        let mut walk = repo.revwalk()?;
        walk.simplify_first_parent()?;
        walk.push(tip)?;
        for oid in walk {
            if budget == 0 {
                break;
            }
            let oid = oid?;
            if !seen.insert(oid) {
                // The rest of this first-parent chain was scanned from another branch.
                break;
            }
            budget -= 1;
            let Ok(c) = repo.find_commit(oid) else {
                continue;
            };
            let msg = String::from_utf8_lossy(c.message_bytes()).into_owned();
            let (first, rest) = split_message(&msg);
            let found = if c.parent_count() >= 2 {
                MERGE_MSG.captures(first).and_then(|m| m[1].parse::<u64>().ok()).map(|n| {
                    let (title, body) = split_message(rest);
                    (n, MergeKind::MergeCommit, title.to_owned(), body.to_owned())
                })
            } else {
                SQUASH_MSG.captures(first).and_then(|m| {
                    let n = m[2].parse::<u64>().ok()?;
                    Some((n, MergeKind::Squash, m[1].to_owned(), rest.to_owned()))
                })
            };
            if let Some((n, kind, title, body)) = found {
                // Default branch first, each walk newest first: keep the first merge found.
                self.merges.entry(n).or_insert(MergeInfo {
                    sha: oid.to_string(),
                    kind,
                    title,
                    body,
                    time: c.time().seconds(),
                });
            }
        }
        Ok(budget)
    }

    /// Whether `sha` is contained in the default branch (fast-forward or rebase without new
    /// commits).
    pub fn on_default_branch(&self, repo: &Repository, sha: &str) -> bool {
        let (Some(tip), Ok(c)) = (self.default_tip.as_deref(), Oid::from_str(sha)) else {
            return false;
        };
        let Ok(tip) = Oid::from_str(tip) else {
            return false;
        };
        tip == c || repo.graph_descendant_of(tip, c).unwrap_or(false)
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses `YYYY-MM-DDTHH:MM:SS` (then `Z` or an offset, ignored as UTC) into seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_626_847_199), "2021-07-21T05:59:59Z");
        assert_eq!(parse_rfc3339("2021-07-21T05:59:59Z"), Some(1_626_847_199));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn messages() {
        assert_eq!(
            split_message("Merge pull request #5 from a/b\n\nTitle here\n\nbody"),
            ("Merge pull request #5 from a/b", "Title here\n\nbody")
        );
        assert!(SQUASH_MSG.is_match("Fix it (#12)"));
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(secs in -2_000_000_000i64..8_000_000_000) {
            prop_assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }
    }
}
