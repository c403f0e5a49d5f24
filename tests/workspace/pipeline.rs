//! The contract between the crates: a repository mined into `instances.jsonl` by swerl-data is
//! read by the trainer's loader, its gold edit scores 1.0 with swerl-reward, a tiny swerl-model
//! Llama trains two GRPO steps on it with swerl-grpo, and the checkpoint loads back.

use anyhow::{Context, Result};
use swerl::data::{Instance, MineConfig, Miner};
use swerl::grpo::llama::{LlamaPolicy, ModelSettings};
use swerl::grpo::{PromptOverflow, SweRlEnvironment, TrainConfig, Trainer, read_metrics};
use swerl::reward::Dataset;

use crate::support::{CALC_V0, CALC_V1, make_clones};

#[test]
fn mined_instances_train_a_tiny_model_and_the_checkpoint_loads_back() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let clones = make_clones(tmp.path())?;

    // 1. swerl-data: git-only mining (no archives, so no issue text is required).
    let mut config = MineConfig::default();
    config.filters.require_linked_issue = false;
    config.filters.require_bug_fix = false;
    let mined = tmp.path().join("mined");
    let summary = Miner::builder().config(config).clones(&clones).build()?.run_git_only(&mined)?;
    let funnel = summary.instances.context("funnel")?;
    assert_eq!((funnel.merged_prs, funnel.selected), (1, 1), "{funnel:?}");
    let instances_file = mined.join("instances.jsonl");
    let line = std::fs::read_to_string(&instances_file)?;
    let instance: Instance = serde_json::from_str(line.trim())?;
    assert_eq!(instance.rl.instance_id, "acme__calc-1");
    assert_eq!(instance.rl.code_context["calc/stats.py"], CALC_V0);
    assert_eq!(instance.rl.oracle_new_content["calc/stats.py"], CALC_V1);
    assert!(instance.test_patch.contains("test_empty"), "{}", instance.test_patch);

    // 2. The trainer's loader reads the miner's file as is: the same RL instance.
    let dataset = Dataset::load(&instances_file)?;
    assert!(dataset.skipped.is_empty(), "{:?}", dataset.skipped);
    assert_eq!(dataset.instances, vec![instance.rl.clone()]);

    // 3. swerl-reward: the gold edit scores 1.0, an empty answer is a format error.
    let rl = &dataset.instances[0];
    assert_eq!(
        swerl::reward::reward(&rl.code_context, &rl.oracle_new_content, &swerl::reward::oracle_answer(rl)?),
        1.0
    );
    assert_eq!(swerl::reward::reward(&rl.code_context, &rl.oracle_new_content, "no answer"), -1.0);

    // 4. swerl-model + swerl-grpo: two GRPO steps on the mined instance with a tiny model.
    let model_dir = tmp.path().join("tiny");
    swerl::model::testing::write_byte_level_checkpoint(&model_dir, 2, 7)?;
    let policy = LlamaPolicy::load(model_dir.to_str().context("utf-8")?, &ModelSettings::default())?;
    let config = TrainConfig {
        steps: 2,
        prompts_per_step: 1,
        group_size: 2,
        max_new_tokens: 8,
        max_prompt_tokens: 4096,
        prompt_overflow: PromptOverflow::Skip,
        micro_batch_size: 2,
        save_steps: 0,
        ..TrainConfig::default()
    };
    let (env, report) =
        SweRlEnvironment::new(dataset, &policy, config.max_prompt_tokens, config.prompt_overflow)?;
    assert_eq!(report.fitted, 1, "{report:?}");
    let optimizer = policy.optimizer(&config)?;
    let run = tmp.path().join("run");
    let mut trainer = Trainer::new(config, policy, optimizer, &run)?;
    let summary = trainer.train(&env, &mut |_| {})?;
    assert_eq!(summary.steps.len(), 2);
    assert_eq!(read_metrics(run.join("metrics.jsonl"))?.len(), 2);

    // 5. The checkpoint is a Hugging Face model that loads back with the trained weights.
    let checkpoint = summary.last_checkpoint.context("checkpoint")?;
    let loaded = swerl::model::load_dir(&checkpoint.join("model"), &Default::default())?;
    let trained = trainer.policy().model();
    for (name, var) in trained.named_parameters() {
        let saved = loaded.model.parameter(name).with_context(|| name.clone())?;
        let diff = (var.as_tensor() - saved.as_tensor())?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0, "{name}");
    }
    Ok(())
}
