//! Model and generation configuration, read from and written to Hugging Face `config.json` and
//! `generation_config.json`.
//!
//! Both RoPE spellings are read: transformers 4.x (`rope_theta` + `rope_scaling`) and 5.x
//! (`rope_parameters`). Configs are written in the 4.x spelling, which transformers 5.x and vLLM
//! also read. Keys this crate does not interpret are kept and written back unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How rotary position embeddings are scaled beyond the trained context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RopeScaling {
    /// Llama 3.1+ frequency-dependent scaling.
    Llama3 {
        /// Overall scale factor (8 for Llama 3.1).
        factor: f64,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are
        /// divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f64,
    },
}

/// End-of-sequence ids: Hugging Face configs use either one id or a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids (e.g. Llama 3 Instruct: `<|end_of_text|>`, `<|eom_id|>`, `<|eot_id|>`).
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// The architecture of a Llama-family causal LM (`LlamaForCausalLM` in `config.json`).
///
/// Deserialises from a Hugging Face `config.json`; serialises back to one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct ModelConfig {
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); equal to `num_attention_heads` for MHA.
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest context the model was configured for.
    pub max_position_embeddings: usize,
    /// Whether the output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether the attention projections have biases.
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Keys of `config.json` this crate does not interpret, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Default for ModelConfig {
    /// SmolLM2-135M's architecture.
    fn default() -> Self {
        Self {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(TokenIds::One(2)),
            pad_token_id: Some(2),
            extra: Map::new(),
        }
    }
}

impl ModelConfig {
    /// Parses a `config.json` document; `source_name` names it in errors.
    pub fn from_json_str(json: &str, source_name: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(json)
            .map_err(|e| Error::InvalidJson { path: source_name.into(), message: e.to_string() })?;
        Self::from_raw(raw, source_name)
    }

    /// Reads a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// The `config.json` document (transformers 4.x RoPE spelling).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(RawConfig::from(self.clone())).expect("a config serialises to JSON")
    }

    /// Writes `config.json` (pretty-printed) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_json(path.as_ref(), &self.to_json())
    }

    /// Number of query heads sharing one key/value head.
    pub fn num_kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Total number of parameters (embedding and output counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let (d, f, h) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.num_attention_heads * h;
        let kv = self.num_key_value_heads * h;
        let mut attn = d * q + 2 * d * kv + q * d;
        if self.attention_bias {
            attn += q + 2 * kv + d;
        }
        let mut mlp = 3 * d * f;
        if self.mlp_bias {
            mlp += 2 * f + d;
        }
        let layer = attn + mlp + 2 * d;
        let emb = self.vocab_size * d;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        emb + head + d + self.num_hidden_layers * layer
    }

    /// The end-of-sequence ids of the config (possibly empty).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }

    /// Checks internal consistency (head counts divide, sizes non-zero).
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let bad =
            |message: String| Err(Error::InvalidConfig { source_name: source_name.to_string(), message });
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("num_hidden_layers", self.num_hidden_layers),
        ] {
            if v == 0 {
                return bad(format!("`{name}` must be positive"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim ({}) must be even for RoPE", self.head_dim));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return bad(format!("rope_theta ({}) must be positive", self.rope_theta));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!("rms_norm_eps ({}) must be positive", self.rms_norm_eps));
        }
        if self.max_position_embeddings < 2 {
            return bad(format!(
                "max_position_embeddings (GGUF context_length) ({}) must be at least 2",
                self.max_position_embeddings
            ));
        }
        match self.rope_scaling {
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                for (name, v) in [
                    ("rope_scaling.factor", factor),
                    ("rope_scaling.low_freq_factor", low_freq_factor),
                    ("rope_scaling.high_freq_factor", high_freq_factor),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return bad(format!("{name} ({v}) must be positive"));
                    }
                }
                if high_freq_factor < low_freq_factor {
                    return bad(format!(
                        "rope_scaling.high_freq_factor ({high_freq_factor}) must not be below low_freq_factor ({low_freq_factor})"
                    ));
                }
                if original_max_position_embeddings == 0 {
                    return bad("rope_scaling.original_max_position_embeddings must be positive".into());
                }
            }
            Some(RopeScaling::Linear { factor }) if !(factor.is_finite() && factor > 0.0) => {
                return bad(format!("rope_scaling.factor ({factor}) must be positive"));
            }
            _ => {}
        }
        Ok(())
    }

    fn from_raw(raw: RawConfig, source_name: &str) -> Result<Self> {
        let bad = |message: String| Error::InvalidConfig { source_name: source_name.to_string(), message };
        if let Some(arch) = raw.extra.get("model_type").and_then(Value::as_str)
            && !matches!(arch, "llama" | "mistral" | "qwen2")
        {
            tracing::warn!(model_type = arch, "not a llama config; loading it as llama");
        }
        if let Some(act) = raw.extra.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(bad(format!("hidden_act `{act}` is not supported (only silu)")));
        }
        let need =
            |v: Option<usize>, name: &str| v.ok_or_else(|| bad(format!("missing required key `{name}`")));
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(bad("`num_attention_heads` must be positive".into()));
        }
        // transformers 5.x nests RoPE settings in `rope_parameters`; 4.x has them at top level.
        let (rope_theta, rope_scaling) = match raw.rope_parameters {
            Some(params) => parse_rope(&params, raw.rope_theta, &bad)?,
            None => match raw.rope_scaling {
                Some(scaling) => parse_rope(&scaling, raw.rope_theta, &bad)?,
                None => (raw.rope_theta.unwrap_or(10_000.0), None),
            },
        };
        let mut extra = raw.extra;
        extra.remove("rope_parameters");
        let cfg = Self {
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(num_attention_heads),
            head_dim: raw.head_dim.unwrap_or(hidden_size / num_attention_heads),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id: raw.bos_token_id,
            eos_token_id: raw.eos_token_id,
            pad_token_id: raw.pad_token_id,
            extra,
        };
        cfg.validate(source_name)?;
        Ok(cfg)
    }
}

/// Parses a `rope_scaling` (4.x) or `rope_parameters` (5.x) object.
fn parse_rope(
    obj: &Value,
    top_theta: Option<f64>,
    bad: &dyn Fn(String) -> Error,
) -> Result<(f64, Option<RopeScaling>)> {
    if obj.is_null() {
        return Ok((top_theta.unwrap_or(10_000.0), None));
    }
    let theta = obj.get("rope_theta").and_then(Value::as_f64).or(top_theta).unwrap_or(10_000.0);
    // Older configs spell the key `type`.
    let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |key: &str| {
        obj.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("rope scaling `{kind}` needs numeric `{key}`")))
    };
    let scaling = match kind {
        "default" => None,
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        "linear" => Some(RopeScaling::Linear { factor: num("factor")? }),
        other => {
            return Err(bad(format!("rope type `{other}` is not supported (default, linear, llama3)")));
        }
    };
    Ok((theta, scaling))
}

/// The `config.json` document as stored on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vocab_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hidden_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intermediate_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_hidden_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_attention_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rms_norm_eps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rope_scaling: Option<Value>,
    #[serde(default, skip_serializing)]
    rope_parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_position_embeddings: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tie_word_embeddings: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attention_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mlp_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pad_token_id: Option<u32>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl TryFrom<RawConfig> for ModelConfig {
    type Error = Error;

    fn try_from(raw: RawConfig) -> Result<Self> {
        Self::from_raw(raw, "config.json")
    }
}

impl From<ModelConfig> for RawConfig {
    fn from(c: ModelConfig) -> Self {
        let mut extra = c.extra;
        extra.entry("architectures").or_insert_with(|| Value::from(vec!["LlamaForCausalLM"]));
        extra.entry("model_type").or_insert_with(|| Value::from("llama"));
        extra.entry("hidden_act").or_insert_with(|| Value::from("silu"));
        Self {
            vocab_size: Some(c.vocab_size),
            hidden_size: Some(c.hidden_size),
            intermediate_size: Some(c.intermediate_size),
            num_hidden_layers: Some(c.num_hidden_layers),
            num_attention_heads: Some(c.num_attention_heads),
            num_key_value_heads: Some(c.num_key_value_heads),
            head_dim: Some(c.head_dim),
            rms_norm_eps: Some(c.rms_norm_eps),
            rope_theta: Some(c.rope_theta),
            rope_scaling: c
                .rope_scaling
                .map(|s| serde_json::to_value(s).expect("rope scaling serialises to JSON")),
            rope_parameters: None,
            max_position_embeddings: Some(c.max_position_embeddings),
            tie_word_embeddings: Some(c.tie_word_embeddings),
            attention_bias: Some(c.attention_bias),
            mlp_bias: Some(c.mlp_bias),
            bos_token_id: c.bos_token_id,
            eos_token_id: c.eos_token_id,
            pad_token_id: c.pad_token_id,
            extra,
        }
    }
}

/// Sampling defaults and special ids from `generation_config.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// Beginning-of-sequence id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s): generation stops on any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// Whether sampling is the default (otherwise greedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
    /// Default temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Default nucleus threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Default top-k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Default number of new tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Keys this crate does not interpret, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GenerationConfig {
    /// Reads `generation_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = fs_err::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::InvalidJson { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Defaults derived from a model config (its special ids), as transformers does when a
    /// checkpoint has no `generation_config.json`.
    pub fn from_model_config(cfg: &ModelConfig) -> Self {
        Self {
            bos_token_id: cfg.bos_token_id,
            eos_token_id: cfg.eos_token_id.clone(),
            pad_token_id: cfg.pad_token_id,
            ..Self::default()
        }
    }

    /// Writes `generation_config.json` (pretty-printed).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let value = serde_json::to_value(self).expect("a generation config serialises to JSON");
        write_json(path.as_ref(), &value)
    }

    /// The end-of-sequence ids (possibly empty).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }
}

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    text.push('\n');
    fs_err::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA31: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
      "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
      "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
      "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
      "tie_word_embeddings": false, "torch_dtype": "bfloat16"
    }"#;

    #[test]
    fn reads_llama31_transformers4_spelling() {
        let c = ModelConfig::from_json_str(LLAMA31, "llama31").unwrap();
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.num_kv_groups(), 4);
        assert_eq!(c.rope_theta, 500_000.0);
        assert_eq!(
            c.rope_scaling,
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            })
        );
        assert_eq!(c.eos_ids(), vec![128001, 128008, 128009]);
        assert_eq!(c.extra.get("torch_dtype").unwrap(), "bfloat16");
        // Llama-3.1-8B has 8.03 B parameters.
        assert_eq!(c.num_parameters(), 8_030_261_248);
    }

    #[test]
    fn reads_transformers5_rope_parameters_and_round_trips() {
        let json = r#"{"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "head_dim": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
            "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
            "eos_token_id": 2, "bos_token_id": 1}"#;
        let c = ModelConfig::from_json_str(json, "smol").unwrap();
        assert_eq!(c.rope_theta, 100_000.0);
        assert_eq!(c.rope_scaling, None);
        assert_eq!(c.num_parameters(), 134_515_008);
        let back = ModelConfig::from_json_str(&c.to_json().to_string(), "round-trip").unwrap();
        assert_eq!(back, {
            let mut c = c.clone();
            c.extra.insert("architectures".into(), Value::from(vec!["LlamaForCausalLM"]));
            c.extra.insert("model_type".into(), Value::from("llama"));
            c.extra.insert("hidden_act".into(), Value::from("silu"));
            c
        });
        assert!(c.to_json().get("rope_parameters").is_none());
    }

    #[test]
    fn rejects_bad_configs_with_a_named_reason() {
        let err = ModelConfig::from_json_str(r#"{"hidden_size": 8}"#, "cfg.json").unwrap_err();
        assert!(err.to_string().contains("num_attention_heads"), "{err}");
        let bad_heads = LLAMA31.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5");
        let err = ModelConfig::from_json_str(&bad_heads, "cfg.json").unwrap_err();
        assert!(err.to_string().contains("multiple"), "{err}");
        let yarn = LLAMA31.replace("\"llama3\"", "\"yarn\"");
        let err = ModelConfig::from_json_str(&yarn, "cfg.json").unwrap_err();
        assert!(err.to_string().contains("yarn"), "{err}");
        let err = ModelConfig::from_json_str("{", "cfg.json").unwrap_err();
        assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
        for (from, to, field) in [
            ("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps"),
            ("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1e-5", "rms_norm_eps"),
            ("\"num_hidden_layers\": 32", "\"num_hidden_layers\": 0", "num_hidden_layers"),
            (
                "\"max_position_embeddings\": 131072",
                "\"max_position_embeddings\": 0",
                "max_position_embeddings",
            ),
            (
                "\"max_position_embeddings\": 131072",
                "\"max_position_embeddings\": 1",
                "max_position_embeddings",
            ),
            ("\"factor\": 8.0", "\"factor\": 0", "rope_scaling.factor"),
        ] {
            let text = LLAMA31.replace(from, to);
            assert_ne!(text, LLAMA31, "{from}");
            let err = ModelConfig::from_json_str(&text, "cfg.json").unwrap_err();
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        let linear =
            LLAMA31.replace("\"llama3\"", "\"linear\"").replace("\"factor\": 8.0", "\"factor\": 0.0");
        let err = ModelConfig::from_json_str(&linear, "cfg.json").unwrap_err();
        assert!(err.to_string().contains("rope_scaling.factor"), "{err}");
    }

    #[test]
    fn generation_config_reads_lists_and_keeps_extras() {
        let g: GenerationConfig = serde_json::from_str(
            r#"{"eos_token_id": [1, 2], "temperature": 0.6, "top_p": 0.9, "do_sample": true,
                "transformers_version": "4.45"}"#,
        )
        .unwrap();
        assert_eq!(g.eos_ids(), vec![1, 2]);
        assert_eq!(g.temperature, Some(0.6));
        assert_eq!(g.extra.get("transformers_version").unwrap(), "4.45");
    }
}
