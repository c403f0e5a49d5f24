//! Converts any model swerl loads (Hugging Face directory, Hub id, GGUF file) into a Hugging
//! Face directory that `transformers` and vLLM load.
//!
//! ```text
//! cargo run --release -p swerl-model --example convert -- model.gguf out_dir [bf16|f32]
//! ```

use anyhow::{Context, Result};
use swerl_model::{LoadOptions, SaveOptions, save_pretrained};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().context("usage: convert <model> <out_dir> [f32|bf16|f16]")?;
    let out = args.next().context("missing output directory")?;
    let dtype = swerl_model::parse_dtype(&args.next().unwrap_or_else(|| "f32".into()))?;
    let loaded = swerl_model::load(&spec, &LoadOptions::default())?;
    save_pretrained(
        &out,
        &loaded.model,
        Some(&loaded.tokenizer),
        Some(&loaded.generation_config),
        &SaveOptions { dtype, ..SaveOptions::default() },
    )?;
    Ok(())
}
