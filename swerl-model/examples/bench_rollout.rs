//! One GRPO-style rollout through the engine: `--group` samples of one long prompt, with the
//! prompt's KV cache shared by the group or not; prints one JSON line (seconds, tokens, engine
//! counters, peak RSS). Run it under `/usr/bin/time -v` for an outside view of memory.
//!
//! ```text
//! cargo run -p swerl-model --example bench_rollout -- --model M.gguf --prompt-len 1024 \
//!     --group 16 --new 16 --share on [--weights f32|bf16|f16]
//! ```
#![allow(clippy::print_stdout)] // an example program: its stdout is the result

use std::time::Instant;

use anyhow::{Context, Result, bail};
use swerl_model::{EngineConfig, EngineRequest, LoadOptions, SamplingParams};

/// Peak resident memory of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let mut model = None;
    let (mut prompt_len, mut group, mut new, mut share, mut chunk) =
        (1024usize, 16usize, 16usize, true, 512usize);
    let mut weights = "f32".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = Some(val()?),
            "--prompt-len" => prompt_len = val()?.parse()?,
            "--group" => group = val()?.parse()?,
            "--new" => new = val()?.parse()?,
            "--prefill-chunk" => chunk = val()?.parse()?,
            "--share" => share = val()? == "on",
            "--weights" => weights = val()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let model = model.context("--model M (HF dir, .gguf or Hub id)")?;
    let loaded = swerl_model::load(&model, &LoadOptions::default())?;
    // A long, file-like prompt: repeated source text cut to `prompt_len` tokens.
    let text = "fn parse(input: &str) -> Result<Vec<u32>, Error> {\n    input.split(',').map(|s| s.trim().parse().map_err(Error::from)).collect()\n}\n".repeat(prompt_len / 8 + 1);
    let mut ids = loaded.tokenizer.encode(&text, false)?;
    ids.truncate(prompt_len);
    let params =
        SamplingParams { temperature: 1.0, max_new_tokens: new, seed: Some(1), ..SamplingParams::default() };
    let request = EngineRequest::repeated(ids, &params, group);
    let config = EngineConfig {
        max_batch: group,
        prefill_chunk: chunk,
        share_prefix: share,
        eos_ids: vec![],
        weights: weights.parse()?,
    };
    let rss_before = peak_rss_mib();
    let start = Instant::now();
    let mut engine = swerl_model::Engine::new(&loaded.model, &loaded.tokenizer, config)?;
    engine.add(request)?;
    let mut generated = 0;
    while engine.has_work() {
        for ev in engine.step()? {
            if let swerl_model::EngineEvent::Finished { completion, .. } = ev {
                generated += completion.token_ids.len();
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = engine.stats();
    println!(
        "{}",
        serde_json::json!({
            "share_prefix": share, "prompt_len": prompt_len, "group": group, "new_tokens": generated,
            "seconds": seconds, "prefill_tokens": stats.prefill_tokens, "decode_steps": stats.decode_steps,
            "peak_rss_mib_after_load": rss_before, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
