//! Query-versus-database search (no symmetry): query panels in parallel against database blocks.
//!
//! The database is packed once per *super-block* (as many rows as the memory budget allows;
//! the whole database when it fits), shared read-only by the workers; each worker takes query
//! panels from a counter, packs its panel, and runs it against every tile of the super-block,
//! keeping that panel's top-k state. Memory: the packed super-block plus per-worker tile buffers
//! plus the output-sized state, whatever n is.

use super::epilogue::{fill_keys, offer_row};
use super::microkernel::{MR, NR};
use super::pairs::concat;
use super::tile::{Kernels, Packed};
use crate::error::{Error, Result};
use crate::flat::plan::TilePlan;
use crate::flat::FlatJob;
use crate::topk::{RowSink, TopKLists};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `job` without symmetry. `db_block` rows of the database are packed at a time; `make(rows)`
/// builds the top-k state of a query panel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn search<S: RowSink + Send + Sync>(
    kernels: Kernels,
    job: &FlatJob<'_>,
    qn: &[f32],
    xn: &[f32],
    plan: TilePlan,
    workers: usize,
    db_block: usize,
    make: impl Fn(usize) -> S,
) -> Result<TopKLists> {
    let (q, x) = (job.queries, job.database);
    let d = q.d();
    let (qt, xt) = (plan.q_tile, plan.db_tile);
    let n_panels = q.n().div_ceil(qt);
    let panels: Vec<Mutex<S>> = (0..n_panels).map(|p| Mutex::new(make(qt.min(q.n() - p * qt)))).collect();
    let db_block = super::round_to(db_block.max(xt), xt);
    job.progress.start((n_panels * x.n().div_ceil(db_block)) as u64);

    let ops = job.operands;
    let mut packed_db = Packed::default();
    let mut s0 = 0;
    while s0 < x.n() {
        let s_rows = db_block.min(x.n() - s0);
        packed_db.pack_parallel(ops, x.as_slice(), d, s0, s_rows, NR, job.shift, workers);
        let next = AtomicUsize::new(0);
        let packed_db = &packed_db;
        let panels = &panels;
        let next = &next;
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..workers.min(n_panels))
                .map(|_| {
                    scope.spawn(move || {
                        let mut a = Packed::default();
                        let ldc = super::round_to(xt, NR);
                        let mut c = vec![0f32; super::round_to(qt, MR) * ldc];
                        let mut keys = vec![0f32; xt];
                        loop {
                            let p = next.fetch_add(1, Ordering::Relaxed);
                            if p >= n_panels || job.progress.cancelled() {
                                break;
                            }
                            let q0 = p * qt;
                            let q_rows = qt.min(q.n() - q0);
                            a.pack(ops, q.as_slice(), d, q0, q_rows, MR, job.shift);
                            // Each panel is taken by one worker per super-block: never contended.
                            let mut sink = panels[p].lock().unwrap_or_else(|e| e.into_inner());
                            let mut t0 = 0;
                            while t0 < s_rows {
                                let t_rows = xt.min(s_rows - t0);
                                kernels.product(ops, d, &a, 0, q_rows, packed_db, t0 / NR, t_rows, &mut c, ldc);
                                let g0 = s0 + t0; // first database row of this tile (local index)
                                for i in 0..q_rows {
                                    let keys = &mut keys[..t_rows];
                                    fill_keys(job.metric, &c[i * ldc..i * ldc + t_rows], qn[q0 + i], &xn[g0..g0 + t_rows], keys);
                                    if let Some(qid) = job.query_id(q0 + i) {
                                        // The query itself, by index, if it lies in this tile.
                                        let j = qid - job.db_offset - g0 as i64;
                                        if (0..t_rows as i64).contains(&j) {
                                            keys[j as usize] = f32::NAN;
                                        }
                                    }
                                    offer_row(&mut *sink, i, keys, job.db_offset + g0 as i64);
                                }
                                t0 += t_rows;
                            }
                            job.progress.advance(1);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|p| Error::from_panic("the CPU search", p.as_ref()))?;
            }
            crate::progress::check(job.progress, "the CPU search")
        })?;
        s0 += s_rows;
    }
    concat(panels, workers)
}
