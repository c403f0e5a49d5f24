//! The trainer with `swerl-model`'s Llama: a tiny random model written in Hugging Face layout
//! with a byte-level tokenizer and a ChatML template, prompts rendered through that template,
//! checkpoints in Hugging Face layout, exact resume.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use swerl_grpo::llama::{LlamaPolicy, ModelSettings};
use swerl_grpo::{
    ChatEncoder, Environment, PreparedPrompt, PromptOverflow, RewardOutcome, StepMetrics, SweRlEnvironment,
    TrainConfig, Trainer, read_metrics,
};
use swerl_model::{ChatMessage, Completion};
use swerl_reward::{Dataset, RlInstance};

/// Writes a tiny random Llama with a byte-level BPE tokenizer (no merges) into `dir`.
pub fn write_tiny_model(dir: &Path) -> Result<()> {
    Ok(swerl_model::testing::write_byte_level_checkpoint(dir, 2, 7)?)
}

/// Small RL instances (a few lines of code each).
pub fn instances(n: usize) -> Vec<RlInstance> {
    (0..n)
        .map(|i| RlInstance {
            instance_id: format!("o__r-{i}"),
            problem_statement: format!("f{i} returns the wrong value"),
            code_context: BTreeMap::from([(format!("m{i}.py"), format!("def f{i}():\n    return {i}\n"))]),
            oracle_new_content: BTreeMap::from([(
                format!("m{i}.py"),
                format!("def f{i}():\n    return {}\n", i + 1),
            )]),
        })
        .collect()
}

/// Short chat prompts and a reward that varies on a random model.
struct LetterTask {
    prompts: Vec<PreparedPrompt>,
}

impl LetterTask {
    fn new(policy: &LlamaPolicy) -> Result<Self> {
        let prompts = (0..3)
            .map(|i| {
                let messages = [ChatMessage::new("user", format!("say e {i} times"))];
                Ok(PreparedPrompt { id: format!("p{i}"), tokens: policy.encode_chat(&messages)? })
            })
            .collect::<Result<_>>()?;
        Ok(Self { prompts })
    }
}

impl Environment for LetterTask {
    fn prompts(&self) -> &[PreparedPrompt] {
        &self.prompts
    }

    fn score(&self, _prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome> {
        completions
            .iter()
            .map(|g| {
                // Continuous in the sampled bytes, so that groups (almost) never tie whatever
                // the seed: the mean of each token's id modulo 7, scaled to [0, 1].
                let n = g.token_ids.len().max(1) as f64;
                let sum: f64 = g.token_ids.iter().map(|&t| f64::from(t % 7) / 6.0).sum();
                RewardOutcome::scored(sum / n)
            })
            .collect()
    }
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        prompts_per_step: 2,
        group_size: 3,
        max_new_tokens: 6,
        max_prompt_tokens: 4000,
        prompt_overflow: PromptOverflow::Skip,
        micro_batch_size: 4,
        num_iterations: 2,
        beta: 0.05,
        learning_rate: 3e-3,
        save_steps: 2,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn run(model: &Path, out: &Path, steps: u64, resume: bool) -> Result<Trainer<LlamaPolicy>> {
    let policy = LlamaPolicy::load(model.to_str().expect("utf-8 path"), &ModelSettings::default())?;
    let cfg = config(steps);
    let env = LetterTask::new(&policy)?;
    let optimizer = policy.optimizer(&cfg)?;
    let mut trainer = Trainer::new(cfg, policy, optimizer, out)?;
    if resume {
        assert_eq!(trainer.resume()?, Some(2));
    }
    trainer.train(&env, &mut |_| {})?;
    Ok(trainer)
}

/// The SWE-RL prompts through the model's own chat template and the budget.
#[test]
fn swe_rl_prompts_use_the_chat_template_and_the_budget() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;
    let policy = LlamaPolicy::load(model.to_str().expect("utf-8 path"), &ModelSettings::default())?;
    let data = Dataset::from_instances("mem", instances(3));
    let (env, report) = SweRlEnvironment::new(data.clone(), &policy, 100_000, PromptOverflow::Skip)?;
    assert_eq!(report.fitted, 3);
    let text = policy.tokenizer().decode(&env.prompts()[0].tokens, false)?;
    assert!(text.starts_with("<|im_start|>system\nYou are an experienced software engineer"), "{text}");
    assert!(text.contains("### m0.py\n```python\ndef f0():"), "{text}");
    assert!(text.ends_with("<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    // A budget just under the longest prompt skips exactly the longest instance(s).
    let longest = env.prompts().iter().map(|p| p.tokens.len()).max().unwrap_or(0);
    let (small, report) = SweRlEnvironment::new(data, &policy, longest - 1, PromptOverflow::Skip)?;
    assert!(!report.skipped.is_empty() && small.prompts().len() + report.skipped.len() == 3);
    Ok(())
}

fn strip(m: Vec<StepMetrics>) -> Vec<StepMetrics> {
    m.into_iter().map(|m| m.without_timings()).collect()
}

#[test]
fn llama_policy_trains_saves_hf_checkpoints_and_resumes_exactly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;

    let a = run(&model, &tmp.path().join("a"), 3, false)?;
    let expected = strip(read_metrics(tmp.path().join("a/metrics.jsonl"))?);
    assert_eq!(expected.len(), 3);
    assert!(expected.iter().all(|m| m.updates == 2 && m.grad_norm > 0.0), "{expected:#?}");
    assert!(expected[2].kl > 0.0, "the policy never left the reference");
    assert!(expected.iter().all(|m| m.entropy > 0.0 && m.completions_mean_length > 0.0));

    // The checkpoint is a loadable Hugging Face model.
    let ckpt = tmp.path().join("a/checkpoint-3/model");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
        assert!(ckpt.join(f).is_file(), "missing {f}");
    }
    let reloaded = LlamaPolicy::load(ckpt.to_str().expect("utf-8"), &ModelSettings::default())?;
    for (x, y) in reloaded.model().parameters().iter().zip(a.policy().model().parameters()) {
        assert_eq!(
            x.as_tensor().flatten_all()?.to_vec1::<f32>()?,
            y.as_tensor().flatten_all()?.to_vec1::<f32>()?
        );
    }

    // Interrupted after the step-2 checkpoint, resumed: same metrics and weights.
    run(&model, &tmp.path().join("b"), 2, false)?;
    let b = run(&model, &tmp.path().join("b"), 3, true)?;
    assert_eq!(strip(read_metrics(tmp.path().join("b/metrics.jsonl"))?), expected);
    for (x, y) in b.policy().model().parameters().iter().zip(a.policy().model().parameters()) {
        assert_eq!(
            x.as_tensor().flatten_all()?.to_vec1::<f32>()?,
            y.as_tensor().flatten_all()?.to_vec1::<f32>()?
        );
    }
    Ok(())
}

/// The rollout engine's batch (`generation_batch_size`) changes how many sequences decode at
/// once, never what is sampled: completions and rewards are equal with 1 and 64.
#[test]
fn samples_do_not_depend_on_the_generation_batch() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;
    let mut logs = Vec::new();
    for batch in [1, 64] {
        let policy = LlamaPolicy::load(model.to_str().expect("utf-8 path"), &ModelSettings::default())?;
        let cfg =
            TrainConfig { generation_batch_size: batch, log_completions: 6, save_steps: 0, ..config(1) };
        let env = LetterTask::new(&policy)?;
        let optimizer = policy.optimizer(&cfg)?;
        let out = tmp.path().join(format!("b{batch}"));
        Trainer::new(cfg, policy, optimizer, &out)?.train(&env, &mut |_| {})?;
        logs.push(std::fs::read_to_string(out.join("completions.jsonl"))?);
    }
    assert_eq!(logs[0].lines().count(), 6);
    assert_eq!(logs[0], logs[1]);
    Ok(())
}
