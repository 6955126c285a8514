//! The arithmetic a GPU search uses for its products.

use crate::error::{Error, Result};
use std::str::FromStr;

/// Precision of the q·x products on the GPU. The CPU backend always computes in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Precision {
    /// Exact f32 (tensor-op math off).
    #[default]
    F32,
    /// TF32 tensor cores on f32 inputs (10-bit mantissa products, f32 accumulation).
    Tf32,
    /// Inputs rounded to f16, f32 accumulation.
    F16,
    /// Inputs rounded to bf16, f32 accumulation.
    Bf16,
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "tf32" => Ok(Precision::Tf32),
            "f16" | "fp16" | "half" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::invalid("precision", format!("{s:?}: expected f32, tf32, f16 or bf16"))),
        }
    }
}
