//! What a test patch touches: the files to reset and the test directives upstream derives.

use std::sync::LazyLock;

use regex::Regex;

/// Upstream's `get_test_directives`: paths of `diff --git a/X b/Y` headers (Y), minus files with
/// non-test extensions; django's become dotted module labels (`tests/` and `.py` stripped).
pub fn test_directives(repo: &str, test_patch: &str) -> Vec<String> {
    static HEADER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"diff --git a/.* b/(.*)").unwrap());
    let exts = &crate::specs::table().non_test_exts;
    let paths = HEADER
        .captures_iter(test_patch)
        .map(|c| c[1].to_owned())
        .filter(|d| !exts.iter().any(|e| d.ends_with(e.as_str())));
    if repo == "django/django" {
        paths
            .map(|d| {
                let d = d.strip_suffix(".py").unwrap_or(&d);
                let d = d.strip_prefix("tests/").unwrap_or(d);
                d.replace('/', ".")
            })
            .collect()
    } else {
        paths.collect()
    }
}

/// Upstream's `get_modified_files`: source paths (`--- a/X`) of a patch's files, skipping new
/// files (`--- /dev/null`).
pub fn modified_files(patch: &str) -> Vec<String> {
    let lines: Vec<&str> = patch.split('\n').collect();
    let mut out = Vec::new();
    for pair in lines.windows(2) {
        let (Some(src), true) = (pair[0].strip_prefix("--- "), pair[1].starts_with("+++ ")) else {
            continue;
        };
        let src = src.split('\t').next().unwrap_or_default().trim_end_matches('\r');
        if let Some(path) = src.strip_prefix("a/") {
            out.push(path.to_owned());
        }
    }
    out
}

/// Every path a patch touches (both sides of each `diff --git` header).
pub fn touched_paths(patch: &str) -> Vec<String> {
    static HEADER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?m)^diff --git a/(\S+) b/(\S+)").unwrap());
    let mut out = Vec::new();
    for c in HEADER.captures_iter(patch) {
        for p in [&c[1], &c[2]] {
            if !out.iter().any(|o: &String| o == p) {
                out.push(p.to_owned());
            }
        }
    }
    for p in modified_files(patch) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/tests/auth_tests/test_validators.py b/tests/auth_tests/test_validators.py\n--- a/tests/auth_tests/test_validators.py\n+++ b/tests/auth_tests/test_validators.py\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/tests/static/config.toml b/tests/static/config.toml\nnew file mode 100644\n--- /dev/null\n+++ b/tests/static/config.toml\n@@ -0,0 +1 @@\n+x\n";

    #[test]
    fn directives_like_upstream() {
        assert_eq!(test_directives("django/django", PATCH), ["auth_tests.test_validators"]);
        assert_eq!(test_directives("pallets/flask", PATCH), ["tests/auth_tests/test_validators.py"]);
        assert_eq!(modified_files(PATCH), ["tests/auth_tests/test_validators.py"]);
        assert_eq!(touched_paths(PATCH).len(), 2);
    }
}
