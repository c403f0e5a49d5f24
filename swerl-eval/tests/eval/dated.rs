//! `--exclude-newer` on the install step: a project whose `setup.py` asks for `docutils` without
//! a bound gets the docutils of the cut-off date (0.21.2 on 2024-10-31; 0.22, which dropped
//! `docutils.utils.roman`, came out in 2025), through the real uv and pip from PyPI.

use std::path::Path;
use std::process::Command;

use swerl_eval::env::{dated_install_lines, find_or_install_uv};
use swerl_eval::python::find_interpreter;
use swerl_eval::testing::test_python;

#[test]
fn dated_install_step_takes_the_release_of_its_day() {
    let version = test_python().expect("a Python interpreter (pyenv 3.9-3.12)");
    let python = find_interpreter(version).unwrap();
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swerl-eval-e2e-cache");
    let uv = find_or_install_uv(&cache).unwrap();
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("probe");
    fs_err::create_dir_all(&project).unwrap();
    fs_err::write(
        project.join("setup.py"),
        "from setuptools import setup\nsetup(name='swerl-dated-probe', version='0.1', py_modules=[], install_requires=['docutils'])\n",
    )
    .unwrap();
    let venv = root.path().join("venv");
    let made = Command::new(&python.path).args(["-m", "venv"]).arg(&venv).status().unwrap();
    assert!(made.success());

    let install = "python -m pip install -e .";
    let lines = dated_install_lines(install, &uv, "2024-10-31").unwrap();
    let script = format!(
        "set -x\nsource '{}/bin/activate'\ncd '{}'\n{lines}set -e\n{install}\npython -c 'import docutils; print(\"DOCUTILS\", docutils.__version__)'\n",
        venv.display(),
        project.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("UV_CACHE_DIR", cache.join("uv-cache"))
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("swerl: dated constraints for the install step: docutils==0.21.2"), "{text}");
    assert!(text.contains("DOCUTILS 0.21.2"), "{text}");

    // A resolution that cannot succeed leaves the install step undated, and says so.
    let broken = dated_install_lines("python -m pip install -e ./missing", &uv, "2024-10-31").unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}/bin/activate'\ncd '{}'\n{broken}echo \"PIP_CONSTRAINT=[${{PIP_CONSTRAINT:-}}]\"\n",
            venv.display(),
            project.display()
        ))
        .env("UV_CACHE_DIR", cache.join("uv-cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the dated resolution failed") && text.contains("PIP_CONSTRAINT=[]"), "{text}");
}
