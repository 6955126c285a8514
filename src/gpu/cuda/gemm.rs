//! The q·xᵀ product tiles through cuBLAS `GemmEx`, with the arithmetic the precision asks for:
//! exact f32 (tensor-op math off), TF32 tensor cores on f32 inputs, or f16/bf16 inputs with f32
//! accumulation.

use crate::error::{Error, Result};
use crate::precision::Precision;
use cudarc::cublas::result::CublasError;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasMath_t, cublasOperation_t, cublasStatus_t, cudaDataType_t};
use cudarc::cublas::CudaBlas;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// A cuBLAS handle bound to the compute stream.
pub(crate) struct Gemm {
    blas: CudaBlas,
    device: usize,
}

fn blas_err(device: usize, context: &str, e: CublasError) -> Error {
    if e.0 == cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED {
        return Error::OutOfMemory { device: format!("cuda:{device}"), context: context.to_string(), needed_bytes: 0 };
    }
    Error::Cuda { device, context: context.to_string(), message: format!("{:?}", e.0), source: Some(Box::new(e)) }
}

impl Gemm {
    pub(crate) fn new(stream: Arc<CudaStream>) -> Result<Gemm> {
        let device = stream.context().ordinal();
        let blas = CudaBlas::new(stream).map_err(|e| blas_err(device, "creating the cuBLAS handle", e))?;
        // Default math: no TF32 unless a compute type asks for it (F32 must stay exact f32).
        // SAFETY: a valid handle and a valid enum value.
        unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), cublasMath_t::CUBLAS_DEFAULT_MATH) }
            .result()
            .map_err(|e| blas_err(device, "setting cuBLAS math mode", e))?;
        Ok(Gemm { blas, device })
    }

    /// Row-major `P[rows × cols] = Q[rows × d] · X[cols × d]ᵀ` with row strides `ld` (Q, X, in
    /// stored elements) and `p_ld` (P, f32). In cuBLAS's column-major terms this is
    /// `Pᵀ (cols × rows) = Xᵀᵀ · Qᵀ`: A = X transposed (lda = ld), B = Q as is (ldb = ld).
    ///
    /// # Safety
    /// `q`, `x` must address `rows·ld` and `cols·ld` stored elements of the precision's type and
    /// `p` `rows·p_ld` f32, all in the handle's context and ordered on its stream; `d ≤ ld`,
    /// `cols ≤ p_ld`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn products(&self, prec: Precision, q: u64, x: u64, p: u64, rows: usize, cols: usize, d: usize, ld: usize, p_ld: usize) -> Result<()> {
        let (ty, compute) = match prec {
            Precision::F32 | Precision::Auto | Precision::Int8 => (cudaDataType_t::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
            Precision::Tf32 => (cudaDataType_t::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32),
            Precision::F16 => (cudaDataType_t::CUDA_R_16F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
            Precision::Bf16 => (cudaDataType_t::CUDA_R_16BF, cublasComputeType_t::CUBLAS_COMPUTE_32F),
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let dim = |v: usize, what: &str| -> Result<i32> {
            i32::try_from(v).map_err(|_| Error::invalid("gpu tile", format!("{what} = {v} exceeds cuBLAS's 32-bit sizes")))
        };
        cudarc::cublas::result::gemm_ex(
            *self.blas.handle(),
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
            dim(cols, "tile columns")?,
            dim(rows, "batch rows")?,
            dim(d, "dimension")?,
            (&alpha) as *const f32 as *const _,
            x as *const _,
            ty,
            dim(ld, "row stride")?,
            q as *const _,
            ty,
            dim(ld, "row stride")?,
            (&beta) as *const f32 as *const _,
            p as *mut _,
            cudaDataType_t::CUDA_R_32F,
            dim(p_ld, "product stride")?,
            compute,
            cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
        .map_err(|e| blas_err(self.device, "computing a product tile (cublasGemmEx)", e))
    }
}
