//! Deterministic data order and seeds: a run is a pure function of its seed, so resuming from a
//! checkpoint (which stores only a position) replays exactly what an uninterrupted run would do.

use serde::{Deserialize, Serialize};

/// SplitMix64's finaliser: a bijective 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from a base seed and a path of indices (step, prompt, sample, ...).
pub fn derive_seed(seed: u64, path: &[u64]) -> u64 {
    path.iter().fold(mix64(seed), |acc, &x| mix64(acc ^ mix64(x)))
}

/// SplitMix64 generator (tiny state, reproducible everywhere).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the tiny bias is irrelevant here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Where the prompt sampler stands: what a checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SamplerState {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Prompts already drawn in the current epoch.
    pub offset: usize,
}

/// Draws prompt indices epoch by epoch, each epoch a seeded permutation (or file order).
#[derive(Debug, Clone)]
pub struct PromptSampler {
    len: usize,
    seed: u64,
    shuffle: bool,
    state: SamplerState,
    order: Vec<usize>,
}

impl PromptSampler {
    /// A sampler over `len` items at the start of epoch 0. `len` must be positive.
    pub fn new(len: usize, seed: u64, shuffle: bool) -> Self {
        assert!(len > 0, "a prompt sampler needs at least one item");
        let mut s = Self { len, seed, shuffle, state: SamplerState::default(), order: Vec::new() };
        s.order = s.permutation(0);
        s
    }

    /// Moves to a saved position.
    pub fn restore(&mut self, state: SamplerState) {
        self.state = SamplerState { epoch: state.epoch, offset: state.offset.min(self.len) };
        self.order = self.permutation(self.state.epoch);
    }

    /// The current position.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// The next `n` indices, crossing into the next epoch (re-shuffled) as needed.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.state.offset == self.len {
                self.state.epoch += 1;
                self.state.offset = 0;
                self.order = self.permutation(self.state.epoch);
            }
            out.push(self.order[self.state.offset]);
            self.state.offset += 1;
        }
        out
    }

    fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let mut rng = SplitMix64::new(derive_seed(self.seed, &[0x5348_5546, epoch]));
            for i in (1..self.len).rev() {
                let j = rng.below(i + 1);
                order.swap(i, j);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_differ() {
        let mut s = PromptSampler::new(10, 7, true);
        let a = s.next_batch(10);
        let b = s.next_batch(10);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(s.state(), SamplerState { epoch: 1, offset: 10 });
    }

    #[test]
    fn restoring_a_position_replays_the_same_stream() {
        let mut a = PromptSampler::new(7, 3, true);
        a.next_batch(5);
        let saved = a.state();
        let rest: Vec<usize> = a.next_batch(12);
        let mut b = PromptSampler::new(7, 3, true);
        b.restore(saved);
        assert_eq!(b.next_batch(12), rest);
    }

    #[test]
    fn no_shuffle_is_file_order() {
        let mut s = PromptSampler::new(3, 1, false);
        assert_eq!(s.next_batch(5), vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn derived_seeds_depend_on_every_index() {
        let a = derive_seed(1, &[2, 3]);
        assert_ne!(a, derive_seed(1, &[3, 2]));
        assert_ne!(a, derive_seed(2, &[2, 3]));
        assert_eq!(a, derive_seed(1, &[2, 3]));
    }
}
