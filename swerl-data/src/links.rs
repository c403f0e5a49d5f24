//! Issue references in PR text: the keyword convention GitHub and SWE-bench's collector use.
//!
//! After removing HTML comments (`<!-- ... -->`, where PR templates keep their instructions), a
//! link is a keyword `close`, `closes`, `closed`, `fix`, `fixes`, `fixed`, `resolve`, `resolves`
//! or `resolved` (any case), then `:` or whitespace, then one of
//! - `#N`,
//! - `OWNER/REPO#N` naming the same repository,
//! - `https://github.com/OWNER/REPO/issues/N` naming the same repository.
//!
//! References to other repositories are not links: their text is not in this repository's
//! threads (they are reported by [`find_links`] as [`IssueRef::external`]).

use std::sync::LazyLock;

use regex::Regex;

static HTML_COMMENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<!--.*?-->").expect("valid regex"));

static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\b(?::[ \t]*|[ \t]+)(?:#(?P<n>\d+)|(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<rn>\d+)|https?://(?:www\.)?github\.com/(?P<urepo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/issues/(?P<un>\d+))\b",
    )
    .expect("valid regex")
});

/// One issue reference found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRef {
    /// Repository of the issue (`owner/name`).
    pub repo: String,
    /// Issue number.
    pub number: u64,
    /// Whether it names another repository than the PR's.
    pub external: bool,
}

/// Removes HTML comments.
pub(crate) fn strip_html_comments(text: &str) -> std::borrow::Cow<'_, str> {
    HTML_COMMENT.replace_all(text, "")
}

/// All keyword references in `text`, in order of appearance, duplicates removed.
pub fn find_links(text: &str, repo: &str) -> Vec<IssueRef> {
    let text = strip_html_comments(text);
    let mut out: Vec<IssueRef> = Vec::new();
    for caps in LINK.captures_iter(&text) {
        let (target, num) = if let Some(n) = caps.name("n") {
            (repo.to_owned(), n.as_str())
        } else if let (Some(r), Some(n)) = (caps.name("repo"), caps.name("rn")) {
            (r.as_str().to_owned(), n.as_str())
        } else if let (Some(r), Some(n)) = (caps.name("urepo"), caps.name("un")) {
            (r.as_str().to_owned(), n.as_str())
        } else {
            continue;
        };
        let Ok(number) = num.parse::<u64>() else {
            continue;
        };
        let external = !target.eq_ignore_ascii_case(repo);
        let r = IssueRef { repo: if external { target } else { repo.to_owned() }, number, external };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Numbers of the same-repository issues linked from any of `texts` (PR title, body, commit
/// messages), in order of first appearance, without duplicates and without `self_number` (a PR
/// that "fixes" itself).
pub fn linked_issues<'a>(texts: impl IntoIterator<Item = &'a str>, repo: &str, self_number: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for t in texts {
        for r in find_links(t, repo) {
            if !r.external && r.number != self_number && !out.contains(&r.number) {
                out.push(r.number);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keyword_forms() {
        let t = "Fixes #12. closes: #3 and Resolved o/r#4, fixed https://github.com/o/r/issues/5 \
                 fix https://github.com/x/y/issues/6 ref #7 prefix#8 <!-- fixes #9 -->";
        assert_eq!(linked_issues([t], "o/r", 0), vec![12, 3, 4, 5]);
        let all = find_links(t, "o/r");
        assert!(all.iter().any(|r| r.external && r.repo == "x/y" && r.number == 6));
    }

    #[test]
    fn not_links() {
        assert!(
            linked_issues(["prefixes #1", "fix#2", "fixes 3", "fixes #x", "suffix #4"], "o/r", 0).is_empty()
        );
        assert!(linked_issues(["fixes https://github.com/o/r/pull/3"], "o/r", 0).is_empty());
        assert_eq!(linked_issues(["Fix #7", "FIXES #7", "fixes #8"], "o/r", 8), vec![7]);
        assert_eq!(linked_issues(["closes O/R#2"], "o/r", 0), vec![2]);
        assert_eq!(linked_issues(["<!--\nfixes #1\n-->fixes #2"], "o/r", 0), vec![2]);
    }

    proptest! {
        #[test]
        fn text_without_keywords_has_no_links(s in "[abd-eg-qs-z0-9 #/:.]{0,80}") {
            prop_assert!(linked_issues([s.as_str()], "o/r", 0).is_empty());
        }

        #[test]
        fn inserted_link_is_found(pre in "[a-z ]{0,20}", n in 1u64..100000, post in "[a-z ]{0,20}") {
            let text = format!("{pre} fixes #{n} {post}");
            prop_assert_eq!(linked_issues([text.as_str()], "o/r", 0), vec![n]);
        }
    }
}
