//! What is trained on: an [`Environment`] holds prompts (as token ids) and scores completions.
//! [`SweRlEnvironment`] is the paper's: RL instances rendered through the model's chat template
//! within a context budget, scored with the SWE-RL reward.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rayon::prelude::*;
use serde::Serialize;
use swerl_model::{ChatMessage, Completion};
use swerl_reward::{Dataset, RlInstance, Scorer, build_messages};

use crate::config::PromptOverflow;
use crate::error::Result;
use crate::reward::{RewardFailure, RewardOutcome, SweRlReward, score_all};

/// A prompt ready for sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPrompt {
    /// Identifies it in logs (the instance id).
    pub id: String,
    /// Token ids, chat template applied.
    pub tokens: Vec<u32>,
}

/// Prompts and their reward.
pub trait Environment: Sync {
    /// The prompts, indexed `0..len`.
    fn prompts(&self) -> &[PreparedPrompt];

    /// Scores the completions of `prompt[i]`, one outcome per completion, in order. Must not
    /// panic on any completion (use [`score_all`], which catches reward failures).
    fn score(&self, prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome>;
}

/// Turns chat messages into prompt token ids through the model's chat template (with the
/// generation prompt appended).
pub trait ChatEncoder: Sync {
    /// Renders and tokenises.
    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>>;
}

/// How the context budget treated the data set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PromptReport {
    /// Instances whose prompt fitted as is.
    pub fitted: usize,
    /// Instances that fitted after dropping context files the oracle does not change.
    pub truncated: usize,
    /// The ids of the truncated instances.
    pub truncated_ids: Vec<String>,
    /// Instances skipped because their prompt could not fit, with their ids.
    pub skipped: Vec<String>,
    /// Context files dropped in total.
    pub dropped_files: usize,
    /// Longest prompt kept, in tokens.
    pub max_prompt_tokens: usize,
}

/// The SWE-RL environment.
#[derive(Debug)]
pub struct SweRlEnvironment {
    instances: Vec<RlInstance>,
    prompts: Vec<PreparedPrompt>,
    reward: SweRlReward,
}

impl SweRlEnvironment {
    /// Renders every instance's prompt through `encoder` and applies the budget of
    /// `max_prompt_tokens` per `overflow`. Instances are processed in parallel.
    pub fn new(
        dataset: Dataset,
        encoder: &dyn ChatEncoder,
        max_prompt_tokens: usize,
        overflow: PromptOverflow,
    ) -> Result<(Self, PromptReport)> {
        let results: Vec<Result<Fit>> = dataset
            .instances
            .par_iter()
            .map(|inst| fit_prompt(inst, encoder, max_prompt_tokens, overflow))
            .collect();
        let mut report = PromptReport::default();
        let mut instances = Vec::new();
        let mut prompts = Vec::new();
        for (inst, fit) in dataset.instances.into_iter().zip(results) {
            match fit? {
                Fit::Whole(tokens) => {
                    report.fitted += 1;
                    report.max_prompt_tokens = report.max_prompt_tokens.max(tokens.len());
                    prompts.push(PreparedPrompt { id: inst.instance_id.clone(), tokens });
                    instances.push(inst);
                }
                Fit::Truncated { tokens, dropped } => {
                    report.truncated += 1;
                    report.truncated_ids.push(inst.instance_id.clone());
                    report.dropped_files += dropped;
                    report.max_prompt_tokens = report.max_prompt_tokens.max(tokens.len());
                    prompts.push(PreparedPrompt { id: inst.instance_id.clone(), tokens });
                    instances.push(inst);
                }
                Fit::Skip { tokens } => {
                    tracing::info!(instance = %inst.instance_id, tokens, max_prompt_tokens, "prompt over budget: skipped");
                    report.skipped.push(inst.instance_id);
                }
            }
        }
        Ok((Self { instances, prompts, reward: SweRlReward }, report))
    }

    /// The instances kept, aligned with [`Environment::prompts`].
    pub fn instances(&self) -> &[RlInstance] {
        &self.instances
    }
}

impl Environment for SweRlEnvironment {
    fn prompts(&self) -> &[PreparedPrompt] {
        &self.prompts
    }

    fn score(&self, prompts: &[usize], completions: &[&Completion]) -> Vec<RewardOutcome> {
        // One scorer per distinct instance: the oracle patch is diffed once per group.
        let mut distinct: Vec<usize> = prompts.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let scorers: Vec<Option<Scorer<'_, BTreeMap<String, String>>>> = distinct
            .par_iter()
            .map(|&i| {
                let inst = &self.instances[i];
                catch_unwind(AssertUnwindSafe(|| Scorer::new(&inst.code_context, &inst.oracle_new_content)))
                    .ok()
            })
            .collect();
        let slot = |p: usize| distinct.binary_search(&p).expect("prompt is in `distinct`");
        let mut outcomes = vec![None; completions.len()];
        let mut tasks = Vec::with_capacity(completions.len());
        let mut texts = Vec::with_capacity(completions.len());
        let mut positions = Vec::with_capacity(completions.len());
        for (k, (&p, g)) in prompts.iter().zip(completions).enumerate() {
            if let Some(scorer) = &scorers[slot(p)] {
                tasks.push(scorer);
                texts.push(g.text.as_str());
                positions.push(k);
            } else {
                let id = &self.instances[p].instance_id;
                tracing::error!(instance = %id, "the reward failed preparing the oracle patch");
                outcomes[k] = Some(RewardOutcome {
                    reward: -1.0,
                    format_error: false,
                    reason: Some("reward function panicked while preparing the oracle patch".into()),
                    failure: Some(RewardFailure::Oracle),
                });
            }
        }
        for (k, o) in positions.into_iter().zip(score_all(&self.reward, &tasks, &texts)) {
            outcomes[k] = Some(o);
        }
        outcomes.into_iter().map(|o| o.expect("every completion is scored")).collect()
    }
}

enum Fit {
    Whole(Vec<u32>),
    Truncated { tokens: Vec<u32>, dropped: usize },
    Skip { tokens: usize },
}

fn fit_prompt(
    inst: &RlInstance,
    encoder: &dyn ChatEncoder,
    budget: usize,
    overflow: PromptOverflow,
) -> Result<Fit> {
    let mut files = inst.prompt_files();
    let tokens = encoder.encode_chat(&build_messages(inst, &files))?;
    if tokens.len() <= budget {
        return Ok(Fit::Whole(tokens));
    }
    if overflow == PromptOverflow::Skip {
        return Ok(Fit::Skip { tokens: tokens.len() });
    }
    let mut last = tokens.len();
    for (dropped, path) in inst.droppable_files().into_iter().enumerate() {
        files.retain(|f| *f != path);
        let tokens = encoder.encode_chat(&build_messages(inst, &files))?;
        if tokens.len() <= budget {
            return Ok(Fit::Truncated { tokens, dropped: dropped + 1 });
        }
        last = tokens.len();
    }
    Ok(Fit::Skip { tokens: last })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    /// One token per byte: budgets are easy to reason about.
    struct Bytes;
    impl ChatEncoder for Bytes {
        fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
            Ok(messages.iter().flat_map(|m| m.content.bytes().map(u32::from)).collect())
        }
    }

    fn inst(id: &str, extra: usize) -> RlInstance {
        RlInstance {
            instance_id: id.into(),
            problem_statement: "bug".into(),
            code_context: BTreeMap::from([
                ("a.py".to_owned(), "x = 1\n".to_owned()),
                ("big.py".to_owned(), "#".repeat(extra)),
            ]),
            oracle_new_content: BTreeMap::from([("a.py".to_owned(), "x = 2\n".to_owned())]),
        }
    }

    #[test]
    fn budget_truncates_unchanged_files_or_skips() {
        let base = Bytes.encode_chat(&build_messages(&inst("x", 0), &["a.py"])).unwrap().len();
        let data =
            Dataset::from_instances(PathBuf::from("d.jsonl"), vec![inst("fits", 10), inst("trunc", 5000)]);
        let budget = base + 200;
        let (env, report) =
            SweRlEnvironment::new(data.clone(), &Bytes, budget, PromptOverflow::Truncate).unwrap();
        assert_eq!(env.prompts().len(), 2);
        assert_eq!((report.fitted, report.truncated, report.dropped_files), (1, 1, 1));
        assert!(report.max_prompt_tokens <= budget);
        let (env, report) =
            SweRlEnvironment::new(data.clone(), &Bytes, budget, PromptOverflow::Skip).unwrap();
        assert_eq!(env.prompts().len(), 1);
        assert_eq!(report.skipped, vec!["trunc".to_owned()]);
        // Too small even for the oracle file: skipped under both policies.
        let (env, report) = SweRlEnvironment::new(data, &Bytes, 10, PromptOverflow::Truncate).unwrap();
        assert!(env.prompts().is_empty());
        assert_eq!(report.skipped.len(), 2);
    }
}
