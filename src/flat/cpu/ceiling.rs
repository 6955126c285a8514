//! Ceilings for large-k self-joins: for every row a key that its k-th best key very likely lies
//! under, estimated from a random sample of the rows before the join, so that the join's
//! threshold buffers turn away the candidates above it from the first tile on.
//!
//! Why: a threshold buffer starts empty, accepts every candidate until it first fills, and then
//! tightens only as its selections move the threshold; at k = 1000 among 10,000 rows each row
//! accepted about 3.3 k candidates, each an append and a share of a selection.
//!
//! The estimate: among `m` rows drawn uniformly, the number whose key to row `i` is at most the
//! row's true k-th best key is binomial (m, p = k / (n − 1)), whatever the data, since it is an
//! order statistic of a uniform sample. The `r`-th best sampled key with `r` five standard
//! deviations above the mean m·p is therefore at least the k-th best key for all but a tiny
//! fraction of rows, and has about `r·n/m` rows under it (1.5–2 k on the 10k MiniLM rows, where
//! the buffers hold 1.5 k). A ceiling is only a filter: a row whose ceiling fell below its k-th
//! best key ends the join with fewer than k candidates, and [`super::CpuSearcher`] searches such
//! rows again without one. A ceiling never changes an answer, only the time.

use super::microkernel::{MicroKernel, MR, NR};
use super::pack::pack_panels;
use super::tile::product;
use super::CpuSearcher;
use super::{epilogue::fill_keys, round_to};
use crate::data::Vectors;
use crate::error::Result;
use crate::flat::{FlatJob, FlatSearcher};
use crate::metric::FlatMetric;
use crate::progress::NoProgress;
use crate::topk::TopKLists;

/// Rows sampled: at most one in this many (the sample's products are then at most a tenth of
/// the join's n²/2).
const SAMPLE_DIV: usize = 20;

/// At most this many rows are sampled, and at most [`SAMPLE_BYTES`] of them: the packed sample
/// is shared by the workers and each keeps a tile of keys against all of it.
const MAX_SAMPLE: usize = 4096;
const SAMPLE_BYTES: usize = 8 << 20;

/// Below this expected sampled rank of the k-th best the estimate is too coarse to pay.
const MIN_EXPECTED_RANK: f64 = 24.0;

/// Standard deviations of margin above the expected sampled rank.
const SIGMAS: f64 = 5.0;

/// Short rows searched again at a time.
const REFILL_BATCH: usize = 1024;

/// Query rows per tile of the sample search.
const PANEL_ROWS: usize = 16 * MR;

/// What [`ceilings`] works on: the rows of a self-join and their keys' ingredients.
pub(super) struct Sampled<'a> {
    pub rows: Vectors<'a>,
    /// Squared norms after the shift (L2; unused for inner product).
    pub norms: &'a [f32],
    pub shift: Option<&'a [f32]>,
    pub metric: FlatMetric,
    pub kernel: MicroKernel,
    pub workers: usize,
}

/// How many rows to sample for a self-join of `n` rows keeping `k` each (0: not worth it), and
/// the sampled rank to take as the ceiling.
fn sample_plan(n: usize, d: usize, k: usize) -> Option<(usize, usize)> {
    let m = (n / SAMPLE_DIV).min(MAX_SAMPLE).min(SAMPLE_BYTES / (4 * d.max(1)));
    if n < 2 || m == 0 {
        return None;
    }
    let p = k as f64 / (n - 1) as f64;
    let mu = m as f64 * p;
    if mu < MIN_EXPECTED_RANK {
        return None;
    }
    // +1: a row may be in the sample itself, where its key is its own (0 for L2).
    let r = (mu + SIGMAS * (mu * (1.0 - p)).sqrt()).ceil() as usize + 1;
    // A ceiling that passes a quarter of the rows or more would hardly cut anything.
    (r * 4 <= m).then_some((m, r))
}

/// Every row's ceiling for a self-join of `s.rows` keeping `k` candidates each, or `None` where
/// sampling would not pay (k small against the rows, or few rows).
pub(super) fn ceilings(s: &Sampled<'_>, k: usize) -> Option<Vec<f32>> {
    let (n, d) = (s.rows.n(), s.rows.d());
    let (m, r) = sample_plan(n, d, k)?;
    let picked: Vec<usize> = stratified(n, m).collect();
    let mut sample = Vec::with_capacity(m * d);
    for &row in &picked {
        sample.extend_from_slice(s.rows.row(row));
    }
    let sample_norms: Vec<f32> = picked.iter().map(|&row| s.norms.get(row).copied().unwrap_or(0.0)).collect();
    let mut packed = Vec::new();
    pack_panels(&sample, d, 0, m, NR, s.shift, &mut packed);
    drop(sample);
    let ldc = round_to(m, NR);
    let mut out = vec![0f32; n];
    let workers = s.workers.clamp(1, n.div_ceil(PANEL_ROWS));
    let per = round_to(n.div_ceil(workers), PANEL_ROWS);
    std::thread::scope(|scope| {
        for (c, dst) in out.chunks_mut(per).enumerate() {
            let (packed, sample_norms) = (&packed, &sample_norms);
            scope.spawn(move || {
                let (mut a, mut tile, mut keys) = (Vec::new(), vec![0f32; PANEL_ROWS * ldc], vec![0f32; m]);
                for (p, panel_out) in dst.chunks_mut(PANEL_ROWS).enumerate() {
                    let q0 = c * per + p * PANEL_ROWS;
                    let rows = panel_out.len();
                    pack_panels(s.rows.as_slice(), d, q0, rows, MR, s.shift, &mut a);
                    product(s.kernel, d, &a, rows, packed, m, &mut tile, ldc);
                    for (i, ceiling) in panel_out.iter_mut().enumerate() {
                        let qn = s.norms.get(q0 + i).copied().unwrap_or(0.0);
                        fill_keys(s.metric, &tile[i * ldc..i * ldc + m], qn, sample_norms, &mut keys);
                        *ceiling = *keys.select_nth_unstable_by(r - 1, f32::total_cmp).1;
                    }
                }
            });
        }
    });
    Some(out)
}

/// Searches again, without a ceiling, the rows of a self-join `job` whose lists in `lists` came
/// out short (fewer than k candidates where the data has more: their ceiling fell below their
/// k-th best key), writing their full lists in place; returns how many rows it searched.
pub(super) fn refill_short_rows(searcher: &CpuSearcher, job: &FlatJob<'_>, lists: &mut TopKLists) -> Result<usize> {
    let (n, k) = (lists.n(), lists.k());
    let full = k.min(n.saturating_sub(1));
    let short: Vec<usize> = (0..n).filter(|&i| lists.row(i).1[..full].iter().any(|&id| id < 0)).collect();
    if short.is_empty() {
        return Ok(0);
    }
    let d = job.database.d();
    // In batches, so that the copies of the rows and their lists stay small however many rows
    // come out short (by the sampling, a handful).
    let mut rows = Vec::new();
    for part in short.chunks(REFILL_BATCH) {
        rows.clear();
        for &i in part {
            rows.extend_from_slice(job.database.row(i));
        }
        // One candidate more than needed, without excluding the row itself: its own entry is
        // dropped here (or, where duplicates with smaller indices push it out, the last one).
        let queries = Vectors::shaped_unchecked(&rows, d);
        let sub = FlatJob {
            db_offset: job.db_offset,
            shift: job.shift,
            operands: job.operands,
            ..FlatJob::search(queries, job.database, job.metric, k + 1, &NoProgress)
        };
        let found = searcher.search(&sub)?;
        for (t, &i) in part.iter().enumerate() {
            for (slot, (key, id)) in found.row_without(t, Some(job.db_offset + i as i64)).enumerate() {
                lists.keys[i * k + slot] = key;
                lists.ids[i * k + slot] = id;
            }
        }
    }
    Ok(short.len())
}

/// `m` row indices out of `n`: one at a pseudo-random place in each of `m` equal strata (a
/// uniform draw per stratum, fixed so that runs repeat).
fn stratified(n: usize, m: usize) -> impl Iterator<Item = usize> {
    let stride = n / m;
    (0..m).map(move |j| {
        let mut h = (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        j * stride + (h % stride as u64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::super::pairs::{self, RowSet};
    use super::*;
    use crate::topk::TopKBuffers;

    /// Rows of `d` pseudo-random values, the first `dups` of them one same row.
    fn rows(n: usize, d: usize, dups: usize) -> Vec<f32> {
        let mut h = 0x2545_f491_4f6c_dd1du64;
        let mut x: Vec<f32> = (0..n * d)
            .map(|_| {
                h ^= h << 13;
                h ^= h >> 7;
                h ^= h << 17;
                (h >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        for i in 1..dups {
            x.copy_within(0..d, i * d);
        }
        x
    }

    #[test]
    fn rows_under_too_low_a_ceiling_are_searched_again() {
        let (n, d, k) = (600, 8, 50);
        let x = rows(n, d, 60); // row 55 has 55 copies of itself before it: its own entry is not in its first k + 1
        let v = Vectors::new(&x, d, "x").unwrap();
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
            let job = FlatJob::self_join(v, metric, k, &NoProgress);
            let searcher = CpuSearcher::new();
            let plan = searcher.plan(&job);
            assert!(plan.symmetric);
            let norms = super::super::norms_of(metric, &v, None, "x").unwrap();
            let spec = searcher.join_spec(crate::flat::Operands::F32, metric, None, &plan, &NoProgress);
            // No ceiling, except: nothing passes for rows 3 and 55, fewer than k for row 599,
            // and a ceiling that every row's k-th best lies under for row 100 (it stays whole).
            let blocked = searcher.clone().symmetric(false).search(&job).unwrap();
            let mut ceil = vec![f32::INFINITY; n];
            ceil[3] = f32::NEG_INFINITY;
            ceil[55] = f32::NEG_INFINITY;
            // (The largest key below the k-th: a tie group at the k-th may be long.)
            let last = blocked.row(599).0;
            ceil[599] = last.iter().copied().rfind(|&key| key < last[k - 1]).unwrap_or(f32::NEG_INFINITY);
            ceil[100] = blocked.row(100).0[k - 1];
            let set = RowSet { rows: v, norms: &norms, id0: 0 };
            let mut lists = pairs::self_join(&spec, set, Some(&ceil), |r| TopKBuffers::new(r, k, 32, 0)).unwrap();
            for short in [3, 55, 599] {
                assert!(lists.row(short).1.contains(&-1), "{metric:?}: row {short} should come out short");
            }
            assert_eq!(refill_short_rows(&searcher, &job, &mut lists).unwrap(), 3, "{metric:?}");
            assert_eq!(lists, blocked, "{metric:?}");
        }
    }

    #[test]
    fn the_sampled_ceilings_lie_above_every_rows_kth_best_and_cut() {
        let (n, d, k) = (6000, 8, 600);
        let x = rows(n, d, 0);
        let v = Vectors::new(&x, d, "x").unwrap();
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
            let norms = super::super::norms_of(metric, &v, None, "x").unwrap();
            let s = Sampled { rows: v, norms: &norms, shift: None, metric, kernel: MicroKernel::detect(), workers: 2 };
            let ceil = ceilings(&s, k).expect("k = 600 of 6,000 rows samples");
            // Each row's best 3k keys: the k-th lies under the ceiling, and (for nearly every
            // row) so does the ceiling under the 3k-th: it cuts.
            let wide = CpuSearcher::new().symmetric(false).search(&FlatJob::self_join(v, metric, 3 * k, &NoProgress)).unwrap();
            let mut cut = 0;
            for (i, c) in ceil.iter().enumerate() {
                let keys = wide.row(i).0;
                assert!(keys[k - 1] <= *c, "{metric:?}: row {i}: k-th best {} above its ceiling {c}", keys[k - 1]);
                cut += usize::from(*c < keys[3 * k - 1]);
            }
            assert!(cut * 10 >= n * 9, "{metric:?}: the ceiling cut only {cut} of {n} rows");
        }
    }

    #[test]
    fn samples_only_where_the_estimate_pays() {
        // 10k rows, k = 1062: 500 sampled, mean rank 53, ceiling rank 89.
        assert_eq!(sample_plan(10_000, 384, 1062), Some((500, 89)));
        // Small k against the rows: no sample.
        assert_eq!(sample_plan(10_000, 384, 106), None);
        assert_eq!(sample_plan(100_000, 384, 106), None);
        // Many rows: the sample is capped, and so is its packed size for wide rows.
        assert_eq!(sample_plan(1_000_000, 384, 20_000).map(|p| p.0), Some(MAX_SAMPLE));
        assert_eq!(sample_plan(1_000_000, 4096, 50_000).map(|p| p.0), Some(SAMPLE_BYTES / (4 * 4096)));
        // k close to the rows: a ceiling would pass too many to help.
        assert_eq!(sample_plan(10_000, 384, 3000), None);
        assert_eq!(sample_plan(1, 384, 1), None);
    }

    #[test]
    fn strata_hold_one_row_each() {
        for (n, m) in [(10_000, 500), (1001, 50), (40, 40), (7, 3)] {
            let picked: Vec<usize> = stratified(n, m).collect();
            let stride = n / m;
            assert_eq!(picked.len(), m);
            for (j, &row) in picked.iter().enumerate() {
                assert!(row >= j * stride && row < (j + 1) * stride && row < n, "n {n} m {m}: row {row} in stratum {j}");
            }
        }
    }
}
