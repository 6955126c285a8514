//! The CUDA backend of exact flat search: our own kernels (row norms, the L2/IP epilogue fused
//! with k-selection, list merges) around cuBLAS product tiles, loaded through cudarc at run time.
//!
//! This module always compiles. With the `cuda` feature it holds the real backend; without it,
//! [`open_searchers`] and [`merge_on_device`] return [`Error::Unavailable`]. The kernels are
//! compiled by `build.rs` when the feature is on and nvcc is found ([`embedded::BUILT`], and
//! `cfg(faiss_nn_kernels)`); a build without them compiles but reports the GPU unavailable.
//! Device resources (context, kernels) are opened once per process and device; each searcher
//! has its own streams and cuBLAS handle, and keeps a loaded database resident between searches.
//!
//! A search per device ([`crate::flat::FlatSearcher`]):
//! 1. rows are uploaded in chunks through pinned staging on a copy stream, packed on the device
//!    (row stride a multiple of 8, the precision's element type) and their squared norms taken;
//!    the database stays resident when it fits half the budget, otherwise it streams in tiles;
//! 2. per query batch and database tile, cuBLAS computes the products (exact f32, TF32, or
//!    f16/bf16 inputs with f32 accumulation, see [`Precision`]);
//! 3. the select kernel turns products into keys (‖q‖² + ‖x‖² − 2q·x clamped at 0, or −q·x),
//!    skips the query itself, and keeps the tile's best k that beat the batch's running k-th;
//! 4. the merge kernel folds the tile's list into the running lists; a finished batch returns to
//!    the host on the copy stream while the next batch computes.
//!
//! Rankings use the crate-wide strict order on (key, index), so results do not depend on tiling.

pub mod embedded;
pub mod plan;
pub mod ptxas;
pub mod table;

pub use table::{FUSED_MAX_K, MAX_K};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(not(feature = "cuda"))]
mod stub;

#[cfg(feature = "cuda")]
use cuda as backend;
#[cfg(not(feature = "cuda"))]
use stub as backend;

use crate::data::Vectors;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::FlatSearcher;
use crate::precision::Precision;
use crate::topk::TopKLists;

/// Which code path computes a GPU search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum GpuPath {
    /// The crate's choice ([`crate::engine::strategy`]): [`GpuPath::Cublas`], which ran faster
    /// than the fused kernel in the large cases measured on an H200 (f32 and bf16 at
    /// 200k × 384, bf16 at 1M × 1024, k = 10: 1.3–3.8× faster; BENCHMARKS.md). The fused kernel becomes the choice
    /// where it is measured faster.
    #[default]
    Auto,
    /// cuBLAS product tiles, then our select and merge kernels: any k ≤ 4096, any size (the
    /// database streams in tiles when it does not fit).
    Cublas,
    /// Our fused kernel: products on tensor cores (bf16, f16, tf32) or exact f32 FMAs, the
    /// epilogue and the running top-k in one kernel, each pair computed once in a self-join.
    /// Serves k ≤ 128 with every row resident on the device.
    Fused,
}

impl std::str::FromStr for GpuPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(GpuPath::Auto),
            "cublas" => Ok(GpuPath::Cublas),
            "fused" => Ok(GpuPath::Fused),
            _ => Err(Error::invalid("gpu_path", format!("{s:?}: expected auto, cublas or fused"))),
        }
    }
}

/// How GPU searchers work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuOptions {
    /// Arithmetic of the products.
    pub precision: Precision,
    /// Share of the device's free memory (at search time) a search may use, in (0, 1]; logical
    /// shards on one GPU split it. Default 0.5.
    pub memory_fraction: f32,
    /// A cap in bytes on top of `memory_fraction` (the engine's `memory_budget`).
    pub budget_bytes: Option<usize>,
    /// Query rows per batch; `None` sizes batches from the memory budget.
    pub batch_rows: Option<usize>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { precision: Precision::F32, memory_fraction: 0.5, budget_bytes: None, batch_rows: None }
    }
}

impl GpuOptions {
    /// Checks the values a user may have set.
    pub fn validate(&self) -> Result<()> {
        if !(self.memory_fraction > 0.0 && self.memory_fraction <= 1.0) {
            return Err(Error::invalid("memory_fraction", format!("{}: must be in (0, 1]", self.memory_fraction)));
        }
        if self.batch_rows == Some(0) {
            return Err(Error::invalid("batch_rows", "0: a batch needs at least one query row"));
        }
        Ok(())
    }
}

/// One searcher per device of `device`: per listed id in order (a repeated id is one more
/// logical shard on that GPU, with its own streams and cuBLAS handle in the device's primary
/// context, and a share of its memory budget), or every visible device for
/// [`Device::AllCuda`].
///
/// Errors: [`Error::Unavailable`] without the `cuda` feature, without compiled kernels, without
/// a CUDA driver or cuBLAS, or with no visible device; [`Error::BadDevice`] for an id at or above
/// the device count; [`Error::Cuda`] when a context, stream or module cannot be created.
pub fn open_searchers(device: &Device, opts: &GpuOptions) -> Result<Vec<Box<dyn FlatSearcher>>> {
    opts.validate()?;
    backend::open_searchers(device, opts)
}

/// Merges per-shard lists of the same rows into the best `k` per row on CUDA device `device`,
/// with the same (key, index) order and padding (+inf, −1) as [`crate::topk::merge_lists`]; a
/// drop-in for the shard layer's host merge (`|parts, k| merge_on_device(0, parts, k)`).
///
/// The parts are host lists (what every searcher returns), so they are copied host → device in
/// row chunks of bounded size; lists shorter than `k` are padded, longer ones cut. Candidates of
/// different parts must be distinct, as they are for disjoint database shards. `1 ≤ k ≤ 4096`.
pub fn merge_on_device(device: usize, parts: &[TopKLists], k: usize) -> Result<TopKLists> {
    backend::merge_on_device(device, parts, k)
}

/// [`merge_on_device`], also returning the milliseconds the merge kernel itself took (CUDA
/// events around its launches; the host ↔ device copies of the lists are not included). For
/// benchmarks of the merge against the bytes it moves.
pub fn merge_on_device_timed(device: usize, parts: &[TopKLists], k: usize) -> Result<(TopKLists, f32)> {
    backend::merge_on_device_timed(device, parts, k)
}

/// The floor of the GPU flat search, for benchmarks: milliseconds of the bare cuBLAS products of
/// a self-join of `data` (batches and tiles as our search would plan them for `k` and `opts`,
/// the data resident on `device`), one entry per repetition after a warm-up, CUDA-event timed.
/// No norms, selection, merges or copies home are included.
pub fn gemm_floor(device: usize, data: Vectors<'_>, k: usize, opts: &GpuOptions, reps: usize) -> Result<Vec<f32>> {
    opts.validate()?;
    backend::gemm_floor(device, data, k, opts, reps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid_and_bad_ones_are_refused() {
        assert!(GpuOptions::default().validate().is_ok());
        assert!(GpuOptions { memory_fraction: 0.0, ..Default::default() }.validate().is_err());
        assert!(GpuOptions { memory_fraction: 1.5, ..Default::default() }.validate().is_err());
        assert!(GpuOptions { memory_fraction: f32::NAN, ..Default::default() }.validate().is_err());
        assert!(GpuOptions { batch_rows: Some(0), ..Default::default() }.validate().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_the_gpu_is_unavailable() {
        match open_searchers(&Device::Cuda(vec![0]), &GpuOptions::default()) {
            Err(Error::Unavailable { reason, .. }) => assert!(reason.contains("--features cuda")),
            other => panic!("expected Unavailable, got {:?}", other.map(|v| v.len())),
        }
    }
}
