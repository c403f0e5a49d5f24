//! Attention of a few queries per sequence (decoding steps) on the CPU in one pass, without
//! matrix-product calls.
//!
//! A decoding step has one query per sequence (or the handful of rows of a group sharing a
//! prompt), so its score "matrices" are single rows: batched gemm calls cost more in setup than
//! in arithmetic there (four per layer and step, each also asking candle for its thread count).
//! Here each `(sequence, head)` computes its scores, the masked softmax and the weighted sum of
//! the values directly, reading keys and values in place from the strided KV cache.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::error::Result;
use crate::kernels::{MASKED, ScoreRows, dot, exp, simd};

/// Most queries per sequence for which [`attention`] beats the blocked matmul path.
pub(crate) const DIRECT_QUERIES: usize = 64;

/// Below this many multiply-adds a call stays on one thread.
const PARALLEL_WORK: usize = 1 << 16;

/// `q` `(b, heads, n, hd)`, `k`/`v` `(b, kv_heads, >= keys, hd)` (any strides with a unit last
/// one), all CPU f32: the attention output `(b, heads, n, hd)` and each query row's log-sum-exp of
/// its scaled, masked scores (row-major over `(b, heads, n)`), as the blocked path returns them.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rows: ScoreRows<'_>,
) -> Result<(Tensor, Vec<f32>)> {
    let (b, heads, n, hd) = q.dims4()?;
    let out = q.contiguous()?.apply_op3_no_bwd(k, v, &Direct { rows })?;
    let flat = out.reshape((b * heads * n, hd + 1))?;
    let o = flat.narrow(1, 0, hd)?.reshape((b, heads, n, hd))?;
    let lse = flat.narrow(1, hd, 1)?.flatten_all()?.to_vec1()?;
    Ok((o, lse))
}

struct Direct<'a> {
    rows: ScoreRows<'a>,
}

/// Element offsets of a 4-d strided view with a unit last stride.
struct View<'a> {
    data: &'a [f32],
    start: usize,
    stride: [usize; 3],
}

impl<'a> View<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = s else {
            return Err(candle_core::Error::Msg(format!("{op}: expected f32, found {:?}", s.dtype())));
        };
        let st = l.stride();
        if st.len() != 4 || st[3] != 1 {
            return Err(candle_core::Error::Msg(format!(
                "{op}: expected 4 dims with a unit last stride, found {st:?}"
            )));
        }
        Ok(Self { data, start: l.start_offset(), stride: [st[0], st[1], st[2]] })
    }

    #[inline(always)]
    fn row(&self, a: usize, b: usize, c: usize, len: usize) -> &'a [f32] {
        let at = self.start + a * self.stride[0] + b * self.stride[1] + c * self.stride[2];
        &self.data[at..at + len]
    }
}

impl CustomOp3 for Direct<'_> {
    fn name(&self) -> &'static str {
        "swerl-decode-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let msg = |m: String| candle_core::Error::Msg(format!("{}: {m}", self.name()));
        let (&[b, heads, n, hd], &[kb, kv_heads, cap, khd]) = (l1.dims(), l2.dims()) else {
            return Err(msg(format!("expected 4-d q and k, found {:?} and {:?}", l1.dims(), l2.dims())));
        };
        let keys = self.rows.keys;
        if l3.dims() != l2.dims()
            || kb != b
            || khd != hd
            || kv_heads == 0
            || heads % kv_heads != 0
            || cap < keys
        {
            return Err(msg(format!(
                "q {:?}, k {:?}, v {:?} do not fit together ({keys} keys)",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )));
        }
        let (q, k, v) = (
            View::new(s1, l1, self.name())?,
            View::new(s2, l2, self.name())?,
            View::new(s3, l3, self.name())?,
        );
        let rep = heads / kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let rows = self.rows;
        // One output row per query: hd values, then the log-sum-exp.
        let width = hd + 1;
        let mut out = vec![0f32; b * heads * n * width];
        let task = |(bh, out): (usize, &mut [f32])| {
            let (bi, h) = (bh / heads, bh % heads);
            let g = h / rep;
            let mut s = vec![0f32; keys];
            simd(
                #[inline(always)]
                || {
                    for (i, o) in out.chunks_mut(width).enumerate() {
                        let qrow = q.row(bi, h, i, hd);
                        let end = (rows.first + i + 1).min(keys);
                        let valid = rows.key_valid.map(|kv| &kv[bi * rows.keys..bi * rows.keys + end]);
                        let mut max = MASKED;
                        for (j, sj) in s[..end].iter_mut().enumerate() {
                            let visible = valid.is_none_or(|kv| kv[j]);
                            *sj = if visible { dot(qrow, k.row(bi, g, j, hd)) * scale } else { MASKED };
                            max = max.max(*sj);
                        }
                        let (acc, lse) = o.split_at_mut(hd);
                        acc.fill(0.0);
                        if max <= MASKED {
                            lse[0] = MASKED;
                            continue;
                        }
                        let mut sum = 0f32;
                        for (j, &sj) in s[..end].iter().enumerate() {
                            if sj <= MASKED {
                                continue;
                            }
                            let p = exp(sj - max);
                            sum += p;
                            for (a, &x) in acc.iter_mut().zip(v.row(bi, g, j, hd)) {
                                *a += p * x;
                            }
                        }
                        let inv = 1.0 / sum;
                        acc.iter_mut().for_each(|a| *a *= inv);
                        lse[0] = max + sum.ln();
                    }
                },
            );
        };
        if b * heads * n * keys * hd < PARALLEL_WORK {
            out.chunks_mut(n * width).enumerate().for_each(task);
        } else {
            crate::spin::chunks_mut(&mut out, n * width, |i, o| task((i, o)));
        }
        Ok((CpuStorage::F32(out), Shape::from((b, heads, n, width))))
    }
}
