//! RL instances from SWE-bench records, for trying the trainer on real issues without mining.
//!
//! A SWE-bench record has the issue (`problem_statement`) and the gold `patch`, but not the files.
//! The files are reconstructed from the patch by [`swerl_reward::unidiff::partial_files`] (the
//! reward's own diff parser): the context and removed lines of each file's hunks form a partial
//! "before" file (`code_context`), the context and added lines the "after" file
//! (`oracle_new_content`), which is exactly the patch applied to the partial file.

use serde::Deserialize;
use swerl_reward::{RlInstance, SkippedRecord};

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Record {
    instance_id: Option<String>,
    problem_statement: Option<String>,
    patch: Option<String>,
}

/// Converts SWE-bench records (a JSON array as in `swebench/lite-*.json`, or JSON lines) into RL
/// instances. Records without an id, issue or usable patch are reported (with their 1-based
/// position as `line`) and skipped; text that is neither form is [`Error::InvalidRecord`]
/// naming `source`.
pub fn rl_instances_from_swebench(
    text: &str,
    source: &std::path::Path,
) -> Result<(Vec<RlInstance>, Vec<SkippedRecord>)> {
    let invalid = |line: u64, e: serde_json::Error| Error::InvalidRecord {
        path: source.to_owned(),
        line,
        message: format!("not a SWE-bench record: {e}"),
    };
    let records: Vec<(usize, Record)> = if text.trim_start().starts_with('[') {
        let rows: Vec<Record> = serde_json::from_str(text).map_err(|e| invalid(e.line() as u64, e))?;
        rows.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect()
    } else {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            rows.push((i + 1, serde_json::from_str(line).map_err(|e| invalid(i as u64 + 1, e))?));
        }
        rows
    };
    let mut instances = Vec::new();
    let mut skipped = Vec::new();
    for (line, r) in records {
        let (Some(id), Some(problem), Some(patch)) = (r.instance_id, r.problem_statement, r.patch) else {
            let message = "missing instance_id, problem_statement or patch".to_owned();
            skipped.push(SkippedRecord::new(line, None, message));
            continue;
        };
        match swerl_reward::unidiff::partial_files(&patch) {
            Ok((code_context, oracle_new_content)) => instances.push(RlInstance {
                instance_id: id,
                problem_statement: problem,
                code_context,
                oracle_new_content,
            }),
            Err(e) => skipped.push(SkippedRecord::new(line, Some(id), e.to_string())),
        }
    }
    Ok((instances, skipped))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const PATCH: &str = "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -10,4 +10,4 @@ def f():\n     x = 1\n-    return x\n+    return x + 1\n \n def g():\n";

    #[test]
    fn the_gold_edit_scores_one_with_the_real_reward() {
        let row = serde_json::json!({"instance_id": "o__r-1", "problem_statement": "p", "patch": PATCH});
        let (inst, skipped) = rl_instances_from_swebench(&format!("[{row}]"), Path::new("x.json")).unwrap();
        assert!(skipped.is_empty());
        let completion = "<think>fix it</think>\n<solution>\n```python\n### src/m.py\n<<<<<<< SEARCH\n    return x\n=======\n    return x + 1\n>>>>>>> REPLACE\n```\n</solution>";
        let r = swerl_reward::reward(&inst[0].code_context, &inst[0].oracle_new_content, completion);
        assert_eq!(r, 1.0);
        // JSON lines give the same instances.
        let (lines, _) = rl_instances_from_swebench(&format!("{row}\n"), Path::new("x.jsonl")).unwrap();
        assert_eq!(lines, inst);
    }

    #[test]
    fn bad_records_are_reported() {
        let json =
            r#"[{"instance_id":"a","problem_statement":"p","patch":"not a diff"},{"problem_statement":"p"}]"#;
        let (inst, skipped) = rl_instances_from_swebench(json, Path::new("x.json")).unwrap();
        assert!(inst.is_empty());
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].instance_id.as_deref(), Some("a"));
        assert_eq!(skipped[1].line, 2);
        let err = rl_instances_from_swebench("{", Path::new("bad.jsonl")).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl"), "{err}");
    }
}
