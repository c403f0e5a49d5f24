//! A suffix automaton: the longest common substring of two id sequences in linear time, with
//! CPython's tie-breaking (first in `a`, then first in `b`).

const NIL: u32 = u32::MAX;
const ROOT: u32 = 0;

#[derive(Debug, Clone, Copy)]
struct Edge {
    symbol: u32,
    to: u32,
    next: u32,
}

/// The automaton of one sequence `b`, rebuilt in place for each query (buffers are reused).
///
/// Transitions of the root live in a dense table indexed by symbol (the root has an edge for
/// every distinct symbol, and every mismatch returns to it); other states keep short singly
/// linked edge lists in one arena.
#[derive(Debug, Default)]
pub(super) struct SuffixAutomaton {
    len: Vec<u32>,
    link: Vec<u32>,
    /// End position (global index in `b`) of the first occurrence of the state's strings.
    first_end: Vec<u32>,
    head: Vec<u32>,
    edges: Vec<Edge>,
    root_next: Vec<u32>,
    root_symbols: Vec<u32>,
}

impl SuffixAutomaton {
    fn next(&self, state: u32, symbol: u32) -> u32 {
        if state == ROOT {
            return self.root_next.get(symbol as usize).copied().unwrap_or(NIL);
        }
        let mut e = self.head[state as usize];
        while e != NIL {
            let edge = self.edges[e as usize];
            if edge.symbol == symbol {
                return edge.to;
            }
            e = edge.next;
        }
        NIL
    }

    fn set_next(&mut self, state: u32, symbol: u32, to: u32) {
        if state == ROOT {
            let idx = symbol as usize;
            if idx >= self.root_next.len() {
                self.root_next.resize(idx + 1, NIL);
            }
            if self.root_next[idx] == NIL {
                self.root_symbols.push(symbol);
            }
            self.root_next[idx] = to;
            return;
        }
        let mut e = self.head[state as usize];
        while e != NIL {
            if self.edges[e as usize].symbol == symbol {
                self.edges[e as usize].to = to;
                return;
            }
            e = self.edges[e as usize].next;
        }
        let idx = self.edges.len() as u32;
        self.edges.push(Edge { symbol, to, next: self.head[state as usize] });
        self.head[state as usize] = idx;
    }

    fn add_state(&mut self, len: u32, link: u32, first_end: u32) -> u32 {
        self.len.push(len);
        self.link.push(link);
        self.first_end.push(first_end);
        self.head.push(NIL);
        (self.len.len() - 1) as u32
    }

    fn clone_state(&mut self, q: u32, len: u32) -> u32 {
        // `q` is never the root: no transition leads to it.
        let clone = self.add_state(len, self.link[q as usize], self.first_end[q as usize]);
        let mut e = self.head[q as usize];
        while e != NIL {
            let edge = self.edges[e as usize];
            let idx = self.edges.len() as u32;
            self.edges.push(Edge { symbol: edge.symbol, to: edge.to, next: self.head[clone as usize] });
            self.head[clone as usize] = idx;
            e = edge.next;
        }
        clone
    }

    /// Rebuilds the automaton for `b`, whose first element is at global index `offset`.
    pub(super) fn build(&mut self, b: &[u32], offset: usize) {
        self.len.clear();
        self.link.clear();
        self.first_end.clear();
        self.head.clear();
        self.edges.clear();
        for &s in &self.root_symbols {
            self.root_next[s as usize] = NIL;
        }
        self.root_symbols.clear();
        self.add_state(0, NIL, 0);
        let mut last = ROOT;
        for (k, &c) in b.iter().enumerate() {
            let end = (offset + k) as u32;
            let cur = self.add_state(self.len[last as usize] + 1, ROOT, end);
            let mut p = last;
            while p != NIL && self.next(p, c) == NIL {
                self.set_next(p, c, cur);
                p = self.link[p as usize];
            }
            if p != NIL {
                let q = self.next(p, c);
                if self.len[p as usize] + 1 == self.len[q as usize] {
                    self.link[cur as usize] = q;
                } else {
                    let clone = self.clone_state(q, self.len[p as usize] + 1);
                    while p != NIL && self.next(p, c) == q {
                        self.set_next(p, c, clone);
                        p = self.link[p as usize];
                    }
                    self.link[q as usize] = clone;
                    self.link[cur as usize] = clone;
                }
            }
            last = cur;
        }
    }

    /// The longest common substring of `a` (first element at global index `alo`) and the
    /// automaton's `b` (first element at `blo`): `(i, j, size)` with the smallest end in `a`,
    /// then the first occurrence in `b`; `(alo, blo, 0)` when they share nothing.
    pub(super) fn longest_common(&self, a: &[u32], alo: usize, blo: usize) -> (usize, usize, usize) {
        let mut best = (alo, blo, 0usize);
        let (mut v, mut l) = (ROOT, 0u32);
        for (k, &c) in a.iter().enumerate() {
            loop {
                let to = self.next(v, c);
                if to != NIL {
                    v = to;
                    l += 1;
                    break;
                }
                if v == ROOT {
                    l = 0;
                    break;
                }
                v = self.link[v as usize];
                l = self.len[v as usize];
            }
            if l as usize > best.2 {
                let i = alo + k;
                let j_end = self.first_end[v as usize] as usize;
                best = (i + 1 - l as usize, j_end + 1 - l as usize, l as usize);
            }
        }
        best
    }
}
