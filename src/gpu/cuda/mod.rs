//! The CUDA backend (feature `cuda`): device discovery, module loading, kernel launches, the
//! tiled search pipeline and the device merge. Everything that can fail maps to a typed
//! [`Error`]; nothing here panics on bad input or a missing driver.

mod cublas_path;
mod driver;
mod floor;
mod functions;
mod fused_path;
mod gemm;
mod launch;
mod merge;
mod resources;
mod searcher;
mod upload;

pub(crate) use floor::gemm_floor;
pub(crate) use merge::{merge_on_device, merge_on_device_timed};
pub(crate) use searcher::open_searchers;

use crate::error::Error;
use cudarc::driver::{sys::CUresult, DriverError};

/// A driver error as [`Error::Cuda`], or [`Error::OutOfMemory`] for an allocation of `bytes`
/// that the device could not serve.
pub(crate) fn driver_err(device: usize, context: impl Into<String>, e: DriverError, bytes: usize) -> Error {
    let context = context.into();
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        return Error::OutOfMemory { device: format!("cuda:{device}"), context, needed_bytes: bytes };
    }
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Error::Cuda { device, context, message: format!("{:?}: {text}", e.0), source: Some(Box::new(e)) }
}

/// Shorthand for results whose failure is not an allocation.
pub(crate) trait CudaResultExt<T> {
    /// Maps the error with [`driver_err`] (no allocation size).
    fn ctx(self, device: usize, context: impl Into<String>) -> crate::Result<T>;
    /// Maps the error with [`driver_err`] for an allocation of `bytes`.
    fn alloc(self, device: usize, context: impl Into<String>, bytes: usize) -> crate::Result<T>;
}

impl<T> CudaResultExt<T> for Result<T, DriverError> {
    fn ctx(self, device: usize, context: impl Into<String>) -> crate::Result<T> {
        self.map_err(|e| driver_err(device, context, e, 0))
    }
    fn alloc(self, device: usize, context: impl Into<String>, bytes: usize) -> crate::Result<T> {
        self.map_err(|e| driver_err(device, context, e, bytes))
    }
}
