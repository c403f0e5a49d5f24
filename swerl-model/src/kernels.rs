//! Fused f32 kernels for the CPU: softmax rows of attention blocks, the output projection's
//! log-softmax and its gradient, and SwiGLU.
//!
//! Each replaces a chain of candle element-wise ops (one pass and one fresh buffer per op) by one
//! or two passes over the data, in place where the input is a fresh matrix product. Rows are
//! spread over threads with rayon, and every chunk of rows runs under the widest SIMD level of the
//! CPU (AVX-512, AVX2+FMA, ...) chosen at run time through `pulp`, so the plain loops below (and
//! [`exp`], written without branches or libm calls) vectorise. Other devices and dtypes take the
//! candle-op paths these kernels are tested against.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, InplaceOp1, InplaceOp2, Layout, Shape, Tensor,
};
use rayon::prelude::*;

use crate::error::Result;

/// Score given to masked (query, key) pairs: finite, so fully masked rows stay NaN-free.
pub(crate) const MASKED: f32 = -1e30;

/// Accumulator lanes of the reductions (one AVX-512 register, two AVX2 ones).
const LANES: usize = 16;

/// Elements per parallel task: below this, splitting costs more than it saves.
const TASK_ELEMS: usize = 1 << 15;

/// Whether `t` can take the fused CPU kernels.
pub(crate) fn usable(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// `e^x` to within 1e-7 relative error for `x` in `[-87, 88]`; 0 below, `e^88` above.
///
/// Cody-Waite reduction `x = n ln2 + r` (rounding by the 1.5 * 2^23 trick) and a degree-6
/// polynomial for `e^r`, the scheme of the Cephes `expf`; plain arithmetic so that loops over it
/// vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * 0.693_145_75;
    let r = r - n * 1.428_606_8e-6;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the exponent bits; n is in [-126, 127] after the clamp.
    let bits = ((t.to_bits() as i32) - 0x4B40_0000 + 127) << 23;
    let v = y * f32::from_bits(bits as u32);
    if x < -87.0 { 0.0 } else { v }
}

#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    acc.iter().fold(tail, |m, &x| m.max(x))
}

#[inline(always)]
fn sum_lanes(acc: &[f32; LANES]) -> f32 {
    acc.iter().sum()
}

/// Runs `f` under the widest SIMD level of the CPU. `f` is called through `FnMut::call_mut`
/// from an `#[inline(always)]` function, so that its body (closures below are mutating, so
/// `call_mut` is the body itself, not a shim) inlines into pulp's `#[target_feature]` function
/// and vectorises for it.
pub(crate) fn simd(mut f: impl FnMut()) {
    pulp::Arch::new().dispatch(Simd(&mut f));
}

struct Simd<'a, F>(&'a mut F);

impl<F: FnMut()> pulp::WithSimd for Simd<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        (self.0)();
    }
}

/// Runs `f(row index, row)` on the `width`-element rows of `data`, in parallel chunks, each under
/// the CPU's widest SIMD level.
fn rows_mut(data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if width == 0 {
        return;
    }
    let per_task = (TASK_ELEMS / width).max(1);
    data.par_chunks_mut(per_task * width).enumerate().for_each(|(c, chunk)| {
        simd(
            #[inline(always)]
            || {
                for (i, row) in chunk.chunks_mut(width).enumerate() {
                    f(c * per_task + i, row);
                }
            },
        );
    });
}

/// [`rows_mut`] with a second, read-only matrix of the same shape.
fn rows_mut2(data: &mut [f32], other: &[f32], width: usize, f: impl Fn(usize, &mut [f32], &[f32]) + Sync) {
    if width == 0 {
        return;
    }
    let per_task = (TASK_ELEMS / width).max(1);
    data.par_chunks_mut(per_task * width).zip(other.par_chunks(per_task * width)).enumerate().for_each(
        |(c, (chunk, o))| {
            simd(
                #[inline(always)]
                || {
                    for (i, (row, orow)) in chunk.chunks_mut(width).zip(o.chunks(width)).enumerate() {
                        f(c * per_task + i, row, orow);
                    }
                },
            );
        },
    );
}

/// [`rows_mut`] writing one value per row into `out` (`r` is the row index in `data`).
fn rows_mut_out(
    data: &mut [f32],
    out: &mut [f32],
    width: usize,
    f: impl Fn(usize, &mut [f32], &mut f32) + Sync,
) {
    if width == 0 {
        return;
    }
    let per_task = (TASK_ELEMS / width).max(1);
    data.par_chunks_mut(per_task * width).zip(out.par_chunks_mut(per_task)).enumerate().for_each(
        |(c, (chunk, o))| {
            simd(
                #[inline(always)]
                || {
                    for (i, (row, o)) in chunk.chunks_mut(width).zip(o.iter_mut()).enumerate() {
                        f(c * per_task + i, row, o);
                    }
                },
            );
        },
    );
}

/// The contiguous f32 data of a CPU storage.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        return Err(candle_core::Error::Msg(format!("{op}: expected f32, found {:?}", s.dtype())));
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::Msg(format!("{op}: expected a contiguous tensor"))),
    }
}

fn f32s_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else {
        return Err(candle_core::Error::Msg(format!("{op}: expected f32, found {dtype:?}")));
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => Err(candle_core::Error::Msg(format!("{op}: expected a contiguous tensor"))),
    }
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Which keys the rows of one attention score block see. Rows are `(batch, head, query)` in
/// row-major order (`batch * heads * queries` rows of `kend` scores).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScoreRows<'a> {
    pub(crate) heads: usize,
    /// Queries in the block.
    pub(crate) queries: usize,
    /// Key position of the block's first query: query `i` sees keys `0..=first + i`.
    pub(crate) first: usize,
    /// `batch * keys` validity flags (`None`: all valid), `keys` apart per batch row.
    pub(crate) key_valid: Option<&'a [bool]>,
    pub(crate) keys: usize,
}

impl ScoreRows<'_> {
    /// Masks the invisible scores of row `r` to [`MASKED`] (after scaling the rest by `scale`).
    #[inline(always)]
    fn scale_and_mask(&self, r: usize, row: &mut [f32], scale: f32) {
        let end = (self.first + r % self.queries + 1).min(row.len());
        let (vis, hidden) = row.split_at_mut(end);
        vis.iter_mut().for_each(|x| *x *= scale);
        hidden.fill(MASKED);
        if let Some(kv) = self.key_valid {
            let b = r / (self.heads * self.queries);
            let valid = &kv[b * self.keys..b * self.keys + end];
            for (x, &ok) in vis.iter_mut().zip(valid) {
                *x = if ok { *x } else { MASKED };
            }
        }
    }
}

/// In place: scores `s` (`(batch, kv_heads, rep * queries, kend)` or any shape with those rows)
/// become softmax probabilities of `scale * s` under the mask. Returns each row's log-sum-exp.
pub(crate) fn softmax_rows(s: &Tensor, scale: f32, rows: ScoreRows<'_>) -> Result<Vec<f32>> {
    let op = SoftmaxRows { scale, rows, lse: std::sync::Mutex::new(Vec::new()) };
    s.inplace_op1(&op)?;
    Ok(op.lse.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}

struct SoftmaxRows<'a> {
    scale: f32,
    rows: ScoreRows<'a>,
    lse: std::sync::Mutex<Vec<f32>>,
}

impl InplaceOp1 for SoftmaxRows<'_> {
    fn name(&self) -> &'static str {
        "swerl-softmax-rows"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let width = last_dim(layout);
        let data = f32s_mut(storage, layout, self.name())?;
        let n_rows = data.len().checked_div(width).unwrap_or(0);
        let mut lse = vec![0f32; n_rows];
        rows_mut_out(
            data,
            &mut lse,
            width,
            #[inline(always)]
            |r, row, lse| {
                self.rows.scale_and_mask(r, row, self.scale);
                let m = max_of(row);
                let mut acc = [0f32; LANES];
                let mut chunks = row.chunks_exact_mut(LANES);
                for c in &mut chunks {
                    for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
                        *x = exp(*x - m);
                        *a += *x;
                    }
                }
                let mut sum = sum_lanes(&acc);
                for x in chunks.into_remainder() {
                    *x = exp(*x - m);
                    sum += *x;
                }
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
                *lse = m + sum.ln();
            },
        );
        *self.lse.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = lse;
        Ok(())
    }
}

/// In place: raw scores `s` become the probabilities `exp(scale * s - lse)` of a forward pass
/// (0 at masked pairs). `lse(r)` gives row `r`'s saved log-sum-exp.
pub(crate) fn probs_rows(s: &Tensor, scale: f32, rows: ScoreRows<'_>, lse: &[f32]) -> Result<()> {
    s.inplace_op1(&ProbsRows { scale, rows, lse })?;
    Ok(())
}

struct ProbsRows<'a> {
    scale: f32,
    rows: ScoreRows<'a>,
    lse: &'a [f32],
}

impl InplaceOp1 for ProbsRows<'_> {
    fn name(&self) -> &'static str {
        "swerl-probs-rows"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let width = last_dim(layout);
        let data = f32s_mut(storage, layout, self.name())?;
        if width > 0 && data.len() / width != self.lse.len() {
            return Err(candle_core::Error::Msg(format!(
                "{}: {} rows but {} log-sum-exps",
                self.name(),
                data.len() / width,
                self.lse.len()
            )));
        }
        rows_mut(
            data,
            width,
            #[inline(always)]
            |r, row| {
                self.rows.scale_and_mask(r, row, self.scale);
                let l = self.lse[r];
                row.iter_mut().for_each(|x| *x = exp(*x - l));
            },
        );
        Ok(())
    }
}

/// In place: `dp` (the gradient of the probabilities) becomes the gradient of the raw scores,
/// `scale * p * (dp - delta)`, with `delta[r]` the row's `rowsum(dO * O)`.
pub(crate) fn score_grad_rows(dp: &Tensor, p: &Tensor, scale: f32, delta: &[f32]) -> Result<()> {
    dp.inplace_op2(p, &ScoreGrad { scale, delta })?;
    Ok(())
}

struct ScoreGrad<'a> {
    scale: f32,
    delta: &'a [f32],
}

impl InplaceOp2 for ScoreGrad<'_> {
    fn name(&self) -> &'static str {
        "swerl-score-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        if l1.dims() != l2.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{}: shapes {:?} and {:?} differ",
                self.name(),
                l1.dims(),
                l2.dims()
            )));
        }
        let width = last_dim(l1);
        let p = f32s(s2, l2, self.name())?;
        let dp = f32s_mut(s1, l1, self.name())?;
        if width > 0 && dp.len() / width != self.delta.len() {
            return Err(candle_core::Error::Msg(format!("{}: row count mismatch", self.name())));
        }
        rows_mut2(
            dp,
            p,
            width,
            #[inline(always)]
            |r, row, prow| {
                let d = self.delta[r];
                for (g, &pj) in row.iter_mut().zip(prow) {
                    *g = self.scale * pj * (*g - d);
                }
            },
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Output projection

/// Log-probs of `targets`, entropies (`None` unless `entropy`) and whether each target is the
/// row's most likely token (1/0) of the rows of `logits / temperature` (`(n, vocab)`), without
/// materialising any `(n, vocab)` intermediate.
pub(crate) fn head_scores(
    logits: &Tensor,
    targets: &[u32],
    temperature: f64,
    entropy: bool,
) -> Result<(Tensor, Option<Tensor>, Tensor)> {
    let n = targets.len();
    let out = logits.apply_op1_no_bwd(&HeadScores { targets, inv_t: (1.0 / temperature) as f32 })?;
    let lp = out.narrow(1, 0, 1)?.reshape(n)?;
    let ent = if entropy { Some(out.narrow(1, 1, 1)?.reshape(n)?) } else { None };
    let top1 = out.narrow(1, 2, 1)?.reshape(n)?;
    Ok((lp, ent, top1))
}

struct HeadScores<'a> {
    targets: &'a [u32],
    inv_t: f32,
}

fn check_targets(op: &str, targets: &[u32], rows: usize, vocab: usize) -> candle_core::Result<()> {
    if targets.len() != rows {
        return Err(candle_core::Error::Msg(format!("{op}: {rows} rows but {} targets", targets.len())));
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(candle_core::Error::Msg(format!("{op}: target {t} outside the vocabulary of {vocab}")));
    }
    Ok(())
}

impl CustomOp1 for HeadScores<'_> {
    fn name(&self) -> &'static str {
        "swerl-head-scores"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let vocab = last_dim(layout);
        let data = f32s(storage, layout, self.name())?;
        let n = data.len().checked_div(vocab).unwrap_or(0);
        check_targets(self.name(), self.targets, n, vocab)?;
        let mut out = vec![0f32; 3 * n];
        let inv_t = self.inv_t;
        let per_task = (TASK_ELEMS / vocab.max(1)).max(1);
        out.par_chunks_mut(3 * per_task).zip(data.par_chunks(per_task * vocab.max(1))).enumerate().for_each(
            |(c, (o, rows))| {
                simd(
                    #[inline(always)]
                    || {
                        for (i, (o, row)) in o.chunks_mut(3).zip(rows.chunks(vocab)).enumerate() {
                            let m = max_of(row) * inv_t;
                            let (mut se, mut sez) = ([0f32; LANES], [0f32; LANES]);
                            let mut chunks = row.chunks_exact(LANES);
                            for ch in &mut chunks {
                                for ((a, b), &x) in se.iter_mut().zip(sez.iter_mut()).zip(ch) {
                                    let z = x * inv_t - m;
                                    let e = exp(z);
                                    *a += e;
                                    *b += e * z;
                                }
                            }
                            let (mut s, mut sz) = (sum_lanes(&se), sum_lanes(&sez));
                            for &x in chunks.remainder() {
                                let z = x * inv_t - m;
                                let e = exp(z);
                                s += e;
                                sz += e * z;
                            }
                            let lse = s.ln();
                            let t = self.targets[c * per_task + i] as usize;
                            o[0] = row[t] * inv_t - m - lse;
                            o[1] = lse - sz / s;
                            o[2] = if row[t] * inv_t >= m { 1.0 } else { 0.0 };
                        }
                    },
                );
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((n, 3))))
    }
}

/// In place: `logits` (`(n, vocab)`, a fresh product) become the gradient of the loss with
/// respect to them, given the loss gradients `g_lp` of the target log-probs and `g_ent` of the
/// entropies of `softmax(logits / temperature)`:
/// `(g_lp (onehot - p) - g_ent p (log p + H)) / temperature`.
pub(crate) fn head_grad(
    logits: &Tensor,
    targets: &[u32],
    temperature: f64,
    g_lp: Option<&[f32]>,
    g_ent: Option<&[f32]>,
) -> Result<()> {
    logits.inplace_op1(&HeadGrad { targets, inv_t: (1.0 / temperature) as f32, g_lp, g_ent })?;
    Ok(())
}

struct HeadGrad<'a> {
    targets: &'a [u32],
    inv_t: f32,
    g_lp: Option<&'a [f32]>,
    g_ent: Option<&'a [f32]>,
}

impl InplaceOp1 for HeadGrad<'_> {
    fn name(&self) -> &'static str {
        "swerl-head-grad"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let vocab = last_dim(layout);
        let data = f32s_mut(storage, layout, self.name())?;
        let n = data.len().checked_div(vocab).unwrap_or(0);
        check_targets(self.name(), self.targets, n, vocab)?;
        for g in [self.g_lp, self.g_ent].into_iter().flatten() {
            if g.len() != n {
                return Err(candle_core::Error::Msg(format!(
                    "{}: {n} rows but {} gradients",
                    self.name(),
                    g.len()
                )));
            }
        }
        let inv_t = self.inv_t;
        rows_mut(
            data,
            vocab,
            #[inline(always)]
            |r, row| {
                let m = max_of(row) * inv_t;
                let (mut se, mut sez) = ([0f32; LANES], [0f32; LANES]);
                let mut chunks = row.chunks_exact(LANES);
                for ch in &mut chunks {
                    for ((a, b), &x) in se.iter_mut().zip(sez.iter_mut()).zip(ch) {
                        let z = x * inv_t - m;
                        let e = exp(z);
                        *a += e;
                        *b += e * z;
                    }
                }
                let (mut s, mut sz) = (sum_lanes(&se), sum_lanes(&sez));
                for &x in chunks.remainder() {
                    let z = x * inv_t - m;
                    let e = exp(z);
                    s += e;
                    sz += e * z;
                }
                let lse = s.ln();
                let inv_s = 1.0 / s;
                let h = lse - sz * inv_s;
                let gl = self.g_lp.map_or(0.0, |g| g[r]);
                let ge = self.g_ent.map_or(0.0, |g| g[r]);
                // dz = inv_t * (-gl p - ge p (z - lse + h)), plus inv_t * gl at the target.
                let t = self.targets[r] as usize;
                for x in row.iter_mut() {
                    let z = *x * inv_t - m;
                    let p = exp(z) * inv_s;
                    *x = -inv_t * p * (gl + ge * (z - lse + h));
                }
                row[t] += inv_t * gl;
            },
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + exp(-g))
}

/// `silu(gate) * up` for two tensors of the same shape.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.apply_op2_no_bwd(up, &Swiglu)?)
}

struct Swiglu;

fn same_dims(op: &str, a: &Layout, b: &Layout) -> candle_core::Result<()> {
    if a.dims() == b.dims() {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(format!("{op}: shapes {:?} and {:?} differ", a.dims(), b.dims())))
    }
}

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "swerl-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_dims(self.name(), l1, l2)?;
        let (g, u) = (f32s(s1, l1, self.name())?, f32s(s2, l2, self.name())?);
        let mut out = g.to_vec();
        rows_mut2(
            &mut out,
            u,
            last_dim(l1),
            #[inline(always)]
            |_, row, urow| {
                for (x, &u) in row.iter_mut().zip(urow) {
                    *x = *x * sigmoid(*x) * u;
                }
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Gradients of `silu(gate) * up` given the output gradient `d_act`: `(d_gate, d_up)`.
pub(crate) fn swiglu_backward(gate: &Tensor, up: &Tensor, d_act: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = gate.apply_op3_no_bwd(up, d_act, &SwigluBackward)?;
    Ok((both.get(0)?, both.get(1)?))
}

struct SwigluBackward;

impl CustomOp3 for SwigluBackward {
    fn name(&self) -> &'static str {
        "swerl-swiglu-backward"
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
        same_dims(self.name(), l1, l2)?;
        same_dims(self.name(), l1, l3)?;
        let g = f32s(s1, l1, self.name())?;
        let u = f32s(s2, l2, self.name())?;
        let d = f32s(s3, l3, self.name())?;
        let len = g.len();
        // First half: d_gate (starts as d_act); second half: d_up.
        let mut out = vec![0f32; 2 * len];
        out[..len].copy_from_slice(d);
        let (dg, du) = out.split_at_mut(len);
        let width = last_dim(l1).max(1);
        let per_task = (TASK_ELEMS / width).max(1) * width;
        dg.par_chunks_mut(per_task)
            .zip(du.par_chunks_mut(per_task))
            .zip(g.par_chunks(per_task).zip(u.par_chunks(per_task)))
            .for_each(|((dg, du), (g, u))| {
                simd(
                    #[inline(always)]
                    || {
                        for (((dg, du), &g), &u) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u) {
                            let s = sigmoid(g);
                            let silu = g * s;
                            *du = *dg * silu;
                            *dg *= u * s * (1.0 + g * (1.0 - s));
                        }
                    },
                );
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

// ---------------------------------------------------------------------------------------------
// Products with few rows

/// Most rows of `x` for which [`matmul_t_small`] beats gemm: gemm packs the whole weight matrix
/// and pads the rows to its micro-kernel height (up to 64 with AVX-512) on every call, which
/// dominates decoding steps of a few sequences.
pub(crate) const SMALL_ROWS: usize = 16;

/// `x @ w.T` for a CPU f32 `x` of shape `(m, k)` with `m <=` [`SMALL_ROWS`] and `w` of shape
/// `(n, k)`, both contiguous: one streaming pass over `w` in parallel row blocks (on the
/// [`crate::spin`] pool), each row dotted with the `m` rows of `x` while in cache.
pub(crate) fn matmul_t_small(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.apply_op2_no_bwd(w, &MatmulTSmall)?)
}

struct MatmulTSmall;

#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((acc, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    sum_lanes(&acc) + tail
}

/// Dot products of `w` with the four `k`-element rows of `xs`.
#[inline(always)]
fn dot4(w: &[f32], xs: &[f32], k: usize) -> [f32; 4] {
    let (x0, rest) = xs.split_at(k);
    let (x1, rest) = rest.split_at(k);
    let (x2, x3) = rest.split_at(k);
    let (mut a0, mut a1, mut a2, mut a3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let chunks = w
        .chunks_exact(LANES)
        .zip(x0.chunks_exact(LANES))
        .zip(x1.chunks_exact(LANES))
        .zip(x2.chunks_exact(LANES))
        .zip(x3.chunks_exact(LANES));
    for ((((w, x0), x1), x2), x3) in chunks {
        for l in 0..LANES {
            a0[l] += w[l] * x0[l];
            a1[l] += w[l] * x1[l];
            a2[l] += w[l] * x2[l];
            a3[l] += w[l] * x3[l];
        }
    }
    let full = k / LANES * LANES;
    let tail = |x: &[f32]| -> f32 { w[full..].iter().zip(&x[full..]).map(|(a, b)| a * b).sum() };
    [
        sum_lanes(&a0) + tail(x0),
        sum_lanes(&a1) + tail(x1),
        sum_lanes(&a2) + tail(x2),
        sum_lanes(&a3) + tail(x3),
    ]
}

/// The `(m, n)` f32 matrix of a product computed transposed (`out_t` is `(n, m)`: one row per
/// weight row, as the streaming kernels write it).
pub(crate) fn untranspose(out_t: &[f32], m: usize, n: usize) -> (CpuStorage, Shape) {
    let mut out = vec![0f32; m * n];
    for (j, col) in out_t.chunks(m.max(1)).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * n + j] = v;
        }
    }
    (CpuStorage::F32(out), Shape::from((m, n)))
}

impl CustomOp2 for MatmulTSmall {
    fn name(&self) -> &'static str {
        "swerl-matmul-t-small"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (&[m, k], &[n, k2]) = (l1.dims(), l2.dims()) else {
            return Err(candle_core::Error::Msg(format!(
                "{}: expected two matrices, found {:?} and {:?}",
                self.name(),
                l1.dims(),
                l2.dims()
            )));
        };
        if k != k2 {
            return Err(candle_core::Error::Msg(format!("{}: inner sizes {k} and {k2} differ", self.name())));
        }
        let (x, w) = (f32s(s1, l1, self.name())?, f32s(s2, l2, self.name())?);
        // Transposed result (n, m): each task owns whole rows of w and of the result.
        let mut out_t = vec![0f32; n * m];
        if m > 0 && k > 0 {
            let per_task = (TASK_ELEMS / k).max(1);
            let w_chunk = per_task * k;
            // The CPU's AVX-512 check once per product, not once per task.
            #[cfg(target_arch = "x86_64")]
            let v4 = pulp::x86::V4::try_new();
            crate::spin::chunks_mut(&mut out_t, per_task * m, |i, o| {
                let w = &w[i * w_chunk..((i + 1) * w_chunk).min(w.len())];
                #[cfg(target_arch = "x86_64")]
                if let Some(v4) = v4 {
                    return crate::matvec::v4::rows_f32(v4, w, x, m, k, o);
                }
                simd(
                    #[inline(always)]
                    || {
                        for (o, wrow) in o.chunks_mut(m).zip(w.chunks(k)) {
                            // Four rows of x at a time: four independent accumulator chains
                            // sharing each load of w.
                            let mut quads = o.chunks_exact_mut(4).zip(x.chunks_exact(4 * k));
                            for (o, xs) in &mut quads {
                                o.copy_from_slice(&dot4(wrow, xs, k));
                            }
                            let done = m / 4 * 4;
                            for (o, xrow) in o[done..].iter_mut().zip(x[done * k..].chunks(k)) {
                                *o = dot(wrow, xrow);
                            }
                        }
                    },
                );
            });
        }
        Ok(untranspose(&out_t, m, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_1e7_of_f64_exp() {
        let mut worst = 0f64;
        for i in 0..=1_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 1_000_000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 2e-7, "{worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(1e30).is_finite());
    }

    #[test]
    fn small_products_match_gemm() {
        let dev = candle_core::Device::Cpu;
        for (m, k, n) in [(1, 576, 1000), (8, 64, 37), (16, 33, 5), (3, 1, 4)] {
            let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let got = matmul_t_small(&x, &w).unwrap();
            assert_eq!(got.dims(), &[m, n]);
            let d = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-3, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn fused_swiglu_and_head_match_candle_ops() {
        let dev = candle_core::Device::Cpu;
        let g = Tensor::randn(0f32, 3., (7, 45), &dev).unwrap();
        let u = Tensor::randn(0f32, 1., (7, 45), &dev).unwrap();
        let d = Tensor::randn(0f32, 1., (7, 45), &dev).unwrap();
        let max = |a: Tensor, b: Tensor| -> f32 {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
        };
        let want = (g.silu().unwrap() * &u).unwrap();
        assert!(max(swiglu(&g, &u).unwrap(), want) < 1e-5);
        let sig = candle_nn::ops::sigmoid(&g).unwrap();
        let want_du = (&d * g.silu().unwrap()).unwrap();
        let dsilu =
            (&sig * (&g * sig.affine(-1.0, 1.0).unwrap()).unwrap().affine(1.0, 1.0).unwrap()).unwrap();
        let want_dg = ((&d * &u).unwrap() * dsilu).unwrap();
        let (dg, du) = swiglu_backward(&g, &u, &d).unwrap();
        assert!(max(dg, want_dg) < 1e-5);
        assert!(max(du, want_du) < 1e-5);

        // Log-probs and entropies at temperature 0.5 against log_softmax.
        let logits = Tensor::randn(0f32, 4., (5, 300), &dev).unwrap();
        let argmax = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let targets = [0u32, 299, argmax[2], 150, argmax[4]];
        let (lp, ent, top1) = head_scores(&logits, &targets, 0.5, true).unwrap();
        let top1 = top1.to_vec1::<f32>().unwrap();
        for (i, (&t, &a)) in targets.iter().zip(&argmax).enumerate() {
            assert_eq!(top1[i], f32::from(u8::from(t == a)), "row {i}: target {t}, argmax {a}");
        }
        let logp = candle_nn::ops::log_softmax(&(&logits / 0.5).unwrap(), 1).unwrap();
        let rows = logp.to_vec2::<f32>().unwrap();
        let lp = lp.to_vec1::<f32>().unwrap();
        let ent = ent.unwrap().to_vec1::<f32>().unwrap();
        for (i, row) in rows.iter().enumerate() {
            assert!((lp[i] - row[targets[i] as usize]).abs() < 1e-4, "row {i}");
            let h: f32 = -row.iter().map(|l| l.exp() * l).sum::<f32>();
            assert!((ent[i] - h).abs() < 1e-4, "row {i}: {} vs {h}", ent[i]);
        }
    }
}
