//! Loading the embedded kernels into a context, once per device and process: the fatbin first
//! (SASS for sm_80/sm_90, PTX for anything newer), then the PTX text, then NVRTC on the embedded
//! source. Each fallback keeps the reason the previous one failed, for the error message. Every
//! function is resolved by the names of [`crate::gpu::table`].

use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::gpu::embedded;
use crate::gpu::table::{self, ELEMS, FUSED_BUCKETS, FUSED_PRECS, METRICS, SELECT_BUCKETS};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::sync::Arc;

/// Every kernel function the searches use, resolved in one context.
pub(crate) struct Functions {
    /// `pack_rows_{e}` per element type of [`ELEMS`].
    pub pack: Vec<CudaFunction>,
    /// `row_norms_{e}` per element type of [`ELEMS`].
    pub norms: Vec<CudaFunction>,
    /// `topk_select_k{B}_{metric}`, as `[bucket][metric]`.
    pub select: Vec<Vec<CudaFunction>>,
    /// `topk_merge`.
    pub merge: CudaFunction,
    /// `fused_knn_{prec}_{metric}_k{B}`, as `[precision][metric][bucket]`.
    pub fused: Vec<Vec<Vec<CudaFunction>>>,
    /// `fused_clear_lists`.
    pub fused_clear: CudaFunction,
}

/// Dynamic shared memory of the block-select kernels (k > 512): 2·K·8 bytes.
pub(crate) fn select_smem(bucket: usize) -> u32 {
    if bucket > 512 {
        (2 * bucket * 8) as u32
    } else {
        0
    }
}

impl Functions {
    pub(crate) fn load(ctx: &Arc<CudaContext>) -> Result<Functions> {
        let dev = ctx.ordinal();
        let module = |name: &str| -> Result<Arc<CudaModule>> {
            let (_, fatbin, ptx, src, _) = embedded::MODULES.iter().find(|m| m.0 == name).copied().ok_or_else(|| Error::Cuda {
                device: dev,
                context: "loading kernels".into(),
                message: format!("module {name} is not embedded"),
                source: None,
            })?;
            load_module(ctx, name, fatbin, ptx, src)
        };
        let convert = module("convert")?;
        let norms = module("norms")?;
        let select = module("select")?;
        let merge = module("merge")?;
        let fused = module("fused")?;
        let f = |m: &Arc<CudaModule>, name: &str| m.load_function(name).ctx(dev, format!("finding kernel {name}"));
        let mut sel = Vec::with_capacity(SELECT_BUCKETS.len());
        for (b, &bucket) in SELECT_BUCKETS.iter().enumerate() {
            let per_metric = (0..METRICS.len()).map(|m| f(&select, &table::select_name(b, m))).collect::<Result<Vec<_>>>()?;
            let smem = select_smem(bucket);
            if smem > 48 * 1024 {
                // Above 48 KiB a kernel must opt in to more dynamic shared memory.
                for func in &per_metric {
                    func.set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
                        .ctx(dev, format!("allowing {smem} bytes of shared memory for k ≤ {bucket}"))?;
                }
            }
            sel.push(per_metric);
        }
        let mut fused_fns = Vec::with_capacity(FUSED_PRECS.len());
        for p in 0..FUSED_PRECS.len() {
            let mut per_metric = Vec::with_capacity(METRICS.len());
            for m in 0..METRICS.len() {
                per_metric.push((0..FUSED_BUCKETS.len()).map(|b| f(&fused, &table::fused_name(p, m, b))).collect::<Result<Vec<_>>>()?);
            }
            fused_fns.push(per_metric);
        }
        Ok(Functions {
            pack: ELEMS.iter().map(|(e, _)| f(&convert, &format!("pack_rows_{e}"))).collect::<Result<_>>()?,
            norms: ELEMS.iter().map(|(e, _)| f(&norms, &format!("row_norms_{e}"))).collect::<Result<_>>()?,
            select: sel,
            merge: f(&merge, "topk_merge")?,
            fused: fused_fns,
            fused_clear: f(&fused, "fused_clear_lists")?,
        })
    }
}

fn load_module(ctx: &Arc<CudaContext>, name: &str, fatbin: &[u8], ptx: &str, src: &str) -> Result<Arc<CudaModule>> {
    let dev = ctx.ordinal();
    let mut why = Vec::new();
    match ctx.load_module(Ptx::from_binary(fatbin.to_vec())) {
        Ok(m) => return Ok(m),
        Err(e) => why.push(format!("fatbin: {e}")),
    }
    match ctx.load_module(Ptx::from_src(ptx)) {
        Ok(m) => return Ok(m),
        Err(e) => why.push(format!("PTX: {e}")),
    }
    // SAFETY: only tries to dlopen libnvrtc; cudarc would panic on first use without it.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        match nvrtc(ctx, src) {
            Ok(p) => match ctx.load_module(p) {
                Ok(m) => return Ok(m),
                Err(e) => why.push(format!("NVRTC output: {e}")),
            },
            Err(e) => why.push(format!("NVRTC: {e}")),
        }
    } else {
        why.push("NVRTC: libnvrtc not found".into());
    }
    // The context may hold the error of a failed load; clear it so later calls are not blamed.
    let _ = ctx.check_err();
    Err(Error::Cuda { device: dev, context: format!("loading kernels/{name}.cu"), message: why.join("; "), source: None })
}

fn nvrtc(ctx: &Arc<CudaContext>, src: &str) -> std::result::Result<Ptx, String> {
    let (major, minor) = ctx.compute_capability().map_err(|e| e.to_string())?;
    let mut include_paths = Vec::new();
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(p) = std::env::var_os(var) {
            let inc = std::path::PathBuf::from(p).join("include");
            if inc.is_dir() {
                include_paths.push(inc.to_string_lossy().into_owned());
            }
        }
    }
    let opts = CompileOptions { options: vec![format!("--gpu-architecture=compute_{major}{minor}"), "-std=c++17".into()], include_paths, ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| e.to_string())
}
