//! The symmetric self-join: only tiles on or above the diagonal are computed, and each pair's
//! key is offered to both of its rows, halving the arithmetic of a self-kNN.
//!
//! Workers take row panels `I` from a counter (largest first, for balance) and compute tiles
//! `(I, J)` for `J ≥ I`. A tile's column side updates heaps of rows another worker may own, so
//! each worker keeps private heaps for *all* rows and the private lists are merged at the end;
//! since each pair is offered exactly once overall, the merge sees distinct candidates. The
//! planner only picks this path when `workers × n × k` slots fit the memory budget.

use super::epilogue::{fill_keys, offer_columns, offer_row};
use super::microkernel::{Kernel, MR, NR};
use super::pack::{pack_panels, pack_panels_parallel};
use super::tile::product;
use crate::flat::FlatJob;
use crate::topk::{merge_lists, TopKHeaps, TopKLists};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs the self-join `job` (which must satisfy [`FlatJob::is_symmetric`]) with square tiles of
/// `tile` rows (a multiple of both MR and NR).
pub fn self_join(kernel: Kernel, job: &FlatJob<'_>, norms: &[f32], tile: usize, workers: usize) -> TopKLists {
    let v = job.database;
    let (n, d) = (v.n(), v.d());
    debug_assert!(tile % MR == 0 && tile % NR == 0);
    let panels = n.div_ceil(tile);
    job.progress.start((panels * (panels + 1) / 2) as u64);

    // The whole dataset in B layout, shared by all workers.
    let mut packed = Vec::new();
    pack_panels_parallel(v.as_slice(), d, 0, n, NR, &mut packed, workers);
    let packed = &packed;
    let next = AtomicUsize::new(0);
    let id0 = job.db_offset;

    let private: Vec<TopKLists> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(panels))
            .map(|_| {
                scope.spawn(|| {
                    let mut heaps = TopKHeaps::new(n, job.k);
                    let mut sink = heaps.all_rows_mut();
                    let mut a = Vec::new();
                    let ldc = tile;
                    let mut c = vec![0f32; tile * ldc];
                    let mut keys = vec![0f32; tile];
                    let mut col_thr = vec![0f32; tile];
                    loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= panels {
                            break;
                        }
                        let i0 = p * tile;
                        let i_rows = tile.min(n - i0);
                        pack_panels(v.as_slice(), d, i0, i_rows, 0, d, MR, &mut a);
                        for jp in p..panels {
                            let j0 = jp * tile;
                            let j_rows = tile.min(n - j0);
                            product(kernel, d, &a, i_rows, &packed[(j0 / NR) * d * NR..], j_rows, &mut c, ldc);
                            let diagonal = jp == p;
                            for (j, t) in col_thr[..j_rows].iter_mut().enumerate() {
                                *t = sink.threshold(j0 + j);
                            }
                            for i in 0..i_rows {
                                let keys = &mut keys[..j_rows];
                                fill_keys(job.metric, &c[i * ldc..i * ldc + j_rows], norms[i0 + i], &norms[j0..j0 + j_rows], keys);
                                if diagonal {
                                    // The row itself is excluded by index; the tile's other pairs
                                    // appear twice in it (i,j and j,i), so only the row side is
                                    // offered.
                                    keys[i] = f32::NAN;
                                    offer_row(&mut sink, i0 + i, keys, id0 + j0 as i64);
                                } else {
                                    offer_row(&mut sink, i0 + i, keys, id0 + j0 as i64);
                                    offer_columns(&mut sink, j0, keys, &mut col_thr[..j_rows], id0 + (i0 + i) as i64);
                                }
                            }
                            job.progress.advance(1);
                        }
                    }
                    drop(sink);
                    heaps.into_lists()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("self-join workers do not panic")).collect()
    });
    if private.len() == 1 {
        return private.into_iter().next().expect("one list");
    }
    merge_lists(&private, job.k)
}
