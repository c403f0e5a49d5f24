//! The aggregate of everything the archives say about one issue or pull request of a repository.
//!
//! GitHub numbers issues and pull requests in one sequence per repository, so `(repo, number)` is
//! the key of a [`Thread`]. Fragments of a thread found in different hour files (or shards) are
//! combined with [`Thread::absorb`], which is commutative and associative: the merged result does
//! not depend on the order in which files or shards were processed.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The key of a thread: repository (`owner/name`) and issue/PR number.
pub type ThreadKey = (String, u64);

/// Everything known about one issue or pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Repository as `owner/name`.
    pub repo: String,
    /// Issue or pull-request number.
    pub number: u64,
    /// Whether any event says this number is a pull request.
    #[serde(default)]
    pub is_pull_request: bool,
    /// Pull-request data (from PR, review and review-comment events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<PullRequest>,
    /// The issue view (title, body, labels), from issue and issue-comment events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<Issue>,
    /// Conversation comments, reviews and review comments, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    /// Number of archive events folded into this thread.
    #[serde(default)]
    pub events: u64,
}

/// Pull-request fields. Empty strings mean "not seen".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Description.
    #[serde(default)]
    pub body: String,
    /// Login of the author.
    #[serde(default)]
    pub author: String,
    /// Whether the PR was merged (a `closed` event with `merged: true`, or git evidence).
    #[serde(default)]
    pub merged: bool,
    /// Whether the latest event left the PR closed.
    #[serde(default)]
    pub closed: bool,
    /// Base branch name.
    #[serde(default)]
    pub base_ref: String,
    /// Base commit sha as reported by the event.
    #[serde(default)]
    pub base_sha: String,
    /// Head branch name.
    #[serde(default)]
    pub head_ref: String,
    /// Head commit sha.
    #[serde(default)]
    pub head_sha: String,
    /// Repository of the head branch (a fork), when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head_repo: String,
    /// Merge commit sha (the merge, squash or last rebased commit on the base branch).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub merge_commit_sha: String,
    /// Creation time (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    /// Merge time (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub merged_at: String,
    /// Number of commits, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    /// Lines added, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additions: Option<u64>,
    /// Lines deleted, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
    /// Files changed, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_files: Option<u64>,
    /// Label names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// True while every PullRequestEvent seen was trimmed (October 2025+ payloads): title, body
    /// and merge state must come from git.
    #[serde(default)]
    pub trimmed: bool,
    /// Time and id of the latest event folded in (orders updates).
    #[serde(default)]
    pub last_event: EventStamp,
}

/// Issue fields (also the issue view of a PR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Login of the author.
    #[serde(default)]
    pub author: String,
    /// Label names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// `open` or `closed` after the latest event.
    #[serde(default)]
    pub state: String,
    /// Creation time (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    /// Time and id of the latest event folded in.
    #[serde(default)]
    pub last_event: EventStamp,
}

/// What kind of comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    /// Conversation comment on an issue or PR (IssueCommentEvent).
    Conversation,
    /// A PR review (PullRequestReviewEvent).
    Review,
    /// An inline review comment on a diff line (PullRequestReviewCommentEvent).
    ReviewComment,
}

/// One comment, review or review comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// GitHub id of the comment or review.
    pub id: u64,
    /// Kind.
    pub kind: CommentKind,
    /// Login of the author.
    #[serde(default)]
    pub author: String,
    /// Text.
    #[serde(default)]
    pub body: String,
    /// Creation (or review submission) time, RFC 3339.
    #[serde(default)]
    pub created_at: String,
    /// File path of an inline review comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Orders updates of the same record: event time (RFC 3339 compares lexically), then event id.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventStamp {
    /// Event `created_at`.
    #[serde(default)]
    pub at: String,
    /// Event id.
    #[serde(default)]
    pub id: u64,
}

/// Takes the non-empty value that comes first in the total order, so that the choice does not
/// depend on which fragment is `self` (used for write-once fields such as creation time).
fn pick_min(a: &mut String, b: String) {
    if a.is_empty() || (!b.is_empty() && b < *a) {
        *a = b;
    }
}

impl PullRequest {
    /// Folds `other` into `self`; the fragment with the later [`EventStamp`] wins for mutable
    /// fields, empty values never overwrite known ones, and merge evidence is sticky.
    pub fn absorb(&mut self, other: PullRequest) {
        let (mut newer, older) = match other.last_event.cmp(&self.last_event) {
            Ordering::Less => (std::mem::take(self), other),
            _ => (other, std::mem::take(self)),
        };
        // `newer` keeps its values; holes are filled from `older`.
        let o = older;
        for (n, o) in [
            (&mut newer.title, o.title),
            (&mut newer.body, o.body),
            (&mut newer.author, o.author),
            (&mut newer.base_ref, o.base_ref),
            (&mut newer.base_sha, o.base_sha),
            (&mut newer.head_ref, o.head_ref),
            (&mut newer.head_sha, o.head_sha),
            (&mut newer.head_repo, o.head_repo),
            (&mut newer.merge_commit_sha, o.merge_commit_sha),
            (&mut newer.merged_at, o.merged_at),
        ] {
            if n.is_empty() {
                *n = o;
            }
        }
        pick_min(&mut newer.created_at, o.created_at);
        // A merged PR's merge commit is authoritative.
        if o.merged && !newer.merged {
            newer.merged = true;
        }
        newer.commits = newer.commits.or(o.commits);
        newer.additions = newer.additions.or(o.additions);
        newer.deletions = newer.deletions.or(o.deletions);
        newer.changed_files = newer.changed_files.or(o.changed_files);
        if newer.labels.is_empty() {
            newer.labels = o.labels;
        }
        newer.trimmed = newer.trimmed && o.trimmed;
        *self = newer;
    }
}

impl Issue {
    /// Folds `other` into `self` (later event wins, empty values never overwrite).
    pub fn absorb(&mut self, other: Issue) {
        let (mut newer, older) = match other.last_event.cmp(&self.last_event) {
            Ordering::Less => (std::mem::take(self), other),
            _ => (other, std::mem::take(self)),
        };
        let o = older;
        for (n, o) in [
            (&mut newer.title, o.title),
            (&mut newer.body, o.body),
            (&mut newer.author, o.author),
            (&mut newer.state, o.state),
        ] {
            if n.is_empty() {
                *n = o;
            }
        }
        pick_min(&mut newer.created_at, o.created_at);
        if newer.labels.is_empty() {
            newer.labels = o.labels;
        }
        *self = newer;
    }
}

impl Thread {
    /// An empty thread for `(repo, number)`.
    pub fn new(repo: impl Into<String>, number: u64) -> Self {
        Self { repo: repo.into(), number, ..Self::default() }
    }

    /// The thread's key.
    pub fn key(&self) -> ThreadKey {
        (self.repo.clone(), self.number)
    }

    /// Compares keys without cloning.
    pub fn cmp_key(&self, other: &Thread) -> Ordering {
        (self.repo.as_str(), self.number).cmp(&(other.repo.as_str(), other.number))
    }

    /// Folds another fragment of the same thread into this one.
    pub fn absorb(&mut self, other: Thread) {
        debug_assert_eq!((self.repo.as_str(), self.number), (other.repo.as_str(), other.number));
        self.is_pull_request |= other.is_pull_request;
        self.events += other.events;
        match (&mut self.pr, other.pr) {
            (Some(a), Some(b)) => a.absorb(b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
        match (&mut self.issue, other.issue) {
            (Some(a), Some(b)) => a.absorb(b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
        if !other.comments.is_empty() {
            self.comments.extend(other.comments);
            normalize_comments(&mut self.comments);
        }
    }

    /// Title of the PR or issue, whichever is known.
    pub fn title(&self) -> &str {
        match (&self.pr, &self.issue) {
            (Some(pr), _) if !pr.title.is_empty() => &pr.title,
            (_, Some(issue)) => &issue.title,
            _ => "",
        }
    }

    /// Body of the PR or issue, whichever is known.
    pub fn body(&self) -> &str {
        match (&self.pr, &self.issue) {
            (Some(pr), _) if !pr.body.is_empty() => &pr.body,
            (_, Some(issue)) => &issue.body,
            _ => "",
        }
    }

    /// Labels of the PR or issue.
    pub fn labels(&self) -> &[String] {
        match (&self.pr, &self.issue) {
            (Some(pr), _) if !pr.labels.is_empty() => &pr.labels,
            (_, Some(issue)) => &issue.labels,
            _ => &[],
        }
    }
}

/// Sorts comments by time, kind and id and removes duplicates (the same comment seen in
/// several events, e.g. created then edited: the copy that sorts last by body is kept so the
/// result is order-independent).
pub(crate) fn normalize_comments(comments: &mut Vec<Comment>) {
    comments.sort_by(|a, b| {
        (a.created_at.as_str(), a.kind, a.id, a.body.as_str()).cmp(&(
            b.created_at.as_str(),
            b.kind,
            b.id,
            b.body.as_str(),
        ))
    });
    let mut out: Vec<Comment> = Vec::with_capacity(comments.len());
    for c in comments.drain(..) {
        match out.last_mut() {
            Some(last) if last.kind == c.kind && last.id == c.id => *last = c,
            _ => out.push(c),
        }
    }
    *comments = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(title: &str, at: &str, id: u64, merged: bool) -> PullRequest {
        PullRequest {
            title: title.into(),
            merged,
            last_event: EventStamp { at: at.into(), id },
            created_at: "2021-01-01T00:00:00Z".into(),
            ..PullRequest::default()
        }
    }

    #[test]
    fn later_event_wins_but_empty_never_overwrites() {
        let mut a = pr("old", "2021-01-01T00:00:00Z", 1, false);
        let mut b = pr("", "2021-01-02T00:00:00Z", 2, true);
        b.trimmed = true;
        a.absorb(b);
        assert_eq!(a.title, "old");
        assert!(a.merged);
        assert!(!a.trimmed);
    }

    #[test]
    fn absorb_is_order_independent() {
        let mk = |n: usize| {
            let mut t = Thread::new("o/r", 1);
            t.events = 1;
            t.pr = Some(pr(&format!("t{n}"), &format!("2021-01-0{n}T00:00:00Z"), n as u64, n == 2));
            t.comments.push(Comment {
                id: n as u64,
                kind: CommentKind::Conversation,
                author: "a".into(),
                body: format!("c{n}"),
                created_at: format!("2021-01-0{n}T00:00:00Z"),
                path: None,
            });
            t
        };
        let mut x = mk(1);
        x.absorb(mk(2));
        x.absorb(mk(3));
        let mut y = mk(3);
        let mut z = mk(2);
        z.absorb(mk(1));
        y.absorb(z);
        assert_eq!(x, y);
        assert_eq!(x.pr.as_ref().map(|p| p.title.as_str()), Some("t3"));
        assert!(x.pr.as_ref().is_some_and(|p| p.merged));
        assert_eq!(x.comments.len(), 3);
    }
}
