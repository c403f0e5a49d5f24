//! Applying SEARCH/REPLACE edits to the original files.

use crate::error::FormatError;
use crate::files::FileMap;
use crate::parse::FileEdits;

/// Applies each file's edits to its original content and returns the new contents, in the order
/// of `files`.
///
/// For each path the running text starts as `"\n" + original` (or `"\n"` for a path absent from
/// `code_context`); each edit replaces EVERY non-overlapping occurrence of `"\n" + search` by
/// `"\n" + replace`, so a SEARCH must start at a line start and match its indentation. The result
/// is the running text without its first character. An empty SEARCH on a missing file creates it;
/// on an existing file it inserts REPLACE at every line start.
///
/// ```
/// use std::collections::HashMap;
/// use swerl_reward::{Edit, FileEdits, apply_edits};
///
/// let context = HashMap::from([("a.py", "x = 1\ny = x\n")]);
/// let edits = [FileEdits { path: "a.py".into(), edits: vec![Edit { search: "x = 1".into(), replace: "x = 2".into() }] }];
/// assert_eq!(apply_edits(&context, &edits).unwrap(), [("a.py".to_string(), "x = 2\ny = x\n".to_string())]);
/// ```
pub fn apply_edits(
    code_context: &impl FileMap,
    files: &[FileEdits],
) -> Result<Vec<(String, String)>, FormatError> {
    let borrowed: Vec<(&str, Vec<(&str, &str)>)> = files
        .iter()
        .map(|f| (f.path.as_str(), f.edits.iter().map(|e| (e.search.as_str(), e.replace.as_str())).collect()))
        .collect();
    apply(code_context, &borrowed)
}

pub(crate) fn apply(
    code_context: &impl FileMap,
    files: &[(&str, Vec<(&str, &str)>)],
) -> Result<Vec<(String, String)>, FormatError> {
    let mut out = Vec::with_capacity(files.len());
    let mut search = String::new();
    let mut replace = String::new();
    for (path, edits) in files {
        let original = code_context.file(path).unwrap_or("");
        let mut text = String::with_capacity(original.len() + 1);
        text.push('\n');
        text.push_str(original);
        for (index, (s, r)) in edits.iter().enumerate() {
            if s == r {
                return Err(FormatError::IdenticalEdit { path: (*path).to_owned(), index });
            }
            search.clear();
            search.push('\n');
            search.push_str(s);
            replace.clear();
            replace.push('\n');
            replace.push_str(r);
            let Some(first) = text.find(search.as_str()) else {
                return Err(FormatError::SearchNotFound { path: (*path).to_owned(), index });
            };
            text = replace_from(&text, first, &search, &replace);
        }
        text.remove(0);
        out.push(((*path).to_owned(), text));
    }
    Ok(out)
}

/// `text.replace(search, replace)` given that the first occurrence starts at `first`.
fn replace_from(text: &str, first: usize, search: &str, replace: &str) -> String {
    let mut out = String::with_capacity(text.len() + replace.len().saturating_sub(search.len()) * 4);
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    while let Some(pos) = rest.find(search) {
        out.push_str(&rest[..pos]);
        out.push_str(replace);
        rest = &rest[pos + search.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(
        ctx: &[(&str, &str)],
        files: &[(&str, Vec<(&str, &str)>)],
    ) -> Result<Vec<(String, String)>, FormatError> {
        let ctx: BTreeMap<&str, &str> = ctx.iter().copied().collect();
        apply(&ctx, files)
    }

    #[test]
    fn replaces_every_occurrence_left_to_right() {
        let got = run(&[("f", "a\nb\na\naa\n")], &[("f", vec![("a", "c")])]).unwrap();
        assert_eq!(got[0].1, "c\nb\nc\nca\n");
        let got = run(&[("f", "x\nx\nx\n")], &[("f", vec![("x\nx", "y")])]).unwrap();
        assert_eq!(got[0].1, "y\nx\n", "non-overlapping");
    }

    #[test]
    fn search_is_anchored_at_line_start() {
        let err = run(&[("f", "    return 1\n")], &[("f", vec![("return 1", "return 2")])]).unwrap_err();
        assert_eq!(err, FormatError::SearchNotFound { path: "f".into(), index: 0 });
    }

    #[test]
    fn empty_search_creates_or_prefixes() {
        let got = run(&[], &[("new.py", vec![("", "print(1)")])]).unwrap();
        assert_eq!(got[0].1, "print(1)");
        let got = run(&[("f", "a\nb")], &[("f", vec![("", "#")])]).unwrap();
        assert_eq!(got[0].1, "#a\n#b", "inserted at every line start");
        let err = run(&[], &[("new.py", vec![("x", "y")])]).unwrap_err();
        assert!(matches!(err, FormatError::SearchNotFound { index: 0, .. }));
    }

    #[test]
    fn identical_edit_is_an_error_even_after_good_ones() {
        let err = run(&[("f", "a\n")], &[("f", vec![("a", "b"), ("b", "b")])]).unwrap_err();
        assert_eq!(err, FormatError::IdenticalEdit { path: "f".into(), index: 1 });
    }

    #[test]
    fn edits_see_earlier_edits() {
        let got = run(&[("f", "a\n")], &[("f", vec![("a", "b"), ("b", "c")])]).unwrap();
        assert_eq!(got[0].1, "c\n");
    }
}
