//! The symmetric joins: each pair of rows is computed once and its key offered to both rows.
//!
//! The rows are cut into blocks, and the work into block pairs: `(I, J ≥ I)` of one row set for
//! a self-join, or every `(I, J)` of two disjoint row sets (a *bipartite* join, which gives the
//! rows of each set their candidates from the other). Within a pair, tiles of rows of `I`
//! against tiles of `J` are multiplied and each product row is offered to its row of `I` and, by
//! columns, to the rows of `J`. The [`Schedule`] never runs two pairs that share a block at
//! once, so the worker of a pair owns both blocks' top-k state: that state exists once for all
//! rows (the size of the output) with no per-worker copies and no merge, and the packed operands
//! are per-worker buffers of one block and one tile. Memory therefore grows with n·k, not n·d,
//! whatever n is.

use super::epilogue::{fill_keys, fill_keys_in_place, offer_columns, offer_row};
use super::microkernel::{MR, NR};
use super::pack::transpose;
use super::schedule::{Pair, Schedule};
use super::tile::{Kernels, Operands, Packed};
use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::metric::FlatMetric;
use crate::progress::Progress;
use crate::topk::{RowSink, TopKLists};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

/// One row set of a join: its rows (original values; `shift` is applied while packing), their
/// squared norms after the shift, and the global index of its row 0.
#[derive(Clone, Copy)]
pub(crate) struct RowSet<'a> {
    pub rows: Vectors<'a>,
    pub norms: &'a [f32],
    pub id0: i64,
}

/// What a join computes, and how it cuts the work.
#[derive(Clone, Copy)]
pub(crate) struct JoinSpec<'a> {
    pub kernels: Kernels,
    /// The products' operands (f32, bf16 pairs or int8 quads).
    pub ops: Operands,
    pub metric: FlatMetric,
    pub shift: Option<&'a [f32]>,
    /// Rows per tile (a multiple of MR and NR).
    pub tile: usize,
    /// Rows per block (a multiple of `tile`).
    pub block: usize,
    pub workers: usize,
    pub progress: &'a dyn Progress,
}

/// Rows of block `b` of a set of `n` rows.
fn block_rows(n: usize, block: usize, b: usize) -> std::ops::Range<usize> {
    b * block..((b + 1) * block).min(n)
}

/// Per-worker buffers.
struct Scratch {
    a: Packed,
    b: Packed,
    c: Vec<f32>,
    keys: Vec<f32>,
    col_thr: Vec<f32>,
    /// The key tile turned (columns as rows), for states with large rows.
    turned: Vec<f32>,
}

impl Scratch {
    fn new(tile: usize) -> Self {
        let c = vec![0f32; tile * tile];
        Scratch { a: Packed::default(), b: Packed::default(), turned: c.clone(), c, keys: vec![0f32; tile], col_thr: vec![0f32; tile] }
    }
}

/// The self-join of `set`: every row's candidates from every other row of the set. `make(rows)`
/// builds the top-k state of a block of `rows` rows.
pub(crate) fn self_join<S, F>(spec: &JoinSpec<'_>, set: RowSet<'_>, ceilings: Option<&[f32]>, make: F) -> Result<TopKLists>
where
    S: RowSink + Send + Sync,
    F: Fn(usize) -> S,
{
    concat(join_states(spec, set, ceilings, make)?, spec.workers)
}

/// [`self_join`] with the lists handed to `each` block by block, in row order (the block's first
/// row, its lists): each block's state is freed as its lists are made, and the caller frees
/// those before the next, so that the candidates never exist twice over (state and lists).
pub(crate) fn self_join_each<S, F>(spec: &JoinSpec<'_>, set: RowSet<'_>, make: F, each: &mut dyn FnMut(usize, TopKLists) -> Result<()>) -> Result<()>
where
    S: RowSink + Send + Sync,
    F: Fn(usize) -> S,
{
    let mut first = 0;
    for state in join_states(spec, set, None, make)? {
        // One block's lists, its state dropped by the thread that writes its last rows.
        let lists = concat(vec![state], spec.workers)?;
        let rows = lists.n();
        each(first, lists)?;
        first += rows;
    }
    Ok(())
}

/// Runs the self-join of `set` (see [`self_join`]) and returns the blocks' states.
fn join_states<S, F>(spec: &JoinSpec<'_>, set: RowSet<'_>, ceilings: Option<&[f32]>, make: F) -> Result<Vec<Mutex<S>>>
where
    S: RowSink + Send + Sync,
    F: Fn(usize) -> S,
{
    let n = set.rows.n();
    let blocks = n.div_ceil(spec.block);
    let states: Vec<Mutex<S>> = (0..blocks)
        .map(|b| {
            let rows = block_rows(n, spec.block, b);
            let mut s = make(rows.len());
            if let Some(c) = ceilings {
                for (r, &key) in c[rows].iter().enumerate() {
                    s.ceiling(r, key);
                }
            }
            Mutex::new(s)
        })
        .collect();
    let schedule = Schedule::self_join(blocks);
    run(spec, &schedule, |scratch, pair| {
        let (a, b) = (pair.a, pair.b);
        if a == b {
            let mut s = lock(&states[a]);
            join_pair(spec, scratch, set, a, set, b, &mut *s, None);
        } else {
            // The schedule keeps other workers off both blocks; lock in index order regardless.
            let mut sa = lock(&states[a]);
            let mut sb = lock(&states[b]);
            join_pair(spec, scratch, set, a, set, b, &mut *sa, Some(&mut *sb));
        }
    })?;
    Ok(states)
}

/// The bipartite join of disjoint sets `a` and `b`: the rows of `a` get their candidates from
/// `b` and the rows of `b` theirs from `a`, each pair computed once.
pub(crate) fn bipartite<S: RowSink + Send + Sync>(
    spec: &JoinSpec<'_>,
    a: RowSet<'_>,
    b: RowSet<'_>,
    make_a: impl Fn(usize) -> S,
    make_b: impl Fn(usize) -> S,
) -> Result<(TopKLists, TopKLists)> {
    let (na, nb) = (a.rows.n(), b.rows.n());
    let (ba, bb) = (na.div_ceil(spec.block), nb.div_ceil(spec.block));
    let sa: Vec<Mutex<S>> = (0..ba).map(|i| Mutex::new(make_a(block_rows(na, spec.block, i).len()))).collect();
    let sb: Vec<Mutex<S>> = (0..bb).map(|j| Mutex::new(make_b(block_rows(nb, spec.block, j).len()))).collect();
    let schedule = Schedule::bipartite(ba, bb);
    run(spec, &schedule, |scratch, pair| {
        let mut x = lock(&sa[pair.a]);
        let mut y = lock(&sb[pair.b]);
        join_pair(spec, scratch, a, pair.a, b, pair.b, &mut *x, Some(&mut *y));
    })?;
    Ok((concat(sa, spec.workers)?, concat(sb, spec.workers)?))
}

fn lock<S>(m: &Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    // Poisoned only if a worker panicked, and then the join reports an internal error.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The blocks' finished lists, in block order, written into one output by `workers` threads,
/// each sorting an equal share of the rows (at large k these sorts are a tenth of a join; a
/// share may begin and end inside a block, so that no thread waits on a larger one). Each
/// block's state is dropped by the thread that writes its last rows: a large-k state is as
/// large as its part of the output. The cross search's query panels end the same way.
pub(super) fn concat<S: RowSink + Send + Sync>(states: Vec<Mutex<S>>, workers: usize) -> Result<TopKLists> {
    let states: Vec<S> = states.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect();
    let k = states.first().map(RowSink::k).ok_or_else(|| Error::Empty { what: "the search".into(), detail: "no blocks of rows".into() })?;
    // starts[b]: the first output row of block b; starts[blocks] = n.
    let mut starts = vec![0usize];
    starts.extend(states.iter().scan(0, |at, s| {
        *at += s.rows();
        Some(*at)
    }));
    let n = starts[states.len()];
    let (mut keys, mut ids) = (vec![0f32; n * k], vec![0i64; n * k]);
    let left: Vec<AtomicUsize> = states.iter().map(|s| AtomicUsize::new(s.rows())).collect();
    let states: Vec<RwLock<Option<S>>> = states.into_iter().map(|s| RwLock::new(Some(s))).collect();
    let (starts, left, states) = (&starts, &left, &states);
    let write = move |lo: usize, keys: &mut [f32], ids: &mut [i64]| {
        let hi = lo + keys.len() / k;
        // The block holding row lo: the last one starting at or before it.
        let mut b = starts.partition_point(|&s| s <= lo).saturating_sub(1);
        let mut row = lo;
        while row < hi {
            let end = hi.min(starts[b + 1]);
            let (at, len) = ((row - lo) * k, (end - row) * k);
            if let Some(state) = states[b].read().unwrap_or_else(|p| p.into_inner()).as_ref() {
                state.write_rows(row - starts[b], &mut keys[at..at + len], &mut ids[at..at + len]);
            }
            if left[b].fetch_sub(end - row, Ordering::AcqRel) == end - row {
                drop(states[b].write().unwrap_or_else(|p| p.into_inner()).take());
            }
            row = end;
            b += 1;
        }
    };
    let per = n.div_ceil(workers.max(1)).max(1);
    if per >= n {
        write(0, &mut keys, &mut ids);
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                keys.chunks_mut(per * k).zip(ids.chunks_mut(per * k)).enumerate().map(|(t, (kc, ic))| scope.spawn(move || write(t * per, kc, ic))).collect();
            // Every thread is joined before the first failure is reported.
            let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            joined.into_iter().try_for_each(|r| r.map_err(|p| Error::from_panic("sorting the join's lists", p.as_ref())))
        })?;
    }
    Ok(TopKLists::from_raw(k, keys, ids))
}

/// Runs `work` on every pair of `schedule` with `spec.workers` threads.
fn run(spec: &JoinSpec<'_>, schedule: &Schedule, work: impl Fn(&mut Scratch, Pair) + Sync) -> Result<()> {
    spec.progress.start(schedule.remaining() as u64);
    let workers = spec.workers.clamp(1, schedule.remaining().max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut scratch = Scratch::new(spec.tile);
                    // A cancelled join stops taking pairs; the lists are dropped below.
                    while let Some(taken) = (!spec.progress.cancelled()).then(|| schedule.take()).flatten() {
                        work(&mut scratch, taken.pair);
                        spec.progress.advance(1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|p| Error::from_panic("the CPU self-join", p.as_ref()))?;
        }
        crate::progress::check(spec.progress, "the CPU self-join")
    })
}

/// Every tile of block `i` of `a` against block `j` of `b`. With `sb`, the pair's keys go to the
/// rows of block `i` (state `sa`) and by columns to the rows of block `j` (state `sb`). Without
/// it, `a` and `b` are the same set and `i == j`: the diagonal block, where only tiles `tj ≥ ti`
/// are computed and both sides go to `sa`.
#[allow(clippy::too_many_arguments)]
fn join_pair<S: RowSink>(spec: &JoinSpec<'_>, w: &mut Scratch, a: RowSet<'_>, i: usize, b: RowSet<'_>, j: usize, sa: &mut S, mut sb: Option<&mut S>) {
    let d = a.rows.d();
    let (ra, rb) = (block_rows(a.rows.n(), spec.block, i), block_rows(b.rows.n(), spec.block, j));
    let diagonal = sb.is_none();
    let tile = spec.tile;
    // The column block in the micro-kernel's B layout, packed once for the pair.
    w.b.pack(spec.ops, b.rows.as_slice(), d, rb.start, rb.len(), NR, spec.shift);
    let ldc = tile;
    for r0 in (0..ra.len()).step_by(tile) {
        let r_rows = tile.min(ra.len() - r0);
        w.a.pack(spec.ops, a.rows.as_slice(), d, ra.start + r0, r_rows, MR, spec.shift);
        let first_col = if diagonal { r0 } else { 0 };
        for c0 in (first_col..rb.len()).step_by(tile) {
            let c_rows = tile.min(rb.len() - c0);
            spec.kernels.product(spec.ops, d, &w.a, 0, r_rows, &w.b, c0 / NR, c_rows, &mut w.c, ldc);
            let diagonal_tile = diagonal && c0 == r0;
            let x_norms = &b.norms[rb.start + c0..rb.start + c0 + c_rows];
            let col_id0 = b.id0 + (rb.start + c0) as i64;
            if S::LARGE_ROWS && !diagonal_tile {
                // Offers grouped by row: the tile's rows to the rows of I, then the turned tile's
                // rows (its columns) to the rows of J, so that each row's state is touched once.
                for r in 0..r_rows {
                    let row = &mut w.c[r * ldc..r * ldc + c_rows];
                    fill_keys_in_place(spec.metric, row, a.norms[ra.start + r0 + r], x_norms);
                    offer_row(sa, r0 + r, row, col_id0);
                }
                transpose(&w.c, ldc, r_rows, c_rows, &mut w.turned, tile);
                let row_id0 = a.id0 + (ra.start + r0) as i64;
                for c in 0..c_rows {
                    let col = &w.turned[c * tile..c * tile + r_rows];
                    match sb.as_deref_mut() {
                        Some(s) => offer_row(s, c0 + c, col, row_id0),
                        None => offer_row(sa, c0 + c, col, row_id0),
                    }
                }
                continue;
            }
            {
                let cols: &S = match sb.as_deref() {
                    Some(s) => s,
                    None => &*sa,
                };
                for (t, thr) in w.col_thr[..c_rows].iter_mut().enumerate() {
                    *thr = cols.threshold(c0 + t);
                }
            }
            for r in 0..r_rows {
                let keys = &mut w.keys[..c_rows];
                fill_keys(spec.metric, &w.c[r * ldc..r * ldc + c_rows], a.norms[ra.start + r0 + r], x_norms, keys);
                if diagonal_tile {
                    // The row itself is excluded by index; the tile's other pairs appear twice in
                    // it (r,c and c,r), so only the row side is offered.
                    keys[r] = f32::NAN;
                    offer_row(sa, r0 + r, keys, col_id0);
                    continue;
                }
                offer_row(sa, r0 + r, keys, col_id0);
                let row_id = a.id0 + (ra.start + r0 + r) as i64;
                match sb.as_deref_mut() {
                    Some(s) => offer_columns(s, c0, keys, &mut w.col_thr[..c_rows], row_id),
                    None => offer_columns(sa, c0, keys, &mut w.col_thr[..c_rows], row_id),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topk::{TopKBuffers, TopKHeaps};

    /// Blocks of uneven sizes with pseudo-random offers (ties included), in both kinds of state.
    fn blocks<S: RowSink>(make: impl Fn(usize) -> S) -> Vec<S> {
        let mut seed = 17u64;
        [5usize, 1, 8, 3, 7, 2]
            .iter()
            .map(|&rows| {
                let mut s = make(rows);
                for row in 0..rows {
                    for id in 0..60i64 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        s.offer(row, (seed >> 60) as f32, id);
                    }
                }
                s
            })
            .collect()
    }

    fn serial<S: RowSink>(states: Vec<S>) -> TopKLists {
        let mut it = states.into_iter().map(RowSink::into_lists);
        let mut out = it.next().unwrap();
        it.for_each(|l| out.extend(l));
        out
    }

    #[test]
    fn buffers_and_heaps_write_the_same_lists() {
        // Keys 0..16 with ties, k below the ids offered: the buffers' packed entries and the
        // heaps' pairs must give the same lists, row by row.
        let (b, h) = (blocks(|r| TopKBuffers::new(r, 9, 4, 0)), blocks(|r| TopKHeaps::new(r, 9)));
        for (b, h) in b.into_iter().zip(h) {
            assert_eq!(b.into_lists(), h.into_lists());
        }
    }

    #[test]
    fn one_block_and_more_workers_than_rows() {
        for workers in [1, 2, 64] {
            let one = |r| TopKBuffers::new(r, 40, 20, 0);
            let states: Vec<_> = blocks(one).into_iter().take(1).collect();
            let want = serial(blocks(one).into_iter().take(1).collect());
            assert_eq!(concat(states.into_iter().map(Mutex::new).collect(), workers).unwrap(), want);
            let got = concat(blocks(one).into_iter().map(Mutex::new).collect(), workers).unwrap();
            assert_eq!(got, serial(blocks(one)), "{workers} workers, 26 rows");
        }
    }

    #[test]
    fn lists_written_in_parallel_runs_equal_the_blocks_in_order() {
        for workers in 1..=7 {
            let want = serial(blocks(|r| TopKBuffers::new(r, 40, 20, 0)));
            let got = concat(blocks(|r| TopKBuffers::new(r, 40, 20, 0)).into_iter().map(Mutex::new).collect(), workers).unwrap();
            assert_eq!(got, want, "buffers, {workers} workers");
            let want = serial(blocks(|r| TopKHeaps::new(r, 7)));
            let got = concat(blocks(|r| TopKHeaps::new(r, 7)).into_iter().map(Mutex::new).collect(), workers).unwrap();
            assert_eq!(got, want, "heaps, {workers} workers");
        }
    }
}
