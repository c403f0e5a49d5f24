//! Worst cases a training run can meet, each scored once and timed: a 1 MB completion (garbage,
//! one huge REPLACE, thousands of repeated lines), a 50,000-line file (scattered edits, a whole-
//! file rewrite on both sides), and completions with thousands of blocks.
//!
//!     cargo run --release -p swerl-reward --example pathological
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

fn code_line(i: usize) -> String {
    match i % 7 {
        0 => String::new(),
        1 => format!("def function_{i}(value, count):"),
        2 => format!("    result = value * {} + count", i % 13),
        3 => "    if result is None:".to_owned(),
        4 => format!("        raise ValueError(\"bad value {i}\")"),
        5 => "    return result".to_owned(),
        _ => format!("# comment {i} about the code above"),
    }
}

fn file(lines: usize, offset: usize) -> String {
    (0..lines).map(|i| code_line(i + offset) + "\n").collect()
}

fn block(path: &str, search: &str, replace: &str) -> String {
    format!("```python\n### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n")
}

fn completion(blocks: &str) -> String {
    format!("<think>\nfix it\n</think>\n<solution>\n{blocks}</solution>")
}

/// Scores with the default [`swerl_reward::Limits`] and prints the time and the outcome.
fn time(name: &str, ctx: &BTreeMap<&str, String>, oracle: &BTreeMap<&str, String>, output: &str) {
    let start = Instant::now();
    let outcome = swerl_reward::score(ctx, oracle, output);
    let secs = start.elapsed().as_secs_f64();
    let what = match outcome {
        Ok(score) => format!("reward {:.4}", score.reward),
        Err(swerl_reward::FormatError::LimitExceeded { stage, .. }) => format!("-1: {stage} limit"),
        Err(err) => format!("-1: {}", err.to_string().chars().take(24).collect::<String>()),
    };
    println!("{name:48} {:>7.0} KB  {secs:>7.3} s  {what}", output.len() as f64 / 1024.0);
}

fn main() {
    let small = file(300, 0);
    let ctx = BTreeMap::from([("a.py", small.clone())]);
    let oracle = BTreeMap::from([("a.py", small.replacen("result = value * 2", "result = value * 3", 1))]);
    let target = code_line(2);

    let garbage: String = "lorem ipsum <think dolor> sit amet\n".repeat(30_000);
    time("1 MB completion without tags", &ctx, &oracle, &garbage);

    let huge = file(40_000, 1000);
    time("1 MB REPLACE of realistic code", &ctx, &oracle, &completion(&block("a.py", &target, &huge)));

    let repeated = "    x = x + 1\n".repeat(70_000);
    time("1 MB REPLACE of one repeated line", &ctx, &oracle, &completion(&block("a.py", &target, &repeated)));

    let spaces = " ".repeat(1 << 20);
    time("1 MB REPLACE of spaces", &ctx, &oracle, &completion(&block("a.py", &target, &spaces)));

    let big = file(50_000, 0);
    let big_ctx = BTreeMap::from([("big.py", big.clone())]);
    let mut oracle_big = big.clone();
    for i in (0..50_000).step_by(2500) {
        let line = code_line(i + 1);
        oracle_big = oracle_big.replacen(&line, &format!("{line}  # fixed"), 1);
    }
    let big_oracle = BTreeMap::from([("big.py", oracle_big)]);
    // Each `def function_N` line (N % 7 == 1) is unique.
    let scattered: String = (0..20)
        .map(|k| 2499 * k + 1)
        .map(|i| block("big.py", &code_line(i), &format!("{}  # also", code_line(i))))
        .collect();
    time("50k-line file, 20 scattered blocks", &big_ctx, &big_oracle, &completion(&scattered));

    let rewritten = big.replace("value", "val");
    time(
        "50k-line file rewritten whole (1 block)",
        &big_ctx,
        &big_oracle,
        &completion(&block("big.py", &big, &rewritten)),
    );

    let both_oracle = BTreeMap::from([("big.py", big.replace("count", "n"))]);
    time(
        "50k-line file rewritten whole on both sides",
        &big_ctx,
        &both_oracle,
        &completion(&block("big.py", &big, &rewritten)),
    );

    let mid = file(40_000, 0);
    let mid_ctx = BTreeMap::from([("m.py", mid.clone())]);
    let mid_oracle = BTreeMap::from([("m.py", mid.replace("raise", "throw"))]);
    let many: String = (0..5_000)
        .map(|i| block("m.py", &code_line(7 * i + 1), &format!("{}  # {i}", code_line(7 * i + 1))))
        .collect();
    time("5,000 blocks on a 40k-line file", &mid_ctx, &mid_oracle, &completion(&many));

    let same: String = (0..5_000)
        .map(|i| block("m.py", "    return result", &format!("    return result  # {i}")))
        .collect();
    time("5,000 blocks each replacing 5,700 occurrences", &mid_ctx, &mid_oracle, &completion(&same));

    let fences = "```\n### a.py\n".repeat(50_000);
    time("50,000 unterminated blocks", &ctx, &oracle, &completion(&fences));
}
