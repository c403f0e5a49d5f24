//! The unified-diff reward: the reference's `calculate_reward_unidiff`, which compares two sets of
//! `git diff` texts file by file.
//!
//! The reference parses diffs with the Python package `unidiff`; a diff it cannot parse
//! contributes no file. Its parser changed between releases (quoted paths, empty file names,
//! mnemonic prefixes, a `+++` line without a `---` line), so this port follows either release
//! exactly: [`Dialect::V1`] (unidiff 1.0.x, what `pip install` gives today) or
//! [`Dialect::V0_7`] (unidiff 0.7.5, the release current when SWE-RL was published).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::error::Error;
use crate::pystr;
use crate::similarity::{Similarity, change_similarities};

/// Which release of the Python `unidiff` parser to follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Dialect {
    /// unidiff 1.0.x.
    #[default]
    V1,
    /// unidiff 0.7.5.
    V0_7,
}

const DEV_NULL: &str = "/dev/null";

struct Patterns {
    git_header: Regex,
    git_header_v0: Regex,
    git_header_uri: Regex,
    git_header_no_prefix: Regex,
    hunk_header: Regex,
    binary: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let digit = pystr::digit_class();
    let space = pystr::space_class();
    let re = |pattern: &str| Regex::new(pattern).expect("unidiff patterns are valid");
    Patterns {
        git_header: re(r#"\Adiff --git (?P<source>"?a/[^\t\n]+"?) (?P<target>"?b/[^\t\n]+"?)"#),
        git_header_v0: re(r"\Adiff --git (?P<source>a/[^\t\n]+) (?P<target>b/[^\t\n]+)"),
        git_header_uri: re(r"\Adiff --git (?P<source>.*://[^\t\n]+) (?P<target>.*://[^\t\n]+)"),
        git_header_no_prefix: re(r"\Adiff --git (?P<source>[^\t\n]+) (?P<target>[^\t\n]+)"),
        hunk_header: re(&format!(
            r"\A@@ -({digit}+)(?:,({digit}+))? \+({digit}+)(?:,({digit}+))? @@[ ]?(.*)"
        )),
        binary: re(&format!(
            r"\ABinary files? (?P<source>[^\t]+?)(?:\t(?P<source_ts>(?:{space}|[0-9:+-])+))?(?: and (?P<target>[^\t]+?)(?:\t(?P<target_ts>(?:{space}|[0-9:+-])+))?)? (differ|has changed)"
        )),
    }
});

/// One file of a parsed diff, reduced to what the reward reads.
#[derive(Debug, Clone)]
struct PatchedFile {
    source: Option<String>,
    target: Option<String>,
    binary: bool,
    /// `str(hunk)` of each hunk.
    hunks: Vec<String>,
}

/// Why the reference's parser gives up on a diff (its `UnidiffParseError`, or another exception
/// the reference catches the same way).
#[derive(Debug)]
struct Unparsable;

/// The per-file change texts of one diff (the reference's `get_filelevel_diff`): path ->
/// the file's hunks, each stripped, joined with `"\n"`, preceded by `rename from A to B` for a
/// rename; binary files left out; empty when the diff cannot be parsed.
///
/// ```
/// use swerl_reward::unidiff::{Dialect, file_level_diff};
///
/// let diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n";
/// let files = file_level_diff(diff, Dialect::V1);
/// assert_eq!(files["x.py"], "@@ -1,1 +1,1 @@\n-a\n+b");
/// assert!(file_level_diff("@@ -1 +1 @@\n-a\n+b\n", Dialect::V1).is_empty(), "a hunk without a file");
/// ```
pub fn file_level_diff(patch: &str, dialect: Dialect) -> BTreeMap<String, String> {
    let Ok(files) = parse_patch_set(patch, dialect) else {
        return BTreeMap::new();
    };
    let mut result = BTreeMap::new();
    for file in files {
        if file.binary {
            continue;
        }
        let (header, path) = if is_rename(&file) {
            let source = file.source.as_deref().unwrap_or("");
            let target = file.target.as_deref().unwrap_or("");
            let source = source.strip_prefix("a/").unwrap_or(source);
            let target = target.strip_prefix("b/").unwrap_or(target);
            (format!("rename from {source} to {target}"), source.to_owned())
        } else {
            (String::new(), file_path(&file, dialect))
        };
        let body: Vec<&str> = file.hunks.iter().map(|h| pystr::strip(h)).collect();
        let content = format!("{header}\n{}", body.join("\n"));
        result.insert(path, pystr::strip(&content).to_owned());
    }
    result
}

/// Path -> file content.
pub type PathContents = BTreeMap<String, String>;

/// Path -> content maps of the files a diff touches, as far as the diff shows them:
/// `(before, after)`. For each file, the context and removed lines of its hunks, in order, form
/// a partial "before" file, and the context and added lines the "after" file, which is exactly
/// the diff applied to the partial file. New files have no "before"; deleted files become empty
/// "after" files; binary files, renames without content changes and mode changes are left out.
///
/// Parsed by the same parser as the reward ([`Dialect::V1`]); a diff that parser rejects, or one
/// that touches no text file, is [`Error::InvalidPatch`].
///
/// ```
/// let diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -3,2 +3,2 @@ def f():\n     y = 1\n-    return y\n+    return y + 1\n";
/// let (before, after) = swerl_reward::unidiff::partial_files(diff)?;
/// assert_eq!(before["x.py"], "    y = 1\n    return y\n");
/// assert_eq!(after["x.py"], "    y = 1\n    return y + 1\n");
/// # Ok::<(), swerl_reward::Error>(())
/// ```
pub fn partial_files(patch: &str) -> Result<(PathContents, PathContents), Error> {
    let files = parse_patch_set(patch, Dialect::V1).map_err(|Unparsable| Error::InvalidPatch {
        message: "not a unified diff the parser accepts".into(),
    })?;
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    // Files without hunks count only when created or deleted empty (renames and mode changes
    // show no content).
    let created_or_deleted =
        |f: &PatchedFile| f.source.as_deref() == Some(DEV_NULL) || f.target.as_deref() == Some(DEV_NULL);
    for file in files.iter().filter(|f| !f.binary && (!f.hunks.is_empty() || created_or_deleted(f))) {
        let side = |name: Option<&str>, prefix: &str| -> Option<String> {
            let name = name?;
            if name == DEV_NULL {
                return None;
            }
            Some(name.strip_prefix(prefix).unwrap_or(name).to_owned())
        };
        let (old, new) = (side(file.source.as_deref(), "a/"), side(file.target.as_deref(), "b/"));
        let (mut b, mut a) = (String::new(), String::new());
        for hunk in &file.hunks {
            hunk_sides(hunk, &mut b, &mut a);
        }
        match (old, new) {
            (None, Some(new)) => {
                after.insert(new, a);
            }
            (Some(old), None) => {
                before.insert(old.clone(), b);
                after.insert(old, String::new());
            }
            (Some(old), Some(new)) => {
                before.insert(old, b);
                after.insert(new, a);
            }
            (None, None) => {}
        }
    }
    if after.is_empty() {
        return Err(Error::InvalidPatch { message: "the patch touches no text file".into() });
    }
    Ok((before, after))
}

/// Appends one hunk's (`str(hunk)`) old side to `before` and new side to `after`.
fn hunk_sides(hunk: &str, before: &mut String, after: &mut String) {
    let strip = |s: &mut String| {
        if s.ends_with('\n') {
            s.pop();
        }
    };
    let mut last = ' ';
    for line in lines(hunk).skip(1) {
        let mut chars = line.chars();
        match chars.next() {
            Some(' ') => {
                let body = if chars.as_str().is_empty() { "\n" } else { chars.as_str() };
                before.push_str(body);
                after.push_str(body);
                last = ' ';
            }
            Some('-') => {
                before.push_str(chars.as_str());
                last = '-';
            }
            Some('+') => {
                after.push_str(chars.as_str());
                last = '+';
            }
            // "\ No newline at end of file": the line before it had no newline.
            Some('\\') => match last {
                '-' => strip(before),
                '+' => strip(after),
                _ => {
                    strip(before);
                    strip(after);
                }
            },
            // An empty context line (its leading space stripped), or a blank line the parser
            // kept after the hunk.
            Some('\r' | '\n') => {
                before.push_str(line);
                after.push_str(line);
                last = ' ';
            }
            _ => {}
        }
    }
}

/// The unified-diff reward (the reference's `calculate_reward_unidiff`): later diffs override
/// earlier ones for the same path, then per-file similarities are averaged over the union of
/// paths (1.0 when both sides are empty).
///
/// ```
/// use swerl_reward::unidiff::{Dialect, unidiff_reward};
///
/// let oracle = ["--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"];
/// assert_eq!(unidiff_reward(&oracle, &oracle, Dialect::V1).reward, 1.0);
/// assert_eq!(unidiff_reward(&oracle, &[""], Dialect::V1).reward, 0.0);
/// ```
pub fn unidiff_reward<O: AsRef<str>, P: AsRef<str>>(
    oracle_patches: &[O],
    pred_patches: &[P],
    dialect: Dialect,
) -> Similarity {
    let collect = |patches: &mut dyn Iterator<Item = &str>| {
        let mut all = BTreeMap::new();
        for patch in patches {
            all.extend(file_level_diff(patch, dialect));
        }
        all
    };
    let oracle = collect(&mut oracle_patches.iter().map(AsRef::as_ref));
    let pred = collect(&mut pred_patches.iter().map(AsRef::as_ref));
    change_similarities(&pred, &oracle)
}

/// Python's `s[2:]`.
fn skip2(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.next();
    chars.as_str()
}

/// `PatchedFile.is_rename`.
fn is_rename(file: &PatchedFile) -> bool {
    match (&file.source, &file.target) {
        (Some(s), Some(t)) => s != DEV_NULL && t != DEV_NULL && skip2(s) != skip2(t),
        // Only binary files (skipped before) can lack a name.
        _ => false,
    }
}

/// `PatchedFile.path`.
fn file_path(file: &PatchedFile, dialect: Dialect) -> String {
    let source = file.source.as_deref();
    let mut path = match source {
        None | Some(DEV_NULL) => file.target.as_deref().unwrap_or(""),
        Some(s) => s,
    };
    match dialect {
        Dialect::V0_7 => {
            if path.starts_with("a/") || path.starts_with("b/") {
                path = &path[2..];
            }
            path.to_owned()
        }
        Dialect::V1 => {
            let quoted = path.starts_with('"') && path.ends_with('"');
            if quoted {
                // Python's `s[1:-1]`, which is empty for the one-character string `"`.
                path = path.get(1..path.len().saturating_sub(1).max(1)).unwrap_or("");
            }
            let b = path.as_bytes();
            if b.len() >= 2 && b"abciow12".contains(&b[0]) && b[1] == b'/' {
                path = &path[2..];
            }
            if quoted { format!("\"{path}\"") } else { path.to_owned() }
        }
    }
}

/// Lines as Python's `StringIO` yields them: split after each `\n`, terminators kept.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
}

/// `re.match(r"^--- (?P<filename>...)(?:\t(?P<timestamp>[^\n]+))?", line)` for `---`/`+++`.
fn file_header<'a>(line: &'a str, prefix: &str, dialect: Dialect) -> Option<(&'a str, Option<&'a str>)> {
    let rest = line.strip_prefix(prefix)?;
    let end = rest.find(['\t', '\n']).unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() && dialect == Dialect::V0_7 {
        return None;
    }
    let after = &rest[end..];
    let timestamp =
        after.strip_prefix('\t').map(|t| t.split('\n').next().unwrap_or("")).filter(|t| !t.is_empty());
    Some((name, timestamp))
}

/// `re.match(r"^<prefix>\d+$", line)`: Python's `$` also matches before a final `\n`.
fn mode_line(line: &str, prefix: &str) -> bool {
    line.strip_prefix(prefix).is_some_and(|rest| {
        let digits = rest.strip_suffix('\n').unwrap_or(rest);
        !digits.is_empty() && digits.chars().all(|c| pystr::digit_value(c).is_some())
    })
}

/// Python's `int(digits)` printed with `%d`: ASCII digits without leading zeros.
fn normalize_int(digits: &str) -> String {
    let ascii: String = digits
        .chars()
        .map(|c| char::from_digit(pystr::digit_value(c).unwrap_or(0), 10).unwrap_or('0'))
        .collect();
    let trimmed = ascii.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() }
}

/// `int(digits)`, saturating: only differences between counts matter, and no diff has 2^128 lines.
fn int_value(digits: &str) -> u128 {
    digits.chars().fold(0u128, |acc, c| {
        acc.saturating_mul(10).saturating_add(u128::from(pystr::digit_value(c).unwrap_or(0)))
    })
}

/// `PatchSet(text)`: the files of a diff, or [`Unparsable`] where the reference raises.
fn parse_patch_set(text: &str, dialect: Dialect) -> Result<Vec<PatchedFile>, Unparsable> {
    let p = &*PATTERNS;
    let mut parser = PatchParser::new(dialect);
    let mut iter = lines(text);
    while let Some(line) = iter.next() {
        let git_header = match dialect {
            Dialect::V1 => p.git_header.captures(line),
            Dialect::V0_7 => p.git_header_v0.captures(line),
        }
        .or_else(|| p.git_header_uri.captures(line))
        .or_else(|| p.git_header_no_prefix.captures(line));
        if let Some(caps) = git_header {
            parser.git_header(caps["source"].to_owned(), caps["target"].to_owned());
        } else if mode_line(line, "new file mode ") {
            parser.patch_info_file()?.source = Some(DEV_NULL.to_owned());
        } else if mode_line(line, "deleted file mode ") {
            parser.patch_info_file()?.target = Some(DEV_NULL.to_owned());
        } else if let Some((name, timestamp)) = file_header(line, "--- ", dialect) {
            // unidiff 1.0's mode and index lines only record modes and would otherwise fall
            // through to the patch-info branch, which keeps them the same way.
            parser.source_header(name, timestamp);
        } else if let Some((name, _)) = file_header(line, "+++ ", dialect) {
            parser.target_header(name)?;
        } else if let Some(caps) = p.hunk_header.captures(line) {
            parser.in_patch_info = false;
            let idx = parser.current.ok_or(Unparsable)?;
            let hunk = parse_hunk(&caps, &mut iter)?;
            parser.files[idx].hunks.push(hunk);
        } else if line.starts_with("\\ No newline at end of file") {
            let idx = parser.current.ok_or(Unparsable)?;
            let last = parser.files[idx].hunks.last_mut().ok_or(Unparsable)?;
            last.push_str("\\ No newline at end of file\n");
        } else if !(line == "\n" && parser.blank_line()?) {
            parser.patch_info(line)?;
        }
    }
    Ok(parser.files)
}

/// The state of the reference's `PatchSet._parse` loop.
struct PatchParser {
    dialect: Dialect,
    files: Vec<PatchedFile>,
    current: Option<usize>,
    in_patch_info: bool,
    /// The reference's pending `source_file` / `source_timestamp` locals. In 0.7.5 they outlive
    /// their file and are unbound (a crash the reference catches) until first assigned.
    source_file: Option<String>,
    source_timestamp: Option<Option<String>>,
}

impl PatchParser {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            files: Vec::new(),
            current: None,
            in_patch_info: false,
            source_file: None,
            source_timestamp: None,
        }
    }

    /// `diff --git a/X b/Y`: a new file, in its patch info.
    fn git_header(&mut self, source: String, target: String) {
        self.source_file = Some(source.clone());
        self.files.push(PatchedFile {
            source: Some(source),
            target: Some(target),
            binary: false,
            hunks: Vec::new(),
        });
        self.current = Some(self.files.len() - 1);
        self.in_patch_info = true;
    }

    /// The file whose patch info a `new file mode` / `deleted file mode` line belongs to.
    fn patch_info_file(&mut self) -> Result<&mut PatchedFile, Unparsable> {
        match self.current {
            Some(idx) if self.in_patch_info => Ok(&mut self.files[idx]),
            _ => Err(Unparsable),
        }
    }

    /// `--- name`: remembered for the `+++` line; may end the current file.
    fn source_header(&mut self, name: &str, timestamp: Option<&str>) {
        self.source_file = Some(name.to_owned());
        self.source_timestamp = Some(timestamp.map(str::to_owned));
        if let Some(idx) = self.current {
            let reset = match self.dialect {
                Dialect::V1 => !self.in_patch_info,
                Dialect::V0_7 => self.files[idx].source.as_deref() != Some(name),
            };
            if reset {
                self.current = None;
            }
        }
    }

    /// `+++ name`: confirms the current file, or starts one from the pending `---` name.
    fn target_header(&mut self, name: &str) -> Result<(), Unparsable> {
        if let Some(idx) = self.current {
            return if self.files[idx].target.as_deref() != Some(name) { Err(Unparsable) } else { Ok(()) };
        }
        let source = match self.dialect {
            Dialect::V1 => self.source_file.take().ok_or(Unparsable)?,
            // Unbound `source_file` or `source_timestamp`: UnboundLocalError.
            Dialect::V0_7 => {
                if self.source_timestamp.is_none() {
                    return Err(Unparsable);
                }
                self.source_file.clone().ok_or(Unparsable)?
            }
        };
        if self.dialect == Dialect::V1 {
            self.source_timestamp = None;
        }
        self.files.push(PatchedFile {
            source: Some(source),
            target: Some(name.to_owned()),
            binary: false,
            hunks: Vec::new(),
        });
        self.current = Some(self.files.len() - 1);
        self.in_patch_info = false;
        Ok(())
    }

    /// A blank line after hunks belongs to the last hunk (true: consumed); without hunks 1.0
    /// treats it as patch info and 0.7.5 raises.
    fn blank_line(&mut self) -> Result<bool, Unparsable> {
        let Some(idx) = self.current else { return Ok(false) };
        match self.files[idx].hunks.last_mut() {
            Some(hunk) => {
                hunk.push('\n');
                Ok(true)
            }
            None if self.dialect == Dialect::V0_7 => Err(Unparsable),
            None => Ok(false),
        }
    }

    /// Any other line is patch info: it ends the current file's hunks, and may mark a binary
    /// file.
    fn patch_info(&mut self, line: &str) -> Result<(), Unparsable> {
        if !self.in_patch_info {
            self.current = None;
            self.in_patch_info = true;
        }
        if let Some(caps) = PATTERNS.binary.captures(line) {
            let source = caps["source"].to_owned();
            let target = caps.name("target").map(|m| m.as_str().to_owned());
            let target = match self.dialect {
                Dialect::V1 => Some(target.unwrap_or_else(|| source.clone())),
                Dialect::V0_7 => target,
            };
            self.source_file = Some(source.clone());
            match self.current {
                Some(idx) => self.files[idx].binary = true,
                None => self.files.push(PatchedFile {
                    source: Some(source),
                    target,
                    binary: true,
                    hunks: Vec::new(),
                }),
            }
            self.in_patch_info = false;
            self.current = None;
        } else if line == "GIT binary patch\n" {
            // 0.7.5 crashes with AttributeError and 1.0 raises: both mean "unparsable".
            let idx = self.current.ok_or(Unparsable)?;
            self.files[idx].binary = true;
            self.in_patch_info = false;
            self.current = None;
        }
        Ok(())
    }
}

/// `PatchedFile._parse_hunk`: consumes the hunk's lines and returns `str(hunk)`.
fn parse_hunk<'a>(
    caps: &regex::Captures<'_>,
    iter: &mut impl Iterator<Item = &'a str>,
) -> Result<String, Unparsable> {
    let group = |i: usize| caps.get(i).map(|m| m.as_str());
    let (src_start, tgt_start) = (group(1).unwrap_or("0"), group(3).unwrap_or("0"));
    // A missing length means 1.
    let (src_len, tgt_len) = (group(2).unwrap_or("1"), group(4).unwrap_or("1"));
    let section = group(5).unwrap_or("");
    let mut text = format!(
        "@@ -{},{} +{},{} @@{}{}\n",
        normalize_int(src_start),
        normalize_int(src_len),
        normalize_int(tgt_start),
        normalize_int(tgt_len),
        if section.is_empty() { "" } else { " " },
        section
    );
    let (src_expected, tgt_expected) = (int_value(src_len), int_value(tgt_len));
    let (mut src_seen, mut tgt_seen) = (0u128, 0u128);
    for line in iter.by_ref() {
        let first = line.chars().next().unwrap_or('\n');
        let value_len = match first {
            '-' | ' ' | '+' | '\\' => {
                match first {
                    '+' => tgt_seen += 1,
                    '-' => src_seen += 1,
                    ' ' => {
                        src_seen += 1;
                        tgt_seen += 1;
                    }
                    _ => {}
                }
                line.len()
            }
            // RE_HUNK_EMPTY_BODY_LINE: an empty context line; its value is the first one or two
            // `\r`/`\n` characters and the rest of the line is dropped.
            '\r' | '\n' => {
                src_seen += 1;
                tgt_seen += 1;
                line.bytes().take(2).take_while(|b| matches!(b, b'\r' | b'\n')).count()
            }
            _ => return Err(Unparsable),
        };
        if src_seen > src_expected || tgt_seen > tgt_expected {
            return Err(Unparsable);
        }
        if matches!(first, '\r' | '\n') {
            // Line type '' is printed as nothing: str(Line) == value.
            text.push_str(&line[..value_len]);
        } else {
            text.push_str(line);
        }
        if src_seen == src_expected && tgt_seen == tgt_expected {
            break;
        }
    }
    if src_seen < src_expected || tgt_seen < tgt_expected {
        return Err(Unparsable);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -10,4 +10,4 @@ def f():\n     x = 1\n-    return x\n+    return x + 1\n \n def g():\n@@ -40,2 +40,3 @@ def h():\n     pass\n+    # done\n     return\ndiff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n\\ No newline at end of file\n";

    #[test]
    fn partial_files_reconstruct_both_sides() {
        let (before, after) = partial_files(PATCH).unwrap();
        assert_eq!(before["src/m.py"], "    x = 1\n    return x\n\ndef g():\n    pass\n    return\n");
        assert_eq!(
            after["src/m.py"],
            "    x = 1\n    return x + 1\n\ndef g():\n    pass\n    # done\n    return\n"
        );
        assert!(!before.contains_key("new.txt"));
        assert_eq!(after["new.txt"], "hello");
        let deleted = "diff --git a/d.py b/d.py\ndeleted file mode 100644\n--- a/d.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
        let (before, after) = partial_files(deleted).unwrap();
        assert_eq!((before["d.py"].as_str(), after["d.py"].as_str()), ("x\n", ""));
    }

    #[test]
    fn partial_files_reject_what_is_not_a_diff() {
        assert!(matches!(partial_files("not a diff"), Err(Error::InvalidPatch { .. })));
        assert!(partial_files("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n").is_err());
    }

    #[test]
    fn rename_gets_a_header_and_source_path() {
        let diff = "diff --git a/old.py b/new.py\nsimilarity index 90%\nrename from old.py\nrename to new.py\n--- a/old.py\n+++ b/new.py\n@@ -1 +1 @@\n-a\n+b\n";
        let files = file_level_diff(diff, Dialect::V1);
        assert_eq!(files["old.py"], "rename from old.py to new.py\n@@ -1,1 +1,1 @@\n-a\n+b");
    }

    #[test]
    fn binary_files_are_skipped() {
        let diff = "diff --git a/x.png b/x.png\nindex 1..2 100644\nBinary files a/x.png and b/x.png differ\ndiff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n";
        let files = file_level_diff(diff, Dialect::V1);
        assert_eq!(files.keys().collect::<Vec<_>>(), ["y"]);
    }

    #[test]
    fn miscounted_hunk_is_unparsable() {
        let diff = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n";
        assert!(file_level_diff(diff, Dialect::V1).is_empty());
        assert!(file_level_diff(diff, Dialect::V0_7).is_empty());
    }

    #[test]
    fn target_without_source_differs_between_releases() {
        // 1.0 raises UnidiffParseError; 0.7.5 raises UnboundLocalError: both unparsable.
        let diff = "+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(file_level_diff(diff, Dialect::V1).is_empty());
        assert!(file_level_diff(diff, Dialect::V0_7).is_empty());
    }

    #[test]
    fn mnemonic_prefixes_only_in_v1() {
        let diff = "--- i/x.py\n+++ w/x.py\n@@ -1 +1 @@\n-a\n+b\n";
        // i/x.py vs w/x.py: same after two characters, so not a rename.
        assert!(file_level_diff(diff, Dialect::V1).contains_key("x.py"));
        assert!(file_level_diff(diff, Dialect::V0_7).contains_key("i/x.py"));
    }

    #[test]
    fn unicode_digits_in_hunk_headers_are_numbers() {
        let diff = "--- a/x\n+++ b/x\n@@ -\u{661} +\u{661} @@\n-a\n+b\n";
        assert_eq!(file_level_diff(diff, Dialect::V1)["x"], "@@ -1,1 +1,1 @@\n-a\n+b");
    }
}
