//! int8 products: each row quantised to signed 8-bit integers with its own scale, multiplied by
//! AVX-512 VNNI's `vpdpbusd` (four 8-bit products added into each 32-bit lane per instruction:
//! four times the f32 FMA's multiply-adds per cycle on the CPUs that have it), by the same
//! instruction on 256-bit vectors (AVX-VNNI, on CPUs without AVX-512), by AVX2's `vpmaddubsw`
//! (two 8-bit products into a 16-bit lane; about twice the f32 FMA's rate once the 16-bit sums
//! are widened), or by a portable loop elsewhere.
//!
//! # Quantisation
//!
//! A row `x` (as the kernels hold it: shifted, or unit length, see [`crate::engine::bound`]) with
//! largest magnitude `m` gets the scale `s = m / L` (an f32) and the integers
//! `x̂_j = round(x_j · (L / m))`, clamped to `−L..=L`, where `L` is the [`Format`]'s level count
//! (127 with VNNI, 63 with AVX2 alone); `s · x̂` is the row the products use. Nothing requires
//! `s · x̂` to be close to `x` for the answers to be right: the error bound measures the residual
//! `‖x − s·x̂‖` of this very quantisation ([`norm_and_residual`]), so the proof holds whatever the
//! rounding did. A row whose largest magnitude is 0 or below f32's normal range quantises to zeros
//! (scale 1), its residual being the row itself.
//!
//! # Layout and the unsigned operand
//!
//! A panel of `r` rows holds, for each group of four depths `(4g .. 4g + 4)`, `r` 32-bit words:
//! byte `t` of a row's word is its integer at depth `4g + t` (a missing depth is the integer 0).
//! Both instructions multiply unsigned bytes of one operand by signed bytes of the other, so the
//! broadcast A word is made unsigned by an offset `o` and the kernel subtracts `o · Σ_j x̂_j`
//! (each row's sum, kept beside its scale) from `Σ (â + o)·x̂ = â·x̂ + o·Σ x̂`.
//!
//! - [`Format::Wide`] (AVX-512 VNNI and AVX-VNNI): integers in `−127..=127`, stored offset by 128 (`x̂ + 128`, the
//!   unsigned byte the broadcast A word uses as stored; the B vector's bytes are turned back into
//!   signed ones by xor 128). `o = 128`. Nothing saturates: each 32-bit lane adds products of at
//!   most `255 · 127` in wrapping arithmetic, and the true `â·x̂` (at most `127² · d` in
//!   magnitude) fits 32 bits for `d ≤` [`MAX_DEPTH`], so the wrapped sum minus the wrapped
//!   correction is exact.
//! - [`Format::Narrow`] (AVX2): integers in `−63..=63`, stored as signed bytes (B is read as
//!   stored), `o = 64`: the A bytes `â + 64` lie in `1..=127`. `vpmaddubsw` adds two products
//!   into a 16-bit lane that saturates at ±32767; here a lane's pair is at most `2·127·63 =
//!   16002`, so two instructions' lanes (four depths) add to at most 32004 without saturating,
//!   and `vpmaddwd` by ones widens them into 32-bit sums. The integers are exact as above. The
//!   cost is one bit: the residuals are about twice the wide format's, which the bound measures.
//!
//! # The product
//!
//! Each entry is `((â·x̂) as f32 · s_a) · s_x`: the integer sum is exact, and three f32 roundings
//! follow (the conversion, beyond 2²⁴, and two products), a relative error of at most `γ₃` of
//! `|s_a·â · s_x·x̂| ≤ ‖s_a·â‖·‖s_x·x̂‖`, which the bound's conversion term covers. Depth is never
//! split into blocks (an int8 B panel of depth 1536 is 24 KiB: it stays in L1 where the f32 and
//! bf16 panels need blocking), so there is no partial sum to round.

use super::microkernel::{MR, NR};

/// The largest dimension int8 products handle: beyond, `127² · d` may exceed an i32.
pub const MAX_DEPTH: usize = 131_072;

/// Groups of four depths of a panel of depth `d`.
#[inline]
pub fn quads(d: usize) -> usize {
    d.div_ceil(4)
}

/// How int8 panels hold their integers: the range and the stored bytes the kernel in use reads
/// (see the module doc). A process uses one, [`format()`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `−127..=127`, each byte stored offset by 128 (AVX-512 VNNI, AVX-VNNI).
    Wide,
    /// `−63..=63`, each byte the signed integer (AVX2).
    Narrow,
}

impl Format {
    /// The largest integer magnitude, `L`.
    #[inline]
    pub fn levels(self) -> f32 {
        match self {
            Format::Wide => 127.0,
            Format::Narrow => 63.0,
        }
    }

    /// The stored byte of the integer `q`.
    #[inline]
    fn byte(self, q: i8) -> u32 {
        match self {
            Format::Wide => ((q as u8) ^ 0x80) as u32,
            Format::Narrow => q as u8 as u32,
        }
    }

    /// The integer a stored byte holds.
    #[inline]
    fn int(self, byte: u8) -> i32 {
        match self {
            Format::Wide => (byte ^ 0x80) as i8 as i32,
            Format::Narrow => byte as i8 as i32,
        }
    }

    /// A word of four zero integers (the padding of missing depths).
    #[inline]
    fn zeros(self) -> u32 {
        u32::from_ne_bytes([self.byte(0) as u8; 4])
    }
}

/// The format of this process's int8 panels: the one its fastest int8 kernel reads
/// ([`Int8Kernel::detect`]; the portable kernel reads either).
pub fn format() -> Format {
    if native() {
        Format::Wide
    } else {
        Format::Narrow
    }
}

/// The scale of a row whose largest magnitude is `max_abs` and the factor that maps its values
/// to integers of `format`: `(max_abs / L, L / max_abs)`, or `(1, 0)` for a row that quantises
/// to zeros (0, or so small that `L / max_abs` overflows: the scalar and the vector conversions
/// would then disagree on the infinities and NaNs it makes).
#[inline]
pub fn scale_of(max_abs: f32, format: Format) -> (f32, f32) {
    let levels = format.levels();
    let inv = levels / max_abs;
    if max_abs.is_finite() && max_abs >= f32::MIN_POSITIVE && inv.is_finite() {
        (max_abs / levels, inv)
    } else {
        (1.0, 0.0)
    }
}

/// `x` as an integer of `format` for a row whose factor is `inv` (see [`scale_of`]): `x · inv`
/// rounded to the nearest integer, ties to even, as `vcvtps2dq` rounds, then clamped to
/// `−L..=L`.
#[inline]
pub fn quantise(x: f32, inv: f32, format: Format) -> i8 {
    // |x · inv| ≤ 127·(1 + 2⁻²³): adding and subtracting 1.5·2²³ rounds it to an integer, ties
    // to even, in two exact-or-correctly-rounded f32 operations (no call to a libm rint).
    const MAGIC: f32 = 12_582_912.0;
    let y = x * inv;
    let levels = format.levels();
    ((y + MAGIC) - MAGIC).clamp(-levels, levels) as i8
}

/// `(‖x‖, ‖x − s·x̂‖)` in f64 for the row `x` quantised as the packing of `format` does: the
/// norm the bound speaks of and the residual of the quantisation (each `s · x̂_j` is exact in
/// f64). With AVX-512 F the wide format's sums run 16 values at a time (the same integers, the
/// f64 sums in another order: the bound's 1 % slack covers that by far).
pub fn norm_and_residual(x: &[f32], format: Format) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if format == Format::Wide && x.len() >= 16 && super::features::avx512f() {
        // SAFETY: AVX-512 F was detected just now.
        return unsafe { avx512::norm_and_residual(x) };
    }
    norm_and_residual_scalar(x, format)
}

fn norm_and_residual_scalar(x: &[f32], format: Format) -> (f64, f64) {
    let (s, inv) = scale_of(x.iter().fold(0f32, |m, v| m.max(v.abs())), format);
    let (n, r) = squares(x, s, inv, format);
    (n.sqrt(), r.sqrt())
}

/// `(Σ x², Σ (x − s·x̂)²)` in f64 for values of a row whose scale and factor are `s` and `inv`.
fn squares(x: &[f32], s: f32, inv: f32, format: Format) -> (f64, f64) {
    let (mut n, mut r) = (0f64, 0f64);
    for v in x {
        let e = *v as f64 - s as f64 * quantise(*v, inv, format) as f64;
        n += (*v as f64) * (*v as f64);
        r += e * e;
    }
    (n, r)
}

/// Quantises f32 panels (`d × r` each, depth-major: the layout of `super::pack`) into int8 quad
/// panels of `format` (`quads(d) × r` words each) in `words`, with each padded row's scale in
/// `scales` and the sum of its integers in `sums` (panel-major, `r` per panel).
#[allow(clippy::too_many_arguments)]
pub fn to_quads(f32_panels: &[f32], d: usize, r: usize, format: Format, words: &mut Vec<u32>, scales: &mut Vec<f32>, sums: &mut Vec<i32>) {
    let panels = f32_panels.len() / (d * r);
    let d4 = quads(d);
    words.clear();
    words.resize(panels * d4 * r, format.zeros());
    scales.clear();
    sums.clear();
    #[cfg(target_arch = "x86_64")]
    if r <= 16 {
        // AVX-512 VNNI's own check, not `native()`: that also holds for AVX-VNNI without
        // AVX-512.
        if format == Format::Wide && super::features::avx512_vnni() {
            scales.resize(panels * r, 0.0);
            sums.resize(panels * r, 0);
            // SAFETY: AVX-512 F was detected (with VNNI); the slices hold the panels as sized above.
            unsafe { avx512::to_quads(f32_panels, d, r, words, scales, sums) };
            return;
        }
        if super::features::avx2_fma() {
            scales.resize(panels * r, 0.0);
            sums.resize(panels * r, 0);
            // SAFETY: AVX2 was detected; the slices hold the panels as sized above.
            unsafe { avx2::to_quads(f32_panels, d, r, format, words, scales, sums) };
            return;
        }
    }
    for (src, dst) in f32_panels.chunks_exact(d * r).zip(words.chunks_exact_mut(d4 * r)) {
        for lane in 0..r {
            let max_abs = (0..d).fold(0f32, |m, p| m.max(src[p * r + lane].abs()));
            let (s, inv) = scale_of(max_abs, format);
            let mut sum = 0i32;
            for p in 0..d {
                let v = quantise(src[p * r + lane], inv, format);
                sum += v as i32;
                let w = &mut dst[(p / 4) * r + lane];
                let shift = 8 * (p % 4);
                *w = (*w & !(0xff << shift)) | format.byte(v) << shift;
            }
            scales.push(s);
            sums.push(sum);
        }
    }
}

/// Which int8 kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit vectors), [`Format::Wide`]. Only
    /// [`Int8Kernel::detect`] can make it (it holds the proof of the CPU's features), as for
    /// `Avx2`.
    Avx512Vnni(super::features::HasAvx512Vnni),
    /// AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded), [`Format::Wide`]: for CPUs without
    /// AVX-512 (`FAISS_NN_CPU=avxvnni` runs it on a CPU that has both). Its tests also run the
    /// same kernel with the instruction computed by AVX2 instructions
    /// (`avx_vnni::kernel_6x16_emulated`), for CPUs without the instruction.
    AvxVnni(super::features::HasAvxVnni),
    /// AVX2 (`vpmaddubsw` and `vpmaddwd` on 256-bit vectors), [`Format::Narrow`].
    Avx2(super::features::HasAvx2Fma),
    /// Portable Rust (the same integers and roundings, panels of this process's [`format()`];
    /// slow: for tests and machines without AVX2, where the planner does not choose int8).
    Portable,
}

/// The scales and sums of a block's rows: `a` for `MR` rows of A, `b`/`b_sums` for the columns.
#[derive(Debug, Clone, Copy)]
pub struct Scales<'a> {
    /// A's rows' scales (`MR`).
    pub a: &'a [f32],
    /// B's rows' scales (the block's columns).
    pub b: &'a [f32],
    /// B's rows' integer sums (the block's columns).
    pub b_sums: &'a [i32],
}

impl Int8Kernel {
    /// AVX-512 VNNI where the CPU has it, else AVX-VNNI, else AVX2 (within the `FAISS_NN_CPU`
    /// cap, see [`super::features`]).
    pub fn detect() -> Self {
        use super::features::{HasAvx2Fma, HasAvx512Vnni, HasAvxVnni};
        match (HasAvx512Vnni::detect(), HasAvxVnni::detect(), HasAvx2Fma::detect()) {
            (Some(has), _, _) => Int8Kernel::Avx512Vnni(has),
            (None, Some(has), _) => Int8Kernel::AvxVnni(has),
            (None, None, Some(has)) => Int8Kernel::Avx2(has),
            (None, None, None) => Int8Kernel::Portable,
        }
    }

    /// The panel format the kernel reads.
    pub fn format(self) -> Format {
        match self {
            Int8Kernel::Avx512Vnni(_) | Int8Kernel::AvxVnni(_) => Format::Wide,
            Int8Kernel::Avx2(_) => Format::Narrow,
            Int8Kernel::Portable => format(),
        }
    }

    /// `C[0..MR][0..NR] = ((Σ_g â·x̂) as f32 · s_a) · s_x` over the `kq` quads of `a` (`kq × MR`
    /// words) and `b` (`kq × NR` words), with `sc` holding `NR` columns.
    #[inline]
    pub fn run(self, kq: usize, a: &[u32], b: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize) {
        assert!(a.len() >= kq * MR && b.len() >= kq * NR && sc.a.len() >= MR && sc.b.len() >= NR && sc.b_sums.len() >= NR);
        assert!(c.len() >= (MR - 1) * ldc + NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx512Vnni holds the proof that the CPU has AVX-512 F, BW and VNNI (only
            // runtime detection makes one), and the slice lengths were checked above for every
            // access the kernel makes.
            Int8Kernel::Avx512Vnni(_) => unsafe { avx512::kernel_6x16(kq, a.as_ptr(), b.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AvxVnni holds the proof that the CPU has AVX2, FMA and AVX-VNNI, and the
            // slice lengths were checked above.
            Int8Kernel::AvxVnni(_) => unsafe { avx_vnni::kernel_6x16(kq, a.as_ptr(), b.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 holds the proof that the CPU has AVX2 (and FMA), and the slice lengths
            // were checked above.
            Int8Kernel::Avx2(_) => unsafe { avx2::kernel_6x16(kq, a.as_ptr(), b.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            _ => portable(kq, a, b, sc, c, ldc, self.format()),
        }
    }

    /// Two adjacent column panels at once (`b0`, `b1`, `kq × NR` words each; `sc` holding
    /// `2·NR` columns) into columns `0..2·NR` of `c`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn run2(self, kq: usize, a: &[u32], b0: &[u32], b1: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize) {
        assert!(a.len() >= kq * MR && b0.len() >= kq * NR && b1.len() >= kq * NR && sc.a.len() >= MR);
        assert!(sc.b.len() >= 2 * NR && sc.b_sums.len() >= 2 * NR && c.len() >= (MR - 1) * ldc + 2 * NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `run`; the lengths were checked above.
            Int8Kernel::Avx512Vnni(_) => unsafe { avx512::kernel_6x32(kq, a.as_ptr(), b0.as_ptr(), b1.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            _ => {
                self.run(kq, a, b0, sc, c, ldc);
                let rest = Scales { a: sc.a, b: &sc.b[NR..], b_sums: &sc.b_sums[NR..] };
                self.run(kq, a, b1, rest, &mut c[NR..], ldc);
            }
        }
    }
}

/// True where the CPU runs `vpdpbusd`, on 512-bit vectors (AVX-512 VNNI) or on 256-bit ones
/// (AVX-VNNI), within the `FAISS_NN_CPU` cap (see [`super::features`]): the int8 kernels
/// measured ahead of the f32 path on the rows they prove (the planner's `Auto` takes int8 only
/// there, never AVX2's narrow kernel; BENCHMARKS.md, *The f32 kernel in 512 bits, and AVX-VNNI
/// measured*).
pub fn native() -> bool {
    super::features::avx512_vnni() || super::features::avx_vnni()
}

/// The portable kernel: the exact integer sums, then the vector kernels' roundings.
fn portable(kq: usize, a: &[u32], b: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize, format: Format) {
    let mut acc = [[0i32; NR]; MR];
    for g in 0..kq {
        let ap = &a[g * MR..g * MR + MR];
        let bp = &b[g * NR..g * NR + NR];
        for r in 0..MR {
            let qa = ap[r].to_le_bytes().map(|v| format.int(v));
            for j in 0..NR {
                let qb = bp[j].to_le_bytes().map(|v| format.int(v));
                acc[r][j] += (0..4).map(|t| qa[t] * qb[t]).sum::<i32>();
            }
        }
    }
    for r in 0..MR {
        for j in 0..NR {
            c[r * ldc + j] = (acc[r][j] as f32 * sc.a[r]) * sc.b[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Scales, MR, NR};
    use std::arch::x86_64::*;

    /// [`super::norm_and_residual`] of the wide format, 16 values at a time: the largest
    /// magnitude, the row's scale ([`super::scale_of`]), each value's integer (`vcvtps2dq`, to
    /// nearest, ties to even, clamped: as [`super::quantise`] and [`to_quads`]) and the sums of
    /// `x²` and `(x − s·x̂)²` in f64 (`s·x̂` is exact in f64, so `x − s·x̂` rounds once).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn norm_and_residual(x: &[f32]) -> (f64, f64) {
        let full = x.len() / 16 * 16;
        let mut max = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            max = _mm512_max_ps(max, _mm512_abs_ps(_mm512_loadu_ps(x.as_ptr().add(i))));
        }
        let m = x[full..].iter().fold(_mm512_reduce_max_ps(max), |m, v| m.max(v.abs()));
        let (s, inv) = super::scale_of(m, super::Format::Wide);
        let (invv, sv) = (_mm512_set1_ps(inv), _mm512_set1_pd(s as f64));
        let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
        let (mut n, mut r) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for i in (0..full).step_by(16) {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            let q = _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(v, invv))));
            let halves = [
                (_mm512_castps512_ps256(v), _mm512_castsi512_si256(q)),
                (_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))), _mm512_extracti64x4_epi64::<1>(q)),
            ];
            for (vh, qh) in halves {
                let w = _mm512_cvtps_pd(vh);
                n = _mm512_fmadd_pd(w, w, n);
                let e = _mm512_fnmadd_pd(sv, _mm512_cvtepi32_pd(qh), w);
                r = _mm512_fmadd_pd(e, e, r);
            }
        }
        let (tn, tr) = super::squares(&x[full..], s, inv, super::Format::Wide);
        ((_mm512_reduce_add_pd(n) + tn).sqrt(), (_mm512_reduce_add_pd(r) + tr).sqrt())
    }

    /// [`super::to_quads`] 16 lanes at a time: the lanes' largest magnitudes, their scales, and
    /// each quad of depths converted (`vcvtps2dq`: to nearest, ties to even, as
    /// [`super::quantise`]), clamped, summed and packed as offset bytes.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; `src` holds panels of `d × r` values, `words` panels of
    /// `quads(d) × r` words, `scales` and `sums` `r` entries per panel; `r ≤ 16`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn to_quads(src: &[f32], d: usize, r: usize, words: &mut [u32], scales: &mut [f32], sums: &mut [i32]) {
        let d4 = super::quads(d);
        let mask: __mmask16 = if r >= 16 { 0xffff } else { (1u16 << r) - 1 };
        let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
        for (p, (ps, pw)) in src.chunks_exact(d * r).zip(words.chunks_exact_mut(d4 * r)).enumerate() {
            let mut max = _mm512_setzero_ps();
            for q in 0..d {
                max = _mm512_max_ps(max, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, ps.as_ptr().add(q * r))));
            }
            let (mut s, mut inv) = ([0f32; 16], [0f32; 16]);
            let m: [f32; 16] = std::mem::transmute(max);
            for lane in 0..16 {
                (s[lane], inv[lane]) = super::scale_of(m[lane], super::Format::Wide);
            }
            let invv = _mm512_loadu_ps(inv.as_ptr());
            let mut sum = _mm512_setzero_si512();
            for g in 0..d4 {
                let mut w = _mm512_setzero_si512();
                for t in 0..4 {
                    let q = 4 * g + t;
                    let v = if q < d {
                        let x = _mm512_maskz_loadu_ps(mask, ps.as_ptr().add(q * r));
                        _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(x, invv))))
                    } else {
                        _mm512_setzero_si512()
                    };
                    sum = _mm512_add_epi32(sum, v);
                    let byte = _mm512_and_si512(_mm512_add_epi32(v, _mm512_set1_epi32(128)), _mm512_set1_epi32(0xff));
                    w = _mm512_or_si512(w, _mm512_sllv_epi32(byte, _mm512_set1_epi32(8 * t as i32)));
                }
                _mm512_mask_storeu_epi32(pw.as_mut_ptr().add(g * r).cast(), mask, w);
            }
            let sums_v: [i32; 16] = std::mem::transmute(sum);
            scales[p * r..(p + 1) * r].copy_from_slice(&s[..r]);
            sums[p * r..(p + 1) * r].copy_from_slice(&sums_v[..r]);
        }
    }

    /// The signed bytes of a B vector stored offset by 128.
    #[inline(always)]
    unsafe fn signed(p: *const u32) -> __m512i {
        _mm512_xor_si512(_mm512_loadu_si512(p.cast()), _mm512_set1_epi8(-128))
    }

    /// Rows `0..MR` of accumulators into 16 columns of `c`: the correction, the conversion and
    /// the two scales, as `super::entry`.
    #[inline(always)]
    unsafe fn store(acc: &[__m512i; MR], sums: *const i32, sb: *const f32, sa: *const f32, c: *mut f32, ldc: usize) {
        let corr = _mm512_slli_epi32::<7>(_mm512_loadu_si512(sums.cast()));
        let sbv = _mm512_loadu_ps(sb);
        for (r, v) in acc.iter().enumerate() {
            let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(*v, corr));
            _mm512_storeu_ps(c.add(r * ldc), _mm512_mul_ps(_mm512_mul_ps(f, _mm512_set1_ps(*sa.add(r))), sbv));
        }
    }

    /// A 6 × 32 block from two column panels: 12 accumulators, one broadcast of A per two
    /// `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI; `a` must be valid for `kq·MR` reads, `b0`
    /// and `b1` for `kq·NR` reads each, `sc` for `MR` A scales and `2·NR` B scales and sums, and
    /// `c` for writes of rows `0..MR` of 32 elements at stride `ldc`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn kernel_6x32(kq: usize, a: *const u32, b0: *const u32, b1: *const u32, sc: Scales<'_>, c: *mut f32, ldc: usize) {
        let mut l = [_mm512_setzero_si512(); MR];
        let mut h = [_mm512_setzero_si512(); MR];
        let (mut ap, mut p0, mut p1) = (a, b0, b1);
        for _ in 0..kq {
            let v0 = signed(p0);
            let v1 = signed(p1);
            for r in 0..MR {
                let x = _mm512_set1_epi32(*ap.add(r) as i32);
                l[r] = _mm512_dpbusd_epi32(l[r], x, v0);
                h[r] = _mm512_dpbusd_epi32(h[r], x, v1);
            }
            ap = ap.add(MR);
            p0 = p0.add(NR);
            p1 = p1.add(NR);
        }
        store(&l, sc.b_sums.as_ptr(), sc.b.as_ptr(), sc.a.as_ptr(), c, ldc);
        store(&h, sc.b_sums.as_ptr().add(NR), sc.b.as_ptr().add(NR), sc.a.as_ptr(), c.add(NR), ldc);
    }

    /// Two chains of accumulators (even and odd quads) to hide `vpdpbusd`'s latency.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI; `a` must be valid for `kq·MR` reads, `b` for
    /// `kq·NR` reads, `sc` for `MR` A scales and `NR` B scales and sums, and `c` for writes of
    /// rows `0..MR` of 16 elements at stride `ldc`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn kernel_6x16(kq: usize, a: *const u32, b: *const u32, sc: Scales<'_>, c: *mut f32, ldc: usize) {
        let mut e = [_mm512_setzero_si512(); MR];
        let mut o = [_mm512_setzero_si512(); MR];
        let (mut ap, mut bp) = (a, b);
        let mut g = 0;
        while g + 2 <= kq {
            let b0 = signed(bp);
            let b1 = signed(bp.add(NR));
            for r in 0..MR {
                e[r] = _mm512_dpbusd_epi32(e[r], _mm512_set1_epi32(*ap.add(r) as i32), b0);
                o[r] = _mm512_dpbusd_epi32(o[r], _mm512_set1_epi32(*ap.add(MR + r) as i32), b1);
            }
            ap = ap.add(2 * MR);
            bp = bp.add(2 * NR);
            g += 2;
        }
        if g < kq {
            let b0 = signed(bp);
            for (r, acc) in e.iter_mut().enumerate() {
                *acc = _mm512_dpbusd_epi32(*acc, _mm512_set1_epi32(*ap.add(r) as i32), b0);
            }
        }
        for r in 0..MR {
            e[r] = _mm512_add_epi32(e[r], o[r]);
        }
        store(&e, sc.b_sums.as_ptr(), sc.b.as_ptr(), sc.a.as_ptr(), c, ldc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Format, Scales, MR, NR};
    use std::arch::x86_64::*;

    /// [`super::to_quads`] 8 lanes at a time, in either format (as the AVX-512 packing:
    /// `vcvtps2dq` rounds to nearest, ties to even, as [`super::quantise`]; the stored byte is
    /// the integer plus the format's offset, 128 or 0, modulo 256, as [`Format::byte`]).
    ///
    /// # Safety
    /// The CPU must support AVX2; `src` holds panels of `d × r` values, `words` panels of
    /// `quads(d) × r` words, `scales` and `sums` `r` entries per panel; `r ≤ 16`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn to_quads(src: &[f32], d: usize, r: usize, format: Format, words: &mut [u32], scales: &mut [f32], sums: &mut [i32]) {
        let d4 = super::quads(d);
        let levels = format.levels() as i32;
        let (lo, hi) = (_mm256_set1_epi32(-levels), _mm256_set1_epi32(levels));
        let offset = _mm256_set1_epi32(format.byte(0) as i32);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        for (p, (ps, pw)) in src.chunks_exact(d * r).zip(words.chunks_exact_mut(d4 * r)).enumerate() {
            for l0 in (0..r).step_by(8) {
                let n = (r - l0).min(8);
                let lanes: [i32; 8] = std::array::from_fn(|i| if i < n { -1 } else { 0 });
                let mask = _mm256_loadu_si256(lanes.as_ptr().cast());
                let at = |q: usize| _mm256_maskload_ps(ps.as_ptr().add(q * r + l0), mask);
                let mut max = _mm256_setzero_ps();
                for q in 0..d {
                    max = _mm256_max_ps(max, _mm256_and_ps(at(q), abs));
                }
                let (mut s, mut inv) = ([0f32; 8], [0f32; 8]);
                let m: [f32; 8] = std::mem::transmute(max);
                for lane in 0..8 {
                    (s[lane], inv[lane]) = super::scale_of(m[lane], format);
                }
                let invv = _mm256_loadu_ps(inv.as_ptr());
                let mut sum = _mm256_setzero_si256();
                for g in 0..d4 {
                    let mut w = _mm256_setzero_si256();
                    for t in 0..4 {
                        let q = 4 * g + t;
                        // A missing depth is the integer 0 (the stored byte 128 in the wide format).
                        let v = if q < d {
                            _mm256_min_epi32(hi, _mm256_max_epi32(lo, _mm256_cvtps_epi32(_mm256_mul_ps(at(q), invv))))
                        } else {
                            _mm256_setzero_si256()
                        };
                        sum = _mm256_add_epi32(sum, v);
                        let byte = _mm256_and_si256(_mm256_add_epi32(v, offset), _mm256_set1_epi32(0xff));
                        w = _mm256_or_si256(w, _mm256_sllv_epi32(byte, _mm256_set1_epi32(8 * t as i32)));
                    }
                    _mm256_maskstore_epi32(pw.as_mut_ptr().add(g * r + l0).cast(), mask, w);
                }
                let sums_v: [i32; 8] = std::mem::transmute(sum);
                scales[p * r + l0..p * r + l0 + n].copy_from_slice(&s[..n]);
                sums[p * r + l0..p * r + l0 + n].copy_from_slice(&sums_v[..n]);
            }
        }
    }

    /// Three rows of A (from `a`, a panel's word column: stride `MR` per quad) against the 16
    /// columns of `b` (stride `NR`): per pair of quads, for each row and each half of the
    /// columns, two `vpmaddubsw` (A's bytes offset by 64, B's signed), their 16-bit sum (at most
    /// 32004: no saturation) and one `vpmaddwd` by ones into the 32-bit accumulator. Three rows
    /// keep the six accumulators, two broadcasts and two products within AVX2's 16 registers.
    ///
    /// # Safety
    /// The CPU must support AVX2; `a` must be valid for reads of `kq` quads at stride `MR`
    /// (three words each), `b` for `kq·NR` reads.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn rows3(kq: usize, a: *const u32, b: *const u32) -> [[__m256i; 2]; 3] {
        let off = _mm256_set1_epi8(64);
        let ones = _mm256_set1_epi16(1);
        let ld = |p: *const u32| _mm256_loadu_si256(p.cast());
        let ua = |p: *const u32| _mm256_add_epi8(_mm256_set1_epi32(*p as i32), off);
        let mut acc = [[_mm256_setzero_si256(); 2]; 3];
        let mut g = 0;
        while g + 2 <= kq {
            let (b0, b1) = (b.add(g * NR), b.add((g + 1) * NR));
            for (r, row) in acc.iter_mut().enumerate() {
                let u0 = ua(a.add(g * MR + r));
                let u1 = ua(a.add((g + 1) * MR + r));
                for (h, v) in row.iter_mut().enumerate() {
                    let p = _mm256_add_epi16(_mm256_maddubs_epi16(u0, ld(b0.add(8 * h))), _mm256_maddubs_epi16(u1, ld(b1.add(8 * h))));
                    *v = _mm256_add_epi32(*v, _mm256_madd_epi16(p, ones));
                }
            }
            g += 2;
        }
        if g < kq {
            let b0 = b.add(g * NR);
            for (r, row) in acc.iter_mut().enumerate() {
                let u0 = ua(a.add(g * MR + r));
                for (h, v) in row.iter_mut().enumerate() {
                    *v = _mm256_add_epi32(*v, _mm256_madd_epi16(_mm256_maddubs_epi16(u0, ld(b0.add(8 * h))), ones));
                }
            }
        }
        acc
    }

    /// Rows `r0..r0 + acc.len()` of accumulators into 16 columns of `c`: the correction (the
    /// offset of A's bytes, `2^SHIFT`, times B's sums: 64 in the narrow format, 128 in the wide
    /// one), the conversion and the two scales, as the portable kernel rounds.
    ///
    /// # Safety
    /// The CPU must support AVX2; `sc` must hold rows `r0..r0 + acc.len()` of A's scales and 16
    /// columns, `c` be valid for writes of those rows' 16 elements at stride `ldc`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn store<const SHIFT: i32>(acc: &[[__m256i; 2]], r0: usize, sc: &Scales<'_>, c: *mut f32, ldc: usize) {
        for h in 0..2 {
            let corr = _mm256_slli_epi32::<SHIFT>(_mm256_loadu_si256(sc.b_sums.as_ptr().add(8 * h).cast()));
            let sbv = _mm256_loadu_ps(sc.b.as_ptr().add(8 * h));
            for (r, row) in acc.iter().enumerate() {
                let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(row[h], corr));
                let sa = _mm256_set1_ps(sc.a[r0 + r]);
                _mm256_storeu_ps(c.add((r0 + r) * ldc + 8 * h), _mm256_mul_ps(_mm256_mul_ps(f, sa), sbv));
            }
        }
    }

    /// A 6 × 16 block, three rows at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2; `a` must be valid for `kq·MR` reads, `b` for `kq·NR` reads,
    /// `sc` for `MR` A scales and `NR` B scales and sums, and `c` for writes of rows `0..MR` of
    /// 16 elements at stride `ldc`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn kernel_6x16(kq: usize, a: *const u32, b: *const u32, sc: Scales<'_>, c: *mut f32, ldc: usize) {
        for r0 in [0, 3] {
            let acc = rows3(kq, a.add(r0), b);
            store::<6>(&acc, r0, &sc, c, ldc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx_vnni {
    use super::{Scales, MR, NR};
    use std::arch::x86_64::*;

    /// A 6 × 16 block of the wide format on 256-bit vectors: per quad, B's 16 words as two
    /// vectors of signed bytes (stored offset by 128: xor 128), each row's A word broadcast, and
    /// `$dot` (`vpdpbusd`: four unsigned-by-signed byte products added into each 32-bit lane,
    /// wrapping, never saturating) into 12 accumulators, which with the two B vectors and the
    /// broadcast fill AVX2's 16 registers. Twelve independent chains hide the instruction's
    /// latency (at most 5 cycles at two per cycle). `$dot` is the instruction, or in tests the
    /// same sums from AVX2 instructions (`dpbusd_avx2`, below): one body for both, so the emulated
    /// run checks everything but the instruction itself.
    macro_rules! kernel_6x16 {
        ($(#[$doc:meta])* $name:ident, $features:literal, $dot:path) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub unsafe fn $name(kq: usize, a: *const u32, b: *const u32, sc: Scales<'_>, c: *mut f32, ldc: usize) {
                let flip = _mm256_set1_epi8(-128);
                let mut acc = [[_mm256_setzero_si256(); 2]; MR];
                let (mut ap, mut bp) = (a, b);
                for _ in 0..kq {
                    let b0 = _mm256_xor_si256(_mm256_loadu_si256(bp.cast()), flip);
                    let b1 = _mm256_xor_si256(_mm256_loadu_si256(bp.add(8).cast()), flip);
                    for (r, row) in acc.iter_mut().enumerate() {
                        let x = _mm256_set1_epi32(*ap.add(r) as i32);
                        row[0] = $dot(row[0], x, b0);
                        row[1] = $dot(row[1], x, b1);
                    }
                    ap = ap.add(MR);
                    bp = bp.add(NR);
                }
                super::avx2::store::<7>(&acc, 0, &sc, c, ldc);
            }
        };
    }

    kernel_6x16!(
        /// The AVX-VNNI kernel (see the macro above).
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and AVX-VNNI; `a` must be valid for `kq·MR` reads, `b` for
        /// `kq·NR` reads, `sc` for `MR` A scales and `NR` B scales and sums, and `c` for writes
        /// of rows `0..MR` of 16 elements at stride `ldc`.
        kernel_6x16,
        "avx2,fma,avxvnni",
        _mm256_dpbusd_avx_epi32
    );

    #[cfg(test)]
    kernel_6x16!(
        /// The AVX-VNNI kernel's body with `vpdpbusd` computed by AVX2 instructions, for CPUs
        /// without AVX-VNNI (tests only: it is slower than the f32 kernel).
        ///
        /// # Safety
        /// As [`kernel_6x16`], with AVX2 in place of AVX-VNNI.
        kernel_6x16_emulated,
        "avx2",
        dpbusd_avx2
    );

    /// `vpdpbusd`'s lanes from AVX2 instructions: each 32-bit lane of `acc` plus the four
    /// products of `u`'s unsigned bytes by `s`'s signed bytes in that lane, wrapping. The even
    /// bytes of each 16-bit half (zero- and sign-extended) and the odd ones go through
    /// `vpmaddwd`, whose two products per lane (at most 255 · 128 each) sum exactly in 32 bits;
    /// wrapping additions are associative, so the order of the sums does not matter.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(test)]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn dpbusd_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let low = _mm256_set1_epi16(0x00ff);
        let (u_even, u_odd) = (_mm256_and_si256(u, low), _mm256_srli_epi16::<8>(u));
        let (s_even, s_odd) = (_mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(s)), _mm256_srai_epi16::<8>(s));
        _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The emulation equals the instruction's definition on every byte value of `u` and
        /// `s` (each pair once per lane position), with accumulators that wrap.
        #[test]
        fn the_emulated_vpdpbusd_equals_its_definition() {
            if super::super::super::features::HasAvx2Fma::detect().is_none() {
                eprintln!("no AVX2 here (CPU or FAISS_NN_CPU): nothing to check");
                return;
            }
            for hi in 0..=255u8 {
                let u: [u8; 32] = std::array::from_fn(|i| hi.wrapping_add((i as u8).wrapping_mul(37)));
                for s0 in (0..=255u8).step_by(5) {
                    let s: [i8; 32] = std::array::from_fn(|i| s0.wrapping_add((i as u8).wrapping_mul(101)) as i8);
                    let acc: [i32; 8] = std::array::from_fn(|i| [i32::MAX, i32::MIN, 0, -1, 123_456, -7, i32::MAX - 1000, 1][i]);
                    let want: [i32; 8] = std::array::from_fn(|l| (0..4).fold(acc[l], |sum, t| sum.wrapping_add(u[4 * l + t] as i32 * s[4 * l + t] as i32)));
                    // SAFETY: AVX2 was detected; the arrays are 32 bytes.
                    let got: [i32; 8] = unsafe {
                        let v = |p: *const u8| _mm256_loadu_si256(p.cast());
                        std::mem::transmute(dpbusd_avx2(v(acc.as_ptr().cast()), v(u.as_ptr()), v(s.as_ptr().cast())))
                    };
                    assert_eq!(got, want, "u from {hi}, s from {s0}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &[f32], d: usize, r: usize, format: Format) -> (Vec<u32>, Vec<f32>, Vec<i32>) {
        let (mut w, mut s, mut u) = (Vec::new(), Vec::new(), Vec::new());
        to_quads(v, d, r, format, &mut w, &mut s, &mut u);
        (w, s, u)
    }

    /// A kernel under test: a SIMD kernel this CPU runs (with its own format), the AVX-VNNI
    /// kernel's body with the instruction emulated by AVX2 (wide format), or the portable one
    /// reading either format.
    #[derive(Debug, Clone, Copy)]
    enum Under {
        Simd(Int8Kernel),
        #[cfg(target_arch = "x86_64")]
        EmulatedVnni(super::super::features::HasAvx2Fma),
        Portable(Format),
    }

    impl Under {
        fn format(self) -> Format {
            match self {
                Under::Simd(k) => k.format(),
                #[cfg(target_arch = "x86_64")]
                Under::EmulatedVnni(_) => Format::Wide,
                Under::Portable(f) => f,
            }
        }

        fn run(self, kq: usize, a: &[u32], b: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize) {
            match self {
                Under::Simd(k) => k.run(kq, a, b, sc, c, ldc),
                #[cfg(target_arch = "x86_64")]
                Under::EmulatedVnni(_) => {
                    assert!(a.len() >= kq * MR && b.len() >= kq * NR && sc.a.len() >= MR && sc.b.len() >= NR && sc.b_sums.len() >= NR);
                    assert!(c.len() >= (MR - 1) * ldc + NR);
                    // SAFETY: the variant holds the proof of AVX2; the lengths were checked above.
                    unsafe { avx_vnni::kernel_6x16_emulated(kq, a.as_ptr(), b.as_ptr(), sc, c.as_mut_ptr(), ldc) }
                }
                Under::Portable(f) => portable(kq, a, b, sc, c, ldc, f),
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn run2(self, kq: usize, a: &[u32], b0: &[u32], b1: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize) {
            match self {
                Under::Simd(k) => k.run2(kq, a, b0, b1, sc, c, ldc),
                _ => {
                    self.run(kq, a, b0, sc, c, ldc);
                    let rest = Scales { a: sc.a, b: &sc.b[NR..], b_sums: &sc.b_sums[NR..] };
                    self.run(kq, a, b1, rest, &mut c[NR..], ldc);
                }
            }
        }
    }

    /// The portable kernel in both formats, the VNNI ones where the CPU runs them, AVX2's and
    /// the emulated AVX-VNNI one where it has AVX2.
    fn kernels() -> Vec<Under> {
        use super::super::features::{HasAvx2Fma, HasAvx512Vnni, HasAvxVnni};
        let mut v = vec![Under::Portable(Format::Wide), Under::Portable(Format::Narrow)];
        if let Some(has) = HasAvx512Vnni::detect() {
            v.push(Under::Simd(Int8Kernel::Avx512Vnni(has)));
        }
        if let Some(has) = HasAvxVnni::detect() {
            v.push(Under::Simd(Int8Kernel::AvxVnni(has)));
        }
        if let Some(has) = HasAvx2Fma::detect() {
            v.push(Under::Simd(Int8Kernel::Avx2(has)));
            #[cfg(target_arch = "x86_64")]
            v.push(Under::EmulatedVnni(has));
        }
        v
    }

    /// Every kernel gives `((â·x̂) as f32 · s_a) · s_x` from the integers the packing chose,
    /// computed here one entry at a time, for every depth remainder and extreme integers (±L,
    /// where the wide format's offset bytes reach 0 and 255 and the narrow format's 16-bit sums
    /// their largest).
    #[test]
    fn kernels_compute_the_integer_products_exactly() {
        for (d, kernel) in [1usize, 3, 4, 5, 8, 77, 384, 1000].into_iter().flat_map(|d| kernels().into_iter().map(move |k| (d, k))) {
            let format = kernel.format();
            let a: Vec<f32> = (0..d * MR).map(|i| if i % 7 == 0 { -3.0 } else { ((i as f32) * 0.37).sin() }).collect();
            let b: Vec<f32> = (0..d * 2 * NR).map(|i| if i % 5 == 0 { 2.0 } else { ((i as f32) * 0.11).cos() }).collect();
            let (pa, sa, _) = pack(&a, d, MR, format);
            let (pb, sb, ub) = pack(&b, d, NR, format);
            let d4 = quads(d);
            let int = |v: &[f32], r: usize, lane: usize, p: usize| {
                let m = (0..d).fold(0f32, |m, q| m.max(v[q * r + lane].abs()));
                quantise(v[p * r + lane], scale_of(m, format).1, format) as i32
            };
            let ldc = 2 * NR + 3;
            let mut want = vec![0f32; MR * ldc];
            for r in 0..MR {
                for j in 0..2 * NR {
                    let (panel, lane) = (j / NR, j % NR);
                    let bv = &b[panel * d * NR..(panel + 1) * d * NR];
                    let dot: i32 = (0..d).map(|p| int(&a, MR, r, p) * int(bv, NR, lane, p)).sum();
                    want[r * ldc + j] = (dot as f32 * sa[r]) * sb[j];
                }
            }
            let (b0, b1) = pb.split_at(d4 * NR);
            let sc = Scales { a: &sa, b: &sb, b_sums: &ub };
            let mut c = vec![0f32; MR * ldc];
            kernel.run2(d4, &pa, b0, b1, sc, &mut c, ldc);
            let mut one = vec![0f32; MR * ldc];
            kernel.run(d4, &pa, b0, sc, &mut one, ldc);
            for r in 0..MR {
                assert_eq!(&c[r * ldc..r * ldc + 2 * NR], &want[r * ldc..r * ldc + 2 * NR], "{kernel:?} d {d} row {r}");
                assert_eq!(&one[r * ldc..r * ldc + NR], &want[r * ldc..r * ldc + NR], "{kernel:?} d {d} row {r}");
            }
        }
    }

    /// The narrow format's worst case for the 16-bit sums: every A integer −63 (the unsigned
    /// byte 1) or 63 (127) against B integers ±63, so that each pair of products reaches
    /// ±16002 and each four ±32004; the AVX2 kernel must equal the exact sums.
    #[test]
    fn the_narrow_sums_do_not_saturate() {
        let Some(has) = super::super::features::HasAvx2Fma::detect() else {
            eprintln!("no AVX2 here (CPU or FAISS_NN_CPU): nothing to check");
            return;
        };
        for (d, sign_a, sign_b) in [(8usize, 1.0f32, 1.0f32), (8, 1.0, -1.0), (9, -1.0, 1.0), (384, -1.0, -1.0), (1000, 1.0, -1.0)] {
            let a: Vec<f32> = vec![sign_a; d * MR];
            let b: Vec<f32> = vec![sign_b; d * NR];
            let f = Format::Narrow;
            let ((pa, sa, _), (pb, sb, ub)) = (pack(&a, d, MR, f), pack(&b, d, NR, f));
            let mut c = vec![0f32; MR * NR];
            Int8Kernel::Avx2(has).run(quads(d), &pa, &pb, Scales { a: &sa, b: &sb, b_sums: &ub }, &mut c, NR);
            let want = ((63 * 63 * d as i32) as f32 * sa[0]) * sb[0] * (sign_a * sign_b);
            assert!(c.iter().all(|v| *v == want), "d {d}: {} vs {want}", c[0]);
        }
    }

    /// The wide format's worst case: ±127 against ±127 over [`MAX_DEPTH`] depths, where the
    /// offset sums `Σ (â + 128)·x̂` pass 2³¹ and wrap; the correction must bring every wide
    /// kernel (the emulated AVX-VNNI one included) back to the exact `±127² · d`.
    #[test]
    fn the_wide_sums_wrap_back_exactly() {
        for kernel in kernels().into_iter().filter(|k| k.format() == Format::Wide) {
            for (d, sign_a, sign_b) in [(MAX_DEPTH, 1.0f32, 1.0f32), (MAX_DEPTH, -1.0, 1.0), (MAX_DEPTH - 3, 1.0, -1.0), (MAX_DEPTH, -1.0, -1.0)] {
                let a: Vec<f32> = vec![sign_a; d * MR];
                let b: Vec<f32> = vec![sign_b; d * NR];
                let ((pa, sa, _), (pb, sb, ub)) = (pack(&a, d, MR, Format::Wide), pack(&b, d, NR, Format::Wide));
                let mut c = vec![0f32; MR * NR];
                kernel.run(quads(d), &pa, &pb, Scales { a: &sa, b: &sb, b_sums: &ub }, &mut c, NR);
                let dot = 127 * 127 * d as i64 * (sign_a * sign_b) as i64;
                assert!(dot.abs() < i32::MAX as i64);
                let want = (dot as f32 * sa[0]) * sb[0];
                let wrong = c.iter().position(|v| *v != want);
                assert_eq!(wrong, None, "{kernel:?} d {d}: entry {:?} is {:?}, not {want}", wrong, wrong.map(|i| c[i]));
            }
        }
    }

    #[test]
    fn quantisation_uses_the_full_range_and_measures_its_residual() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 1e-3];
        let (w, n8) = (Format::Wide, Format::Narrow);
        assert_eq!(scale_of(1.0, w), (1.0 / 127.0, 127.0));
        assert_eq!(scale_of(1.0, n8), (1.0 / 63.0, 63.0));
        assert_eq!(quantise(-1.0, 127.0, w), -127);
        assert_eq!(quantise(-1.0, 63.0, n8), -63);
        assert_eq!(quantise(0.5, 127.0, w), 64); // 63.5 ties to even
        assert_eq!(quantise(0.5, 63.0, n8), 32); // 31.5 ties to even
        for format in [w, n8] {
            let (s, inv) = scale_of(1.0, format);
            let (n, r) = norm_and_residual(&x, format);
            let want: f64 = x.iter().map(|v| (*v as f64 - s as f64 * quantise(*v, inv, format) as f64).powi(2)).sum::<f64>().sqrt();
            assert_eq!(r, want);
            assert!((n - x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()).abs() < 1e-15);
            // Zero and denormal rows quantise to zeros: the residual is the row.
            assert_eq!(norm_and_residual(&[0.0, 0.0], format), (0.0, 0.0));
            let tiny = f32::MIN_POSITIVE / 4.0;
            assert_eq!(norm_and_residual(&[tiny], format).1, tiny as f64);
            // L / 1e-37 overflows f32: zeros too.
            assert_eq!(scale_of(1e-37, format), (1.0, 0.0));
            assert_eq!(norm_and_residual(&[1e-37, -1e-37], format).1, (2.0 * (1e-37f32 as f64).powi(2)).sqrt());
            assert_eq!(scale_of(f32::INFINITY, format), (1.0, 0.0));
        }
        // The narrow format's residual is larger: one bit fewer.
        let row: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.731).sin()).collect();
        assert!(norm_and_residual(&row, n8).1 > 1.5 * norm_and_residual(&row, w).1);
    }

    /// The vector norm and residual (AVX-512 F, rows of 16 values or more) equal the scalar
    /// sums up to the f64 summation order, on rows with a dominant component, values at a
    /// rounding tie, tails of every length, and zero rows.
    #[test]
    fn the_vector_residual_equals_the_scalar_one() {
        for d in [16usize, 17, 31, 64, 77, 384, 1000] {
            let mut x: Vec<f32> = (0..d).map(|i| ((i as f32) * 0.37).sin() * 10f32.powi(i as i32 % 5 - 2)).collect();
            x[d / 2] = 250.0;
            x[1] = 250.0 * 0.5 / 127.0; // x·inv = 0.5: a tie, to even (0)
            let (n, r) = norm_and_residual(&x, Format::Wide);
            let (n0, r0) = norm_and_residual_scalar(&x, Format::Wide);
            assert!((n - n0).abs() <= 1e-13 * n0 && (r - r0).abs() <= 1e-13 * r0, "d {d}: {n} {n0} {r} {r0}");
        }
        assert_eq!(norm_and_residual(&[0.0; 40], Format::Wide), (0.0, 0.0));
    }

    /// The vector packings equal the scalar one (ties at .5 steps, lanes below 8 and 16, odd
    /// depths), in both formats.
    #[test]
    fn the_vector_packing_equals_the_scalar_one() {
        let cases = [(7usize, 6usize, 1e3f32), (64, 16, 1e3), (3, 16, 1e3), (10, 6, 1e3), (384, 16, 1e3), (9, 16, 1e-37), (5, 6, 1e-39), (11, 12, 1.0)];
        for ((d, r, mag), format) in cases.into_iter().flat_map(|c| [(c, Format::Wide), (c, Format::Narrow)]) {
            let v: Vec<f32> =
                (0..d * r * 3).map(|i| if i % 9 == 0 { ((i % 254) as f32 - 127.0 + 0.5) * mag / 1e3 } else { ((i as f32) * 0.731).sin() * mag }).collect();
            let fast = pack(&v, d, r, format);
            let d4 = quads(d);
            let (mut words, mut scales, mut sums) = (vec![format.zeros(); 3 * d4 * r], Vec::new(), Vec::new());
            for (p, panel) in v.chunks_exact(d * r).enumerate() {
                for lane in 0..r {
                    let (s, inv) = scale_of((0..d).fold(0f32, |m, q| m.max(panel[q * r + lane].abs())), format);
                    let mut sum = 0;
                    for q in 0..d {
                        let x = quantise(panel[q * r + lane], inv, format);
                        sum += x as i32;
                        let w = &mut words[p * d4 * r + (q / 4) * r + lane];
                        *w = (*w & !(0xff << (8 * (q % 4)))) | format.byte(x) << (8 * (q % 4));
                    }
                    scales.push(s);
                    sums.push(sum);
                }
            }
            assert_eq!(fast, (words, scales, sums), "d {d} r {r} {format:?}");
        }
    }

    #[test]
    fn packed_sums_and_scales_follow_the_lanes() {
        let (d, r) = (6usize, 3usize);
        let v: Vec<f32> = (0..d * r).map(|i| i as f32 - 7.0).collect();
        for (format, zero) in [(Format::Wide, 0x8080), (Format::Narrow, 0)] {
            let (w, s, u) = pack(&v, d, r, format);
            assert_eq!(w.len(), quads(d) * r);
            for lane in 0..r {
                let m = (0..d).fold(0f32, |m, p| m.max(v[p * r + lane].abs()));
                let (sc, inv) = scale_of(m, format);
                assert_eq!(s[lane], sc);
                assert_eq!(u[lane], (0..d).map(|p| quantise(v[p * r + lane], inv, format) as i32).sum::<i32>());
                // Depths 6 and 7 are padding: the stored byte of 0.
                assert_eq!(w[r + lane] >> 16, zero);
            }
        }
    }
}
