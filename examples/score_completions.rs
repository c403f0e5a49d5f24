//! Scores model completions with the SWE-RL reward.
//!
//! ```sh
//! cargo run --release --example score_completions -- examples/reward/cases.jsonl
//! ```
//!
//! Each input line is `{"instance_id", "code_context": {path: text}, "oracle_new_content":
//! {path: text}, "output": "<think>...</think><solution>...</solution>"}`; each output line is
//! `instance_id<TAB>reward<TAB>why` (the format error for a reward of -1). A malformed line is
//! reported with its number and skipped.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    #[serde(default)]
    instance_id: Option<String>,
    code_context: BTreeMap<String, String>,
    oracle_new_content: BTreeMap<String, String>,
    output: String,
}

fn main() -> Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("examples/reward/cases.jsonl"), PathBuf::from);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let (mut scored, mut sum) = (0, 0.0);
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: Case = match serde_json::from_str(line) {
            Ok(case) => case,
            Err(e) => {
                println!("{}:{}: skipped: {e}", path.display(), i + 1);
                continue;
            }
        };
        let id = case.instance_id.unwrap_or_else(|| format!("line {}", i + 1));
        // `score` says why a completion is badly formatted; `reward` is the number alone.
        match swerl::reward::score(&case.code_context, &case.oracle_new_content, &case.output) {
            Ok(score) => {
                println!("{id}\t{:.4}\t", score.reward);
                sum += score.reward;
            }
            Err(format_error) => {
                println!("{id}\t-1\t{format_error}");
                sum -= 1.0;
            }
        }
        scored += 1;
    }
    println!("{scored} completions, mean reward {:.4}", sum / f64::from(scored.max(1)));
    Ok(())
}
