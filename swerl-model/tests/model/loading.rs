//! Loading and saving through the real formats: Hugging Face directories (single file and
//! sharded), the Hub cache in offline mode, GGUF files; tokenizers and chat templates.

use anyhow::Result;
use swerl_model::{
    ChatMessage, HubOptions, LoadOptions, ModelSource, SaveOptions, load, load_hub, save_pretrained,
};

use crate::fixtures::{
    byte_config, formula_model, max_abs_diff, tokenizer, values, write_gguf, write_gguf_with,
    write_hf_checkpoint, write_hub_cache,
};

fn logits_of(model: &swerl_model::Llama, ids: &[u32]) -> Result<Vec<f32>> {
    values(&model.logits(ids, &vec![true; ids.len()], 1)?)
}

#[test]
fn save_and_load_round_trip_single_file_and_sharded() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let ids = [5, 70, 200, 13, 99, 4];
    let want = logits_of(&model, &ids)?;
    for max_shard_bytes in [usize::MAX, 40_000] {
        let dir = tempfile::tempdir()?;
        write_hf_checkpoint(dir.path(), &model)?;
        let opts = SaveOptions { max_shard_bytes, ..SaveOptions::default() };
        save_pretrained(dir.path(), &model, None, None, &opts)?;
        let sharded = dir.path().join("model.safetensors.index.json").exists();
        assert_eq!(sharded, max_shard_bytes != usize::MAX);
        if sharded {
            std::fs::remove_file(dir.path().join("model.safetensors"))?;
        }
        let loaded = load(dir.path().to_str().expect("utf-8"), &LoadOptions::default())?;
        assert_eq!(loaded.source, ModelSource::Dir(dir.path().to_path_buf()));
        assert_eq!(loaded.model.config().extra["torch_dtype"], "float32");
        let plain = |c: &swerl_model::ModelConfig| swerl_model::ModelConfig {
            extra: Default::default(),
            ..c.clone()
        };
        assert_eq!(plain(loaded.model.config()), plain(model.config()));
        for ((n1, v1), (n2, v2)) in model.named_parameters().iter().zip(loaded.model.named_parameters()) {
            assert_eq!(n1, n2);
            assert_eq!(values(v1.as_tensor())?, values(v2.as_tensor())?, "{n1}");
        }
        assert_eq!(logits_of(&loaded.model, &ids)?, want);
        assert_eq!(loaded.eos_ids(), vec![byte_config().vocab_size as u32 - 1]);
    }
    Ok(())
}

#[test]
fn bf16_checkpoints_load_into_f32_master_weights() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let dir = tempfile::tempdir()?;
    write_hf_checkpoint(dir.path(), &model)?;
    let bf16 = SaveOptions { dtype: swerl_model::DType::BF16, ..SaveOptions::default() };
    save_pretrained(dir.path(), &model, None, None, &bf16)?;
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json"))?)?;
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let loaded = swerl_model::load_dir(dir.path(), &Default::default())?;
    let (_, v) = &loaded.model.named_parameters()[1];
    assert_eq!(v.dtype(), swerl_model::DType::F32);
    let ids = [5, 70, 200, 13];
    let d = max_abs_diff(&logits_of(&loaded.model, &ids)?, &logits_of(&model, &ids)?);
    assert!(d > 0.0 && d < 0.05, "bf16 rounding changes logits a little: {d}");
    Ok(())
}

#[test]
fn hub_ids_resolve_from_the_cache_offline() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let src = tempfile::tempdir()?;
    write_hf_checkpoint(src.path(), &model)?;
    let cache = tempfile::tempdir()?;
    let rev = "0123456789abcdef0123456789abcdef01234567";
    write_hub_cache(cache.path(), "swerl-test/tiny-llama", src.path(), rev)?;
    let opts = LoadOptions {
        hub: HubOptions { cache_dir: Some(cache.path().to_path_buf()), offline: Some(true), revision: None },
        ..LoadOptions::default()
    };
    let loaded = load("swerl-test/tiny-llama", &opts)?;
    match &loaded.source {
        ModelSource::Hub { repo, snapshot } => {
            assert_eq!(repo, "swerl-test/tiny-llama");
            assert!(snapshot.ends_with(rev), "{}", snapshot.display());
        }
        other => panic!("unexpected source {other:?}"),
    }
    let ids = [1, 2, 3, 250];
    assert_eq!(logits_of(&loaded.model, &ids)?, logits_of(&model, &ids)?);
    assert!(loaded.tokenizer.chat_template().is_some());
    // A repository that is not cached fails offline with a message naming it.
    let err = load_hub("swerl-test/missing", &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("swerl-test/missing") && msg.contains("offline"), "{msg}");
    Ok(())
}

#[test]
fn gguf_weights_and_tokenizer_match_the_hf_checkpoint() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny.gguf");
    write_gguf(&path, &model)?;
    let loaded = load(path.to_str().expect("utf-8"), &LoadOptions::default())?;
    assert_eq!(loaded.source, ModelSource::Gguf(path.clone()));
    let cfg = loaded.model.config();
    assert_eq!(cfg.num_key_value_heads, 2);
    assert_eq!(cfg.eos_ids(), vec![byte_config().vocab_size as u32 - 1]);
    // Q/K un-permuted: same logits as the original weights.
    let ids = [7, 100, 42, 3, 250, 9, 11];
    let d = max_abs_diff(&logits_of(&loaded.model, &ids)?, &logits_of(&model, &ids)?);
    assert!(d < 1e-5, "{d}");
    // The tokenizer rebuilt from metadata tokenizes as the HF one (digits one by one).
    let hf = tokenizer()?;
    for text in [
        "hello world 12345 the 123",
        "<|im_start|>user\nx=1234;<|im_end|>",
        "  spaces\t\ttabs\n\nnewlines ünïcödé 😀",
    ] {
        let want = hf.encode(text, true).map_err(|e| anyhow::anyhow!("{e}"))?;
        let got = loaded.tokenizer.encode(text, true)?;
        assert_eq!(got, want.get_ids(), "{text:?}");
        assert_eq!(loaded.tokenizer.decode(&got, false)?, text);
    }
    let digits = loaded.tokenizer.encode("123", false)?;
    assert_eq!(digits.len(), 3, "digits are split individually despite the merges");
    let chat = loaded.tokenizer.apply_chat_template(&[ChatMessage::user("hi")], true)?;
    assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat}");
    Ok(())
}

#[test]
fn tokenizer_and_chat_template_survive_saving() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let src = tempfile::tempdir()?;
    write_hf_checkpoint(src.path(), &model)?;
    let loaded = swerl_model::load_dir(src.path(), &Default::default())?;
    let out = tempfile::tempdir()?;
    save_pretrained(
        out.path(),
        &loaded.model,
        Some(&loaded.tokenizer),
        Some(&loaded.generation_config),
        &SaveOptions::default(),
    )?;
    for f in [
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let again = swerl_model::load_dir(out.path(), &Default::default())?;
    let msgs = [ChatMessage::system("be terse"), ChatMessage::user("2+2=")];
    assert_eq!(again.tokenizer.encode_chat(&msgs, true)?, loaded.tokenizer.encode_chat(&msgs, true)?);
    assert_eq!(again.tokenizer.special_tokens(), loaded.tokenizer.special_tokens());
    Ok(())
}

#[test]
fn loader_errors_name_the_problem() -> Result<()> {
    let err = load("no/such/dir/x", &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no/such/dir/x"), "{err}");
    let dir = tempfile::tempdir()?;
    let err = load(dir.path().to_str().expect("utf-8"), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::write(dir.path().join("bad.gguf"), b"not a gguf")?;
    let err =
        load(dir.path().join("bad.gguf").to_str().expect("utf-8"), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bad.gguf"), "{err}");
    // A checkpoint with a truncated weight names the tensor.
    let model = formula_model(&byte_config())?;
    write_hf_checkpoint(dir.path(), &model)?;
    let mut sd = model.state_dict()?;
    sd.remove("model.layers.1.mlp.down_proj.weight");
    candle_core::safetensors::save(&sd, dir.path().join("model.safetensors"))?;
    let err = swerl_model::load_dir(dir.path(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("model.layers.1.mlp.down_proj.weight"), "{err}");
    Ok(())
}

/// A corrupted GGUF file is an error, never a panic: the real file truncated at many offsets
/// and with single bytes flipped across its header and tensor table.
#[test]
fn corrupted_gguf_files_are_errors_not_panics() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("tiny.gguf");
    write_gguf(&good, &model)?;
    let bytes = std::fs::read(&good)?;
    let bad = dir.path().join("bad.gguf");
    // The header, metadata and tensor infos sit in the first few KiB; the rest is weights.
    let header = bytes.len().min(16 * 1024);
    let mut cases: Vec<Vec<u8>> = (0..header).step_by(97).map(|n| bytes[..n].to_vec()).collect();
    for i in (0..header).step_by(61) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            cases.push(b);
        }
    }
    let mut errors = 0;
    for case in &cases {
        std::fs::write(&bad, case)?;
        let outcome =
            std::panic::catch_unwind(|| load(bad.to_str().expect("utf-8"), &LoadOptions::default()));
        let result =
            outcome.map_err(|_| anyhow::anyhow!("panic on a corrupted file of {} bytes", case.len()))?;
        if let Err(e) = result {
            errors += 1;
            assert!(e.to_string().contains("bad.gguf"), "{e}");
        }
    }
    assert!(errors > cases.len() / 4, "{errors} errors of {} cases", cases.len());
    Ok(())
}

/// Issue 15, item 10: a GGUF `context_length` of 0 or 1 was accepted.
#[test]
fn a_gguf_context_length_below_two_is_refused_with_the_field() -> Result<()> {
    let model = formula_model(&byte_config())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("short.gguf");
    for bad in [0u32, 1] {
        write_gguf_with(
            &path,
            &model,
            &[("llama.context_length", candle_core::quantized::gguf_file::Value::U32(bad))],
        )?;
        let err = load(path.to_str().expect("utf-8"), &LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("context_length") && err.contains("must be at least 2"), "{bad}: {err}");
        assert!(err.contains("short.gguf"), "{err}");
    }
    Ok(())
}
