//! bf16 products: panels of bf16 pairs along the depth, multiplied by AVX-512 BF16's
//! `vdpbf16ps` (two bf16 products added into each f32 lane per instruction: twice the f32 FMA's
//! multiply-adds per cycle on the CPUs that have it), or by a portable loop elsewhere.
//!
//! A bf16 panel of `r` rows holds, for each pair of depths `(2q, 2q + 1)`, `r` 32-bit words: the
//! low half the row's value at depth `2q`, the high half at `2q + 1`, each rounded to the
//! nearest bf16 (ties to even; with AVX-512 BF16's conversion a denormal f32, below 1.2e-38,
//! becomes 0, which the error bound's flushed-values term covers); an odd depth is padded with 0. `vdpbf16ps` multiplies the low
//! halves and the high halves of its two operands' words and adds both products into the lane,
//! so a broadcast word of A against a word vector of B gives one row's pair of depths against
//! 16 columns. The products of two bf16 values are exact in f32; the sums round to f32 (and
//! `vdpbf16ps` flushes denormal inputs and outputs to zero): the error bound in
//! [`crate::engine::bound`] covers both.

use super::microkernel::{MR, NR};

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// The f32 value of bf16 bits.
#[inline]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Pairs of depths of a panel width `r` and depth `d`.
#[inline]
pub fn pairs(d: usize) -> usize {
    d.div_ceil(2)
}

/// Converts f32 panels (`d × r` each, depth-major: the layout of `super::pack`) into bf16
/// pair panels (`pairs(d) × r` words each) in `out`.
pub fn to_pairs(f32_panels: &[f32], d: usize, r: usize, out: &mut Vec<u32>) {
    let panels = f32_panels.len() / (d * r);
    let d2 = pairs(d);
    out.resize(panels * d2 * r, 0);
    #[cfg(target_arch = "x86_64")]
    if native() && r <= 16 {
        // SAFETY: AVX-512 F and BF16 were detected; the slices hold the panels' values.
        unsafe { avx512::to_pairs(f32_panels, d, r, out) };
        return;
    }
    for (src, dst) in f32_panels.chunks_exact(d * r).zip(out.chunks_exact_mut(d2 * r)) {
        for q in 0..d2 {
            let lo = &src[2 * q * r..2 * q * r + r];
            let row = &mut dst[q * r..q * r + r];
            if 2 * q + 1 < d {
                let hi = &src[(2 * q + 1) * r..(2 * q + 2) * r];
                for ((w, a), b) in row.iter_mut().zip(lo).zip(hi) {
                    *w = to_bf16(*a) as u32 | (to_bf16(*b) as u32) << 16;
                }
            } else {
                for (w, a) in row.iter_mut().zip(lo) {
                    *w = to_bf16(*a) as u32;
                }
            }
        }
    }
}

/// Which bf16 kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AVX-512 BF16 (`vdpbf16ps`; only [`Bf16Kernel::detect`] can make it: it holds the proof).
    Avx512(super::features::HasAvx512Bf16),
    /// Portable Rust (the same products, f32 sums; slow: for machines without AVX-512 BF16).
    Portable,
}

impl Bf16Kernel {
    /// AVX-512 BF16 where the CPU has it.
    pub fn detect() -> Self {
        match super::features::HasAvx512Bf16::detect() {
            Some(has) => Bf16Kernel::Avx512(has),
            None => Bf16Kernel::Portable,
        }
    }

    /// `C[0..MR][0..NR] (+)= Σ_q a[q][r] · b[q][c]` over the `kq` depth pairs given, each word
    /// the sum of its two halves' products (see the module doc). `c` as in
    /// [`super::microkernel::MicroKernel::run`].
    #[inline]
    pub fn run(self, kq: usize, a: &[u32], b: &[u32], c: &mut [f32], ldc: usize, accumulate: bool) {
        assert!(a.len() >= kq * MR && b.len() >= kq * NR && c.len() >= (MR - 1) * ldc + NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx512 holds the proof that the CPU has AVX-512 F and BF16 (only runtime
            // detection makes one), and the slice lengths were checked above for every access
            // the kernel makes.
            Bf16Kernel::Avx512(_) => unsafe { avx512::kernel_6x16(kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) },
            _ => portable(kq, a, b, c, ldc, accumulate),
        }
    }

    /// Two adjacent column panels at once (`b0`, `b1`: `kq × NR` words each), into columns
    /// `0..2·NR` of `c`: each broadcast of A serves 32 columns, half the broadcasts per product
    /// of [`Bf16Kernel::run`]. The portable kernel runs as two calls of it.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn run2(self, kq: usize, a: &[u32], b0: &[u32], b1: &[u32], c: &mut [f32], ldc: usize, accumulate: bool) {
        assert!(a.len() >= kq * MR && b0.len() >= kq * NR && b1.len() >= kq * NR && c.len() >= (MR - 1) * ldc + 2 * NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `run`; the lengths were checked above.
            Bf16Kernel::Avx512(_) => unsafe { avx512::kernel_6x32(kq, a.as_ptr(), b0.as_ptr(), b1.as_ptr(), c.as_mut_ptr(), ldc, accumulate) },
            _ => {
                portable(kq, a, b0, c, ldc, accumulate);
                portable(kq, a, b1, &mut c[NR..], ldc, accumulate);
            }
        }
    }
}

/// True where the CPU runs `vdpbf16ps` (within the `FAISS_NN_CPU` cap, see
/// [`super::features`]).
pub fn native() -> bool {
    super::features::avx512_bf16()
}

fn portable(kq: usize, a: &[u32], b: &[u32], c: &mut [f32], ldc: usize, accumulate: bool) {
    let mut acc = [[0f32; NR]; MR];
    for q in 0..kq {
        let ap = &a[q * MR..q * MR + MR];
        let bp = &b[q * NR..q * NR + NR];
        for r in 0..MR {
            let (a0, a1) = (from_bf16(ap[r] as u16), from_bf16((ap[r] >> 16) as u16));
            for j in 0..NR {
                let (b0, b1) = (from_bf16(bp[j] as u16), from_bf16((bp[j] >> 16) as u16));
                acc[r][j] = acc[r][j] + a1 * b1 + a0 * b0;
            }
        }
    }
    for r in 0..MR {
        let row = &mut c[r * ldc..r * ldc + NR];
        for j in 0..NR {
            row[j] = if accumulate { row[j] + acc[r][j] } else { acc[r][j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// [`super::to_pairs`] with `vcvtneps2bf16`: for each pair of depths, the `r ≤ 16` lanes of
    /// both depths converted at once and interleaved into words.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BF16; `src` holds panels of `d × r` values and `out`
    /// panels of `pairs(d) × r` words, `r ≤ 16`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn to_pairs(src: &[f32], d: usize, r: usize, out: &mut [u32]) {
        let d2 = super::pairs(d);
        let mask: __mmask16 = if r >= 16 { 0xffff } else { (1u16 << r) - 1 };
        for (ps, pd) in src.chunks_exact(d * r).zip(out.chunks_exact_mut(d2 * r)) {
            for q in 0..d2 {
                let lo = _mm512_maskz_loadu_ps(mask, ps.as_ptr().add(2 * q * r));
                let hi = if 2 * q + 1 < d { _mm512_maskz_loadu_ps(mask, ps.as_ptr().add((2 * q + 1) * r)) } else { _mm512_setzero_ps() };
                let lo16: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(lo));
                let hi16: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(hi));
                let words = _mm512_or_si512(_mm512_cvtepu16_epi32(lo16), _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(hi16)));
                _mm512_mask_storeu_epi32(pd.as_mut_ptr().add(q * r).cast(), mask, words);
            }
        }
    }

    /// A 6 × 32 block from two column panels: 12 accumulators, one broadcast of A per two
    /// `vdpbf16ps`.
    ///
    /// # Safety
    /// As [`kernel_6x16`], with `b0` and `b1` each valid for `kq·NR` reads and `c` for rows of
    /// 32 elements.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn kernel_6x32(kq: usize, a: *const u32, b0: *const u32, b1: *const u32, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut l = [_mm512_setzero_ps(); MR];
        let mut h = [_mm512_setzero_ps(); MR];
        let (mut ap, mut p0, mut p1) = (a, b0, b1);
        for _ in 0..kq {
            let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(p0.cast()));
            let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(p1.cast()));
            for r in 0..MR {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                l[r] = _mm512_dpbf16_ps(l[r], x, v0);
                h[r] = _mm512_dpbf16_ps(h[r], x, v1);
            }
            ap = ap.add(MR);
            p0 = p0.add(NR);
            p1 = p1.add(NR);
        }
        crate::flat::cpu::microkernel::avx512::store_6x32(&l, &h, c, ldc, accumulate);
    }

    /// Two chains of accumulators (even and odd depth pairs): `vdpbf16ps` has a latency of
    /// several cycles at one per cycle, and 6 independent sums would leave it waiting.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BF16; `a` must be valid for `kq·MR` reads, `b` for
    /// `kq·NR` reads, and `c` for reads and writes of rows `0..MR` of 16 elements at stride `ldc`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn kernel_6x16(kq: usize, a: *const u32, b: *const u32, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut e = [_mm512_setzero_ps(); MR];
        let mut o = [_mm512_setzero_ps(); MR];
        let mut ap = a;
        let mut bp = b;
        let mut q = 0;
        while q + 2 <= kq {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(NR).cast()));
            for r in 0..MR {
                let x0: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                e[r] = _mm512_dpbf16_ps(e[r], x0, b0);
                let x1: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(MR + r) as i32));
                o[r] = _mm512_dpbf16_ps(o[r], x1, b1);
            }
            ap = ap.add(2 * MR);
            bp = bp.add(2 * NR);
            q += 2;
        }
        if q < kq {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.cast()));
            for (r, acc) in e.iter_mut().enumerate() {
                let x0: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                *acc = _mm512_dpbf16_ps(*acc, x0, b0);
            }
        }
        for r in 0..MR {
            let sum = _mm512_add_ps(e[r], o[r]);
            let dst = c.add(r * ldc);
            if accumulate {
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), sum));
            } else {
                _mm512_storeu_ps(dst, sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(from_bf16(to_bf16(1.0)), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even one, 1.
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    /// Both kernels give the products of the bf16 values (small integers: exact everywhere).
    #[test]
    fn kernels_match_the_products_of_the_rounded_values() {
        for d in [1usize, 2, 7, 38, 77] {
            let a: Vec<f32> = (0..d * MR).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..d * NR).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            to_pairs(&a, d, MR, &mut pa);
            to_pairs(&b, d, NR, &mut pb);
            let ldc = NR + 3;
            let mut want = vec![0f32; MR * ldc];
            for r in 0..MR {
                for j in 0..NR {
                    want[r * ldc + j] = (0..d).map(|p| a[p * MR + r] * b[p * NR + j]).sum::<f32>() * 2.0;
                }
            }
            for kernel in [Bf16Kernel::detect(), Bf16Kernel::Portable] {
                let mut c = vec![0f32; MR * ldc];
                kernel.run(pairs(d), &pa, &pb, &mut c, ldc, false);
                kernel.run(pairs(d), &pa, &pb, &mut c, ldc, true);
                for r in 0..MR {
                    assert_eq!(&c[r * ldc..r * ldc + NR], &want[r * ldc..r * ldc + NR], "{kernel:?} d {d} row {r}");
                }
            }
        }
    }

    #[test]
    fn the_vector_conversion_equals_the_scalar_one() {
        for (d, r) in [(7usize, 6usize), (64, 16), (3, 16), (10, 6)] {
            let v: Vec<f32> = (0..d * r * 3).map(|i| ((i as f32) * 0.731).sin() * 1e3 + if i % 5 == 0 { 1.0 / 128.0 } else { 0.0 }).collect();
            let mut fast = Vec::new();
            to_pairs(&v, d, r, &mut fast);
            let d2 = pairs(d);
            for (p, panel) in v.chunks_exact(d * r).enumerate() {
                for q in 0..d2 {
                    for lane in 0..r {
                        let lo = to_bf16(panel[2 * q * r + lane]) as u32;
                        let hi = if 2 * q + 1 < d { to_bf16(panel[(2 * q + 1) * r + lane]) as u32 } else { 0 };
                        assert_eq!(fast[p * d2 * r + q * r + lane], lo | hi << 16, "d {d} r {r} panel {p} pair {q} lane {lane}");
                    }
                }
            }
        }
    }

    #[test]
    fn non_integer_values_round_once_then_multiply_exactly() {
        let d = 64;
        let a: Vec<f32> = (0..d * MR).map(|i| ((i as f32) * 0.37).sin()).collect();
        let b: Vec<f32> = (0..d * NR).map(|i| ((i as f32) * 0.11).cos()).collect();
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        to_pairs(&a, d, MR, &mut pa);
        to_pairs(&b, d, NR, &mut pb);
        let mut c = vec![0f32; MR * NR];
        Bf16Kernel::detect().run(pairs(d), &pa, &pb, &mut c, NR, false);
        for r in 0..MR {
            for j in 0..NR {
                let exact: f64 = (0..d).map(|p| from_bf16(to_bf16(a[p * MR + r])) as f64 * from_bf16(to_bf16(b[p * NR + j])) as f64).sum();
                let abs: f64 = (0..d).map(|p| (a[p * MR + r] as f64 * b[p * NR + j] as f64).abs()).sum();
                // Only the f32 sums round: d·u of the absolute sum.
                assert!((c[r * NR + j] as f64 - exact).abs() <= abs * d as f64 * f32::EPSILON as f64, "{r} {j}");
            }
        }
    }
}
