//! The clipped GRPO policy loss on candle tensors, with its KL term, the four aggregations and
//! the statistics TRL logs (clip fractions, KL).
//!
//! All functions take one micro-batch: per-token log-probabilities `(B, T)` of the completion
//! tokens under the current policy (differentiable), optionally under the sampling ("old") and
//! reference policies, advantages `(B,)` and a completion mask `(B, T)` of 0/1. The returned loss
//! is that micro-batch's *share* of the whole batch's objective, so summing the losses (hence the
//! gradients) of every micro-batch on every rank gives the objective of the whole accumulated
//! batch; the [`BatchNorm`] counts make that exact for `grpo`, `dr_grpo` and `dapo` whatever the
//! micro-batch split. `bnpo` is defined per micro-batch (a token mean over each, averaged over
//! micro-batches), as in TRL.

use candle_core::{DType, Tensor};

use crate::config::{ImportanceLevel, LossType, ObjectiveConfig};
use crate::error::{Error, Result};

/// Counts over the whole accumulated batch (every micro-batch of every rank) that fix each
/// micro-batch's share of the objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Completions in the batch (`grpo`, `dr_grpo`).
    pub sequences: usize,
    /// Completion tokens under the mask in the batch (`dapo`).
    pub tokens: usize,
    /// Micro-batches in the batch (`bnpo`).
    pub micro_batches: usize,
    /// The configured maximum completion length (`dr_grpo`).
    pub max_completion_len: usize,
}

impl BatchNorm {
    /// The normaliser of a single micro-batch that is the whole batch (one forward, one rank).
    pub fn single(mask: &Tensor, max_completion_len: usize) -> Result<Self> {
        let (sequences, _) = mask.dims2()?;
        let tokens = mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?.round() as usize;
        Ok(Self { sequences, tokens, micro_batches: 1, max_completion_len })
    }
}

/// One micro-batch's inputs to [`policy_loss`].
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a> {
    /// Per-token log-probs under the current policy, `(B, T)`, differentiable.
    pub logp: &'a Tensor,
    /// Per-token log-probs under the sampling policy, `(B, T)`; `None` means on-policy (the
    /// detached `logp`: every ratio is 1 and only its gradient matters).
    pub old_logp: Option<&'a Tensor>,
    /// Per-token log-probs under the reference policy, `(B, T)`; required when `beta > 0`.
    pub ref_logp: Option<&'a Tensor>,
    /// One advantage per completion, `(B,)`.
    pub advantages: &'a Tensor,
    /// Completion mask, `(B, T)`, 1.0 for tokens that count.
    pub mask: &'a Tensor,
}

/// Sums (not means) over one micro-batch, so they add across micro-batches and ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Masked completion tokens.
    pub tokens: f64,
    /// Sum of the per-token k3 KL over masked tokens (0 when `beta == 0`).
    pub kl_sum: f64,
    /// Units (tokens, or sequences at sequence level) whose ratio fell below `1 - eps_low` with a
    /// negative advantage.
    pub clip_low: f64,
    /// Units whose ratio rose above `1 + eps_high` with a positive advantage.
    pub clip_high: f64,
    /// Units clipped either way.
    pub clip_region: f64,
    /// The denominator of the clip fractions: masked tokens (token level) or sequences (sequence
    /// level).
    pub clip_units: f64,
}

impl LossStats {
    /// Adds another micro-batch's sums.
    pub fn add(&mut self, other: &Self) {
        self.tokens += other.tokens;
        self.kl_sum += other.kl_sum;
        self.clip_low += other.clip_low;
        self.clip_high += other.clip_high;
        self.clip_region += other.clip_region;
        self.clip_units += other.clip_units;
    }

    /// Mean KL per token.
    pub fn kl_mean(&self) -> f64 {
        ratio(self.kl_sum, self.tokens)
    }

    /// `clip_ratio/low_mean`.
    pub fn clip_low_mean(&self) -> f64 {
        ratio(self.clip_low, self.clip_units)
    }

    /// `clip_ratio/high_mean`.
    pub fn clip_high_mean(&self) -> f64 {
        ratio(self.clip_high, self.clip_units)
    }

    /// `clip_ratio/region_mean`.
    pub fn clip_region_mean(&self) -> f64 {
        ratio(self.clip_region, self.clip_units)
    }

    /// The sums as a flat array (for an all-reduce across ranks).
    pub fn to_array(&self) -> [f64; 6] {
        [self.tokens, self.kl_sum, self.clip_low, self.clip_high, self.clip_region, self.clip_units]
    }

    /// Inverse of [`LossStats::to_array`].
    pub fn from_array(a: [f64; 6]) -> Self {
        Self {
            tokens: a[0],
            kl_sum: a[1],
            clip_low: a[2],
            clip_high: a[3],
            clip_region: a[4],
            clip_units: a[5],
        }
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { 0.0 }
}

/// The result of [`policy_loss`].
#[derive(Debug, Clone)]
pub struct PolicyLoss {
    /// Scalar loss (this micro-batch's share of the batch objective), in `logp`'s dtype.
    pub loss: Tensor,
    /// Per-token losses `(B, T)` before masking and aggregation (for inspection and tests).
    pub per_token_loss: Tensor,
    /// Statistics for logging.
    pub stats: LossStats,
}

/// The per-token k3 estimator of KL(policy || reference): `exp(ref - logp) - (ref - logp) - 1`,
/// always >= 0.
pub fn k3_kl(logp: &Tensor, ref_logp: &Tensor) -> Result<Tensor> {
    let d = (ref_logp - logp)?;
    Ok(((d.exp()? - &d)? - 1.0)?)
}

/// The clipped surrogate loss of one micro-batch (see the module docs for the normalisation).
///
/// Per token: `-min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3`, with
/// `rho = exp(logp - old)` (token level) or `exp(mean_t(logp - old))` (sequence level, GSPO).
pub fn policy_loss(
    inputs: &LossInputs<'_>,
    config: &ObjectiveConfig,
    norm: &BatchNorm,
) -> Result<PolicyLoss> {
    let LossInputs { logp, old_logp, ref_logp, advantages, mask } = *inputs;
    let (b, t) = logp.dims2()?;
    let dtype = logp.dtype();
    check_shape("policy_loss mask", mask, &[b, t])?;
    check_shape("policy_loss advantages", advantages, &[b])?;
    if let Some(old) = old_logp {
        check_shape("policy_loss old_logp", old, &[b, t])?;
    }
    let mask = mask.to_dtype(dtype)?;
    let advantages = advantages.to_dtype(dtype)?.unsqueeze(1)?; // (B, 1)

    let old = match old_logp {
        Some(old) => old.to_dtype(dtype)?.detach(),
        None => logp.detach(),
    };
    let log_ratio = (logp - old)?;
    let seq_tokens = mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?; // (B, 1)
    let log_weights = match config.importance_sampling_level {
        ImportanceLevel::Token => log_ratio,
        ImportanceLevel::Sequence => (log_ratio * &mask)?.sum_keepdim(1)?.div(&seq_tokens)?,
    };
    let coef1 = log_weights.exp()?;
    let coef2 = coef1.clamp(1.0 - config.epsilon_low, 1.0 + config.epsilon_high)?;
    // Two-sided clipping caps the unclipped branch too (after `coef2` is formed, as TRL).
    let coef1 = match config.delta {
        Some(delta) => coef1.clamp(f64::NEG_INFINITY, delta)?,
        None => coef1,
    };
    let loss1 = coef1.broadcast_mul(&advantages)?;
    let loss2 = coef2.broadcast_mul(&advantages)?;
    let mut per_token = loss1.minimum(&loss2)?.neg()?;
    // Sequence level gives (B, 1): broadcast to every token of the sequence.
    per_token = per_token.broadcast_as((b, t))?.contiguous()?;

    let mut stats = LossStats { tokens: sum_f64(&mask)?, ..LossStats::default() };
    if config.beta != 0.0 {
        let reference = ref_logp
            .ok_or_else(|| Error::shape("policy_loss", "beta > 0 needs the reference policy's log-probs"))?;
        check_shape("policy_loss ref_logp", reference, &[b, t])?;
        let kl = k3_kl(logp, &reference.to_dtype(dtype)?.detach())?;
        stats.kl_sum = sum_f64(&(kl.detach() * &mask)?)?;
        per_token = (per_token + (kl * config.beta)?)?;
    }

    // Clip statistics, as TRL defines them.
    let coef = coef1.detach();
    let low = coef
        .lt(1.0 - config.epsilon_low)?
        .to_dtype(dtype)?
        .broadcast_mul(&advantages.lt(0.0)?.to_dtype(dtype)?)?;
    let high = coef
        .gt(1.0 + config.epsilon_high)?
        .to_dtype(dtype)?
        .broadcast_mul(&advantages.gt(0.0)?.to_dtype(dtype)?)?;
    let region = (&low + &high)?.clamp(0.0, 1.0)?;
    match config.importance_sampling_level {
        ImportanceLevel::Token => {
            stats.clip_low = sum_f64(&(low * &mask)?)?;
            stats.clip_high = sum_f64(&(high * &mask)?)?;
            stats.clip_region = sum_f64(&(region * &mask)?)?;
            stats.clip_units = stats.tokens;
        }
        ImportanceLevel::Sequence => {
            stats.clip_low = sum_f64(&low)?;
            stats.clip_high = sum_f64(&high)?;
            stats.clip_region = sum_f64(&region)?;
            stats.clip_units = b as f64;
        }
    }

    let weights = token_weights(&mask, &seq_tokens, config.loss_type, norm)?;
    let loss = (&per_token * weights)?.sum_all()?;
    Ok(PolicyLoss { loss, per_token_loss: per_token, stats })
}

/// Per-token weights `(B, T)` that turn the masked per-token losses into this micro-batch's share
/// of the objective.
fn token_weights(
    mask: &Tensor,
    seq_tokens: &Tensor,
    loss_type: LossType,
    norm: &BatchNorm,
) -> Result<Tensor> {
    let positive = |name: &str, value: usize| {
        if value == 0 {
            Err(Error::shape("policy_loss", format!("BatchNorm::{name} must be > 0")))
        } else {
            Ok(value as f64)
        }
    };
    Ok(match loss_type {
        LossType::Grpo => {
            let n = positive("sequences", norm.sequences)?;
            (mask.broadcast_div(seq_tokens)? / n)?
        }
        LossType::Bnpo => {
            let k = positive("micro_batches", norm.micro_batches)?;
            let tokens = sum_f64(mask)?.max(1.0);
            (mask / (tokens * k))?
        }
        LossType::DrGrpo => {
            let n = positive("sequences", norm.sequences)?;
            let l = positive("max_completion_len", norm.max_completion_len)?;
            (mask / (n * l))?
        }
        LossType::Dapo => {
            let tokens = norm.tokens.max(1) as f64;
            (mask / tokens)?
        }
    })
}

fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

fn check_shape(what: &'static str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dims() != expected {
        return Err(Error::shape(what, format!("expected {expected:?}, got {:?}", t.dims())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn t2(rows: &[&[f32]]) -> Tensor {
        let b = rows.len();
        let t = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (b, t), &Device::Cpu).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    /// Hand-computed: on-policy (rho = 1) the loss is -sum(A * mask * w); the gradient wrt logp
    /// is -A * w per masked token.
    #[test]
    fn on_policy_loss_and_gradient_by_hand() {
        let logp = Var::from_tensor(&t2(&[&[-1.0, -2.0, -0.5], &[-0.3, -0.7, -9.0]])).unwrap();
        let mask = t2(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]);
        let adv = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let inputs = LossInputs {
            logp: logp.as_tensor(),
            old_logp: None,
            ref_logp: None,
            advantages: &adv,
            mask: &mask,
        };
        let cases = [
            // grpo: mean over sequences of token means: -(0.5 + -1.0) / 2 = 0.25
            (LossType::Grpo, 0.25, [-0.5 / 3.0 / 2.0, 1.0 / 2.0 / 2.0]),
            // bnpo: token mean: -(3 * 0.5 - 2 * 1.0) / 5 = 0.1
            (LossType::Bnpo, 0.1, [-0.5 / 5.0, 1.0 / 5.0]),
            // dr_grpo with L = 4: -(1.5 - 2.0) / (2 * 4) = 0.0625
            (LossType::DrGrpo, 0.0625, [-0.5 / 8.0, 1.0 / 8.0]),
            // dapo: token sum over 5 tokens, like bnpo with one micro-batch
            (LossType::Dapo, 0.1, [-0.5 / 5.0, 1.0 / 5.0]),
        ];
        for (loss_type, expected, grads) in cases {
            let config = ObjectiveConfig { loss_type, ..ObjectiveConfig::default() };
            let norm = BatchNorm::single(&mask, 4).unwrap();
            let out = policy_loss(&inputs, &config, &norm).unwrap();
            assert!((scalar(&out.loss) - expected).abs() < 1e-6, "{loss_type:?}");
            let g = out.loss.backward().unwrap();
            let g = g.get(&logp).unwrap().to_vec2::<f32>().unwrap();
            assert!((g[0][0] as f64 - grads[0]).abs() < 1e-6, "{loss_type:?} {g:?}");
            assert!((g[1][1] as f64 - grads[1]).abs() < 1e-6, "{loss_type:?} {g:?}");
            assert_eq!(g[1][2], 0.0, "masked token gets no gradient");
            assert_eq!(out.stats.clip_region, 0.0);
        }
    }

    /// Off-policy by hand: ratios e^{0.5} (clipped high for A > 0) and e^{-0.5} (clipped low
    /// for A < 0) give zero gradient and count as clipped; unclipped tokens get -A * rho * w.
    #[test]
    fn clipping_by_hand() {
        let logp = Var::from_tensor(&t2(&[&[-1.0, -1.0], &[-1.0, -1.0]])).unwrap();
        let old = t2(&[&[-1.5, -1.05], &[-0.5, -0.95]]);
        let mask = t2(&[&[1.0, 1.0], &[1.0, 1.0]]);
        let adv = Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let inputs = LossInputs {
            logp: logp.as_tensor(),
            old_logp: Some(&old),
            ref_logp: None,
            advantages: &adv,
            mask: &mask,
        };
        let config = ObjectiveConfig::default();
        let out = policy_loss(&inputs, &config, &BatchNorm::single(&mask, 2).unwrap()).unwrap();
        let r = [0.5f64.exp(), 0.05f64.exp(), (-0.5f64).exp(), (-0.05f64).exp()];
        let expected = (-(1.2 * 1.0) - r[1] * 1.0 + 0.8 * 2.0 + r[3] * 2.0) / 4.0;
        assert!((scalar(&out.loss) - expected).abs() < 1e-6);
        let g = out.loss.backward().unwrap().get(&logp).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(g[0][0], 0.0);
        assert_eq!(g[1][0], 0.0);
        assert!((g[0][1] as f64 + r[1] / 4.0).abs() < 1e-6);
        assert!((g[1][1] as f64 - 2.0 * r[3] / 4.0).abs() < 1e-6);
        assert_eq!(out.stats.clip_high, 1.0);
        assert_eq!(out.stats.clip_low, 1.0);
        assert_eq!(out.stats.clip_region_mean(), 0.5);
    }

    #[test]
    fn k3_is_zero_at_equality_and_positive_elsewhere() {
        let a = t2(&[&[-1.0, -2.0, -3.0]]);
        let b = t2(&[&[-1.0, -1.0, -5.0]]);
        let kl = k3_kl(&a, &b).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(kl[0][0], 0.0);
        // d = 1: e - 2; d = -2: e^-2 + 1
        assert!((kl[0][1] as f64 - (1f64.exp() - 2.0)).abs() < 1e-6);
        assert!((kl[0][2] as f64 - ((-2f64).exp() + 1.0)).abs() < 1e-6);
    }

    /// Splitting a batch into micro-batches and summing their losses gives the whole batch's
    /// loss for every aggregation but `bnpo` (which is per micro-batch by definition).
    #[test]
    fn micro_batch_shares_add_up_to_the_batch_objective() {
        let logp = t2(&[&[-1.0, -2.0, -0.5], &[-0.3, -0.7, -9.0], &[-2.0, -0.1, -0.2]]);
        let old = t2(&[&[-1.1, -1.9, -0.5], &[-0.2, -0.9, -9.0], &[-2.2, -0.1, -0.25]]);
        let mask = t2(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]]);
        let adv = Tensor::new(&[0.7f32, -1.2, 0.4], &Device::Cpu).unwrap();
        for loss_type in [LossType::Grpo, LossType::DrGrpo, LossType::Dapo] {
            let config = ObjectiveConfig { loss_type, ..ObjectiveConfig::default() };
            let whole = policy_loss(
                &LossInputs {
                    logp: &logp,
                    old_logp: Some(&old),
                    ref_logp: None,
                    advantages: &adv,
                    mask: &mask,
                },
                &config,
                &BatchNorm::single(&mask, 3).unwrap(),
            )
            .unwrap();
            let norm = BatchNorm { sequences: 3, tokens: 6, micro_batches: 2, max_completion_len: 3 };
            let mut sum = 0.0;
            for (start, len) in [(0, 2), (2, 1)] {
                let part = policy_loss(
                    &LossInputs {
                        logp: &logp.narrow(0, start, len).unwrap(),
                        old_logp: Some(&old.narrow(0, start, len).unwrap()),
                        ref_logp: None,
                        advantages: &adv.narrow(0, start, len).unwrap(),
                        mask: &mask.narrow(0, start, len).unwrap(),
                    },
                    &config,
                    &norm,
                )
                .unwrap();
                sum += scalar(&part.loss);
            }
            assert!((sum - scalar(&whole.loss)).abs() < 1e-6, "{loss_type:?}");
        }
    }

    #[test]
    fn beta_without_reference_and_bad_shapes_are_errors() {
        let logp = t2(&[&[-1.0, -2.0]]);
        let mask = t2(&[&[1.0, 1.0]]);
        let adv = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let inputs =
            LossInputs { logp: &logp, old_logp: None, ref_logp: None, advantages: &adv, mask: &mask };
        let config = ObjectiveConfig { beta: 0.1, ..ObjectiveConfig::default() };
        let norm = BatchNorm::single(&mask, 2).unwrap();
        assert!(policy_loss(&inputs, &config, &norm).is_err());
        let bad_adv = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let inputs = LossInputs { advantages: &bad_adv, ..inputs };
        let err = policy_loss(&inputs, &ObjectiveConfig::default(), &norm).unwrap_err();
        assert!(err.to_string().contains("advantages"), "{err}");
    }

    proptest::proptest! {
        /// For any inputs and any split into two micro-batches, the shares of `grpo`, `dr_grpo`
        /// and `dapo` add up to the whole batch's loss; the loss is finite; clip fractions are in
        /// [0, 1]; the KL is non-negative.
        #[test]
        fn shares_add_up_for_any_split(
            rows in 2usize..6,
            cols in 1usize..6,
            seed in 0u64..1000,
            split_frac in 0.0f64..1.0,
            level in proptest::sample::select(vec![ImportanceLevel::Token, ImportanceLevel::Sequence]),
        ) {
            let mut state = seed;
            let mut next = || {
                state = crate::sampler::mix64(state);
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let logp: Vec<f64> = (0..rows * cols).map(|_| -3.0 * next()).collect();
            let old: Vec<f64> = logp.iter().map(|l| l + 0.8 * (next() - 0.5)).collect();
            let reference: Vec<f64> = logp.iter().map(|l| l + (next() - 0.5)).collect();
            let mask: Vec<f64> = (0..rows * cols).map(|i| if i % cols == 0 || next() > 0.3 { 1.0 } else { 0.0 }).collect();
            let adv: Vec<f64> = (0..rows).map(|_| 2.0 * next() - 1.0).collect();
            let t = |v: &Vec<f64>| Tensor::from_vec(v.clone(), (rows, cols), &Device::Cpu).unwrap();
            let (logp, old, reference, mask) = (t(&logp), t(&old), t(&reference), t(&mask));
            let adv = Tensor::from_vec(adv, rows, &Device::Cpu).unwrap();
            let split = 1 + ((rows - 1) as f64 * split_frac) as usize;
            let split = split.min(rows - 1);
            for loss_type in [LossType::Grpo, LossType::DrGrpo, LossType::Dapo] {
                let config = ObjectiveConfig { loss_type, importance_sampling_level: level, beta: 0.1, ..ObjectiveConfig::default() };
                let input = |a: usize, n: usize| LossInputs {
                    logp: &logp, old_logp: Some(&old), ref_logp: Some(&reference), advantages: &adv, mask: &mask,
                }.narrowed(a, n);
                let whole = policy_loss(&input(0, rows).as_inputs(), &config, &BatchNorm::single(&mask, cols).unwrap()).unwrap();
                let norm = BatchNorm { micro_batches: 2, ..BatchNorm::single(&mask, cols).unwrap() };
                let a = policy_loss(&input(0, split).as_inputs(), &config, &norm).unwrap();
                let b = policy_loss(&input(split, rows - split).as_inputs(), &config, &norm).unwrap();
                let total = scalar(&whole.loss);
                proptest::prop_assert!(total.is_finite());
                proptest::prop_assert!((scalar(&a.loss) + scalar(&b.loss) - total).abs() < 1e-9 * (1.0 + total.abs()));
                proptest::prop_assert!(whole.stats.kl_mean() >= 0.0);
                for f in [whole.stats.clip_low_mean(), whole.stats.clip_high_mean(), whole.stats.clip_region_mean()] {
                    proptest::prop_assert!((0.0..=1.0).contains(&f));
                }
            }
        }
    }

    /// Owned narrowed inputs for the property test.
    struct Narrowed {
        logp: Tensor,
        old: Tensor,
        reference: Tensor,
        adv: Tensor,
        mask: Tensor,
    }

    impl Narrowed {
        fn as_inputs(&self) -> LossInputs<'_> {
            LossInputs {
                logp: &self.logp,
                old_logp: Some(&self.old),
                ref_logp: Some(&self.reference),
                advantages: &self.adv,
                mask: &self.mask,
            }
        }
    }

    impl LossInputs<'_> {
        fn narrowed(&self, start: usize, len: usize) -> Narrowed {
            let n = |t: &Tensor| t.narrow(0, start, len).unwrap();
            Narrowed {
                logp: n(self.logp),
                old: n(self.old_logp.unwrap()),
                reference: n(self.ref_logp.unwrap()),
                adv: n(self.advantages),
                mask: n(self.mask),
            }
        }
    }
}
