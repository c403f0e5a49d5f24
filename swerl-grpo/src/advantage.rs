//! Group-normalised advantages (DeepSeekMath GRPO, with TRL's conventions).
//!
//! Rewards come in groups of `G` consecutive completions of the same prompt. The advantage of a
//! completion is its reward minus its group's mean, divided (per [`ScaleRewards`]) by the group's
//! or the batch's *sample* standard deviation (Bessel-corrected) plus `1e-4`. Computed in `f64`.

use serde::{Deserialize, Serialize};

use crate::config::ScaleRewards;
use crate::error::{Error, Result};

/// Added to the standard deviation before dividing, as TRL does.
pub const STD_EPSILON: f64 = 1e-4;

/// Advantages of one batch with the statistics TRL logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Advantages {
    /// One advantage per completion, in input order.
    pub values: Vec<f64>,
    /// Mean reward of each group.
    pub group_mean: Vec<f64>,
    /// Sample standard deviation of each group (0 for a group whose rewards are all equal).
    pub group_std: Vec<f64>,
    /// Sample standard deviation of every reward of the batch (TRL's `reward_std`).
    pub batch_std: f64,
}

impl Advantages {
    /// Mean reward of the batch (TRL's `reward`).
    pub fn reward_mean(&self) -> f64 {
        mean(&self.group_mean)
    }

    /// Fraction of groups whose rewards are all equal (TRL's `frac_reward_zero_std`): their
    /// advantages are 0 and they teach nothing.
    pub fn frac_zero_std(&self) -> f64 {
        if self.group_std.is_empty() {
            return 0.0;
        }
        let zero = self.group_std.iter().filter(|&&s| is_zero_std(s)).count();
        zero as f64 / self.group_std.len() as f64
    }
}

/// True when a group's rewards are not all equal (by the rule of
/// [`Advantages::frac_zero_std`]): it has a learning signal.
pub(crate) fn has_signal(group: &[f64]) -> bool {
    !is_zero_std(sample_std(group))
}

/// `torch.isclose(std, 0)` with its default tolerances.
fn is_zero_std(std: f64) -> bool {
    std.abs() <= 1e-8
}

/// Computes the advantages of `rewards`, grouped in runs of `group_size` consecutive values.
///
/// Rewards must be finite (the SWE-RL reward always is; callers map failures to a finite
/// penalty). `group_size` must divide `rewards.len()` and be at least 2.
pub fn compute_advantages(rewards: &[f64], group_size: usize, scale: ScaleRewards) -> Result<Advantages> {
    if group_size < 2 {
        return Err(Error::shape("compute_advantages", format!("group size {group_size} < 2")));
    }
    if rewards.is_empty() || !rewards.len().is_multiple_of(group_size) {
        return Err(Error::shape(
            "compute_advantages",
            format!("{} rewards are not a whole number of groups of {group_size}", rewards.len()),
        ));
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(Error::shape("compute_advantages", format!("reward {i} is {}", rewards[i])));
    }
    let groups: Vec<&[f64]> = rewards.chunks(group_size).collect();
    let group_mean: Vec<f64> = groups.iter().map(|g| mean(g)).collect();
    let group_std: Vec<f64> = groups.iter().map(|g| sample_std(g)).collect();
    let batch_std = sample_std(rewards);
    let values = rewards
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let g = i / group_size;
            let centred = r - group_mean[g];
            match scale {
                ScaleRewards::Group => centred / (group_std[g] + STD_EPSILON),
                ScaleRewards::Batch => centred / (batch_std + STD_EPSILON),
                ScaleRewards::None => centred,
            }
        })
        .collect();
    Ok(Advantages { values, group_mean, group_std, batch_std })
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 }
}

/// Bessel-corrected standard deviation (`torch.std`); 0 for fewer than two values.
fn sample_std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64;
    var.sqrt()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hand_computed_group_of_four() {
        // rewards 1, 0, 0, -1: mean 0, sample variance (1 + 0 + 0 + 1) / 3, std sqrt(2/3)
        let a = compute_advantages(&[1.0, 0.0, 0.0, -1.0], 4, ScaleRewards::Group).unwrap();
        let std = (2.0f64 / 3.0).sqrt();
        assert!((a.values[0] - 1.0 / (std + 1e-4)).abs() < 1e-12);
        assert_eq!(a.values[1], 0.0);
        assert!((a.values[3] + 1.0 / (std + 1e-4)).abs() < 1e-12);
        assert!((a.group_std[0] - std).abs() < 1e-12);
        let none = compute_advantages(&[1.0, 0.0, 0.0, -1.0], 4, ScaleRewards::None).unwrap();
        assert_eq!(none.values, vec![1.0, 0.0, 0.0, -1.0]);
    }

    #[test]
    fn zero_std_groups_have_zero_advantage_and_are_counted() {
        let a = compute_advantages(&[-1.0, -1.0, 0.5, 0.25], 2, ScaleRewards::Group).unwrap();
        assert_eq!(&a.values[..2], &[0.0, 0.0]);
        assert_eq!(a.frac_zero_std(), 0.5);
        assert!((a.reward_mean() - (-1.25 / 4.0)).abs() < 1e-12);
    }

    #[test]
    fn batch_scaling_uses_group_mean_and_batch_std() {
        let r = [1.0, 0.0, 0.5, 0.5];
        let a = compute_advantages(&r, 2, ScaleRewards::Batch).unwrap();
        let m = 0.5;
        let std = ((0.25 + 0.25 + 0.0 + 0.0) / 3.0f64).sqrt();
        assert!((a.batch_std - std).abs() < 1e-12);
        assert!((a.values[0] - (1.0 - m) / (std + 1e-4)).abs() < 1e-12);
        assert_eq!(a.values[2], 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(compute_advantages(&[1.0, 2.0, 3.0], 2, ScaleRewards::Group).is_err());
        assert!(compute_advantages(&[1.0, 2.0], 1, ScaleRewards::Group).is_err());
        assert!(compute_advantages(&[1.0, f64::NAN], 2, ScaleRewards::Group).is_err());
        assert!(compute_advantages(&[], 2, ScaleRewards::Group).is_err());
    }

    proptest! {
        #[test]
        fn advantages_sum_to_zero_per_group_and_are_shift_invariant(
            rewards in proptest::collection::vec(-1.0f64..1.0, 1..6usize).prop_flat_map(|g| {
                proptest::collection::vec(-1.0f64..1.0, g.len() * 4)
            }),
            shift in -10.0f64..10.0,
        ) {
            let a = compute_advantages(&rewards, 4, ScaleRewards::Group).unwrap();
            for group in a.values.chunks(4) {
                prop_assert!(group.iter().sum::<f64>().abs() < 1e-6);
            }
            let shifted: Vec<f64> = rewards.iter().map(|r| r + shift).collect();
            let b = compute_advantages(&shifted, 4, ScaleRewards::Group).unwrap();
            for (x, y) in a.values.iter().zip(&b.values) {
                prop_assert!((x - y).abs() < 1e-6);
            }
            // Scaled advantages never exceed (G - 1) / sqrt(G) in magnitude (+ epsilon slack).
            for v in &a.values {
                prop_assert!(v.abs() <= 3.0 / 2.0 + 1e-6);
            }
        }
    }
}
