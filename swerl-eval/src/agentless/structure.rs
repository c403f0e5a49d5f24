//! The repository at `base_commit`: its Python files read from git, and for each file the classes
//! (with their methods) and top-level functions, with 1-based inclusive line spans.
//!
//! The spans come from a small deterministic scanner of `class`/`def` lines and indentation that
//! knows about strings (triple-quoted included), comments, brackets and backslash continuations,
//! so a `def` inside a docstring or a call's arguments is not taken for a definition. It is an
//! approximation of Python's `ast` (upstream Agentless reads `ast`): decorators are not part of a
//! span, nested functions and nested classes are not listed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::checkout::git;
use crate::error::{Error, Result};

/// A function or method: its name and 1-based inclusive line span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// The name after `def`.
    pub name: String,
    /// The `def` line.
    pub start: usize,
    /// The last line of its body.
    pub end: usize,
}

/// A top-level class with its methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassDef {
    /// The name after `class`.
    pub name: String,
    /// The `class` line.
    pub start: usize,
    /// The last line of its body.
    pub end: usize,
    /// Functions defined directly in the class body, in order.
    pub methods: Vec<FunctionDef>,
}

/// What a Python file defines at its top level, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonOutline {
    /// Top-level classes.
    pub classes: Vec<ClassDef>,
    /// Top-level functions.
    pub functions: Vec<FunctionDef>,
}

/// One file of the repository structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    /// The path from the repository root, `/`-separated.
    pub path: String,
    /// The file's text (lossy UTF-8).
    pub content: String,
    /// Its classes and functions.
    pub outline: PythonOutline,
}

/// The Python files of a repository at one commit, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoStructure {
    /// The files, sorted by path.
    pub files: Vec<RepoFile>,
}

impl RepoStructure {
    /// The structure of in-memory files (sorted by path; non-Python files get an empty outline).
    pub fn from_files<P: Into<String>, C: Into<String>>(files: impl IntoIterator<Item = (P, C)>) -> Self {
        let mut files: Vec<RepoFile> = files
            .into_iter()
            .map(|(p, c)| {
                let (path, content) = (p.into(), c.into());
                let outline =
                    if path.ends_with(".py") { outline_python(&content) } else { PythonOutline::default() };
                RepoFile { path, content, outline }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        Self { files }
    }

    /// Upstream Agentless Mini's view: `.py` files whose path has no component starting with
    /// `test`, unless `keep_tests` (upstream keeps them for pytest's own repository).
    pub fn read(clone: &Path, commit: &str, keep_tests: bool) -> Result<Self> {
        let listing =
            git(clone, &["ls-tree", "-r", "-z", "--full-tree", commit], "list files at base_commit")?;
        let mut wanted = Vec::new();
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else { continue };
            let mut parts = meta.split(' ');
            let (mode, kind, oid) = (parts.next(), parts.next(), parts.next());
            if kind != Some("blob") || mode == Some("120000") || !is_candidate(path, keep_tests) {
                continue;
            }
            if let Some(oid) = oid {
                wanted.push((path.to_owned(), oid.to_owned()));
            }
        }
        let contents = cat_blobs(clone, wanted.iter().map(|(_, oid)| oid.as_str()))?;
        Ok(Self::from_files(wanted.into_iter().map(|(p, _)| p).zip(contents)))
    }

    /// The file at `path`.
    pub fn get(&self, path: &str) -> Option<&RepoFile> {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).ok().map(|i| &self.files[i])
    }

    /// True when `path` is one of the files.
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The tree of directories and files, one name per line, each level indented by `indent`
    /// spaces, directories with a trailing `/`. Sorted by name, or shuffled at each level by
    /// `shuffle_seed` (the paper's sampling diversity).
    pub fn render_tree(&self, indent: usize, shuffle_seed: Option<u64>) -> String {
        let mut root = Dir::default();
        for f in &self.files {
            let mut node = &mut root;
            let mut parts = f.path.split('/').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    node.files.push(part.to_owned());
                } else {
                    node = node.dirs.entry(part.to_owned()).or_default();
                }
            }
        }
        let mut out = String::new();
        let mut rng = shuffle_seed.map(SplitMix64);
        root.render(0, indent, &mut rng, &mut out);
        out
    }
}

fn is_candidate(path: &str, keep_tests: bool) -> bool {
    path.ends_with(".py") && (keep_tests || !path.split('/').any(|c| c.starts_with("test")))
}

/// Reads blobs by object id with one `git cat-file --batch`.
fn cat_blobs<'a>(clone: &Path, oids: impl Iterator<Item = &'a str>) -> Result<Vec<String>> {
    let input: String = oids.map(|o| format!("{o}\n")).collect();
    let count = input.lines().count();
    let mut child = Command::new("git")
        .arg("-C")
        .arg(clone)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut out = Vec::with_capacity(count);
    let bad = |what: String| Error::Command {
        step: "read files at base_commit".into(),
        command: "git cat-file --batch".into(),
        status: "unexpected output".into(),
        stderr: what,
    };
    for _ in 0..count {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let size: usize = header
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| header.split(' ').nth(1) == Some("blob"))
            .ok_or_else(|| bad(header.trim_end().to_owned()))?;
        let mut buf = vec![0; size + 1];
        reader.read_exact(&mut buf)?;
        buf.pop();
        out.push(String::from_utf8_lossy(&buf).into_owned());
    }
    writer.join().map_err(|_| bad("writer thread panicked".into()))??;
    child.wait()?;
    Ok(out)
}

#[derive(Default)]
struct Dir {
    dirs: BTreeMap<String, Dir>,
    files: Vec<String>,
}

impl Dir {
    fn render(&self, depth: usize, indent: usize, rng: &mut Option<SplitMix64>, out: &mut String) {
        let mut entries: Vec<(&str, Option<&Dir>)> = self
            .dirs
            .iter()
            .map(|(n, d)| (n.as_str(), Some(d)))
            .chain(self.files.iter().map(|n| (n.as_str(), None)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        if let Some(rng) = rng {
            rng.shuffle(&mut entries);
        }
        for (name, dir) in entries {
            out.push_str(&" ".repeat(depth * indent));
            out.push_str(name);
            if let Some(dir) = dir {
                out.push_str("/\n");
                dir.render(depth + 1, indent, rng, out);
            } else {
                out.push('\n');
            }
        }
    }
}

/// A tiny deterministic generator (SplitMix64), so a seed gives the same prompt everywhere.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Scanner state carried from one physical line to the next.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineState {
    /// Inside a string: its quote and whether it is triple-quoted.
    pub(crate) string: Option<(char, bool)>,
    /// Open brackets.
    pub(crate) depth: usize,
    /// The line ended with a backslash outside a string.
    pub(crate) continued: bool,
}

impl LineState {
    /// True when the next physical line starts a logical line.
    pub(crate) fn at_statement_start(&self) -> bool {
        self.string.is_none() && self.depth == 0 && !self.continued
    }
}

/// Advances the scanner over one line (without its newline).
fn scan_line(line: &str, st: LineState) -> LineState {
    scan_line_comment(line, st).0
}

/// [`scan_line`], also giving the byte offset where a comment starts, if the line has one.
pub(crate) fn scan_line_comment(line: &str, mut st: LineState) -> (LineState, Option<usize>) {
    st.continued = false;
    let mut comment = None;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        if let Some((q, triple)) = st.string {
            if c == '\\' {
                i += 2;
                continue;
            }
            if c == q && (!triple || (at(i + 1) == Some(q) && at(i + 2) == Some(q))) {
                st.string = None;
                i += if triple { 3 } else { 1 };
                continue;
            }
            i += 1;
            continue;
        }
        match c {
            '#' => {
                comment = Some(offset);
                break;
            }
            '"' | '\'' => {
                let triple = at(i + 1) == Some(c) && at(i + 2) == Some(c);
                st.string = Some((c, triple));
                i += if triple { 3 } else { 1 };
                continue;
            }
            '(' | '[' | '{' => st.depth += 1,
            ')' | ']' | '}' => st.depth = st.depth.saturating_sub(1),
            '\\' if i + 1 == chars.len() => st.continued = true,
            _ => {}
        }
        i += 1;
    }
    if let Some((_, false)) = st.string {
        // A one-line string cannot span lines without a backslash.
        if !line.ends_with('\\') {
            st.string = None;
        }
    }
    (st, comment)
}

/// `def name` / `async def name` / `class name` at the start of a stripped line.
fn definition(stripped: &str) -> Option<(bool, &str)> {
    let (is_class, rest) = if let Some(r) = stripped.strip_prefix("class ") {
        (true, r)
    } else if let Some(r) = stripped.strip_prefix("def ") {
        (false, r)
    } else if let Some(r) = stripped.strip_prefix("async def ") {
        (false, r)
    } else {
        return None;
    };
    let rest = rest.trim_start();
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    (end > 0).then(|| (is_class, &rest[..end]))
}

/// An open definition while scanning.
struct Open {
    indent: usize,
    is_class: bool,
    name: String,
    start: usize,
    /// The enclosing open definition's index in the stack, if any.
    nested_in: Option<usize>,
}

/// Classes (with methods) and top-level functions of Python source, with line spans.
///
/// ```
/// let src = "class A:\n    def f(self):\n        return 1\n\n\ndef g():\n    '''def not_me():'''\n    pass\n";
/// let o = swerl_eval::agentless::outline_python(src);
/// assert_eq!((o.classes[0].name.as_str(), o.classes[0].start, o.classes[0].end), ("A", 1, 3));
/// assert_eq!((o.classes[0].methods[0].start, o.classes[0].methods[0].end), (2, 3));
/// assert_eq!((o.functions[0].name.as_str(), o.functions[0].start, o.functions[0].end), ("g", 6, 8));
/// ```
pub fn outline_python(source: &str) -> PythonOutline {
    let mut outline = PythonOutline::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut methods = Vec::new();
    let mut last_code_line = 0;
    let mut st = LineState::default();
    for (n, line) in source.lines().enumerate() {
        let lineno = n + 1;
        let logical_start = st.at_statement_start();
        let stripped = line.trim_start();
        let blank = stripped.is_empty() || stripped.starts_with('#');
        if logical_start && !blank {
            let indent = line.len() - stripped.len();
            while stack.last().is_some_and(|o| o.indent >= indent) {
                let o = stack.pop().expect("non-empty");
                close(&mut outline, &mut methods, &stack, o, last_code_line);
            }
            if let Some((is_class, name)) = definition(stripped) {
                let nested_in = stack.len().checked_sub(1);
                stack.push(Open { indent, is_class, name: name.to_owned(), start: lineno, nested_in });
            }
        }
        if !blank || !logical_start {
            last_code_line = lineno;
        }
        st = scan_line(line, st);
    }
    while let Some(o) = stack.pop() {
        close(&mut outline, &mut methods, &stack, o, last_code_line);
    }
    outline.classes.sort_by_key(|c| c.start);
    outline.functions.sort_by_key(|f| f.start);
    for c in &mut outline.classes {
        c.methods.sort_by_key(|m| m.start);
    }
    outline
}

/// Records a finished definition: top-level classes and functions, and functions directly in a
/// top-level class (closed before their class, so parked in `methods` until it closes).
fn close(outline: &mut PythonOutline, methods: &mut Vec<FunctionDef>, stack: &[Open], o: Open, end: usize) {
    let end = end.max(o.start);
    match (o.nested_in, o.is_class) {
        (None, true) => outline.classes.push(ClassDef {
            name: o.name,
            start: o.start,
            end,
            methods: std::mem::take(methods),
        }),
        (None, false) => outline.functions.push(FunctionDef { name: o.name, start: o.start, end }),
        (Some(0), false) if stack.len() == 1 && stack[0].is_class => {
            methods.push(FunctionDef { name: o.name, start: o.start, end });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(o: &PythonOutline) -> Vec<(String, usize, usize)> {
        let mut v = Vec::new();
        for c in &o.classes {
            v.push((c.name.clone(), c.start, c.end));
            for m in &c.methods {
                v.push((format!("{}.{}", c.name, m.name), m.start, m.end));
            }
        }
        v.extend(o.functions.iter().map(|f| (f.name.clone(), f.start, f.end)));
        v
    }

    /// (source, [(name, start, end)]).
    type Case<'a> = (&'a str, &'a [(&'a str, usize, usize)]);

    #[test]
    fn outline_table() {
        let cases: &[Case<'_>] = &[
            ("def f():\n    pass\n", &[("f", 1, 2)]),
            ("async def f(x):\n    await x\n\nx = 1\n", &[("f", 1, 2)]),
            // Trailing blank lines and comments do not extend a span.
            ("def f():\n    pass\n\n# c\n\ndef g(): return 1\n", &[("f", 1, 2), ("g", 6, 6)]),
            // A docstring that mentions def, and a multi-line string at column 0.
            ("def f():\n    \"\"\"\ndef fake():\n\"\"\"\n    return 1\n", &[("f", 1, 5)]),
            // Arguments over several lines; a dedented bracket continuation.
            ("def f(a,\nb):\n    return (1,\n2)\ny = 0\n", &[("f", 1, 4)]),
            // Methods, a nested function (not listed) and a decorated method.
            (
                "class A(B):\n    x = 1\n\n    def m(self):\n        def inner():\n            pass\n        return inner\n\n    @property\n    def p(self):\n        return 2\n\n\ndef top():\n    pass\n",
                &[("A", 1, 11), ("A.m", 4, 7), ("A.p", 10, 11), ("top", 14, 15)],
            ),
            // A '#' inside a string is not a comment; a backslash continuation.
            ("def f():\n    s = '#'\n    t = 1 + \\\n2\n", &[("f", 1, 4)]),
            ("class  Spaced :\n  pass\n", &[("Spaced", 1, 2)]),
            ("defx = 1\nclassy = 2\n", &[]),
        ];
        for (src, want) in cases {
            let want: Vec<(String, usize, usize)> =
                want.iter().map(|(n, s, e)| ((*n).to_owned(), *s, *e)).collect();
            assert_eq!(spans(&outline_python(src)), want, "{src:?}");
        }
    }

    #[test]
    fn tree_is_sorted_and_shuffle_is_deterministic() {
        let s = RepoStructure::from_files([("b/x.py", ""), ("a.py", ""), ("b/c/y.py", ""), ("README", "")]);
        assert_eq!(
            s.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["README", "a.py", "b/c/y.py", "b/x.py"]
        );
        assert_eq!(s.render_tree(2, None), "README\na.py\nb/\n  c/\n    y.py\n  x.py\n");
        assert_eq!(s.render_tree(4, Some(7)), s.render_tree(4, Some(7)));
        let shuffled = s.render_tree(4, Some(7));
        let mut lines: Vec<&str> = shuffled.lines().map(str::trim).collect();
        lines.sort_unstable();
        assert_eq!(lines, ["README", "a.py", "b/", "c/", "x.py", "y.py"]);
    }

    #[test]
    fn reads_python_files_from_git_without_tests() {
        let d = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok =
                Command::new("git").arg("-C").arg(d.path()).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q", "-b", "main"]);
        for (p, c) in [
            ("pkg/mod.py", "def f():\n    pass\n"),
            ("pkg/tests/test_m.py", "x"),
            ("test_top.py", "y"),
            ("setup.cfg", "z"),
        ] {
            fs_err::create_dir_all(d.path().join(p).parent().unwrap()).unwrap();
            fs_err::write(d.path().join(p), c).unwrap();
        }
        run(&["add", "-A"]);
        run(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]);
        let s = RepoStructure::read(d.path(), "HEAD", false).unwrap();
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[0].path, "pkg/mod.py");
        assert_eq!(s.files[0].outline.functions[0], FunctionDef { name: "f".into(), start: 1, end: 2 });
        let all = RepoStructure::read(d.path(), "HEAD", true).unwrap();
        let paths: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["pkg/mod.py", "pkg/tests/test_m.py", "test_top.py"]);
        assert_eq!(all.get("test_top.py").unwrap().content, "y");
    }
}
