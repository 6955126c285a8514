//! Loading the embedded kernels into a context, once per searcher: the fatbin first (SASS for
//! sm_80/sm_90, PTX for anything newer), then the PTX text, then NVRTC on the embedded source.
//! Each fallback keeps the reason the previous one failed, for the error message.

use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::gpu::kernels;
use crate::gpu::plan::BUCKETS;
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::sync::Arc;

/// Every kernel the search uses, resolved in one context.
pub(crate) struct Kernels {
    /// `pack_rows_{f32,f16,bf16}`.
    pub pack: [CudaFunction; 3],
    /// `row_norms_{f32,f16,bf16}`.
    pub norms: [CudaFunction; 3],
    /// Per bucket of [`BUCKETS`]: `[l2, ip]`.
    pub select: Vec<[CudaFunction; 2]>,
    /// `topk_merge`.
    pub merge: CudaFunction,
    /// `fused_knn_{bf16,f16,tf32,f32}_{l2,ip}_k{32,128}`, as `[precision][metric][bucket]`.
    pub fused: Vec<[[CudaFunction; 2]; 2]>,
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

impl Kernels {
    pub(crate) fn load(ctx: &Arc<CudaContext>) -> Result<Kernels> {
        let dev = ctx.ordinal();
        let module = |name: &str| -> Result<Arc<CudaModule>> {
            let (_, fatbin, ptx, src, _) = kernels::MODULES
                .iter()
                .find(|m| m.0 == name)
                .copied()
                .ok_or_else(|| Error::Cuda { device: dev, context: "loading kernels".into(), message: format!("module {name} is not embedded") })?;
            load_module(ctx, name, fatbin, ptx, src)
        };
        let convert = module("convert")?;
        let norms = module("norms")?;
        let select = module("select")?;
        let merge = module("merge")?;
        let fused = module("fused")?;
        let f = |m: &Arc<CudaModule>, name: &str| m.load_function(name).ctx(dev, format!("finding kernel {name}"));
        let mut sel = Vec::new();
        for b in BUCKETS {
            let pair = [f(&select, &format!("topk_select_k{b}_l2"))?, f(&select, &format!("topk_select_k{b}_ip"))?];
            let smem = select_smem(b);
            if smem > 48 * 1024 {
                // Above 48 KiB a kernel must opt in to more dynamic shared memory.
                for func in &pair {
                    func.set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
                        .ctx(dev, format!("allowing {smem} bytes of shared memory for k ≤ {b}"))?;
                }
            }
            sel.push(pair);
        }
        Ok(Kernels {
            pack: [f(&convert, "pack_rows_f32")?, f(&convert, "pack_rows_f16")?, f(&convert, "pack_rows_bf16")?],
            norms: [f(&norms, "row_norms_f32")?, f(&norms, "row_norms_f16")?, f(&norms, "row_norms_bf16")?],
            select: sel,
            merge: f(&merge, "topk_merge")?,
            fused: ["bf16", "f16", "tf32", "f32"]
                .iter()
                .map(|p| {
                    let by_bucket = |m: &str| -> Result<[CudaFunction; 2]> {
                        Ok([f(&fused, &format!("fused_knn_{p}_{m}_k32"))?, f(&fused, &format!("fused_knn_{p}_{m}_k128"))?])
                    };
                    Ok([by_bucket("l2")?, by_bucket("ip")?])
                })
                .collect::<Result<_>>()?,
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
    Err(Error::Cuda { device: dev, context: format!("loading kernels/{name}.cu"), message: why.join("; ") })
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
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{major}{minor}"), "-std=c++17".into()],
        include_paths,
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| e.to_string())
}
