//! A port of the parts of CPython's `difflib` the reward depends on.
//!
//! [`SequenceMatcher`] is Ratcliff-Obershelp "gestalt pattern matching" exactly as CPython 3.11
//! implements it: the same junk and autojunk ("popular element") rules, the same
//! `find_longest_match` tie-breaking (longest block, then smallest `i`, then smallest `j`, then
//! the junk extensions), hence the same matching blocks, opcodes, grouped opcodes and ratio. The
//! `similar` crate implements other algorithms (Myers, Patience) and gives other numbers; use this
//! module wherever a result must equal Python's.
//!
//! [`unified_diff`] is `difflib.unified_diff`.
//!
//! ```
//! use swerl_reward::difflib::SequenceMatcher;
//!
//! let a: Vec<char> = "abxcd".chars().collect();
//! let b: Vec<char> = "abcd".chars().collect();
//! let m = SequenceMatcher::new(&a, &b);
//! assert_eq!(m.ratio(), 2.0 * 4.0 / 9.0);
//! ```

mod longest;
mod unified;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

pub(crate) use unified::diff_lines;
pub use unified::{UnifiedDiffOptions, format_range_unified, unified_diff};

use longest::Scratch;

/// A matching block: `a[a..a + size] == b[b..b + size]` (Python's `Match(a, b, size)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Match {
    /// Start in the first sequence.
    pub a: usize,
    /// Start in the second sequence.
    pub b: usize,
    /// Length of the block.
    pub size: usize,
}

/// The kind of an [`Opcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    /// `a[i1..i2]` should be replaced by `b[j1..j2]`.
    Replace,
    /// `a[i1..i2]` should be deleted (`j1 == j2`).
    Delete,
    /// `b[j1..j2]` should be inserted at `a[i1..i1]` (`i1 == i2`).
    Insert,
    /// `a[i1..i2] == b[j1..j2]`.
    Equal,
}

impl Tag {
    /// Python's spelling: `"replace"`, `"delete"`, `"insert"` or `"equal"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Replace => "replace",
            Tag::Delete => "delete",
            Tag::Insert => "insert",
            Tag::Equal => "equal",
        }
    }
}

/// One edit operation turning `a` into `b` (Python's 5-tuple `(tag, i1, i2, j1, j2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Opcode {
    /// What to do.
    pub tag: Tag,
    /// Start in `a`.
    pub i1: usize,
    /// End in `a` (exclusive).
    pub i2: usize,
    /// Start in `b`.
    pub j1: usize,
    /// End in `b` (exclusive).
    pub j2: usize,
}

/// Ids of elements of `a` that never occur in `b`.
const ABSENT: u32 = u32::MAX;

/// Compares two sequences of hashable elements the way CPython's `difflib.SequenceMatcher` does.
///
/// Elements are interned once at construction, so every later query works on integer ids.
/// Construction is `O(len(a) + len(b))`; queries follow CPython's algorithm (worst case quadratic
/// in the number of equal-element pairs), with flat arrays in place of dictionaries.
#[derive(Debug, Clone)]
pub struct SequenceMatcher {
    /// Id of each element of `a`, or [`ABSENT`] when the element does not occur in `b`.
    a: Vec<u32>,
    /// Id of each element of `b`.
    b: Vec<u32>,
    /// `b2j` in compressed form: the positions of id `x` in `b` are
    /// `b2j_pos[b2j_start[x]..b2j_start[x + 1]]`, ascending. Junk and popular ids have none.
    b2j_start: Vec<u32>,
    b2j_pos: Vec<u32>,
    /// Whether each id is junk (`isjunk(elt)` was true).
    junk: Vec<bool>,
    /// Whether each id is popular (autojunk).
    popular: Vec<bool>,
}

impl SequenceMatcher {
    /// `SequenceMatcher(None, a, b)`: no junk, `autojunk=True` (Python's defaults).
    pub fn new<T: Hash + Eq>(a: &[T], b: &[T]) -> Self {
        Self::with_junk(a, b, true, |_| false)
    }

    /// `SequenceMatcher(None, a, b, autojunk=autojunk)`.
    pub fn with_autojunk<T: Hash + Eq>(a: &[T], b: &[T], autojunk: bool) -> Self {
        Self::with_junk(a, b, autojunk, |_| false)
    }

    /// `SequenceMatcher(isjunk, a, b, autojunk)`: `isjunk` marks elements of `b` as junk.
    ///
    /// When `autojunk` is true and `b` has at least 200 elements, elements occurring more than
    /// `len(b) // 100 + 1` times are "popular" and treated like junk while searching for
    /// matches (but, as in CPython, not by the junk-extension step).
    pub fn with_junk<T: Hash + Eq>(a: &[T], b: &[T], autojunk: bool, isjunk: impl Fn(&T) -> bool) -> Self {
        let mut ids: HashMap<&T, u32, BuildHasherDefault<FxHasher>> =
            HashMap::with_capacity_and_hasher(b.len().min(1 << 16), Default::default());
        let mut b_ids = Vec::with_capacity(b.len());
        let mut counts: Vec<u32> = Vec::new();
        for elt in b {
            let next = ids.len() as u32;
            let id = *ids.entry(elt).or_insert(next);
            if id == next {
                counts.push(0);
            }
            counts[id as usize] += 1;
            b_ids.push(id);
        }
        let nids = counts.len();
        let mut junk = vec![false; nids];
        for (elt, &id) in &ids {
            junk[id as usize] = isjunk(elt);
        }
        let mut popular = vec![false; nids];
        let n = b.len();
        if autojunk && n >= 200 {
            let ntest = n / 100 + 1;
            for (id, &count) in counts.iter().enumerate() {
                popular[id] = !junk[id] && count as usize > ntest;
            }
        }
        // Compressed b2j: junk and popular elements are left out, as CPython deletes them.
        let mut b2j_start = Vec::with_capacity(nids + 1);
        let mut total = 0u32;
        for (id, &count) in counts.iter().enumerate() {
            b2j_start.push(total);
            if !junk[id] && !popular[id] {
                total += count;
            }
        }
        b2j_start.push(total);
        let mut fill = b2j_start.clone();
        let mut b2j_pos = vec![0u32; total as usize];
        for (j, &id) in b_ids.iter().enumerate() {
            let id = id as usize;
            if !junk[id] && !popular[id] {
                b2j_pos[fill[id] as usize] = j as u32;
                fill[id] += 1;
            }
        }
        let a_ids = a.iter().map(|elt| ids.get(elt).copied().unwrap_or(ABSENT)).collect();
        SequenceMatcher { a: a_ids, b: b_ids, b2j_start, b2j_pos, junk, popular }
    }

    /// Length of the first sequence.
    pub fn len_a(&self) -> usize {
        self.a.len()
    }

    /// Length of the second sequence.
    pub fn len_b(&self) -> usize {
        self.b.len()
    }

    /// Whether `b[j]` is junk (Python's `b[j] in self.bjunk`).
    pub fn is_b_junk(&self, j: usize) -> bool {
        self.junk[self.b[j] as usize]
    }

    /// Whether `b[j]` is popular (Python's `b[j] in self.bpopular`).
    pub fn is_b_popular(&self, j: usize) -> bool {
        self.popular[self.b[j] as usize]
    }

    /// Positions in `b` of the element with id `id`, ascending (empty for junk and popular ids).
    fn b2j(&self, id: u32) -> &[u32] {
        if id == ABSENT {
            return &[];
        }
        let id = id as usize;
        &self.b2j_pos[self.b2j_start[id] as usize..self.b2j_start[id + 1] as usize]
    }

    /// Longest matching block in `a[alo..ahi]` and `b[blo..bhi]` (Python's
    /// `find_longest_match(alo, ahi, blo, bhi)`).
    ///
    /// # Panics
    /// When a range is reversed or out of bounds.
    pub fn find_longest_match(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> Match {
        assert!(alo <= ahi && ahi <= self.a.len(), "a range {alo}..{ahi} out of bounds");
        assert!(blo <= bhi && bhi <= self.b.len(), "b range {blo}..{bhi} out of bounds");
        let mut scratch = Scratch::new(self.b.len());
        self.longest_match(&mut scratch, alo, ahi, blo, bhi)
    }

    /// Matching blocks, sorted and with adjacent blocks merged, ending with the sentinel
    /// `Match { a: len(a), b: len(b), size: 0 }` (Python's `get_matching_blocks()`).
    pub fn matching_blocks(&self) -> Vec<Match> {
        let (la, lb) = (self.a.len(), self.b.len());
        let mut scratch = Scratch::new(lb);
        let mut queue = vec![(0, la, 0, lb)];
        let mut blocks = Vec::new();
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let m = self.longest_match(&mut scratch, alo, ahi, blo, bhi);
            if m.size > 0 {
                blocks.push(m);
                if alo < m.a && blo < m.b {
                    queue.push((alo, m.a, blo, m.b));
                }
                if m.a + m.size < ahi && m.b + m.size < bhi {
                    queue.push((m.a + m.size, ahi, m.b + m.size, bhi));
                }
            }
        }
        blocks.sort_unstable();
        let mut merged: Vec<Match> = Vec::with_capacity(blocks.len() + 1);
        let mut cur = Match { a: 0, b: 0, size: 0 };
        for m in blocks {
            if cur.a + cur.size == m.a && cur.b + cur.size == m.b {
                cur.size += m.size;
            } else {
                if cur.size > 0 {
                    merged.push(cur);
                }
                cur = m;
            }
        }
        if cur.size > 0 {
            merged.push(cur);
        }
        merged.push(Match { a: la, b: lb, size: 0 });
        merged
    }

    /// Opcodes turning `a` into `b` (Python's `get_opcodes()`).
    pub fn opcodes(&self) -> Vec<Opcode> {
        opcodes_from_blocks(&self.matching_blocks())
    }

    /// Opcodes grouped into hunks with up to `n` lines of context (Python's
    /// `get_grouped_opcodes(n)`).
    pub fn grouped_opcodes(&self, n: usize) -> Vec<Vec<Opcode>> {
        group_opcodes(self.opcodes(), n)
    }

    /// `2 * M / (len(a) + len(b))` where `M` is the number of matched elements; 1.0 when both
    /// sequences are empty (Python's `ratio()`).
    pub fn ratio(&self) -> f64 {
        let matches: usize = self.matching_blocks().iter().map(|m| m.size).sum();
        calculate_ratio(matches, self.a.len() + self.b.len())
    }

    /// An upper bound on [`ratio`](Self::ratio) from element counts (Python's `quick_ratio()`).
    pub fn quick_ratio(&self) -> f64 {
        let mut avail: Vec<i64> = vec![0; self.junk.len()];
        for &id in &self.b {
            avail[id as usize] += 1;
        }
        let mut matches = 0;
        for &id in &self.a {
            if id != ABSENT {
                let slot = &mut avail[id as usize];
                if *slot > 0 {
                    matches += 1;
                }
                *slot -= 1;
            }
        }
        calculate_ratio(matches, self.a.len() + self.b.len())
    }

    /// An upper bound on [`ratio`](Self::ratio) from lengths (Python's `real_quick_ratio()`).
    pub fn real_quick_ratio(&self) -> f64 {
        let (la, lb) = (self.a.len(), self.b.len());
        calculate_ratio(la.min(lb), la + lb)
    }
}

/// Python's `difflib._calculate_ratio`.
fn calculate_ratio(matches: usize, length: usize) -> f64 {
    if length == 0 { 1.0 } else { 2.0 * matches as f64 / length as f64 }
}

/// `SequenceMatcher(None, a, b, autojunk=False).ratio()` over the code points of two strings:
/// the similarity the reward uses.
pub fn char_ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    SequenceMatcher::with_autojunk(&a, &b, false).ratio()
}

/// Python's `get_opcodes` over precomputed matching blocks.
pub(crate) fn opcodes_from_blocks(blocks: &[Match]) -> Vec<Opcode> {
    let (mut i, mut j) = (0, 0);
    let mut answer = Vec::with_capacity(blocks.len() * 2);
    for m in blocks {
        let tag = if i < m.a && j < m.b {
            Some(Tag::Replace)
        } else if i < m.a {
            Some(Tag::Delete)
        } else if j < m.b {
            Some(Tag::Insert)
        } else {
            None
        };
        if let Some(tag) = tag {
            answer.push(Opcode { tag, i1: i, i2: m.a, j1: j, j2: m.b });
        }
        i = m.a + m.size;
        j = m.b + m.size;
        if m.size > 0 {
            answer.push(Opcode { tag: Tag::Equal, i1: m.a, i2: i, j1: m.b, j2: j });
        }
    }
    answer
}

/// Python's `get_grouped_opcodes(n)` over precomputed opcodes.
pub(crate) fn group_opcodes(mut codes: Vec<Opcode>, n: usize) -> Vec<Vec<Opcode>> {
    if codes.is_empty() {
        codes.push(Opcode { tag: Tag::Equal, i1: 0, i2: 1, j1: 0, j2: 1 });
    }
    if let Some(first) = codes.first_mut().filter(|c| c.tag == Tag::Equal) {
        first.i1 = first.i1.max(first.i2.saturating_sub(n));
        first.j1 = first.j1.max(first.j2.saturating_sub(n));
    }
    if let Some(last) = codes.last_mut().filter(|c| c.tag == Tag::Equal) {
        last.i2 = last.i2.min(last.i1 + n);
        last.j2 = last.j2.min(last.j1 + n);
    }
    let nn = n + n;
    let mut groups = Vec::new();
    let mut group = Vec::new();
    for mut code in codes {
        if code.tag == Tag::Equal && code.i2 - code.i1 > nn {
            group.push(Opcode {
                tag: Tag::Equal,
                i1: code.i1,
                i2: code.i2.min(code.i1 + n),
                j1: code.j1,
                j2: code.j2.min(code.j1 + n),
            });
            groups.push(std::mem::take(&mut group));
            code.i1 = code.i1.max(code.i2.saturating_sub(n));
            code.j1 = code.j1.max(code.j2.saturating_sub(n));
        }
        group.push(code);
    }
    if !group.is_empty() && !(group.len() == 1 && group[0].tag == Tag::Equal) {
        groups.push(group);
    }
    groups
}

/// The Fx hash (rustc's): fast for the short keys interned here; not DoS-resistant, which does
/// not matter for one comparison's private table.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunk of 8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn python_docstring_examples() {
        // From difflib's own docstrings (CPython 3.11).
        let s = SequenceMatcher::new(&chars(" abcd"), &chars("abcd abcd"));
        assert_eq!(s.find_longest_match(0, 5, 0, 9), Match { a: 0, b: 4, size: 5 });
        let s = SequenceMatcher::new(&chars("abxcd"), &chars("abcd"));
        assert_eq!(
            s.matching_blocks(),
            [Match { a: 0, b: 0, size: 2 }, Match { a: 3, b: 2, size: 2 }, Match { a: 5, b: 4, size: 0 }]
        );
        let s = SequenceMatcher::new(&chars("qabxcd"), &chars("abycdf"));
        let ops: Vec<_> = s.opcodes().iter().map(|o| (o.tag.as_str(), o.i1, o.i2, o.j1, o.j2)).collect();
        assert_eq!(
            ops,
            [
                ("delete", 0, 1, 0, 0),
                ("equal", 1, 3, 0, 2),
                ("replace", 3, 4, 2, 3),
                ("equal", 4, 6, 3, 5),
                ("insert", 6, 6, 5, 6)
            ]
        );
        let s = SequenceMatcher::new(&chars("abcd"), &chars("bcde"));
        assert_eq!(s.ratio(), 0.75);
        assert_eq!(s.quick_ratio(), 0.75);
        assert_eq!(s.real_quick_ratio(), 1.0);
    }

    #[test]
    fn junk_extension_matches_python() {
        // SequenceMatcher(lambda x: x == " ", " abcd", "abcd abcd").find_longest_match(0, 5, 0, 9)
        // == Match(a=1, b=0, size=4)
        let s = SequenceMatcher::with_junk(&chars(" abcd"), &chars("abcd abcd"), true, |c| *c == ' ');
        assert_eq!(s.find_longest_match(0, 5, 0, 9), Match { a: 1, b: 0, size: 4 });
    }

    #[test]
    fn empty_sequences() {
        let s = SequenceMatcher::new::<char>(&[], &[]);
        assert_eq!(s.ratio(), 1.0);
        assert_eq!(s.matching_blocks(), [Match { a: 0, b: 0, size: 0 }]);
        assert!(s.opcodes().is_empty());
        assert!(s.grouped_opcodes(3).is_empty());
    }

    #[test]
    fn autojunk_marks_popular_elements() {
        // 200 elements, "x" occurs 3 times > 200 // 100 + 1 == 3? no: 3 is not > 3.
        let mut b: Vec<&str> = (0..197).map(|_| "y").collect();
        b.extend(["x", "x", "x"]);
        let s = SequenceMatcher::new(&["x"], &b);
        assert!(s.is_b_popular(0), "y occurs 197 times");
        assert!(!s.is_b_popular(197), "x occurs 3 times, not more than 3");
        let s = SequenceMatcher::with_autojunk(&["x"], &b, false);
        assert!(!s.is_b_popular(0));
    }
}
