//! `swerl generate`: sample completions of a prompt, streaming tokens as they come.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use swerl_model::{ChatMessage, GenerateOptions, GenerationRequest, SamplingParams};

use super::model_args::ModelArgs;
use super::sampling::SamplingArgs;

/// Maximum number of new tokens when `--max-new-tokens` is not given.
const DEFAULT_MAX_NEW_TOKENS: usize = 256;

/// The help defaults of the sampling flags (the model's generation config decides the rest).
pub(crate) fn help_defaults() -> Vec<(&'static str, String)> {
    let from_model = |fallback: &str| format!("the model's generation config, else {fallback}");
    vec![
        ("max_new_tokens", DEFAULT_MAX_NEW_TOKENS.to_string()),
        ("temperature", from_model("1")),
        ("top_p", from_model("1")),
        ("top_k", from_model("0")),
        ("seed", "random; completion i uses seed + i".to_owned()),
    ]
}

/// Arguments of `swerl generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// The prompt text (or use `--prompt-file`).
    #[arg(long, short = 'p', conflicts_with = "prompt_file")]
    prompt: Option<String>,

    /// Read the prompt from a file (`-` for stdin).
    #[arg(long)]
    prompt_file: Option<PathBuf>,

    /// Treat the prompt as a user message and apply the model's chat template.
    #[arg(long)]
    chat: bool,

    /// System message (with `--chat`).
    #[arg(long, requires = "chat")]
    system: Option<String>,

    /// Number of completions to sample.
    #[arg(long, short = 'n', default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    num: u64,

    #[command(flatten)]
    sampling: SamplingArgs,

    /// Stop when this string is generated (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,

    /// Print one JSON object per completion (tokens, text, logprobs, finish reason) instead of
    /// streaming text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())?,
        (None, Some(f)) => fs_err::read_to_string(f)?,
        (None, None) => anyhow::bail!("give a prompt with --prompt or --prompt-file"),
    };
    let loaded = args.model.load()?;
    let prompt_ids = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::system(s.clone()));
        }
        messages.push(ChatMessage::user(prompt));
        loaded.tokenizer.encode_chat(&messages, true).context("applying the chat template")?
    } else {
        loaded.tokenizer.encode(&prompt, true)?
    };
    let sampling = &args.sampling;
    let max_new_tokens = sampling.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    let context = loaded.model.config().max_position_embeddings;
    if prompt_ids.len() > context {
        anyhow::bail!(
            "the prompt has {} tokens, more than the model's context of {context} tokens",
            prompt_ids.len()
        );
    }
    if prompt_ids.len() + max_new_tokens > context {
        tracing::warn!(
            prompt_tokens = prompt_ids.len(),
            max_new_tokens,
            context,
            "prompt and completion may exceed the model's context; tokens past it degrade"
        );
    }
    let gen_cfg = &loaded.generation_config;
    let default_temperature = match gen_cfg.do_sample {
        Some(false) => 0.0,
        _ => gen_cfg.temperature.unwrap_or(1.0),
    };
    let requests: Vec<GenerationRequest> = (0..args.num)
        .map(|i| GenerationRequest {
            prompt_ids: prompt_ids.clone(),
            params: SamplingParams {
                temperature: sampling.temperature.unwrap_or(default_temperature),
                top_p: sampling.top_p.or(gen_cfg.top_p).unwrap_or(1.0),
                top_k: sampling.top_k.or(gen_cfg.top_k).unwrap_or(0),
                max_new_tokens,
                stop_token_ids: Vec::new(),
                stop_strings: args.stop.clone(),
                seed: sampling.seed.map(|s| s.wrapping_add(i)),
            },
        })
        .collect();
    let opts = GenerateOptions {
        eos_ids: loaded.eos_ids(),
        pad_id: loaded.pad_id(),
        max_batch: 0,
        ..Default::default()
    };
    let stream = !args.json && requests.len() == 1;
    let mut stdout = std::io::stdout().lock();
    let start = std::time::Instant::now();
    let completions = loaded.model.generate(&loaded.tokenizer, &requests, &opts, |event| {
        if stream {
            // A closed stdout (e.g. `| head`) must not abort generation with a panic.
            let _ = stdout.write_all(event.text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let new_tokens: usize = completions.iter().map(|c| c.token_ids.len()).sum();
    if stream {
        writeln!(stdout)?;
    } else if args.json {
        for c in &completions {
            serde_json::to_writer(&mut stdout, c)?;
            writeln!(stdout)?;
        }
    } else {
        for (i, c) in completions.iter().enumerate() {
            writeln!(stdout, "=== completion {i} ({:?})", c.finish_reason)?;
            writeln!(stdout, "{}", c.text)?;
        }
    }
    tracing::info!(
        prompt_tokens = prompt_ids.len(),
        new_tokens,
        seconds = elapsed,
        tokens_per_second = new_tokens as f64 / elapsed.max(1e-9),
        "generation done"
    );
    Ok(ExitCode::SUCCESS)
}
