//! int8 products: each row quantised to signed 8-bit integers with its own scale, multiplied by
//! AVX-512 VNNI's `vpdpbusd` (four 8-bit products added into each 32-bit lane per instruction:
//! four times the f32 FMA's multiply-adds per cycle on the CPUs that have it), or by a portable
//! loop elsewhere.
//!
//! # Quantisation
//!
//! A row `x` (as the kernels hold it: shifted, or unit length, see [`crate::engine::bound`]) with
//! largest magnitude `m` gets the scale `s = m / 127` (an f32) and the integers
//! `x̂_j = round(x_j · (127 / m))`, clamped to `−127..=127`; `s · x̂` is the row the products use.
//! Nothing requires `s · x̂` to be close to `x` for the answers to be right: the error bound
//! measures the residual `‖x − s·x̂‖` of this very quantisation ([`norm_and_residual`]), so the
//! proof holds whatever the rounding did. A row whose largest magnitude is 0 or below f32's normal
//! range quantises to zeros (scale 1), its residual being the row itself.
//!
//! # Layout and the unsigned operand
//!
//! A panel of `r` rows holds, for each group of four depths `(4g .. 4g + 4)`, `r` 32-bit words:
//! byte `t` of a row's word is its integer at depth `4g + t`, stored offset by 128 (`x̂ + 128`,
//! an unsigned byte; a missing depth is the integer 0). `vpdpbusd` multiplies unsigned bytes of
//! one operand by signed bytes of the other: the broadcast A word is used as stored (`â + 128`),
//! the B vector's bytes are turned back into signed ones (xor 128). So the instruction sums
//! `Σ (â + 128)·x̂ = â·x̂ + 128·Σ x̂`, and the kernel subtracts `128 · Σ_j x̂_j` (each row's sum,
//! kept beside its scale). Nothing saturates: each 32-bit lane adds products of at most
//! `255 · 127` in wrapping arithmetic, and the true `â·x̂` (at most `127² · d` in magnitude) fits
//! 32 bits for `d ≤` [`MAX_DEPTH`], so the wrapped sum minus the wrapped correction is exact.
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

/// The scale of a row whose largest magnitude is `max_abs` and the factor that maps its values
/// to integers: `(max_abs / 127, 127 / max_abs)`, or `(1, 0)` for a row that quantises to zeros
/// (0, or so small that `127 / max_abs` overflows: the scalar and the vector conversions would
/// then disagree on the infinities and NaNs it makes).
#[inline]
pub fn scale_of(max_abs: f32) -> (f32, f32) {
    let inv = 127.0 / max_abs;
    if max_abs.is_finite() && max_abs >= f32::MIN_POSITIVE && inv.is_finite() {
        (max_abs / 127.0, inv)
    } else {
        (1.0, 0.0)
    }
}

/// `x` as an integer of a row whose factor is `inv` (see [`scale_of`]): `x · inv` rounded to the
/// nearest integer, ties to even, as `vcvtps2dq` rounds, then clamped to `−127..=127`.
#[inline]
pub fn quantise(x: f32, inv: f32) -> i8 {
    // |x · inv| ≤ 127·(1 + 2⁻²³): adding and subtracting 1.5·2²³ rounds it to an integer, ties
    // to even, in two exact-or-correctly-rounded f32 operations (no call to a libm rint).
    const MAGIC: f32 = 12_582_912.0;
    let y = x * inv;
    ((y + MAGIC) - MAGIC).clamp(-127.0, 127.0) as i8
}

/// `(‖x‖, ‖x − s·x̂‖)` in f64 for the row `x` quantised as the packing does: the norm the bound
/// speaks of and the residual of the quantisation (each `s · x̂_j` is exact in f64).
pub fn norm_and_residual(x: &[f32]) -> (f64, f64) {
    let (s, inv) = scale_of(x.iter().fold(0f32, |m, v| m.max(v.abs())));
    let (mut n, mut r) = (0f64, 0f64);
    for v in x {
        let e = *v as f64 - s as f64 * quantise(*v, inv) as f64;
        n += (*v as f64) * (*v as f64);
        r += e * e;
    }
    (n.sqrt(), r.sqrt())
}

/// Quantises f32 panels (`d × r` each, depth-major: the layout of `super::pack`) into int8 quad
/// panels (`quads(d) × r` words each) in `words`, with each padded row's scale in `scales` and
/// the sum of its integers in `sums` (panel-major, `r` per panel).
pub fn to_quads(f32_panels: &[f32], d: usize, r: usize, words: &mut Vec<u32>, scales: &mut Vec<f32>, sums: &mut Vec<i32>) {
    let panels = f32_panels.len() / (d * r);
    let d4 = quads(d);
    words.clear();
    words.resize(panels * d4 * r, 0x8080_8080);
    scales.clear();
    sums.clear();
    #[cfg(target_arch = "x86_64")]
    if native() && r <= 16 {
        scales.resize(panels * r, 0.0);
        sums.resize(panels * r, 0);
        // SAFETY: AVX-512 F was detected (with VNNI); the slices hold the panels as sized above.
        unsafe { avx512::to_quads(f32_panels, d, r, words, scales, sums) };
        return;
    }
    for (src, dst) in f32_panels.chunks_exact(d * r).zip(words.chunks_exact_mut(d4 * r)) {
        for lane in 0..r {
            let max_abs = (0..d).fold(0f32, |m, p| m.max(src[p * r + lane].abs()));
            let (s, inv) = scale_of(max_abs);
            let mut sum = 0i32;
            for p in 0..d {
                let v = quantise(src[p * r + lane], inv);
                sum += v as i32;
                let w = &mut dst[(p / 4) * r + lane];
                let shift = 8 * (p % 4);
                *w = (*w & !(0xff << shift)) | (((v as u8) ^ 0x80) as u32) << shift;
            }
            scales.push(s);
            sums.push(sum);
        }
    }
}

/// Which int8 kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit vectors).
    Avx512Vnni,
    /// Portable Rust (the same integers and roundings; slow: for tests and machines without
    /// VNNI, where the planner does not choose int8).
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
    /// AVX-512 VNNI where the CPU has it.
    pub fn detect() -> Self {
        if native() {
            Int8Kernel::Avx512Vnni
        } else {
            Int8Kernel::Portable
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
            // SAFETY: Avx512Vnni is only constructed after runtime detection of AVX-512 F, BW and
            // VNNI, and the slice lengths were checked above for every access the kernel makes.
            Int8Kernel::Avx512Vnni => unsafe { avx512::kernel_6x16(kq, a.as_ptr(), b.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            _ => portable(kq, a, b, sc, c, ldc),
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
            Int8Kernel::Avx512Vnni => unsafe { avx512::kernel_6x32(kq, a.as_ptr(), b0.as_ptr(), b1.as_ptr(), sc, c.as_mut_ptr(), ldc) },
            _ => {
                portable(kq, a, b0, sc, c, ldc);
                let rest = Scales { a: sc.a, b: &sc.b[NR..], b_sums: &sc.b_sums[NR..] };
                portable(kq, a, b1, rest, &mut c[NR..], ldc);
            }
        }
    }
}

/// True where the CPU runs `vpdpbusd` on 512-bit vectors (within the `FAISS_NN_CPU` cap, see
/// [`super::features`]).
pub fn native() -> bool {
    super::features::avx512_vnni()
}

/// The entry from an integer sum (the wrapped `Σ (â + 128)·x̂` minus the wrapped correction) and
/// the two scales, rounded as the vector kernels round it.
#[inline]
fn entry(acc: i32, b_sum: i32, sa: f32, sb: f32) -> f32 {
    (acc.wrapping_sub(b_sum.wrapping_shl(7)) as f32 * sa) * sb
}

fn portable(kq: usize, a: &[u32], b: &[u32], sc: Scales<'_>, c: &mut [f32], ldc: usize) {
    let mut acc = [[0i32; NR]; MR];
    for g in 0..kq {
        let ap = &a[g * MR..g * MR + MR];
        let bp = &b[g * NR..g * NR + NR];
        for r in 0..MR {
            let ua = ap[r].to_le_bytes();
            for j in 0..NR {
                let sb = bp[j].to_le_bytes();
                let mut s = 0i32;
                for t in 0..4 {
                    s += ua[t] as i32 * ((sb[t] ^ 0x80) as i8) as i32;
                }
                acc[r][j] = acc[r][j].wrapping_add(s);
            }
        }
    }
    for r in 0..MR {
        for j in 0..NR {
            c[r * ldc + j] = entry(acc[r][j], sc.b_sums[j], sc.a[r], sc.b[j]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Scales, MR, NR};
    use std::arch::x86_64::*;

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
                (s[lane], inv[lane]) = super::scale_of(m[lane]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &[f32], d: usize, r: usize) -> (Vec<u32>, Vec<f32>, Vec<i32>) {
        let (mut w, mut s, mut u) = (Vec::new(), Vec::new(), Vec::new());
        to_quads(v, d, r, &mut w, &mut s, &mut u);
        (w, s, u)
    }

    /// Both kernels give `((â·x̂) as f32 · s_a) · s_x` from the integers the packing chose,
    /// computed here one entry at a time, for every depth remainder and extreme integers (±127,
    /// where the offset bytes reach 0 and 255).
    #[test]
    fn kernels_compute_the_integer_products_exactly() {
        for d in [1usize, 3, 4, 5, 8, 77, 384, 1000] {
            let a: Vec<f32> = (0..d * MR).map(|i| if i % 7 == 0 { -3.0 } else { ((i as f32) * 0.37).sin() }).collect();
            let b: Vec<f32> = (0..d * 2 * NR).map(|i| if i % 5 == 0 { 2.0 } else { ((i as f32) * 0.11).cos() }).collect();
            let (pa, sa, _) = pack(&a, d, MR);
            let (pb, sb, ub) = pack(&b, d, NR);
            let d4 = quads(d);
            let int = |v: &[f32], r: usize, lane: usize, p: usize| {
                let m = (0..d).fold(0f32, |m, q| m.max(v[q * r + lane].abs()));
                quantise(v[p * r + lane], scale_of(m).1) as i32
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
            for kernel in [Int8Kernel::detect(), Int8Kernel::Portable] {
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
    }

    #[test]
    fn quantisation_uses_the_full_range_and_measures_its_residual() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 1e-3];
        let (s, inv) = scale_of(1.0);
        assert_eq!((s, inv), (1.0 / 127.0, 127.0));
        assert_eq!(quantise(-1.0, inv), -127);
        assert_eq!(quantise(0.5, inv), 64); // 63.5 ties to even
        let (n, r) = norm_and_residual(&x);
        let want: f64 = x.iter().map(|v| (*v as f64 - s as f64 * quantise(*v, inv) as f64).powi(2)).sum::<f64>().sqrt();
        assert_eq!(r, want);
        assert!((n - x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()).abs() < 1e-15);
        // Zero and denormal rows quantise to zeros: the residual is the row.
        assert_eq!(norm_and_residual(&[0.0, 0.0]), (0.0, 0.0));
        let tiny = f32::MIN_POSITIVE / 4.0;
        assert_eq!(norm_and_residual(&[tiny]).1, tiny as f64);
        // 127 / 1e-37 overflows f32: zeros too.
        assert_eq!(scale_of(1e-37), (1.0, 0.0));
        assert_eq!(norm_and_residual(&[1e-37, -1e-37]).1, (2.0 * (1e-37f32 as f64).powi(2)).sqrt());
        assert_eq!(scale_of(f32::INFINITY), (1.0, 0.0));
    }

    /// The vector packing equals the scalar one (ties at .5 steps, lanes below 16, odd depths).
    #[test]
    fn the_vector_packing_equals_the_scalar_one() {
        for (d, r, mag) in [(7usize, 6usize, 1e3f32), (64, 16, 1e3), (3, 16, 1e3), (10, 6, 1e3), (384, 16, 1e3), (9, 16, 1e-37), (5, 6, 1e-39)] {
            let v: Vec<f32> =
                (0..d * r * 3).map(|i| if i % 9 == 0 { ((i % 254) as f32 - 127.0 + 0.5) * mag / 1e3 } else { ((i as f32) * 0.731).sin() * mag }).collect();
            let fast = pack(&v, d, r);
            let d4 = quads(d);
            let (mut words, mut scales, mut sums) = (vec![0x8080_8080u32; 3 * d4 * r], Vec::new(), Vec::new());
            for (p, panel) in v.chunks_exact(d * r).enumerate() {
                for lane in 0..r {
                    let (s, inv) = scale_of((0..d).fold(0f32, |m, q| m.max(panel[q * r + lane].abs())));
                    let mut sum = 0;
                    for q in 0..d {
                        let x = quantise(panel[q * r + lane], inv);
                        sum += x as i32;
                        let w = &mut words[p * d4 * r + (q / 4) * r + lane];
                        *w = (*w & !(0xff << (8 * (q % 4)))) | (((x as u8) ^ 0x80) as u32) << (8 * (q % 4));
                    }
                    scales.push(s);
                    sums.push(sum);
                }
            }
            assert_eq!(fast, (words, scales, sums), "d {d} r {r}");
        }
    }

    #[test]
    fn packed_sums_and_scales_follow_the_lanes() {
        let (d, r) = (6usize, 3usize);
        let v: Vec<f32> = (0..d * r).map(|i| i as f32 - 7.0).collect();
        let (w, s, u) = pack(&v, d, r);
        assert_eq!(w.len(), quads(d) * r);
        for lane in 0..r {
            let m = (0..d).fold(0f32, |m, p| m.max(v[p * r + lane].abs()));
            let (sc, inv) = scale_of(m);
            assert_eq!(s[lane], sc);
            assert_eq!(u[lane], (0..d).map(|p| quantise(v[p * r + lane], inv) as i32).sum::<i32>());
            // Depths 6 and 7 are padding: the offset byte of 0.
            assert_eq!(w[r + lane] >> 16, 0x8080);
        }
    }
}
