//! Reading a completion: the four tags, the thought, the answer and its SEARCH/REPLACE blocks.

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

/// The reference's edit-block pattern, verbatim (Python `re` syntax; Rust's `regex` agrees).
///
/// Blocks are found by a linear-time matcher with the pattern's exact
/// leftmost-first semantics (checked against the `regex` crate in the tests): the capture-group
/// engines of regex libraries are several times slower on long completions.
pub const EDIT_BLOCK_PATTERN: &str =
    r"```.*?\n### (.*)\n<<<<<<< SEARCH\n([\s\S]*?)\n=======\n([\s\S]*?)\n>>>>>>> REPLACE\n```";

const FENCE: &[u8] = b"```";
const SEARCH_LINE: &[u8] = b"\n<<<<<<< SEARCH\n";
const DIVIDER: &[u8] = b"\n=======\n";
const REPLACE_END: &[u8] = b"\n>>>>>>> REPLACE\n```";

/// Memoised "first occurrence of a needle at or after `from`", for queries whose `from` mostly
/// increases: each byte of the haystack is scanned about once.
struct NextOccurrence<'h> {
    haystack: &'h [u8],
    finder: memchr::memmem::Finder<'static>,
    /// The last query and its answer (`None`: no occurrence at or after it).
    last: Option<(usize, Option<usize>)>,
}

impl<'h> NextOccurrence<'h> {
    fn new(haystack: &'h [u8], needle: &'static [u8]) -> Self {
        NextOccurrence { haystack, finder: memchr::memmem::Finder::new(needle), last: None }
    }

    fn at_or_after(&mut self, from: usize) -> Option<usize> {
        if let Some((query, answer)) = self.last
            && from >= query
            && answer.is_none_or(|pos| from <= pos)
        {
            return answer;
        }
        let answer = self.haystack.get(from..).and_then(|h| self.finder.find(h)).map(|p| p + from);
        self.last = Some((from, answer));
        answer
    }
}

/// All non-overlapping matches of [`EDIT_BLOCK_PATTERN`] in `text`, left to right, as
/// `(path, search, replace)` (Python's `re.findall`).
pub(crate) fn edit_blocks(text: &str) -> Vec<(&str, &str, &str)> {
    let bytes = text.as_bytes();
    let mut finders = Finders {
        fence: NextOccurrence::new(bytes, FENCE),
        fence_line_end: NextOccurrence::new(bytes, b"\n"),
        path_line_end: NextOccurrence::new(bytes, b"\n"),
        divider: NextOccurrence::new(bytes, DIVIDER),
        end: NextOccurrence::new(bytes, REPLACE_END),
    };
    let mut blocks = Vec::new();
    let mut from = 0;
    // Candidate starts are the fences in order, overlapping ones included ("````" holds two).
    while let Some(start) = finders.fence.at_or_after(from) {
        match block_at(bytes, start, &mut finders) {
            Some(Block { path, search, replace, end }) => {
                blocks.push((&text[path.0..path.1], &text[search.0..search.1], &text[replace.0..replace.1]));
                from = end;
            }
            None => from = start + 1,
        }
    }
    blocks
}

/// One memoised search per kind of query, so each sees increasing starting points.
struct Finders<'h> {
    fence: NextOccurrence<'h>,
    fence_line_end: NextOccurrence<'h>,
    path_line_end: NextOccurrence<'h>,
    divider: NextOccurrence<'h>,
    end: NextOccurrence<'h>,
}

struct Block {
    path: (usize, usize),
    search: (usize, usize),
    replace: (usize, usize),
    end: usize,
}

/// The match starting at `start` (where a fence is), if any.
fn block_at(bytes: &[u8], start: usize, f: &mut Finders<'_>) -> Option<Block> {
    // ```.*?\n### : `.` stops at the first newline, which must start "\n### ".
    let nl1 = f.fence_line_end.at_or_after(start + 3)?;
    let path_start = nl1 + 5;
    if !bytes[nl1..].starts_with(b"\n### ") {
        return None;
    }
    // (.*)\n<<<<<<< SEARCH\n : the path is the rest of its line.
    let nl2 = f.path_line_end.at_or_after(path_start)?;
    if !bytes[nl2..].starts_with(SEARCH_LINE) {
        return None;
    }
    let search_start = nl2 + SEARCH_LINE.len();
    // ([\s\S]*?)\n=======\n : the first divider; if no block end follows it, none follows a
    // later divider either.
    let divider = f.divider.at_or_after(search_start)?;
    let replace_start = divider + DIVIDER.len();
    let end = f.end.at_or_after(replace_start)?;
    Some(Block {
        path: (path_start, nl2),
        search: (search_start, divider),
        replace: (replace_start, end),
        end: end + REPLACE_END.len(),
    })
}

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
    for (path, search, replace) in edit_blocks(answer) {
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

    /// The `regex` crate's reading of the pattern, as the reference.
    fn regex_blocks(text: &str) -> Vec<(&str, &str, &str)> {
        let re = regex::Regex::new(EDIT_BLOCK_PATTERN).unwrap();
        re.captures_iter(text)
            .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str(), c.get(3).unwrap().as_str()))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]
        #[test]
        fn edit_blocks_agree_with_the_regex(pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just("```"), proptest::prelude::Just("````python"), proptest::prelude::Just("\n"),
                proptest::prelude::Just("### "), proptest::prelude::Just("<<<<<<< SEARCH"),
                proptest::prelude::Just("======="), proptest::prelude::Just(">>>>>>> REPLACE"),
                proptest::prelude::Just("a.py"), proptest::prelude::Just(" x"), proptest::prelude::Just("é"),
                proptest::prelude::Just("\r"), proptest::prelude::Just("#"),
            ],
            0..60,
        )) {
            let text = pieces.concat();
            proptest::prop_assert_eq!(edit_blocks(&text), regex_blocks(&text));
        }
    }

    #[test]
    fn edit_blocks_agree_with_the_regex_on_tricky_texts() {
        let block = |p: &str, s: &str, r: &str| {
            format!("```\n### {p}\n<<<<<<< SEARCH\n{s}\n=======\n{r}\n>>>>>>> REPLACE\n```")
        };
        let texts = [
            block("a", "x", "y"),
            format!("````\n{}", block("a", "x", "y")),
            "``` ```\n### a\n<<<<<<< SEARCH\nx\n=======\n=======\ny\n>>>>>>> REPLACE\n```\n>>>>>>> REPLACE\n```".to_owned(),
            format!("{}{}", block("a", "", ""), block("b", "\n", "\n")),
            "```\n### a\n<<<<<<< SEARCH\nx\n=======\ny".to_owned(),
            format!("```\n### a\n```\n{}", block("b", "s", "r")),
        ];
        for text in &texts {
            assert_eq!(edit_blocks(text), regex_blocks(text), "{text:?}");
        }
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
