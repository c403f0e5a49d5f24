//! Scoring completions: the [`RewardFunction`] trait, the SWE-RL reward behind it, and
//! [`score_all`], which scores a batch in parallel and never lets a reward failure crash a run.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use swerl_reward::RlInstance;

/// The score of one completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardOutcome {
    /// The reward (finite).
    pub reward: f64,
    /// True when the completion broke the output format (SWE-RL: reward -1).
    pub format_error: bool,
    /// Why the reward is what it is, when it is a failure (format error, reward panic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when the reward function itself failed (not the completion): the reward is then
    /// [`RewardFunction::failure_reward`]. Counted as `reward_failures` in the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RewardFailure>,
}

impl RewardOutcome {
    /// A completion scored `reward` without a format error.
    pub fn scored(reward: f64) -> Self {
        Self { reward, ..Self::default() }
    }
}

/// How a reward function failed on a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RewardFailure {
    /// The reward function panicked (its message).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The reward function returned a non-finite value.
    NonFinite {
        /// The value returned.
        value: f64,
    },
    /// Preparing the instance's oracle patch failed, so no completion of it could be scored.
    Oracle,
}

/// Scores a completion of a prompt. Implementations must be thread-safe: batches are scored in
/// parallel.
pub trait RewardFunction<T: ?Sized>: Sync {
    /// Scores `completion` (the decoded text) for `task`.
    fn score(&self, task: &T, completion: &str) -> RewardOutcome;

    /// The reward given when `score` panics or returns a non-finite value.
    fn failure_reward(&self) -> f64 {
        -1.0
    }
}

/// The paper's reward: -1 for a format error, else the mean patch similarity in [0, 1]
/// (`swerl-reward`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SweRlReward;

impl RewardFunction<RlInstance> for SweRlReward {
    fn score(&self, task: &RlInstance, completion: &str) -> RewardOutcome {
        outcome(swerl_reward::score(&task.code_context, &task.oracle_new_content, completion))
    }
}

/// Scoring through a prepared [`swerl_reward::Scorer`] (the oracle patch computed once per
/// instance, shared by the group's completions).
impl<'a> RewardFunction<swerl_reward::Scorer<'a, BTreeMap<String, String>>> for SweRlReward {
    fn score(
        &self,
        task: &swerl_reward::Scorer<'a, BTreeMap<String, String>>,
        completion: &str,
    ) -> RewardOutcome {
        outcome(task.score(completion))
    }
}

fn outcome(result: std::result::Result<swerl_reward::Score, swerl_reward::FormatError>) -> RewardOutcome {
    match result {
        Ok(score) => RewardOutcome::scored(score.reward),
        Err(error) => {
            RewardOutcome { reward: -1.0, format_error: true, reason: Some(error.to_string()), failure: None }
        }
    }
}

/// Scores `completions[i]` against `tasks[i]` in parallel. A panicking or non-finite reward is
/// replaced by [`RewardFunction::failure_reward`] with the reason recorded (and logged), so one
/// bad completion never stops training.
pub fn score_all<T: Sync + ?Sized, R: RewardFunction<T> + ?Sized>(
    reward: &R,
    tasks: &[&T],
    completions: &[&str],
) -> Vec<RewardOutcome> {
    assert_eq!(tasks.len(), completions.len(), "one task per completion");
    tasks
        .par_iter()
        .zip(completions.par_iter())
        .enumerate()
        .map(|(i, (task, completion))| {
            match catch_unwind(AssertUnwindSafe(|| reward.score(task, completion))) {
                Ok(outcome) if outcome.reward.is_finite() => outcome,
                Ok(outcome) => {
                    tracing::warn!(completion = i, reward = outcome.reward, "non-finite reward replaced");
                    RewardOutcome {
                        reward: reward.failure_reward(),
                        format_error: outcome.format_error,
                        reason: Some(format!("non-finite reward {}", outcome.reward)),
                        failure: Some(RewardFailure::NonFinite { value: outcome.reward }),
                    }
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    tracing::error!(completion = i, %message, "reward function panicked");
                    RewardOutcome {
                        reward: reward.failure_reward(),
                        format_error: false,
                        reason: Some(format!("reward function panicked: {message}")),
                        failure: Some(RewardFailure::Panicked { message }),
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> RlInstance {
        RlInstance {
            instance_id: "o__r-1".into(),
            problem_statement: "f returns 1".into(),
            code_context: BTreeMap::from([("a.py".to_owned(), "def f():\n    return 1\n".to_owned())]),
            oracle_new_content: BTreeMap::from([("a.py".to_owned(), "def f():\n    return 2\n".to_owned())]),
        }
    }

    const GOOD: &str = "<think>f must return 2</think>\n<solution>\n```python\n### a.py\n<<<<<<< SEARCH\n    return 1\n=======\n    return 2\n>>>>>>> REPLACE\n```\n</solution>";

    #[test]
    fn swe_rl_reward_through_both_entry_points() {
        let inst = instance();
        let direct = RewardFunction::score(&SweRlReward, &inst, GOOD);
        assert_eq!(direct, RewardOutcome::scored(1.0));
        let scorer = swerl_reward::Scorer::new(&inst.code_context, &inst.oracle_new_content);
        assert_eq!(RewardFunction::score(&SweRlReward, &scorer, GOOD), direct);
        let bad = RewardFunction::score(&SweRlReward, &inst, "no tags");
        assert_eq!(bad.reward, -1.0);
        assert!(bad.format_error);
        assert!(bad.reason.unwrap().contains("<think>"));
    }

    struct Flaky;
    impl RewardFunction<str> for Flaky {
        fn score(&self, task: &str, completion: &str) -> RewardOutcome {
            match completion {
                "panic" => panic!("boom on {task}"),
                "nan" => RewardOutcome::scored(f64::NAN),
                _ => RewardOutcome::scored(completion.len() as f64),
            }
        }
    }

    #[test]
    fn panics_and_nan_become_failure_rewards_in_order() {
        let tasks = ["t"; 4];
        let tasks: Vec<&str> = tasks.to_vec();
        let out = score_all(&Flaky, &tasks, &["ab", "panic", "nan", "abcd"]);
        assert_eq!(out[0].reward, 2.0);
        assert_eq!(out[1].reward, -1.0);
        assert!(out[1].reason.as_deref().unwrap().contains("boom on t"));
        assert!(
            matches!(&out[1].failure, Some(RewardFailure::Panicked { message }) if message.contains("boom"))
        );
        assert_eq!(out[2].reward, -1.0);
        assert!(matches!(out[2].failure, Some(RewardFailure::NonFinite { .. })));
        assert_eq!(out[0].failure, None);
        assert_eq!(out[3].reward, 4.0);
    }
}
