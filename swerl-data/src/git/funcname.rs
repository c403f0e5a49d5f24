//! Hunk-header function context as git's built-in diff drivers compute it.
//!
//! libgit2 only applies a language's driver when the repository's attributes ask for it, so
//! without them every hunk gets the default context (the last line starting with a letter,
//! `_` or `$`). GitHub's diffs (and so SWE-bench's patches) use the language drivers, e.g. for
//! Python the nearest enclosing `class`/`def` line even when indented. This module recomputes
//! the context of each `@@ -a,b +c,d @@` line from the file's old content.

use std::sync::LazyLock;

use regex::Regex;

/// Git's cap on the function-context length, in bytes.
const MAX_CONTEXT: usize = 80;

struct Driver {
    patterns: Vec<Regex>,
}

fn driver(patterns: &[&str]) -> Driver {
    Driver { patterns: patterns.iter().map(|p| Regex::new(p).expect("valid regex")).collect() }
}

static PYTHON: LazyLock<Driver> = LazyLock::new(|| driver(&[r"^[ \t]*((class|(async[ \t]+)?def)[ \t].*)$"]));
static RUBY: LazyLock<Driver> = LazyLock::new(|| driver(&[r"^[ \t]*((class|module|def)[ \t].*)$"]));
static GO: LazyLock<Driver> = LazyLock::new(|| {
    driver(&[
        r"^[ \t]*(func[ \t]*.*(\{[ \t]*)?)$",
        r"^[ \t]*(type[ \t].*(struct|interface)[ \t]*(\{[ \t]*)?)$",
    ])
});
static RUST: LazyLock<Driver> = LazyLock::new(|| {
    driver(&[
        r#"^[\t ]*((pub(\([^)]+\))?[\t ]+)?((async|const|unsafe|extern([\t ]+"[^"]+"))[\t ]+)?(struct|enum|union|mod|trait|fn|impl|macro_rules!)[< \t]+[^;]*)$"#,
    ])
});

fn driver_for(path: &str) -> Option<&'static Driver> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "py" | "pyi" => &PYTHON,
        "rb" => &RUBY,
        "go" => &GO,
        "rs" => &RUST,
        _ => return None,
    })
}

fn truncate(s: &str) -> &str {
    let s = s.trim_end();
    if s.len() <= MAX_CONTEXT {
        return s;
    }
    let mut end = MAX_CONTEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end()
}

/// The function context for a hunk starting at 1-based old line `start`: the nearest line
/// above it that matches the driver.
fn context<'a>(driver: &Driver, old_lines: &[&'a str], start: usize) -> Option<&'a str> {
    let upto = start.saturating_sub(1).min(old_lines.len());
    for line in old_lines[..upto].iter().rev() {
        for p in &driver.patterns {
            if let Some(c) = p.captures(line) {
                let m = c.get(1).map_or(*line, |m| m.as_str());
                return Some(truncate(m));
            }
        }
    }
    None
}

/// Rewrites the hunk headers of one file's diff with the language driver's function context.
/// Diffs of files without a known driver, or without old content, are returned unchanged.
pub fn rewrite_hunk_headers(path: &str, old_content: Option<&str>, patch: &str) -> String {
    let (Some(driver), Some(old)) = (driver_for(path), old_content) else {
        return patch.to_owned();
    };
    let old_lines: Vec<&str> = old.lines().collect();
    let mut out = String::with_capacity(patch.len());
    for line in patch.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("@@ -")
            && let Some(end) = rest.find(" @@")
        {
            let ranges = &rest[..end];
            let start: usize = ranges.split([',', ' ']).next().and_then(|s| s.parse().ok()).unwrap_or(0);
            out.push_str("@@ -");
            out.push_str(ranges);
            out.push_str(" @@");
            if let Some(c) = context(driver, &old_lines, start).filter(|c| !c.is_empty()) {
                out.push(' ');
                out.push_str(c);
            }
            out.push('\n');
            continue;
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_context_is_the_enclosing_def_even_indented() {
        let old = "import x\n\nclass A:\n    def f(self):\n        a = 1\n        b = 2\n        c = 3\n";
        let patch = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -5,3 +5,3 @@ class A:\n         a = 1\n-        b = 2\n+        b = 3\n";
        let got = rewrite_hunk_headers("m.py", Some(old), patch);
        assert!(got.contains("@@ -5,3 +5,3 @@ def f(self):\n"), "{got}");
        // Unknown languages keep libgit2's default context.
        assert_eq!(rewrite_hunk_headers("m.txt", Some(old), patch), patch);
    }

    #[test]
    fn no_context_above_the_first_definition() {
        let patch = "@@ -1,2 +1,2 @@ junk\n-a\n+b\n";
        assert_eq!(rewrite_hunk_headers("m.py", Some("a\nb\n"), patch), "@@ -1,2 +1,2 @@\n-a\n+b\n");
        assert_eq!(truncate(&"x".repeat(100)).len(), 80);
    }
}
