//! Loading llama.cpp GGUF files: the architecture from `llama.*` metadata, dequantized weights
//! renamed to Hugging Face names (with llama.cpp's Q/K row permutation undone, so the
//! half-split RoPE applies), and the tokenizer rebuilt from `tokenizer.ggml.*` metadata.

use std::collections::HashMap;
use std::io::Seek;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::chat::{ChatTemplate, SpecialTokens};

use crate::config::{GenerationConfig, ModelConfig, RopeScaling, TokenIds};
use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, tok_err};

/// Llama 3's pre-tokenizer split (numbers in groups of up to three digits).
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// An opened GGUF file: its metadata and where to read tensors from.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    file: std::fs::File,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = fs_err::File::open(&path).map_err(|e| Error::io(&path, e))?.into_parts().0;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        crate::gguf_check::check_header(&mut file, len)
            .map_err(|message| Error::InvalidGguf { path: path.clone(), message })?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(&path, e))?;
        // candle's reader may still panic on a malformed header: a malformed file is an error.
        let content = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut file)))
            .map_err(|_| Error::InvalidGguf { path: path.clone(), message: "malformed header".into() })?
            .map_err(|e| Error::InvalidGguf { path: path.clone(), message: e.to_string() })?;
        Ok(Self { path, content, file })
    }

    fn bad(&self, message: impl Into<String>) -> Error {
        Error::InvalidGguf { path: self.path.clone(), message: message.into() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn need(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| self.bad(format!("missing metadata key `{key}`")))
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| value_u64(v).ok_or_else(|| self.bad(format!("`{key}` is not an integer"))))
            .transpose()
    }

    fn need_uint(&self, key: &str) -> Result<usize> {
        self.uint(key)?.map(|v| v as usize).ok_or_else(|| self.bad(format!("missing metadata key `{key}`")))
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => Ok(f64::from(*x)),
                Value::F64(x) => Ok(*x),
                other => value_u64(other)
                    .map(|x| x as f64)
                    .ok_or_else(|| self.bad(format!("`{key}` is not a number"))),
            })
            .transpose()
    }

    fn string(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(self.bad(format!("`{key}` is not a string"))),
            })
            .transpose()
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.need(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.bad(format!("`{key}` holds a non-string"))),
                })
                .collect(),
            _ => Err(self.bad(format!("`{key}` is not an array"))),
        }
    }

    /// The model architecture (`general.architecture`).
    pub fn architecture(&self) -> Result<&str> {
        self.string("general.architecture")?
            .ok_or_else(|| self.bad("missing metadata key `general.architecture`"))
    }

    /// The model configuration described by the metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        let arch = self.architecture()?;
        if arch != "llama" {
            return Err(self.bad(format!("architecture `{arch}` is not supported (only llama)")));
        }
        let k = |s: &str| format!("llama.{s}");
        let hidden_size = self.need_uint(&k("embedding_length"))?;
        let heads = self.need_uint(&k("attention.head_count"))?;
        if heads == 0 {
            return Err(self.bad("`llama.attention.head_count` is 0"));
        }
        let kv_heads = self.uint(&k("attention.head_count_kv"))?.map_or(heads, |v| v as usize);
        let head_dim = self.uint(&k("attention.key_length"))?.map_or(hidden_size / heads, |v| v as usize);
        let vocab_size = match self.uint(&k("vocab_size"))? {
            Some(v) => v as usize,
            None => self
                .content
                .tensor_infos
                .get("token_embd.weight")
                .and_then(|t| t.shape.dims().first().copied())
                .ok_or_else(|| self.bad("cannot tell the vocabulary size"))?,
        };
        let tied = !self.content.tensor_infos.contains_key("output.weight");
        let eos = self.uint("tokenizer.ggml.eos_token_id")?.map(|v| v as u32);
        let mut cfg = ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size: self.need_uint(&k("feed_forward_length"))?,
            num_hidden_layers: self.need_uint(&k("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: self.float(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_theta: self.float(&k("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: self.uint(&k("context_length"))?.map_or(2048, |v| v as usize),
            tie_word_embeddings: tied,
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            mlp_bias: false,
            bos_token_id: self.uint("tokenizer.ggml.bos_token_id")?.map(|v| v as u32),
            eos_token_id: eos.map(TokenIds::One),
            pad_token_id: self.uint("tokenizer.ggml.padding_token_id")?.map(|v| v as u32),
            extra: serde_json::Map::new(),
        };
        match self.string(&k("rope.scaling.type"))? {
            None | Some("none") => {}
            Some("linear") => {
                let factor = self
                    .float(&k("rope.scaling.factor"))?
                    .ok_or_else(|| self.bad("linear rope scaling without a factor"))?;
                cfg.rope_scaling = Some(RopeScaling::Linear { factor });
            }
            Some(other) => {
                return Err(self.bad(format!("rope scaling `{other}` is not supported")));
            }
        }
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            cfg.rope_scaling = Some(self.llama3_scaling(&cfg)?);
        }
        cfg.validate(&self.path.display().to_string())?;
        Ok(cfg)
    }

    /// llama.cpp stores Llama 3.1+ RoPE scaling as a `rope_freqs` tensor of per-frequency
    /// divisors; find the Llama 3 parameters that reproduce it.
    fn llama3_scaling(&self, cfg: &ModelConfig) -> Result<RopeScaling> {
        let mut file = &self.file;
        let freqs = self
            .content
            .tensor(&mut file, "rope_freqs.weight", &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| self.bad(format!("rope_freqs: {e}")))?;
        for (factor, low, high, orig) in [(8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192)] {
            let scaling = RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            };
            let plain = crate::rope::inv_freq(&ModelConfig { rope_scaling: None, ..cfg.clone() });
            let scaled =
                crate::rope::inv_freq(&ModelConfig { rope_scaling: Some(scaling.clone()), ..cfg.clone() });
            let fits = freqs.len() == plain.len()
                && plain
                    .iter()
                    .zip(&scaled)
                    .zip(&freqs)
                    .all(|((p, s), f)| ((p / s) - f).abs() <= 1e-3 * f.abs().max(1.0));
            if fits {
                return Ok(scaling);
            }
        }
        Err(self.bad("rope_freqs does not match Llama 3.1/3.2 RoPE scaling"))
    }

    /// All weights, dequantized to f32 and named as in Hugging Face checkpoints.
    pub fn tensors(&self, cfg: &ModelConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut file = &self.file;
        let mut out = HashMap::new();
        let mut load = |gguf: &str, hf: String, permute_heads: Option<usize>| -> Result<()> {
            let q = self
                .content
                .tensor(&mut file, gguf, device)
                .map_err(|e| self.bad(format!("tensor `{gguf}`: {e}")))?;
            let t = q.dequantize(device).map_err(|e| self.bad(format!("dequantizing `{gguf}`: {e}")))?;
            let t = match permute_heads {
                Some(heads) => unpermute(&t, heads).map_err(|e| self.bad(format!("tensor `{gguf}`: {e}")))?,
                None => t,
            };
            out.insert(hf, t);
            Ok(())
        };
        load("token_embd.weight", "model.embed_tokens.weight".into(), None)?;
        load("output_norm.weight", "model.norm.weight".into(), None)?;
        if !cfg.tie_word_embeddings {
            load("output.weight", "lm_head.weight".into(), None)?;
        }
        for i in 0..cfg.num_hidden_layers {
            let (b, p) = (format!("blk.{i}"), format!("model.layers.{i}"));
            let pairs: [(&str, String, Option<usize>); 9] = [
                ("attn_norm", format!("{p}.input_layernorm"), None),
                ("attn_q", format!("{p}.self_attn.q_proj"), Some(cfg.num_attention_heads)),
                ("attn_k", format!("{p}.self_attn.k_proj"), Some(cfg.num_key_value_heads)),
                ("attn_v", format!("{p}.self_attn.v_proj"), None),
                ("attn_output", format!("{p}.self_attn.o_proj"), None),
                ("ffn_norm", format!("{p}.post_attention_layernorm"), None),
                ("ffn_gate", format!("{p}.mlp.gate_proj"), None),
                ("ffn_up", format!("{p}.mlp.up_proj"), None),
                ("ffn_down", format!("{p}.mlp.down_proj"), None),
            ];
            for (g, h, perm) in pairs {
                load(&format!("{b}.{g}.weight"), format!("{h}.weight"), perm)?;
                if cfg.attention_bias && g.starts_with("attn_") && !g.ends_with("norm") {
                    load(&format!("{b}.{g}.bias"), format!("{h}.bias"), perm)?;
                }
            }
        }
        Ok(out)
    }

    /// The tokenizer described by `tokenizer.ggml.*` (byte-level BPE, `gpt2` model).
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let model = self.string("tokenizer.ggml.model")?.unwrap_or("gpt2");
        if model != "gpt2" {
            return Err(
                self.bad(format!("tokenizer model `{model}` is not supported (only byte-level BPE `gpt2`)"))
            );
        }
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = self
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| self.bad(format!("merge `{m}` has no space")))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tok_err(self.path.display().to_string(), e))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);
        let pre = self.string("tokenizer.ggml.pre")?.unwrap_or("default");
        let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            Ok(Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| tok_err(self.path.display().to_string(), e))?
                .into())
        };
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "default" | "gpt2" | "gpt-2" => byte_level(true).into(),
            // SmolLM: every digit is its own pre-token, then GPT-2's rules.
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into(),
            "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" => {
                Sequence::new(vec![split(REGEX_LLAMA3)?, byte_level(false).into()]).into()
            }
            other => {
                return Err(self.bad(format!(
                    "pre-tokenizer `{other}` is not supported (default, gpt2, smollm, llama-bpe)"
                )));
            }
        };
        tok.with_pre_tokenizer(Some(pre_tokenizer));
        tok.with_decoder(Some(ByteLevelDecoder::default()));

        // Special tokens: control and user-defined entries of `token_type`, plus the ids named
        // in the metadata.
        let mut special_ids: Vec<u32> = Vec::new();
        if let Some(Value::Array(types)) = self.get("tokenizer.ggml.token_type") {
            for (i, t) in types.iter().enumerate() {
                if matches!(value_u64(t), Some(3 | 4)) {
                    special_ids.push(i as u32);
                }
            }
        }
        let id_of = |key: &str| -> Result<Option<u32>> { Ok(self.uint(key)?.map(|v| v as u32)) };
        let bos = id_of("tokenizer.ggml.bos_token_id")?;
        let eos = id_of("tokenizer.ggml.eos_token_id")?;
        let pad = id_of("tokenizer.ggml.padding_token_id")?;
        let unk = id_of("tokenizer.ggml.unknown_token_id")?;
        special_ids.extend([bos, eos, pad, unk].into_iter().flatten());
        special_ids.sort_unstable();
        special_ids.dedup();
        let text = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());
        let added: Vec<AddedToken> = special_ids
            .iter()
            .filter_map(|&i| tokens.get(i as usize))
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        tok.add_special_tokens(added).map_err(|e| tok_err(self.path.display().to_string(), e))?;
        let add_bos = matches!(self.get("tokenizer.ggml.add_bos_token"), Some(Value::Bool(true)));
        if add_bos && let (Some(id), Some(t)) = (bos, text(bos)) {
            let pp = TemplateProcessing::builder()
                .try_single(format!("{t} $A"))
                .and_then(|b| b.try_pair(format!("{t} $A {t} $B")))
                .map_err(|e| tok_err("bos template", e))?
                .special_tokens(vec![(t.clone(), id)])
                .build()
                .map_err(|e| tok_err("bos template", e))?;
            tok.with_post_processor(Some(pp));
        }
        let specials = SpecialTokens {
            bos_token: text(bos),
            eos_token: text(eos),
            pad_token: text(pad),
            unk_token: text(unk),
        };
        let template = self
            .string("tokenizer.chat_template")?
            .map(|s| {
                ChatTemplate::new(
                    s,
                    specials.clone(),
                    &format!("{} (tokenizer.chat_template)", self.path.display()),
                )
            })
            .transpose()?;
        Ok(Tokenizer::new(tok, specials, template))
    }

    /// Generation defaults: the special ids of the metadata.
    pub fn generation_config(&self, cfg: &ModelConfig) -> GenerationConfig {
        GenerationConfig::from_model_config(cfg)
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(u64::from(x)),
        Value::U16(x) => Some(u64::from(x)),
        Value::U32(x) => Some(u64::from(x)),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

/// llama.cpp's converter reorders the rows of each Q/K head from `[first half; second half]`
/// to interleaved pairs; this restores the Hugging Face order.
pub(crate) fn unpermute(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (dims, rest, hd) = head_layout(t, heads)?;
    Ok(t.reshape((heads, hd / 2, 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

/// `(dims, product of the non-row dims, rows per head)` of a Q/K weight split into `heads`
/// heads of an even size; an error (never a panic) for any other shape.
fn head_layout(t: &Tensor, heads: usize) -> Result<(Vec<usize>, usize, usize)> {
    let dims = t.dims().to_vec();
    let Some((&rows, rest)) = dims.split_first() else {
        return Err(Error::arg("tensor", "a scalar where a Q/K weight matrix was expected".to_owned()));
    };
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(Error::arg(
            "tensor",
            format!("shape {dims:?} does not split into {heads} heads of an even size"),
        ));
    }
    let rest = rest.iter().product();
    Ok((dims.clone(), rest, rows / heads))
}

/// What llama.cpp's converter does to the rows of Q and K (the inverse of what loading undoes);
/// used to write GGUF files, e.g. in tests.
pub fn permute_for_gguf(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (dims, rest, hd) = head_layout(t, heads)?;
    Ok(t.reshape((heads, 2, hd / 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}
