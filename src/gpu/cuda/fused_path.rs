//! The fused path of one GPU's search (kernels/fused.cu): products on tensor cores (or exact f32
//! FMAs), the L2/IP epilogue and the running top-k in one kernel, so no distance tile reaches
//! device memory; a self-join computes each pair once and offers it to both rows. It serves
//! k ≤ 128 with every row resident on the device; the strategy sends other searches to the
//! cuBLAS path.

use super::launch::{self, FusedArgs, FUSED_ROWS};
use super::resources::Lane;
use super::searcher::{queries_in_database, CudaSearcher};
use super::upload::{Rows, Uploader};
use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::flat::FlatJob;
use crate::gpu::plan::{stored_ld, upload_chunk, RESERVE};
use crate::gpu::table::{elem_bytes, FUSED_MAX_K};
use crate::metric::FlatMetric;
use crate::topk::TopKLists;
use cudarc::driver::{DevicePtr, DevicePtrMut};

/// Rows of raw f32 per upload chunk of a fused search.
fn chunk_rows(job: &FlatJob<'_>) -> usize {
    upload_chunk(job.database.d(), job.database.n().max(job.queries.n()), 0)
}

/// Device bytes of a fused search: stored rows with norms (queries too when they are not rows of
/// the database; the database too unless it is loaded), the lists, the locks, upload staging.
fn fused_bytes(job: &FlatJob<'_>, elem: usize, db_held: bool) -> usize {
    let (q, x, d) = (job.queries, job.database, job.database.d());
    let row = stored_ld(d) * elem + 4;
    let query_rows = if queries_in_database(q, x).is_some() { 0 } else { q.n() };
    let db_rows = if db_held { 0 } else { x.n() };
    let staging = 2 * chunk_rows(job) * d * 4;
    (db_rows + query_rows) * row + q.n() * job.k * 8 + x.n().div_ceil(FUSED_ROWS) * 4 + staging + RESERVE
}

impl CudaSearcher {
    /// Runs `job` with the fused kernel: k ≤ 128, every row resident on the device.
    pub(super) fn fused(&self, st: &Lane, job: &FlatJob<'_>) -> Result<TopKLists> {
        let (dev, prec) = (self.device, self.opts.precision);
        let (q, x, k, d) = (job.queries, job.database, job.k, job.database.d());
        if k > FUSED_MAX_K {
            return Err(Error::InvalidK { k, reason: format!("the fused GPU kernel serves k ≤ {FUSED_MAX_K}; use GpuPath::Cublas") });
        }
        let held = self.resident(job);
        let needed = fused_bytes(job, elem_bytes(prec), held.is_some());
        if needed > self.budget(st)? {
            return Err(Error::OutOfMemory {
                device: format!("cuda:{dev}"),
                context: "keeping every row resident for the fused kernel (GpuPath::Cublas streams them)".into(),
                needed_bytes: needed,
            });
        }
        let (compute, copy) = (&st.compute, &st.copy);
        let (ld, elem, l2) = (stored_ld(d), elem_bytes(prec), job.metric == FlatMetric::L2);
        let shift = if l2 { job.shift } else { None };
        let symmetric = job.is_symmetric();
        let in_db = queries_in_database(q, x);

        let mut up = Uploader::new(copy, chunk_rows(job), d)?;
        let uploaded_db = match held {
            Some(_) => None,
            None => {
                let mut r = Rows::alloc(compute, x.n(), ld, elem)?;
                up.upload(st.functions(), copy, compute, prec, x.as_slice(), shift, &mut r, 0, ld, l2)?;
                Some(r)
            }
        };
        let xr: &Rows = match (held, &uploaded_db) {
            (Some(h), _) => h,
            (None, Some(r)) => r,
            (None, None) => return Err(Error::Internal { what: "the fused GPU path".into(), message: "no database rows".into() }),
        };
        let qr = match in_db {
            Some(_) => None,
            None => {
                let mut r = Rows::alloc(compute, q.n(), ld, elem)?;
                up.upload(st.functions(), copy, compute, prec, q.as_slice(), shift, &mut r, 0, ld, l2)?;
                Some(r)
            }
        };
        job.progress.start(q.n() as u64);

        let (m, entries) = (q.n(), q.n() * k);
        // SAFETY: fused_clear writes every entry before the kernel reads any.
        let mut keys = unsafe { compute.alloc::<f32>(entries) }.alloc(dev, "allocating the fused lists", entries * 4)?;
        let mut ids = unsafe { compute.alloc::<u32>(entries) }.alloc(dev, "allocating the fused lists", entries * 4)?;
        let lock_count = if symmetric { x.n() } else { m }.div_ceil(FUSED_ROWS).max(1);
        let mut locks = compute.alloc_zeros::<i32>(lock_count).alloc(dev, "allocating the fused locks", lock_count * 4)?;
        {
            let (kp, _wk) = keys.device_ptr_mut(compute);
            let (ip, _wi) = ids.device_ptr_mut(compute);
            let (lp, _wl) = locks.device_ptr_mut(compute);
            let (xp, _rx) = xr.data.device_ptr(compute);
            let (xn, _rxn) = xr.norms.device_ptr(compute);
            // Uploaded queries, or the database's own rows from the first query on.
            let uploaded = qr.as_ref().map(|r| (r.data.device_ptr(compute), r.norms.device_ptr(compute)));
            let (qp, qn) = match (&uploaded, in_db) {
                (Some(((qp, _), (qn, _))), _) => (*qp, *qn),
                (None, first) => {
                    let first = first.unwrap_or(0);
                    (xp + (first * ld * elem) as u64, xn + (first * 4) as u64)
                }
            };
            let args = FusedArgs {
                q: qp,
                qnorms: qn,
                x: xp,
                xnorms: xn,
                keys: kp,
                ids: ip,
                locks: lp,
                ld: ld as i64,
                // Query r is database row r + query_offset − db_offset (global ids agree).
                self_offset: job.query_offset.map_or(0, |o| o - job.db_offset),
                m: m as i32,
                n: x.n() as i32,
                k: k as i32,
                symmetric: symmetric as i32,
                has_self: job.query_offset.is_some() as i32,
                pad: 0,
            };
            // SAFETY: the lists hold m·k entries and are cleared first on the same stream; the
            // rows, norms and locks were allocated and written above for these extents.
            unsafe {
                launch::fused_clear(st.functions(), compute, kp, ip, entries)?;
                launch::fused(st.functions(), compute, prec, job.metric, &args)?;
            }
        }
        let hk = compute.clone_dtoh(&keys).ctx(dev, "copying the fused lists to the host")?;
        let hi = compute.clone_dtoh(&ids).ctx(dev, "copying the fused lists to the host")?;
        compute.synchronize().ctx(dev, "running the fused kernel")?;
        // The uploader's pinned staging must outlive the copies queued from it.
        copy.synchronize().ctx(dev, "finishing uploads")?;
        drop(up);
        job.progress.advance(m as u64);
        let ids = hi.into_iter().map(|i| if i == u32::MAX { -1 } else { job.db_offset + i as i64 }).collect();
        Ok(TopKLists::from_raw(k, hk, ids))
    }
}
