//! Query-versus-database search: query panels in parallel against database blocks.
//!
//! The database is packed once per *super-block* (as many rows as the memory budget allows;
//! the whole database when it fits), shared read-only by the workers; each worker takes query
//! panels from a counter, packs its panel, and runs it against every tile of the super-block,
//! keeping that panel's heaps. Memory: the packed super-block plus per-worker tile buffers plus
//! the output-sized heaps, whatever n is.

use super::epilogue::{fill_keys, offer_row};
use super::microkernel::{Kernel, MR, NR};
use super::pack::{pack_panels, pack_panels_parallel};
use super::tile::product;
use crate::flat::plan::TilePlan;
use crate::flat::FlatJob;
use crate::topk::{HeapRowsMut, TopKHeaps, TopKLists};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `job` without symmetry. `db_block` rows of the database are packed at a time.
pub fn search(kernel: Kernel, job: &FlatJob<'_>, qn: &[f32], xn: &[f32], plan: TilePlan, workers: usize, db_block: usize) -> TopKLists {
    let (q, x) = (job.queries, job.database);
    let d = q.d();
    let (qt, xt) = (plan.q_tile, plan.db_tile);
    let mut heaps = TopKHeaps::new(q.n(), job.k);
    let panels: Vec<Mutex<HeapRowsMut<'_>>> = heaps.split_rows_mut(qt).into_iter().map(Mutex::new).collect();
    let n_panels = panels.len();
    let db_block = super::round_to(db_block.max(xt), xt);
    job.progress.start((n_panels * x.n().div_ceil(db_block)) as u64);

    let mut packed_db = Vec::new();
    let mut s0 = 0;
    while s0 < x.n() {
        let s_rows = db_block.min(x.n() - s0);
        pack_panels_parallel(x.as_slice(), d, s0, s_rows, NR, &mut packed_db, workers);
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(n_panels) {
                scope.spawn(|| {
                    let mut a = Vec::new();
                    let ldc = super::round_to(xt, NR);
                    let mut c = vec![0f32; super::round_to(qt, MR) * ldc];
                    let mut keys = vec![0f32; xt];
                    loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= n_panels {
                            break;
                        }
                        let q0 = p * qt;
                        let q_rows = qt.min(q.n() - q0);
                        pack_panels(q.as_slice(), d, q0, q_rows, 0, d, MR, &mut a);
                        let mut sink = panels[p].lock().expect("a panel's lock is never poisoned: workers do not panic");
                        let mut t0 = 0;
                        while t0 < s_rows {
                            let t_rows = xt.min(s_rows - t0);
                            let b = &packed_db[(t0 / NR) * d * NR..];
                            product(kernel, d, &a, q_rows, b, t_rows, &mut c, ldc);
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
                                offer_row(&mut sink, i, keys, job.db_offset + g0 as i64);
                            }
                            t0 += t_rows;
                        }
                        job.progress.advance(1);
                    }
                });
            }
        });
        s0 += s_rows;
    }
    let lists: Vec<TopKLists> = panels.into_iter().map(|m| m.into_inner().expect("never poisoned").to_lists()).collect();
    let mut it = lists.into_iter();
    let mut out = it.next().expect("at least one query panel");
    for l in it {
        out.extend(l);
    }
    out
}
