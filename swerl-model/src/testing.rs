//! Tiny models and tokenizers for tests, examples and benchmarks of swerl and the crates built
//! on it: no download, written and read through the real formats.
//!
//! ```
//! # fn main() -> swerl_model::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let loaded = swerl_model::testing::write_tiny_checkpoint(dir.path(), 0)?;
//! let ids = loaded.tokenizer.encode_chat(&[swerl_model::ChatMessage::user("hi")], true)?;
//! assert!(!ids.is_empty());
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::config::{ModelConfig, TokenIds, write_json};
use crate::error::{Error, Result};
use crate::load::{LoadedModel, load_dir};
use crate::model::{Llama, ModelOptions};
use crate::save::{SaveOptions, save_pretrained};
use crate::tokenizer::tok_err;

/// SmolLM2-Instruct's ChatML chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Special tokens of the test tokenizer (the last ids of its vocabulary).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The test vocabulary: the 256 byte-level characters, a few merged tokens, then
/// [`SPECIAL_TOKENS`]; and the merges.
pub fn vocab_and_merges() -> (Vec<String>, Vec<(String, String)>) {
    let mut chars: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    chars.sort_unstable();
    let mut tokens: Vec<String> = chars.iter().map(char::to_string).collect();
    let merges: Vec<(String, String)> = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("Ġ", "w"),
        ("o", "r"),
        ("1", "2"),
        ("12", "3"),
        ("Ġ", "t"),
        ("Ġt", "he"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    tokens.extend(SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    (tokens, merges)
}

/// A byte-level BPE tokenizer in SmolLM2's style (digits split one by one, no prefix space)
/// with ChatML special tokens.
pub fn hf_tokenizer() -> Result<tokenizers::Tokenizer> {
    let (tokens, merges) = vocab_and_merges();
    let vocab: tokenizers::models::bpe::Vocab =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe =
        BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| tok_err("test tokenizer", e))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    let pre: PreTokenizerWrapper =
        Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into();
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    let specials: Vec<AddedToken> =
        SPECIAL_TOKENS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect();
    tok.add_special_tokens(specials).map_err(|e| tok_err("test tokenizer", e))?;
    Ok(tok)
}

/// Writes the test tokenizer into `dir` as `tokenizer.json` plus a transformers 4.x
/// `tokenizer_config.json` carrying the ChatML template.
pub fn write_tokenizer(dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    hf_tokenizer()?.save(&path, true).map_err(|e| tok_err(path.display().to_string(), e))?;
    let cfg = serde_json::json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "unk_token": {"content": "<|endoftext|>", "special": true},
        "chat_template": CHATML_TEMPLATE, "tokenizer_class": "GPT2Tokenizer"
    });
    write_json(&dir.join("tokenizer_config.json"), &cfg)
}

/// A tiny Llama (2 layers, width 32, grouped-query attention) over the test vocabulary,
/// `<|im_end|>` as eos and pad.
pub fn tiny_config() -> ModelConfig {
    let vocab = vocab_and_merges().0.len();
    let im_end = vocab as u32 - 1;
    ModelConfig {
        vocab_size: vocab,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        max_position_embeddings: 512,
        tie_word_embeddings: false,
        bos_token_id: Some(im_end - 1),
        eos_token_id: Some(TokenIds::One(im_end)),
        pad_token_id: Some(im_end),
        ..ModelConfig::default()
    }
}

/// Writes a random [`tiny_config`] model (seed `seed`, weights `N(0, 0.3²)` so outputs are not
/// uniform) with the test tokenizer into `dir` in Hugging Face layout, and loads it back.
pub fn write_tiny_checkpoint(dir: &Path, seed: u64) -> Result<LoadedModel> {
    let model = Llama::new_random(tiny_config(), seed, 0.3, &ModelOptions::default())?;
    save_pretrained(dir, &model, None, None, &SaveOptions::default())?;
    write_tokenizer(dir)?;
    let loaded = load_dir(dir, &ModelOptions::default())?;
    let plain = |c: &ModelConfig| ModelConfig { extra: serde_json::Map::new(), ..c.clone() };
    if plain(loaded.model.config()) != plain(model.config()) {
        return Err(Error::arg("dir", "checkpoint did not round-trip"));
    }
    Ok(loaded)
}

/// A plain ChatML template (no default system message).
pub const PLAIN_CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Writes a tiny random tied-embedding Llama (`layers` blocks, width 32, seed `seed`, weights
/// `N(0, 0.02²)`) into `dir` in Hugging Face layout, with a byte-level BPE tokenizer without
/// merges (one token per byte, then `<|im_start|>` and `<|im_end|>`, the eos and pad) and
/// [`PLAIN_CHATML_TEMPLATE`]: prompts of a few hundred characters stay a few hundred tokens.
pub fn write_byte_level_checkpoint(dir: &Path, layers: usize, seed: u64) -> Result<()> {
    let mut bytes: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    bytes.sort_unstable();
    let mut vocab = serde_json::Map::new();
    for (i, c) in bytes.iter().enumerate() {
        vocab.insert(c.to_string(), i.into());
    }
    let specials = ["<|im_start|>", "<|im_end|>"];
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(k, s)| {
            serde_json::json!({"id": bytes.len() + k, "content": s, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let size = bytes.len() + specials.len();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    });
    fs_err::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let eos = (size - 1) as u32;
    let config = ModelConfig {
        vocab_size: size,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
        bos_token_id: Some(eos - 1),
        eos_token_id: Some(TokenIds::One(eos)),
        pad_token_id: Some(eos),
        ..ModelConfig::default()
    };
    let model = Llama::new_random(config, seed, 0.02, &ModelOptions::default())?;
    save_pretrained(dir, &model, None, None, &SaveOptions::default())?;
    let path = dir.join("tokenizer.json");
    fs_err::write(&path, tokenizer.to_string()).map_err(|e| Error::io(&path, e))?;
    // The file must load with the real `tokenizers` crate.
    tokenizers::Tokenizer::from_file(&path).map_err(|e| tok_err(path.display().to_string(), e))?;
    let cfg = serde_json::json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "chat_template": PLAIN_CHATML_TEMPLATE
    });
    write_json(&dir.join("tokenizer_config.json"), &cfg)
}
