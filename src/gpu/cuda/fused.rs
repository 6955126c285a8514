//! The fused path of one GPU's search (kernels/fused.cu): products on tensor cores (or exact f32
//! FMAs), the L2/IP epilogue and the running top-k in one kernel, so no distance tile reaches
//! device memory; a self-join computes each pair once and offers it to both rows. It serves
//! k ≤ 128 with every row resident on the device; other searches take the cuBLAS path.

use super::launch::{self, FusedArgs, FUSED_ROWS};
use super::search::{queries_in_database, CudaSearcher, State};
use super::upload::{Rows, Uploader};
use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::flat::FlatJob;
use crate::gpu::plan::{stored_ld, upload_chunk, RESERVE};
use crate::gpu::GpuKernel;
use crate::metric::FlatMetric;
use crate::topk::TopKLists;
use cudarc::driver::{DevicePtr, DevicePtrMut};

/// Largest k the fused kernels serve (their larger bucket).
pub(crate) const FUSED_MAX_K: usize = 128;
/// Rows of raw f32 per upload chunk of a fused search.
fn chunk_rows(job: &FlatJob<'_>) -> usize {
    upload_chunk(job.database.d(), job.database.n().max(job.queries.n()), 0)
}

/// Device bytes of a fused search: stored rows with norms (queries too when they are not rows of
/// the database), the lists, the locks, upload staging.
fn fused_bytes(job: &FlatJob<'_>, elem: usize) -> usize {
    let (q, x, d) = (job.queries, job.database, job.database.d());
    let row = stored_ld(d) * elem + 4;
    let query_rows = if queries_in_database(q, x).is_some() { 0 } else { q.n() };
    let staging = 2 * chunk_rows(job) * d * 4;
    (x.n() + query_rows) * row + q.n() * job.k * 8 + x.n().div_ceil(FUSED_ROWS) * 4 + staging + RESERVE
}

impl CudaSearcher {
    /// Whether this search takes the fused path: asked for (and then it must fit), or `Auto`
    /// (which, until the fused kernel has been measured against the cuBLAS path on a GPU, keeps
    /// the cuBLAS path).
    pub(super) fn fused_chosen(&self, st: &State, job: &FlatJob<'_>) -> Result<bool> {
        match self.opts.kernel {
            GpuKernel::Auto | GpuKernel::Cublas => Ok(false),
            GpuKernel::Fused => {
                if job.k > FUSED_MAX_K {
                    return Err(Error::InvalidK { k: job.k, reason: format!("the fused GPU kernel serves k ≤ {FUSED_MAX_K}; use GpuKernel::Cublas") });
                }
                let needed = fused_bytes(job, launch::elem_bytes(self.opts.precision));
                if needed > self.budget(st)? {
                    return Err(Error::OutOfMemory {
                        device: format!("cuda:{}", self.device),
                        context: "keeping every row resident for the fused kernel (GpuKernel::Cublas streams them)".into(),
                        needed_bytes: needed,
                    });
                }
                Ok(true)
            }
        }
    }

    /// Runs `job` with the fused kernel (see [`Self::fused_chosen`] for when).
    pub(super) fn fused(&self, st: &State, job: &FlatJob<'_>) -> Result<TopKLists> {
        let (dev, prec) = (self.device, self.opts.precision);
        let (q, x, k, d) = (job.queries, job.database, job.k, job.database.d());
        let (compute, copy) = (&st.compute, &st.copy);
        let (ld, elem, l2) = (stored_ld(d), launch::elem_bytes(prec), job.metric == FlatMetric::L2);
        let symmetric = job.is_symmetric();
        let in_db = queries_in_database(q, x);

        let mut up = Uploader::new(copy, chunk_rows(job), d)?;
        let mut xr = Rows::alloc(compute, x.n(), ld, elem)?;
        up.upload(&st.kernels, copy, compute, prec, x.as_slice(), &mut xr, 0, ld, l2)?;
        let qr = match in_db {
            Some(_) => None,
            None => {
                let mut r = Rows::alloc(compute, q.n(), ld, elem)?;
                up.upload(&st.kernels, copy, compute, prec, q.as_slice(), &mut r, 0, ld, l2)?;
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
                launch::fused_clear(&st.kernels, compute, kp, ip, entries)?;
                launch::fused(&st.kernels, compute, prec, job.metric, &args)?;
            }
        }
        let hk = compute.clone_dtoh(&keys).ctx(dev, "copying the fused lists to the host")?;
        let hi = compute.clone_dtoh(&ids).ctx(dev, "copying the fused lists to the host")?;
        compute.synchronize().ctx(dev, "running the fused kernel")?;
        job.progress.advance(m as u64);
        let ids = hi.into_iter().map(|i| if i == u32::MAX { -1 } else { job.db_offset + i as i64 }).collect();
        Ok(TopKLists::from_raw(k, hk, ids))
    }
}
