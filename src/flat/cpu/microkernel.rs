//! The register-blocked micro-kernel: a 6 × 16 block of dot products from packed panels.
//!
//! With AVX2 + FMA (16 ymm registers) a 6 × 16 block keeps 12 accumulators, 2 loads of the B
//! panel and 1 broadcast of A live, so every step is 12 FMAs against 8 loads: FMA-bound, which is
//! what reaches near-peak on a 2-FMA-port core (the BLIS analysis of "Anatomy of high-performance
//! matrix multiplication", Goto & van de Geijn). Without AVX2 a portable kernel of the same shape
//! runs instead (the compiler vectorises it for whatever the target has).

/// Rows of A per micro-kernel call (query side).
pub const MR: usize = 6;
/// Rows of B per micro-kernel call (database side).
pub const NR: usize = 16;

/// Which kernel this CPU runs, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicroKernel {
    /// AVX2 + FMA intrinsics (only [`MicroKernel::detect`] can make it: it holds the proof).
    Avx2Fma(super::features::HasAvx2Fma),
    /// Portable Rust.
    Portable,
}

impl MicroKernel {
    /// The best kernel this CPU supports.
    pub fn detect() -> Self {
        match super::features::HasAvx2Fma::detect() {
            Some(has) => MicroKernel::Avx2Fma(has),
            None => MicroKernel::Portable,
        }
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
            MicroKernel::Avx2Fma(_) => unsafe { avx2::kernel_6x16(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) },
            _ => portable(kc, a, b, c, ldc, accumulate),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kernels give the same block as a plain triple loop (small integers: exact in f32).
    #[test]
    fn kernels_match_triple_loop() {
        let kc = 37;
        let a: Vec<f32> = (0..kc * MR).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..kc * NR).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let ldc = NR + 3;
        let mut want = vec![0f32; MR * ldc];
        for r in 0..MR {
            for j in 0..NR {
                want[r * ldc + j] = (0..kc).map(|p| a[p * MR + r] * b[p * NR + j]).sum::<f32>() * 2.0;
            }
        }
        for kernel in [MicroKernel::detect(), MicroKernel::Portable] {
            let mut c = vec![0f32; MR * ldc];
            kernel.run(kc, &a, &b, &mut c, ldc, false);
            kernel.run(kc, &a, &b, &mut c, ldc, true);
            for r in 0..MR {
                assert_eq!(&c[r * ldc..r * ldc + NR], &want[r * ldc..r * ldc + NR], "{kernel:?} row {r}");
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
            let kernel = MicroKernel::detect();
            let reps = 2_000_000_000 / (kc * MR * NR * 2);
            let t = std::time::Instant::now();
            for _ in 0..reps {
                kernel.run(kc, std::hint::black_box(&a), &b, &mut c, NR, false);
            }
            let s = t.elapsed().as_secs_f64();
            println!("{kernel:?} kc {kc}: {:.1} GFLOP/s on one core", (reps * kc * MR * NR * 2) as f64 / s / 1e9);
        }
    }
}
