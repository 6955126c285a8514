//! The CPU features the kernels may use: what the CPU has, capped by the `FAISS_NN_CPU`
//! environment variable (`generic`: portable kernels only; `avx2`: kernels up to AVX2 + FMA, so
//! no AVX-512 and no AVX-VNNI ones; `avxvnni`: AVX2 + FMA and AVX-VNNI, no AVX-512, as on a CPU
//! with AVX-VNNI only; unset or `native`: everything detected). The cap exists so that every
//! kernel kind runs, and is compared, on a machine that has the faster ones; it is read once per
//! process.

use std::sync::OnceLock;

/// The widest instruction sets the kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    /// Portable kernels only.
    Generic,
    /// Up to AVX2 + FMA.
    Avx2,
    /// AVX2 + FMA and AVX-VNNI (256-bit `vpdpbusd`), no AVX-512.
    AvxVnni,
    /// Everything the CPU has.
    Native,
}

/// The cap `FAISS_NN_CPU` sets (`Native` when unset; an unknown value is reported on the
/// standard error once and ignored).
pub fn cap() -> Cap {
    static CAP: OnceLock<Cap> = OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("FAISS_NN_CPU").as_deref().map(str::to_ascii_lowercase).as_deref() {
        Err(_) | Ok("") | Ok("native") => Cap::Native,
        Ok("avx2") => Cap::Avx2,
        Ok("avxvnni") | Ok("avx-vnni") => Cap::AvxVnni,
        Ok("generic") | Ok("portable") => Cap::Generic,
        Ok(other) => {
            eprintln!("faiss-nn: FAISS_NN_CPU={other:?} is not one of native, avxvnni, avx2, generic; using native");
            Cap::Native
        }
    })
}

/// AVX2 and FMA (the f32 micro-kernel).
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cap() >= Cap::Avx2 && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 F with AVX2 and FMA (the f32 micro-kernel's 512-bit form).
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cap() >= Cap::Native && avx2_fma() && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 F and BF16 (`vdpbf16ps`, `vcvtneps2bf16`).
pub fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cap() >= Cap::Native && std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 F, BW and VNNI (`vpdpbusd` on 512-bit vectors).
pub fn avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cap() >= Cap::Native
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX2, FMA and AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded: CPUs without AVX-512 such
/// as Intel's Alder Lake and later client cores). Not within the `avx2` cap: that cap keeps every
/// kernel at AVX2 + FMA.
pub fn avx_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cap() >= Cap::AvxVnni && avx2_fma() && std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Proof that the kernels may use AVX2 and FMA here ([`avx2_fma`]). Only this module makes one,
/// so a kernel enum's variant that holds it names a kernel this CPU runs: the variants' safe
/// `run` relies on that (a variant built on another CPU would execute instructions it lacks).
///
/// Outside the crate it cannot be forged:
///
/// ```compile_fail,E0423
/// use faiss_nn::flat::cpu::{features::HasAvx2Fma, microkernel::MicroKernel};
/// let forged = MicroKernel::Avx2Fma(HasAvx2Fma(()));
/// ```
///
/// only detected:
///
/// ```
/// use faiss_nn::flat::cpu::{features::HasAvx2Fma, microkernel::MicroKernel};
/// let kernel = HasAvx2Fma::detect().map_or(MicroKernel::Portable, MicroKernel::Avx2Fma);
/// assert!(kernel == MicroKernel::detect() || matches!(MicroKernel::detect(), MicroKernel::Avx512(_)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HasAvx2Fma(());

/// Proof that the kernels may use AVX-512 F (with AVX2 and FMA) here ([`avx512f`]); see
/// [`HasAvx2Fma`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HasAvx512F(());

/// Proof that the kernels may use AVX-512 F and BF16 here ([`avx512_bf16`]); see [`HasAvx2Fma`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HasAvx512Bf16(());

/// Proof that the kernels may use AVX-512 F, BW and VNNI here ([`avx512_vnni`]); see
/// [`HasAvx2Fma`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HasAvx512Vnni(());

/// Proof that the kernels may use AVX2, FMA and AVX-VNNI here ([`avx_vnni`]); see
/// [`HasAvx2Fma`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HasAvxVnni(());

impl HasAvx2Fma {
    /// The proof, where the CPU (within the cap) has the features.
    pub fn detect() -> Option<Self> {
        avx2_fma().then_some(HasAvx2Fma(()))
    }
}

impl HasAvx512F {
    /// The proof, where the CPU (within the cap) has the features.
    pub fn detect() -> Option<Self> {
        avx512f().then_some(HasAvx512F(()))
    }
}

impl HasAvx512Bf16 {
    /// The proof, where the CPU (within the cap) has the features.
    pub fn detect() -> Option<Self> {
        avx512_bf16().then_some(HasAvx512Bf16(()))
    }
}

impl HasAvx512Vnni {
    /// The proof, where the CPU (within the cap) has the features.
    pub fn detect() -> Option<Self> {
        avx512_vnni().then_some(HasAvx512Vnni(()))
    }
}

impl HasAvxVnni {
    /// The proof, where the CPU (within the cap) has the features.
    pub fn detect() -> Option<Self> {
        avx_vnni().then_some(HasAvxVnni(()))
    }
}
