//! Regression and reproduction tests for the rerank (stages 4 and 5). Meta did not release these
//! parts; they follow the original Agentless as `../spec/eval.md` describes it:
//!
//! - **Regression tests**: the tests of the test patch's files that exist at `base_commit` are run
//!   on the original code; those that pass, minus the ones a greedy model call names as tests a
//!   correct fix may legitimately change, are the regression tests. A patch's score is the number
//!   of them that do not pass with it (all of them when it does not apply).
//! - **Reproduction tests**: standalone scripts sampled from the model (one greedy, the rest at a
//!   temperature) that print `Issue reproduced`, `Issue resolved` or `Other issues`. Those that
//!   print `Issue reproduced` on the original code are grouped by normalized text; the largest
//!   groups (ties to the earliest sample) are kept. A patch passes a test when the test prints
//!   `Issue resolved` with it.
//!
//! The pure parts (prompts, parsing, classification, selection) are here; the pipeline runs them
//! against a [`crate::Testbed`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use swerl_reward::ChatMessage;

use super::localize::answer_text;
use super::normalize::normalize_source;

/// What a reproduction script reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReproVerdict {
    /// It printed `Issue reproduced`.
    Reproduced,
    /// It printed `Issue resolved` (and not `Issue reproduced`).
    Resolved,
    /// Anything else: `Other issues`, a crash, a timeout, no output.
    Other,
}

/// Reads a reproduction script's output: `Issue reproduced` wins over `Issue resolved`; a
/// script that printed neither (or timed out) is [`ReproVerdict::Other`].
///
/// ```
/// use swerl_eval::agentless::{ReproVerdict, classify_reproduction};
/// assert_eq!(classify_reproduction("Issue reproduced\n", false), ReproVerdict::Reproduced);
/// assert_eq!(classify_reproduction("ok\nIssue resolved\n", false), ReproVerdict::Resolved);
/// assert_eq!(classify_reproduction("Issue resolved", true), ReproVerdict::Other);
/// ```
pub fn classify_reproduction(output: &str, timed_out: bool) -> ReproVerdict {
    if timed_out {
        ReproVerdict::Other
    } else if output.contains("Issue reproduced") {
        ReproVerdict::Reproduced
    } else if output.contains("Issue resolved") {
        ReproVerdict::Resolved
    } else {
        ReproVerdict::Other
    }
}

/// The prompt that asks for a reproduction script.
pub fn reproduction_messages(problem_statement: &str) -> Vec<ChatMessage> {
    let text = format!(
        "A user reported the following issue in our repository.\n\n\
         --- BEGIN ISSUE ---\n{}\n--- END ISSUE ---\n\n\
         Write one standalone Python script that checks whether this issue is present. It is run \
         as `python script.py` from the repository's root, with the package importable, before \
         and after a fix. The script must:\n\
         - import what it needs and exercise the code the issue is about;\n\
         - print exactly `Issue reproduced` when the behaviour described in the issue happens;\n\
         - print exactly `Issue resolved` when the code behaves as the issue says it should;\n\
         - print exactly `Other issues` when something else goes wrong (catch unexpected \
         exceptions and print it).\n\
         It must finish in a few seconds, need no network and no input, and leave no files \
         behind. Answer with the whole script in one ```python block.",
        problem_statement.trim_end()
    );
    vec![ChatMessage { role: "user".into(), content: text }]
}

/// The script in an answer: the last fenced block marked `python` (or unmarked), from inside
/// `<solution>` when the answer has one. `None` when there is no non-empty block.
///
/// ```
/// use swerl_eval::agentless::extract_python_script;
/// let a = "Here:\n```python\nprint('Issue reproduced')\n```\n";
/// assert_eq!(extract_python_script(a).as_deref(), Some("print('Issue reproduced')\n"));
/// assert_eq!(extract_python_script("no code"), None);
/// ```
pub fn extract_python_script(answer: &str) -> Option<String> {
    let text = answer_text(answer);
    let mut found = None;
    let mut current: Option<(bool, String)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        match current.take() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    let lang = lang.trim().to_ascii_lowercase();
                    current = Some((lang.is_empty() || lang == "python" || lang == "py", String::new()));
                }
            }
            Some((usable, body)) if trimmed == "```" => {
                if usable && !body.trim().is_empty() {
                    found = Some(body);
                }
            }
            Some((usable, mut body)) => {
                body.push_str(line);
                current = Some((usable, body));
            }
        }
    }
    found
}

/// The prompt that asks which regression tests a correct fix may change, and how many of
/// `tests` it offers: names are listed in order while they fit `max_chars`; tests past the
/// budget are not offered (they stay regression tests).
pub fn regression_messages(
    problem_statement: &str,
    tests: &[String],
    max_chars: usize,
) -> (Vec<ChatMessage>, usize) {
    let mut list = String::new();
    let mut offered = 0;
    for t in tests {
        if list.len() + t.len() + 1 > max_chars && offered > 0 {
            break;
        }
        list.push_str(t);
        list.push('\n');
        offered += 1;
    }
    let text = format!(
        "A user reported the following issue in our repository.\n\n\
         --- BEGIN ISSUE ---\n{}\n--- END ISSUE ---\n\n\
         These existing tests pass on the repository as it is now:\n\
         --- BEGIN TESTS ---\n{list}--- END TESTS ---\n\n\
         A correct fix for the issue may change behaviour that some of these tests check on \
         purpose, so they would fail after it without the fix being wrong. List those tests, \
         one per line, copied exactly from the list, in one ``` block. Leave the block empty when \
         a correct fix should keep every one of them passing.",
        problem_statement.trim_end()
    );
    (vec![ChatMessage { role: "user".into(), content: text }], offered)
}

/// The offered tests an answer names (a line equal to a test's name once list markers, quotes and
/// backticks are stripped), in the list's order.
///
/// ```
/// use swerl_eval::agentless::parse_excluded_tests;
/// let offered = ["t.py::a".to_owned(), "t.py::b".to_owned()];
/// assert_eq!(parse_excluded_tests("```\n- `t.py::b`\nt.py::zzz\n```", &offered), ["t.py::b"]);
/// ```
pub fn parse_excluded_tests(answer: &str, offered: &[String]) -> Vec<String> {
    let named: BTreeSet<&str> = answer_text(answer)
        .lines()
        .map(|l| {
            let l = l.trim().trim_start_matches(['-', '*', '+']).trim_start();
            let l = l.trim_start_matches(|c: char| c.is_ascii_digit());
            let l = l.strip_prefix('.').or_else(|| l.strip_prefix(')')).unwrap_or(l);
            l.trim().trim_matches(['`', '"', '\'']).trim()
        })
        .filter(|l| !l.is_empty())
        .collect();
    offered.iter().filter(|t| named.contains(t.as_str())).cloned().collect()
}

/// A kept reproduction test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedReproduction {
    /// `repro-<sample>` of the group's earliest sample.
    pub id: String,
    /// That sample (its script is the one run).
    pub sample: usize,
    /// The samples whose normalized script is the same (the group's vote).
    pub members: Vec<usize>,
}

/// Keeps the `k` largest groups (by normalized script text) of the scripts that reproduce the
/// issue; ties go to the group whose first sample came first. `scripts` is (sample, script,
/// reproduces on the original code).
///
/// ```
/// use swerl_eval::agentless::select_reproductions;
/// let s = |t: &str| Some(t.to_owned());
/// let scripts = [(0, s("print(1)\n"), true), (1, s("print(2)\n"), true), (2, s("print(2)  # same\n"), true), (3, s("x\n"), false)];
/// let kept = select_reproductions(&scripts, 1);
/// assert_eq!((kept[0].sample, kept[0].members.clone()), (1, vec![1, 2]));
/// ```
pub fn select_reproductions(
    scripts: &[(usize, Option<String>, bool)],
    k: usize,
) -> Vec<SelectedReproduction> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (sample, script, reproduces) in scripts {
        if let (Some(script), true) = (script, reproduces) {
            groups.entry(normalize_source("reproduce.py", script)).or_default().push(*sample);
        }
    }
    let mut groups: Vec<Vec<usize>> = groups
        .into_values()
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect();
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    groups
        .into_iter()
        .take(k)
        .map(|members| SelectedReproduction {
            id: format!("repro-{}", members[0]),
            sample: members[0],
            members,
        })
        .collect()
}
