//! Repair: the paper's prompt (swerl-reward's) with the localized files, and each sample's
//! SEARCH/REPLACE edits parsed and applied with the reward's own parser and rules, turned into a
//! `git diff`. A sample that fails keeps its reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use swerl_reward::{ChatMessage, FileEdits, RlInstance, apply_edits, build_messages, git_diff, parse_output};

use super::localize::answer_text;
use super::normalize::normalized_change;

/// How repair completions are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// The reward's format, as the paper's model answers: `<think>` and `<solution>` exactly
    /// once each, a non-empty thought, the edits inside `<solution>`.
    #[default]
    Thinking,
    /// Edits read from `<solution>` when there is one, otherwise from the whole completion (upstream
    /// without thinking mode, for models that do not reason in tags). The edit rules are the same.
    Plain,
}

/// The repair prompt and which files it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPrompt {
    /// The messages (swerl-reward's `build_messages`: system prompt, issue, files, instructions).
    pub messages: Vec<ChatMessage>,
    /// The files shown, in order.
    pub shown: Vec<String>,
    /// Localized files left out because they would pass the budget.
    pub skipped: Vec<String>,
}

/// Builds the repair prompt from the localized files (path, content) in order, repeated paths
/// once. Files are added in order while the file blocks fit `max_file_chars`; a file that would
/// pass it is skipped (later, smaller ones may still fit); when none fits, the first alone is
/// shown (as upstream does with its token budget).
pub fn repair_prompt(
    instance_id: &str,
    problem_statement: &str,
    files: &[(String, String)],
    max_file_chars: usize,
) -> RepairPrompt {
    let mut context = BTreeMap::new();
    let (mut shown, mut skipped) = (Vec::new(), Vec::new());
    let mut used = 0;
    for (path, content) in files {
        if context.contains_key(path) {
            continue;
        }
        let cost = content.len() + path.len() + 16;
        if used + cost <= max_file_chars {
            used += cost;
            shown.push(path.clone());
        } else {
            skipped.push(path.clone());
        }
        context.insert(path.clone(), content.clone());
    }
    if shown.is_empty() && !skipped.is_empty() {
        shown.push(skipped.remove(0));
    }
    context.retain(|p, _| shown.contains(p));
    let instance = RlInstance {
        instance_id: instance_id.to_owned(),
        problem_statement: problem_statement.to_owned(),
        code_context: context,
        oracle_new_content: BTreeMap::new(),
    };
    let order: Vec<&str> = shown.iter().map(String::as_str).collect();
    RepairPrompt { messages: build_messages(&instance, &order), shown, skipped }
}

/// What one repair sample produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RepairOutcome {
    /// The edits parsed and applied.
    Patch {
        /// The parsed edits, per file.
        edits: Vec<FileEdits>,
        /// The `git diff` of the change.
        patch: String,
        /// The majority-vote key ([`normalized_change`]); empty when the change is only
        /// comments, docstrings or blank lines.
        normalized: String,
    },
    /// The completion is badly formatted or an edit does not apply.
    Invalid {
        /// Why (the reward's format error, in words).
        reason: String,
    },
}

impl RepairOutcome {
    /// The patch, when there is one.
    pub fn patch(&self) -> Option<&str> {
        match self {
            Self::Patch { patch, .. } => Some(patch),
            Self::Invalid { .. } => None,
        }
    }
}

/// Parses a completion with the reward's rules (`<think>`/`<solution>`, SEARCH/REPLACE blocks,
/// each SEARCH anchored at a line start and found in the file as edited so far) and applies it to
/// `code_context` (the files the prompt showed).
///
/// With [`AnswerFormat::Plain`] the answer ([`answer_text`]) is parsed as if it were the
/// `<solution>` of a well-formed completion.
pub fn apply_completion(
    completion: &str,
    code_context: &BTreeMap<String, String>,
    format: AnswerFormat,
) -> RepairOutcome {
    let wrapped;
    let text = match format {
        AnswerFormat::Thinking => completion,
        AnswerFormat::Plain => {
            wrapped = format!("<think>\n-\n</think>\n<solution>\n{}\n</solution>", answer_text(completion));
            &wrapped
        }
    };
    let parsed = match parse_output(text) {
        Ok(p) => p,
        Err(e) => return RepairOutcome::Invalid { reason: e.to_string() },
    };
    let new_content = match apply_edits(code_context, &parsed.files) {
        Ok(c) => c,
        Err(e) => return RepairOutcome::Invalid { reason: e.to_string() },
    };
    let new_map: BTreeMap<&str, &str> = new_content.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let patch = git_diff(code_context, &new_map);
    if patch.is_empty() {
        return RepairOutcome::Invalid { reason: "the edits change nothing".into() };
    }
    let normalized = normalized_change(code_context, &new_content);
    RepairOutcome::Patch { edits: parsed.files, patch, normalized }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BTreeMap<String, String> {
        BTreeMap::from([("calc/__init__.py".to_owned(), "def add(a, b):\n    return a - b\n".to_owned())])
    }

    fn completion(search: &str, replace: &str) -> String {
        format!(
            "<think>add subtracts</think>\n<solution>\n```python\n### calc/__init__.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n</solution>"
        )
    }

    #[test]
    fn outcomes_table() {
        let ok = apply_completion(
            &completion("    return a - b", "    return a + b"),
            &ctx(),
            AnswerFormat::Thinking,
        );
        let RepairOutcome::Patch { patch, normalized, edits } = &ok else { panic!("{ok:?}") };
        assert_eq!(edits[0].path, "calc/__init__.py");
        assert!(patch.starts_with("diff --git a/calc/__init__.py b/calc/__init__.py\n"));
        assert!(patch.contains("-    return a - b\n+    return a + b\n"));
        assert!(normalized.contains("+    return a + b"));
        let cases: &[(String, &str)] = &[
            ("no tags".into(), "expected exactly one `<think>` tag, found 0"),
            (completion("return a - b", "return a + b"), "SEARCH block not found"),
            (completion("    return a - b", "    return a - b"), "SEARCH and REPLACE are identical"),
            ("<think>t</think><solution>nothing</solution>".into(), "no SEARCH/REPLACE block"),
        ];
        for (text, reason) in cases {
            match apply_completion(text, &ctx(), AnswerFormat::Thinking) {
                RepairOutcome::Invalid { reason: r } => assert!(r.contains(reason), "{r} vs {reason}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // A comment-only change applies but has an empty vote key.
        let c = apply_completion(
            &completion("    return a - b", "    return a - b  # hm"),
            &ctx(),
            AnswerFormat::Thinking,
        );
        assert!(matches!(&c, RepairOutcome::Patch { normalized, .. } if normalized.is_empty()), "{c:?}");
    }

    #[test]
    fn plain_answers_need_no_tags() {
        let tagged = completion("    return a - b", "    return a + b");
        let bare = tagged.split_once("<solution>\n").unwrap().1.replace("\n</solution>", "");
        let after_think = format!("<think>hm</think>\n{bare}");
        for text in [&tagged, &bare, &after_think] {
            let out = apply_completion(text, &ctx(), AnswerFormat::Plain);
            assert!(out.patch().is_some_and(|p| p.contains("+    return a + b")), "{text}: {out:?}");
        }
        let strict = apply_completion(&bare, &ctx(), AnswerFormat::Thinking);
        assert!(matches!(strict, RepairOutcome::Invalid { .. }));
        let none = apply_completion("no edits here", &ctx(), AnswerFormat::Plain);
        assert!(
            matches!(none, RepairOutcome::Invalid { reason } if reason.contains("no SEARCH/REPLACE block"))
        );
    }

    #[test]
    fn prompt_budget() {
        let files = vec![
            ("big.py".to_owned(), "x".repeat(1000)),
            ("small.py".to_owned(), "y = 1\n".to_owned()),
            ("small.py".to_owned(), "dup".to_owned()),
        ];
        let p = repair_prompt("i", "Bug.", &files, 100);
        assert_eq!(
            (p.shown.clone(), p.skipped.clone()),
            (vec!["small.py".to_owned()], vec!["big.py".to_owned()])
        );
        assert_eq!(p.messages[0].content, swerl_reward::SYSTEM_PROMPT);
        assert!(p.messages[1].content.contains("### small.py\n```python\ny = 1\n```"));
        assert!(!p.messages[1].content.contains("xxxx"));
        let p = repair_prompt("i", "Bug.", &files[..1], 10);
        assert_eq!(p.shown, ["big.py"], "the first file alone when none fits");
        assert!(p.messages[1].content.ends_with(swerl_reward::EDIT_INSTRUCTIONS));
    }
}
