//! The cuBLAS path of one GPU's search. Per query batch: the running top-k lists start empty;
//! per database tile: cuBLAS writes the products, the select kernel turns them into keys and
//! keeps the tile's best k that beat the running k-th, and the merge kernel folds those into the
//! running lists. Batch results go back to the host on the copy stream while the next batch
//! computes. A database loaded as resident rows is used in place; otherwise it is uploaded per
//! search (whole when it fits half the budget, else streamed tile by tile).
//!
//! Memory comes from the searcher's budget; an out-of-memory error anywhere makes the searcher
//! re-plan with halved tiles and batches, up to [`crate::gpu::plan::GpuPlan::MAX_SHRINK`] times.

use super::launch::{self, MergeArgs, SelectArgs};
use super::resources::Lane;
use super::searcher::{queries_in_database, CudaSearcher};
use super::upload::{Rows, Uploader};
use super::CudaResultExt;
use crate::error::{Error, Result};
use crate::flat::FlatJob;
use crate::gpu::plan::{plan, GpuPlan, GpuPlanInput};
use crate::gpu::table::elem_bytes;
use crate::metric::FlatMetric;
use crate::topk::TopKLists;
use cudarc::driver::{CudaEvent, CudaSlice, DevicePtr, DevicePtrMut, PinnedHostSlice};

/// Results of a batch on their way to the host.
struct Pending {
    q0: usize,
    rows: usize,
    done: CudaEvent,
    slot: usize,
}

/// Device and pinned buffers of one plan.
struct Buffers {
    /// The whole database, uploaded for this search (resident plans without loaded rows).
    db: Option<Rows>,
    /// Two streamed database tiles (other plans).
    tiles: Vec<Rows>,
    /// Two uploaded query batches (when the queries are not resident rows).
    queries: Vec<Rows>,
    products: CudaSlice<f32>,
    /// Per batch slot: keys and ids of `[running | tile]` lists, each `batch × k`.
    list_keys: Vec<CudaSlice<f32>>,
    list_ids: Vec<CudaSlice<i64>>,
    host_keys: Vec<PinnedHostSlice<f32>>,
    host_ids: Vec<PinnedHostSlice<i64>>,
}

/// Where a batch's queries are stored.
#[derive(Clone, Copy)]
enum QuerySrc {
    /// Rows of the resident database, from this row on.
    Db(usize),
    /// Row 0 on of `Buffers::queries[slot]`.
    Uploaded(usize),
}

impl CudaSearcher {
    /// Runs `job` on the cuBLAS path, tiles and batches halved `shrink` times.
    pub(super) fn cublas(&self, st: &Lane, job: &FlatJob<'_>, shrink: u32) -> Result<TopKLists> {
        let dev = self.device;
        let prec = self.opts.precision;
        let (q, x, k, d) = (job.queries, job.database, job.k, job.database.d());
        let l2 = job.metric == FlatMetric::L2;
        let shift = if l2 { job.shift } else { None };
        let in_db = queries_in_database(q, x);
        let held = self.resident(job);
        let p = plan(&GpuPlanInput {
            nq: q.n(),
            ndb: x.n(),
            d,
            k,
            elem_bytes: elem_bytes(prec),
            budget: self.budget(st)?,
            queries_in_db: in_db.is_some(),
            db_on_device: held.is_some(),
            batch_rows: self.opts.batch_rows,
            shrink,
        });
        let (compute, copy) = (&st.compute, &st.copy);
        let mut up = Uploader::new(copy, p.chunk, d)?;
        let mut b = self.alloc(st, &p, x.n(), k, held.is_some())?;

        if let Some(db) = b.db.as_mut() {
            up.upload(st.functions(), copy, compute, prec, x.as_slice(), shift, db, 0, p.ld, l2)?;
        }
        job.progress.start(q.n() as u64);
        // Poisoned (NaN, i64::MIN): every entry must be overwritten by a batch's results, so a
        // batch that went missing shows up in any check instead of passing as empty lists.
        let mut out = TopKLists::from_raw(k, vec![f32::NAN; q.n() * k], vec![i64::MIN; q.n() * k]);
        let mut pending: Option<Pending> = None;
        for bi in 0..q.n().div_ceil(p.batch) {
            let (q0, q1) = (bi * p.batch, ((bi + 1) * p.batch).min(q.n()));
            let slot = bi % 2;
            let src = match (p.upload_queries, in_db) {
                (false, Some(first)) => QuerySrc::Db(first + q0),
                _ => {
                    up.upload(st.functions(), copy, compute, prec, q.rows(q0, q1).as_slice(), shift, &mut b.queries[slot], 0, p.ld, l2)?;
                    QuerySrc::Uploaded(slot)
                }
            };
            self.batch(st, job, &p, &mut b, held, &mut up, slot, src, q0, q1)?;

            // Bring this batch home on the copy stream; meanwhile the next one computes.
            let n = (q1 - q0) * k;
            {
                let hk = b.host_keys[slot].as_mut_slice().ctx(dev, "mapping pinned results")?;
                copy.memcpy_dtoh(&b.list_keys[slot].slice(0..n), &mut hk[..n]).ctx(dev, "copying results to the host")?;
            }
            {
                let hi = b.host_ids[slot].as_mut_slice().ctx(dev, "mapping pinned results")?;
                copy.memcpy_dtoh(&b.list_ids[slot].slice(0..n), &mut hi[..n]).ctx(dev, "copying results to the host")?;
            }
            let done = copy.record_event(None).ctx(dev, "recording a download")?;
            if let Some(prev) = pending.replace(Pending { q0, rows: q1 - q0, done, slot }) {
                collect(&b, &prev, k, &mut out, dev)?;
                job.progress.advance(prev.rows as u64);
            }
        }
        if let Some(prev) = pending.take() {
            collect(&b, &prev, k, &mut out, dev)?;
            job.progress.advance(prev.rows as u64);
        }
        // The uploader's pinned staging must outlive every copy queued from it.
        copy.synchronize().ctx(dev, "finishing uploads")?;
        drop(up);
        Ok(out)
    }

    /// Every database tile against queries `q0..q1`, leaving their top-k in the running half of
    /// `list_*[slot]`.
    #[allow(clippy::too_many_arguments)]
    fn batch(
        &self,
        st: &Lane,
        job: &FlatJob<'_>,
        p: &GpuPlan,
        b: &mut Buffers,
        held: Option<&Rows>,
        up: &mut Uploader,
        slot: usize,
        src: QuerySrc,
        q0: usize,
        q1: usize,
    ) -> Result<()> {
        let (compute, copy, kern) = (&st.compute, &st.copy, st.functions());
        let prec = self.opts.precision;
        let (k, d, ld, elem) = (job.k, job.database.d(), p.ld, elem_bytes(prec));
        let rows = q1 - q0;
        let l2 = job.metric == FlatMetric::L2;
        let shift = if l2 { job.shift } else { None };
        let db_rows = held.or(b.db.as_ref());
        let stride = p.batch * k; // elements between the running and the tile half
                                  // No fill of the running lists: the first tile's select writes every entry of them.
        let ndb = job.database.n();
        for t in 0..ndb.div_ceil(p.tile) {
            let (c0, c1) = (t * p.tile, ((t + 1) * p.tile).min(ndb));
            if !p.resident {
                up.upload(kern, copy, compute, prec, job.database.rows(c0, c1).as_slice(), shift, &mut b.tiles[t % 2], 0, ld, l2)?;
            }
            let (xr, xrow0) = match db_rows {
                Some(db) => (db, c0),
                None => (&b.tiles[t % 2], 0),
            };
            let (qr, qrow0) = match (src, db_rows) {
                (QuerySrc::Db(first), Some(db)) => (db, first),
                (QuerySrc::Uploaded(s), _) => (&b.queries[s], 0),
                (QuerySrc::Db(_), None) => return Err(Error::invalid("gpu plan", "queries planned as resident rows without a resident database")),
            };
            let (qp, _rq) = qr.data.device_ptr(compute);
            let (qn, _rqn) = qr.norms.device_ptr(compute);
            let (xp, _rx) = xr.data.device_ptr(compute);
            let (xn, _rxn) = xr.norms.device_ptr(compute);
            let (qp, qn) = (qp + (qrow0 * ld * elem) as u64, qn + (qrow0 * 4) as u64);
            let (xp, xn) = (xp + (xrow0 * ld * elem) as u64, xn + (xrow0 * 4) as u64);
            let (pp, _wp) = b.products.device_ptr_mut(compute);
            // SAFETY: Q has `rows` and X `c1 − c0` stored rows from these addresses (stride ld),
            // and the product tile holds batch × tile_ld ≥ rows × (c1 − c0) floats.
            unsafe { st.gemm.products(prec, qp, xp, pp, rows, c1 - c0, d, ld, p.tile_ld)? };

            let (kp, _wk) = b.list_keys[slot].device_ptr_mut(compute);
            let (ip, _wi) = b.list_ids[slot].device_ptr_mut(compute);
            let args = SelectArgs {
                prods: pp,
                ld: p.tile_ld as i64,
                qnorms: qn,
                xnorms: xn,
                // The first tile has no running lists to beat.
                thr_keys: if t == 0 { 0 } else { kp },
                thr_ids: if t == 0 { 0 } else { ip },
                thr_ld: k as i64,
                // The first tile writes the running lists directly (nothing to merge yet).
                out_keys: if t == 0 { kp } else { kp + (stride * 4) as u64 },
                out_ids: if t == 0 { ip } else { ip + (stride * 8) as u64 },
                out_ld: k as i64,
                col_base: job.db_offset + c0 as i64,
                qid_base: job.query_id(q0).unwrap_or(-1),
                rows: rows as i32,
                cols: (c1 - c0) as i32,
                k: k as i32,
                has_self: job.query_offset.is_some() as i32,
            };
            // SAFETY: products as written above; norms of the same rows; running and tile
            // halves each hold batch·k entries at stride k.
            unsafe { launch::select(kern, compute, job.metric, &args)? };
            if t == 0 {
                continue;
            }
            let m = MergeArgs {
                in_keys: kp,
                in_ids: ip,
                in_ld: k as i64,
                list_stride: stride as i64,
                out_keys: kp,
                out_ids: ip,
                out_ld: k as i64,
                rows: rows as i32,
                m: 2,
                k: k as i32,
                p: launch::merge_width(k) as i32,
            };
            // SAFETY: two lists of k per row, `stride` apart; output in place over the first.
            unsafe { launch::merge(kern, compute, &m)? };
        }
        Ok(())
    }

    fn alloc(&self, st: &Lane, p: &GpuPlan, ndb: usize, k: usize, db_held: bool) -> Result<Buffers> {
        let dev = self.device;
        let (s, elem) = (&st.compute, elem_bytes(self.opts.precision));
        let two = |rows: usize| -> Result<Vec<Rows>> { Ok(vec![Rows::alloc(s, rows, p.ld, elem)?, Rows::alloc(s, rows, p.ld, elem)?]) };
        let db = if p.resident && !db_held { Some(Rows::alloc(s, ndb, p.ld, elem)?) } else { None };
        let tiles = if p.resident { Vec::new() } else { two(p.tile)? };
        let queries = if p.upload_queries { two(p.batch)? } else { Vec::new() };
        let prod_len = p.batch * p.tile_ld;
        // SAFETY: cuBLAS writes every product the select kernel reads.
        let products = unsafe { s.alloc::<f32>(prod_len) }.alloc(dev, "allocating the product tile", prod_len * 4)?;
        let (list_len, host_len) = (2 * p.batch * k, p.batch * k);
        let mut b = Buffers { db, tiles, queries, products, list_keys: vec![], list_ids: vec![], host_keys: vec![], host_ids: vec![] };
        for _ in 0..2 {
            // SAFETY: both halves are written by select (tile 0 into the running half) before reads.
            b.list_keys.push(unsafe { s.alloc::<f32>(list_len) }.alloc(dev, "allocating top-k lists", list_len * 4)?);
            b.list_ids.push(unsafe { s.alloc::<i64>(list_len) }.alloc(dev, "allocating top-k lists", list_len * 8)?);
            // Host-read buffers: cached pinned memory (flags 0), not write-combined.
            // SAFETY: written by a device copy before the host reads them.
            b.host_keys.push(unsafe { st.ctx().alloc_pinned_with_flags::<f32>(host_len, 0) }.alloc(dev, "allocating pinned results", host_len * 4)?);
            b.host_ids.push(unsafe { st.ctx().alloc_pinned_with_flags::<i64>(host_len, 0) }.alloc(dev, "allocating pinned results", host_len * 8)?);
        }
        Ok(b)
    }
}

/// Waits for a batch's download and copies it into the output lists.
fn collect(b: &Buffers, p: &Pending, k: usize, out: &mut TopKLists, dev: usize) -> Result<()> {
    p.done.synchronize().ctx(dev, "waiting for results")?;
    let n = p.rows * k;
    let hk = b.host_keys[p.slot].as_slice().ctx(dev, "reading pinned results")?;
    let hi = b.host_ids[p.slot].as_slice().ctx(dev, "reading pinned results")?;
    out.keys[p.q0 * k..p.q0 * k + n].copy_from_slice(&hk[..n]);
    out.ids[p.q0 * k..p.q0 * k + n].copy_from_slice(&hi[..n]);
    Ok(())
}
