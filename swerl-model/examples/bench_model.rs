//! Throughput and memory of swerl-model's training pass and sampler, printed as one JSON line;
//! driven by `benches/vs_engines.py`, which runs PyTorch and llama.cpp on the same workloads in the
//! same run.
//!
//! ```text
//! cargo run --release -p swerl-model --example bench_model -- train --config tiny --seq 512
//! cargo run --release -p swerl-model --example bench_model -- sample --config smollm2 --batch 8
//! cargo run --release -p swerl-model --example bench_model -- decode --config M.gguf --batch 8 --weights bf16
//! cargo run --release -p swerl-model --example bench_model -- bandwidth
//! cargo run --release -p swerl-model --example bench_model -- products --seq 512
//! ```
//! Options: `--config tiny|smollm2|<HF dir or .gguf>`, `--seq N`, `--batch N`, `--iters N`,
//! `--new N` (sampling), `--prompt-len N` (sampling), `--recompute auto|always|never`,
//! `--dtype f32|bf16`, `--device cpu|cuda`, `--weights f32|bf16|f16` (decode).
//!
//! `decode` runs the rollout engine on `--batch` different prompts and reports prefill and
//! decoding separately (a run with one new token per sequence times the prefill), with the bytes
//! of weights each decoding step reads and the bandwidth that makes. `bandwidth` measures the
//! machine's memory bandwidth the way STREAM does (copy and a read-only sum over arrays far
//! larger than the caches, all cores, best of 5). `products` times the matrix products of one
//! SmolLM2 training step by shape and layout.
#![allow(clippy::print_stdout)] // an example program: its stdout is the result

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use swerl_model::{
    Engine, EngineConfig, EngineEvent, EngineRequest, GenerateOptions, GenerationRequest, Gradients, Llama,
    LoadOptions, ModelConfig, ModelOptions, Recompute, SamplingParams, TokenBatch, TrainOptions,
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
    // As `swerl` does: candle's thread count computed once, not in every product.
    if let Some(n) = swerl_model::rayon_threads_env() {
        // SAFETY: no other thread exists yet.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n)
        };
    }
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
    if mode == "bandwidth" {
        return bandwidth();
    }
    if mode == "products" {
        return products(num("seq", 512)?, num("iters", 5)?);
    }
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
        "decode" => {
            let (batch, plen, new) = (num("batch", 8)?, num("prompt-len", 32)?, num("new", 64)?);
            let weights: swerl_model::WeightDtype = get("weights", "f32").parse()?;
            let dir = tempfile::tempdir()?;
            swerl_model::testing::write_tokenizer(dir.path())?;
            let tok = swerl_model::Tokenizer::from_dir(dir.path())?;
            let config =
                EngineConfig { max_batch: batch, prefill_chunk: 1024, weights, ..EngineConfig::default() };
            let start = Instant::now();
            let mut engine = Engine::new(&model, &tok, config)?;
            let copy_secs = start.elapsed().as_secs_f64();
            let run = |engine: &mut Engine<'_>, n: usize, new: usize| -> Result<(f64, usize)> {
                for b in 0..n {
                    engine.add(EngineRequest {
                        prompt_ids: (0..plen).map(|i| token(i * 3 + b)).collect(),
                        samples: vec![SamplingParams {
                            temperature: 1.0,
                            max_new_tokens: new,
                            seed: Some(b as u64),
                            ..SamplingParams::default()
                        }],
                    })?;
                }
                let start = Instant::now();
                let mut tokens = 0;
                while engine.has_work() {
                    for ev in engine.step()? {
                        if let EngineEvent::Finished { completion, .. } = ev {
                            tokens += completion.token_ids.len();
                        }
                    }
                }
                Ok((start.elapsed().as_secs_f64(), tokens))
            };
            reset_peak();
            run(&mut engine, 1, 4)?; // warm-up
            let (prefill_secs, _) = run(&mut engine, batch, 1)?;
            let (total_secs, tokens) = run(&mut engine, batch, new + 1)?;
            let decode_secs = total_secs - prefill_secs;
            let decoded = tokens - batch;
            let steps = decoded / batch;
            // Every decoding step reads every weight matrix once (the embedding's rows aside).
            let elem = weights.resolve(model.compute_dtype()).size_in_bytes();
            let cfg = model.config();
            let streamed = cfg.num_parameters()
                - if cfg.tie_word_embeddings { 0 } else { cfg.vocab_size * cfg.hidden_size };
            let bytes = (streamed * elem) as f64;
            println!(
                "{}",
                serde_json::json!({
                    "impl": "swerl", "mode": "decode", "config": name, "batch": batch,
                    "prompt_len": plen, "new_tokens": new, "weights": get("weights", "f32"),
                    "decode_tokens_per_s": decoded as f64 / decode_secs,
                    "prefill_tokens_per_s": (batch * plen) as f64 / prefill_secs,
                    "weight_bytes_per_step": bytes,
                    "weight_gb_per_s": bytes * steps as f64 / decode_secs / 1e9,
                    "weight_copy_seconds": copy_secs,
                    "peak_rss_mib": peak_rss_mib(),
                })
            );
        }
        other => bail!("unknown mode {other} (train | sample | decode | bandwidth)"),
    }
    Ok(())
}

/// GFLOP/s of the matrix products of one SmolLM2-135M training step at `seq` tokens, each in
/// the layout the training pass uses (`x @ W^T` with `W^T` a transposed view, `dy @ W`,
/// `dy^T @ x`), with the transposed operand already contiguous, and with its copy timed too:
/// which shapes run below gemm's peak, and whether a layout would fix them. Best of `iters`.
fn products(seq: usize, iters: usize) -> Result<()> {
    use candle_core::{Device, Tensor};
    let dev = Device::Cpu;
    let c = ModelConfig::default();
    let (h, i, kv) = (c.hidden_size, c.intermediate_size, c.num_key_value_heads * c.head_dim);
    // (name, n_out, n_in) of each weight `W` (n_out x n_in).
    let shapes = [("qkv", h + 2 * kv, h), ("o", h, h), ("gate_up", 2 * i, h), ("down", h, i)];
    let best = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
        f()?; // warm-up
        let mut t = f64::INFINITY;
        for _ in 0..iters {
            let s = Instant::now();
            f()?;
            t = t.min(s.elapsed().as_secs_f64());
        }
        Ok(t)
    };
    for (name, n_out, n_in) in shapes {
        let x = Tensor::randn(0f32, 1., (seq, n_in), &dev)?;
        let w = Tensor::randn(0f32, 1., (n_out, n_in), &dev)?;
        let dy = Tensor::randn(0f32, 1., (seq, n_out), &dev)?;
        let wt = w.t()?.contiguous()?;
        let dyt = dy.t()?.contiguous()?;
        let flops = 2.0 * (seq * n_in * n_out) as f64;
        let rows = [
            ("x @ W^T (view)", best(&|| Ok(x.matmul(&w.t()?)?))?),
            ("x @ W^T (contiguous)", best(&|| Ok(x.matmul(&wt)?))?),
            ("x @ W^T (copied)", best(&|| Ok(x.matmul(&w.t()?.contiguous()?)?))?),
            ("dy @ W", best(&|| Ok(dy.matmul(&w)?))?),
            ("dy^T @ x (view)", best(&|| Ok(dy.t()?.matmul(&x)?))?),
            ("dy^T @ x (contiguous)", best(&|| Ok(dyt.matmul(&x)?))?),
            ("dy^T @ x (copied)", best(&|| Ok(dy.t()?.contiguous()?.matmul(&x)?))?),
        ];
        for (what, secs) in rows {
            println!(
                "{}",
                serde_json::json!({
                    "impl": "swerl", "mode": "products", "seq": seq, "weight": name,
                    "shape": [n_out, n_in], "product": what, "gflop_per_s": flops / secs / 1e9,
                })
            );
        }
    }
    Ok(())
}

/// STREAM-style memory bandwidth: `copy` (`a[i] = b[i]`, counting the bytes read and written)
/// and `read` (a sum over `a`, the access pattern of a matrix-vector product), over 512 MiB
/// arrays on all cores, best of 5 runs each, in GB/s.
fn bandwidth() -> Result<()> {
    const N: usize = 1 << 27; // f32 values: 512 MiB per array
    let chunk = N / rayon::current_num_threads().max(1) / 4;
    let mut a = vec![1f32; N];
    let b = vec![2f32; N];
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let copy = best(&mut || {
        a.par_chunks_mut(chunk).zip(b.par_chunks(chunk)).for_each(|(a, b)| a.copy_from_slice(b));
    });
    let mut total = 0f32;
    let read = best(&mut || {
        // 64 independent sums so the additions keep up with memory.
        let sum = |c: &[f32]| {
            let mut acc = [0f32; 64];
            for v in c.chunks_exact(64) {
                for (a, x) in acc.iter_mut().zip(v) {
                    *a += x;
                }
            }
            acc.iter().sum::<f32>()
        };
        total += a.par_chunks(chunk).map(sum).sum::<f32>();
    });
    let bytes = (N * 4) as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "swerl", "mode": "bandwidth", "threads": rayon::current_num_threads(),
            "copy_gb_per_s": 2.0 * bytes / copy / 1e9, "read_gb_per_s": bytes / read / 1e9,
            "checksum": total,
        })
    );
    Ok(())
}
