//! Environments: one virtual environment per (repository, version, interpreter, requirements),
//! built from PyPI once (a file lock serialises racing workers), cached under a content key, its
//! build log kept beside it; and the light per-instance venv layered on top of it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::python::{Interpreter, NoInterpreter};
use crate::specs::{Spec, table};

/// Why an environment could not be built: the reason an instance is *environment unavailable*.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// No interpreter of the version the spec names.
    #[error(transparent)]
    NoInterpreter(#[from] NoInterpreter),
    /// A file or lock operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A requirements file could not be read or converted, or a build command failed; the
    /// message names the file or the command and the end of its output.
    #[error("{0}")]
    Build(String),
}

impl From<String> for EnvError {
    fn from(message: String) -> Self {
        Self::Build(message)
    }
}

/// Which tool installs packages into environments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    /// uv for Python >= 3.8 (uv does not support older interpreters), pip otherwise.
    #[default]
    Auto,
    /// Always uv.
    Uv,
    /// Always pip.
    Pip,
}

/// A built (or cached) shared environment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SharedEnv {
    /// Its directory (a virtual environment).
    pub dir: PathBuf,
    /// The content key (hex, 16 characters).
    pub key: String,
    /// True when an earlier build was reused.
    pub cached: bool,
    /// Seconds spent building (0 when cached).
    pub build_secs: f64,
    /// The interpreter it was built from.
    pub interpreter: Interpreter,
    /// `pip` or `uv`.
    pub installer: String,
    /// The build log.
    pub log: PathBuf,
}

/// The requirement groups of an environment, installed one after the other as upstream does
/// (a later group's pins win): pip, setuptools and wheel of upstream's era (pip 24.1+ dropped the
/// `setup.py develop` fallback that editable installs of old `setuptools~=62` projects such as
/// pylint 2.15 rely on; setuptools 69 dropped what old `setup.py`s use); the spec's `packages` (a requirements file
/// read from the clone at `commit`, a conda `environment.yml` converted to pip requirements, or a
/// package list); then `pip_packages`. Empty groups are left out.
pub fn requirements(
    repo: &str,
    spec: &Spec,
    clone: &Path,
    commit: &str,
) -> Result<Vec<Vec<String>>, EnvError> {
    let base: Vec<String> = vec!["pip<24".into(), "setuptools<69".into(), "wheel".into()];
    let packages = match spec.packages.as_deref().map(str::trim) {
        None | Some("") => Vec::new(),
        Some("requirements.txt") => requirements_txt(repo, clone, commit)?,
        Some("environment.yml") => environment_yml(repo, clone, commit)?,
        Some(list) => {
            list.split_whitespace().map(|p| p.trim_matches(|c| c == '\'' || c == '"').to_owned()).collect()
        }
    };
    Ok([base, packages, spec.pip_packages.clone()].into_iter().filter(|g| !g.is_empty()).collect())
}

fn git_show(clone: &Path, commit: &str, path: &str) -> Option<String> {
    let out =
        Command::new("git").arg("-C").arg(clone).args(["show", &format!("{commit}:{path}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Upstream's `get_requirements_by_commit` + `clean_requirements`, reading the clone.
fn requirements_txt(repo: &str, clone: &Path, commit: &str) -> Result<Vec<String>, String> {
    let paths = table().requirements_paths.get(repo).cloned().unwrap_or_default();
    let (path, text) = paths
        .iter()
        .find_map(|p| git_show(clone, commit, p).map(|t| (p.clone(), t)))
        .ok_or_else(|| format!("no requirements file of {repo} at {commit} (tried {paths:?})"))?;
    let dir = path.rsplit_once('/').map_or("", |x| x.0);
    let excluded = |l: &str| ["-e .", "#", ".[test"].iter().any(|x| l.trim().starts_with(x));
    let mut extra = Vec::new();
    let mut own = Vec::new();
    for line in text.lines() {
        if let Some(file) = line.trim().strip_prefix("-r") {
            let sub = if dir.is_empty() { file.trim().to_owned() } else { format!("{dir}/{}", file.trim()) };
            if let Some(t) = git_show(clone, commit, &sub) {
                extra.extend(t.lines().filter(|l| !excluded(l)).map(str::to_owned));
            }
        } else if !excluded(line) {
            own.push(line.to_owned());
        }
    }
    extra.extend(own);
    Ok(extra
        .into_iter()
        .map(|l| if l.starts_with("types-pkg_resources") { "types-setuptools".into() } else { l })
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// A conda `environment.yml` as pip requirements: `name=ver` -> `name==ver`, the `pip:` list
/// as is, `python` and `pip` dropped. Conda-only packages then fail the build, reported.
fn environment_yml(repo: &str, clone: &Path, commit: &str) -> Result<Vec<String>, String> {
    let paths = table().environment_yml_paths.get(repo).cloned().unwrap_or_default();
    let text = paths
        .iter()
        .find_map(|p| git_show(clone, commit, p))
        .ok_or_else(|| format!("no environment.yml of {repo} at {commit}"))?;
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_deps = line.trim_end() == "dependencies:";
            continue;
        }
        let Some(item) = line.trim().strip_prefix("- ") else { continue };
        let item = item.split('#').next().unwrap_or_default().trim();
        let name = item.split(|c: char| "=<>! ".contains(c)).next().unwrap_or_default();
        if !in_deps || item.ends_with(':') || name == "python" || name == "pip" || item.is_empty() {
            continue;
        }
        let pinned = if item.contains("==") || item.contains(['<', '>', '!']) {
            item.to_owned()
        } else {
            item.replacen('=', "==", 1)
        };
        out.push(pinned);
    }
    Ok(out)
}

/// Bumped whenever the way environments are built changes, so old builds are not reused.
const RECIPE: &str = "swerl-env-3 (uv --compile-bytecode, pip<24)";

/// The content key of an environment: the recipe, the interpreter, the requirement groups and
/// the PyPI cut-off date (`exclude_newer`) when there is one.
pub fn content_key(interpreter: &Interpreter, groups: &[Vec<String>], exclude_newer: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    if let Some(date) = exclude_newer {
        h.update(b"\x02exclude-newer\0");
        h.update(date.as_bytes());
    }
    h.update(interpreter.version.as_bytes());
    h.update(b"\0");
    h.update(interpreter.path.as_os_str().as_encoded_bytes());
    for group in groups {
        h.update(b"\x01");
        for r in group {
            h.update(b"\0");
            h.update(r.as_bytes());
        }
    }
    short_key(h)
}

/// The 16-hex-digit cache key of a hashed content (environments, prepared instances).
pub(crate) fn short_key(h: Sha256) -> String {
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn run_logged(cmd: &mut Command, log: &mut fs_err::File) -> Result<(), String> {
    let _ = writeln!(log, "$ {cmd:?}");
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let _ = log.write_all(&out.stdout);
    let _ = log.write_all(&out.stderr);
    let _ = writeln!(log, "[{:?} in {:.1}s]", out.status, start.elapsed().as_secs_f64());
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// uv: on `PATH`, or installed once from PyPI into `<cache>/tools/uv`.
pub fn find_or_install_uv(cache: &Path) -> Result<PathBuf, EnvError> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("uv").is_file() {
                return Ok(dir.join("uv"));
            }
        }
    }
    let tools = cache.join("tools");
    fs_err::create_dir_all(&tools)?;
    let uv = tools.join("uv/bin/uv");
    let lock = fs_err::File::create(tools.join("uv.lock"))?;
    lock.file().lock()?;
    if uv.is_file() {
        return Ok(uv);
    }
    let mut log = fs_err::File::create(tools.join("uv.build.log"))?;
    let python = crate::python::find_interpreter("3.11")
        .or_else(|_| crate::python::find_interpreter("3.12"))
        .map(|i| i.path)
        .unwrap_or_else(|_| "python3".into());
    run_logged(Command::new(&python).args(["-m", "venv"]).arg(tools.join("uv")), &mut log)?;
    run_logged(
        Command::new(tools.join("uv/bin/python")).args(["-m", "pip", "install", "-q", "uv"]),
        &mut log,
    )?;
    Ok(uv)
}

/// Builds the environment, or reuses the cached one with the same content key.
///
/// With `exclude_newer` (a date or RFC 3339 time, uv's `--exclude-newer`), uv resolves only
/// distributions uploaded before it, as an environment built on that day would have; pip (the
/// installer for Python < 3.8) cannot filter by date, which the build log then says.
pub fn ensure_shared_env(
    cache: &Path,
    name: &str,
    interpreter: &Interpreter,
    groups: &[Vec<String>],
    installer: Installer,
    exclude_newer: Option<&str>,
) -> Result<SharedEnv, EnvError> {
    let key = content_key(interpreter, groups, exclude_newer);
    let envs = cache.join("envs");
    fs_err::create_dir_all(&envs)?;
    let stem = format!("{}-{key}", name.replace(['/', ' '], "__"));
    let dir = envs.join(&stem);
    let marker = dir.join(".swerl-complete");
    let log_path = envs.join(format!("{stem}.build.log"));
    let lock = fs_err::File::create(envs.join(format!("{stem}.lock")))?;
    lock.file().lock().map_err(|e| format!("lock {stem}: {e}"))?;
    let old = !interpreter.supports_uv();
    let use_uv = match installer {
        Installer::Uv => true,
        Installer::Pip => false,
        Installer::Auto => !old,
    };
    let tool = if use_uv { "uv" } else { "pip" };
    if marker.is_file() {
        let installer = fs_err::read_to_string(&marker).unwrap_or_default();
        return Ok(SharedEnv {
            dir,
            key,
            cached: true,
            build_secs: 0.0,
            interpreter: interpreter.clone(),
            installer: installer.trim().to_owned(),
            log: log_path,
        });
    }
    let start = Instant::now();
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    let mut log = fs_err::File::create(&log_path)?;
    let mut files = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let file = envs.join(format!("{stem}.requirements-{i}.txt"));
        fs_err::write(&file, group.join("\n") + "\n")?;
        files.push(file);
    }
    let python = dir.join("bin/python");
    if use_uv {
        let uv = find_or_install_uv(cache)?;
        let uv_cache = cache.join("uv-cache");
        let uv_cmd = || {
            let mut cmd = Command::new(&uv);
            cmd.env("UV_CACHE_DIR", &uv_cache);
            match exclude_newer {
                Some(date) => cmd.env("UV_EXCLUDE_NEWER", date),
                None => cmd.env_remove("UV_EXCLUDE_NEWER"),
            };
            cmd
        };
        run_logged(uv_cmd().args(["venv", "--seed", "--python"]).arg(&interpreter.path).arg(&dir), &mut log)?;
        for file in &files {
            run_logged(
                uv_cmd()
                    .args(["pip", "install", "--compile-bytecode", "--python"])
                    .arg(&python)
                    .arg("-r")
                    .arg(file),
                &mut log,
            )?;
        }
    } else {
        if let Some(date) = exclude_newer {
            let _ =
                writeln!(log, "note: pip cannot resolve by upload date; --exclude-newer {date} not applied");
        }
        run_logged(Command::new(&interpreter.path).args(["-m", "venv"]).arg(&dir), &mut log)?;
        let pip_pin = if old { "pip<22" } else { "pip" };
        run_logged(Command::new(&python).args(["-m", "pip", "install", "-q", "-U", pip_pin]), &mut log)?;
        for file in &files {
            run_logged(Command::new(&python).args(["-m", "pip", "install", "-r"]).arg(file), &mut log)?;
        }
    }
    fs_err::write(&marker, tool)?;
    Ok(SharedEnv {
        dir,
        key,
        cached: false,
        build_secs: start.elapsed().as_secs_f64(),
        interpreter: interpreter.clone(),
        installer: tool.into(),
        log: log_path,
    })
}

/// The requirements a pip install command names (`python -m pip install ARGS` or
/// `pip install ARGS`), as requirement lines (`-e .[test]`, `-r file`, `name>=1`); `None` when
/// the command is not one plain pip install, installs without dependencies, or names nothing.
pub fn pip_install_requirements(install: &str) -> Option<Vec<String>> {
    if install.contains(['\n', ';', '&', '|', '$', '`', '\'', '"', '<', '>']) {
        return None;
    }
    let words: Vec<&str> = install.split_whitespace().collect();
    let rest = match words.as_slice() {
        [py, "-m", "pip", "install", rest @ ..] if py.starts_with("python") => rest,
        ["pip" | "pip3", "install", rest @ ..] => rest,
        _ => return None,
    };
    // pip install's options that take a value (the value is skipped with them).
    const WITH_VALUE: &[&str] = &[
        "-i",
        "--index-url",
        "--extra-index-url",
        "-f",
        "--find-links",
        "-C",
        "--config-settings",
        "--global-option",
        "--install-option",
        "-t",
        "--target",
        "--prefix",
        "--root",
        "--upgrade-strategy",
        "--progress-bar",
        "--log",
        "--no-binary",
        "--only-binary",
        "--src",
        "--platform",
        "--python-version",
        "--implementation",
        "--abi",
        "--cache-dir",
        "--timeout",
        "--retries",
        "--proxy",
        "--trusted-host",
        "--cert",
        "--client-cert",
        "--exists-action",
        "--report",
        "--root-user-action",
    ];
    let mut reqs = Vec::new();
    let mut it = rest.iter();
    while let Some(&word) = it.next() {
        match word {
            "--no-deps" => return None,
            "-e" | "--editable" => reqs.push(format!("-e {}", it.next()?)),
            "-r" | "--requirement" => reqs.push(format!("-r {}", it.next()?)),
            "-c" | "--constraint" => reqs.push(format!("-c {}", it.next()?)),
            w if WITH_VALUE.contains(&w) => {
                it.next()?;
            }
            w if w.starts_with("--editable=") => reqs.push(format!("-e {}", &w["--editable=".len()..])),
            w if w.starts_with('-') => {}
            w => reqs.push(w.to_owned()),
        }
    }
    (!reqs.is_empty()).then_some(reqs)
}

/// Filters `uv pip compile`'s output (argument 1) down to the distributions the interpreter does
/// not already have, written as pip constraints (argument 2). Python 3.8+ (`importlib.metadata`).
const DATED_FILTER: &str = r#"import re, sys
from importlib.metadata import distributions
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have = {norm(d.metadata["Name"]) for d in distributions() if d.metadata["Name"]}
keep = []
for line in open(sys.argv[1]):
    line = line.strip()
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    if m and " @ " not in line and norm(m.group(0)) not in have:
        keep.append(line)
open(sys.argv[2], "w").write("".join(x + "\n" for x in keep))
print("swerl: dated constraints for the install step:", " ".join(keep) or "(none)")
"#;

/// Shell lines for the instance's setup script, run in its venv after `pre_install` and before
/// the install step: resolve what `install` (a pip command) would add with `uv pip compile` as
/// of `date`, and hand the distributions the environment does not have yet to pip as
/// constraints (`PIP_CONSTRAINT`), so the install step picks what it would have picked that day
/// while the environment's own pins stay. If the dated resolution fails, the install step runs
/// undated and the log says so. `None` when `install` is not a plain pip install.
pub fn dated_install_lines(install: &str, uv: &Path, date: &str) -> Option<String> {
    let reqs = pip_install_requirements(install)?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let printf = reqs.iter().map(|r| quote(r)).collect::<Vec<_>>().join(" ");
    Some(format!(
        "swerl_dated=$(mktemp -d)\n\
         if printf '%s\\n' {printf} | {uv} pip compile --quiet --no-header --no-annotate --python \"$VIRTUAL_ENV/bin/python\" \
         --exclude-newer {date} -o \"$swerl_dated/resolved.txt\" - && \
         python - \"$swerl_dated/resolved.txt\" \"$swerl_dated/constraints.txt\" <<'SWERL_DATED_PY'\n{DATED_FILTER}SWERL_DATED_PY\n\
         then export PIP_CONSTRAINT=\"$swerl_dated/constraints.txt\"\n\
         else echo 'swerl: the dated resolution failed; the install step resolves from today'\\''s PyPI'; fi\n",
        uv = quote(&uv.display().to_string()),
        date = quote(date),
    ))
}

/// The site-packages directory of a venv at `root` made from `interpreter`.
pub fn site_packages(root: &Path, interpreter: &Interpreter) -> PathBuf {
    root.join("lib").join(format!("python{}", minor(&interpreter.version))).join("site-packages")
}

/// A per-instance venv at `dst` that sees the shared environment's packages (a `.pth` that adds
/// its site-packages) and its console scripts (copied with the shebang pointing here), so the
/// instance's own install step never touches the shared environment.
pub fn make_instance_venv(shared: &SharedEnv, dst: &Path) -> Result<(), EnvError> {
    let mut log = fs_err::OpenOptions::new().create(true).append(true).open(dst.with_extension("log"))?;
    run_logged(
        Command::new(&shared.interpreter.path).args(["-m", "venv", "--without-pip"]).arg(dst),
        &mut log,
    )?;
    let py = format!("python{}", minor(&shared.interpreter.version));
    let site = |root: &Path| root.join("lib").join(&py).join("site-packages");
    // pip's isolated build environments (PYTHONPATH=/tmp/pip-build-env-*/site) must not see
    // the shared packages, or a project's pinned build backend loses to the shared setuptools.
    let pth = format!(
        "import os, site; ('pip-build-env-' in os.environ.get('PYTHONPATH', '')) or site.addsitedir({:?})\n",
        site(&shared.dir).display().to_string()
    );
    fs_err::write(site(dst).join("_swerl_shared_env.pth"), pth)?;
    let shared_bin = shared.dir.join("bin");
    let own_python = dst.join("bin/python");
    for entry in fs_err::read_dir(&shared_bin)?.flatten() {
        let target = dst.join("bin").join(entry.file_name());
        if target.exists() {
            continue;
        }
        let Ok(text) = fs_err::read_to_string(entry.path()) else { continue };
        let Some((first, rest)) = text.split_once('\n') else { continue };
        if first.starts_with("#!") && first.contains(&shared_bin.display().to_string()) {
            fs_err::write(&target, format!("#!{}\n{rest}", own_python.display()))?;
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git").arg("-C").arg(d.path()).args(args).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["init", "-q"]);
        for (path, text) in files {
            let p = d.path().join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
        }
        git(&["add", "-A"]);
        git(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"]);
        let head = git(&["rev-parse", "HEAD"]);
        (d, head)
    }

    #[test]
    fn requirement_groups_like_upstream() {
        let (d, head) = repo_with(&[
            (
                "requirements/dev.txt",
                "-r tests.txt\n# comment\n-e .\nblinker==1.4\ntypes-pkg_resources==0.1\n",
            ),
            ("requirements/tests.txt", "pytest==7.0\n.[test]\n"),
            (
                "environment.yml",
                "name: x\ndependencies:\n  - python=3.9\n  - numpy=1.21\n  - scipy>=1.5\n  - pip\n  - pip:\n    - sphinx==4.0\n",
            ),
        ]);
        let mut spec = Spec {
            packages: Some("requirements.txt".into()),
            pip_packages: vec!["markupsafe==2.0.1".into()],
            ..Spec::default()
        };
        let groups = requirements("pallets/flask", &spec, d.path(), &head).unwrap();
        assert_eq!(groups[1], ["pytest==7.0", "blinker==1.4", "types-setuptools"]);
        assert_eq!(groups[2], ["markupsafe==2.0.1"]);
        spec.packages = Some("environment.yml".into());
        let groups = requirements("pydata/xarray", &spec, d.path(), &head).unwrap();
        assert_eq!(groups[1], ["numpy==1.21", "scipy>=1.5", "sphinx==4.0"]);
        spec.packages = Some("numpy 'scipy==1.5.2'".into());
        spec.pip_packages.clear();
        let groups = requirements("x/y", &spec, d.path(), &head).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1], ["numpy", "scipy==1.5.2"]);
    }

    #[test]
    fn pip_install_commands_name_their_requirements() {
        let reqs = |s: &str| pip_install_requirements(s);
        assert_eq!(reqs("python -m pip install -e .[test] --verbose").unwrap(), ["-e .[test]"]);
        assert_eq!(reqs("pip install -v -r requirements.txt .").unwrap(), ["-r requirements.txt", "."]);
        assert_eq!(
            reqs("python3 -m pip install --no-build-isolation --config-settings x=y -e . 'a'"),
            None,
            "quotes: not a plain command"
        );
        assert_eq!(
            reqs("python3 -m pip install --no-build-isolation --config-settings x=y --editable=. -c c.txt")
                .unwrap(),
            ["-e .", "-c c.txt"]
        );
        assert_eq!(reqs("python -m pip install --no-deps -e ."), None);
        assert_eq!(reqs("python setup.py develop"), None);
        assert_eq!(reqs("pip install -e . && make"), None);
        assert_eq!(reqs("pip install --verbose"), None);
        assert_eq!(reqs("pip install -e"), None);
    }

    #[test]
    fn dated_lines_are_valid_shell() {
        let lines =
            dated_install_lines("python -m pip install -e .[test]", Path::new("/opt/it's/uv"), "2024-10-31")
                .unwrap();
        assert!(lines.contains("'/opt/it'\\''s/uv' pip compile"), "{lines}");
        assert!(lines.contains("--exclude-newer '2024-10-31'"), "{lines}");
        let out = Command::new("bash").arg("-n").arg("-c").arg(&lines).output().unwrap();
        assert!(out.status.success(), "{}\n{lines}", String::from_utf8_lossy(&out.stderr));
        assert!(dated_install_lines("python setup.py develop", Path::new("/uv"), "2024-10-31").is_none());
    }

    #[test]
    fn uv_supports_python_3_8_and_later() {
        let i = |v: &str| Interpreter { path: "/p".into(), version: v.into(), source: "pyenv".into() };
        assert!(i("3.8.18").supports_uv() && i("3.13.1").supports_uv() && i("3.10").supports_uv());
        assert!(!i("3.7.17").supports_uv() && !i("2.7.18").supports_uv() && !i("3.6").supports_uv());
        assert!(!i("garbage").supports_uv());
    }

    #[test]
    fn keys_depend_on_inputs() {
        let i = Interpreter { path: "/p".into(), version: "3.9.1".into(), source: "pyenv".into() };
        let a = content_key(&i, &[vec!["x==1".into()]], None);
        assert_eq!(a.len(), 16);
        assert_ne!(a, content_key(&i, &[vec!["x==2".into()]], None));
        assert_ne!(a, content_key(&i, &[vec![], vec!["x==1".into()]], None));
        let dated = content_key(&i, &[vec!["x==1".into()]], Some("2024-10-31"));
        assert_ne!(a, dated);
        assert_ne!(dated, content_key(&i, &[vec!["x==1".into()]], Some("2024-11-01")));
        assert_eq!(minor("3.11.7"), "3.11");
    }
}
