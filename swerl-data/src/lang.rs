//! File classification: programming language, test files (SWE-bench's rule), documentation,
//! and noise (lock files, generated code).

/// Programming language of a path by extension or file name, if it is a programming-language
/// file (markup, data and documentation are not).
pub fn language(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name {
        "Makefile" | "makefile" | "GNUmakefile" => return Some("Makefile"),
        "Dockerfile" => return Some("Dockerfile"),
        _ => {}
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "py" | "pyi" | "pyx" => "Python",
        "rs" => "Rust",
        "go" => "Go",
        "java" => "Java",
        "kt" | "kts" => "Kotlin",
        "scala" | "sc" => "Scala",
        "js" | "mjs" | "cjs" | "jsx" => "JavaScript",
        "ts" | "tsx" | "mts" | "cts" => "TypeScript",
        "c" | "h" => "C",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" | "ipp" => "C++",
        "cs" => "C#",
        "fs" | "fsx" => "F#",
        "rb" => "Ruby",
        "php" => "PHP",
        "swift" => "Swift",
        "m" | "mm" => "Objective-C",
        "dart" => "Dart",
        "lua" => "Lua",
        "pl" | "pm" => "Perl",
        "r" => "R",
        "jl" => "Julia",
        "hs" => "Haskell",
        "ml" | "mli" => "OCaml",
        "ex" | "exs" => "Elixir",
        "erl" | "hrl" => "Erlang",
        "clj" | "cljs" => "Clojure",
        "zig" => "Zig",
        "nim" => "Nim",
        "sh" | "bash" | "zsh" => "Shell",
        "ps1" => "PowerShell",
        "sql" => "SQL",
        "vue" => "Vue",
        "svelte" => "Svelte",
        "groovy" | "gradle" => "Groovy",
        "cu" | "cuh" => "CUDA",
        "f90" | "f" | "f95" => "Fortran",
        "v" | "sv" => "Verilog",
        "vhd" | "vhdl" => "VHDL",
        _ => return None,
    })
}

/// Test files. SWE-bench's collector puts a file in `test_patch` when its path contains `test`,
/// `tests`, `e2e` or `testing`; applied as a substring that rule would send pytest's own
/// `src/_pytest/...` code to the tests, which SWE-bench's shipped instances do not. This rule
/// reproduces the split of every one of the 725 files of SWE-bench Lite (test + dev): a
/// directory named `test`, `tests`, `testing`, `e2e`, `__tests__` or `spec`, or a file named
/// `test_*`, `*_test.*`, `*_tests.*`, `test.*`, `tests.*`, `*.test.*`, `*.spec.*` or
/// `conftest.py`.
pub fn is_test_path(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().unwrap_or("");
    if parts.iter().any(|c| matches!(*c, "test" | "tests" | "testing" | "e2e" | "__tests__" | "spec")) {
        return true;
    }
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    name.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || stem == "test"
        || stem == "tests"
        || name.contains(".test.")
        || name.contains(".spec.")
        || name == "conftest.py"
}

/// Documentation and changelog files (kept out of the code patch by default).
pub fn is_doc_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let stem = name.split('.').next().unwrap_or(name);
    matches!(
        stem,
        "changelog"
            | "changes"
            | "history"
            | "news"
            | "release-notes"
            | "releasenotes"
            | "authors"
            | "contributors"
    ) || lower.starts_with("doc/")
        || lower.starts_with("docs/")
        || lower.contains("/docs/")
        || [".md", ".rst", ".txt", ".adoc", ".asciidoc"].iter().any(|e| name.ends_with(e))
}

/// Lock files: dependency resolutions nobody writes by hand.
pub fn is_lock_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "Cargo.lock"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "poetry.lock"
            | "Pipfile.lock"
            | "uv.lock"
            | "pdm.lock"
            | "Gemfile.lock"
            | "composer.lock"
            | "go.sum"
            | "mix.lock"
            | "pubspec.lock"
            | "Podfile.lock"
            | "packages.lock.json"
            | "flake.lock"
            | "bun.lockb"
    ) || name.ends_with(".lock")
}

/// Generated files recognisable by path or by a generated-code marker near the top.
pub fn is_generated(path: &str, content: Option<&str>) -> bool {
    let lower = path.to_ascii_lowercase();
    let by_path = lower.ends_with(".min.js")
        || lower.ends_with(".min.css")
        || lower.ends_with(".map")
        || lower.ends_with(".pb.go")
        || lower.ends_with("_pb2.py")
        || lower.ends_with("_pb2_grpc.py")
        || lower.ends_with(".pb.h")
        || lower.ends_with(".pb.cc")
        || lower.ends_with(".g.dart")
        || lower.ends_with(".designer.cs")
        || lower.ends_with(".snap")
        || ["node_modules/", "vendor/", "dist/", "third_party/", "__snapshots__/"]
            .iter()
            .any(|d| lower.starts_with(d) || lower.contains(&format!("/{d}")));
    by_path
        || content.is_some_and(|c| {
            let head: String = c.lines().take(5).collect::<Vec<_>>().join("\n");
            head.contains("@generated") || head.contains("DO NOT EDIT") || head.contains("Code generated by")
        })
}

/// Files whose versions are bumped by release tooling.
pub fn is_manifest(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "package.json"
            | "Cargo.toml"
            | "pyproject.toml"
            | "setup.py"
            | "setup.cfg"
            | "pom.xml"
            | "build.gradle"
            | "build.gradle.kts"
            | "gradle.properties"
            | "VERSION"
            | "version.txt"
            | "version.py"
            | "_version.py"
            | "__version__.py"
            | "Chart.yaml"
            | "mix.exs"
            | "pubspec.yaml"
    ) || name.ends_with(".gemspec")
        || name.ends_with(".csproj")
        || name.ends_with(".podspec")
}

/// Whether every changed line of a diff is a version string (a version bump).
pub fn is_version_bump(patch: &str) -> bool {
    let mut any = false;
    for line in patch.lines() {
        if line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        let Some(body) = line.strip_prefix('+').or_else(|| line.strip_prefix('-')) else {
            continue;
        };
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        any = true;
        let lower = body.to_ascii_lowercase();
        let looks_like_version = lower.contains("version") || {
            // A bare version literal such as `1.2.3` or `"1.2.3",`.
            let t = lower.trim_matches(|c: char| c == '"' || c == '\'' || c == ',' || c == ' ');
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') && t.contains('.')
        };
        if !looks_like_version {
            return false;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(language("src/a/b.py"), Some("Python"));
        assert_eq!(language("README.md"), None);
        assert!(
            is_test_path("tests/test_x.py") && is_test_path("pkg/e2e/run.go") && !is_test_path("src/x.py")
        );
        assert!(
            is_test_path("test_requests.py") && is_test_path("a/b_test.go") && is_test_path("web/x.spec.ts")
        );
        assert!(!is_test_path("src/_pytest/python.py") && !is_test_path("src/contest.py"));
        assert!(is_doc_path("CHANGELOG.rst") && is_doc_path("docs/conf.py") && !is_doc_path("src/x.py"));
        assert!(is_lock_file("Cargo.lock") && is_lock_file("web/yarn.lock") && !is_lock_file("src/lock.py"));
        assert!(is_generated("api/x.pb.go", None) && is_generated("a.py", Some("# @generated by tool\n")));
        assert!(!is_generated("a.py", Some("import os\n")));
    }

    #[test]
    fn version_bumps() {
        assert!(is_version_bump(
            "--- a/p\n+++ b/p\n@@ -1 +1 @@\n-  \"version\": \"1.0.0\",\n+  \"version\": \"1.0.1\",\n"
        ));
        assert!(!is_version_bump("@@ -1 +1 @@\n-  \"version\": \"1.0.0\",\n+  \"name\": \"x\",\n"));
        assert!(!is_version_bump(""));
    }
}
