//! `swerl generate` end to end on a tiny checkpoint written in-test (HF directory and Hub cache).

use crate::helpers::{assert_code, stderr, swerl};

#[test]
fn streams_greedy_text_and_prints_json_samples() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let loaded = swerl_model::testing::write_tiny_checkpoint(dir.path(), 2)?;
    let greedy = swerl()
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--prompt", "hello", "--temperature", "0", "--max-new-tokens", "6"])
        .output()?;
    assert!(greedy.status.success(), "{}", String::from_utf8_lossy(&greedy.stderr));
    // Same as the library's greedy completion.
    let lib = loaded.model.generate(
        &loaded.tokenizer,
        &[swerl_model::GenerationRequest {
            prompt_ids: loaded.tokenizer.encode("hello", true)?,
            params: swerl_model::SamplingParams::greedy(6),
        }],
        &swerl_model::GenerateOptions {
            eos_ids: loaded.eos_ids(),
            pad_id: loaded.pad_id(),
            max_batch: 0,
            ..Default::default()
        },
        |_| {},
    )?;
    assert_eq!(String::from_utf8(greedy.stdout)?, format!("{}\n", lib[0].text));

    let sampled = swerl()
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--prompt", "hi", "--chat", "--system", "be brief", "-n", "2"])
        .args(["--seed", "7", "--top-p", "0.9", "--max-new-tokens", "5", "--json"])
        .output()?;
    assert!(sampled.status.success(), "{}", String::from_utf8_lossy(&sampled.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8(sampled.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let n = r["token_ids"].as_array().map(Vec::len).unwrap_or(0);
        assert!((1..=5).contains(&n), "{r}");
        assert_eq!(r["logprobs"].as_array().map(Vec::len), Some(n));
        assert!(matches!(r["finish_reason"].as_str(), Some("stop" | "length")), "{r}");
    }
    Ok(())
}

#[test]
fn loads_hub_ids_from_the_cache_offline() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    swerl_model::testing::write_tiny_checkpoint(src.path(), 3)?;
    let home = tempfile::tempdir()?;
    let snap = home.path().join("hub/models--swerl--tiny/snapshots/1111111111111111111111111111111111111111");
    std::fs::create_dir_all(&snap)?;
    let refs = home.path().join("hub/models--swerl--tiny/refs");
    std::fs::create_dir_all(&refs)?;
    std::fs::write(refs.join("main"), "1111111111111111111111111111111111111111")?;
    for e in std::fs::read_dir(src.path())? {
        let e = e?;
        std::fs::copy(e.path(), snap.join(e.file_name()))?;
    }
    let out = swerl()
        .args(["generate", "--model", "swerl/tiny", "--prompt", "x", "--max-new-tokens", "3"])
        .env("HF_HOME", home.path())
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let missing = swerl()
        .args(["generate", "--model", "swerl/absent", "--prompt", "x"])
        .env("HF_HOME", home.path())
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("swerl/absent") && stderr.contains("offline"), "{stderr}");
    Ok(())
}

/// Items 11 and 15: `--num 0` sampled one completion; prompts past the context were sampled.
#[test]
fn refuses_zero_completions_and_prompts_past_the_context() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    swerl_model::testing::write_tiny_checkpoint(dir.path(), 2)?;
    let o = swerl()
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--prompt", "x", "--num", "0"])
        .output()?;
    assert_code(&o, 2);
    let long = "hello ".repeat(600);
    let o = swerl()
        .args(["generate", "--model"])
        .arg(dir.path())
        .args(["--prompt", &long, "--max-new-tokens", "1"])
        .output()?;
    assert_code(&o, 1);
    assert!(stderr(&o).contains("more than the model's context of 512 tokens"), "{}", stderr(&o));
    Ok(())
}
