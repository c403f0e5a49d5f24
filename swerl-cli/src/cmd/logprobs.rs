//! `swerl logprobs`: per-token log-probabilities of texts under a model.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use swerl_model::{ScoreOptions, TokenBatch};

use super::model_args::ModelArgs;

/// Arguments of `swerl logprobs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    model: ModelArgs,

    /// JSONL input, one `{"text": "..."}` per line (`-` for stdin).
    #[arg(long, short = 'i')]
    input: PathBuf,

    /// JSONL output, one `{"line", "tokens", "logprobs"}` per valid input line (default stdout).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,

    /// Texts scored per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,

    /// Do not add the tokenizer's special tokens (e.g. Llama 3's `<|begin_of_text|>`).
    #[arg(long)]
    no_special_tokens: bool,
}

#[derive(serde::Deserialize)]
struct Input {
    text: String,
}

#[derive(serde::Serialize)]
struct Output<'a> {
    line: usize,
    tokens: &'a [u32],
    logprobs: Vec<f32>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = args.model.load()?;
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(fs_err::File::open(&args.input)?))
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(fs_err::File::create(p)?)),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let name = args.input.display().to_string();
    let mut texts: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut skipped = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let tokens = serde_json::from_str::<Input>(&line)
            .map_err(anyhow::Error::from)
            .and_then(|r| Ok(loaded.tokenizer.encode(&r.text, !args.no_special_tokens)?));
        match tokens {
            Ok(t) => texts.push((i + 1, t)),
            Err(e) => {
                skipped += 1;
                tracing::warn!("{name}:{}: skipped: {e:#}", i + 1);
            }
        }
    }
    let bar = ProgressBar::new(texts.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let pad = loaded.pad_id();
    for chunk in texts.chunks(args.batch_size.max(1)) {
        let scorable: Vec<&Vec<u32>> = chunk.iter().map(|(_, t)| t).filter(|t| t.len() >= 2).collect();
        let mut scores = Vec::new();
        if !scorable.is_empty() {
            let batch = TokenBatch::from_sequences(&scorable, pad)?;
            let s =
                loaded.model.score(&batch, &ScoreOptions { entropy: false, ..ScoreOptions::default() })?;
            scores = s.logprobs.to_vec2::<f32>()?;
        }
        let mut next = scores.into_iter();
        for (line, tokens) in chunk {
            let logprobs = if tokens.len() >= 2 {
                let row = next.next().context("one score row per scored text")?;
                row[..tokens.len() - 1].to_vec()
            } else {
                Vec::new()
            };
            serde_json::to_writer(&mut out, &Output { line: *line, tokens, logprobs })?;
            out.write_all(b"\n")?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    out.flush()?;
    if skipped > 0 {
        tracing::warn!(skipped, "some input lines were skipped");
    }
    Ok(ExitCode::SUCCESS)
}
