//! Writing predicted file contents as a `git diff`, the patch format SWE-bench consumes.

use std::fmt::Write as _;

use crate::difflib::{SequenceMatcher, Tag, format_range_unified};
use crate::files::FileMap;

/// Lines of context around each change, as `git diff` uses by default.
const GIT_CONTEXT: usize = 3;

/// A `git diff` turning `code_context` into `new_content`, files sorted by path.
///
/// Files whose content does not change are left out; a path absent from `code_context` is a new
/// file (`new file mode 100644`, `--- /dev/null`). Lines are split on `\n` only, as git does
/// (a `\r` stays part of its line), and a last line without a newline gets git's
/// `\ No newline at end of file` marker, so `git apply` reproduces `new_content` byte for byte.
/// Paths are quoted the way git quotes them (control characters, `"`, `\` and non-ASCII bytes).
///
/// ```
/// use std::collections::HashMap;
///
/// let old = HashMap::from([("a.py", "x = 1\n")]);
/// let new = HashMap::from([("a.py", "x = 2\n")]);
/// assert_eq!(
///     swerl_reward::git_diff(&old, &new),
///     "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
/// );
/// ```
pub fn git_diff(code_context: &impl FileMap, new_content: &impl FileMap) -> String {
    let mut paths: Vec<&str> = new_content.paths().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = String::new();
    for path in paths {
        let new = new_content.file(path).unwrap_or("");
        let old = code_context.file(path);
        if old == Some(new) {
            continue;
        }
        let a_name = quote_path("a/", path);
        let b_name = quote_path("b/", path);
        let _ = writeln!(out, "diff --git {a_name} {b_name}");
        if old.is_none() {
            out.push_str("new file mode 100644\n");
            if new.is_empty() {
                continue;
            }
        }
        let tab = |name: &str| if name.contains(' ') { "\t" } else { "" };
        let minus = if old.is_some() { a_name.as_str() } else { "/dev/null" };
        let _ = writeln!(out, "--- {minus}{}", tab(minus));
        let _ = writeln!(out, "+++ {b_name}{}", tab(&b_name));
        write_file_hunks(old.unwrap_or(""), new, &mut out);
    }
    out
}

/// Lines split on `\n`, each keeping its `\n` (the last one may have none).
fn git_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn write_file_hunks(old: &str, new: &str, out: &mut String) {
    let a = git_lines(old);
    let b = git_lines(new);
    let matcher = SequenceMatcher::new(&a, &b);
    for group in matcher.grouped_opcodes(GIT_CONTEXT) {
        let (first, last) = (group[0], group[group.len() - 1]);
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            format_range_unified(first.i1, last.i2),
            format_range_unified(first.j1, last.j2)
        );
        let mut emit = |prefix: char, line: &str| {
            out.push(prefix);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        };
        for op in group {
            if op.tag == Tag::Equal {
                a[op.i1..op.i2].iter().for_each(|l| emit(' ', l));
                continue;
            }
            if matches!(op.tag, Tag::Replace | Tag::Delete) {
                a[op.i1..op.i2].iter().for_each(|l| emit('-', l));
            }
            if matches!(op.tag, Tag::Replace | Tag::Insert) {
                b[op.j1..op.j2].iter().for_each(|l| emit('+', l));
            }
        }
    }
}

/// `prefix + path`, quoted in C style when git would quote it (`core.quotePath` default).
fn quote_path(prefix: &str, path: &str) -> String {
    let needs_quote = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f;
    if !path.bytes().any(needs_quote) {
        return format!("{prefix}{path}");
    }
    let mut out = String::with_capacity(path.len() + 8);
    out.push('"');
    out.push_str(prefix);
    for b in path.bytes() {
        match b {
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if needs_quote(b) => {
                let _ = write!(out, "\\{b:03o}");
            }
            b => out.push(char::from(b)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn new_file_and_missing_newline() {
        let old: BTreeMap<&str, &str> = BTreeMap::new();
        let new = BTreeMap::from([("n.py", "a\nb")]);
        assert_eq!(
            git_diff(&old, &new),
            "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1,2 @@\n+a\n+b\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn unchanged_files_are_skipped_and_newline_only_changes_kept() {
        let old = BTreeMap::from([("a", "x\n"), ("b", "y")]);
        let new = BTreeMap::from([("a", "x\n"), ("b", "y\n")]);
        assert_eq!(
            git_diff(&old, &new),
            "diff --git a/b b/b\n--- a/b\n+++ b/b\n@@ -1 +1 @@\n-y\n\\ No newline at end of file\n+y\n"
        );
    }

    #[test]
    fn quoting_follows_git() {
        assert_eq!(quote_path("a/", "dir/file.py"), "a/dir/file.py");
        assert_eq!(quote_path("a/", "tab\there"), "\"a/tab\\there\"");
        assert_eq!(quote_path("b/", "é"), "\"b/\\303\\251\"");
        let old = BTreeMap::from([("sp ace", "1\n")]);
        let new = BTreeMap::from([("sp ace", "2\n")]);
        assert!(git_diff(&old, &new).contains("--- a/sp ace\t\n+++ b/sp ace\t\n"));
    }
}
