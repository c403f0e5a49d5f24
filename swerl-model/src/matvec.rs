//! Products of f32 activations with bf16 or f16 weights, accumulated in f32: the decoding kernel
//! of reduced-precision sampling on the CPU.
//!
//! Decoding a few sequences is bound by memory: every step reads every weight once and does two
//! floating-point operations per weight and sequence. Halving the bytes of the weights halves
//! the time, provided the kernel streams them at the memory's speed. [`matmul_t_half`] reads each
//! weight row once, 32 values at a time widened to f32 in registers (a shift for bf16, a
//! branch-free bit conversion for f16), and multiplies them with up to four activation rows, with
//! two independent accumulator registers per row so that the additions do not wait on each
//! other. Rows of the weight matrix are split over threads, and the loops are plain Rust compiled
//! for the CPU's widest SIMD level (AVX-512 here) chosen at run time through `pulp`.
//!
//! On CPUs with AVX512-BF16, bf16 weights take `vdpbf16ps` instead (module `bf16dot`): the
//! activations are rounded to bf16 once per product and each instruction does 32 products with
//! f32 sums, as llama.cpp computes with bf16 weights; the weights are not widened at all.
//!
//! Larger products (a prompt's prefill) widen the whole weight matrix and run in gemm: there the
//! arithmetic, not the memory, decides the time.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use half::slice::HalfFloatSliceExt;

use crate::error::Result;

/// Most activation rows for which [`matmul_t_half`] beats widening the weights and running gemm.
pub(crate) const HALF_SMALL_ROWS: usize = 16;

/// Weight elements per parallel task.
const TASK_ELEMS: usize = 1 << 15;

/// Whether `w` holds reduced-precision weights the CPU kernels take.
pub(crate) fn is_half_weight(w: &Tensor) -> bool {
    w.device().is_cpu() && matches!(w.dtype(), DType::BF16 | DType::F16)
}

/// `x @ w.T` for a CPU f32 `x` of shape `(m, k)` and a contiguous bf16 or f16 `w` of shape
/// `(n, k)`, with f32 products and sums; the result is f32 `(m, n)`.
pub(crate) fn matmul_t_half(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dim(0)? <= HALF_SMALL_ROWS {
        Ok(x.contiguous()?.apply_op2_no_bwd(w, &MatmulTHalf)?)
    } else {
        Ok(x.matmul(&w.to_dtype(DType::F32)?.t()?)?)
    }
}

struct MatmulTHalf;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Bf16,
    F16,
}

#[cfg(test)]
impl Format {
    fn widen(self, bits: u16) -> f32 {
        match self {
            Format::Bf16 => bf16_to_f32(bits),
            Format::F16 => f16_to_f32(bits),
        }
    }
}

#[inline(always)]
fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// IEEE half to single precision, exact for every value (subnormals, infinities, NaNs), without
/// branches so that loops over it vectorise (`half`'s conversion is a branchy software routine
/// unless the crate is compiled for F16C).
#[inline(always)]
fn f16_to_f32(bits: u16) -> f32 {
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    let exponent = magnitude & 0x7c00;
    let shifted = magnitude << 13;
    // Normal numbers: move the exponent and mantissa into place and rebias by 127 - 15.
    let normal = shifted + ((127 - 15) << 23);
    // Subnormals are `mantissa * 2^-24`, exact in f32.
    let subnormal = (magnitude as f32 * (1.0 / 16_777_216.0)).to_bits();
    let special = shifted | 0x7f80_0000;
    let v = if exponent == 0 {
        subnormal
    } else if exponent == 0x7c00 {
        special
    } else {
        normal
    };
    f32::from_bits(v | sign)
}

impl CustomOp2 for MatmulTHalf {
    fn name(&self) -> &'static str {
        "swerl-matmul-t-half"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let msg = |m: String| candle_core::Error::Msg(format!("{}: {m}", self.name()));
        let (&[m, k], &[n, k2]) = (l1.dims(), l2.dims()) else {
            return Err(msg(format!("expected two matrices, found {:?} and {:?}", l1.dims(), l2.dims())));
        };
        if k != k2 {
            return Err(msg(format!("inner sizes {k} and {k2} differ")));
        }
        let CpuStorage::F32(x) = s1 else {
            return Err(msg(format!("expected f32 activations, found {:?}", s1.dtype())));
        };
        let (xa, xb) = l1.contiguous_offsets().ok_or_else(|| msg("activations not contiguous".into()))?;
        let (wa, wb) = l2.contiguous_offsets().ok_or_else(|| msg("weights not contiguous".into()))?;
        let x = &x[xa..xb];
        let (format, w): (Format, &[u16]) = match s2 {
            CpuStorage::BF16(w) => (Format::Bf16, w[wa..wb].reinterpret_cast()),
            CpuStorage::F16(w) => (Format::F16, w[wa..wb].reinterpret_cast()),
            other => return Err(msg(format!("expected bf16 or f16 weights, found {:?}", other.dtype()))),
        };
        let mut out_t = vec![0f32; n * m];
        if m > 0 && k > 0 {
            let per_task = (TASK_ELEMS / k).max(1);
            // bf16 weights on CPUs with AVX512-BF16: the activations rounded to bf16 once per
            // call (m * k values against n * k weights) for `vdpbf16ps`.
            #[cfg(target_arch = "x86_64")]
            let dot = bf16dot::Bf16Dot::detect().filter(|_| format == Format::Bf16).map(|d| (d, d.round(x)));
            let w_chunk = per_task * k;
            crate::spin::chunks_mut(&mut out_t, per_task * m, |i, o| {
                let w = &w[i * w_chunk..((i + 1) * w_chunk).min(w.len())];
                #[cfg(target_arch = "x86_64")]
                if let Some((dot, xb)) = &dot {
                    return dot.rows(w, xb, m, k, o);
                }
                rows(format, w, x, m, k, o);
            });
        }
        Ok(crate::kernels::untranspose(&out_t, m, n))
    }
}

/// Weights widened per step of the inner loop: two AVX-512 registers, so each activation row
/// has two independent accumulator chains.
const STEP: usize = 32;

/// Dot products of the weight rows `w` (`k` values each) with the `m` rows of `x`, into `out`
/// (`m` values per weight row), under the CPU's widest SIMD level.
fn rows(format: Format, w: &[u16], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        return match format {
            Format::Bf16 => v4::rows::<true>(simd, w, x, m, k, out),
            Format::F16 => v4::rows::<false>(simd, w, x, m, k, out),
        };
    }
    rows_fallback(format, w, x, m, k, out);
}

/// Plain loops the compiler vectorises for the CPU's SIMD level (CPUs without AVX-512).
fn rows_fallback(format: Format, w: &[u16], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    crate::kernels::simd(
        #[inline(always)]
        || match format {
            Format::Bf16 => rows_of::<true>(w, x, m, k, out),
            Format::F16 => rows_of::<false>(w, x, m, k, out),
        },
    );
}

#[inline(always)]
fn rows_of<const BF16: bool>(w: &[u16], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    for (o, wrow) in out.chunks_mut(m).zip(w.chunks_exact(k)) {
        // Four activation rows at a time share each widened step of the weight row.
        let mut r = 0;
        while r + 4 <= m {
            o[r..r + 4].copy_from_slice(&dots::<BF16, 4>(wrow, &x[r * k..(r + 4) * k], k));
            r += 4;
        }
        let rest = &x[r * k..m * k];
        match m - r {
            3 => o[r..].copy_from_slice(&dots::<BF16, 3>(wrow, rest, k)),
            2 => o[r..].copy_from_slice(&dots::<BF16, 2>(wrow, rest, k)),
            1 => o[r..].copy_from_slice(&dots::<BF16, 1>(wrow, rest, k)),
            _ => {}
        }
    }
}

/// Dot products of one weight row (`k` values) with the `R` rows of `x` (`R * k` values).
#[inline(always)]
fn dots<const BF16: bool, const R: usize>(w: &[u16], x: &[f32], k: usize) -> [f32; R] {
    let widen = |b: u16| if BF16 { bf16_to_f32(b) } else { f16_to_f32(b) };
    let mut acc = [[0f32; STEP]; R];
    let full = k / STEP * STEP;
    for (c, wc) in w[..full].chunks_exact(STEP).enumerate() {
        let mut wv = [0f32; STEP];
        for (v, &b) in wv.iter_mut().zip(wc) {
            *v = widen(b);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let xc = &x[r * k + c * STEP..r * k + (c + 1) * STEP];
            for ((a, &wv), &xv) in acc.iter_mut().zip(&wv).zip(xc) {
                *a += wv * xv;
            }
        }
    }
    let mut out = [0f32; R];
    for (r, (o, acc)) in out.iter_mut().zip(&acc).enumerate() {
        let (lo, hi) = acc.split_at(STEP / 2);
        let mut s: f32 = lo.iter().zip(hi).map(|(a, b)| a + b).sum();
        for j in full..k {
            s += widen(w[j]) * x[r * k + j];
        }
        *o = s;
    }
    out
}

/// The AVX-512 kernel, written with pulp's safe intrinsics: 16 weights per load (widened in a
/// register for bf16, `vpmovzxwd` + `vpslld`, and f16, `vcvtph2ps`; loaded as they are for f32),
/// fused multiply-adds into two accumulators per activation row, several rows per load.
#[cfg(target_arch = "x86_64")]
pub(crate) mod v4 {
    use pulp::x86::V4;
    use pulp::{cast, f32x16, u16x16};

    const W: usize = 16;

    pub(super) fn rows<const BF16: bool>(
        simd: V4,
        w: &[u16],
        x: &[f32],
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        rows_with::<u16>(simd, w, x, m, k, out, Half::<BF16>(simd))
    }

    /// [`rows`] for f32 weights (the decoding products of f32 models).
    pub(crate) fn rows_f32(simd: V4, w: &[f32], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
        rows_with::<f32>(simd, w, x, m, k, out, Single)
    }

    /// How a weight format becomes f32 lanes. The methods are `#[inline(always)]` so that they
    /// inline into pulp's `#[target_feature]` function.
    trait Load<T>: Copy {
        /// 16 weights as f32.
        fn load(self, c: &[T; W]) -> f32x16;
        /// One weight as f32 (the row's tail).
        fn scalar(self, v: T) -> f32;
    }

    /// bf16 (`BF16`) or f16 weights, widened.
    #[derive(Clone, Copy)]
    struct Half<const BF16: bool>(V4);

    impl<const BF16: bool> Load<u16> for Half<BF16> {
        #[inline(always)]
        fn load(self, c: &[u16; W]) -> f32x16 {
            widen::<BF16>(self.0, c)
        }

        #[inline(always)]
        fn scalar(self, b: u16) -> f32 {
            if BF16 { super::bf16_to_f32(b) } else { super::f16_to_f32(b) }
        }
    }

    /// f32 weights.
    #[derive(Clone, Copy)]
    struct Single;

    impl Load<f32> for Single {
        #[inline(always)]
        fn load(self, c: &[f32; W]) -> f32x16 {
            cast(*c)
        }

        #[inline(always)]
        fn scalar(self, v: f32) -> f32 {
            v
        }
    }

    /// Dot products of the weight rows `w` (`k` values each) with the `m` rows of `x`, into
    /// `out` (`m` values per weight row), four activation rows at a time.
    ///
    /// Each block of rows enters pulp's `#[target_feature]` function on its own ([`block`]),
    /// so every such function stays small. When this whole loop ran inside one, the
    /// intrinsics inlined or not depending on how large it was: an eight-row arm, or a
    /// prefetch call, tipped LLVM over its limits and every multiply-add became a call,
    /// 3-10x slower.
    fn rows_with<T: Copy>(
        simd: V4,
        w: &[T],
        x: &[f32],
        m: usize,
        k: usize,
        out: &mut [f32],
        fmt: impl Load<T>,
    ) {
        for (o, wrow) in out.chunks_mut(m).zip(w.chunks_exact(k)) {
            let mut r = 0;
            while r + 4 <= m {
                block::<T, 4>(simd, wrow, &x[r * k..(r + 4) * k], k, fmt, &mut o[r..r + 4]);
                r += 4;
            }
            let (rest, o) = (&x[r * k..m * k], &mut o[r..]);
            match m - r {
                3 => block::<T, 3>(simd, wrow, rest, k, fmt, o),
                2 => block::<T, 2>(simd, wrow, rest, k, fmt, o),
                1 => block::<T, 1>(simd, wrow, rest, k, fmt, o),
                _ => {}
            }
        }
    }

    /// [`dots`] of `R` activation rows under AVX-512, into `o`.
    #[inline(always)]
    fn block<T: Copy, const R: usize>(
        simd: V4,
        w: &[T],
        x: &[f32],
        k: usize,
        fmt: impl Load<T>,
        o: &mut [f32],
    ) {
        o.copy_from_slice(&simd.vectorize(
            #[inline(always)]
            || dots::<T, R>(simd, w, x, k, fmt),
        ));
    }

    /// The sum of 16 lanes, pairwise, in plain code: pulp's `reduce_sum_f32s` and
    /// `std::array::from_fn` are calls that LLVM may leave out of line in this kernel.
    #[inline(always)]
    fn hsum(v: [f32; W]) -> f32 {
        let mut h = [0f32; 8];
        for i in 0..8 {
            h[i] = v[i] + v[i + 8];
        }
        let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
        (q[0] + q[2]) + (q[1] + q[3])
    }

    #[inline(always)]
    fn widen<const BF16: bool>(simd: V4, h: &[u16; W]) -> f32x16 {
        let h: u16x16 = cast(*h);
        if BF16 {
            cast(simd.shl_const_u32x16::<16>(simd.convert_u16x16_to_u32x16(h)))
        } else {
            cast(simd.avx512f._mm512_cvtph_ps(cast(h)))
        }
    }

    #[inline(always)]
    fn dots<T: Copy, const R: usize>(simd: V4, w: &[T], x: &[f32], k: usize, fmt: impl Load<T>) -> [f32; R] {
        let (wc, wtail) = w[..k].as_chunks::<W>();
        let mut xc: [&[[f32; W]]; R] = [&[]; R];
        for (r, xc) in xc.iter_mut().enumerate() {
            *xc = x[r * k..(r + 1) * k].as_chunks::<W>().0;
        }
        let zero = simd.splat_f32x16(0.0);
        let (mut a0, mut a1) = ([zero; R], [zero; R]);
        let pairs = wc.len() / 2;
        for i in 0..pairs {
            super::prefetch::ahead(&wc[2 * i]);
            let w0 = fmt.load(&wc[2 * i]);
            let w1 = fmt.load(&wc[2 * i + 1]);
            for r in 0..R {
                a0[r] = simd.mul_add_f32x16(w0, cast(xc[r][2 * i]), a0[r]);
                a1[r] = simd.mul_add_f32x16(w1, cast(xc[r][2 * i + 1]), a1[r]);
            }
        }
        if wc.len() % 2 == 1 {
            let i = wc.len() - 1;
            let w0 = fmt.load(&wc[i]);
            for r in 0..R {
                a0[r] = simd.mul_add_f32x16(w0, cast(xc[r][i]), a0[r]);
            }
        }
        let full = k - wtail.len();
        let mut out = [0f32; R];
        for (r, out) in out.iter_mut().enumerate() {
            let mut s = hsum(cast(simd.add_f32x16(a0[r], a1[r])));
            for (j, &b) in wtail.iter().enumerate() {
                s += fmt.scalar(b) * x[r * k + full + j];
            }
            *out = s;
        }
        out
    }
}

/// Software prefetch for the streaming kernels: with each pair of weight registers a kernel
/// loads, it requests the cache lines 4 KiB further on, so that later weights arrive from
/// memory while these are multiplied. The hardware prefetcher alone left the kernels waiting on
/// their weight loads. On the 2-core development machine (Xeon, AVX-512; alternated runs, 3
/// each, medians), it took decoding of 1 and 8 sequences from 32.5 and 119.6 to 38.9 and 151.3
/// tok/s with f32 weights, and from 56.6 and 197.4 to 72.1 and 262.6 with bf16 weights.
/// Requesting a whole row before multiplying it gained about half as much for 8 sequences; 8 KiB
/// ahead, and `_MM_HINT_T1` instead of `T0`, measured the same. `SWERL_PREFETCH=0` turns it off,
/// for such comparisons.
///
/// This is one of the crate's three uses of `unsafe` (with `bf16dot` and `crate::spin`): it
/// calls `_mm_prefetch`, a `#[target_feature(enable = "sse")]` intrinsic, from code that the
/// compiler does not treat as having SSE; see the SAFETY note.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod prefetch {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// How far ahead of the weights being multiplied the requested ones lie.
    const AHEAD_BYTES: usize = 4096;

    /// 0 before the first call, then 1 (on) or 2 (off, `SWERL_PREFETCH=0`).
    static STATE: AtomicU8 = AtomicU8::new(0);

    /// One relaxed load in the kernels' inner loops; the environment is read once.
    #[inline(always)]
    fn enabled() -> bool {
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => read_env(),
        }
    }

    #[cold]
    #[inline(never)]
    fn read_env() -> bool {
        let on = std::env::var_os("SWERL_PREFETCH").is_none_or(|v| v != "0");
        STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
        on
    }

    /// Requests the cache lines of the next pair of registers' worth of weights, [`AHEAD_BYTES`]
    /// past `c`, the first register of the pair a kernel loads next.
    #[inline(always)]
    pub(super) fn ahead<C>(c: &C) {
        if !enabled() {
            return;
        }
        let p = (c as *const C).cast::<i8>().wrapping_add(AHEAD_BYTES);
        // SAFETY: SSE is part of every x86_64 target, so the intrinsic's target feature is
        // present. A prefetch is a hint: it neither faults nor changes memory, whatever the
        // address, so the pointer need not be in bounds (`wrapping_add` makes it without UB).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
            if 2 * std::mem::size_of::<C>() > 64 {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(64));
            }
        }
    }
}

/// bf16 x bf16 dot products with f32 sums through AVX512-BF16's `vdpbf16ps` (32 products per
/// instruction, twice the fused multiply-adds of widened weights), as llama.cpp multiplies bf16
/// weights: the activations are rounded to bf16 once per product.
///
/// This is one of the crate's three uses of `unsafe` (with `prefetch` and `crate::spin`): pulp
/// 0.22 has no AVX512-BF16 token, so the kernel is a `#[target_feature]` function entered after
/// a run-time check of the CPU's features, and reinterprets 32 `u16` values as the intrinsic's
/// `__m512bh` operand (both are 64 bytes of plain data; every bit pattern is a valid value of
/// either).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod bf16dot {
    use std::arch::x86_64::{
        __m512, __m512bh, _mm512_add_ps, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_reduce_add_ps,
        _mm512_setzero_ps,
    };

    /// bf16 values per operand register.
    const W: usize = 32;

    /// Proof that the CPU runs AVX-512F and AVX512-BF16 instructions.
    #[derive(Clone, Copy)]
    pub(super) struct Bf16Dot(());

    impl Bf16Dot {
        pub(super) fn detect() -> Option<Self> {
            (std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16"))
            .then_some(Bf16Dot(()))
        }

        /// `x` rounded to bf16 (to nearest, ties to even), 32 values per instruction.
        pub(super) fn round(self, x: &[f32]) -> Vec<u16> {
            let mut out = vec![0u16; x.len()];
            // SAFETY: as in `rows`.
            unsafe { round_impl(x, &mut out) };
            out
        }

        /// Dot products of the bf16 weight rows `w` (`k` values each) with the `m` bf16 rows of
        /// `x`, into `out` (`m` values per weight row).
        pub(super) fn rows(self, w: &[u16], x: &[u16], m: usize, k: usize, out: &mut [f32]) {
            assert!(x.len() == m * k && out.len() == w.len() / k * m, "bf16 dot: mismatched sizes");
            // SAFETY: `Bf16Dot` exists only where `detect` found both CPU features `rows_impl`
            // enables; everything else it does is bounds-checked slice access.
            unsafe { rows_impl(w, x, m, k, out) }
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    fn rows_impl(w: &[u16], x: &[u16], m: usize, k: usize, out: &mut [f32]) {
        for (o, wrow) in out.chunks_mut(m).zip(w.chunks_exact(k)) {
            // Eight activation rows share each load of the weight row (16 accumulators).
            let mut r = 0;
            while r + 8 <= m {
                o[r..r + 8].copy_from_slice(&dots::<8>(wrow, &x[r * k..(r + 8) * k], k));
                r += 8;
            }
            let rest = &x[r * k..m * k];
            let o = &mut o[r..];
            match m - r {
                7 => o.copy_from_slice(&dots::<7>(wrow, rest, k)),
                6 => o.copy_from_slice(&dots::<6>(wrow, rest, k)),
                5 => o.copy_from_slice(&dots::<5>(wrow, rest, k)),
                4 => o.copy_from_slice(&dots::<4>(wrow, rest, k)),
                3 => o.copy_from_slice(&dots::<3>(wrow, rest, k)),
                2 => o.copy_from_slice(&dots::<2>(wrow, rest, k)),
                1 => o.copy_from_slice(&dots::<1>(wrow, rest, k)),
                _ => {}
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    fn round_impl(x: &[f32], out: &mut [u16]) {
        let (xc, xtail) = x.as_chunks::<W>();
        let (oc, otail) = out.as_chunks_mut::<W>();
        for (o, x) in oc.iter_mut().zip(xc) {
            // SAFETY: `[f32; 32]` and `[__m512; 2]` are both 128 bytes of plain data.
            let [lo, hi] = unsafe { std::mem::transmute::<[f32; W], [__m512; 2]>(*x) };
            // The second operand fills the low half of the result.
            let b = _mm512_cvtne2ps_pbh(hi, lo);
            // SAFETY: as in `load`.
            *o = unsafe { std::mem::transmute::<__m512bh, [u16; W]>(b) };
        }
        for (o, &v) in otail.iter_mut().zip(xtail) {
            *o = half::bf16::from_f32(v).to_bits();
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn load(v: &[u16; W]) -> __m512bh {
        // SAFETY: `[u16; 32]` and `__m512bh` are both 64 bytes of plain data (see the module).
        unsafe { std::mem::transmute::<[u16; W], __m512bh>(*v) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn dots<const R: usize>(w: &[u16], x: &[u16], k: usize) -> [f32; R] {
        let (wc, wtail) = w[..k].as_chunks::<W>();
        // Plain loops, not `std::array::from_fn`: its closures would not inherit this function's
        // target features, and were not inlined.
        let mut xc: [&[[u16; W]]; R] = [&[]; R];
        for (r, xc) in xc.iter_mut().enumerate() {
            *xc = x[r * k..(r + 1) * k].as_chunks::<W>().0;
        }
        let (mut a0, mut a1): ([__m512; R], [__m512; R]) =
            ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]);
        let pairs = wc.len() / 2;
        for i in 0..pairs {
            super::prefetch::ahead(&wc[2 * i]);
            let w0 = load(&wc[2 * i]);
            let w1 = load(&wc[2 * i + 1]);
            for r in 0..R {
                a0[r] = _mm512_dpbf16_ps(a0[r], w0, load(&xc[r][2 * i]));
                a1[r] = _mm512_dpbf16_ps(a1[r], w1, load(&xc[r][2 * i + 1]));
            }
        }
        if wc.len() % 2 == 1 {
            let i = wc.len() - 1;
            let w0 = load(&wc[i]);
            for r in 0..R {
                a0[r] = _mm512_dpbf16_ps(a0[r], w0, load(&xc[r][i]));
            }
        }
        let full = k - wtail.len();
        let mut out = [0f32; R];
        for (r, o) in out.iter_mut().enumerate() {
            let mut s = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
            for (j, &b) in wtail.iter().enumerate() {
                s += super::bf16_to_f32(b) * super::bf16_to_f32(x[r * k + full + j]);
            }
            *o = s;
        }
        out
    }
}

/// The reference the kernel is tested against: each weight row widened into a buffer, then
/// plain dot products.
#[cfg(test)]
fn portable_rows(format: Format, w: &[u16], x: &[f32], m: usize, k: usize, out: &mut [f32]) {
    let mut row = vec![0f32; k];
    for (o, wrow) in out.chunks_mut(m).zip(w.chunks(k)) {
        for (r, &b) in row.iter_mut().zip(wrow) {
            *r = format.widen(b);
        }
        for (o, xrow) in o.iter_mut().zip(x.chunks(k)) {
            *o = row.iter().zip(xrow).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Every row count up to the streaming limit and past it, inner sizes with and without a
    /// tail: equal to the f32 product of the widened weights (same rounding of the weights, f32
    /// sums; only the order of the additions differs).
    #[test]
    fn half_products_match_f32_products_of_the_widened_weights() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            for (m, k, n) in
                [(1, 576, 300), (2, 64, 37), (3, 48, 5), (4, 33, 9), (7, 17, 40), (16, 1, 3), (17, 96, 11)]
            {
                let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
                let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap().to_dtype(dtype).unwrap();
                // Where the CPU has AVX512-BF16, small bf16 products round the activations too.
                let x_seen = if dtype == DType::BF16 && m <= HALF_SMALL_ROWS && bf16_dot_here() {
                    x.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()
                } else {
                    x.clone()
                };
                let want = x_seen.matmul(&w.to_dtype(DType::F32).unwrap().t().unwrap()).unwrap();
                let got = matmul_t_half(&x, &w).unwrap();
                assert_eq!(got.dims(), &[m, n]);
                assert_eq!(got.dtype(), DType::F32);
                let tol = 1e-5 * (k as f32).sqrt() * 4.0;
                let d = max_abs_diff(&got, &want);
                assert!(d < tol, "{dtype:?} {m}x{k}x{n}: {d} >= {tol}");
            }
        }
    }

    #[test]
    fn f16_widening_is_exact_for_every_value() {
        for bits in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}: {got} vs {want}");
            }
            let (got, want) = (bf16_to_f32(bits), half::bf16::from_bits(bits).to_f32());
            // `half` quietens signalling NaNs; a NaN weight stays a NaN either way.
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}");
        }
    }

    #[test]
    fn the_kernel_agrees_with_plain_loops() {
        let (m, k, n) = (5, 70, 6);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for format in [Format::Bf16, Format::F16] {
            let w: Vec<u16> = (0..n * k)
                .map(|i| {
                    let v = ((i * 53 % 97) as f32 - 48.0) / 30.0;
                    match format {
                        Format::Bf16 => half::bf16::from_f32(v).to_bits(),
                        Format::F16 => half::f16::from_f32(v).to_bits(),
                    }
                })
                .collect();
            let (mut a, mut b, mut c) = (vec![0f32; n * m], vec![0f32; n * m], vec![0f32; n * m]);
            rows(format, &w, &x, m, k, &mut a);
            rows_fallback(format, &w, &x, m, k, &mut b);
            portable_rows(format, &w, &x, m, k, &mut c);
            for ((a, b), c) in a.iter().zip(&b).zip(&c) {
                assert!((a - c).abs() < 1e-4 && (b - c).abs() < 1e-4, "{format:?}: {a}, {b} vs {c}");
            }
        }
    }

    fn bf16_dot_here() -> bool {
        #[cfg(target_arch = "x86_64")]
        return bf16dot::Bf16Dot::detect().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// `vdpbf16ps` against plain f32 loops over the same bf16 values: every row count of the
    /// blocked loop (1..=8 and past it) and inner sizes with odd register counts and tails.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_bf16_dot_kernel_agrees_with_plain_loops() {
        let Some(dot) = bf16dot::Bf16Dot::detect() else {
            return; // no AVX512-BF16 on this CPU: the kernel is never selected
        };
        let bf = |v: f32| half::bf16::from_f32(v).to_bits();
        for (m, k, n) in
            [(1, 576, 7), (3, 96, 5), (8, 64, 4), (9, 33, 3), (13, 100, 6), (16, 1536, 2), (5, 31, 3)]
        {
            let x: Vec<u16> = (0..m * k).map(|i| bf(((i * 37 % 101) as f32 - 50.0) / 25.0)).collect();
            let w: Vec<u16> = (0..n * k).map(|i| bf(((i * 53 % 97) as f32 - 48.0) / 30.0)).collect();
            let mut got = vec![0f32; n * m];
            dot.rows(&w, &x, m, k, &mut got);
            for (j, wrow) in w.chunks(k).enumerate() {
                for (r, xrow) in x.chunks(k).enumerate() {
                    let want: f64 = wrow
                        .iter()
                        .zip(xrow)
                        .map(|(&a, &b)| f64::from(bf16_to_f32(a)) * f64::from(bf16_to_f32(b)))
                        .sum();
                    let g = got[j * m + r];
                    assert!(
                        (f64::from(g) - want).abs() < 1e-4 * (k as f64).sqrt(),
                        "{m}x{k}x{n} [{j},{r}]: {g} vs {want}"
                    );
                }
            }
        }
    }

    /// The vectorised rounding of activations to bf16 equals `half`'s (nearest, ties to even),
    /// including values next to ties, tails and special values.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bf16_rounding_of_activations_equals_half() {
        let Some(dot) = bf16dot::Bf16Dot::detect() else {
            return;
        };
        let mut x: Vec<f32> =
            (0..4099u32).map(|i| f32::from_bits(0x3f80_0000 + i * 0x4001 + (i % 3) * 0x7fff)).collect();
        x.extend([0.0, -0.0, 1e-40, -3.3e38, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x3f80_8000)]);
        let got = dot.round(&x);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            assert_eq!(g, half::bf16::from_f32(v).to_bits(), "{i}: {v:e}");
        }
    }

    /// The prefetch runs 4 KiB past the weights it is given, past the end of the allocation at
    /// the end of a matrix: a hint there must neither fault nor change anything.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prefetching_past_the_end_of_the_weights_is_harmless() {
        let w = vec![[1.5f32; 16]; 3];
        for c in &w {
            super::prefetch::ahead(c);
        }
        let h = [[7u16; 32]; 1];
        super::prefetch::ahead(&h[0]);
        assert_eq!((w[2][15], h[0][31]), (1.5, 7));
    }

    #[test]
    fn wrong_inputs_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 8), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 9), DType::BF16, &dev).unwrap();
        assert!(matmul_t_half(&x, &w).unwrap_err().to_string().contains("differ"));
        let w32 = Tensor::zeros((3, 8), DType::F32, &dev).unwrap();
        assert!(matmul_t_half(&x, &w32).unwrap_err().to_string().contains("bf16 or f16"));
    }
}
