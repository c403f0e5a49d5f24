//! `swerl mine` end to end.

use std::path::PathBuf;
use std::process::Command;

fn swerl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swerl"))
}

fn gharchive() -> PathBuf {
    match std::env::var_os("SWERL_SHARED_DATA") {
        Some(p) => PathBuf::from(p).join("gharchive"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/gharchive"),
    }
}

#[test]
fn mines_the_real_sample_and_writes_the_outputs() -> anyhow::Result<()> {
    let out = tempfile::tempdir()?;
    let o = swerl().args(["mine", "--events"]).arg(gharchive()).arg("--out").arg(out.path()).output()?;
    let stdout = String::from_utf8(o.stdout)?;
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("800 events"), "{stdout}");
    assert!(stdout.contains("89 PRs, 25 merged"), "{stdout}");
    let prs = std::fs::read_to_string(out.path().join("prs.jsonl"))?;
    assert_eq!(prs.lines().count(), 89);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json"))?)?;
    assert_eq!(summary["prs"]["merged"], 25);
    assert!(!out.path().join("instances.jsonl").exists()); // no clones given
    Ok(())
}

#[test]
fn bad_arguments_are_clear_errors() -> anyhow::Result<()> {
    let out = tempfile::tempdir()?;
    let o = swerl()
        .args(["mine", "--events"])
        .arg(gharchive())
        .arg("--out")
        .arg(out.path())
        .args(["--shard", "2/2"])
        .output()?;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid shard `2/2`"));
    let o = swerl().args(["mine", "--out"]).arg(out.path()).output()?;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--events"));
    let o = swerl().args(["mine", "--events", "/nonexistent/dir", "--out"]).arg(out.path()).output()?;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/dir"));
    Ok(())
}

#[test]
fn prints_the_default_configuration() -> anyhow::Result<()> {
    let o = swerl().args(["mine", "--out", "unused", "--print-config"]).output()?;
    assert!(o.status.success());
    let config: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(config["filters"]["max_changed_files"], 50);
    assert_eq!(config["relevant"]["max_files"], 3);
    Ok(())
}
