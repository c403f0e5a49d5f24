//! Saving a model in Hugging Face layout (what `transformers` `from_pretrained` and vLLM load):
//! `config.json`, `model.safetensors` (or shards with `model.safetensors.index.json`),
//! `generation_config.json` and the tokenizer files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::{Value, json};

use crate::config::{GenerationConfig, write_json};
use crate::error::{Error, Result};
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// Options of [`save_pretrained`].
#[derive(Clone, Debug, PartialEq)]
pub struct SaveOptions {
    /// dtype of the saved weights: `F32` (the master weights, default), `BF16` or `F16`.
    pub dtype: DType,
    /// Largest shard in bytes before splitting (transformers' default: 5 GB).
    pub max_shard_bytes: usize,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, max_shard_bytes: 5_000_000_000 }
    }
}

fn dtype_name(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("float32"),
        DType::BF16 => Ok("bfloat16"),
        DType::F16 => Ok("float16"),
        other => Err(Error::arg("dtype", format!("cannot save weights as {other:?} (f32, bf16, f16)"))),
    }
}

/// Writes `model` (and the tokenizer and generation config when given) into `dir`, creating it.
pub fn save_pretrained(
    dir: impl AsRef<Path>,
    model: &Llama,
    tokenizer: Option<&Tokenizer>,
    generation_config: Option<&GenerationConfig>,
    opts: &SaveOptions,
) -> Result<()> {
    let dir = dir.as_ref();
    fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dtype_str = dtype_name(opts.dtype)?;

    let mut config = model.config().to_json();
    if let Value::Object(m) = &mut config {
        m.insert("torch_dtype".into(), Value::from(dtype_str));
        m.insert("dtype".into(), Value::from(dtype_str));
    }
    write_json(&dir.join("config.json"), &config)?;

    let tensors: Vec<(String, Tensor)> = model
        .named_parameters()
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().to_dtype(opts.dtype)?)))
        .collect::<Result<_>>()?;
    write_weights(dir, tensors, opts.max_shard_bytes)?;

    let generation =
        generation_config.cloned().unwrap_or_else(|| GenerationConfig::from_model_config(model.config()));
    generation.save(dir.join("generation_config.json"))?;
    if let Some(tok) = tokenizer {
        tok.save(dir)?;
    }
    Ok(())
}

fn write_weights(dir: &Path, tensors: Vec<(String, Tensor)>, max_shard_bytes: usize) -> Result<()> {
    let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
    let total: usize = tensors.iter().map(|(_, t)| bytes(t)).sum();
    // Group into shards in checkpoint order.
    let mut shards: Vec<Vec<(String, Tensor)>> = vec![Vec::new()];
    let mut current = 0usize;
    for (name, t) in tensors {
        let b = bytes(&t);
        if current > 0 && current + b > max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += b;
        shards.last_mut().expect("one shard").push((name, t));
    }
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    if shards.len() == 1 {
        let path = dir.join("model.safetensors");
        let shard = shards.pop().expect("one shard");
        return serialize(shard, &metadata, &path);
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        for (name, _) in &shard {
            weight_map.insert(name.clone(), file.clone());
        }
        serialize(shard, &metadata, &dir.join(&file))?;
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    write_json(&dir.join("model.safetensors.index.json"), &index)
}

fn serialize(tensors: Vec<(String, Tensor)>, metadata: &HashMap<String, String>, path: &Path) -> Result<()> {
    let tensors = tensors.into_iter().map(|(n, t)| Ok((n, t.contiguous()?))).collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize_to_file(tensors, Some(metadata.clone()), path)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}
