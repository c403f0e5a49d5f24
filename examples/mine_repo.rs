//! Mines RL instances from local git clones without GH Archive (git-only mode): every pull
//! request found through `refs/pull/*` heads and GitHub's merge and squash commits.
//!
//! ```sh
//! # clones/ holds owner/name or owner__name clones (a bare `git clone --mirror` keeps refs/pull/*)
//! cargo run --release --example mine_repo -- clones/ out/
//! ```
//!
//! Writes `out/prs.jsonl`, `out/instances.jsonl` (the RL instances `swerl train` reads) and
//! `out/summary.json`, and prints the funnel. Without archives there is no issue text, so the
//! linked-issue and bug-fix filters are off here; with archives, use `swerl mine --events`.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use swerl::data::{MineConfig, Miner};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let clones = args.next().context("usage: mine_repo CLONES_DIR OUT_DIR")?;
    let out = args.next().context("usage: mine_repo CLONES_DIR OUT_DIR")?;
    let mut config = MineConfig::default();
    config.filters.require_linked_issue = false;
    config.filters.require_bug_fix = false;
    let miner = Miner::builder().config(config).clones(&clones).build()?;
    let summary = miner.run_git_only(&out)?;
    let funnel = summary.instances.context("no instance funnel: no clone was found")?;
    println!(
        "{} merged PRs -> {} instances in {}",
        funnel.merged_prs,
        funnel.selected,
        out.join("instances.jsonl").display()
    );
    println!("{}", serde_json::to_string_pretty(&funnel)?);
    Ok(())
}
