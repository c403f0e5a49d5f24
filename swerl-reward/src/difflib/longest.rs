//! `find_longest_match`: the longest junk-free matching block of two ranges, then CPython's junk
//! extensions.
//!
//! Three exact algorithms find the junk-free block:
//! - CPython's dynamic programme over the rows of `a` (`j2len`), here on flat arrays. Its cost is
//!   the number of equal-element pairs in the two ranges, which is quadratic for long, repetitive
//!   texts (a 2 MB hunk against another is ~10^11 steps in CPython).
//! - The same programme over every cell of a small rectangle, without the index lookups: the
//!   fastest for the many small ranges of the recursion.
//! - A suffix automaton of the `b` range, scanned with the `a` range: linear in the two lengths.
//!
//! All return the longest block, the one ending (hence starting) first in `a`, and among those
//! the first in `b`, which is CPython's tie-breaking; the automaton is used where the estimated
//! pair count makes it cheaper, and never when `b` has junk or popular elements.

use super::sam::SuffixAutomaton;
use super::{Match, SequenceMatcher};

/// Use the automaton when the estimated pair count exceeds this many times the ranges' length.
const AUTOMATON_FACTOR: f64 = 4.0;
/// Ranges shorter than this never use the automaton.
const AUTOMATON_MIN_LEN: usize = 64;
/// Rectangles of at most this many cells use the dense programme.
const DENSE_MAX_CELLS: usize = 1024;

/// Which algorithm finds the junk-free block (`Auto` outside tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Auto,
    #[cfg_attr(not(test), allow(dead_code))]
    DynamicProgramme,
    #[cfg_attr(not(test), allow(dead_code))]
    Dense,
    #[cfg_attr(not(test), allow(dead_code))]
    Automaton,
}

/// Reusable buffers, sized for one `b`.
///
/// `rows[j + 1]` packs, for CPython's `j2len[j]`, the row of `a` that wrote it (high 32 bits)
/// and the length (low 32 bits): an entry written by an older row reads as 0, so rows never need
/// clearing. Two arrays alternate as previous and current row.
pub(super) struct Scratch {
    rows: [Vec<u64>; 2],
    automaton: SuffixAutomaton,
    /// The dense programme's copy of the `b` range (unsearchable elements replaced) and rows.
    dense_b: Vec<u32>,
    dense_rows: [Vec<u32>; 2],
}

impl Scratch {
    pub(super) fn new(len_b: usize) -> Self {
        Scratch {
            rows: [vec![0; len_b + 1], vec![0; len_b + 1]],
            automaton: SuffixAutomaton::default(),
            dense_b: Vec::new(),
            dense_rows: [Vec::new(), Vec::new()],
        }
    }
}

/// Stands for junk and popular elements in the dense programme's copy of `b`: equal to no id.
const UNSEARCHABLE: u32 = u32::MAX - 1;

impl SequenceMatcher {
    /// The longest match in the two ranges; adds the work done (see [`Self::work_estimate`]) to
    /// `work`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn longest_match(
        &self,
        scratch: &mut Scratch,
        algorithm: Algorithm,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
        work: &mut u64,
    ) -> Match {
        let (la, lb) = (ahi - alo, bhi - blo);
        let algorithm = match algorithm {
            Algorithm::Auto if la * lb <= DENSE_MAX_CELLS => Algorithm::Dense,
            Algorithm::Auto
                if self.automaton_allowed
                    && la >= AUTOMATON_MIN_LEN
                    && lb >= AUTOMATON_MIN_LEN
                    && la as f64 * lb as f64 * self.collision > AUTOMATON_FACTOR * (la + lb) as f64 =>
            {
                Algorithm::Automaton
            }
            Algorithm::Auto => Algorithm::DynamicProgramme,
            Algorithm::Automaton if !self.automaton_allowed => Algorithm::DynamicProgramme,
            other => other,
        };
        *work += self.work_estimate(algorithm, la, lb);
        let (besti, bestj, bestsize) = match algorithm {
            Algorithm::Automaton => {
                scratch.automaton.build(&self.b[blo..bhi], blo);
                scratch.automaton.longest_common(&self.a[alo..ahi], alo, blo)
            }
            Algorithm::Dense => self.junk_free_dense(scratch, alo, ahi, blo, bhi),
            _ => self.junk_free_dp(&mut scratch.rows, alo, ahi, blo, bhi),
        };
        self.extend(Match { a: besti, b: bestj, size: bestsize }, alo, ahi, blo, bhi)
    }

    /// CPython's `j2len` loop.
    fn junk_free_dp(
        &self,
        rows: &mut [Vec<u64>; 2],
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0usize);
        let (blo32, bhi32) = (blo as u32, bhi as u32);
        // Row stamps start at 1 so that the zeroed arrays read as "written by no row"; they are
        // unique within this call, and older calls' entries are cleared below.
        for (row, i) in (alo..ahi).enumerate() {
            let stamp = row as u64 + 1;
            let (prev, cur) = if row % 2 == 0 {
                let [p, c] = rows;
                (&*p, c)
            } else {
                let [c, p] = rows;
                (&*p, c)
            };
            let positions = self.b2j(self.a[i]);
            let start = positions.partition_point(|&j| j < blo32);
            for &j in &positions[start..] {
                if j >= bhi32 {
                    break;
                }
                let left = prev[j as usize];
                let k = if left >> 32 == stamp - 1 && stamp > 1 { (left as u32) + 1 } else { 1 };
                cur[j as usize + 1] = (stamp << 32) | u64::from(k);
                if k as usize > bestsize {
                    besti = i + 1 - k as usize;
                    bestj = j as usize + 1 - k as usize;
                    bestsize = k as usize;
                }
            }
        }
        // The next call restarts the stamps: clear what this one wrote.
        if ahi > alo {
            for row in rows.iter_mut() {
                row[blo..=bhi].fill(0);
            }
        }
        (besti, bestj, bestsize)
    }

    /// Work of one search, in units of roughly one nanosecond here: cells for the dense
    /// programme, equal pairs (estimated) plus rows for the sparse one, and a few units per
    /// element for the automaton.
    fn work_estimate(&self, algorithm: Algorithm, la: usize, lb: usize) -> u64 {
        let (la, lb) = (la as f64, lb as f64);
        let units = match algorithm {
            Algorithm::Dense => la * lb / 2.0,
            Algorithm::Automaton => 30.0 * (la + lb),
            _ => 0.5 * la * lb * self.collision + 4.0 * la + lb / 8.0,
        };
        units as u64 + 1
    }

    /// CPython's loop over every cell of the rectangle, for small rectangles.
    fn junk_free_dense(
        &self,
        scratch: &mut Scratch,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let b = &mut scratch.dense_b;
        b.clear();
        b.extend(self.b[blo..bhi].iter().map(|&id| if self.searchable(id) { id } else { UNSEARCHABLE }));
        let [prev, cur] = &mut scratch.dense_rows;
        prev.clear();
        prev.resize(b.len() + 1, 0);
        cur.clear();
        cur.resize(b.len() + 1, 0);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0u32);
        for (i, &x) in self.a[alo..ahi].iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                let k = if x == y { prev[j] + 1 } else { 0 };
                cur[j + 1] = k;
                if k > bestsize {
                    besti = alo + i + 1 - k as usize;
                    bestj = blo + j + 1 - k as usize;
                    bestsize = k;
                }
            }
            std::mem::swap(prev, cur);
        }
        (besti, bestj, bestsize as usize)
    }

    /// Extends a junk-free block by non-junk (popular) elements, then by junk, as CPython does.
    fn extend(&self, m: Match, alo: usize, ahi: usize, blo: usize, bhi: usize) -> Match {
        let Match { a: mut besti, b: mut bestj, size: mut bestsize } = m;
        let (a, b) = (&self.a, &self.b);
        let is_junk = |j: usize| self.junk[b[j] as usize];
        let same = |i: usize, j: usize| a[i] == b[j];
        for junk_pass in [false, true] {
            while besti > alo && bestj > blo && is_junk(bestj - 1) == junk_pass && same(besti - 1, bestj - 1)
            {
                besti -= 1;
                bestj -= 1;
                bestsize += 1;
            }
            while besti + bestsize < ahi
                && bestj + bestsize < bhi
                && is_junk(bestj + bestsize) == junk_pass
                && same(besti + bestsize, bestj + bestsize)
            {
                bestsize += 1;
            }
        }
        Match { a: besti, b: bestj, size: bestsize }
    }
}
