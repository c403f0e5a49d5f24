//! RL instances from SWE-bench records, for trying the trainer on real issues without mining.
//!
//! A SWE-bench record has the issue (`problem_statement`) and the gold `patch`, but not the files.
//! The files are reconstructed from the patch: for each file, the context and removed lines of
//! its hunks, in order, form a partial "before" file (`code_context`), and the context and added
//! lines form the "after" file (`oracle_new_content`), which is exactly the patch applied to the
//! partial file. New files have no "before"; deleted files become empty.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::data::{RlInstance, SkippedRecord};

/// Path -> file content.
pub type FileMap = BTreeMap<String, String>;

#[derive(Deserialize)]
struct Record {
    instance_id: Option<String>,
    problem_statement: Option<String>,
    patch: Option<String>,
}

/// Before/after contents of each file a unified diff touches (see the module docs). Returns an
/// error message for a diff with no file or a malformed hunk header.
pub fn files_from_patch(patch: &str) -> Result<(FileMap, FileMap), String> {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.starts_with("--- ") || i + 1 >= lines.len() || !lines[i + 1].starts_with("+++ ") {
            i += 1;
            continue;
        }
        let old = path_of(&line[4..], "a/");
        let new = path_of(&lines[i + 1][4..], "b/");
        i += 2;
        let (mut b, mut a) = (String::new(), String::new());
        while i < lines.len() && lines[i].starts_with("@@") {
            let (old_len, new_len) =
                hunk_lengths(lines[i]).ok_or_else(|| format!("bad hunk header {:?}", lines[i].trim_end()))?;
            i += 1;
            let (mut seen_old, mut seen_new) = (0, 0);
            let mut last: Option<char> = None;
            while i < lines.len() && (seen_old < old_len || seen_new < new_len || lines[i].starts_with('\\'))
            {
                let l = lines[i];
                match l.chars().next() {
                    Some(' ') | None => {
                        let body = l.get(1..).unwrap_or("\n");
                        let body = if body.is_empty() { "\n" } else { body };
                        b.push_str(body);
                        a.push_str(body);
                        seen_old += 1;
                        seen_new += 1;
                        last = Some(' ');
                    }
                    Some('\n') => {
                        // An empty context line whose leading space was stripped.
                        b.push('\n');
                        a.push('\n');
                        seen_old += 1;
                        seen_new += 1;
                        last = Some(' ');
                    }
                    Some('-') => {
                        b.push_str(&l[1..]);
                        seen_old += 1;
                        last = Some('-');
                    }
                    Some('+') => {
                        a.push_str(&l[1..]);
                        seen_new += 1;
                        last = Some('+');
                    }
                    Some('\\') => {
                        // "\ No newline at end of file": the previous line had no newline.
                        let strip = |s: &mut String| {
                            if s.ends_with('\n') {
                                s.pop();
                            }
                        };
                        match last {
                            Some('-') => strip(&mut b),
                            Some('+') => strip(&mut a),
                            _ => {
                                strip(&mut b);
                                strip(&mut a);
                            }
                        }
                    }
                    Some(_) => break,
                }
                i += 1;
            }
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
        return Err("the patch touches no file".into());
    }
    Ok((before, after))
}

fn path_of(raw: &str, prefix: &str) -> Option<String> {
    let raw = raw.trim_end_matches(['\n', '\r']);
    let raw = raw.split('\t').next().unwrap_or(raw);
    if raw == "/dev/null" {
        return None;
    }
    Some(raw.strip_prefix(prefix).unwrap_or(raw).to_owned())
}

/// `@@ -a,b +c,d @@` -> `(b, d)` (a missing length means 1).
fn hunk_lengths(header: &str) -> Option<(usize, usize)> {
    let mut parts = header.split_whitespace();
    parts.next()?;
    let len = |s: &str| -> Option<usize> {
        match s.split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => Some(1),
        }
    };
    let old = len(parts.next()?.strip_prefix('-')?)?;
    let new = len(parts.next()?.strip_prefix('+')?)?;
    Some((old, new))
}

/// Converts a SWE-bench JSON array (as in `swebench/lite-*.json`) into RL instances; records
/// without an id, issue or usable patch are reported (with their 1-based position as `line`).
pub fn instances_from_swebench_json(text: &str) -> Result<(Vec<RlInstance>, Vec<SkippedRecord>), String> {
    let records: Vec<Record> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of SWE-bench records: {e}"))?;
    let mut instances = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let skip =
            |id: Option<String>, message: String| SkippedRecord { line: i + 1, instance_id: id, message };
        let (Some(id), Some(problem), Some(patch)) = (r.instance_id, r.problem_statement, r.patch) else {
            skipped.push(skip(None, "missing instance_id, problem_statement or patch".into()));
            continue;
        };
        match files_from_patch(&patch) {
            Ok((code_context, oracle_new_content)) => instances.push(RlInstance {
                instance_id: id,
                problem_statement: problem,
                code_context,
                oracle_new_content,
            }),
            Err(message) => skipped.push(skip(Some(id), message)),
        }
    }
    Ok((instances, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -10,4 +10,4 @@ def f():\n     x = 1\n-    return x\n+    return x + 1\n \n def g():\n@@ -40,2 +40,3 @@ def h():\n     pass\n+    # done\n     return\ndiff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n\\ No newline at end of file\n";

    #[test]
    fn reconstructs_partial_files_and_the_oracle() {
        let (before, after) = files_from_patch(PATCH).unwrap();
        assert_eq!(before["src/m.py"], "    x = 1\n    return x\n\ndef g():\n    pass\n    return\n");
        assert_eq!(
            after["src/m.py"],
            "    x = 1\n    return x + 1\n\ndef g():\n    pass\n    # done\n    return\n"
        );
        assert!(!before.contains_key("new.txt"));
        assert_eq!(after["new.txt"], "hello");
    }

    #[test]
    fn the_gold_edit_scores_one_with_the_real_reward() {
        let (before, after) = files_from_patch(PATCH).unwrap();
        let completion = "<think>fix it</think>\n<solution>\n```python\n### src/m.py\n<<<<<<< SEARCH\n    return x\n=======\n    return x + 1\n>>>>>>> REPLACE\n```\n```python\n### src/m.py\n<<<<<<< SEARCH\n    pass\n=======\n    pass\n    # done\n>>>>>>> REPLACE\n```\n```\n### new.txt\n<<<<<<< SEARCH\n\n=======\nhello\n>>>>>>> REPLACE\n```\n</solution>";
        let r = swerl_reward::reward(&before, &after, completion);
        assert!(r > 0.99, "{r}");
    }

    #[test]
    fn bad_records_are_reported() {
        let json =
            r#"[{"instance_id":"a","problem_statement":"p","patch":"not a diff"},{"problem_statement":"p"}]"#;
        let (inst, skipped) = instances_from_swebench_json(json).unwrap();
        assert!(inst.is_empty());
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].instance_id.as_deref(), Some("a"));
        assert!(instances_from_swebench_json("{").is_err());
    }
}
