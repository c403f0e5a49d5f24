//! Co-change history: which files changed together with given files in recent commits.

use std::collections::{BTreeMap, HashSet};

use git2::{Oid, Repository};

/// Walks at most `commits` first-parent commits ending at `base` and counts, for every path,
/// the commits in which it changed together with one of `changed` (paths in `changed`
/// excluded). Git errors end the walk early: this is a best-effort signal.
pub fn co_changes(
    repo: &Repository,
    base: &str,
    changed: &[String],
    commits: usize,
) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    if commits == 0 {
        return counts;
    }
    let changed: HashSet<&str> = changed.iter().map(String::as_str).collect();
    let Ok(oid) = Oid::from_str(base) else {
        return counts;
    };
    let Ok(mut walk) = repo.revwalk() else {
        return counts;
    };
    if walk.push(oid).is_err() || walk.simplify_first_parent().is_err() {
        return counts;
    }
    for id in walk.take(commits).flatten() {
        let Ok(c) = repo.find_commit(id) else { break };
        let (Ok(tree), Ok(parent_tree)) = (c.tree(), c.parent(0).and_then(|p| p.tree())) else {
            continue;
        };
        let Ok(diff) = repo.diff_tree_to_tree(Some(&parent_tree), Some(&tree), None) else {
            continue;
        };
        let paths: Vec<String> = diff
            .deltas()
            .filter_map(|d| {
                d.new_file().path().or(d.old_file().path()).map(|p| p.to_string_lossy().into_owned())
            })
            .collect();
        if paths.len() > 50 || !paths.iter().any(|p| changed.contains(p.as_str())) {
            continue;
        }
        for p in paths.into_iter().filter(|p| !changed.contains(p.as_str())) {
            *counts.entry(p).or_insert(0) += 1;
        }
    }
    counts
}
