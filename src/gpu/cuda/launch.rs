//! Typed launches of our kernels. Pointers are raw device addresses (`u64`) that the caller takes
//! from cudarc's `device_ptr`/`device_ptr_mut` guards, so cudarc's per-buffer events still order
//! the two streams; each wrapper states what the addresses must satisfy.

use super::functions::{select_smem, Functions};
use super::CudaResultExt;
use crate::error::Result;
use crate::gpu::table::{self, SELECT_BUCKETS};
use crate::metric::FlatMetric;
use crate::precision::Precision;
use cudarc::driver::{CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};

/// Mirrors `fnn::SelectArgs` in kernels/params.cuh field for field (C layout, 112 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SelectArgs {
    pub prods: u64,
    pub ld: i64,
    pub qnorms: u64,
    pub xnorms: u64,
    pub thr_keys: u64,
    pub thr_ids: u64,
    pub thr_ld: i64,
    pub out_keys: u64,
    pub out_ids: u64,
    pub out_ld: i64,
    pub col_base: i64,
    pub qid_base: i64,
    pub rows: i32,
    pub cols: i32,
    pub k: i32,
    pub has_self: i32,
}
// SAFETY: plain old data with the C layout of the kernel's parameter.
unsafe impl DeviceRepr for SelectArgs {}

/// Mirrors `fnn::MergeArgs` in kernels/params.cuh (C layout, 72 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MergeArgs {
    pub in_keys: u64,
    pub in_ids: u64,
    pub in_ld: i64,
    pub list_stride: i64,
    pub out_keys: u64,
    pub out_ids: u64,
    pub out_ld: i64,
    pub rows: i32,
    pub m: i32,
    pub k: i32,
    pub p: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for MergeArgs {}

/// Mirrors `fnn::FusedArgs` in kernels/params.cuh field for field (C layout, 96 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FusedArgs {
    pub q: u64,
    pub qnorms: u64,
    pub x: u64,
    pub xnorms: u64,
    pub keys: u64,
    pub ids: u64,
    pub locks: u64,
    pub ld: i64,
    pub self_offset: i64,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub symmetric: i32,
    pub has_self: i32,
    pub pad: i32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for FusedArgs {}

fn grid_for(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block).clamp(1, 1 << 20) as u32
}

/// Packs `n` dense f32 rows of `d` values at `src` into stored rows of stride `ld` at `dst`.
///
/// # Safety
/// `src` must address `n·d` f32 and `dst` `n·ld` elements of the precision's type, both in
/// `stream`'s context, with no unordered concurrent access.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack(k: &Functions, stream: &CudaStream, prec: Precision, src: u64, n: usize, d: usize, dst: u64, ld: usize) -> Result<()> {
    let cfg = LaunchConfig { grid_dim: (grid_for(n, 1).min(65535), 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    let (n, d, ld) = (n as i64, d as i32, ld as i64);
    stream
        .launch_builder(&k.pack[table::elem_index(prec)])
        .arg(&src)
        .arg(&n)
        .arg(&d)
        .arg(&dst)
        .arg(&ld)
        .launch(cfg)
        .map(|_| ())
        .ctx(stream.context().ordinal(), "launching pack_rows")
}

/// Squared norms of `n` stored rows (stride `ld`, `d` values) at `x` into `n` f32 at `out`.
///
/// # Safety
/// `x` must address `n·ld` stored elements and `out` `n` f32 in `stream`'s context.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn norms(k: &Functions, stream: &CudaStream, prec: Precision, x: u64, ld: usize, n: usize, d: usize, out: u64) -> Result<()> {
    let cfg = LaunchConfig { grid_dim: (grid_for(n, 8), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (ld, n, d) = (ld as i64, n as i64, d as i32);
    stream
        .launch_builder(&k.norms[table::elem_index(prec)])
        .arg(&x)
        .arg(&ld)
        .arg(&n)
        .arg(&d)
        .arg(&out)
        .launch(cfg)
        .map(|_| ())
        .ctx(stream.context().ordinal(), "launching row_norms")
}

/// Fused epilogue + selection of one product tile; `a.k` picks the bucket.
///
/// # Safety
/// Every pointer in `a` must address the extents documented on `fnn::SelectArgs` (products
/// `rows × ld`, norms for L2, running lists and outputs `rows` rows of stride `thr_ld`/`out_ld`
/// with `k` entries) in `stream`'s context; `a.ld` a multiple of 4; `1 ≤ a.k ≤ 4096`.
pub(crate) unsafe fn select(k: &Functions, stream: &CudaStream, metric: FlatMetric, a: &SelectArgs) -> Result<()> {
    let kk = a.k.max(1) as usize;
    let b = table::select_bucket(kk).unwrap_or(SELECT_BUCKETS.len() - 1);
    let bucket = SELECT_BUCKETS[b];
    let rows = a.rows.max(0) as usize;
    let cfg = if bucket <= 512 {
        LaunchConfig { grid_dim: (rows.div_ceil(4).max(1) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 }
    } else {
        LaunchConfig { grid_dim: (rows.max(1) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: select_smem(bucket) }
    };
    let f = &k.select[b][table::metric_index(metric)];
    stream.launch_builder(f).arg(a).launch(cfg).map(|_| ()).ctx(stream.context().ordinal(), format!("launching topk_select_k{bucket}"))
}

/// Merges `a.m` lists per row (see `fnn::MergeArgs`).
///
/// # Safety
/// Inputs must address `rows` rows of stride `in_ld` holding `m` lists `list_stride` apart, each
/// of `k` sorted entries; outputs `rows` rows of stride `out_ld`. Output may alias list 0.
pub(crate) unsafe fn merge(k: &Functions, stream: &CudaStream, a: &MergeArgs) -> Result<()> {
    let p = a.p.max(1) as u32;
    let threads = (p / 2).clamp(32, 512);
    let cfg = LaunchConfig { grid_dim: (a.rows.max(1) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: p * 12 };
    stream.launch_builder(&k.merge).arg(a).launch(cfg).map(|_| ()).ctx(stream.context().ordinal(), "launching topk_merge")
}

/// Rows of the fused kernel's blocks (`fnn::FB`): one block of 128 threads per 64 query rows.
pub(crate) const FUSED_ROWS: usize = 64;

/// Empties `count` list entries: keys +inf, ids the sentinel.
///
/// # Safety
/// `keys` and `ids` must address `count` f32 and u32 in `stream`'s context.
pub(crate) unsafe fn fused_clear(k: &Functions, stream: &CudaStream, keys: u64, ids: u64, count: usize) -> Result<()> {
    let cfg = LaunchConfig { grid_dim: (grid_for(count, 256).min(4096), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let count = count as i64;
    stream
        .launch_builder(&k.fused_clear)
        .arg(&keys)
        .arg(&ids)
        .arg(&count)
        .launch(cfg)
        .map(|_| ())
        .ctx(stream.context().ordinal(), "launching fused_clear_lists")
}

/// The fused self-join or search (see `fnn::FusedArgs`): one block per 64 query rows.
///
/// # Safety
/// Every pointer in `a` must address the extents documented on `fnn::FusedArgs` in `stream`'s
/// context: `m` query and `n` database rows at stride `ld` (a multiple of 8) of the precision's
/// element type with their norms, `m × k` list entries emptied by [`fused_clear`], and one zeroed
/// lock per 64 list rows; `1 ≤ k ≤ 128`.
pub(crate) unsafe fn fused(k: &Functions, stream: &CudaStream, prec: Precision, metric: FlatMetric, a: &FusedArgs) -> Result<()> {
    let bucket = table::fused_bucket(a.k.max(1) as usize).unwrap_or(table::FUSED_BUCKETS.len() - 1);
    let f = &k.fused[table::fused_index(prec)][table::metric_index(metric)][bucket];
    // In 64 bits: m + 63 overflows i32 near 2³¹ rows (the searcher refuses such m anyway).
    let blocks = u32::try_from((a.m.max(1) as u64).div_ceil(FUSED_ROWS as u64)).unwrap_or(u32::MAX);
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    stream.launch_builder(f).arg(a).launch(cfg).map(|_| ()).ctx(stream.context().ordinal(), "launching the fused kernel")
}

/// Next power of two ≥ k: the merge kernel's shared list length.
pub(crate) fn merge_width(k: usize) -> usize {
    k.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // The same numbers are asserted on the C++ side in kernels/emu/kernel_tests.cpp.
    #[test]
    fn kernel_parameter_layouts_match_the_cuda_structs() {
        assert_eq!(size_of::<SelectArgs>(), 112);
        assert_eq!(offset_of!(SelectArgs, col_base), 80);
        assert_eq!(offset_of!(SelectArgs, rows), 96);
        assert_eq!(offset_of!(SelectArgs, has_self), 108);
        assert_eq!(size_of::<MergeArgs>(), 72);
        assert_eq!(offset_of!(MergeArgs, out_ld), 48);
        assert_eq!(offset_of!(MergeArgs, p), 68);
        assert_eq!(size_of::<FusedArgs>(), 96);
        assert_eq!(offset_of!(FusedArgs, ld), 56);
        assert_eq!(offset_of!(FusedArgs, m), 72);
        assert_eq!(offset_of!(FusedArgs, has_self), 88);
    }
}
