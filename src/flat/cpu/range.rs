//! The threshold joins: every pair of rows whose f32 key is at or below a per-row limit, each
//! pair computed once. The tiles are the k-nearest joins' (packed panels, the micro-kernel, the
//! L2 / inner-product epilogue); instead of offering keys to top-k states, a tile is scanned
//! against its rows' limits and the few keys that pass become candidates. Workers keep their
//! candidates in a buffer of their own and hand it to the caller's `flush` whenever it fills
//! (and at the end), so memory stays bounded however many pairs pass: the caller re-scores
//! them exactly and streams them on (see [`crate::engine::range`]).
//!
//! A self-join runs the block pairs `(I, J ≥ I)` and, in a diagonal tile, only the entries above
//! the diagonal: every unordered pair `i < j` exactly once, with `i` on the row side. A join of
//! two row sets runs every block pair `(I, J)`.

use super::epilogue::{fill_keys, scan_at_most};
use super::microkernel::{MR, NR};
use super::pairs::{JoinSpec, RowSet};
use super::tile::Packed;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A pair of rows whose kernel key passed its row's limit: global indices (`i` of the first set,
/// `j` of the second; `i < j` in a self-join) and the f32 key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Global index of the row-side row.
    pub i: i64,
    /// Global index of the column-side row.
    pub j: i64,
    /// The kernel's key (L2 distance or negated inner product), before exact re-scoring.
    pub key: f32,
}

/// Candidates a worker gathers before handing them to `flush`.
pub(crate) const FLUSH_AT: usize = 1 << 15;

/// The candidates' consumer: called from the workers, each with its own full buffer (which it
/// leaves empty); an error stops the join and is returned by it.
pub(crate) type Flush<'a> = dyn Fn(&mut Vec<Candidate>) -> Result<()> + Sync + 'a;

/// Every pair of `a` with `b` (or, without `b`, of `a` with itself, each unordered pair once)
/// whose key is at most `limits[r]`, `r` the row of `a`. Candidates go to `flush`.
pub(crate) fn range_join(spec: &JoinSpec<'_>, a: RowSet<'_>, limits: &[f32], b: Option<RowSet<'_>>, flush: &Flush<'_>) -> Result<()> {
    let own = b.is_none();
    let b = b.unwrap_or(a);
    let (ba, bb) = (a.rows.n().div_ceil(spec.block), b.rows.n().div_ceil(spec.block));
    let pairs: Vec<(usize, usize)> =
        if own { (0..ba).flat_map(|i| (i..ba).map(move |j| (i, j))).collect() } else { (0..ba).flat_map(|i| (0..bb).map(move |j| (i, j))).collect() };
    spec.progress.start(pairs.len() as u64);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        stop.store(true, Ordering::Relaxed);
        let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(e);
    };
    let workers = spec.workers.clamp(1, pairs.len().max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut w = Scratch::new(spec.tile);
                    loop {
                        if stop.load(Ordering::Relaxed) || spec.progress.cancelled() {
                            return;
                        }
                        let t = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(i, j)) = pairs.get(t) else { break };
                        if let Err(e) = join_pair(spec, &mut w, a, i, b, j, own && i == j, limits, flush, &stop) {
                            return fail(e);
                        }
                        spec.progress.advance(1);
                    }
                    if !w.found.is_empty() {
                        if let Err(e) = flush(&mut w.found) {
                            fail(e);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(p) = h.join() {
                fail(Error::from_panic("the CPU threshold join", p.as_ref()));
            }
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    crate::progress::check(spec.progress, "the CPU threshold join")
}

/// Per-worker buffers.
struct Scratch {
    a: Packed,
    b: Packed,
    c: Vec<f32>,
    keys: Vec<f32>,
    found: Vec<Candidate>,
}

impl Scratch {
    fn new(tile: usize) -> Self {
        Scratch { a: Packed::default(), b: Packed::default(), c: vec![0f32; tile * tile], keys: vec![0f32; tile], found: Vec::with_capacity(FLUSH_AT) }
    }
}

/// Every tile of block `i` of `a` against block `j` of `b`; `diagonal`: the same block of one
/// set, where only tiles `tj ≥ ti` are computed and only entries above the diagonal kept.
#[allow(clippy::too_many_arguments)]
fn join_pair(
    spec: &JoinSpec<'_>,
    w: &mut Scratch,
    a: RowSet<'_>,
    i: usize,
    b: RowSet<'_>,
    j: usize,
    diagonal: bool,
    limits: &[f32],
    flush: &Flush<'_>,
    stop: &AtomicBool,
) -> Result<()> {
    let d = a.rows.d();
    let ra = i * spec.block..((i + 1) * spec.block).min(a.rows.n());
    let rb = j * spec.block..((j + 1) * spec.block).min(b.rows.n());
    let tile = spec.tile;
    w.b.pack(spec.ops, b.rows.as_slice(), d, rb.start, rb.len(), NR, spec.shift);
    for r0 in (0..ra.len()).step_by(tile) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let r_rows = tile.min(ra.len() - r0);
        w.a.pack(spec.ops, a.rows.as_slice(), d, ra.start + r0, r_rows, MR, spec.shift);
        let first_col = if diagonal { r0 } else { 0 };
        for c0 in (first_col..rb.len()).step_by(tile) {
            let c_rows = tile.min(rb.len() - c0);
            spec.kernels.product(spec.ops, d, &w.a, 0, r_rows, &w.b, c0 / NR, c_rows, &mut w.c, tile);
            let x_norms = &b.norms[rb.start + c0..rb.start + c0 + c_rows];
            let col_id0 = b.id0 + (rb.start + c0) as i64;
            for r in 0..r_rows {
                let row = ra.start + r0 + r;
                // In a diagonal tile only the columns after the row's own (pairs i < j).
                let from = if diagonal && c0 == r0 { r + 1 } else { 0 };
                if from >= c_rows {
                    continue;
                }
                let keys = &mut w.keys[..c_rows];
                fill_keys(spec.metric, &w.c[r * tile..r * tile + c_rows], a.norms[row], x_norms, keys);
                let id = a.id0 + row as i64;
                let found = &mut w.found;
                scan_at_most(&keys[from..], limits[row], |c, key| found.push(Candidate { i: id, j: col_id0 + (from + c) as i64, key }));
            }
            if w.found.len() >= FLUSH_AT {
                flush(&mut w.found)?;
                w.found.clear();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Vectors;
    use crate::flat::cpu::norms::squared_norms;
    use crate::flat::cpu::tile::{Kernels, Operands};
    use crate::metric::FlatMetric;
    use crate::progress::NoProgress;

    fn spec(tile: usize, block: usize, workers: usize, metric: FlatMetric) -> JoinSpec<'static> {
        JoinSpec { kernels: Kernels::detect(), ops: Operands::F32, metric, shift: None, tile, block, workers, progress: &NoProgress }
    }

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Every pair the brute force keeps at `limit`, as (i, j).
    fn brute(a: &[f32], b: Option<&[f32]>, d: usize, limit: f32) -> Vec<(i64, i64)> {
        let (na, other) = (a.len() / d, b.unwrap_or(a));
        let nb = other.len() / d;
        let mut out = Vec::new();
        for i in 0..na {
            for j in 0..nb {
                if b.is_none() && j <= i {
                    continue;
                }
                let dist: f32 = (0..d).map(|t| (a[i * d + t] - other[j * d + t]).powi(2)).sum();
                if dist <= limit {
                    out.push((i as i64, j as i64 + if b.is_some() { 1000 } else { 0 }));
                }
            }
        }
        out
    }

    fn joined(sp: &JoinSpec<'_>, a: &[f32], b: Option<&[f32]>, d: usize, limit: f32) -> Vec<(i64, i64)> {
        let va = Vectors::new(a, d, "a").unwrap();
        let na = squared_norms(&va, None, "a").unwrap();
        let sa = RowSet { rows: va, norms: &na, id0: 0 };
        let nb_rows = b.map(|b| Vectors::new(b, d, "b").unwrap());
        let nb = nb_rows.as_ref().map(|v| squared_norms(v, None, "b").unwrap());
        let sb = nb_rows.map(|v| RowSet { rows: v, norms: nb.as_deref().unwrap(), id0: 1000 });
        let limits = vec![limit; va.n()];
        let got = Mutex::new(Vec::new());
        range_join(sp, sa, &limits, sb, &|c: &mut Vec<Candidate>| {
            got.lock().unwrap().extend(c.drain(..).map(|c| (c.i, c.j)));
            Ok(())
        })
        .unwrap();
        let mut got = got.into_inner().unwrap();
        got.sort_unstable();
        got
    }

    #[test]
    fn self_and_two_set_joins_find_every_pair_once() {
        let d = 7;
        let a = rows(203, d, 3);
        let b = rows(61, d, 4);
        for (tile, block, workers) in [(48, 48, 1), (48, 96, 2), (96, 192, 3)] {
            let sp = spec(tile, block, workers, FlatMetric::L2);
            // Loose enough that many pairs pass, in every tile kind; an f32 tolerance at the edge.
            for limit in [0.3f32, 0.6] {
                let want: Vec<_> = brute(&a, None, d, limit);
                let got = joined(&sp, &a, None, d, limit);
                let near = |p: &(i64, i64)| {
                    let (i, j) = (p.0 as usize, p.1 as usize);
                    let dist: f32 = (0..d).map(|t| (a[i * d + t] - a[j * d + t]).powi(2)).sum();
                    (dist - limit).abs() < 1e-5
                };
                assert!(got.iter().all(|p| p.0 < p.1), "pairs i < j");
                let mut dedup = got.clone();
                dedup.dedup();
                assert_eq!(dedup.len(), got.len(), "each pair once");
                assert!(want.iter().filter(|p| !near(p)).all(|p| got.binary_search(p).is_ok()), "tile {tile} block {block} limit {limit}");
                assert!(got.iter().filter(|p| !near(p)).all(|p| want.binary_search(p).is_ok()));
                let want2 = brute(&a, Some(&b), d, limit);
                let got2 = joined(&sp, &a, Some(&b), d, limit);
                assert_eq!(got2.len(), want2.len(), "two sets, limit {limit}");
            }
        }
    }

    #[test]
    fn a_failing_flush_stops_the_join_with_its_error() {
        let d = 4;
        let a = rows(500, d, 9);
        let va = Vectors::new(&a, d, "a").unwrap();
        let na = squared_norms(&va, None, "a").unwrap();
        let limits = vec![f32::INFINITY; 500];
        let calls = AtomicUsize::new(0);
        let r = range_join(&spec(48, 96, 2, FlatMetric::L2), RowSet { rows: va, norms: &na, id0: 0 }, &limits, None, &|c: &mut Vec<Candidate>| {
            calls.fetch_add(1, Ordering::Relaxed);
            c.clear();
            Err(Error::invalid("max_pairs", "too many"))
        });
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        // Each worker stops at its first failed flush.
        assert!(calls.load(Ordering::Relaxed) <= 2);
    }
}
