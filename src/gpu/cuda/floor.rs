//! The floor of this design, for benchmarks: the bare cuBLAS products of a self-join, in the
//! batches and tiles our search would plan for the same rows, timed with CUDA events. No norms,
//! no selection, no merge, no copies home: whatever our search adds on top shows as its ratio
//! to this time.

use super::resources::{device_resources, Lane};
use super::upload::{Rows, Uploader};
use super::CudaResultExt;
use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::gpu::plan::{plan, GpuPlanInput};
use crate::gpu::table::elem_bytes;
use crate::gpu::GpuOptions;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{DevicePtr, DevicePtrMut};

pub(crate) fn gemm_floor(device: usize, data: Vectors<'_>, k: usize, opts: &GpuOptions, reps: usize) -> Result<Vec<f32>> {
    let lane = Lane::open(device_resources(device)?)?;
    let (ctx, compute, copy, gemm) = (lane.ctx(), &lane.compute, &lane.copy, &lane.gemm);
    ctx.bind_to_thread().ctx(device, "binding the CUDA context")?;
    let (n, d, prec) = (data.n(), data.d(), opts.precision);
    let (free, _) = ctx.mem_get_info().ctx(device, "querying free memory")?;
    let p = plan(&GpuPlanInput {
        nq: n,
        ndb: n,
        d,
        k,
        elem_bytes: elem_bytes(prec),
        budget: (free as f64 * opts.memory_fraction as f64) as usize,
        queries_in_db: true,
        db_on_device: false,
        batch_rows: opts.batch_rows,
        shrink: 0,
    });
    if !p.resident {
        return Err(Error::invalid(
            "gemm floor",
            format!("{n} × {d} rows do not stay resident within the memory budget; the floor is measured on resident data only"),
        ));
    }
    let mut rows = Rows::alloc(compute, n, p.ld, elem_bytes(prec))?;
    let mut up = Uploader::new(copy, p.chunk, d)?;
    up.upload(lane.functions(), copy, compute, prec, data.as_slice(), None, &mut rows, 0, p.ld, false)?;
    // The staging buffers must outlive the queued copies: wait for them before `up` drops.
    copy.synchronize().ctx(device, "uploading rows")?;
    drop(up);
    // SAFETY: cuBLAS writes the products; nothing reads them.
    let mut products = unsafe { compute.alloc::<f32>(p.batch * p.tile_ld) }.alloc(device, "allocating the product tile", p.batch * p.tile_ld * 4)?;
    let elem = elem_bytes(prec);
    let mut times = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let (base, _r) = rows.data.device_ptr(compute);
        let (pp, _w) = products.device_ptr_mut(compute);
        let start = compute.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ctx(device, "recording an event")?;
        for q0 in (0..n).step_by(p.batch) {
            let q1 = (q0 + p.batch).min(n);
            for c0 in (0..n).step_by(p.tile) {
                let c1 = (c0 + p.tile).min(n);
                let (qp, xp) = (base + (q0 * p.ld * elem) as u64, base + (c0 * p.ld * elem) as u64);
                // SAFETY: rows q0..q1 and c0..c1 are stored rows of stride ld; the product tile
                // holds batch × tile_ld ≥ (q1 − q0) × (c1 − c0) floats.
                unsafe { gemm.products(prec, qp, xp, pp, q1 - q0, c1 - c0, d, p.ld, p.tile_ld)? };
            }
        }
        let end = compute.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ctx(device, "recording an event")?;
        let ms = start.elapsed_ms(&end).ctx(device, "timing the products")?;
        if rep > 0 {
            times.push(ms); // rep 0 is the warm-up
        }
    }
    ctx.check_err().ctx(device, "timing the products")?;
    Ok(times)
}
