//! `swerl eval repair --oracle-files`: the paper's diagnostic (and the trainer's held-out check
//! as a command). The model answers each instance with the files the real fix changed in its
//! prompt; the SWE-RL reward scores the answers; with `--harness`, the answers' patches are
//! graded by the SWE-bench harness too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::{Value, json};
use swerl_eval::{ChatModel, HarnessConfig, OpenAiClient, OpenAiConfig, SampleParams};
use swerl_grpo::llama::LlamaPolicy;
use swerl_grpo::{Environment, Estimate, EvalConfig, EvalRecord, PromptOverflow, bootstrap, evaluate};
use swerl_reward::{Dataset, RlInstance, build_messages, git_diff};

use super::eval::EnvArgs;
use super::heldout::{environment, load_instances};
use super::model_args::ModelArgs;
use crate::cmd::usage;

/// Arguments of `swerl eval repair`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Ask an OpenAI-compatible server (vLLM, SGLang, `swerl serve`, a hosted API) instead of
    /// loading --model: --model is then the served model's name.
    #[arg(long)]
    base_url: Option<String>,
    /// With --base-url: the environment variable holding the API key (sent when set).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// With --base-url: requests in flight.
    #[arg(long, default_value_t = 4)]
    max_workers: usize,
    /// With --base-url: seconds before a request is abandoned (then retried).
    #[arg(long, default_value_t = OpenAiConfig::default().timeout_secs)]
    request_timeout: u64,
    /// RL instances (JSONL, as `swerl mine` writes them) or SWE-bench rows (the files as far as
    /// the gold patch's hunks show them, or whole with --repos).
    #[arg(long, alias = "dataset")]
    data: PathBuf,
    /// With SWE-bench rows: the directory of clones or mirrors; the prompt then holds the whole
    /// files the gold patch changes, read at base_commit, so answers become patches that apply.
    #[arg(long)]
    repos: Option<PathBuf>,
    /// Grade every answer's patch with the SWE-bench harness (needs --repos and --out): adds
    /// `resolved_rate` to the summary.
    #[arg(long)]
    harness: bool,
    /// Put the files the real fix changed in the prompt (the only mode: localization is
    /// `swerl eval agentless`).
    #[arg(long)]
    oracle_files: bool,
    /// Prompt budget in tokens (in-process model; a server refuses what does not fit).
    #[arg(long, default_value_t = swerl_grpo::sft::SftConfig::default().max_prompt_tokens)]
    max_prompt_tokens: usize,
    /// `truncate` (drop unchanged context files) or `skip`.
    #[arg(long, default_value = "truncate", value_parser = super::train::parse_enum::<PromptOverflow>)]
    prompt_overflow: PromptOverflow,
    /// Most tokens per answer.
    #[arg(long, default_value_t = EvalConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Answers decoding at once (in-process model).
    #[arg(long, default_value_t = EvalConfig::default().batch_size)]
    batch_size: usize,
    /// Answers per instance.
    #[arg(long, default_value_t = EvalConfig::default().samples)]
    samples: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = EvalConfig::default().temperature)]
    temperature: f64,
    /// Seed of the sampled answers and of the bootstrap.
    #[arg(long, default_value_t = EvalConfig::default().seed)]
    seed: u64,
    /// Bootstrap resamples of the intervals.
    #[arg(long, default_value_t = EvalConfig::default().bootstrap_samples)]
    bootstrap_samples: usize,
    /// Output directory: summary.json and answers.jsonl (every answer with its reward); with
    /// --harness also predictions-s<K>.jsonl, the harness's reports and logs/.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
}

/// What the answers came to.
struct Answers {
    records: Vec<EvalRecord>,
    format_rate: Estimate,
    reward: Estimate,
    seconds: f64,
}

pub(crate) fn run(a: RepairArgs) -> Result<ExitCode> {
    if !a.oracle_files {
        usage!("`swerl eval repair` needs --oracle-files (localization is `swerl eval agentless`)");
    }
    if a.harness && (a.repos.is_none() || a.out.is_none()) {
        usage!("--harness needs --repos (whole files, so answers apply to the repository) and --out");
    }
    if a.max_workers == 0 {
        usage!("--max-workers must be at least 1");
    }
    let config = EvalConfig {
        max_new_tokens: a.max_new_tokens,
        batch_size: a.batch_size,
        bootstrap_samples: a.bootstrap_samples,
        samples: a.samples,
        temperature: a.temperature,
        seed: a.seed,
        ..EvalConfig::default()
    };
    if let Err(e) = config.validate() {
        usage!("{e}");
    }
    let harness_cfg = a.env.apply(HarnessConfig::default())?;
    let (dataset, swebench) = match &a.repos {
        Some(repos) => {
            let rows = swerl_eval::load_dataset(&a.data)?;
            let mut instances = Vec::new();
            for row in &rows {
                match swerl_eval::oracle::whole_file_instance(row, repos) {
                    Ok(i) => instances.push(i),
                    Err(e) => eprintln!("warning: {}: skipped: {e}", a.data.display()),
                }
            }
            eprintln!(
                "data: {} of {} SWE-bench rows with whole files from {}",
                instances.len(),
                rows.len(),
                repos.display()
            );
            (Dataset::from_instances(&a.data, instances), Some(rows))
        }
        None => (load_instances(&a.data)?, None),
    };
    let (answers, instances) = match &a.base_url {
        None => {
            let loaded = a.model.load().with_context(|| format!("loading {}", a.model.model))?;
            let mut policy = LlamaPolicy::from_loaded(loaded);
            let env = environment_from(dataset, &policy, &a)?;
            let report = evaluate(&mut policy, &env, &config)?;
            let answers = Answers {
                format_rate: report.format_rate,
                reward: report.reward,
                seconds: report.time_generation,
                records: report.records,
            };
            (answers, env.instances().to_vec())
        }
        Some(url) => {
            let client = OpenAiClient::new(OpenAiConfig {
                base_url: url.clone(),
                model: a.model.model.clone(),
                api_key: std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty()),
                max_concurrency: a.max_workers,
                timeout_secs: a.request_timeout,
                ..OpenAiConfig::default()
            })?;
            eprintln!("data: {} instances from {}", dataset.instances.len(), a.data.display());
            (served_answers(&client, &dataset.instances, &config, a.max_workers)?, dataset.instances)
        }
    };
    let mut summary = json!({
        "model": a.model.model,
        "base_url": a.base_url,
        "data": a.data,
        "instances": instances.len(),
        "samples": a.samples,
        "temperature": a.temperature,
        "n": answers.records.len(),
        "format_rate": answers.format_rate,
        "mean_reward": answers.reward,
        "seconds": answers.seconds,
    });
    eprintln!(
        "format {:.3} [{:.3}, {:.3}]  reward {:+.4} [{:+.4}, {:+.4}]  n {}  {:.1}s",
        answers.format_rate.mean,
        answers.format_rate.low,
        answers.format_rate.high,
        answers.reward.mean,
        answers.reward.low,
        answers.reward.high,
        answers.records.len(),
        answers.seconds
    );
    let mut rows: Vec<Value> =
        answers.records.iter().map(|r| serde_json::to_value(r).expect("plain data")).collect();
    if a.harness {
        let (Some(out), Some(swebench)) = (&a.out, &swebench) else {
            usage!("--harness needs --repos and --out")
        };
        let resolved = grade(&answers.records, &instances, swebench, &a, &harness_cfg, out)?;
        let values: Vec<f64> = resolved.iter().map(|&r| if r { 1.0 } else { 0.0 }).collect();
        let rate = bootstrap(&values, &config, 3);
        eprintln!("resolved {:.3} [{:.3}, {:.3}]", rate.mean, rate.low, rate.high);
        summary["resolved_rate"] = serde_json::to_value(rate)?;
        for (row, r) in rows.iter_mut().zip(resolved) {
            row["resolved"] = r.into();
        }
    }
    if let Some(dir) = &a.out {
        fs_err::create_dir_all(dir)?;
        let mut text = Vec::new();
        for row in &rows {
            serde_json::to_writer(&mut text, row)?;
            text.push(b'\n');
        }
        super::io::write_atomic(&dir.join("answers.jsonl"), &text)?;
        super::io::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn environment_from(
    dataset: Dataset,
    policy: &LlamaPolicy,
    a: &RepairArgs,
) -> Result<swerl_grpo::SweRlEnvironment> {
    // Whole-file instances are already built; the rest is the held-out check's loader.
    if a.repos.is_some() {
        let (env, report) =
            swerl_grpo::SweRlEnvironment::new(dataset, policy, a.max_prompt_tokens, a.prompt_overflow)?;
        eprintln!(
            "prompts: {} fitted, {} truncated, {} skipped over {} tokens",
            report.fitted,
            report.truncated,
            report.skipped.len(),
            a.max_prompt_tokens
        );
        if env.prompts().is_empty() {
            anyhow::bail!("no instance fits in {} prompt tokens", a.max_prompt_tokens);
        }
        return Ok(env);
    }
    environment(&a.data, policy, a.max_prompt_tokens, a.prompt_overflow, "data")
}

/// Every instance's answers from the server (`samples` per request), scored by the reward. A
/// request that fails leaves its answers empty (format errors with the failure as the reason).
fn served_answers(
    client: &dyn ChatModel,
    instances: &[RlInstance],
    config: &EvalConfig,
    workers: usize,
) -> Result<Answers> {
    let start = std::time::Instant::now();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(workers).build()?;
    let per_instance: Vec<Vec<EvalRecord>> = pool.install(|| {
        instances
            .par_iter()
            .enumerate()
            .map(|(i, inst)| {
                let messages = build_messages(inst, &inst.prompt_files());
                let params = SampleParams {
                    temperature: config.temperature,
                    max_new_tokens: config.max_new_tokens,
                    seed: Some(swerl_grpo::derive_seed(config.seed, &[i as u64])),
                    ..SampleParams::default()
                };
                let answers = match client.chat(&messages, &params, config.samples) {
                    Ok(r) => r.completions.into_iter().map(|c| (c.text, c.finish_reason, None)).collect(),
                    Err(e) => {
                        let why = format!("model request failed: {e}");
                        (0..config.samples)
                            .map(|_| (String::new(), None, Some(why.clone())))
                            .collect::<Vec<_>>()
                    }
                };
                answers
                    .into_iter()
                    .enumerate()
                    .map(|(sample, (text, finish, failed))| {
                        let (reward, format_error, reason) = match (&failed, score(inst, &text)) {
                            (Some(why), _) => (-1.0, true, Some(why.clone())),
                            (None, Ok((reward, _))) => (reward, false, None),
                            (None, Err(why)) => (-1.0, true, Some(why)),
                        };
                        EvalRecord {
                            id: inst.instance_id.clone(),
                            sample,
                            reward,
                            format_error,
                            reason,
                            finish: finish.unwrap_or_default(),
                            completion_tokens: 0,
                            text,
                        }
                    })
                    .collect()
            })
            .collect()
    });
    let records: Vec<EvalRecord> = per_instance.into_iter().flatten().collect();
    let formatted: Vec<f64> = records.iter().map(|r| if r.format_error { 0.0 } else { 1.0 }).collect();
    let rewards: Vec<f64> = records.iter().map(|r| r.reward).collect();
    Ok(Answers {
        format_rate: bootstrap(&formatted, config, 1),
        reward: bootstrap(&rewards, config, 2),
        seconds: start.elapsed().as_secs_f64(),
        records,
    })
}

/// The SWE-RL reward of an answer and its patch (a `git diff` of the edited files), or why it
/// breaks the format.
fn score(inst: &RlInstance, text: &str) -> std::result::Result<(f64, String), String> {
    match swerl_reward::score(&inst.code_context, &inst.oracle_new_content, text) {
        Ok(s) => {
            let new: std::collections::BTreeMap<&str, &str> =
                s.new_content.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
            Ok((s.reward, git_diff(&inst.code_context, &new)))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Grades every answer's patch with the harness, one run per sample index (a run takes one
/// prediction per instance); returns, per record, whether it resolved its instance.
fn grade(
    records: &[EvalRecord],
    instances: &[RlInstance],
    swebench: &[swerl_eval::Instance],
    a: &RepairArgs,
    base: &HarnessConfig,
    out: &Path,
) -> Result<Vec<bool>> {
    let repos = a.repos.as_deref().expect("--harness needs --repos");
    fs_err::create_dir_all(out)?;
    let by_id: std::collections::HashMap<&str, &RlInstance> =
        instances.iter().map(|i| (i.instance_id.as_str(), i)).collect();
    // The dataset the harness reads: the rows that made it into the instances.
    let rows: Vec<&swerl_eval::Instance> =
        swebench.iter().filter(|r| by_id.contains_key(r.instance_id.as_str())).collect();
    let data_file = out.join("dataset.json");
    super::io::write_atomic(&data_file, serde_json::to_string(&rows)?.as_bytes())?;
    let samples = records.iter().map(|r| r.sample + 1).max().unwrap_or(0);
    let mut resolved: BTreeSet<(String, usize)> = BTreeSet::new();
    for k in 0..samples {
        let mut lines = String::new();
        for r in records.iter().filter(|r| r.sample == k) {
            let patch = if r.format_error {
                String::new()
            } else {
                score(by_id[r.id.as_str()], &r.text).map(|(_, p)| p).unwrap_or_default()
            };
            let p = json!({"instance_id": r.id, "model_name_or_path": a.model.model, "model_patch": patch});
            lines.push_str(&format!("{p}\n"));
        }
        let preds = out.join(format!("predictions-s{k}.jsonl"));
        super::io::write_atomic(&preds, lines.as_bytes())?;
        let cfg = HarnessConfig {
            dataset: data_file.clone(),
            predictions: preds.display().to_string(),
            repos_dir: repos.to_owned(),
            run_id: format!("repair-s{k}"),
            report_dir: out.to_owned(),
            log_root: out.join("logs"),
            max_workers: a.max_workers,
            ..base.clone()
        };
        let result = swerl_eval::run_evaluation(&cfg, &|_| {})?;
        for id in &result.summary.resolved_ids {
            resolved.insert((id.clone(), k));
        }
        eprintln!("harness, sample {k}: {} of {} resolved", result.summary.resolved_ids.len(), rows.len());
    }
    Ok(records.iter().map(|r| resolved.contains(&(r.id.clone(), r.sample))).collect())
}
