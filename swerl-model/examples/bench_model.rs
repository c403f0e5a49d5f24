//! Throughput and memory of swerl-model's training pass and sampler, printed as one JSON line;
//! driven by `benches/vs_pytorch.py`, which runs PyTorch on the same configs in the same run.
//!
//! ```text
//! cargo run --release -p swerl-model --example bench_model -- train --config tiny --seq 512
//! cargo run --release -p swerl-model --example bench_model -- sample --config smollm2 --batch 8
//! ```
//! Options: `--config tiny|smollm2|<HF dir or .gguf>`, `--seq N`, `--batch N`, `--iters N`,
//! `--new N` (sampling), `--prompt-len N` (sampling), `--recompute auto|always|never`,
//! `--dtype f32|bf16`, `--device cpu|cuda`.
#![allow(clippy::print_stdout)] // an example program: its stdout is the result

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use swerl_model::{
    GenerateOptions, GenerationRequest, Gradients, Llama, LoadOptions, ModelConfig, ModelOptions, Recompute,
    SamplingParams, TokenBatch, TrainOptions,
};

fn config(name: &str) -> Option<ModelConfig> {
    match name {
        "tiny" => Some(ModelConfig {
            vocab_size: 4096,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 32,
            ..ModelConfig::default()
        }),
        "smollm2" => Some(ModelConfig::default()),
        _ => None,
    }
}

/// Peak resident memory of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the peak-memory counter so later peaks exclude loading.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().context("mode: train | sample")?.clone();
    let mut opts: HashMap<String, String> = HashMap::new();
    for pair in args[1..].chunks(2) {
        let key = pair[0].trim_start_matches("--").to_string();
        let value = pair.get(1).with_context(|| format!("--{key} needs a value"))?;
        opts.insert(key, value.clone());
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let num = |k: &str, d: usize| -> Result<usize> { Ok(get(k, &d.to_string()).parse()?) };
    let model_opts = ModelOptions {
        device: swerl_model::parse_device(&get("device", "cpu"))?,
        compute_dtype: swerl_model::parse_dtype(&get("dtype", "f32"))?,
    };
    let name = get("config", "tiny");
    let model = match config(&name) {
        Some(cfg) => Llama::new_random(cfg, 0, 0.02, &model_opts)?,
        None => {
            let load = LoadOptions { model: model_opts.clone(), ..LoadOptions::default() };
            swerl_model::load(&name, &load)?.model
        }
    };
    let vocab = model.config().vocab_size as u32;
    let token = |i: usize| (i as u32 * 7919 + 13) % vocab;
    let rss_loaded = peak_rss_mib();
    match mode.as_str() {
        "train" => {
            let (seq, batch, iters) = (num("seq", 512)?, num("batch", 1)?, num("iters", 3)?);
            let recompute = match get("recompute", "auto").as_str() {
                "auto" => Recompute::Auto,
                "always" => Recompute::Always,
                "never" => Recompute::Never,
                other => bail!("recompute: {other}"),
            };
            // Half prompt, half completion; every completion token is scored.
            let prompts: Vec<Vec<u32>> =
                (0..batch).map(|b| (0..seq / 2).map(|i| token(i + b)).collect()).collect();
            let completions: Vec<Vec<u32>> =
                (0..batch).map(|b| (seq / 2..seq).map(|i| token(i + b)).collect()).collect();
            let tb = TokenBatch::from_prompt_completions(&prompts, &completions, 0)?;
            let opts = TrainOptions { recompute, ..TrainOptions::default() };
            let forward_secs = std::cell::Cell::new(0f64);
            let step = || -> Result<()> {
                let t0 = Instant::now();
                let fwd = model.forward_train(&tb, &opts)?;
                forward_secs.set(forward_secs.get() + t0.elapsed().as_secs_f64());
                let n = tb.num_scored() as f64;
                let loss = ((fwd.logprobs() * fwd.mask())?.sum_all()? / -n)?;
                let mut grads = Gradients::new();
                fwd.backward(&loss, &mut grads)?;
                Ok(())
            };
            reset_peak();
            step()?; // warm-up
            forward_secs.set(0.0);
            let start = Instant::now();
            for _ in 0..iters {
                step()?;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "impl": "swerl", "mode": "train", "config": name, "seq": seq,
                    "batch": batch, "recompute": get("recompute", "auto"),
                    "tokens_per_s": (iters * batch * seq) as f64 / secs,
                    "seconds_per_step": secs / iters as f64,
                    "forward_share": forward_secs.get() / secs,
                    "peak_rss_mib": peak_rss_mib(), "loaded_rss_mib": rss_loaded,
                })
            );
        }
        "sample" => {
            let (batch, plen, new) = (num("batch", 8)?, num("prompt-len", 32)?, num("new", 64)?);
            let requests: Vec<GenerationRequest> = (0..batch)
                .map(|b| GenerationRequest {
                    prompt_ids: (0..plen).map(|i| token(i * 3 + b)).collect(),
                    params: SamplingParams {
                        temperature: 1.0,
                        top_p: 0.95,
                        max_new_tokens: new,
                        seed: Some(b as u64),
                        ..SamplingParams::default()
                    },
                })
                .collect();
            let dir = tempfile::tempdir()?;
            swerl_model::testing::write_tokenizer(dir.path())?;
            let tok = swerl_model::Tokenizer::from_dir(dir.path())?;
            let opts = GenerateOptions::default();
            reset_peak();
            model.generate(&tok, &requests[..1], &opts, |_| {})?; // warm-up
            let start = Instant::now();
            let out = model.generate(&tok, &requests, &opts, |_| {})?;
            let secs = start.elapsed().as_secs_f64();
            let tokens: usize = out.iter().map(|c| c.token_ids.len()).sum();
            println!(
                "{}",
                serde_json::json!({
                    "impl": "swerl", "mode": "sample", "config": name, "batch": batch,
                    "prompt_len": plen, "new_tokens": new,
                    "tokens_per_s": tokens as f64 / secs,
                    "peak_rss_mib": peak_rss_mib(),
                })
            );
        }
        other => bail!("unknown mode {other} (train | sample)"),
    }
    Ok(())
}
