//! Choosing the next token from a row of logits: greedy, or sampling with temperature, top-k
//! and top-p (nucleus), with per-request seeded random numbers.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How one request samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches
    /// `top_p` (`1` disables).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (`0` disables).
    pub top_k: usize,
    /// Most new tokens to generate.
    pub max_new_tokens: usize,
    /// Token ids that end the completion (kept as its last token), besides the model's eos ids
    /// given to the generator.
    pub stop_token_ids: Vec<u32>,
    /// Strings that end the completion; the text is cut before the match.
    pub stop_strings: Vec<String>,
    /// Seed of this request's random numbers (`None`: from the operating system).
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of at most `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self { temperature: 0.0, max_new_tokens, ..Self::default() }
    }

    pub(crate) fn check(&self, request: usize) -> Result<()> {
        let bad = |m: String| Err(Error::arg("sampling", format!("request {request}: {m}")));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("empty stop string".into());
        }
        Ok(())
    }
}

/// The chosen token and its log-probability under the temperature-scaled distribution
/// (before top-k/top-p truncation: the quantity a trainer recomputes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Choice {
    pub(crate) token: u32,
    pub(crate) logprob: f32,
}

/// Picks the next token from `logits` (modified in place). `None` when a logit is NaN or
/// infinite (a broken model): there is no distribution to sample from.
pub(crate) fn choose<R: Rng>(logits: &mut [f32], params: &SamplingParams, rng: &mut R) -> Option<Choice> {
    let greedy = params.temperature == 0.0;
    if !greedy && params.temperature != 1.0 {
        let inv = (1.0 / params.temperature) as f32;
        logits.iter_mut().for_each(|l| *l *= inv);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Probabilities (unnormalised), their sum, and log-sum-exp.
    let mut sum = 0f64;
    for l in logits.iter_mut() {
        let e = (*l - max).exp();
        sum += f64::from(e);
        *l = e;
    }
    // A NaN logit makes its exp NaN; an infinite one makes `l - max` NaN: either way the sum is
    // not finite (it is at least 1 otherwise).
    if !sum.is_finite() {
        return None;
    }
    let probs = logits;
    let lse = max + (sum.ln() as f32);
    let logprob_of = |p: f32| (p.ln() + max) - lse;
    if greedy {
        let (token, &p) = probs
            .iter()
            .enumerate()
            .fold((0, &f32::NEG_INFINITY), |acc, x| if x.1 > acc.1 { x } else { acc });
        return Some(Choice { token: token as u32, logprob: logprob_of(p) });
    }
    let token = if params.top_k == 0 && params.top_p >= 1.0 {
        sample_all(probs, sum, rng)
    } else {
        sample_truncated(probs, sum, params.top_k, params.top_p, rng)
    };
    Some(Choice { token, logprob: logprob_of(probs[token as usize]) })
}

/// Samples from unnormalised probabilities summing to `sum`.
fn sample_all<R: Rng>(probs: &[f32], sum: f64, rng: &mut R) -> u32 {
    let mut u = rng.random::<f64>() * sum;
    for (i, &p) in probs.iter().enumerate() {
        u -= f64::from(p);
        if u < 0.0 {
            return i as u32;
        }
    }
    // Rounding: the last token with non-zero probability.
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32
}

/// Samples among the `top_k` most likely tokens, then the smallest prefix of them (by
/// decreasing probability) whose mass reaches `top_p` of the total.
fn sample_truncated<R: Rng>(probs: &[f32], sum: f64, top_k: usize, top_p: f64, rng: &mut R) -> u32 {
    let k = if top_k == 0 { probs.len() } else { top_k.min(probs.len()) };
    let mut idx: Vec<u32> = (0..probs.len() as u32).collect();
    let by_prob = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
    // Partial selection first: most of the mass usually sits in a few candidates.
    let mut sorted = 0;
    for cand in [64usize, 1024, usize::MAX] {
        let c = cand.min(k);
        if c < idx.len() {
            idx.select_nth_unstable_by(c, by_prob);
        }
        idx[..c].sort_unstable_by(by_prob);
        sorted = c;
        let mass: f64 = idx[..c].iter().map(|&i| f64::from(probs[i as usize])).sum();
        if c == k || mass >= top_p * sum {
            break;
        }
    }
    let mut keep = 0;
    let mut mass = 0f64;
    for &i in &idx[..sorted] {
        mass += f64::from(probs[i as usize]);
        keep += 1;
        if mass >= top_p * sum {
            break;
        }
    }
    let kept = &idx[..keep.max(1)];
    let total: f64 = kept.iter().map(|&i| f64::from(probs[i as usize])).sum();
    let mut u = rng.random::<f64>() * total;
    for &i in kept {
        u -= f64::from(probs[i as usize]);
        if u < 0.0 {
            return i;
        }
    }
    kept[kept.len() - 1]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn log_softmax(x: &[f32]) -> Vec<f32> {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        x.iter().map(|v| v - lse).collect()
    }

    #[test]
    fn greedy_picks_the_argmax_with_its_logprob() {
        let logits = vec![0.5f32, 3.0, -1.0, 2.9];
        let mut l = logits.clone();
        let c = choose(&mut l, &SamplingParams::greedy(1), &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(c.token, 1);
        assert!((c.logprob - log_softmax(&logits)[1]).abs() < 1e-6);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let logits: Vec<f32> = vec![1.0, 4.0, 2.0, 3.9, 0.0];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let p = SamplingParams { top_k: 1, ..SamplingParams::default() };
            assert_eq!(choose(&mut logits.clone(), &p, &mut rng).unwrap().token, 1);
            // Tokens 1 and 3 carry ~0.86 of the mass: top_p 0.8 samples only them.
            let p = SamplingParams { top_p: 0.8, ..SamplingParams::default() };
            let t = choose(&mut logits.clone(), &p, &mut rng).unwrap().token;
            assert!(t == 1 || t == 3, "{t}");
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_tempered_distribution() {
        let logits = vec![0.0f32, 1.0, 2.0];
        let params = SamplingParams { temperature: 2.0, ..SamplingParams::default() };
        let mut rng = StdRng::seed_from_u64(42);
        let mut counts = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            counts[choose(&mut logits.clone(), &params, &mut rng).unwrap().token as usize] += 1;
        }
        let want: Vec<f32> = log_softmax(&[0.0, 0.5, 1.0]).iter().map(|l| l.exp()).collect();
        for i in 0..3 {
            let got = counts[i] as f32 / n as f32;
            assert!((got - want[i]).abs() < 0.015, "{i}: {got} vs {}", want[i]);
        }
    }

    #[test]
    fn same_seed_same_choices() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = SamplingParams { top_p: 0.9, top_k: 50, ..SamplingParams::default() };
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20).map(|_| choose(&mut logits.clone(), &p, &mut rng).unwrap().token).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn nan_or_infinite_logits_have_no_choice() {
        let mut rng = StdRng::seed_from_u64(0);
        for bad in [f32::NAN, f32::INFINITY] {
            for params in [SamplingParams::greedy(1), SamplingParams::default()] {
                assert!(choose(&mut [0.0, bad, 1.0], &params, &mut rng).is_none(), "{bad}");
            }
        }
        let all_masked = vec![f32::NEG_INFINITY; 3];
        assert!(choose(&mut all_masked.clone(), &SamplingParams::default(), &mut rng).is_none());
        // One masked token is fine.
        let c = choose(&mut [f32::NEG_INFINITY, 0.0], &SamplingParams::default(), &mut rng);
        assert_eq!(c.unwrap().token, 1);
    }

    proptest! {
        #[test]
        fn chosen_tokens_respect_top_k_and_report_tempered_logprobs(
            logits in prop::collection::vec(-20f32..20., 2..300),
            top_k in 0usize..10,
            top_p in 0.05f64..=1.0,
            temperature in 0.1f64..3.0,
            seed in any::<u64>(),
        ) {
            let params = SamplingParams { temperature, top_k, top_p, ..SamplingParams::default() };
            let mut l = logits.clone();
            let c = choose(&mut l, &params, &mut StdRng::seed_from_u64(seed)).unwrap();
            prop_assert!((c.token as usize) < logits.len());
            let scaled: Vec<f32> = logits.iter().map(|x| x / temperature as f32).collect();
            let want = log_softmax(&scaled)[c.token as usize];
            prop_assert!((c.logprob - want).abs() < 1e-3, "{} vs {}", c.logprob, want);
            if top_k > 0 {
                let better = logits.iter().filter(|&&x| x > logits[c.token as usize]).count();
                prop_assert!(better < top_k);
            }
        }
    }
}
