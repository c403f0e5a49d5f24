//! What every subcommand's tests share: running the binary, reading its output, writing inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The `swerl` binary, with a fixed log filter and terminal width (outputs do not depend on the
/// caller's environment).
pub(crate) fn swerl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swerl"));
    c.env_remove("RUST_LOG").env("COLUMNS", "100");
    c
}

/// Runs `swerl` with `args`.
pub(crate) fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    swerl().args(args).output().expect("runs swerl")
}

/// Stderr as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout as text.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the exit status, showing stderr when it differs.
#[track_caller]
pub(crate) fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
}

/// Parses JSON lines.
pub(crate) fn jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// Writes lines as one gzip member (a GH Archive hour file).
pub(crate) fn write_gz(path: &Path, lines: &[String]) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        enc.write_all(l.as_bytes()).expect("gzip");
        enc.write_all(b"\n").expect("gzip");
    }
    std::fs::write(path, enc.finish().expect("gzip")).expect("write");
}

/// A merged `PullRequestEvent` of `repo`#`number`.
pub(crate) fn pr_event(id: u64, repo: &str, number: u64) -> String {
    json!({
        "id": id.to_string(),
        "type": "PullRequestEvent",
        "actor": {"id": 1, "login": "someone"},
        "repo": {"id": 1, "name": repo, "url": format!("https://api.github.com/repos/{repo}")},
        "payload": {
            "action": "closed",
            "number": number,
            "pull_request": {
                "url": "u", "id": number, "number": number, "state": "closed",
                "title": format!("Fix #{}", number + 100), "body": "", "user": {"login": "dev"},
                "created_at": "2021-07-21T10:00:00Z",
                "merged": true, "merge_commit_sha": "m", "merged_at": "2021-07-21T11:00:00Z",
                "base": {"ref": "main", "sha": "b", "repo": {"name": repo}},
                "head": {"ref": "fix", "sha": "h", "repo": {"name": repo}},
                "commits": 1, "additions": 1, "deletions": 1, "changed_files": 1, "labels": [],
            }
        },
        "public": true,
        "created_at": "2021-07-21T11:00:00Z",
    })
    .to_string()
}

/// A directory of three hour files with `per_file` merged PRs each (distinct numbers).
pub(crate) fn write_archive(dir: &Path, per_file: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for hour in 0..3u64 {
        let lines: Vec<String> =
            (0..per_file).map(|i| pr_event(hour * 1000 + i, "o/r", hour * per_file + i + 1)).collect();
        write_gz(&dir.join(format!("2021-07-21-{hour}.json.gz")), &lines);
    }
}

/// `summary.json` of a mining output directory.
pub(crate) fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json"))
        .expect("summary JSON")
}

/// A Python interpreter that can `import module`: `SWERL_TEST_PYTHON` (`.ci/run` makes one
/// venv with every requirement of the tests), else a venv with `requirement` made once under
/// the target directory.
pub(crate) fn python_with(requirement: &str, module: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("SWERL_TEST_PYTHON") {
        return p.into();
    }
    let name: String =
        requirement.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("py-{name}"));
    let python = venv.join("bin/python");
    let works = |python: &Path| {
        Command::new(python).args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success())
    };
    if works(&python) {
        return python;
    }
    // Made beside, then renamed: concurrent test runs never see half a venv.
    let part = venv.with_extension(format!("part-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&part);
    let how = format!(
        "set SWERL_TEST_PYTHON to a Python with `{requirement}`, e.g. `python3 -m venv v && \
         v/bin/pip install {requirement}` then SWERL_TEST_PYTHON=$PWD/v/bin/python"
    );
    let made = Command::new("python3").arg("-m").arg("venv").arg(&part).status();
    assert!(made.is_ok_and(|s| s.success()), "`python3 -m venv` failed; {how}");
    let pip = Command::new(part.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", requirement])
        .status();
    assert!(pip.is_ok_and(|s| s.success()), "`pip install {requirement}` failed; {how}");
    if std::fs::rename(&part, &venv).is_err() {
        // Another run made it first.
        let _ = std::fs::remove_dir_all(&part);
    }
    assert!(works(&python), "the venv at {} cannot import {module}; {how}", venv.display());
    python
}
