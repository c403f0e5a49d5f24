//! The answer a perfect model would give: the oracle change written as SEARCH/REPLACE edits in
//! the paper's response format (the target of supervised fine-tuning, the SWE-RL paper's SFT
//! baseline).
//!
//! Each changed region of a file becomes one edit whose SEARCH part is as short as it can be
//! while occurring exactly once in the file as the edits before it have left it: the changed
//! lines, plus the fewest unchanged lines of context around them. Every edit is checked by
//! applying it with the reward's own rules ([`apply_edits`]), so the answer reproduces
//! `oracle_new_content` exactly and scores 1.0.

use std::collections::BTreeMap;

use crate::apply::apply_edits;
use crate::difflib::{SequenceMatcher, Tag};
use crate::instance::RlInstance;
use crate::parse::{Edit, FileEdits, SOLUTION_END, SOLUTION_START, THINK_END, THINK_START};

/// Why an oracle change cannot be written as an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The oracle deletes a file: SEARCH/REPLACE edits cannot express that.
    #[error("`{path}` is deleted by the oracle change; edits cannot delete a file")]
    DeletedFile {
        /// The file.
        path: String,
    },
    /// A path or a file's text would break the answer format (a newline in the path, an edit
    /// block marker or one of the four tags in the text).
    #[error("`{path}` cannot be written in the answer format: {reason}")]
    Unwritable {
        /// The file.
        path: String,
        /// What in it breaks the format.
        reason: String,
    },
    /// The oracle changes nothing.
    #[error("the oracle change is empty")]
    NoChange,
}

/// The oracle change of `instance` as SEARCH/REPLACE edits, one [`FileEdits`] per changed file in
/// path order.
pub fn oracle_edits(instance: &RlInstance) -> Result<Vec<FileEdits>, OracleError> {
    let mut files = Vec::new();
    for (path, new) in &instance.oracle_new_content {
        let old = instance.code_context.get(path);
        if old == Some(new) {
            continue;
        }
        let edits = file_edits(path, old.map(String::as_str), new)?;
        files.push(FileEdits { path: path.clone(), edits });
    }
    if files.is_empty() {
        return Err(OracleError::NoChange);
    }
    Ok(files)
}

/// The paper's response for `instance`: a short `<think>` naming the files changed, then a
/// `<solution>` with the [`oracle_edits`]. Scoring it against the instance gives reward 1.0.
pub fn oracle_answer(instance: &RlInstance) -> Result<String, OracleError> {
    let files = oracle_edits(instance)?;
    for file in &files {
        check_writable(file)?;
    }
    let edits: usize = files.iter().map(|f| f.edits.len()).sum();
    let names: Vec<String> = files.iter().map(|f| format!("`{}`", f.path)).collect();
    let mut out = format!(
        "{THINK_START}\nThe issue is fixed by changing {}: {edits} edit{}.\n{THINK_END}\n{SOLUTION_START}\n",
        names.join(", "),
        if edits == 1 { "" } else { "s" }
    );
    for file in &files {
        let fence = if file.path.ends_with(".py") { "python" } else { "" };
        for edit in &file.edits {
            out.push_str(&format!(
                "```{fence}\n### {}\n<<<<<<< SEARCH\n{}\n=======\n{}\n>>>>>>> REPLACE\n```\n",
                file.path, edit.search, edit.replace
            ));
        }
    }
    out.push_str(SOLUTION_END);
    Ok(out)
}

/// Refuses what the block syntax or the tag counting would misread.
fn check_writable(file: &FileEdits) -> Result<(), OracleError> {
    let bad =
        |reason: &str| Err(OracleError::Unwritable { path: file.path.clone(), reason: reason.to_owned() });
    if file.path.contains('\n') || file.path.is_empty() {
        return bad("the path is empty or holds a newline");
    }
    for edit in &file.edits {
        for text in [&edit.search, &edit.replace] {
            if let Some(tag) =
                [THINK_START, THINK_END, SOLUTION_START, SOLUTION_END].iter().find(|t| text.contains(*t))
            {
                return bad(&format!("the text holds the tag {tag}"));
            }
        }
        if edit.search.contains("\n=======\n") || edit.replace.contains("\n>>>>>>> REPLACE\n```") {
            return bad("the text holds an edit block marker");
        }
    }
    Ok(())
}

/// Lines of `text`, each with its `\n` (the last one may lack it).
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The edits turning `old` (`None`: the file does not exist) into `new`.
fn file_edits(path: &str, old: Option<&str>, new: &str) -> Result<Vec<Edit>, OracleError> {
    let Some(old) = old.filter(|o| !o.is_empty()) else {
        // An empty SEARCH creates the file (or fills an empty one).
        return Ok(vec![Edit { search: String::new(), replace: new.to_owned() }]);
    };
    if new.is_empty() {
        return Err(OracleError::DeletedFile { path: path.to_owned() });
    }
    let (a, b) = (lines(old), lines(new));
    let hunks: Vec<(usize, usize, usize, usize)> = SequenceMatcher::with_autojunk(&a, &b, false)
        .opcodes()
        .into_iter()
        .filter(|op| op.tag != Tag::Equal)
        .map(|op| (op.i1, op.i2, op.j1, op.j2))
        .collect();
    let mut edits = Vec::with_capacity(hunks.len());
    // The text as the edits so far left it: b[..j1] ++ a[i1..] at each hunk.
    for &(i1, i2, j1, j2) in &hunks {
        let running = b[..j1].concat() + &a[i1..].concat();
        let target = b[..j2].concat() + &a[i2..].concat();
        let edit = minimal_edit(path, &running, &target, (&b[..j1], &a[i1..i2], &b[j1..j2], &a[i2..]))
            .unwrap_or_else(|| Edit { search: running.clone(), replace: target.clone() });
        edits.push(edit);
    }
    // The whole file in one edit when the hunks' edits do not reproduce it (never seen; a
    // safety net checked like the rest).
    let check = |edits: &[Edit]| applied(path, old, edits).as_deref() == Some(new);
    if check(&edits) {
        return Ok(edits);
    }
    let whole = vec![Edit { search: old.to_owned(), replace: new.to_owned() }];
    if check(&whole) {
        return Ok(whole);
    }
    Err(OracleError::Unwritable {
        path: path.to_owned(),
        reason: "no edit reproduces the oracle file".to_owned(),
    })
}

/// The edit with the least context (before-context preferred at equal size) that turns
/// `running` into `target` with the reward's rules: `(kept, removed, added, after)` are the
/// lines before the hunk (already edited), the lines it removes, the lines it adds and the
/// lines after it.
fn minimal_edit(
    path: &str,
    running: &str,
    target: &str,
    (kept, removed, added, after): (&[&str], &[&str], &[&str], &[&str]),
) -> Option<Edit> {
    for total in 0..=(kept.len() + after.len()) {
        for ctx_before in (0..=total.min(kept.len())).rev() {
            let ctx_after = total - ctx_before;
            if ctx_after > after.len() {
                continue;
            }
            let head = kept[kept.len() - ctx_before..].concat();
            let tail = after[..ctx_after].concat();
            let mut search = head.clone() + &removed.concat() + &tail;
            let mut replace = head + &added.concat() + &tail;
            // Blocks are written without the last line's newline when both parts end in one.
            if search.ends_with('\n') && replace.ends_with('\n') {
                search.pop();
                replace.pop();
            }
            if search.is_empty() || search == replace {
                continue;
            }
            let edit = Edit { search, replace };
            if applied(path, running, std::slice::from_ref(&edit)).as_deref() == Some(target) {
                return Some(edit);
            }
        }
    }
    None
}

/// `text` after `edits` by the reward's rules, or `None` when one does not apply.
fn applied(path: &str, text: &str, edits: &[Edit]) -> Option<String> {
    let context = BTreeMap::from([(path.to_owned(), text.to_owned())]);
    let files = [FileEdits { path: path.to_owned(), edits: edits.to_vec() }];
    apply_edits(&context, &files).ok()?.pop().map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::score::reward;

    fn instance(old: &[(&str, &str)], new: &[(&str, &str)]) -> RlInstance {
        let map = |v: &[(&str, &str)]| v.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect();
        RlInstance {
            instance_id: "o__r-1".into(),
            problem_statement: "fix it".into(),
            code_context: map(old),
            oracle_new_content: map(new),
        }
    }

    fn check(inst: &RlInstance) -> String {
        let answer = oracle_answer(inst).unwrap();
        assert_eq!(reward(&inst.code_context, &inst.oracle_new_content, &answer), 1.0, "{answer}");
        answer
    }

    #[test]
    fn a_one_line_change_searches_that_line_only() {
        let inst = instance(&[("a.py", "x = 1\ny = 2\nz = 3\n")], &[("a.py", "x = 1\ny = 20\nz = 3\n")]);
        let edits = oracle_edits(&inst).unwrap();
        assert_eq!(edits[0].edits, [Edit { search: "y = 2".into(), replace: "y = 20".into() }]);
        check(&inst);
    }

    #[test]
    fn repeated_lines_get_just_enough_context() {
        let old = "def f():\n    return 1\n\ndef g():\n    return 1\n";
        let new = "def f():\n    return 1\n\ndef g():\n    return 2\n";
        let inst = instance(&[("a.py", old)], &[("a.py", new)]);
        let edits = oracle_edits(&inst).unwrap();
        assert_eq!(edits[0].edits[0].search, "def g():\n    return 1");
        check(&inst);
    }

    #[test]
    fn a_prefix_of_a_longer_line_is_not_unique() {
        // "\nx = 1" also starts "\nx = 10": the SEARCH needs the next line.
        let inst = instance(&[("a.py", "x = 1\nx = 10\n")], &[("a.py", "x = 2\nx = 10\n")]);
        let answer = check(&inst);
        assert!(answer.contains("SEARCH\nx = 1\nx = 10\n======="), "{answer}");
    }

    #[test]
    fn deletions_insertions_new_and_emptied_files() {
        // Deleting lines needs a context line (an empty REPLACE would leave a blank line).
        check(&instance(&[("a.py", "a\nb\nc\n")], &[("a.py", "a\nc\n")]));
        check(&instance(&[("a.py", "a\nb\n")], &[("a.py", "a\nb\nc\n")]));
        check(&instance(&[("a.py", "a\nb")], &[("a.py", "a\nb\n")]));
        check(&instance(&[], &[("new/mod.py", "print(1)\n")]));
        check(&instance(&[("e.py", "")], &[("e.py", "x\n")]));
        check(&instance(&[("a.py", "a\n"), ("b.py", "b\n")], &[("a.py", "A\n"), ("b.py", "b\n")]));
        assert_eq!(
            oracle_edits(&instance(&[("a.py", "a\n")], &[("a.py", "")])),
            Err(OracleError::DeletedFile { path: "a.py".into() })
        );
        assert_eq!(
            oracle_edits(&instance(&[("a.py", "a\n")], &[("a.py", "a\n")])),
            Err(OracleError::NoChange)
        );
    }

    #[test]
    fn texts_that_break_the_format_are_refused() {
        let inst = instance(&[("a.py", "a\n")], &[("a.py", "s = '</think>'\n")]);
        assert!(matches!(oracle_answer(&inst), Err(OracleError::Unwritable { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Files from a tiny alphabet of lines (so that lines repeat and prefixes collide),
        /// edited at random: the answer always scores 1.0.
        #[test]
        fn every_oracle_answer_scores_one(
            old in prop::collection::vec(prop::sample::select(vec!["a", "a1", "b", "", "    a", "c"]), 0..25),
            ops in prop::collection::vec((0usize..30, 0usize..3, prop::sample::select(vec!["a", "b", "z", "a1", ""])), 1..6),
            trailing_newline in any::<bool>(),
        ) {
            let mut new: Vec<&str> = old.clone();
            for (at, kind, line) in ops {
                let at = at.min(new.len());
                match kind {
                    0 => new.insert(at, line),
                    1 if at < new.len() => { new.remove(at); }
                    _ if at < new.len() => new[at] = line,
                    _ => new.push(line),
                }
            }
            let text = |v: &[&str]| {
                let mut t = v.join("\n");
                if trailing_newline && !v.is_empty() { t.push('\n'); }
                t
            };
            let (old, new) = (text(&old), text(&new));
            prop_assume!(old != new && !new.is_empty());
            let inst = instance(&[("m.py", &old)], &[("m.py", &new)]);
            let answer = oracle_answer(&inst).unwrap();
            prop_assert_eq!(reward(&inst.code_context, &inst.oracle_new_content, &answer), 1.0, "{}", answer);
        }
    }
}
