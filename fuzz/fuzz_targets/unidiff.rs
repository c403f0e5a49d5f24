//! Unified-diff parsing and the unified-diff reward, in both `unidiff` dialects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swerl_reward::unidiff::{Dialect, file_level_diff, unidiff_reward};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (oracle, pred) = text.split_once('\0').unwrap_or((text, text));
    for dialect in [Dialect::V1, Dialect::V0_7] {
        let _ = file_level_diff(oracle, dialect);
        let s = unidiff_reward(&[oracle], &[pred], dialect);
        assert!((0.0..=1.0).contains(&s.reward), "{}", s.reward);
    }
});
