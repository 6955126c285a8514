//! What a GPU search needs, opened once: per device and process, the primary context and our
//! kernels loaded into it ([`DeviceResources`]); per searcher, a compute and a copy stream and a
//! cuBLAS handle on the compute stream ([`Lane`]).

use super::driver::{check_runtime, context, device_count};
use super::functions::Functions;
use super::gemm::Gemm;
use super::CudaResultExt;
use crate::error::Result;
use cudarc::driver::{CudaContext, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A device's context and loaded kernels, shared by every searcher on it.
pub(crate) struct DeviceResources {
    pub ctx: Arc<CudaContext>,
    pub functions: Functions,
}

/// The resources of device `id`, opened on first use and kept for the life of the process
/// (loading five modules per search would cost more than many searches).
pub(crate) fn device_resources(id: usize) -> Result<Arc<DeviceResources>> {
    static OPEN: OnceLock<Mutex<HashMap<usize, Arc<DeviceResources>>>> = OnceLock::new();
    check_runtime(&format!("CUDA device {id}"))?;
    let mut open = OPEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = open.get(&id) {
        return Ok(r.clone());
    }
    let ctx = context(id, device_count()?)?;
    let functions = Functions::load(&ctx)?;
    let r = Arc::new(DeviceResources { ctx, functions });
    open.insert(id, r.clone());
    Ok(r)
}

/// One searcher's own streams and cuBLAS handle (a cuBLAS handle and our two streams serve one
/// search at a time, so a searcher holds its lane behind a lock).
pub(crate) struct Lane {
    pub res: Arc<DeviceResources>,
    pub compute: Arc<CudaStream>,
    pub copy: Arc<CudaStream>,
    pub gemm: Gemm,
}

impl Lane {
    pub(crate) fn open(res: Arc<DeviceResources>) -> Result<Lane> {
        let dev = res.ctx.ordinal();
        let compute = res.ctx.new_stream().ctx(dev, "creating the compute stream")?;
        let copy = res.ctx.new_stream().ctx(dev, "creating the copy stream")?;
        let gemm = Gemm::new(compute.clone())?;
        Ok(Lane { res, compute, copy, gemm })
    }

    /// Our kernels.
    pub(crate) fn functions(&self) -> &Functions {
        &self.res.functions
    }

    /// The context.
    pub(crate) fn ctx(&self) -> &Arc<CudaContext> {
        &self.res.ctx
    }
}
