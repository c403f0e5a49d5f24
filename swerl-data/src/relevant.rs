//! Relevant unchanged files: the files a model should see besides the ones the PR edits.
//!
//! The paper asked Llama-3.1-70B-Instruct which unchanged files are relevant given the PR
//! description and the changed paths; without such files the policy learned to edit every file
//! it was shown. [`HeuristicPredictor`] is a fast default that needs no model: it scores files
//! imported by the changed files, files that changed together with them in recent history, and
//! same-language files in the same directory. [`LlmPredictor`] is the paper's approach behind a
//! [`Completion`] trait, so any model server (vLLM, SGLang, an OpenAI-compatible API, a local
//! model) can be plugged in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lang;

/// Options of relevant-file prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelevantConfig {
    /// Most relevant files added to an instance.
    pub max_files: usize,
    /// Larger files are never added.
    pub max_file_bytes: usize,
    /// First-parent commits before the base scanned for co-changes (0 disables).
    pub co_change_commits: usize,
}

impl Default for RelevantConfig {
    fn default() -> Self {
        Self { max_files: 3, max_file_bytes: 64 * 1024, co_change_commits: 50 }
    }
}

/// Everything a predictor may use about one PR.
#[derive(Debug, Clone, Copy)]
pub struct RelevanceQuery<'a> {
    /// The instance being built.
    pub instance_id: &'a str,
    /// PR title.
    pub title: &'a str,
    /// PR description.
    pub body: &'a str,
    /// Paths the PR changes.
    pub changed_paths: &'a [String],
    /// Contents of the changed files at the base (path -> text).
    pub changed_contents: &'a BTreeMap<String, String>,
    /// Every file at the base with its size in bytes, sorted by path.
    pub repo_files: &'a [(String, usize)],
    /// How often each path changed in the same commit as a changed file, in recent history.
    pub co_changes: &'a BTreeMap<String, u32>,
}

/// Predicts relevant unchanged files. Implementations must be deterministic for a given query
/// if the miner's output is to be.
pub trait RelevantFilesPredictor: Send + Sync {
    /// Paths (existing at the base, not among the changed ones), most relevant first.
    fn predict(&self, query: &RelevanceQuery<'_>) -> Result<Vec<String>>;
}

/// The fast default predictor.
#[derive(Debug, Clone, Default)]
pub struct HeuristicPredictor {
    /// Limits.
    pub config: RelevantConfig,
}

static PY_IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*(?:from\s+(\.*[\w.]*)\s+import\s+([\w., ]+)|import\s+([\w.]+))")
        .expect("valid regex")
});
static JS_IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:from\s+|require\(\s*|import\s+)['"](\.{1,2}/[^'"]+)['"]"#).expect("valid regex")
});
static RUST_MOD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;").expect("valid regex"));
static C_INCLUDE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^\s*#\s*include\s+"([^"]+)""#).expect("valid regex"));
static JAVA_IMPORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*import\s+(?:static\s+)?([\w.]+)\s*;").expect("valid regex"));

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Candidate repository paths a source file imports.
pub(crate) fn imported_paths(path: &str, content: &str) -> Vec<String> {
    let dir = dir_of(path);
    let mut out = Vec::new();
    match lang::language(path) {
        Some("Python") => {
            for c in PY_IMPORT.captures_iter(content) {
                let (module, names) = match (c.get(1), c.get(3)) {
                    (Some(m), _) => (m.as_str(), c.get(2).map(|n| n.as_str()).unwrap_or("")),
                    (None, Some(m)) => (m.as_str(), ""),
                    _ => continue,
                };
                let dots = module.chars().take_while(|&ch| ch == '.').count();
                let rest = &module[dots..];
                let base = if dots > 0 {
                    let mut d = dir.to_owned();
                    for _ in 1..dots {
                        d = dir_of(&d).to_owned();
                    }
                    join(&d, &rest.replace('.', "/"))
                } else {
                    rest.replace('.', "/")
                };
                let mut mods = vec![base.clone()];
                for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    mods.push(join(&base, n));
                }
                for m in mods.into_iter().filter(|m| !m.is_empty()) {
                    out.push(format!("{m}.py"));
                    out.push(format!("{m}/__init__.py"));
                    out.push(format!("src/{m}.py"));
                    out.push(format!("src/{m}/__init__.py"));
                }
            }
        }
        Some("JavaScript" | "TypeScript" | "Vue" | "Svelte") => {
            for c in JS_IMPORT.captures_iter(content) {
                let p = join(dir, &c[1]);
                for ext in ["", ".js", ".ts", ".jsx", ".tsx", ".mjs", "/index.js", "/index.ts"] {
                    out.push(format!("{p}{ext}"));
                }
            }
        }
        Some("Rust") => {
            let stem_dir =
                if path.ends_with("/mod.rs") || path.ends_with("/lib.rs") || path.ends_with("/main.rs") {
                    dir.to_owned()
                } else {
                    path.trim_end_matches(".rs").to_owned()
                };
            for c in RUST_MOD.captures_iter(content) {
                out.push(join(&stem_dir, &format!("{}.rs", &c[1])));
                out.push(join(&stem_dir, &format!("{}/mod.rs", &c[1])));
            }
        }
        Some("C" | "C++" | "CUDA" | "Objective-C") => {
            for c in C_INCLUDE.captures_iter(content) {
                out.push(join(dir, &c[1]));
                out.push(format!("*/{}", &c[1]));
            }
        }
        Some("Java" | "Kotlin" | "Scala") => {
            for c in JAVA_IMPORT.captures_iter(content) {
                let p = c[1].replace('.', "/");
                out.push(format!("*/{p}.java"));
                out.push(format!("*/{p}.kt"));
            }
        }
        _ => {}
    }
    out
}

impl RelevantFilesPredictor for HeuristicPredictor {
    fn predict(&self, q: &RelevanceQuery<'_>) -> Result<Vec<String>> {
        let cfg = &self.config;
        let changed: HashSet<&str> = q.changed_paths.iter().map(String::as_str).collect();
        let eligible = |p: &str, size: usize| {
            size <= cfg.max_file_bytes
                && !changed.contains(p)
                && lang::language(p).is_some()
                && !lang::is_test_path(p)
        };
        let sizes: HashMap<&str, usize> = q.repo_files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        // Suffix lookup for `*/x` candidates (C includes, Java imports).
        let mut scores: BTreeMap<String, f64> = BTreeMap::new();
        let mut add = |p: &str, s: f64| {
            if let Some(&size) = sizes.get(p)
                && eligible(p, size)
            {
                *scores.entry(p.to_owned()).or_default() += s;
            }
        };
        for (path, content) in q.changed_contents {
            for cand in imported_paths(path, content) {
                if let Some(suffix) = cand.strip_prefix("*/") {
                    let suffix = format!("/{suffix}");
                    for (p, _) in q.repo_files.iter().filter(|(p, _)| p.ends_with(&suffix)).take(3) {
                        add(p, 3.0);
                    }
                } else {
                    add(&cand, 3.0);
                }
            }
        }
        for (p, n) in q.co_changes {
            add(p, f64::from((*n).min(5)));
        }
        let dirs: HashSet<(&str, Option<&str>)> =
            q.changed_paths.iter().map(|p| (dir_of(p), lang::language(p))).collect();
        for (p, _) in q.repo_files {
            if dirs.contains(&(dir_of(p), lang::language(p))) {
                add(p, 0.5);
            }
        }
        let mut ranked: Vec<(String, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(cfg.max_files).map(|(p, _)| p).collect())
    }
}

/// A text-completion backend for [`LlmPredictor`].
pub trait Completion: Send + Sync {
    /// Completes `prompt` (a chat user message), returning the model's reply text, or the
    /// backend's own error (an HTTP client's, a model's), kept as the source of
    /// [`Error::Predictor`].
    fn complete(&self, prompt: &str)
    -> std::result::Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F: Fn(&str) -> std::result::Result<String, Box<dyn std::error::Error + Send + Sync>> + Send + Sync>
    Completion for F
{
    fn complete(
        &self,
        prompt: &str,
    ) -> std::result::Result<String, Box<dyn std::error::Error + Send + Sync>> {
        self(prompt)
    }
}

/// The paper's approach: ask a language model which unchanged files are relevant.
#[derive(Debug, Clone)]
pub struct LlmPredictor<C> {
    completion: C,
    /// Most files kept from the reply.
    pub max_files: usize,
    /// Most repository paths listed in the prompt (same-language files first).
    pub max_listed: usize,
}

impl<C: Completion> LlmPredictor<C> {
    /// Wraps a completion backend (3 files kept, 2,000 paths listed).
    pub fn new(completion: C) -> Self {
        Self { completion, max_files: 3, max_listed: 2000 }
    }

    /// The prompt sent for a query.
    pub fn prompt(&self, q: &RelevanceQuery<'_>) -> String {
        let changed: HashSet<&str> = q.changed_paths.iter().map(String::as_str).collect();
        let langs: HashSet<&str> = q.changed_paths.iter().filter_map(|p| lang::language(p)).collect();
        let mut listed: Vec<&str> = q
            .repo_files
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !changed.contains(p) && lang::language(p).is_some_and(|l| langs.contains(l)))
            .collect();
        listed.extend(
            q.repo_files
                .iter()
                .map(|(p, _)| p.as_str())
                .filter(|p| !changed.contains(p) && lang::language(p).is_some_and(|l| !langs.contains(l))),
        );
        listed.truncate(self.max_listed);
        let mut s = String::new();
        s.push_str("You are given a pull request of a software repository: its description, the files it modifies, and the other files of the repository.\n");
        s.push_str("List the files that are NOT modified but that a developer would need to read to make this change (definitions it uses, callers, closely related modules).\n\n");
        s.push_str(&format!("## Pull request\n{}\n\n{}\n\n## Modified files\n", q.title, q.body));
        for p in q.changed_paths {
            s.push_str(p);
            s.push('\n');
        }
        s.push_str("\n## Other files\n");
        for p in listed {
            s.push_str(p);
            s.push('\n');
        }
        s.push_str(&format!(
            "\nAnswer with at most {} paths from the list of other files, one per line, inside a ``` fenced block, most relevant first.\n",
            self.max_files
        ));
        s
    }

    /// Keeps reply lines that are exactly an unchanged repository path.
    pub fn parse(&self, q: &RelevanceQuery<'_>, reply: &str) -> Vec<String> {
        let known: HashSet<&str> = q.repo_files.iter().map(|(p, _)| p.as_str()).collect();
        let body = match reply.split_once("```") {
            Some((_, rest)) => {
                rest.split_once('\n').map(|(_, r)| r).unwrap_or(rest).split("```").next().unwrap_or("")
            }
            None => reply,
        };
        let mut out: Vec<String> = Vec::new();
        for line in body.lines() {
            let p = line.trim().trim_start_matches("- ").trim_start_matches("./");
            if known.contains(p) && !q.changed_paths.iter().any(|c| c == p) && !out.iter().any(|o| o == p) {
                out.push(p.to_owned());
            }
        }
        out.truncate(self.max_files);
        out
    }
}

impl<C: Completion> RelevantFilesPredictor for LlmPredictor<C> {
    fn predict(&self, q: &RelevanceQuery<'_>) -> Result<Vec<String>> {
        let reply = self
            .completion
            .complete(&self.prompt(q))
            .map_err(|source| Error::Predictor { instance_id: q.instance_id.to_owned(), source })?;
        Ok(self.parse(q, &reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(String, usize)> {
        [
            "pkg/a.py",
            "pkg/b.py",
            "pkg/util.py",
            "pkg/__init__.py",
            "other/c.py",
            "tests/test_a.py",
            "docs/x.md",
            "big/huge.py",
        ]
        .iter()
        .map(|p| (p.to_string(), if p.starts_with("big") { 1 << 30 } else { 100 }))
        .collect()
    }

    #[test]
    fn heuristic_prefers_imports_then_cochange() -> anyhow::Result<()> {
        let files = files();
        let changed = vec!["pkg/a.py".to_string()];
        let contents: BTreeMap<String, String> =
            [("pkg/a.py".to_string(), "from pkg.util import helper\nimport big.huge\n".to_string())].into();
        let co: BTreeMap<String, u32> =
            [("other/c.py".to_string(), 2), ("tests/test_a.py".to_string(), 9)].into();
        let q = RelevanceQuery {
            instance_id: "o__r-1",
            title: "t",
            body: "b",
            changed_paths: &changed,
            changed_contents: &contents,
            repo_files: &files,
            co_changes: &co,
        };
        let p = HeuristicPredictor::default().predict(&q)?;
        assert_eq!(p, ["pkg/util.py", "other/c.py", "pkg/__init__.py"]);
        let llm = LlmPredictor::new(|prompt: &str| {
            assert!(prompt.contains("pkg/a.py"));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                "Sure:\n```\npkg/b.py\nnot/there.py\npkg/a.py\nother/c.py\n```".to_string(),
            )
        });
        assert_eq!(llm.predict(&q)?, ["pkg/b.py", "other/c.py"]);
        let failing = LlmPredictor::new(|_: &str| {
            Err::<String, Box<dyn std::error::Error + Send + Sync>>("server down".into())
        });
        let err = failing.predict(&q).unwrap_err();
        assert!(err.to_string().contains("server down") && err.to_string().contains(q.instance_id), "{err}");
        Ok(())
    }

    #[test]
    fn import_resolution() {
        assert!(imported_paths("src/x/y.js", "import a from '../z/w'").contains(&"src/z/w.js".to_string()));
        assert!(imported_paths("src/lib.rs", "mod parser;").contains(&"src/parser.rs".to_string()));
        assert!(
            imported_paths("pkg/sub/m.py", "from ..core import thing").contains(&"pkg/core.py".to_string())
        );
    }
}
