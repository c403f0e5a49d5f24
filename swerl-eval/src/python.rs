//! Interpreter discovery: the version a spec names, from pyenv, uv, conda or `pythonX.Y` on
//! `PATH`, and never silently another version.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interpreter {
    /// The executable.
    pub path: PathBuf,
    /// Its full version, `3.9.18`.
    pub version: String,
    /// Where it was found: `pyenv`, `uv`, `conda` or `PATH`.
    pub source: String,
}

impl Interpreter {
    /// Whether uv can install into it: CPython 3.8 or newer.
    pub fn supports_uv(&self) -> bool {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().ok());
        matches!((parts.next(), parts.next()), (Some(Some(3)), Some(Some(minor))) if minor >= 8)
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Version directories under `dir` whose name starts with `prefix` then `minor.` (or equals
/// `minor`), newest patch first.
fn versioned_dirs(dir: &Path, prefix: &str, minor: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(prefix)?;
            let version = rest.split('-').next()?;
            (version == minor || version.starts_with(&format!("{minor}."))).then(|| {
                let key = version.split('.').filter_map(|p| p.parse().ok()).collect();
                (key, e.path())
            })
        })
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, p)| p).collect()
}

/// Candidate executables for `minor` (`"3.9"`), in the order they are tried.
pub fn candidates(minor: &str) -> Vec<(PathBuf, &'static str)> {
    let exe = format!("python{minor}");
    let mut out = Vec::new();
    let pyenv_root =
        std::env::var_os("PYENV_ROOT").map(PathBuf::from).or_else(|| home().map(|h| h.join(".pyenv")));
    if let Some(root) = pyenv_root {
        for d in versioned_dirs(&root.join("versions"), "", minor) {
            out.push((d.join("bin").join(&exe), "pyenv"));
        }
    }
    let uv_dir = std::env::var_os("UV_PYTHON_INSTALL_DIR")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local/share/uv/python")));
    if let Some(dir) = uv_dir {
        for d in versioned_dirs(&dir, "cpython-", minor) {
            out.push((d.join("bin").join(&exe), "uv"));
        }
    }
    let mut conda_roots: Vec<PathBuf> = ["/opt/conda", "/opt/miniconda3"].iter().map(PathBuf::from).collect();
    if let Some(h) = home() {
        conda_roots.extend(["miniconda3", "anaconda3", "miniforge3"].map(|d| h.join(d)));
    }
    for root in conda_roots {
        out.push((root.join("bin").join(&exe), "conda"));
        if let Ok(envs) = fs_err::read_dir(root.join("envs")) {
            for e in envs.filter_map(|e| e.ok()) {
                out.push((e.path().join("bin").join(&exe), "conda"));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if !dir.to_string_lossy().contains(".pyenv/shims") {
                out.push((dir.join(&exe), "PATH"));
            }
        }
    }
    out
}

/// Asks an executable for its version.
pub fn probe(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// No interpreter of the version a spec names (never silently another).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no Python {minor} interpreter (looked in pyenv's versions, uv's and conda's directories and for \
     python{minor} on PATH{})",
    if rejected.is_empty() { String::new() } else { format!("; rejected: {}", rejected.join(", ")) }
)]
pub struct NoInterpreter {
    /// The version asked for (`"3.9"`).
    pub minor: String,
    /// Executables found but of another version, with what they reported.
    pub rejected: Vec<String>,
}

/// The first interpreter whose version is exactly `minor` (`"3.9"`); the error lists what was
/// tried.
pub fn find_interpreter(minor: &str) -> Result<Interpreter, NoInterpreter> {
    let mut rejected = Vec::new();
    for (path, source) in candidates(minor) {
        if !path.is_file() {
            continue;
        }
        match probe(&path) {
            Some(v) if v == minor || v.starts_with(&format!("{minor}.")) => {
                return Ok(Interpreter { path, version: v, source: source.to_owned() });
            }
            other => rejected.push(format!("{} ({})", path.display(), other.unwrap_or_default())),
        }
    }
    Err(NoInterpreter { minor: minor.to_owned(), rejected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_another_version() {
        assert!(find_interpreter("2.1").is_err());
        if let Ok(i) = find_interpreter("3.11") {
            assert!(i.version.starts_with("3.11."), "{i:?}");
        }
    }
}
