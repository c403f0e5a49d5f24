//! Loading a model and its tokenizer from what users point at: a Hugging Face directory, a Hub
//! id (through the shared cache, offline-capable) or a GGUF file.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::config::{GenerationConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::hub::{HubOptions, HubRepo, looks_like_repo_id, parent_dir};
use crate::model::{Llama, ModelOptions};
use crate::tokenizer::Tokenizer;

/// Where a model was loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// A Hugging Face layout directory.
    Dir(PathBuf),
    /// A Hub repository, resolved to a snapshot directory of the cache.
    Hub {
        /// `org/name`.
        repo: String,
        /// The snapshot directory the files were read from.
        snapshot: PathBuf,
    },
    /// A GGUF file.
    Gguf(PathBuf),
}

/// Options of [`load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Device and compute dtype of the model.
    pub model: ModelOptions,
    /// Hub access (cache directory, offline mode, revision).
    pub hub: HubOptions,
}

/// A loaded model with everything needed to prompt it.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// The model.
    pub model: Llama,
    /// Its tokenizer (with chat template when the checkpoint has one).
    pub tokenizer: Tokenizer,
    /// Generation defaults (eos ids, sampling settings).
    pub generation_config: GenerationConfig,
    /// Where it came from.
    pub source: ModelSource,
}

impl LoadedModel {
    /// Ids that end generation: `generation_config.json`'s eos ids, else the model config's,
    /// else the tokenizer's `eos_token`.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids = self.generation_config.eos_ids();
        if ids.is_empty() {
            ids = self.model.config().eos_ids();
        }
        if ids.is_empty() {
            ids.extend(self.tokenizer.eos_token_id());
        }
        ids
    }

    /// The padding id: the generation config's, the model config's, the tokenizer's, else the
    /// first eos id, else 0.
    pub fn pad_id(&self) -> u32 {
        self.generation_config
            .pad_token_id
            .or(self.model.config().pad_token_id)
            .or_else(|| self.tokenizer.pad_token_id())
            .or_else(|| self.eos_ids().first().copied())
            .unwrap_or(0)
    }
}

/// Loads `spec`: a `.gguf` file, a Hugging Face directory, or a Hub id (`org/name`).
pub fn load(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let path = Path::new(spec);
    if path.is_file() {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            return load_gguf(path, &opts.model);
        }
        return Err(Error::ModelNotFound {
            spec: spec.to_string(),
            message: "a file that is not .gguf; pass a model directory, a .gguf file or a hub id".into(),
        });
    }
    if path.is_dir() {
        return load_dir(path, &opts.model);
    }
    if looks_like_repo_id(spec) {
        return load_hub(spec, opts);
    }
    Err(Error::ModelNotFound {
        spec: spec.to_string(),
        message: "no such file or directory, and not a hub id".into(),
    })
}

/// The files of a Hugging Face checkpoint.
#[derive(Clone, Debug, Default)]
struct HfFiles {
    config: PathBuf,
    weights: Vec<PathBuf>,
    tokenizer: PathBuf,
    tokenizer_config: Option<PathBuf>,
    chat_template: Option<PathBuf>,
    generation_config: Option<PathBuf>,
}

/// Shard file names listed in `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = fs_err::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidJson { path: index.to_path_buf(), message: e.to_string() })?;
    let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| Error::InvalidJson {
        path: index.to_path_buf(),
        message: "no `weight_map` object".into(),
    })?;
    let names: BTreeSet<String> = map.values().filter_map(Value::as_str).map(str::to_string).collect();
    Ok(names.into_iter().collect())
}

/// Loads a Hugging Face layout directory.
pub fn load_dir(dir: &Path, opts: &ModelOptions) -> Result<LoadedModel> {
    let opt = |name: &str| {
        let p = dir.join(name);
        p.is_file().then_some(p)
    };
    let index = dir.join("model.safetensors.index.json");
    let weights = if index.is_file() {
        shard_names(&index)?.into_iter().map(|n| dir.join(n)).collect()
    } else {
        let single = dir.join("model.safetensors");
        if !single.is_file() {
            return Err(Error::ModelNotFound {
                spec: dir.display().to_string(),
                message: "no model.safetensors or model.safetensors.index.json (only the \
                          safetensors format is supported)"
                    .into(),
            });
        }
        vec![single]
    };
    let files = HfFiles {
        config: dir.join("config.json"),
        weights,
        tokenizer: dir.join("tokenizer.json"),
        tokenizer_config: opt("tokenizer_config.json"),
        chat_template: opt("chat_template.jinja"),
        generation_config: opt("generation_config.json"),
    };
    load_files(&files, opts, ModelSource::Dir(dir.to_path_buf()))
}

/// Loads `repo_id` from the Hub (or its cache).
pub fn load_hub(repo_id: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let repo = HubRepo::new(repo_id, &opts.hub)?;
    let config = repo.get("config.json")?;
    let weights = match repo.get_optional("model.safetensors.index.json")? {
        Some(index) => shard_names(&index)?.iter().map(|n| repo.get(n)).collect::<Result<Vec<_>>>()?,
        None => vec![repo.get("model.safetensors")?],
    };
    let files = HfFiles {
        tokenizer: repo.get("tokenizer.json")?,
        tokenizer_config: repo.get_optional("tokenizer_config.json")?,
        chat_template: repo.get_optional("chat_template.jinja")?,
        generation_config: repo.get_optional("generation_config.json")?,
        weights,
        config,
    };
    let source = ModelSource::Hub { repo: repo_id.to_string(), snapshot: parent_dir(&files.config) };
    load_files(&files, &opts.model, source)
}

fn load_files(files: &HfFiles, opts: &ModelOptions, source: ModelSource) -> Result<LoadedModel> {
    let config = ModelConfig::from_file(&files.config)?;
    let mut tensors = HashMap::new();
    for shard in &files.weights {
        tensors.extend(read_safetensors(shard, &opts.device)?);
    }
    let name = match &source {
        ModelSource::Hub { repo, .. } => repo.clone(),
        ModelSource::Dir(p) | ModelSource::Gguf(p) => p.display().to_string(),
    };
    let model = Llama::from_tensors(config, tensors, opts, &name)?;
    let tokenizer = Tokenizer::from_files(
        &files.tokenizer,
        files.tokenizer_config.as_deref(),
        files.chat_template.as_deref(),
    )?;
    let generation_config = match &files.generation_config {
        Some(p) => GenerationConfig::from_file(p)?,
        None => GenerationConfig::from_model_config(model.config()),
    };
    Ok(LoadedModel { model, tokenizer, generation_config, source })
}

/// Reads one safetensors file, converting every tensor to f32 on `device`.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = fs_err::read(path).map_err(|e| Error::io(path, e))?;
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::InvalidWeights {
            source_name: path.display().to_string(),
            tensor: String::new(),
            message: e.to_string(),
        })?;
    tensors.into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect()
}

/// Loads a GGUF file (weights dequantized to f32, tokenizer from its metadata).
pub fn load_gguf(path: &Path, opts: &ModelOptions) -> Result<LoadedModel> {
    let gguf = GgufFile::open(path)?;
    let config = gguf.config()?;
    let tensors = gguf.tensors(&config, &opts.device)?;
    let tokenizer = gguf.tokenizer()?;
    let generation_config = gguf.generation_config(&config);
    let model = Llama::from_tensors(config, tensors, opts, &path.display().to_string())?;
    Ok(LoadedModel { model, tokenizer, generation_config, source: ModelSource::Gguf(path.to_path_buf()) })
}
