//! The completion parser and the reward: any line scores (or is an error row) without panicking,
//! and a reward is -1 or in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use swerl_reward::batch::{BatchOptions, score_jsonl, score_line};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // As a completion against a one-file oracle.
        let case = serde_json::json!({
            "code_context": {"a.py": "x = 1\ny = 2\n"},
            "oracle_new_content": {"a.py": "x = 1\ny = 3\n"},
            "output": text,
        });
        let r = score_line(1, &case.to_string(), &BatchOptions { include_patch: true, ..Default::default() });
        let reward = r.reward.expect("a valid case has a reward");
        assert!(reward == -1.0 || (0.0..=1.0).contains(&reward), "{reward}");
    }
    // As a whole JSONL batch (bytes, any UTF-8).
    let mut out = Vec::new();
    let summary = score_jsonl(data, &mut out, &BatchOptions { jobs: 1, ..Default::default() }, |_| {})
        .expect("scoring in memory cannot fail");
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), summary.lines);
});
