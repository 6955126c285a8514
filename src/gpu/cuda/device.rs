//! Opening devices: the driver checks that must precede any cudarc call that would panic, the
//! device list, and one searcher per listed id.

use super::search::CudaSearcher;
use super::CudaResultExt;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::FlatSearcher;
use crate::gpu::{kernels, GpuOptions};
use cudarc::driver::CudaContext;
use std::sync::Arc;

/// Fails with [`Error::Unavailable`] unless the kernels are built in and the driver and cuBLAS
/// libraries can be loaded. cudarc loads libraries lazily and *panics* when one is missing, so
/// this must run before any other CUDA call.
pub(crate) fn check_runtime(what: &str) -> Result<()> {
    let unavailable = |reason: String| Error::Unavailable { what: what.to_string(), reason };
    if !kernels::BUILT {
        return Err(unavailable(format!(
            "the CUDA kernels are not compiled into this build: {}. Install nvcc (see \
             shared/notes/cuda-toolchain.md, or set NVCC) and rebuild with --features cuda",
            kernels::MISSING_REASON
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

/// One searcher per listed device id; see [`crate::gpu::open_searchers`].
pub(crate) fn open_searchers(device: &Device, opts: &GpuOptions) -> Result<Vec<Box<dyn FlatSearcher + Send>>> {
    check_runtime(&format!("CUDA device {device}"))?;
    let count = device_count()?;
    let ids: Vec<usize> = match device {
        Device::Cpu => return Err(Error::invalid("device", "cpu is not a CUDA device")),
        Device::AllCuda => (0..count).collect(),
        Device::Cuda(ids) => ids.clone(),
    };
    if ids.is_empty() {
        return Err(Error::Unavailable {
            what: format!("CUDA device {device}"),
            reason: "the CUDA driver sees no device (check CUDA_VISIBLE_DEVICES)".into(),
        });
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= count) {
        return Err(Error::BadDevice { id: bad, count });
    }
    let mut out: Vec<Box<dyn FlatSearcher + Send>> = Vec::with_capacity(ids.len());
    for (slot, &id) in ids.iter().enumerate() {
        // Logical shards on one GPU split its memory budget between them.
        let sharing = ids.iter().filter(|&&j| j == id).count();
        out.push(Box::new(CudaSearcher::open(id, slot, sharing, *opts)?));
    }
    Ok(out)
}
