//! The register-blocked micro-kernel: a 6 × 16 block of dot products from packed panels.
//!
//! With AVX2 + FMA (16 ymm registers) a 6 × 16 block keeps 12 accumulators, 2 loads of the B
//! panel and 1 broadcast of A live, so every step is 12 FMAs against 8 loads: FMA-bound, which is
//! what reaches near-peak on a 2-FMA-port core (the BLIS analysis of "Anatomy of high-performance
//! matrix multiplication", Goto & van de Geijn). Without AVX2 a portable kernel of the same shape
//! runs instead (the compiler vectorises it for whatever the target has).
//!
//! With AVX-512 F, two adjacent column panels run at once ([`MicroKernel::run2`]: a 6 × 32 block,
//! 12 zmm accumulators, one broadcast of A per two FMAs). On CPUs whose FMA units are 512 bits
//! wide (AMD Zen 5, Intel's server cores) that is twice the multiply-adds per cycle of the AVX2
//! kernel; where 512-bit work is split in two (Zen 4) it is the same. Every kernel computes each
//! entry as the same chain of FMAs in depth order, so all of them give the same bits.

/// Rows of A per micro-kernel call (query side).
pub const MR: usize = 6;
/// Rows of B per micro-kernel call (database side).
pub const NR: usize = 16;

/// Which kernel this CPU runs, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicroKernel {
    /// AVX-512 F intrinsics for two panels at once ([`MicroKernel::run2`]); a single panel runs
    /// the AVX2 kernel. Only [`MicroKernel::detect`] can make it, as for `Avx2Fma`.
    Avx512(super::features::HasAvx512F),
    /// AVX2 + FMA intrinsics (only [`MicroKernel::detect`] can make it: it holds the proof).
    Avx2Fma(super::features::HasAvx2Fma),
    /// Portable Rust.
    Portable,
}

impl MicroKernel {
    /// The best kernel this CPU supports.
    pub fn detect() -> Self {
        use super::features::{HasAvx2Fma, HasAvx512F};
        match (HasAvx512F::detect(), HasAvx2Fma::detect()) {
            (Some(has), _) => MicroKernel::Avx512(has),
            (None, Some(has)) => MicroKernel::Avx2Fma(has),
            (None, None) => MicroKernel::Portable,
        }
    }

    /// Whether [`MicroKernel::run2`] runs both panels in one pass (else it is two calls of
    /// [`MicroKernel::run`], and callers keep their one-panel order).
    pub fn pairs(self) -> bool {
        matches!(self, MicroKernel::Avx512(_))
    }

    /// `C[0..6][0..16] (+)= Σ_p a[p·6 + r] · b[p·16 + c]` over `p < kc`.
    ///
    /// `a` holds `kc × MR` values, `b` holds `kc × NR` values (the packed layouts of
    /// `super::pack`), `c` is a row-major block with row stride `ldc` and at least
    /// `5·ldc + 16` elements. `accumulate` adds to `c` instead of overwriting it.
    #[inline]
    pub fn run(self, kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR && c.len() >= (MR - 1) * ldc + NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2Fma holds the proof that the CPU has both features (only runtime
            // detection makes one), and the slice lengths were checked above for every access
            // the kernel makes.
            MicroKernel::Avx2Fma(_) | MicroKernel::Avx512(_) => unsafe { avx2::kernel_6x16(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) },
            _ => portable(kc, a, b, c, ldc, accumulate),
        }
    }

    /// [`MicroKernel::run`] for two adjacent column panels `b0` and `b1` (`kc × NR` values each)
    /// into columns `0..2·NR` of `c` (at least `5·ldc + 32` elements).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn run2(self, kc: usize, a: &[f32], b0: &[f32], b1: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
        assert!(a.len() >= kc * MR && b0.len() >= kc * NR && b1.len() >= kc * NR && c.len() >= (MR - 1) * ldc + 2 * NR);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx512 holds the proof that the CPU has AVX-512 F (only runtime detection
            // makes one), and the slice lengths were checked above for every access the kernel
            // makes.
            MicroKernel::Avx512(_) => unsafe { avx512::kernel_6x32(kc, a.as_ptr(), b0.as_ptr(), b1.as_ptr(), c.as_mut_ptr(), ldc, accumulate) },
            _ => {
                self.run(kc, a, b0, c, ldc, accumulate);
                self.run(kc, a, b1, &mut c[NR..], ldc, accumulate);
            }
        }
    }
}

fn portable(kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let ap = &a[p * MR..p * MR + MR];
        let bp = &b[p * NR..p * NR + NR];
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] = ap[r].mul_add(bp[j], acc[r][j]);
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
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` must be valid for `kc·MR` reads, `b` for `kc·NR`
    /// reads, and `c` for reads and writes of rows `0..MR` of 16 elements at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut c00 = _mm256_setzero_ps();
        let mut c01 = _mm256_setzero_ps();
        let mut c10 = _mm256_setzero_ps();
        let mut c11 = _mm256_setzero_ps();
        let mut c20 = _mm256_setzero_ps();
        let mut c21 = _mm256_setzero_ps();
        let mut c30 = _mm256_setzero_ps();
        let mut c31 = _mm256_setzero_ps();
        let mut c40 = _mm256_setzero_ps();
        let mut c41 = _mm256_setzero_ps();
        let mut c50 = _mm256_setzero_ps();
        let mut c51 = _mm256_setzero_ps();
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            let a0 = _mm256_broadcast_ss(&*ap);
            c00 = _mm256_fmadd_ps(a0, b0, c00);
            c01 = _mm256_fmadd_ps(a0, b1, c01);
            let a1 = _mm256_broadcast_ss(&*ap.add(1));
            c10 = _mm256_fmadd_ps(a1, b0, c10);
            c11 = _mm256_fmadd_ps(a1, b1, c11);
            let a2 = _mm256_broadcast_ss(&*ap.add(2));
            c20 = _mm256_fmadd_ps(a2, b0, c20);
            c21 = _mm256_fmadd_ps(a2, b1, c21);
            let a3 = _mm256_broadcast_ss(&*ap.add(3));
            c30 = _mm256_fmadd_ps(a3, b0, c30);
            c31 = _mm256_fmadd_ps(a3, b1, c31);
            let a4 = _mm256_broadcast_ss(&*ap.add(4));
            c40 = _mm256_fmadd_ps(a4, b0, c40);
            c41 = _mm256_fmadd_ps(a4, b1, c41);
            let a5 = _mm256_broadcast_ss(&*ap.add(5));
            c50 = _mm256_fmadd_ps(a5, b0, c50);
            c51 = _mm256_fmadd_ps(a5, b1, c51);
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
        for (r, (lo, hi)) in rows.into_iter().enumerate() {
            let dst = c.add(r * ldc);
            if accumulate {
                _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), lo));
                _mm256_storeu_ps(dst.add(8), _mm256_add_ps(_mm256_loadu_ps(dst.add(8)), hi));
            } else {
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// A 6 × 32 block from two column panels: 12 accumulators, one broadcast of A per two FMAs.
    /// Each entry is the FMA chain of the AVX2 kernel (depth order, from zero), so the bits are
    /// the same.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; `a` must be valid for `kc·MR` reads, `b0` and `b1` each
    /// for `kc·NR` reads, and `c` for reads and writes of rows `0..MR` of 32 elements at stride
    /// `ldc`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_6x32(kc: usize, a: *const f32, b0: *const f32, b1: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut l = [_mm512_setzero_ps(); MR];
        let mut h = [_mm512_setzero_ps(); MR];
        let (mut ap, mut p0, mut p1) = (a, b0, b1);
        for _ in 0..kc {
            let v0 = _mm512_loadu_ps(p0);
            let v1 = _mm512_loadu_ps(p1);
            for r in 0..MR {
                let x = _mm512_set1_ps(*ap.add(r));
                l[r] = _mm512_fmadd_ps(x, v0, l[r]);
                h[r] = _mm512_fmadd_ps(x, v1, h[r]);
            }
            ap = ap.add(MR);
            p0 = p0.add(NR);
            p1 = p1.add(NR);
        }
        store_6x32(&l, &h, c, ldc, accumulate);
    }

    /// Writes a 6 × 32 block of accumulators into `c` (or adds it to what `c` holds): `l[r]` to
    /// columns `0..NR` of row `r`, `h[r]` to columns `NR..2·NR`. The f32 and bf16 two-panel
    /// kernels end with it.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F; `c` must be valid for reads and writes of rows `0..MR` of
    /// 32 elements at stride `ldc`.
    #[target_feature(enable = "avx512f")]
    pub(in crate::flat::cpu) unsafe fn store_6x32(l: &[__m512; MR], h: &[__m512; MR], c: *mut f32, ldc: usize, accumulate: bool) {
        for r in 0..MR {
            let dst = c.add(r * ldc);
            if accumulate {
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), l[r]));
                _mm512_storeu_ps(dst.add(NR), _mm512_add_ps(_mm512_loadu_ps(dst.add(NR)), h[r]));
            } else {
                _mm512_storeu_ps(dst, l[r]);
                _mm512_storeu_ps(dst.add(NR), h[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU runs, and the portable one.
    fn kernels() -> Vec<MicroKernel> {
        let mut v = vec![MicroKernel::detect(), MicroKernel::Portable];
        if let Some(has) = super::super::features::HasAvx2Fma::detect() {
            v.push(MicroKernel::Avx2Fma(has));
        }
        v.dedup();
        v
    }

    /// Every kernel, one panel and two, gives the same block as a plain triple loop (small
    /// integers: exact in f32).
    #[test]
    fn kernels_match_triple_loop() {
        let kc = 37;
        let a: Vec<f32> = (0..kc * MR).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..kc * 2 * NR).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let ldc = 2 * NR + 3;
        let mut want = vec![0f32; MR * ldc];
        for r in 0..MR {
            for j in 0..2 * NR {
                let panel = &b[(j / NR) * kc * NR..];
                want[r * ldc + j] = (0..kc).map(|p| a[p * MR + r] * panel[p * NR + j % NR]).sum::<f32>() * 2.0;
            }
        }
        let (b0, b1) = b.split_at(kc * NR);
        for kernel in kernels() {
            let mut c = vec![0f32; MR * ldc];
            kernel.run2(kc, &a, b0, b1, &mut c, ldc, false);
            kernel.run2(kc, &a, b0, b1, &mut c, ldc, true);
            let mut one = vec![0f32; MR * ldc];
            kernel.run(kc, &a, b0, &mut one, ldc, false);
            kernel.run(kc, &a, b0, &mut one, ldc, true);
            for r in 0..MR {
                assert_eq!(&c[r * ldc..r * ldc + 2 * NR], &want[r * ldc..r * ldc + 2 * NR], "{kernel:?} row {r}");
                assert_eq!(&one[r * ldc..r * ldc + NR], &want[r * ldc..r * ldc + NR], "{kernel:?} row {r}");
            }
        }
    }

    /// On values that round, every kernel gives the portable kernel's bits, one panel or two:
    /// the lists may not depend on which kernel the CPU runs.
    #[test]
    fn kernels_give_the_same_bits() {
        for kc in [1usize, 5, 64, 384] {
            let a: Vec<f32> = (0..kc * MR).map(|i| ((i as f32) * 0.37).sin() * 3.1).collect();
            let b: Vec<f32> = (0..kc * 2 * NR).map(|i| ((i as f32) * 0.11).cos() + 1e-3 * i as f32).collect();
            let (b0, b1) = b.split_at(kc * NR);
            let ldc = 2 * NR;
            let start: Vec<f32> = (0..MR * ldc).map(|i| (i as f32 * 0.7).sin()).collect();
            let mut want = start.clone();
            MicroKernel::Portable.run(kc, &a, b0, &mut want, ldc, true);
            MicroKernel::Portable.run(kc, &a, b1, &mut want[NR..], ldc, true);
            for kernel in kernels() {
                let mut c = start.clone();
                kernel.run2(kc, &a, b0, b1, &mut c, ldc, true);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c), bits(&want), "{kernel:?} kc {kc}");
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Micro-kernel throughput with both panels hot in L1 (a measurement, not a check):
    /// `cargo test --lib --release -- --ignored kernel_speed --nocapture`.
    #[test]
    #[ignore = "a measurement"]
    fn kernel_speed() {
        for kc in [64usize, 128, 256, 384] {
            let a = vec![1.0f32; kc * MR];
            let b = vec![0.5f32; kc * NR];
            let mut c = vec![0f32; MR * NR];
            let mut c2 = vec![0f32; MR * 2 * NR];
            let kernel = MicroKernel::detect();
            let reps = 2_000_000_000 / (kc * MR * NR * 2);
            let t = std::time::Instant::now();
            for _ in 0..reps {
                kernel.run(kc, std::hint::black_box(&a), &b, &mut c, NR, false);
            }
            let s = t.elapsed().as_secs_f64();
            println!("{kernel:?} kc {kc}: {:.1} GFLOP/s on one core", (reps * kc * MR * NR * 2) as f64 / s / 1e9);
            let t = std::time::Instant::now();
            for _ in 0..reps / 2 {
                kernel.run2(kc, std::hint::black_box(&a), &b, &b, &mut c2, 2 * NR, false);
            }
            let s = t.elapsed().as_secs_f64();
            println!("{kernel:?} kc {kc}, two panels: {:.1} GFLOP/s on one core", (reps / 2 * kc * MR * NR * 4) as f64 / s / 1e9);
        }
    }
}
