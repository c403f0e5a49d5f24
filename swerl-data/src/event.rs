//! Parsing one GH Archive line into a [`Thread`] fragment.
//!
//! Only the event types that describe issues and pull requests are parsed in full. Other lines
//! are classified from the `{"id":"…","type":"…"` prefix that every GH Archive line since 2015
//! starts with, and checked structurally (a JSON object on one line); set
//! [`ScanConfig::validate_all`](crate::ScanConfig::validate_all) to fully validate them too.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::thread::{Comment, CommentKind, EventStamp, Issue, PullRequest, Thread};

/// The event types that feed threads.
pub const THREAD_EVENT_TYPES: [&str; 5] = [
    "PullRequestEvent",
    "IssuesEvent",
    "IssueCommentEvent",
    "PullRequestReviewEvent",
    "PullRequestReviewCommentEvent",
];

/// What a line turned out to be.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A fragment of a thread; `trimmed` when it is a trimmed (October 2025+) PR payload.
    Thread { kind: String, thread: Box<Thread>, trimmed: bool },
    /// A well-formed event of a type that does not feed threads.
    Other { kind: String },
    /// An event in the 2011-2014 Timeline schema.
    Legacy,
}

/// A malformed line: the reason.
pub(crate) type LineError = String;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    repo: Option<RepoRef<'a>>,
    #[serde(default)]
    repository: Option<IgnoredAny>,
    #[serde(default, borrow)]
    created_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RepoRef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct User<'a> {
    #[serde(default, borrow)]
    login: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Label<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct GitRef<'a> {
    #[serde(default, borrow, rename = "ref")]
    branch: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    sha: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    repo: Option<RepoRef<'a>>,
}

#[derive(Deserialize)]
struct PrPayload<'a> {
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(default)]
    number: Option<u64>,
    #[serde(borrow)]
    pull_request: PrObject<'a>,
}

#[derive(Deserialize)]
struct PrObject<'a> {
    #[serde(default)]
    number: Option<u64>,
    #[serde(default, borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<User<'a>>,
    #[serde(default, borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default, borrow)]
    base: Option<GitRef<'a>>,
    #[serde(default, borrow)]
    head: Option<GitRef<'a>>,
    #[serde(default, borrow)]
    merge_commit_sha: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    created_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    merged_at: Option<Cow<'a, str>>,
    #[serde(default)]
    commits: Option<u64>,
    #[serde(default)]
    additions: Option<u64>,
    #[serde(default)]
    deletions: Option<u64>,
    #[serde(default)]
    changed_files: Option<u64>,
    #[serde(default, borrow)]
    labels: Option<Vec<Label<'a>>>,
}

#[derive(Deserialize)]
struct IssueObject<'a> {
    number: u64,
    #[serde(default, borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<User<'a>>,
    #[serde(default, borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    created_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct IssuesPayload<'a> {
    #[serde(borrow)]
    issue: IssueObject<'a>,
}

#[derive(Deserialize)]
struct CommentObject<'a> {
    id: u64,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<User<'a>>,
    #[serde(default, borrow)]
    created_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    submitted_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    path: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IssueCommentPayload<'a> {
    #[serde(borrow)]
    issue: IssueObject<'a>,
    #[serde(borrow)]
    comment: CommentObject<'a>,
}

#[derive(Deserialize)]
struct ReviewPayload<'a> {
    #[serde(borrow)]
    pull_request: PrObject<'a>,
    #[serde(default, borrow)]
    review: Option<CommentObject<'a>>,
    #[serde(default, borrow)]
    comment: Option<CommentObject<'a>>,
}

fn s(v: Option<Cow<'_, str>>) -> String {
    v.map(Cow::into_owned).unwrap_or_default()
}

fn labels(v: Option<Vec<Label<'_>>>) -> Vec<String> {
    let mut out: Vec<String> = v.unwrap_or_default().into_iter().map(|l| l.name.into_owned()).collect();
    out.sort();
    out.dedup();
    out
}

/// Reads the event type from the `{"id":"digits","type":"T"` prefix, if the line has it.
pub(crate) fn fast_type(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"{\"id\":\"")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b"\",\"type\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

/// Parses one line. `Err` carries the reason a line is malformed.
pub(crate) fn parse_line(line: &[u8], validate_all: bool) -> Result<Parsed, LineError> {
    if let Some(kind) = fast_type(line)
        && !THREAD_EVENT_TYPES.iter().any(|t| t.as_bytes() == kind)
    {
        if validate_all {
            serde_json::from_slice::<IgnoredAny>(line).map_err(|e| e.to_string())?;
        } else if line.last() != Some(&b'}') {
            return Err("line is not a complete JSON object".into());
        }
        return Ok(Parsed::Other { kind: String::from_utf8_lossy(kind).into_owned() });
    }
    let env: Envelope<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let Some(kind) = env.kind else {
        return Err("event has no `type`".into());
    };
    let Some(repo) = env.repo else {
        if env.repository.is_some() {
            return Ok(Parsed::Legacy);
        }
        return Err(format!("{kind} event has no `repo`"));
    };
    if !THREAD_EVENT_TYPES.contains(&kind.as_ref()) {
        return Ok(Parsed::Other { kind: kind.into_owned() });
    }
    let Some(payload) = env.payload else {
        return Err(format!("{kind} event has no `payload`"));
    };
    let stamp = EventStamp {
        at: s(env.created_at),
        id: env.id.as_deref().and_then(|id| id.parse().ok()).unwrap_or(0),
    };
    let repo = repo.name.into_owned();
    let json = payload.get();
    let err = |e: serde_json::Error| format!("{kind} payload: {e}");
    let (thread, trimmed) = match kind.as_ref() {
        "PullRequestEvent" => {
            let p: PrPayload<'_> = serde_json::from_str(json).map_err(err)?;
            let closed = p.action.as_deref() == Some("closed");
            let number = p.number.or(p.pull_request.number).ok_or("PR event without number")?;
            let (pr, trimmed) = pr_fields(p.pull_request, stamp, closed);
            let mut t = Thread::new(repo, number);
            t.is_pull_request = true;
            t.pr = Some(pr);
            (t, trimmed)
        }
        "IssuesEvent" => {
            let p: IssuesPayload<'_> = serde_json::from_str(json).map_err(err)?;
            (issue_thread(repo, p.issue, stamp), false)
        }
        "IssueCommentEvent" => {
            let p: IssueCommentPayload<'_> = serde_json::from_str(json).map_err(err)?;
            let mut t = issue_thread(repo, p.issue, stamp);
            t.comments.push(comment(p.comment, CommentKind::Conversation));
            (t, false)
        }
        _ => {
            // PullRequestReviewEvent and PullRequestReviewCommentEvent.
            let p: ReviewPayload<'_> = serde_json::from_str(json).map_err(err)?;
            let number = p.pull_request.number.ok_or("review event without PR number")?;
            let (mut pr, _) = pr_fields(p.pull_request, stamp, false);
            // Review payloads lack `merged`: a PR seen only through reviews has an unknown merge
            // state, to be completed from git like a trimmed one (merge evidence is sticky, so
            // a later review never un-merges a PR).
            pr.trimmed = true;
            let mut t = Thread::new(repo, number);
            t.is_pull_request = true;
            t.pr = Some(pr);
            if let Some(r) = p.review {
                t.comments.push(comment(r, CommentKind::Review));
            }
            if let Some(c) = p.comment {
                t.comments.push(comment(c, CommentKind::ReviewComment));
            }
            (t, false)
        }
    };
    let mut thread = thread;
    thread.events = 1;
    Ok(Parsed::Thread { kind: kind.into_owned(), thread: Box::new(thread), trimmed })
}

fn pr_fields(p: PrObject<'_>, stamp: EventStamp, closed: bool) -> (PullRequest, bool) {
    // Trimmed payloads (October 2025+) keep only url, id, number, head and base.
    let trimmed = p.title.is_none() && p.state.is_none() && p.merged.is_none();
    let base = p.base.unwrap_or_default();
    let head = p.head.unwrap_or_default();
    let pr = PullRequest {
        title: s(p.title),
        body: s(p.body),
        author: p.user.map(|u| u.login.into_owned()).unwrap_or_default(),
        merged: closed && p.merged == Some(true),
        closed: closed || p.state.as_deref() == Some("closed"),
        base_ref: s(base.branch),
        base_sha: s(base.sha),
        head_ref: s(head.branch),
        head_sha: s(head.sha),
        head_repo: head.repo.map(|r| r.name.into_owned()).unwrap_or_default(),
        merge_commit_sha: if p.merged == Some(true) { s(p.merge_commit_sha) } else { String::new() },
        created_at: s(p.created_at),
        merged_at: s(p.merged_at),
        commits: p.commits,
        additions: p.additions,
        deletions: p.deletions,
        changed_files: p.changed_files,
        labels: labels(p.labels),
        trimmed,
        last_event: stamp,
    };
    (pr, trimmed)
}

fn issue_thread(repo: String, i: IssueObject<'_>, stamp: EventStamp) -> Thread {
    let mut t = Thread::new(repo, i.number);
    t.is_pull_request = i.pull_request.is_some();
    t.issue = Some(Issue {
        title: s(i.title),
        body: s(i.body),
        author: i.user.map(|u| u.login.into_owned()).unwrap_or_default(),
        labels: labels(i.labels),
        state: s(i.state),
        created_at: s(i.created_at),
        last_event: stamp,
    });
    t
}

fn comment(c: CommentObject<'_>, kind: CommentKind) -> Comment {
    Comment {
        id: c.id,
        kind,
        author: c.user.map(|u| u.login.into_owned()).unwrap_or_default(),
        body: s(c.body),
        created_at: s(c.created_at.or(c.submitted_at)),
        path: c.path.map(Cow::into_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_type_reads_prefix() {
        assert_eq!(fast_type(br#"{"id":"123","type":"PushEvent","x":1}"#), Some(&b"PushEvent"[..]));
        assert_eq!(fast_type(br#"{"type":"PushEvent"}"#), None);
    }

    #[test]
    fn trimmed_pr_event_is_detected() {
        let line = br#"{"id":"5","type":"PullRequestEvent","repo":{"id":1,"name":"o/r"},"created_at":"2025-11-01T00:00:00Z","payload":{"action":"closed","number":7,"pull_request":{"url":"u","id":9,"number":7,"head":{"ref":"f","sha":"aa","repo":{"name":"x/r"}},"base":{"ref":"main","sha":"bb","repo":{"name":"o/r"}}}}}"#;
        let Ok(Parsed::Thread { thread, trimmed, .. }) = parse_line(line, false) else {
            panic!("not parsed")
        };
        assert!(trimmed);
        let pr = thread.pr.expect("pr");
        assert!(!pr.merged && pr.trimmed);
        assert_eq!((pr.base_sha.as_str(), pr.head_sha.as_str()), ("bb", "aa"));
    }

    #[test]
    fn legacy_and_malformed_lines() {
        let legacy = br#"{"created_at":"2013-01-01T00:00:00-08:00","payload":{},"type":"PushEvent","actor":"me","repository":{"name":"r"}}"#;
        assert!(matches!(parse_line(legacy, false), Ok(Parsed::Legacy)));
        assert!(parse_line(br#"{"id":"1","type":"PushEvent","payload":{"#, false).is_err());
        assert!(parse_line(b"not json", false).is_err());
        assert!(parse_line(br#"{"id":"1","type":"PushEvent","payload":{]}"#, true).is_err());
    }
}
