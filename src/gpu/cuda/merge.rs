//! Merging per-shard top-k lists on one device with the `topk_merge` kernel (the shard layer's
//! alternative to the host merge). The shard results are host lists (every searcher returns
//! [`TopKLists`]), so they travel host → device; rows go in chunks that bound device memory.

use super::launch::{self, MergeArgs};
use super::resources::device_resources;
use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::topk::TopKLists;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{DevicePtr, DevicePtrMut};

/// Device bytes one merge chunk may take.
const CHUNK_BYTES: usize = 256 << 20;

pub(crate) fn merge_on_device(device: usize, parts: &[TopKLists], k: usize) -> Result<TopKLists> {
    merge_on_device_timed(device, parts, k).map(|(lists, _)| lists)
}

/// [`merge_on_device`], also returning the milliseconds the merge kernel itself took (CUDA
/// events around each launch, summed over the row chunks; copies not included).
pub(crate) fn merge_on_device_timed(device: usize, parts: &[TopKLists], k: usize) -> Result<(TopKLists, f32)> {
    if parts.is_empty() {
        return Err(Error::invalid("merge", "no lists to merge"));
    }
    if k == 0 || k > crate::gpu::plan::MAX_K {
        return Err(Error::InvalidK { k, reason: format!("the device merge serves 1 ≤ k ≤ {}", crate::gpu::plan::MAX_K) });
    }
    let n = parts[0].n();
    if parts.iter().any(|p| p.n() != n) {
        return Err(Error::invalid("merge", "the lists to merge cover different numbers of rows"));
    }
    let res = device_resources(device)?;
    let ctx = &res.ctx;
    ctx.bind_to_thread().ctx(device, "binding the CUDA context")?;
    let stream = ctx.new_stream().ctx(device, "creating a stream")?;
    let kernels = &res.functions;
    let m = parts.len();
    let per_row = m * k * 12 + k * 12;
    let chunk = (CHUNK_BYTES / per_row).clamp(1, n.max(1));
    let mut out = TopKLists::empty(n, k);
    let mut kernel_ms = 0f32;
    let (mut keys, mut ids) = (vec![f32::INFINITY; chunk * m * k], vec![-1i64; chunk * m * k]);
    for r0 in (0..n).step_by(chunk) {
        let rows = chunk.min(n - r0);
        // Host layout [row][list][k]: each part's row cut or padded to k entries.
        for r in 0..rows {
            for (s, part) in parts.iter().enumerate() {
                let (pk, pi) = part.row(r0 + r);
                let at = (r * m + s) * k;
                let t = pk.len().min(k);
                keys[at..at + t].copy_from_slice(&pk[..t]);
                ids[at..at + t].copy_from_slice(&pi[..t]);
                keys[at + t..at + k].fill(f32::INFINITY);
                ids[at + t..at + k].fill(-1);
            }
        }
        let len = rows * m * k;
        let dk = stream.clone_htod(&keys[..len]).alloc(device, "uploading lists to merge", len * 4)?;
        let di = stream.clone_htod(&ids[..len]).alloc(device, "uploading lists to merge", len * 8)?;
        // SAFETY: every entry is written by the merge before it is read back.
        let mut ok = unsafe { stream.alloc::<f32>(rows * k) }.alloc(device, "allocating merged lists", rows * k * 4)?;
        let mut oi = unsafe { stream.alloc::<i64>(rows * k) }.alloc(device, "allocating merged lists", rows * k * 8)?;
        {
            let (ik, _a) = dk.device_ptr(&stream);
            let (ii, _b) = di.device_ptr(&stream);
            let (okp, _c) = ok.device_ptr_mut(&stream);
            let (oip, _d) = oi.device_ptr_mut(&stream);
            let a = MergeArgs {
                in_keys: ik,
                in_ids: ii,
                in_ld: (m * k) as i64,
                list_stride: k as i64,
                out_keys: okp,
                out_ids: oip,
                out_ld: k as i64,
                rows: rows as i32,
                m: m as i32,
                k: k as i32,
                p: launch::merge_width(k) as i32,
            };
            let start = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ctx(device, "recording an event")?;
            // SAFETY: `rows` rows of m lists of k entries, dense; outputs rows × k.
            unsafe { launch::merge(kernels, &stream, &a)? };
            let end = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ctx(device, "recording an event")?;
            kernel_ms += start.elapsed_ms(&end).ctx(device, "timing the merge")?;
        }
        let hk = stream.clone_dtoh(&ok).ctx(device, "copying merged lists to the host")?;
        let hi = stream.clone_dtoh(&oi).ctx(device, "copying merged lists to the host")?;
        stream.synchronize().ctx(device, "merging lists")?;
        out.keys[r0 * k..(r0 + rows) * k].copy_from_slice(&hk);
        out.ids[r0 * k..(r0 + rows) * k].copy_from_slice(&hi);
    }
    ctx.check_err().ctx(device, "merging lists")?;
    Ok((out, kernel_ms))
}
