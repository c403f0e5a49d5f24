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
    let mut files: Vec<PatchedFile> = Vec::new();
    let mut current: Option<usize> = None;
    let mut in_patch_info = false;
    // The reference's pending `source_file` / `source_timestamp` locals. In 0.7.5 they outlive
    // their file and are unbound (a crash the reference catches) until first assigned.
    let mut source_file: Option<String> = None;
    let mut source_timestamp: Option<Option<String>> = None;
    let mut iter = lines(text);
    while let Some(line) = iter.next() {
        let git_header = match dialect {
            Dialect::V1 => p.git_header.captures(line),
            Dialect::V0_7 => p.git_header_v0.captures(line),
        }
        .or_else(|| p.git_header_uri.captures(line))
        .or_else(|| p.git_header_no_prefix.captures(line));
        if let Some(caps) = git_header {
            let source = caps["source"].to_owned();
            source_file = Some(source.clone());
            files.push(PatchedFile {
                source: Some(source),
                target: Some(caps["target"].to_owned()),
                binary: false,
                hunks: Vec::new(),
            });
            current = Some(files.len() - 1);
            in_patch_info = true;
            continue;
        }
        if mode_line(line, "new file mode ") {
            match current {
                Some(idx) if in_patch_info => files[idx].source = Some(DEV_NULL.to_owned()),
                _ => return Err(Unparsable),
            }
            continue;
        }
        if mode_line(line, "deleted file mode ") {
            match current {
                Some(idx) if in_patch_info => files[idx].target = Some(DEV_NULL.to_owned()),
                _ => return Err(Unparsable),
            }
            continue;
        }
        // unidiff 1.0's mode and index lines only record modes and would otherwise fall through
        // to the patch-info branch, which keeps them the same way: nothing to do here.
        if let Some((name, timestamp)) = file_header(line, "--- ", dialect) {
            source_file = Some(name.to_owned());
            source_timestamp = Some(timestamp.map(str::to_owned));
            if let Some(idx) = current {
                let reset = match dialect {
                    Dialect::V1 => !in_patch_info,
                    Dialect::V0_7 => files[idx].source.as_deref() != Some(name),
                };
                if reset {
                    current = None;
                }
            }
            continue;
        }
        if let Some((name, _)) = file_header(line, "+++ ", dialect) {
            if let Some(idx) = current {
                if files[idx].target.as_deref() != Some(name) {
                    return Err(Unparsable);
                }
                continue;
            }
            let source = match dialect {
                Dialect::V1 => source_file.take().ok_or(Unparsable)?,
                // Unbound `source_file` or `source_timestamp`: UnboundLocalError.
                Dialect::V0_7 => {
                    if source_timestamp.is_none() {
                        return Err(Unparsable);
                    }
                    source_file.clone().ok_or(Unparsable)?
                }
            };
            if dialect == Dialect::V1 {
                source_timestamp = None;
            }
            files.push(PatchedFile {
                source: Some(source),
                target: Some(name.to_owned()),
                binary: false,
                hunks: Vec::new(),
            });
            current = Some(files.len() - 1);
            in_patch_info = false;
            continue;
        }
        if let Some(caps) = p.hunk_header.captures(line) {
            in_patch_info = false;
            let idx = current.ok_or(Unparsable)?;
            let hunk = parse_hunk(&caps, &mut iter)?;
            files[idx].hunks.push(hunk);
            continue;
        }
        if line.starts_with("\\ No newline at end of file") {
            let idx = current.ok_or(Unparsable)?;
            let last = files[idx].hunks.last_mut().ok_or(Unparsable)?;
            last.push_str("\\ No newline at end of file\n");
            continue;
        }
        if line == "\n" {
            if let Some(idx) = current {
                let has_hunks = !files[idx].hunks.is_empty();
                match dialect {
                    Dialect::V1 if has_hunks => {
                        files[idx].hunks.last_mut().expect("has hunks").push('\n');
                        continue;
                    }
                    Dialect::V1 => {}
                    Dialect::V0_7 if has_hunks => {
                        files[idx].hunks.last_mut().expect("has hunks").push('\n');
                        continue;
                    }
                    Dialect::V0_7 => return Err(Unparsable),
                }
            }
        }
        // Anything else is patch info.
        if !in_patch_info {
            current = None;
            in_patch_info = true;
        }
        if let Some(caps) = p.binary.captures(line) {
            let source = caps["source"].to_owned();
            let target = caps.name("target").map(|m| m.as_str().to_owned());
            let target = match dialect {
                Dialect::V1 => Some(target.unwrap_or_else(|| source.clone())),
                Dialect::V0_7 => target,
            };
            source_file = Some(source.clone());
            match current {
                Some(idx) => files[idx].binary = true,
                None => {
                    files.push(PatchedFile { source: Some(source), target, binary: true, hunks: Vec::new() })
                }
            }
            in_patch_info = false;
            current = None;
            continue;
        }
        if line == "GIT binary patch\n" {
            // 0.7.5 crashes with AttributeError and 1.0 raises: both mean "unparsable".
            let idx = current.ok_or(Unparsable)?;
            files[idx].binary = true;
            in_patch_info = false;
            current = None;
            continue;
        }
    }
    Ok(files)
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
