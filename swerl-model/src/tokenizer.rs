//! The tokenizer of a model: a Hugging Face [`tokenizers::Tokenizer`] plus what transformers
//! keeps beside it (special tokens, chat template), read from a Hugging Face directory or built
//! from GGUF metadata (see [`crate::gguf`]).

use std::path::Path;

use serde_json::Value;

use crate::chat::{ChatTemplate, SpecialTokens};
use crate::config::write_json;
use crate::error::{Error, Result};

/// A tokenizer with its special tokens and optional chat template.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    specials: SpecialTokens,
    chat_template: Option<ChatTemplate>,
    /// `tokenizer_config.json` as read (written back on save, chat template updated).
    config: serde_json::Map<String, Value>,
}

pub(crate) fn tok_err(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { context: context.into(), message: e.to_string() }
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Wraps a `tokenizers` tokenizer.
    pub fn new(
        inner: tokenizers::Tokenizer,
        specials: SpecialTokens,
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        Self { inner, specials, chat_template, config: serde_json::Map::new() }
    }

    /// Reads `tokenizer.json`, and `tokenizer_config.json` and `chat_template.jinja` when
    /// present, from a Hugging Face model directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        let cfg_path = dir.join("tokenizer_config.json");
        let jinja_path = dir.join("chat_template.jinja");
        Self::from_files(
            &tok_path,
            cfg_path.is_file().then_some(cfg_path.as_path()),
            jinja_path.is_file().then_some(jinja_path.as_path()),
        )
    }

    /// Reads a `tokenizer.json`, an optional `tokenizer_config.json` (special tokens; the chat
    /// template in transformers 4.x) and an optional `chat_template.jinja` (transformers 5.x,
    /// takes precedence).
    pub fn from_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
        chat_template: Option<&Path>,
    ) -> Result<Self> {
        let bytes = fs_err::read(tokenizer_json).map_err(|e| Error::io(tokenizer_json, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| tok_err(tokenizer_json.display().to_string(), e))?;
        let config = match tokenizer_config {
            Some(p) => {
                let text = fs_err::read_to_string(p).map_err(|e| Error::io(p, e))?;
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => {
                        return Err(Error::InvalidJson {
                            path: p.to_path_buf(),
                            message: "expected a JSON object".into(),
                        });
                    }
                    Err(e) => {
                        return Err(Error::InvalidJson { path: p.to_path_buf(), message: e.to_string() });
                    }
                }
            }
            None => serde_json::Map::new(),
        };
        let specials = SpecialTokens {
            bos_token: token_text(config.get("bos_token")),
            eos_token: token_text(config.get("eos_token")),
            pad_token: token_text(config.get("pad_token")),
            unk_token: token_text(config.get("unk_token")),
        };
        let (source, origin) = match chat_template {
            Some(p) => {
                (Some(fs_err::read_to_string(p).map_err(|e| Error::io(p, e))?), p.display().to_string())
            }
            None => (
                template_from_config(config.get("chat_template")),
                tokenizer_config.map(|p| p.display().to_string()).unwrap_or_default(),
            ),
        };
        let chat_template = source.map(|s| ChatTemplate::new(&s, specials.clone(), &origin)).transpose()?;
        Ok(Self { inner, specials, chat_template, config })
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
    /// `chat_template.jinja` into `dir`, loadable by transformers 4.x and 5.x.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        let json = self.inner.to_string(true).map_err(|e| tok_err(tok_path.display().to_string(), e))?;
        fs_err::write(&tok_path, json).map_err(|e| Error::io(&tok_path, e))?;
        let mut cfg = self.config.clone();
        let set = |cfg: &mut serde_json::Map<String, Value>, key: &str, v: &Option<String>| {
            if let Some(v) = v {
                cfg.insert(key.to_string(), Value::from(v.clone()));
            }
        };
        set(&mut cfg, "bos_token", &self.specials.bos_token);
        set(&mut cfg, "eos_token", &self.specials.eos_token);
        set(&mut cfg, "pad_token", &self.specials.pad_token);
        set(&mut cfg, "unk_token", &self.specials.unk_token);
        cfg.entry("tokenizer_class").or_insert_with(|| Value::from("PreTrainedTokenizerFast"));
        if let Some(t) = &self.chat_template {
            cfg.insert("chat_template".into(), Value::from(t.source()));
            let p = dir.join("chat_template.jinja");
            fs_err::write(&p, t.source()).map_err(|e| Error::io(&p, e))?;
        }
        write_json(&dir.join("tokenizer_config.json"), &Value::Object(cfg))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Special-token strings (`bos_token`, `eos_token`, ...).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.specials
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Replaces the chat template.
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.chat_template = template;
    }

    /// Encodes `text`; `add_special_tokens` applies the tokenizer's post-processor (e.g. Llama
    /// 3's `<|begin_of_text|>`), as transformers does by default.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, add_special_tokens).map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes `ids` to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| tok_err("decode", e))
    }

    /// Renders `messages` with the chat template (see [`ChatTemplate::render`]).
    pub fn apply_chat_template<M: serde::Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self.chat_template.as_ref().ok_or_else(|| Error::ChatTemplate {
            context: "apply_chat_template".into(),
            message: "this tokenizer has no chat template".into(),
        })?;
        t.render(messages, add_generation_prompt)
    }

    /// Renders and encodes `messages` (no extra special tokens: the template writes them), as
    /// `apply_chat_template(tokenize=True)`.
    pub fn encode_chat<M: serde::Serialize>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.encode(&self.apply_chat_template(messages, add_generation_prompt)?, false)
    }

    /// The id of a token string (special tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of the `eos_token` string, if any.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.specials.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The id of the `pad_token` string, if any.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.specials.pad_token.as_deref().and_then(|t| self.token_to_id(t))
    }
}

/// `chat_template` in `tokenizer_config.json`: a string, or a list of named templates of which
/// `default` is used.
fn template_from_config(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| items.first())
            .and_then(|i| i.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Incremental detokenizer for streaming: turns a growing token sequence into text deltas that
/// never split a multi-byte character (the prefix-offset scheme of text-generation-inference).
#[derive(Clone, Debug, Default)]
pub struct DecodeStream {
    tokens: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl DecodeStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token` and returns the new text it completes (possibly empty).
    pub fn step(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<String> {
        self.tokens.push(token);
        let prefix = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.tokens[self.prefix_offset..], true)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Returns the text still held back (an incomplete character at the end decodes to the
    /// replacement character) and marks everything as read.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        if self.read_offset == self.tokens.len() {
            return Ok(String::new());
        }
        let prefix = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset], true)?;
        let full = tokenizer.decode(&self.tokens[self.prefix_offset..], true)?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.tokens.len();
        Ok(match full.get(prefix.len()..) {
            Some(rest) if full.starts_with(&prefix) => rest.to_string(),
            _ => String::new(),
        })
    }
}
