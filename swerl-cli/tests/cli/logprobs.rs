//! `swerl logprobs` end to end on a tiny checkpoint written in-test.

use std::process::Command;

use swerl_model::{ScoreOptions, TokenBatch};

#[test]
fn scores_jsonl_texts_like_the_library_and_skips_bad_lines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir)?;
    let loaded = swerl_model::testing::write_tiny_checkpoint(&model_dir, 1)?;
    let input = dir.path().join("texts.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"hello world 123\"}\nnot json\n{\"text\": \"x\"}\n{\"text\": \"the hell\"}\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_swerl"))
        .args(["logprobs", "--model"])
        .arg(&model_dir)
        .arg("--input")
        .arg(&input)
        .args(["--batch-size", "2"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("texts.jsonl:2"), "bad line reported: {stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["logprobs"].as_array().map(Vec::len), Some(0), "one token, nothing to score");
    for (line, text) in [(&lines[0], "hello world 123"), (&lines[2], "the hell")] {
        let tokens: Vec<u32> = serde_json::from_value(line["tokens"].clone())?;
        assert_eq!(tokens, loaded.tokenizer.encode(text, true)?);
        let got: Vec<f32> = serde_json::from_value(line["logprobs"].clone())?;
        assert_eq!(got.len(), tokens.len() - 1);
        let batch = TokenBatch::from_sequences(&[tokens], 0)?;
        let want = loaded.model.score(&batch, &ScoreOptions::default())?;
        let want: Vec<f32> = want.logprobs.flatten_all()?.to_vec1()?;
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }
    Ok(())
}

#[test]
fn missing_model_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("t.jsonl");
    std::fs::write(&input, "{\"text\": \"a\"}\n")?;
    let out = Command::new(env!("CARGO_BIN_EXE_swerl"))
        .args(["logprobs", "--model", "./does/not/exist", "--input"])
        .arg(&input)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("./does/not/exist"), "{stderr}");
    Ok(())
}
