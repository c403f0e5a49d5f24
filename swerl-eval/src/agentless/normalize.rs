//! The majority-vote key of a patch: the change between normalized old and new file texts.
//!
//! Upstream normalizes with Python's `ast.unparse(ast.parse(..))` and `tokenize`. This is a
//! pure-Rust approximation for Python: comments are dropped, statements that are only a string
//! literal (docstrings, and the rare bare string statement, which is a no-op too) are dropped,
//! trailing whitespace and blank lines are dropped; code is otherwise kept as written (so
//! re-formatting the same code gives a different key, where `ast.unparse` would agree). Other
//! files only lose trailing whitespace and blank lines. Swapping in the interpreter's `ast` later
//! changes only [`normalize_source`].

use std::collections::BTreeMap;

use super::structure::{LineState, scan_line_comment};

/// The normalized text of a file (see the module docs).
///
/// ```
/// let src = "def f():\n    \"\"\"Doc.\"\"\"\n\n    return 1  # one\n";
/// assert_eq!(swerl_eval::agentless::normalize_source("a.py", src), "def f():\n    return 1\n");
/// ```
pub fn normalize_source(path: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if !path.ends_with(".py") {
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            out.push_str(line);
            out.push('\n');
        }
        return out;
    }
    let mut st = LineState::default();
    let mut statement: Vec<String> = Vec::new();
    for line in text.lines() {
        let (next, comment) = scan_line_comment(line, st);
        let code = comment.map_or(line, |c| &line[..c]);
        // A comment-only line between statements is dropped whole.
        if !(st.at_statement_start() && code.trim().is_empty()) {
            statement.push(code.trim_end().to_owned());
        }
        st = next;
        if st.at_statement_start() && !statement.is_empty() {
            flush(&mut statement, &mut out);
        }
    }
    flush(&mut statement, &mut out);
    out
}

/// Appends a finished logical line unless it is only a string literal.
fn flush(statement: &mut Vec<String>, out: &mut String) {
    let lines = std::mem::take(statement);
    if lines.iter().all(|l| l.trim().is_empty()) || is_string_statement(&lines.join("\n")) {
        return;
    }
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        out.push_str(line);
        out.push('\n');
    }
}

/// True when the statement is one string literal (with an optional prefix such as `r`, `u`, `b`).
fn is_string_statement(statement: &str) -> bool {
    let s = statement.trim();
    let body = s.trim_start_matches(|c: char| "rRuUbBfF".contains(c));
    if s.len() - body.len() > 2 || !body.starts_with(['"', '\'']) {
        return false;
    }
    // Scan to the end of the first literal; nothing but whitespace may follow.
    let mut st = LineState::default();
    let mut consumed = 0;
    for line in body.split_inclusive('\n') {
        st = scan_line_comment(line.trim_end_matches('\n'), st).0;
        consumed += line.len();
        if st.string.is_none() {
            break;
        }
    }
    if st.string.is_some() {
        return false;
    }
    let first_line_end = body[..consumed].trim_end();
    let rest = &body[consumed..];
    rest.trim().is_empty() && ends_with_quote(first_line_end)
}

fn ends_with_quote(s: &str) -> bool {
    s.ends_with(['"', '\''])
}

/// The vote key of a change: per edited file, the unified hunks between the normalized original
/// and the normalized new text, headed by `--- path`, files sorted by path. Empty when the change
/// is only comments, docstrings or blank lines.
pub fn normalized_change(original: &BTreeMap<String, String>, new_content: &[(String, String)]) -> String {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    for (path, text) in new_content {
        let old = original.get(path).map_or("", String::as_str);
        before.insert(path.clone(), normalize_source(path, old));
        after.insert(path.clone(), normalize_source(path, text));
    }
    change_key(&before, &after)
}

/// The vote key of already normalized texts (path -> text before and after).
pub(crate) fn change_key(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let hunks = swerl_reward::normalized_patch(before, after);
    let mut key = String::new();
    for (path, change) in hunks {
        key.push_str("--- ");
        key.push_str(&path);
        key.push('\n');
        key.push_str(&change);
        if !change.ends_with('\n') {
            key.push('\n');
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str)] = &[
            ("x = 1  # set\n\n\n# only a comment\ny = 2   \n", "x = 1\ny = 2\n"),
            ("def f():\n    '''Doc\n    more.'''\n    return 1\n", "def f():\n    return 1\n"),
            ("class A:\n    r\"\"\"Doc.\"\"\"\n    x = 1\n", "class A:\n    x = 1\n"),
            // Strings that are part of code stay, '#' inside them too.
            ("s = 'a # b'\nprint(\"x\")\n", "s = 'a # b'\nprint(\"x\")\n"),
            ("\"a\" + b\n", "\"a\" + b\n"),
            // A call over several lines with comments inside.
            ("f(1,  # one\n  2)\n", "f(1,\n  2)\n"),
            ("'''module doc'''\nimport os\n", "import os\n"),
        ];
        for (src, want) in cases {
            assert_eq!(normalize_source("m.py", src), *want, "{src:?}");
        }
        assert_eq!(normalize_source("notes.txt", "a  \n\n# b\n"), "a\n# b\n");
    }

    #[test]
    fn keys_ignore_comments_docstrings_and_blank_lines() {
        let original = BTreeMap::from([("m.py".to_owned(), "def f():\n    return 1\n".to_owned())]);
        let change = |new: &str| normalized_change(&original, &[("m.py".to_owned(), new.to_owned())]);
        let plain = change("def f():\n    return 2\n");
        assert!(
            plain.starts_with("--- m.py\n") && plain.contains("-    return 1\n+    return 2\n"),
            "{plain}"
        );
        assert_eq!(change("def f():\n    \"\"\"Two.\"\"\"\n\n    return 2  # fixed\n"), plain);
        assert_ne!(change("def f():\n    return 3\n"), plain);
        assert_eq!(change("def f():\n    # just a comment\n    return 1\n\n"), "");
    }
}
