//! TEMPORARY stand-in for `swerl_reward::score` until the real crate lands on main (then this
//! file is deleted and `reward.rs` calls the crate). Checks only the four tags.
#![allow(dead_code)]

use std::collections::BTreeMap;

pub(crate) struct Score {
    pub(crate) reward: f64,
}

#[derive(Debug)]
pub(crate) struct FormatError(&'static str);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub(crate) fn score(
    _context: &BTreeMap<String, String>,
    _oracle: &BTreeMap<String, String>,
    output: &str,
) -> Result<Score, FormatError> {
    for tag in ["<think>", "</think>", "<solution>", "</solution>"] {
        if output.matches(tag).count() != 1 {
            return Err(FormatError("each tag must occur exactly once"));
        }
    }
    Ok(Score { reward: 0.0 })
}
