//! `swerl logprobs` end to end on a tiny checkpoint written in-test.

use swerl_model::{ScoreOptions, TokenBatch};

use crate::helpers::{assert_code, jsonl, stderr, stdout, swerl};

#[test]
fn scores_jsonl_texts_like_the_library_and_reports_bad_lines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir)?;
    let loaded = swerl_model::testing::write_tiny_checkpoint(&model_dir, 1)?;
    let input = dir.path().join("texts.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"hello world 123\"}\nnot json\n{\"text\": \"x\"}\n{\"text\": \"the hell\"}\n",
    )?;
    let out = swerl()
        .args(["logprobs", "--model"])
        .arg(&model_dir)
        .arg("--input")
        .arg(&input)
        .args(["--batch-size", "2"])
        .output()?;
    // One rule with `reward`: a line without a result is exit status 1.
    assert_code(&out, 1);
    assert!(stderr(&out).contains("texts.jsonl:2"), "bad line reported: {}", stderr(&out));
    let lines = jsonl(&stdout(&out));
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().is_some_and(|e| e.contains("expected")), "{}", lines[1]);
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[2]["logprobs"].as_array().map(Vec::len), Some(0), "one token, nothing to score");
    for (line, text) in [(&lines[0], "hello world 123"), (&lines[3], "the hell")] {
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

/// Items 1, 2 and 11: the input as output was truncated; invalid UTF-8 aborted the run without
/// a line number; texts past the model's context were scored silently.
#[test]
fn refuses_its_input_as_output_and_reports_bad_and_overlong_lines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir)?;
    swerl_model::testing::write_tiny_checkpoint(&model_dir, 1)?;
    let input = dir.path().join("texts.jsonl");
    let mut text = b"{\"text\": \"hello\"}\n{\"text\": \"\xff\"}\n".to_vec();
    text.extend_from_slice(format!("{{\"text\": \"{}\"}}\n", "hello ".repeat(400)).as_bytes());
    std::fs::write(&input, &text)?;

    let same = swerl()
        .args(["logprobs", "--model"])
        .arg(&model_dir)
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&input)
        .output()?;
    assert_code(&same, 2);
    assert_eq!(std::fs::read(&input)?, text);

    let output = dir.path().join("scores.jsonl");
    let o = swerl()
        .args(["logprobs", "--model"])
        .arg(&model_dir)
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["--max-length", "64"])
        .output()?;
    assert_code(&o, 1);
    let rows = jsonl(&std::fs::read_to_string(&output)?);
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["logprobs"].is_array());
    assert_eq!(rows[1]["line"], 2);
    assert!(rows[1]["error"].as_str().is_some_and(|e| e.contains("invalid UTF-8")), "{}", rows[1]);
    assert_eq!(rows[2]["line"], 3);
    assert!(rows[2]["error"].as_str().is_some_and(|e| e.contains("--max-length 64")), "{}", rows[2]);
    Ok(())
}

#[test]
fn missing_model_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("t.jsonl");
    std::fs::write(&input, "{\"text\": \"a\"}\n")?;
    let out = swerl().args(["logprobs", "--model", "./does/not/exist", "--input"]).arg(&input).output()?;
    assert_code(&out, 1);
    assert!(stderr(&out).contains("./does/not/exist"), "{}", stderr(&out));
    Ok(())
}
