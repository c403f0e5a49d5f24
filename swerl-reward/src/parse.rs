//! Reading a completion: the four tags, the thought, the answer and its SEARCH/REPLACE blocks.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::FormatError;
use crate::pystr;

/// The opening tag of the reasoning section.
pub const THINK_START: &str = "<think>";
/// The closing tag of the reasoning section.
pub const THINK_END: &str = "</think>";
/// The opening tag of the answer section.
pub const SOLUTION_START: &str = "<solution>";
/// The closing tag of the answer section.
pub const SOLUTION_END: &str = "</solution>";

/// The reference's edit-block pattern, verbatim. Rust's `regex` has the same leftmost-first
/// semantics as Python's `re` here, and `.` excludes only `\n` in both.
pub const EDIT_BLOCK_PATTERN: &str =
    r"```.*?\n### (.*)\n<<<<<<< SEARCH\n([\s\S]*?)\n=======\n([\s\S]*?)\n>>>>>>> REPLACE\n```";

static EDIT_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EDIT_BLOCK_PATTERN).expect("the edit-block pattern is valid"));

/// One SEARCH/REPLACE block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Edit {
    /// Text to find (without the leading newline the reward adds to anchor it at a line start).
    pub search: String,
    /// Text to put in its place.
    pub replace: String,
}

/// The blocks editing one file, in the order they appear.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEdits {
    /// The path after `### `, exactly as written (a trailing space is part of it).
    pub path: String,
    /// The blocks, in order.
    pub edits: Vec<Edit>,
}

/// A well-formatted completion, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedOutput {
    /// The reasoning: text after `<think>` up to `</think>`, stripped; never empty.
    pub thought: String,
    /// The answer: text after `<solution>` up to `</solution>`, stripped.
    pub answer: String,
    /// The edit blocks grouped by path, paths in order of first appearance; never empty.
    pub files: Vec<FileEdits>,
}

/// Borrowed form of [`ParsedOutput`], used on the scoring hot path.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) thought: &'a str,
    pub(crate) answer: &'a str,
    pub(crate) files: Vec<(&'a str, Vec<(&'a str, &'a str)>)>,
}

impl Parsed<'_> {
    pub(crate) fn to_owned(&self) -> ParsedOutput {
        ParsedOutput {
            thought: self.thought.to_owned(),
            answer: self.answer.to_owned(),
            files: self
                .files
                .iter()
                .map(|(path, edits)| FileEdits {
                    path: (*path).to_owned(),
                    edits: edits
                        .iter()
                        .map(|(s, r)| Edit { search: (*s).to_owned(), replace: (*r).to_owned() })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Splits a completion into thought, answer and edit blocks, or says why it is badly formatted.
///
/// ```
/// let out = "<think>rename</think><solution>\n```python\n### a.py\n<<<<<<< SEARCH\nx = 1\n=======\ny = 1\n>>>>>>> REPLACE\n```\n</solution>";
/// let parsed = swerl_reward::parse_output(out).unwrap();
/// assert_eq!(parsed.thought, "rename");
/// assert_eq!(parsed.files[0].path, "a.py");
/// assert_eq!(parsed.files[0].edits[0].replace, "y = 1");
/// ```
pub fn parse_output(output: &str) -> Result<ParsedOutput, FormatError> {
    parse(output).map(|p| p.to_owned())
}

pub(crate) fn parse(output: &str) -> Result<Parsed<'_>, FormatError> {
    let (thought, answer) = thought_and_answer(output)?;
    let files = group_blocks(answer);
    if files.is_empty() {
        return Err(FormatError::NoEdits);
    }
    Ok(Parsed { thought, answer, files })
}

/// The reference's `extract_thought_solution`: each tag exactly once (order not checked), then
/// `output.split(START)[1].split(END)[0].strip()` for both sections.
fn thought_and_answer(output: &str) -> Result<(&str, &str), FormatError> {
    for tag in [THINK_START, THINK_END, SOLUTION_START, SOLUTION_END] {
        let count = pystr::count(output, tag);
        if count != 1 {
            return Err(FormatError::TagCount { tag, count });
        }
    }
    let section = |start: &str, end: &str| {
        let after = pystr::second_field(output, start).expect("the tag occurs once");
        pystr::strip(pystr::first_field(after, end))
    };
    let thought = section(THINK_START, THINK_END);
    let answer = section(SOLUTION_START, SOLUTION_END);
    if thought.is_empty() {
        return Err(FormatError::EmptyThought);
    }
    Ok((thought, answer))
}

/// All edit blocks of `answer`, grouped by path in order of first appearance.
fn group_blocks(answer: &str) -> Vec<(&str, Vec<(&str, &str)>)> {
    let mut files: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
    for caps in EDIT_BLOCK.captures_iter(answer) {
        let group = |i| caps.get(i).map_or("", |m| m.as_str());
        let (path, search, replace) = (group(1), group(2), group(3));
        match files.iter_mut().find(|(p, _)| *p == path) {
            Some((_, edits)) => edits.push((search, replace)),
            None => files.push((path, vec![(search, replace)])),
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "```python\n### a.py\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n```";

    #[test]
    fn tags_in_reversed_order_are_accepted() {
        let out = format!("<solution>\n{BLOCK}\n</solution>\n</think>x<think> thought ");
        let parsed = parse(&out).unwrap();
        // split("<think>")[1] runs to the end: "</think>" is before "<think>".
        assert_eq!(parsed.thought, "thought");
        assert_eq!(parsed.files.len(), 1);
    }

    #[test]
    fn tag_counts_are_checked_in_order() {
        assert!(matches!(parse("no tags"), Err(FormatError::TagCount { tag: THINK_START, count: 0 })));
        let out = "<think>a</think><think></think><solution></solution>";
        assert!(matches!(parse(out), Err(FormatError::TagCount { tag: "<think>", count: 2 })));
        let out = "<think> \u{1c} </think><solution></solution>";
        assert!(matches!(parse(out), Err(FormatError::EmptyThought)));
        let out = "<think>x</think><solution>nothing</solution>";
        assert!(matches!(parse(out), Err(FormatError::NoEdits)));
    }

    #[test]
    fn blocks_are_grouped_by_first_appearance() {
        let b = |p: &str, s: &str| {
            format!("```\n### {p}\n<<<<<<< SEARCH\n{s}\n=======\nR\n>>>>>>> REPLACE\n```\n")
        };
        let answer = [b("b.py", "1"), b("a.py ", "2"), b("b.py", "3")].concat();
        let files = group_blocks(&answer);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "b.py");
        assert_eq!(files[0].1, [("1", "R"), ("3", "R")]);
        assert_eq!(files[1].0, "a.py ", "trailing space is part of the path");
    }

    #[test]
    fn crlf_matches_nothing_and_empty_search_needs_blank_line() {
        assert!(group_blocks(&BLOCK.replace('\n', "\r\n")).is_empty());
        let empty = "```\n### a\n<<<<<<< SEARCH\n\n=======\nx\n>>>>>>> REPLACE\n```";
        assert_eq!(group_blocks(empty)[0].1, [("", "x")]);
        let no_blank = "```\n### a\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n```";
        assert!(group_blocks(no_blank).is_empty());
    }
}
