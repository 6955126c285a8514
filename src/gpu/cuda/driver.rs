//! The CUDA driver: the checks that must precede any cudarc call that would panic, the device
//! count, and a device's primary context.

use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::gpu::embedded;
use cudarc::driver::CudaContext;
use std::sync::Arc;

/// Fails with [`Error::Unavailable`] unless the kernels are built in and the driver and cuBLAS
/// libraries can be loaded. cudarc loads libraries lazily and *panics* when one is missing, so
/// this must run before any other CUDA call.
pub(crate) fn check_runtime(what: &str) -> Result<()> {
    let unavailable = |reason: String| Error::Unavailable { what: what.to_string(), reason };
    if !embedded::BUILT {
        return Err(unavailable(format!(
            "the CUDA kernels are not compiled into this build: {}. Install nvcc 13.0 (see the README's \
             GPU section: `bash scripts/setup.sh`, or set NVCC) and rebuild with --features cuda",
            embedded::MISSING_REASON
        )));
    }
    // SAFETY: only tries to dlopen the library; no CUDA function is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable("no CUDA driver was found (libcuda.so cannot be loaded); is an NVIDIA driver installed?".into()));
    }
    // SAFETY: as above, for libcublas.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(unavailable("the cuBLAS library (libcublas.so) cannot be loaded; install the CUDA 13 runtime libraries".into()));
    }
    Ok(())
}

/// Number of visible devices (after [`check_runtime`]).
pub(crate) fn device_count() -> Result<usize> {
    let n = CudaContext::device_count().ctx(0, "counting CUDA devices")?;
    Ok(n.max(0) as usize)
}

/// The primary context of `id`, checked against the device count.
pub(crate) fn context(id: usize, count: usize) -> Result<Arc<CudaContext>> {
    if id >= count {
        return Err(Error::BadDevice { id, count });
    }
    CudaContext::new(id).ctx(id, "creating the CUDA context")
}
