//! File localization: a prompt showing the issue and the repository tree, the model's answer
//! read back as paths (only real paths survive), and several samples merged by vote.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use swerl_reward::ChatMessage;

use super::structure::{RepoStructure, SplitMix64};

/// How one localization prompt is drawn: how many files to ask for, the tree's indentation and
/// whether its levels are shuffled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizationVariant {
    /// At most this many files are asked for.
    pub max_files: usize,
    /// Spaces per tree level.
    pub indent: usize,
    /// Shuffle each tree level with this seed (`None`: sorted).
    pub shuffle_seed: Option<u64>,
}

impl LocalizationVariant {
    /// The greedy prompt: 5 files, indent 4, sorted tree.
    pub const GREEDY: Self = Self { max_files: 5, indent: 4, shuffle_seed: None };

    /// Sample `index` of `samples`: the greedy prompt when there is one sample, otherwise (as
    /// upstream) 2 to 5 files, indent 2 or 4 and a shuffled tree, drawn from `seed` and `index`.
    pub fn for_sample(index: usize, samples: usize, seed: u64) -> Self {
        if samples <= 1 {
            return Self::GREEDY;
        }
        let mut rng = SplitMix64(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let max_files = 2 + rng.below(4);
        let indent = if rng.below(2) == 0 { 2 } else { 4 };
        Self { max_files, indent, shuffle_seed: Some(rng.next_u64()) }
    }
}

/// The localization prompt: one user message with the issue, the tree and the answer format.
pub fn localization_messages(
    problem_statement: &str,
    structure: &RepoStructure,
    variant: &LocalizationVariant,
) -> Vec<ChatMessage> {
    let tree = structure.render_tree(variant.indent, variant.shuffle_seed);
    let n = variant.max_files;
    let text = format!(
        "Here is an issue reported against our repository:\n\n<issue>\n{}\n</issue>\n\n\
         This is the repository's structure:\n\n<structure>\n{}</structure>\n\n\
         Which files would one need to edit to resolve the issue? Give the full path of each file \
         (from the repository root, as the structure implies), at most {n} files, one per line, \
         most important first, inside one fenced block, for instance:\n\n\
         ```\npath/to/first_file.py\npath/to/second_file.py\n```\n\
         Write only the fenced block.",
        problem_statement.trim_end(),
        tree,
    );
    vec![ChatMessage::user(text)]
}

/// The answer part of a completion: inside `<solution>` when there is one, otherwise after the
/// last `</think>`, otherwise all of it.
pub fn answer_text(completion: &str) -> &str {
    if let Some((_, rest)) = completion.split_once("<solution>") {
        return rest.split_once("</solution>").map_or(rest, |(inside, _)| inside);
    }
    completion.rsplit_once("</think>").map_or(completion, |(_, after)| after)
}

/// The paths a localization answer names, in order, without repeats, keeping only those that
/// are files of `structure`. Lines inside fenced blocks are read when there are any, otherwise
/// every line; bullets (`-`, `*`, `+`), numbering (`1.`, `2)`), backticks, quotes and a leading
/// `./` are stripped first.
pub fn parse_file_list(completion: &str, structure: &RepoStructure) -> Vec<String> {
    let answer = answer_text(completion);
    let mut fenced = Vec::new();
    let mut inside = false;
    for line in answer.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            fenced.push(line);
        }
    }
    let lines: Vec<&str> = if fenced.is_empty() { answer.lines().collect() } else { fenced };
    let mut found: Vec<String> = Vec::new();
    for line in lines {
        let path = clean_path_line(line);
        if structure.contains(path) && !found.iter().any(|f| f == path) {
            found.push(path.to_owned());
        }
    }
    found
}

fn clean_path_line(line: &str) -> &str {
    let mut s = line.trim();
    s = s.trim_start_matches(['-', '*', '+']).trim_start();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && s[digits..].starts_with(['.', ')']) {
        s = s[digits + 1..].trim_start();
    }
    s = s.trim_matches(|c: char| c == '`' || c == '"' || c == '\'' || c.is_whitespace());
    s.strip_prefix("./").unwrap_or(s)
}

/// Merges several samples' file lists: ranked by the number of samples naming a file, ties by
/// first appearance (earlier sample, then earlier line), the first `top_k` kept.
pub fn merge_localizations(samples: &[Vec<String>], top_k: usize) -> Vec<String> {
    let mut votes: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut order = 0;
    for sample in samples {
        let mut seen: Vec<&str> = Vec::new();
        for path in sample {
            if seen.contains(&path.as_str()) {
                continue;
            }
            seen.push(path);
            let entry = votes.entry(path).or_insert((0, order));
            entry.0 += 1;
            order += 1;
        }
    }
    let mut ranked: Vec<(&str, (usize, usize))> = votes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    ranked.into_iter().take(top_k).map(|(p, _)| p.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoStructure {
        RepoStructure::from_files([("pkg/a.py", ""), ("pkg/b.py", ""), ("c.py", "")])
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, &[&str])] = &[
            ("```\npkg/a.py\nc.py\n```", &["pkg/a.py", "c.py"]),
            ("Files:\n```text\n- pkg/b.py\n* `c.py`\n```\nalso pkg/a.py", &["pkg/b.py", "c.py"]),
            ("1. pkg/a.py\n2) ./c.py\n3. nothere.py", &["pkg/a.py", "c.py"]),
            ("<think>maybe pkg/b.py</think>\n```\npkg/a.py\npkg/a.py\n```", &["pkg/a.py"]),
            ("<think>x</think><solution>\n```\nc.py\n```\n</solution>", &["c.py"]),
            ("```\na.py\nPKG/A.PY\npkg/a.py is the one\n```", &[]),
            ("", &[]),
        ];
        for (answer, want) in cases {
            assert_eq!(parse_file_list(answer, &repo()), *want, "{answer:?}");
        }
    }

    /// (samples, k, merged).
    type MergeCase<'a> = (&'a [&'a [&'a str]], usize, &'a [&'a str]);

    #[test]
    fn merge_table() {
        let s = |v: &[&str]| v.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        let cases: &[MergeCase<'_>] = &[
            // Votes first.
            (&[&["a", "b"], &["b"], &["c", "b"]], 5, &["b", "a", "c"]),
            // Equal votes: first appearance (sample order, then line order).
            (&[&["a", "b"], &["b", "a"]], 5, &["a", "b"]),
            (&[&["x"], &["y", "z"]], 2, &["x", "y"]),
            // A repeat inside one sample is one vote.
            (&[&["a", "a", "a"], &["b"], &["b"]], 5, &["b", "a"]),
            (&[], 3, &[]),
        ];
        for (samples, k, want) in cases {
            let samples: Vec<Vec<String>> = samples.iter().map(|v| s(v)).collect();
            assert_eq!(merge_localizations(&samples, *k), s(want), "{samples:?}");
        }
    }

    #[test]
    fn prompt_variants() {
        assert_eq!(LocalizationVariant::for_sample(0, 1, 9), LocalizationVariant::GREEDY);
        for i in 0..20 {
            let v = LocalizationVariant::for_sample(i, 4, 9);
            assert!((2..=5).contains(&v.max_files) && [2, 4].contains(&v.indent) && v.shuffle_seed.is_some());
            assert_eq!(v, LocalizationVariant::for_sample(i, 4, 9));
        }
        let m = localization_messages("It breaks.\n", &repo(), &LocalizationVariant::GREEDY);
        assert_eq!(m.len(), 1);
        assert!(m[0].content.contains("<issue>\nIt breaks.\n</issue>"));
        assert!(m[0].content.contains("c.py\npkg/\n    a.py\n    b.py\n</structure>"));
        assert!(m[0].content.contains("at most 5 files"));
    }
}
