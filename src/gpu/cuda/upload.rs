//! Host rows to stored device rows, overlapped with compute: the host copies a chunk of f32 rows
//! into one of two pinned staging buffers, the copy stream moves it to one of two raw device
//! buffers, and the compute stream packs it (padding, precision) and takes its norms. While the
//! GPU computes on one chunk or tile, the host already stages the next.

use super::functions::Functions;
use super::launch;
use super::CudaResultExt;
use crate::error::Result;
use crate::gpu::table::elem_bytes;
use crate::precision::Precision;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, PinnedHostSlice};
use std::sync::Arc;

/// Stored rows on the device: packed elements (as bytes) and one f32 norm per row.
pub(crate) struct Rows {
    pub data: CudaSlice<u8>,
    pub norms: CudaSlice<f32>,
}

impl Rows {
    pub(crate) fn alloc(stream: &Arc<CudaStream>, rows: usize, ld: usize, elem: usize) -> Result<Rows> {
        let dev = stream.context().ordinal();
        let bytes = rows.max(1) * ld * elem;
        // SAFETY: every row is written (pack) before it is read.
        let data = unsafe { stream.alloc::<u8>(bytes) }.alloc(dev, "allocating stored rows", bytes)?;
        // SAFETY: as above, norms are written with their rows.
        let norms = unsafe { stream.alloc::<f32>(rows.max(1)) }.alloc(dev, "allocating row norms", rows.max(1) * 4)?;
        Ok(Rows { data, norms })
    }
}

pub(crate) struct Uploader {
    chunk: usize,
    d: usize,
    staging: [PinnedHostSlice<f32>; 2],
    staged: [Option<CudaEvent>; 2],
    raw: [CudaSlice<f32>; 2],
    next: usize,
}

impl Uploader {
    /// Two staging chunks of `chunk` rows of `d` f32.
    pub(crate) fn new(copy: &Arc<CudaStream>, chunk: usize, d: usize) -> Result<Uploader> {
        let ctx = copy.context();
        let dev = ctx.ordinal();
        let len = chunk.max(1) * d;
        let pinned = || {
            // SAFETY: staging is written by the host before every transfer out of it.
            unsafe { ctx.alloc_pinned::<f32>(len) }.alloc(dev, "allocating pinned staging memory", len * 4)
        };
        let raw = || {
            // SAFETY: written by a transfer before the pack kernel reads it.
            unsafe { copy.alloc::<f32>(len) }.alloc(dev, "allocating the upload buffer", len * 4)
        };
        Ok(Uploader { chunk: chunk.max(1), d, staging: [pinned()?, pinned()?], staged: [None, None], raw: [raw()?, raw()?], next: 0 })
    }

    /// Uploads `src` (whole rows of `d` f32), minus `shift` when given, into `dst` starting at
    /// stored row `row0` (stride `ld`), with norms when `with_norms`. The shift is applied while
    /// staging on the host (the copy the upload makes anyway). Returns once the last chunk is
    /// staged; the GPU work is queued on `copy` and `compute`, and the staging buffers must live
    /// until `copy` has drained.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upload(
        &mut self,
        k: &Functions,
        copy: &Arc<CudaStream>,
        compute: &Arc<CudaStream>,
        prec: Precision,
        src: &[f32],
        shift: Option<&[f32]>,
        dst: &mut Rows,
        row0: usize,
        ld: usize,
        with_norms: bool,
    ) -> Result<()> {
        let dev = copy.context().ordinal();
        let elem = elem_bytes(prec);
        let n = src.len() / self.d;
        let mut r = 0;
        while r < n {
            let rows = self.chunk.min(n - r);
            let len = rows * self.d;
            let i = self.next;
            self.next ^= 1;
            // The transfer that last read this staging buffer must be done before we overwrite it.
            if let Some(ev) = self.staged[i].take() {
                ev.synchronize().ctx(dev, "waiting for an upload")?;
            }
            let host = self.staging[i].as_mut_slice().ctx(dev, "mapping pinned staging memory")?;
            let rows_src = &src[r * self.d..r * self.d + len];
            match shift {
                None => host[..len].copy_from_slice(rows_src),
                Some(s) => {
                    for (h, row) in host[..len].chunks_mut(self.d).zip(rows_src.chunks(self.d)) {
                        for ((o, x), m) in h.iter_mut().zip(row).zip(s) {
                            *o = *x - *m;
                        }
                    }
                }
            }
            let mut raw_view = self.raw[i].slice_mut(0..len);
            copy.memcpy_htod(&host[..len], &mut raw_view).ctx(dev, "copying rows to the device")?;
            self.staged[i] = Some(copy.record_event(None).ctx(dev, "recording an upload")?);

            let (raw_ptr, _read) = self.raw[i].device_ptr(compute);
            let (data_ptr, _write) = dst.data.device_ptr_mut(compute);
            let at = data_ptr + ((row0 + r) * ld * elem) as u64;
            // SAFETY: raw holds `rows·d` f32 just copied (ordered by cudarc's events); `dst`
            // has room for rows row0 + r .. + rows at stride ld (the caller sized it).
            unsafe { launch::pack(k, compute, prec, raw_ptr, rows, self.d, at, ld)? };
            if with_norms {
                let (norm_ptr, _w) = dst.norms.device_ptr_mut(compute);
                // SAFETY: the rows just packed, and their norm slots.
                unsafe { launch::norms(k, compute, prec, at, ld, rows, self.d, norm_ptr + ((row0 + r) * 4) as u64)? };
            }
            r += rows;
        }
        Ok(())
    }
}
