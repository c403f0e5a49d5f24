//! Python's own reading of Python files for the rerank: `ast.parse` (a syntax check of every
//! edited file, as upstream drops samples whose edit does not parse) and `ast.unparse` with
//! docstrings removed (upstream's normalization: comments, docstrings and formatting vanish).
//! One interpreter process per batch of files; parsing does not run the code, so it needs no
//! sandbox. Files an old interpreter cannot parse (Python 2 code) fall back to the pure-Rust
//! [`normalize_source`](super::normalize_source).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Reads stdin (a JSON list of sources), writes one JSON list of `{"ok": text}` or
/// `{"err": message}`.
const SCRIPT: &str = r#"
import ast, json, sys
sys.setrecursionlimit(10000)
def strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree
out = []
for src in json.load(sys.stdin):
    try:
        out.append({"ok": ast.unparse(strip_docstrings(ast.parse(src)))})
    except SyntaxError as e:
        out.append({"err": "line %s: %s" % (e.lineno, e.msg)})
    except (RecursionError, MemoryError, ValueError) as e:
        out.append({"err": type(e).__name__})
json.dump(out, sys.stdout)
"#;

#[derive(Deserialize)]
struct Reply {
    ok: Option<String>,
    err: Option<String>,
}

/// A Python interpreter (3.9 or newer: `ast.unparse`) used to parse and normalize sources.
#[derive(Debug, Clone)]
pub struct PythonAst {
    python: PathBuf,
}

impl PythonAst {
    /// The newest of Python 3.13 down to 3.9 found on this machine (pyenv, uv, conda, PATH).
    pub fn find() -> Option<Self> {
        ["3.13", "3.12", "3.11", "3.10", "3.9"]
            .into_iter()
            .find_map(|v| crate::python::find_interpreter(v).ok())
            .map(|i| Self { python: i.path })
    }

    /// Uses `python` (3.9 or newer).
    pub fn with_interpreter(python: &Path) -> Self {
        Self { python: python.to_owned() }
    }

    /// The interpreter.
    pub fn interpreter(&self) -> &Path {
        &self.python
    }

    /// Each source normalized (`Ok`), or the reason it does not parse (`Err`), in order.
    pub fn normalize(&self, sources: &[&str]) -> Result<Vec<std::result::Result<String, String>>> {
        let input = serde_json::to_vec(sources).expect("strings serialise");
        let mut child = Command::new(&self.python)
            .args(["-I", "-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output()?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(Error::Command {
                step: "normalize Python sources".into(),
                command: format!("{} -c <normalizer>", self.python.display()),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let replies: Vec<Reply> = serde_json::from_slice(&out.stdout).map_err(|e| Error::Command {
            step: "normalize Python sources".into(),
            command: format!("{} -c <normalizer>", self.python.display()),
            status: "unreadable output".into(),
            stderr: e.to_string(),
        })?;
        Ok(replies
            .into_iter()
            .map(|r| match (r.ok, r.err) {
                (Some(text), _) => Ok(text),
                (None, err) => Err(err.unwrap_or_else(|| "unknown error".into())),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalizes_and_reports_syntax_errors() {
        let Some(ast) = PythonAst::find() else {
            panic!("a Python interpreter 3.9 or newer is required (pyenv)");
        };
        let sources = [
            "def f():\n    \"\"\"Doc.\"\"\"\n    return (1 +\n            2)  # sum\n",
            "def f():\n    return 1 + 2\n",
            "class C:\n    'doc'\n",
            "def f(:\n",
            "print 'python 2'\n",
        ];
        let got = ast.normalize(&sources).unwrap();
        assert_eq!(got[0].as_deref(), Ok("def f():\n    return 1 + 2"));
        assert_eq!(got[0], got[1], "formatting, comments and docstrings vanish");
        assert_eq!(got[2].as_deref(), Ok("class C:\n    pass"));
        assert!(got[3].as_ref().is_err_and(|e| e.starts_with("line 1:")), "{:?}", got[3]);
        assert!(got[4].is_err());
        assert_eq!(ast.normalize(&[]).unwrap(), Vec::<std::result::Result<String, String>>::new());
    }
}
