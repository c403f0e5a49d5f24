//! The held-out check shared by `swerl train`, `swerl sft` and `swerl eval repair`: RL
//! instances answered greedily with the oracle files in the prompt, scored with the reward.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use swerl_grpo::{ChatEncoder, EvalConfig, EvalReport, PromptOverflow, SweRlEnvironment};
use swerl_reward::Dataset;

/// Flags of the held-out check during training.
#[derive(Debug, Default, clap::Args)]
#[command(next_help_heading = "Held-out check")]
pub(crate) struct EvalFlags {
    /// RL instances checked every --eval-steps steps, before the first and after the last:
    /// greedy answers with the oracle files, logged to eval.jsonl as eval/format_rate and
    /// eval/reward with bootstrap intervals.
    #[arg(long, value_name = "FILE")]
    pub(crate) eval_data: Option<PathBuf>,
    /// Most tokens per held-out answer [default: the run's max new tokens (sft: max answer
    /// tokens)].
    #[arg(long)]
    pub(crate) eval_max_new_tokens: Option<usize>,
    /// Held-out answers decoding at once.
    #[arg(long, default_value_t = EvalConfig::default().batch_size)]
    pub(crate) eval_batch_size: usize,
}

impl EvalFlags {
    /// The held-out environment and its settings, when --eval-data is given (and `eval_steps`
    /// asks for checks: a file without steps is a usage error, so is steps without a file).
    pub(crate) fn load(
        &self,
        encoder: &dyn ChatEncoder,
        eval_steps: u64,
        max_prompt_tokens: usize,
        overflow: PromptOverflow,
        default_max_new_tokens: usize,
    ) -> Result<Option<(SweRlEnvironment, EvalConfig)>> {
        let path = match (&self.eval_data, eval_steps) {
            (None, 0) => return Ok(None),
            (Some(path), s) if s > 0 => path,
            (Some(_), _) => crate::cmd::usage!("--eval-data needs --eval-steps N (N > 0)"),
            (None, _) => crate::cmd::usage!("--eval-steps needs --eval-data FILE"),
        };
        let config = EvalConfig {
            max_new_tokens: self.eval_max_new_tokens.unwrap_or(default_max_new_tokens),
            batch_size: self.eval_batch_size,
            ..EvalConfig::default()
        };
        config.validate()?;
        let env = environment(path, encoder, max_prompt_tokens, overflow, "held-out")?;
        Ok(Some((env, config)))
    }
}

/// RL instances of `path` as prompts within the budget, with what was dropped on stderr.
pub(crate) fn environment(
    path: &Path,
    encoder: &dyn ChatEncoder,
    max_prompt_tokens: usize,
    overflow: PromptOverflow,
    what: &str,
) -> Result<SweRlEnvironment> {
    let dataset = load_instances(path)?;
    for s in dataset.skipped.iter().take(20) {
        eprintln!("warning: {}: skipped {s}", path.display());
    }
    let records = dataset.instances.len();
    let (env, report) = SweRlEnvironment::new(dataset, encoder, max_prompt_tokens, overflow)?;
    eprintln!(
        "{what}: {records} instances from {}: {} fitted, {} truncated, {} skipped over {max_prompt_tokens} prompt tokens",
        path.display(),
        report.fitted,
        report.truncated,
        report.skipped.len()
    );
    if report.fitted + report.truncated == 0 {
        bail!("{what}: no instance of {} fits in {max_prompt_tokens} prompt tokens", path.display());
    }
    Ok(env)
}

/// RL instances (JSONL with `oracle_new_content`) or SWE-bench rows (a JSON array, or JSON lines
/// with `patch` and no `oracle_new_content`: converted as `swerl mine swebench` does).
pub(crate) fn load_instances(path: &Path) -> Result<Dataset> {
    let text = fs_err::read_to_string(path)?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let swebench = text.trim_start().starts_with('[')
        || serde_json::from_str::<serde_json::Value>(first)
            .is_ok_and(|v| v.get("patch").is_some() && v.get("oracle_new_content").is_none());
    if !swebench {
        return Ok(Dataset::load(path)?);
    }
    let (instances, skipped) = swerl_data::swebench::rl_instances_from_swebench(&text, path)?;
    let mut dataset = Dataset::from_instances(path, instances);
    dataset.skipped = skipped;
    Ok(dataset)
}

/// One line summarising a held-out check.
pub(crate) fn describe(step: u64, r: &EvalReport) -> String {
    format!(
        "held-out @ step {step}: format {:.3} [{:.3}, {:.3}]  reward {:+.4} [{:+.4}, {:+.4}]  n {}  len {:.0}  clipped {:.2}  {:.1}s",
        r.format_rate.mean,
        r.format_rate.low,
        r.format_rate.high,
        r.reward.mean,
        r.reward.low,
        r.reward.high,
        r.n,
        r.mean_length,
        r.clipped_ratio,
        r.time_generation
    )
}

/// Prints a line above the progress bar, or plainly on stderr when the bar is hidden (stderr is
/// not a terminal: a log file keeps every line).
pub(crate) fn say(bar: &indicatif::ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}
