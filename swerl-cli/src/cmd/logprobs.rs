//! `swerl logprobs`: per-token log-probabilities of texts under a model.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use swerl_model::{ScoreOptions, TokenBatch};

use super::io::{Output, open_input};
use super::model_args::ModelArgs;

/// Arguments of `swerl logprobs`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each output line is {\"line\", \"tokens\", \"logprobs\"} for a valid input line, or \
{\"line\", \"error\"} for a line that is not a {\"text\"} object, not UTF-8, or longer than --max-length \
tokens; then the exit status is 1."
)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// JSONL input, one `{"text": "..."}` per line (`-` for stdin).
    #[arg(long, short = 'i')]
    input: PathBuf,

    /// JSONL output (default stdout). Written to a temporary file renamed at the end; never the
    /// input file.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,

    /// Texts scored per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,

    /// Longest text scored, in tokens; longer texts get an error row [default: the model's
    /// context, `max_position_embeddings`; past it log-probs degrade].
    #[arg(long, value_name = "TOKENS")]
    max_length: Option<usize>,

    /// Do not add the tokenizer's special tokens (e.g. Llama 3's `<|begin_of_text|>`).
    #[arg(long)]
    no_special_tokens: bool,
}

#[derive(serde::Deserialize)]
struct Input {
    text: String,
}

#[derive(serde::Serialize)]
struct Scored<'a> {
    line: usize,
    tokens: &'a [u32],
    logprobs: Vec<f32>,
}

#[derive(serde::Serialize)]
struct Failed<'a> {
    line: usize,
    error: &'a str,
}

/// One input line: its tokens, or why it cannot be scored.
type Row = (usize, Result<Vec<u32>, String>);

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = args.model.load()?;
    let mut reader = open_input(&args.input)?;
    let mut output = Output::create(args.output.as_deref(), &args.input)?;
    let context = loaded.model.config().max_position_embeddings;
    let max_length = args.max_length.unwrap_or(context);
    if max_length > context {
        tracing::warn!(max_length, context, "--max-length is past the model's context: log-probs degrade");
    }
    let name = args.input.display().to_string();
    let mut rows: Vec<Row> = Vec::new();
    let mut bytes = Vec::new();
    for number in 1.. {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes).with_context(|| format!("reading {name}:{number}"))? == 0 {
            break;
        }
        let text = match super::io::utf8_line(&bytes) {
            Ok(t) => t,
            Err(e) => {
                rows.push((number, Err(e)));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let tokens = serde_json::from_str::<Input>(text)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                loaded.tokenizer.encode(&r.text, !args.no_special_tokens).map_err(|e| e.to_string())
            })
            .and_then(|t| {
                if t.len() > max_length {
                    Err(format!("{} tokens, more than --max-length {max_length}", t.len()))
                } else {
                    Ok(t)
                }
            });
        rows.push((number, tokens));
    }
    let bar = ProgressBar::new(rows.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let pad = loaded.pad_id();
    let mut failed = 0usize;
    for chunk in rows.chunks(args.batch_size as usize) {
        let scorable: Vec<&Vec<u32>> =
            chunk.iter().filter_map(|(_, t)| t.as_ref().ok()).filter(|t| t.len() >= 2).collect();
        let mut scores = Vec::new();
        if !scorable.is_empty() {
            let batch = TokenBatch::from_sequences(&scorable, pad)?;
            let s =
                loaded.model.score(&batch, &ScoreOptions { entropy: false, ..ScoreOptions::default() })?;
            scores = s.logprobs.to_vec2::<f32>()?;
        }
        let mut next = scores.into_iter();
        let out = output.writer();
        for (line, tokens) in chunk {
            match tokens {
                Ok(tokens) => {
                    let logprobs = if tokens.len() >= 2 {
                        let row = next.next().context("one score row per scored text")?;
                        row[..tokens.len() - 1].to_vec()
                    } else {
                        Vec::new()
                    };
                    serde_json::to_writer(&mut *out, &Scored { line: *line, tokens, logprobs })?;
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!("{name}:{line}: {error}");
                    serde_json::to_writer(&mut *out, &Failed { line: *line, error })?;
                }
            }
            out.write_all(b"\n")?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    output.commit()?;
    if failed > 0 {
        eprintln!("error: {failed} input lines could not be scored (see their \"error\" in the output)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
