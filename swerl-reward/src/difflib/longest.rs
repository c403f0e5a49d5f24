//! `find_longest_match`: CPython's dynamic programme over rows of `a`, with flat arrays in place
//! of the `j2len` dictionaries.

use super::{ABSENT, Match, SequenceMatcher};

/// Reusable buffers for [`SequenceMatcher::longest_match`], sized for one `b`.
///
/// `prev[j + 1]` holds CPython's `j2len[j]` for the previous row of `a` (the length of the longest
/// junk-free match ending with `a[i - 1]` and `b[j]`); `cur` is the row being built. Only the
/// entries listed in `prev_touched`/`cur_touched` are non-zero, so clearing costs what was set.
pub(super) struct Scratch {
    prev: Vec<u32>,
    cur: Vec<u32>,
    prev_touched: Vec<u32>,
    cur_touched: Vec<u32>,
}

impl Scratch {
    pub(super) fn new(len_b: usize) -> Self {
        Scratch {
            prev: vec![0; len_b + 1],
            cur: vec![0; len_b + 1],
            prev_touched: Vec::new(),
            cur_touched: Vec::new(),
        }
    }

    /// Makes the current row the previous one and empties the new current row.
    fn advance(&mut self) {
        for &idx in &self.prev_touched {
            self.prev[idx as usize] = 0;
        }
        self.prev_touched.clear();
        std::mem::swap(&mut self.prev, &mut self.cur);
        std::mem::swap(&mut self.prev_touched, &mut self.cur_touched);
    }

    /// Zeroes everything, ready for the next search.
    fn reset(&mut self) {
        self.advance();
        self.advance();
    }
}

impl SequenceMatcher {
    pub(super) fn longest_match(
        &self,
        scratch: &mut Scratch,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> Match {
        let (a, b) = (&self.a, &self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0usize);
        let (blo32, bhi32) = (blo as u32, bhi as u32);
        for (i, &id) in a.iter().enumerate().take(ahi).skip(alo) {
            let positions = self.b2j(id);
            let start = positions.partition_point(|&j| j < blo32);
            for &j in &positions[start..] {
                if j >= bhi32 {
                    break;
                }
                let k = scratch.prev[j as usize] + 1;
                scratch.cur[j as usize + 1] = k;
                scratch.cur_touched.push(j + 1);
                if k as usize > bestsize {
                    besti = i + 1 - k as usize;
                    bestj = j as usize + 1 - k as usize;
                    bestsize = k as usize;
                }
            }
            scratch.advance();
        }
        scratch.reset();

        // Extend the best by non-junk elements on each end (popular elements are not junk).
        let is_junk = |j: usize| self.junk[b[j] as usize];
        let same = |i: usize, j: usize| a[i] != ABSENT && a[i] == b[j];
        while besti > alo && bestj > blo && !is_junk(bestj - 1) && same(besti - 1, bestj - 1) {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && !is_junk(bestj + bestsize)
            && same(besti + bestsize, bestj + bestsize)
        {
            bestsize += 1;
        }
        // Then suck up matching junk on each side.
        while besti > alo && bestj > blo && is_junk(bestj - 1) && same(besti - 1, bestj - 1) {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && is_junk(bestj + bestsize)
            && same(besti + bestsize, bestj + bestsize)
        {
            bestsize += 1;
        }
        Match { a: besti, b: bestj, size: bestsize }
    }
}
