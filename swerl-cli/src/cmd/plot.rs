//! `swerl plot`: training curves of one or more runs (`metrics.jsonl` and `eval.jsonl` of
//! `swerl train` or `swerl sft`) as one PNG or SVG image.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::plot::{Run, default_panels, plot_runs};

/// Arguments of `swerl plot`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run directories, each holding metrics.jsonl and/or eval.jsonl.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// The image to write: .png or .svg.
    #[arg(long)]
    out: PathBuf,
    /// The runs' names in the legend, in order [default: the directories' names].
    #[arg(long, num_args = 1..)]
    names: Vec<String>,
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    if !a.names.is_empty() && a.names.len() != a.runs.len() {
        crate::cmd::usage!("--names gives {} names for {} runs", a.names.len(), a.runs.len());
    }
    let mut runs = Vec::new();
    for (i, dir) in a.runs.iter().enumerate() {
        let name = a.names.get(i).cloned().unwrap_or_else(|| {
            dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
        });
        let mut series = BTreeMap::new();
        let mut found = false;
        for file in [swerl_grpo::METRICS_FILE, swerl_grpo::EVAL_FILE] {
            let path = dir.join(file);
            if path.is_file() {
                found = true;
                read_series(&path, &mut series)?;
            }
        }
        if !found {
            bail!(
                "{}: neither {} nor {} found",
                dir.display(),
                swerl_grpo::METRICS_FILE,
                swerl_grpo::EVAL_FILE
            );
        }
        runs.push(Run { name, series });
    }
    let summary = plot_runs(&runs, &default_panels(), &a.out)?;
    for p in &summary.panels {
        eprintln!("{}: {} runs, {} points", p.title, p.runs, p.points);
    }
    println!("{}", summary.path.display());
    Ok(ExitCode::SUCCESS)
}

/// Adds every numeric field of each JSON line (`step` as the x value; `null` is a gap) to
/// `series`. A line that is not a JSON object with a step is reported and skipped.
fn read_series(path: &Path, series: &mut BTreeMap<String, Vec<(f64, f64)>>) -> Result<()> {
    let reader = std::io::BufReader::new(fs_err::File::open(path)?);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&line).ok();
        let Some((step, map)) = parsed.and_then(|m| Some((m.get("step")?.as_f64()?, m))) else {
            eprintln!("warning: {}:{}: not a metrics line with a step: skipped", path.display(), n + 1);
            continue;
        };
        for (key, value) in map {
            let v = match value {
                serde_json::Value::Number(x) => x.as_f64().unwrap_or(f64::NAN),
                serde_json::Value::Null => f64::NAN,
                _ => continue,
            };
            if key != "step" {
                series.entry(key).or_default().push((step, v));
            }
        }
    }
    Ok(())
}
