//! `difflib.unified_diff` and the hunk text the reward compares.

use std::fmt::Write as _;

use super::{Opcode, SequenceMatcher, Tag, group_opcodes, opcodes_from_blocks};
use crate::pystr;

/// Options of [`unified_diff`], with Python's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedDiffOptions<'a> {
    /// Name printed after `---`.
    pub fromfile: &'a str,
    /// Name printed after `+++`.
    pub tofile: &'a str,
    /// Printed after a tab on the `---` line when not empty.
    pub fromfiledate: &'a str,
    /// Printed after a tab on the `+++` line when not empty.
    pub tofiledate: &'a str,
    /// Lines of context around each change.
    pub n: usize,
    /// Appended to the header lines (`---`, `+++`, `@@`); the content lines get nothing added.
    pub lineterm: &'a str,
}

impl Default for UnifiedDiffOptions<'_> {
    fn default() -> Self {
        UnifiedDiffOptions {
            fromfile: "",
            tofile: "",
            fromfiledate: "",
            tofiledate: "",
            n: 3,
            lineterm: "\n",
        }
    }
}

/// Python's `difflib._format_range_unified(start, stop)`: `"start+1,len"`, `"start+1"` when the
/// range has one line, `"start,0"` when it is empty.
pub fn format_range_unified(start: usize, stop: usize) -> String {
    let mut out = String::new();
    write_range(&mut out, start, stop);
    out
}

fn write_range(out: &mut String, start: usize, stop: usize) {
    let length = stop - start;
    let beginning = if length == 0 { start } else { start + 1 };
    if length == 1 {
        let _ = write!(out, "{beginning}");
    } else {
        let _ = write!(out, "{beginning},{length}");
    }
}

/// Python's `difflib.unified_diff(a, b, fromfile, tofile, fromfiledate, tofiledate, n, lineterm)`
/// as a list of lines (the generator's items, in order).
///
/// ```
/// use swerl_reward::difflib::{UnifiedDiffOptions, unified_diff};
///
/// let a = ["one", "two", "three", "four"];
/// let b = ["zero", "one", "tree", "four"];
/// let opts = UnifiedDiffOptions { fromfile: "Original", tofile: "Current", lineterm: "", ..Default::default() };
/// let lines = unified_diff(&a, &b, &opts);
/// assert_eq!(lines, ["--- Original", "+++ Current", "@@ -1,4 +1,4 @@", "+zero", " one", "-two", "-three", "+tree", " four"]);
/// ```
pub fn unified_diff<S: AsRef<str>>(a: &[S], b: &[S], opts: &UnifiedDiffOptions<'_>) -> Vec<String> {
    let a: Vec<&str> = a.iter().map(AsRef::as_ref).collect();
    let b: Vec<&str> = b.iter().map(AsRef::as_ref).collect();
    let groups = group_opcodes(opcodes_from_blocks(&SequenceMatcher::new(&a, &b).matching_blocks()), opts.n);
    let mut lines = Vec::new();
    if groups.is_empty() {
        return lines;
    }
    let date = |d: &str| if d.is_empty() { String::new() } else { format!("\t{d}") };
    lines.push(format!("--- {}{}{}", opts.fromfile, date(opts.fromfiledate), opts.lineterm));
    lines.push(format!("+++ {}{}{}", opts.tofile, date(opts.tofiledate), opts.lineterm));
    for group in &groups {
        let mut header = String::from("@@ -");
        push_group_header_ranges(&mut header, group);
        header.push_str(opts.lineterm);
        lines.push(header);
        for_each_group_line(group, &a, &b, |prefix, line| lines.push(format!("{prefix}{line}")));
    }
    lines
}

/// `"{a range} +{b range} @@"` after the caller's `"@@ -"`.
fn push_group_header_ranges(out: &mut String, group: &[Opcode]) {
    let (first, last) = (group[0], group[group.len() - 1]);
    write_range(out, first.i1, last.i2);
    out.push_str(" +");
    write_range(out, first.j1, last.j2);
    out.push_str(" @@");
}

/// Calls `emit(prefix, line)` for each content line of a group, in unified-diff order.
fn for_each_group_line<'a>(
    group: &[Opcode],
    a: &[&'a str],
    b: &[&'a str],
    mut emit: impl FnMut(char, &'a str),
) {
    for op in group {
        if op.tag == Tag::Equal {
            a[op.i1..op.i2].iter().for_each(|line| emit(' ', line));
            continue;
        }
        if matches!(op.tag, Tag::Replace | Tag::Delete) {
            a[op.i1..op.i2].iter().for_each(|line| emit('-', line));
        }
        if matches!(op.tag, Tag::Replace | Tag::Insert) {
            b[op.j1..op.j2].iter().for_each(|line| emit('+', line));
        }
    }
}

/// The reward's per-file change text: `unified_diff(old.splitlines(), new.splitlines(), "old",
/// "new", lineterm="", n=context)` without its two header lines, joined with `"\n"`; empty when
/// the files' lines are equal.
pub(crate) fn diff_lines(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = pystr::splitlines(old).collect();
    let b: Vec<&str> = pystr::splitlines(new).collect();
    let mut out = String::new();
    write_hunks(&a, &b, context, &mut out);
    out
}

/// Writes the hunks (header `@@` lines and content lines, joined with `"\n"`, no trailing newline)
/// of `unified_diff(a, b, lineterm="", n=context)` into `out`.
fn write_hunks(a: &[&str], b: &[&str], context: usize, out: &mut String) {
    if a == b {
        return;
    }
    let groups = group_opcodes(opcodes_from_blocks(&SequenceMatcher::new(a, b).matching_blocks()), context);
    for group in &groups {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("@@ -");
        push_group_header_ranges(out, group);
        for_each_group_line(group, a, b, |prefix, line| {
            out.push('\n');
            out.push(prefix);
            out.push_str(line);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_python() {
        assert_eq!(format_range_unified(0, 0), "0,0");
        assert_eq!(format_range_unified(3, 3), "3,0");
        assert_eq!(format_range_unified(3, 4), "4");
        assert_eq!(format_range_unified(3, 8), "4,5");
    }

    #[test]
    fn hunks_drop_headers_and_join_with_newlines() {
        let text = diff_lines("a\nb\nc\n", "a\nB\nc\n", 3);
        assert_eq!(text, "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c");
        assert_eq!(diff_lines("a\nb", "a\nb\n", 3), "", "a trailing newline is no change");
        assert_eq!(diff_lines("", "x", 3), "@@ -0,0 +1 @@\n+x");
    }

    #[test]
    fn unified_diff_with_dates() {
        let opts = UnifiedDiffOptions { fromfiledate: "d1", tofiledate: "d2", ..Default::default() };
        let lines = unified_diff(&["a"], &["b"], &opts);
        assert_eq!(lines, ["--- \td1\n", "+++ \td2\n", "@@ -1 +1 @@\n", "-a", "+b"]);
        assert!(unified_diff(&["a"], &["a"], &opts).is_empty());
    }
}
