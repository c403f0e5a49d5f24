//! Dynamic sampling (DAPO): groups whose rewards are all equal are replaced by freshly sampled
//! groups, so a batch holds no zero-std group while one exists to replace it.

use anyhow::Result;
use swerl_grpo::{Environment, PreparedPrompt, RewardOutcome, StepMetrics, TrainConfig, read_metrics};
use swerl_model::Completion;

use crate::toy::{START, TargetTask, bigram_trainer};

/// Half of the prompts (even ids) always give reward 0: their groups teach nothing. The others
/// reward the target token as [`TargetTask`] does.
struct HalfFlat {
    prompts: Vec<PreparedPrompt>,
}

impl Environment for HalfFlat {
    fn prompts(&self) -> &[PreparedPrompt] {
        &self.prompts
    }

    fn score(&self, prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome> {
        prompts
            .iter()
            .zip(completions)
            .map(|(&p, c)| {
                let r = if p % 2 == 0 { 0.0 } else { TargetTask::true_reward(&c.token_ids, 6) };
                RewardOutcome::scored(r)
            })
            .collect()
    }
}

fn run(max_sampling_rounds: u32) -> Result<Vec<StepMetrics>> {
    let env = HalfFlat {
        prompts: (0..8).map(|i| PreparedPrompt { id: format!("p{i}"), tokens: vec![START] }).collect(),
    };
    let cfg = TrainConfig {
        steps: 6,
        prompts_per_step: 4,
        group_size: 4,
        max_new_tokens: 6,
        micro_batch_size: 8,
        learning_rate: 0.05,
        save_steps: 0,
        seed: 11,
        max_sampling_rounds,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir()?;
    bigram_trainer(cfg, dir.path())?.train(&env, &mut |_| {})?;
    Ok(read_metrics(dir.path().join("metrics.jsonl"))?)
}

#[test]
fn dynamic_sampling_replaces_groups_without_signal() -> Result<()> {
    let plain = run(0)?;
    assert!(plain.iter().all(|m| m.sampling_extra_rounds == 0 && m.sampling_groups_drawn == 4));
    let flat: f64 = plain.iter().map(|m| m.frac_reward_zero_std).sum::<f64>() / plain.len() as f64;
    assert!(flat >= 0.3, "without dynamic sampling about half the groups are flat: {flat}");

    let dynamic = run(8)?;
    for m in &dynamic {
        // Eight rounds of four fresh prompts always find enough groups with signal here.
        assert_eq!(m.frac_reward_zero_std, 0.0, "step {}: {m:?}", m.step);
        assert!(m.sampling_groups_replaced > 0 || m.sampling_extra_rounds == 0);
        assert_eq!(m.sampling_groups_drawn, 4 * (1 + m.sampling_extra_rounds), "step {}", m.step);
        assert!(m.sampling_groups_replaced <= m.sampling_groups_drawn - 4);
    }
    assert!(dynamic.iter().map(|m| m.sampling_groups_replaced).sum::<u64>() >= 6);
    Ok(())
}

#[test]
fn a_round_bound_leaves_the_flat_groups_it_could_not_replace() -> Result<()> {
    let once = run(1)?;
    assert!(once.iter().all(|m| m.sampling_extra_rounds <= 1));
    assert!(once.iter().any(|m| m.sampling_extra_rounds == 1 && m.sampling_groups_replaced > 0));
    Ok(())
}
