//! Tiny models, tokenizers and checkpoints built in-test, written in the real formats.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file::{self, Value as GgufValue};
use candle_core::quantized::{GgmlDType, QTensor};
use serde_json::Value;
use swerl_model::{
    Device, Llama, ModelConfig, ModelOptions, SaveOptions, Tensor, Tokenizer, parameter_shapes,
    save_pretrained,
};

pub(crate) use swerl_model::testing::{
    CHATML_TEMPLATE as CHATML, SPECIAL_TOKENS as SPECIALS, hf_tokenizer as tokenizer,
    tiny_config as byte_config, vocab_and_merges, write_tokenizer,
};

/// Parameter `k`'s values in the golden models (see `tests/golden/make_goldens.py`).
pub(crate) fn formula_weight(k: usize, name: &str, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let vals: Vec<f32> = (0..n)
        .map(|i| {
            let (i, k) = (i as f64, k as f64);
            let v = if name.ends_with("norm.weight") {
                1.0 + 0.1 * (0.7 * i + k).sin()
            } else if name.ends_with(".bias") {
                0.05 * (0.9 * i + 0.5 * k).sin()
            } else {
                0.15 * (0.37 * i + 1.3 * k).sin()
            };
            v as f32
        })
        .collect();
    Ok(Tensor::from_vec(vals, shape, &Device::Cpu)?)
}

/// A model whose weights follow [`formula_weight`].
pub(crate) fn formula_model(cfg: &ModelConfig) -> Result<Llama> {
    let tensors = parameter_shapes(cfg)
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| Ok((name.clone(), formula_weight(k, &name, &shape)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(Llama::from_tensors(cfg.clone(), tensors, &ModelOptions::default(), "formula")?)
}

/// Writes a complete Hugging Face checkpoint of `model` with the test tokenizer into `dir`.
pub(crate) fn write_hf_checkpoint(dir: &Path, model: &Llama) -> Result<()> {
    save_pretrained(dir, model, None, None, &SaveOptions::default())?;
    write_tokenizer(dir)?;
    Ok(())
}

/// Lays out a Hub cache entry (`models--{org}--{name}`) holding the files of `src` under
/// commit `rev`, with `refs/main` pointing at it, as `huggingface_hub` does.
pub(crate) fn write_hub_cache(cache: &Path, repo: &str, src: &Path, rev: &str) -> Result<()> {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = folder.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap)?;
    std::fs::create_dir_all(folder.join("refs"))?;
    std::fs::write(folder.join("refs").join("main"), rev)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        std::fs::copy(entry.path(), snap.join(entry.file_name()))?;
    }
    Ok(())
}

/// Writes `model` as a llama.cpp GGUF (f32 tensors, Q/K rows permuted as llama.cpp's converter
/// does) with the test tokenizer in its metadata (`pre` = `smollm`).
pub(crate) fn write_gguf(path: &Path, model: &Llama) -> Result<()> {
    write_gguf_with(path, model, &[])
}

/// [`write_gguf`] with some metadata values replaced.
pub(crate) fn write_gguf_with(path: &Path, model: &Llama, overrides: &[(&str, GgufValue)]) -> Result<()> {
    let cfg = model.config();
    let sd = model.state_dict()?;
    let mut named: Vec<(String, QTensor)> = Vec::new();
    let mut put = |gguf: String, hf: &str, permute: Option<usize>| -> Result<()> {
        let t = sd[hf].clone();
        let t = match permute {
            Some(h) => swerl_model::permute_for_gguf(&t, h)?,
            None => t,
        };
        named.push((gguf, QTensor::quantize(&t, GgmlDType::F32)?));
        Ok(())
    };
    put("token_embd.weight".into(), "model.embed_tokens.weight", None)?;
    put("output_norm.weight".into(), "model.norm.weight", None)?;
    if !cfg.tie_word_embeddings {
        put("output.weight".into(), "lm_head.weight", None)?;
    }
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (g, h, perm) in [
            ("attn_norm", "input_layernorm", None),
            ("attn_q", "self_attn.q_proj", Some(cfg.num_attention_heads)),
            ("attn_k", "self_attn.k_proj", Some(cfg.num_key_value_heads)),
            ("attn_v", "self_attn.v_proj", None),
            ("attn_output", "self_attn.o_proj", None),
            ("ffn_norm", "post_attention_layernorm", None),
            ("ffn_gate", "mlp.gate_proj", None),
            ("ffn_up", "mlp.up_proj", None),
            ("ffn_down", "mlp.down_proj", None),
        ] {
            put(format!("blk.{i}.{g}.weight"), &format!("{p}.{h}.weight"), perm)?;
        }
    }
    let (tokens, merges) = vocab_and_merges();
    let n = tokens.len();
    let token_type: Vec<GgufValue> =
        (0..n).map(|i| GgufValue::I32(if i >= n - SPECIALS.len() { 3 } else { 1 })).collect();
    let strs = |v: Vec<String>| GgufValue::Array(v.into_iter().map(GgufValue::String).collect());
    let u32v = |x: usize| GgufValue::U32(x as u32);
    let meta: Vec<(&str, GgufValue)> = vec![
        ("general.architecture", GgufValue::String("llama".into())),
        ("llama.block_count", u32v(cfg.num_hidden_layers)),
        ("llama.embedding_length", u32v(cfg.hidden_size)),
        ("llama.feed_forward_length", u32v(cfg.intermediate_size)),
        ("llama.attention.head_count", u32v(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u32v(cfg.num_key_value_heads)),
        ("llama.rope.freq_base", GgufValue::F32(cfg.rope_theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(cfg.rms_norm_eps as f32)),
        ("llama.context_length", u32v(cfg.max_position_embeddings)),
        ("llama.vocab_size", u32v(cfg.vocab_size)),
        ("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
        ("tokenizer.ggml.pre", GgufValue::String("smollm".into())),
        ("tokenizer.ggml.tokens", strs(tokens)),
        ("tokenizer.ggml.merges", strs(merges.into_iter().map(|(a, b)| format!("{a} {b}")).collect())),
        ("tokenizer.ggml.token_type", GgufValue::Array(token_type)),
        ("tokenizer.ggml.bos_token_id", u32v(n - 2)),
        ("tokenizer.ggml.eos_token_id", u32v(n - 1)),
        ("tokenizer.ggml.padding_token_id", u32v(n - 1)),
        ("tokenizer.ggml.unknown_token_id", u32v(n - 3)),
        ("tokenizer.chat_template", GgufValue::String(CHATML.into())),
    ];
    let meta_refs: Vec<(&str, &GgufValue)> = meta
        .iter()
        .map(|(k, v)| (*k, overrides.iter().find(|(o, _)| o == k).map_or(v, |(_, o)| o)))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path)?;
    gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    Ok(())
}

/// The test tokenizer wrapped as swerl's [`Tokenizer`] (read back from disk).
pub(crate) fn swerl_tokenizer(dir: &Path) -> Result<Tokenizer> {
    write_tokenizer(dir)?;
    Ok(Tokenizer::from_dir(dir)?)
}

/// Reads a JSON golden file next to this test.
pub(crate) fn golden(name: &str) -> Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Largest absolute difference.
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A JSON array of numbers as f32.
pub(crate) fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

/// Flattens a tensor to f32 values.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?)
}
