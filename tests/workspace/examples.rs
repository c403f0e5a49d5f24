//! The example binaries of `examples/`, run end to end so they cannot rot: score the vendored
//! completions, mine a repository made here, train a tiny model on what was mined.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, ensure};

use crate::support::make_clones;

/// `target/<profile>/examples/<name>`: `cargo test` builds the examples before running tests.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn run(name: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    let path = example(name);
    ensure!(path.exists(), "{} is not built (cargo test builds examples)", path.display());
    let out = Command::new(&path).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output()?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(out.status.success(), "{name} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ok(stdout)
}

#[test]
fn score_mine_and_train_examples_run_end_to_end() -> Result<()> {
    // Scoring: the vendored cases (real SWE-bench patches, exact and mutated answers).
    let scored = run("score_completions", &[])?;
    let last = scored.lines().last().unwrap_or_default();
    ensure!(last.starts_with("46 completions, mean reward"), "{scored}");
    ensure!(scored.contains("django__django-15202/exact\t1.0000"), "{scored}");

    // Mining a repository, then training on what was mined.
    let tmp = tempfile::tempdir()?;
    let clones = make_clones(tmp.path())?;
    let mined = tmp.path().join("mined");
    let out = run("mine_repo", &[clones.as_os_str(), mined.as_os_str()])?;
    ensure!(out.contains("1 merged PRs -> 1 instances"), "{out}");
    let run_dir = tmp.path().join("run");
    let instances = mined.join("instances.jsonl");
    let out = run("train_tiny", &[instances.as_os_str(), run_dir.as_os_str(), "2".as_ref()])?;
    ensure!(out.contains("step 2:") && out.contains("checkpoint:"), "{out}");
    ensure!(run_dir.join("checkpoint-2/model/config.json").exists(), "{out}");
    Ok(())
}
