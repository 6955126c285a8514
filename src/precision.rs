//! The arithmetic of a search's products.

use crate::error::{Error, Result};
use std::str::FromStr;

/// Precision of the q·x products.
///
/// On the CPU the lists are exact whatever the precision: `Bf16` products (AVX-512 BF16) and
/// `Int8` products (AVX-512 VNNI, AVX-VNNI, or AVX2 with one bit less) find candidates that the exact
/// layer proves with the reduced products' error bound ([`crate::engine::bound`]), searching
/// the rows it cannot prove again in f32 (each runs as f32 on a CPU without its instructions);
/// `Auto` (the default) picks int8 (AVX-512 VNNI or AVX-VNNI, never AVX2's) or bf16 for a self-join where the CPU
/// has them and a sample of the rows predicts the proofs to hold, else f32. `Tf32` and `F16` run as f32 on the CPU.
/// On a GPU, `Auto` and `Int8` are f32; `Bf16` and `F16` candidates are proven with the tensor
/// cores' bound ([`crate::engine::bound`], *A GPU's keys*), the rows it cannot prove searched
/// again in f32 on the CPU; `Tf32` gives its own lists, re-scored but unproven.
/// [`crate::engine::EngineOptions::approximate`] keeps any reduced lists unproven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// The fastest exact path for the device and the data (see above).
    #[default]
    Auto,
    /// Exact f32 (tensor-op math off).
    F32,
    /// TF32 tensor cores on f32 inputs (10-bit mantissa products, f32 accumulation).
    Tf32,
    /// Inputs rounded to f16, f32 accumulation.
    F16,
    /// Inputs rounded to bf16, f32 accumulation.
    Bf16,
    /// Inputs quantised to int8 with a scale per row, exact integer sums (CPU only).
    Int8,
}

impl Precision {
    /// What a GPU computes for it: `Auto` and `Int8` are f32 there.
    pub fn on_gpu(self) -> Precision {
        match self {
            Precision::Auto | Precision::Int8 => Precision::F32,
            p => p,
        }
    }

    /// What the CPU computes for it: `Auto`, f32, bf16 or int8 (`Tf32` and `F16` run as f32).
    pub fn on_cpu(self) -> Precision {
        match self {
            Precision::Auto | Precision::Bf16 | Precision::Int8 => self,
            _ => Precision::F32,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            "int8" | "i8" => Ok(Precision::Int8),
            _ => Err(Error::invalid("precision", format!("{s:?}: expected auto, f32, tf32, f16, bf16 or int8"))),
        }
    }
}
