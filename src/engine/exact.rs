//! Exact answers from f32 kernels: every candidate a backend returns is re-scored in f64 from
//! the original rows, the list is re-ranked by that score, and (for f32 products) the set itself
//! is proven right or recomputed.
//!
//! Why: the kernels compute an L2 distance as ‖q‖² + ‖x‖² − 2·q·x in f32, which cancels
//! catastrophically for rows far from the origin (rows of 1000 + 0.01·noise all score 0). The
//! engine shifts the rows by their column means before the products (distances do not change
//! under translation), which keeps the f32 error relative to the data's spread; this module then
//! makes the reported scores and order exact: L2 and inner-product keys are the exact values
//! correctly rounded to f32 (the private module `engine::rounded`), cosine keys their f64
//! formula rounded.
//!
//! The proof: the backend searched `k' = k + margin` candidates. Any row it left out has an f32
//! key of at least the list's last (k'-th) key `w`, and its true key differs from its f32 key by at
//! most `E` (below), so its true key is at least `w − E`. If `w − E` lies above the k-th re-scored
//! key (by more than one f32 ulp, since the ranking is by the f32 rounding of the exact key, ties
//! by index), no left-out row can enter the top k, and the re-ranked list is exactly the top k.
//! Rows where the proof fails are searched again: where the list ends inside one group of equal
//! f32 keys (the copies of a duplicated row score bit for bit alike) by the backend with twice
//! the candidates, round after round, since passing the group proves the set; otherwise (the
//! error bound wider than the keys' spread), or when the candidates would reach the database's
//! size, by brute force in f64. Bounds, with `u = 2⁻²⁴` and `γ = d·u / (1 − d·u)` (any summation order):
//! - L2 on shifted rows `q̃ = fl(q − s)`, `x̃ = fl(x − s)`: `E = (2γ + 10u)·(‖q̃‖² + max‖x̃‖²)`
//!   (the products and norms, plus the rounding of the shift);
//! - inner product: `E = 2(γ + u)·‖q‖·max‖x‖`;
//! - cosine: the kernels multiply normalised copies `x̂ = fl(x/‖x‖)` (each component within `u`
//!   of the unit vector's, so `‖x̂ − x/‖x‖‖ ≤ u` and `‖x̂‖ ≤ 1 + u`); their f32 product is within
//!   `γ(1 + u)²` of `q̂·x̂`, which is within `u(1 + u) + u` of the cosine: the inner-product bound
//!   with `‖q̂‖, max‖x̂‖ ≤ 1 + u` covers both. Exact cosines are computed from the original rows,
//!   `(q·x)/(‖q‖‖x‖)` in f64, clamped to [−1, 1].
//!
//! Reduced-precision products (the CPU's bf16 and int8, a GPU's bf16 and f16) add the error of
//! their rounding to `E` ([`super::bound`]); a GPU's tf32 candidates, and any reduced ones where
//! the options ask for approximate lists, are re-scored and re-ranked, but the set is what the
//! precision found: no proof is attempted.

use super::bound::{self, Accumulation, Rounding, SideMax};
use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::metric::FlatMetric;
use crate::topk::{better, key_bits, key_from_bits, TopKLists};

/// f32's unit roundoff.
pub(crate) const U32: f64 = 1.0 / (1u64 << 24) as f64;

/// Candidates beyond k a backend searches so that the proof usually succeeds: k/16, at least 4.
/// (On the 10k MiniLM rows at k = 10 a margin of 2 already proves all but 2 rows, and 4 every
/// row; each extra candidate costs selection work in the kernels.)
pub(crate) fn margin(k: usize) -> usize {
    (k / 16).max(4)
}

/// What [`refine`] needs besides the backend's candidates.
pub(crate) struct Refine<'a> {
    pub metric: FlatMetric,
    /// Query rows, original values.
    pub queries: Vectors<'a>,
    /// Global index of query row 0 when queries are rows of the data (excluded from their lists).
    pub query_id0: Option<i64>,
    /// Database rows, original values.
    pub database: Vectors<'a>,
    /// Global index of database row 0.
    pub db_offset: i64,
    /// The shift the backend applied (L2).
    pub shift: Option<&'a [f32]>,
    /// max‖x̃‖² over the database (L2, shifted rows) or max‖x‖ (inner product).
    pub db_bound: f64,
    /// Unit roundoff of the backend's products to prove the set with, or `None` to re-rank only.
    pub proof_unit: Option<f64>,
    /// Worker threads.
    pub threads: usize,
    /// Each query's global index (`None`: not a row of the data), in place of `query_id0`.
    pub query_ids: Option<&'a [Option<i64>]>,
    /// The backend, to search rows whose set was not proven again with more candidates before
    /// the f64 brute force; `None`: brute force at once.
    pub widen: Option<&'a Widen<'a>>,
    /// Cosine: `1/‖x‖` of every database row (original values), in f64. `queries` and
    /// `database` then hold the original rows; the backend searched normalised copies.
    pub cosine: Option<&'a [f64]>,
    /// The backend rounded its operands (bf16, f16, int8) before the products: the bound grows by
    /// [`super::bound::extra`], and rows it cannot prove go to `fallback`.
    pub reduced: Option<Reduced>,
    /// An f32 search of the database for the rows a reduced backend's candidates could not
    /// prove (their lists then refined as an f32 backend's); `None`: they are brute-forced.
    pub fallback: Option<&'a Widen<'a>>,
}

/// What a reduced-precision backend did to its operands, and the database's side of the bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reduced {
    pub rounding: Rounding,
    /// How the backend sums (its unit is [`Refine::proof_unit`]).
    pub accumulation: Accumulation,
    pub db: SideMax,
}

impl Refine<'_> {
    /// Query row `i`'s global index, if it is a row of the data (left out of its own list).
    fn own(&self, i: usize) -> Option<i64> {
        match self.query_ids {
            Some(ids) => ids[i],
            None => self.query_id0.map(|o| o + i as i64),
        }
    }
}

/// A backend search of query rows against [`Refine::database`] for their `kc` best rows, none
/// left out (the caller drops a row's own entry).
pub(crate) type Widen<'a> = dyn Fn(Vectors<'_>, usize) -> Result<TopKLists> + Sync + 'a;

/// Candidates a widened search may ask for, at most; beyond, rows are brute-forced.
const MAX_WIDE_K: usize = 8192;

/// Bytes of candidate lists (and query copies) one widened search may hold (its own search's
/// state and packed rows come on top).
const WIDEN_BYTES: usize = 16 << 20;

/// What the exact re-scoring did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefineStats {
    /// Rows whose set could not be proven from the candidates and were searched in f64.
    pub brute_force_rows: usize,
    /// Searches of a row again with more candidates (a row counts once per round).
    pub widened_rows: usize,
    /// Rows a reduced-precision backend's candidates could not prove, searched again in f32.
    pub fallback_rows: usize,
}

/// The database-side term of the error bound: max‖x̃‖² (L2) or max‖x‖ (inner product).
pub(crate) fn db_bound(metric: FlatMetric, database: &Vectors<'_>, shift: Option<&[f32]>) -> f64 {
    (0..database.n()).map(|j| bound_norm(metric, database.row(j), shift)).fold(0.0, f64::max)
}

/// ‖fl(x − s)‖² (L2) or ‖x‖ (inner product), in f64.
pub(crate) fn bound_norm(metric: FlatMetric, x: &[f32], shift: Option<&[f32]>) -> f64 {
    match (metric, shift) {
        (FlatMetric::L2, Some(s)) => lanes_sum(x, Some(s)),
        (FlatMetric::L2, None) => square_norm(x),
        (FlatMetric::InnerProduct, _) => square_norm(x).sqrt(),
        // The kernels' copy of a row is normalised: its norm is at most 1 + u.
        (FlatMetric::Cosine, _) => 1.0 + 2.0 * U32,
    }
}

/// `1/‖x‖` in f64 for each row, the cosine's scale; a zero row is refused (it has no direction).
pub(crate) fn inverse_norms(v: &Vectors<'_>, what: &str) -> Result<Vec<f64>> {
    (0..v.n())
        .map(|i| {
            let inv = inverse_norm(v.row(i));
            if inv > 0.0 {
                Ok(inv)
            } else {
                Err(Error::invalid(
                    what,
                    format!("row {i} is all zeros: a zero vector has no direction, so its cosine similarity is undefined; drop the row or use metric l2 / ip"),
                ))
            }
        })
        .collect()
}

/// The rows scaled to unit length and rounded to f32 (a copy); a zero row is an error naming it.
pub(crate) fn unit_rows(v: &Vectors<'_>, what: &str) -> Result<Vec<f32>> {
    Ok(normalised(v, &inverse_norms(v, what)?))
}

/// Copies of the rows scaled to unit length (`inv` from [`inverse_norms`]), rounded to f32: what
/// the kernels search under cosine.
pub(crate) fn normalised(v: &Vectors<'_>, inv: &[f64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(v.as_slice().len());
    for (i, s) in inv.iter().enumerate() {
        out.extend(v.row(i).iter().map(|x| (*x as f64 * s) as f32));
    }
    out
}

/// ‖x‖² in f64.
fn square_norm(x: &[f32]) -> f64 {
    lanes_sum(x, None)
}

/// Σ fl(x − s)² (or Σ x² without `s`) in f64, in eight independent sums that the compiler can
/// vectorise (one running sum would make every addition wait for the previous one).
#[inline]
fn lanes_sum(x: &[f32], s: Option<&[f32]>) -> f64 {
    let term = |j: usize| match s {
        Some(s) => (x[j] - s[j]) as f64,
        None => x[j] as f64,
    };
    let mut acc = [0f64; 8];
    let body = x.len() / 8 * 8;
    for j0 in (0..body).step_by(8) {
        for (t, a) in acc.iter_mut().enumerate() {
            let v = term(j0 + t);
            *a += v * v;
        }
    }
    for (t, j) in (body..x.len()).enumerate() {
        let v = term(j);
        acc[t] += v * v;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Largest squared row norm the kernels accept: the L2 distance of two such rows, and their
/// inner product, stay finite in f32.
pub(crate) const MAX_NORM2: f64 = f32::MAX as f64 / 4.0;

/// Fails on the first row whose squared norm exceeds [`MAX_NORM2`], naming it.
pub(crate) fn check_magnitudes(v: &Vectors<'_>, what: &str) -> Result<()> {
    checked_norms(v, what).map(|_| ())
}

/// [`check_magnitudes`], and also the sum of all rows' squared norms at most [`MAX_NORM2`]: for
/// code that sums products over rows in f32, as faiss does (PCA and OPQ covariances, k-means
/// centroids), and which on rows too large for its arithmetic does not fail but crashes (IVF
/// training), loops (PQ) or answers nothing (HNSW: every slot empty). The per-row bound keeps
/// distances and products of two rows finite; the total keeps every covariance entry finite (it
/// is at most the total) and every centroid's coordinate sum (at most √(n · total)). Embeddings
/// are far from it (unit rows sum to n).
pub(crate) fn check_total_magnitude(v: &Vectors<'_>, what: &str) -> Result<()> {
    let Norms { total, largest, at } = checked_norms(v, what)?;
    if total > MAX_NORM2 {
        return Err(Error::invalid(
            what,
            format!(
                "the rows' squared norms sum to {total:e} (the largest, row {at}'s, is {largest:e}): faiss sums over rows \
                 in float32 (k-means, PCA), which overflow beyond {MAX_NORM2:e}; scale the data down"
            ),
        ));
    }
    Ok(())
}

/// The rows' squared norms, summed, and the largest with its row.
struct Norms {
    total: f64,
    largest: f64,
    at: usize,
}

/// One pass over the rows for both checks: fails on the first row above [`MAX_NORM2`], naming it.
fn checked_norms(v: &Vectors<'_>, what: &str) -> Result<Norms> {
    let mut norms = Norms { total: 0.0, largest: 0.0, at: 0 };
    for i in 0..v.n() {
        let n2 = square_norm(v.row(i));
        if n2 > MAX_NORM2 {
            return Err(Error::invalid(
                what,
                format!(
                    "row {i}: its squared norm {n2:e} is too large: distances and inner products with it overflow \
                     float32 (rows must have squared norms up to {MAX_NORM2:e}); scale the data down"
                ),
            ));
        }
        norms.total += n2;
        if n2 > norms.largest {
            (norms.largest, norms.at) = (n2, i);
        }
    }
    Ok(norms)
}

/// The exact top `k` of every query from the backend's candidates `approx` (see the module doc).
///
/// Takes the candidates by value: they are freed once every row is re-scored, before the
/// unproven rows are searched again, so that the two never hold memory at once (a reduced
/// search's lists are several times k long).
pub(crate) fn refine(r: &Refine<'_>, approx: TopKLists, k: usize) -> Result<(TopKLists, RefineStats)> {
    let mut pass = Pass::new(r, k);
    pass.add(0, approx)?;
    pass.finish()
}

/// [`refine`] fed its candidates block by block (a backend's
/// [`crate::flat::FlatSearcher::search_each`]): each block of rows is re-scored, and its
/// candidates freed, as it comes; the rows none could prove are searched again at the end.
pub(crate) struct Pass<'r, 'a> {
    r: &'r Refine<'a>,
    k: usize,
    keys: Vec<f32>,
    ids: Vec<i64>,
    /// Rows brute-forced so far.
    brute: usize,
    /// Rows left for the widened or f32 search.
    failed: Vec<usize>,
    /// Candidates per row (every block's alike), once a block came.
    kc: Option<usize>,
    /// Rows re-scored so far (every query row once, at the end).
    covered: usize,
}

impl<'r, 'a> Pass<'r, 'a> {
    /// A pass over the queries of `r`, for their top `k`.
    pub(crate) fn new(r: &'r Refine<'a>, k: usize) -> Self {
        let nq = r.queries.n();
        // Zeroed (the allocator maps fresh pages lazily): the workers set every row, unfilled
        // slots to (+inf, −1), so that the pages are first touched on all threads, not by this one.
        Pass { r, k, keys: vec![0f32; nq * k], ids: vec![0i64; nq * k], brute: 0, failed: Vec::new(), kc: None, covered: 0 }
    }

    /// Where unproven rows go: the widened search (twice the candidates, while that stays below
    /// the database's size and MAX_WIDE_K; otherwise they are brute-forced where found), and for
    /// a reduced backend the f32 search (where a tie group at the cut, or the f32 bound, is then
    /// handled as for any f32 backend).
    fn routes(&self) -> (Option<&'a Widen<'a>>, Option<&'a Widen<'a>>) {
        let (r, wide_kc) = (self.r, self.wide_kc());
        let widen = r.widen.filter(|_| wide_kc < r.database.n() && wide_kc <= MAX_WIDE_K);
        (widen, r.fallback.filter(|_| r.reduced.is_some()))
    }

    /// Candidates of a widened search: twice the blocks'.
    fn wide_kc(&self) -> usize {
        self.kc.unwrap_or(0).saturating_mul(2)
    }

    /// Re-scores query rows `first..` from `approx` (their candidates, a row each), on up to
    /// `r.threads` threads; the candidates are freed on return. Blocks come in row order:
    /// `first` is the number of rows added before.
    pub(crate) fn add(&mut self, first: usize, approx: TopKLists) -> Result<()> {
        let (r, k, rows) = (self.r, self.k, approx.n());
        // Blocks in row order, each next to the last: a block sent twice or skipped is an error,
        // not rows left at their zeroed start.
        if first != self.covered || first + rows > r.queries.n() || self.kc.is_some_and(|kc| kc != approx.k()) {
            let detail = format!("candidates of rows {first}..{} ({} each) for {} queries ({:?} each)", first + rows, approx.k(), r.queries.n(), self.kc);
            return Err(Error::Internal { what: "the exact re-scoring".into(), message: detail });
        }
        self.kc = Some(approx.k());
        let (widen, fallback) = self.routes();
        let defer = widen.is_some() || fallback.is_some();
        // At least a GROUP of rows per thread (a block may be small next to many threads).
        let threads = r.threads.clamp(1, rows.div_ceil(GROUP).max(1));
        let chunk = rows.div_ceil(threads).max(1);
        let (keys, ids) = (&mut self.keys[first * k..(first + rows) * k], &mut self.ids[first * k..(first + rows) * k]);
        let candidates = &approx;
        let (brute, failed) = std::thread::scope(|scope| -> Result<(usize, Vec<usize>)> {
            let handles: Vec<_> = keys
                .chunks_mut(chunk * k)
                .zip(ids.chunks_mut(chunk * k))
                .enumerate()
                .map(|(c, (kc, ic))| scope.spawn(move || refine_rows(r, candidates, first, k, first + c * chunk, kc, ic, defer, fallback.is_some())))
                .collect();
            let (mut total, mut failed) = (0, Vec::new());
            for h in handles {
                let (b, f) = h.join().map_err(|p| Error::from_panic("the exact re-scoring", p.as_ref()))?;
                total += b;
                failed.extend(f);
            }
            Ok((total, failed))
        })?;
        self.brute += brute;
        self.failed.extend(failed);
        self.covered += rows;
        Ok(())
    }

    /// The rows no candidates proved, searched again; every query's exact list.
    pub(crate) fn finish(mut self) -> Result<(TopKLists, RefineStats)> {
        let (r, k, nq) = (self.r, self.k, self.r.queries.n());
        if self.covered != nq {
            let message = format!("candidates for {} of {nq} query rows", self.covered);
            return Err(Error::Internal { what: "the exact re-scoring".into(), message });
        }
        let ((widen, fallback), wide_kc) = (self.routes(), self.wide_kc());
        let (failed, keys, ids) = (&self.failed, &mut self.keys, &mut self.ids);
        let mut stats = RefineStats { brute_force_rows: self.brute, ..RefineStats::default() };
        if let (Some(fallback), false) = (fallback, failed.is_empty()) {
            // Searched again as an f32 backend's candidates: margin(k) beyond k, the f32 bound,
            // and that search's own widening for tie groups.
            let f32r = Refine { reduced: None, fallback: None, widen: Some(fallback), proof_unit: Some(U32), ..*r };
            stats.fallback_rows += failed.len();
            widen_rows(&f32r, fallback, k + margin(k), k, failed, keys, ids, &mut stats)?;
            stats.widened_rows -= failed.len();
        } else if let (Some(widen), false) = (widen, failed.is_empty()) {
            // A widened round (its queries are the rows a previous round could not prove) that
            // proves fewer than half of them says the cut is not a tie group that more
            // candidates pass but an error bound wider than the keys' spread (very wide rows):
            // the rest go to the brute force rather than to ever larger searches.
            if r.query_ids.is_some() && failed.len() * 2 > nq {
                stats.brute_force_rows += brute_rows(r, failed, k, keys, ids)?;
            } else {
                widen_rows(r, widen, wide_kc, k, failed, keys, ids, &mut stats)?;
            }
        }
        Ok((TopKLists::from_raw(k, self.keys, self.ids), stats))
    }
}

/// The f64 brute force of the query rows `failed` of `r` into `keys` / `ids`, on `r.threads`
/// threads; returns how many rows it searched.
fn brute_rows(r: &Refine<'_>, failed: &[usize], k: usize, keys: &mut [f32], ids: &mut [i64]) -> Result<usize> {
    let d = r.queries.d();
    let threads = r.threads.clamp(1, failed.len().max(1));
    let chunk = failed.len().div_ceil(threads).max(1);
    let lists: Vec<Vec<(f32, i64)>> = std::thread::scope(|scope| -> Result<Vec<Vec<(f32, i64)>>> {
        let handles: Vec<_> = failed
            .chunks(chunk)
            .map(|rows| {
                scope.spawn(move || {
                    let (mut q64, mut scored, mut packed) = (vec![0f64; d], Vec::new(), Vec::new());
                    let mut out = Vec::with_capacity(rows.len() * k);
                    for &i in rows {
                        let inv_q = load_query(r, r.queries.row(i), &mut q64);
                        brute_force(r, &q64, inv_q, r.own(i), k, &mut scored, &mut packed);
                        out.extend(scored.iter().copied().chain(std::iter::repeat((f32::INFINITY, -1))).take(k));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|p| Error::from_panic("the exact re-scoring", p.as_ref()))).collect()
    })?;
    for (&i, (key, id)) in failed.iter().zip(lists.iter().flat_map(|l| l.chunks(k)).map(|c| c.iter().copied().unzip::<f32, i64, Vec<f32>, Vec<i64>>())) {
        keys[i * k..(i + 1) * k].copy_from_slice(&key);
        ids[i * k..(i + 1) * k].copy_from_slice(&id);
    }
    Ok(failed.len())
}

/// Searches the query rows `failed` of `r` again by the backend for `kc` candidates each and
/// refines them from those (recursively: a row still unproven goes on to twice as many, or to
/// the brute force), writing their lists into `keys` / `ids`. An f32 search of a few rows costs
/// far less than scanning the database in f64, and a tie group at the cut (the copies of a
/// duplicated row) needs only enough candidates to pass it.
#[allow(clippy::too_many_arguments)]
fn widen_rows(
    r: &Refine<'_>,
    widen: &Widen<'_>,
    kc: usize,
    k: usize,
    failed: &[usize],
    keys: &mut [f32],
    ids: &mut [i64],
    stats: &mut RefineStats,
) -> Result<()> {
    let d = r.queries.d();
    stats.widened_rows += failed.len();
    let batch = (WIDEN_BYTES / ((kc + 1) * 12 + d * 4)).max(1);
    // Sized once: grown by doubling, the copy of a large batch would reserve up to twice itself.
    let mut rows = Vec::with_capacity(batch.min(failed.len()) * d);
    for part in failed.chunks(batch) {
        rows.clear();
        for &i in part {
            rows.extend_from_slice(r.queries.row(i));
        }
        let owns: Vec<Option<i64>> = part.iter().map(|&i| r.own(i)).collect();
        let q = Vectors::shaped_unchecked(&rows, d);
        // One candidate more than needed: the search leaves no row out, and a row's own entry
        // is dropped here (or, where absent, the last one).
        let wide = widen(q, kc + 1)?;
        let (mut wk, mut wi) = (Vec::with_capacity(part.len() * kc), Vec::with_capacity(part.len() * kc));
        for (t, own) in owns.iter().enumerate() {
            for (key, id) in wide.row_without(t, *own) {
                wk.push(key);
                wi.push(id);
            }
        }
        drop(wide);
        let approx = TopKLists::from_raw(kc, wk, wi);
        let sub = Refine { queries: q, query_id0: None, query_ids: Some(&owns), ..*r };
        let (lists, s) = refine(&sub, approx, k)?;
        stats.brute_force_rows += s.brute_force_rows;
        stats.widened_rows += s.widened_rows;
        stats.fallback_rows += s.fallback_rows;
        for (t, &i) in part.iter().enumerate() {
            let (lk, li) = lists.row(t);
            keys[i * k..(i + 1) * k].copy_from_slice(lk);
            ids[i * k..(i + 1) * k].copy_from_slice(li);
        }
    }
    Ok(())
}

/// Query rows re-scored together (their f64 copies, 192 KiB at d = 384, stay in L2): their
/// candidates are visited in database order, so that a candidate row listed by several queries
/// of the group is read once and reused from L1.
const GROUP: usize = 64;

/// Refines rows `first..` into `keys`/`ids` (whole rows of k) from `approx`, whose row 0 is query
/// row `base`; returns how many rows were brute-forced and, with `defer`, the unproven rows
/// instead (their lists left for the caller).
#[allow(clippy::too_many_arguments)]
fn refine_rows(
    r: &Refine<'_>,
    approx: &TopKLists,
    base: usize,
    k: usize,
    first: usize,
    keys: &mut [f32],
    ids: &mut [i64],
    defer: bool,
    to_fallback: bool,
) -> (usize, Vec<usize>) {
    let d = r.queries.d();
    let kc = approx.k();
    let rows = keys.len() / k;
    let mut q64 = vec![0f64; GROUP * d];
    let mut exact_keys = vec![0f32; GROUP * kc];
    let mut q_inv = [1f64; GROUP];
    let mut kernel_q = Vec::with_capacity(d);
    let mut in_reach = [0usize; GROUP];
    let mut valid = [0usize; GROUP];
    let mut errs = [None; GROUP];
    // (group row, slot, database row), sorted by database row.
    let mut order: Vec<(u32, u32, usize)> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut scored: Vec<(f32, i64)> = Vec::new();
    let mut packed: Vec<u64> = Vec::new();
    let mut brute = 0;
    let mut failed = Vec::new();
    for g0 in (0..rows).step_by(GROUP) {
        let g_rows = GROUP.min(rows - g0);
        // 1. The group's queries in f64, and its candidates bucketed by database block.
        for (gr, dst) in q64.chunks_mut(d).take(g_rows).enumerate() {
            q_inv[gr] = load_query(r, r.queries.row(first + g0 + gr), dst);
        }
        // Only the candidates that can reach the top k are re-scored (a prefix of each list).
        for gr in 0..g_rows {
            let i = first + g0 + gr;
            errs[gr] = r.proof_unit.map(|u| bound(r, r.queries.row(i), gamma(d, u), u) + reduced_extra(r, r.queries.row(i), &mut kernel_q));
            let (ak, ai) = approx.row(i - base);
            valid[gr] = valid_candidates(ai);
            in_reach[gr] = reach(ak, valid[gr], k, errs[gr]);
        }
        // A counting sort by database row, in buckets of `width` rows: about one bucket per
        // candidate, so that it costs O(candidates) whatever the size of the database.
        let refs: usize = in_reach[..g_rows].iter().sum();
        let width = r.database.n().div_ceil(refs.max(1)).max(1);
        let blocks = r.database.n().div_ceil(width).max(1);
        counts.clear();
        counts.resize(blocks + 1, 0);
        let block_of = |id: i64| (id - r.db_offset) as usize / width;
        for (gr, &reached) in in_reach[..g_rows].iter().enumerate() {
            for &id in &approx.row(first + g0 + gr - base).1[..reached] {
                counts[block_of(id) + 1] += 1;
            }
        }
        for b in 0..blocks {
            counts[b + 1] += counts[b];
        }
        order.clear();
        order.resize(counts[blocks], (0, 0, 0));
        for (gr, &reached) in in_reach[..g_rows].iter().enumerate() {
            for (slot, &id) in approx.row(first + g0 + gr - base).1[..reached].iter().enumerate() {
                let b = block_of(id);
                order[counts[b]] = (gr as u32, slot as u32, (id - r.db_offset) as usize);
                counts[b] += 1;
            }
        }
        // 2. Exact keys in database order. Where candidates are sparse (small k) consecutive
        // rows are far apart, beyond what the hardware prefetcher follows, so the row of a
        // candidate three places ahead is requested while this one is scored.
        for (t, pair) in order.iter().enumerate() {
            if width > 1 {
                if let Some(next) = order.get(t + 3) {
                    prefetch(r.database.row(next.2));
                }
            }
            let (gr, slot) = (pair.0 as usize, pair.1 as usize);
            exact_keys[gr * kc + slot] = exact_key(r, &q64[gr * d..(gr + 1) * d], q_inv[gr], pair.2);
        }
        // 3. Per row: rank by the exact keys, prove the set or brute-force it.
        for gr in 0..g_rows {
            let i = first + g0 + gr;
            let t = g0 + gr;
            keys[t * k..(t + 1) * k].fill(f32::INFINITY);
            ids[t * k..(t + 1) * k].fill(-1);
            let own = r.own(i);
            let (ak, ai) = approx.row(i - base);
            scored.clear();
            scored.extend((0..in_reach[gr]).map(|slot| (exact_keys[gr * kc + slot], ai[slot])));
            rank(&mut scored, &mut packed, r);
            let proven = match errs[gr] {
                None => true,
                Some(e) => {
                    let own_in_db = own.is_some_and(|o| (r.db_offset..r.db_offset + r.database.n() as i64).contains(&o));
                    let available = r.database.n() - usize::from(own_in_db);
                    if valid[gr] >= available {
                        true // every candidate was looked at
                    } else if valid[gr] < ak.len() || scored.len() < k {
                        false // a backend that returned fewer than it could: do not trust it
                    } else {
                        // An infinite f32 key says nothing of the rows behind it: not proven.
                        let worst = ak[ak.len() - 1] as f64;
                        let kth = scored[k - 1].0;
                        worst.is_finite() && worst - e > next_up(kth) as f64
                    }
                }
            };
            // More candidates help where the list ends inside one tie group of f32 keys (exact
            // duplicates score bit for bit alike): passing the group proves the set. Elsewhere
            // the proof failed on the error bound, which more candidates rarely beat.
            if !proven && to_fallback {
                failed.push(i);
                continue;
            }
            if !proven && defer && ak.len() >= k && valid[gr] == ak.len() && ak[ak.len() - 1] == ak[k - 1] {
                failed.push(i);
                continue;
            }
            if !proven {
                brute += 1;
                brute_force(r, &q64[gr * d..(gr + 1) * d], q_inv[gr], own, k, &mut scored, &mut packed);
            }
            let (out_k, out_i) = (&mut keys[t * k..(t + 1) * k], &mut ids[t * k..(t + 1) * k]);
            for (s, (ko, io)) in scored.iter().take(k).zip(out_k.iter_mut().zip(out_i.iter_mut())) {
                *ko = s.0;
                *io = s.1;
            }
        }
    }
    (brute, failed)
}

/// How many of a row's `valid` candidates (a prefix of its keys `ak`, ranked by f32 key) can be
/// among its exact top `k`, given the bound `e` on each f32 key's error (`None`: unknown, all of them).
///
/// The first k candidates have true keys of at most `c + e`, `c` the k-th f32 key. A candidate
/// whose f32 key `a` has `a − e` above the f32 number after `fl(c + e)` has a true key whose f32
/// rounding is above every one of theirs, so it ranks behind k rows whatever its index.
fn reach(ak: &[f32], valid: usize, k: usize, e: Option<f64>) -> usize {
    let Some(e) = e else { return valid };
    if valid <= k {
        return valid;
    }
    let c = ak[k - 1] as f64;
    let top = (c + e) as f32;
    if !top.is_finite() {
        return valid; // keys at the top of f32's range: no cut can be proven
    }
    let cut = next_up(top) as f64 + e;
    k + ak[k..valid].iter().take_while(|a| (**a as f64) <= cut).count()
}

/// A row's valid candidates: the prefix before the first index −1 (an unfilled slot).
fn valid_candidates(ids: &[i64]) -> usize {
    ids.iter().take_while(|id| **id >= 0).count()
}

/// The bound `E` of the module doc for query `q`.
fn bound(r: &Refine<'_>, q: &[f32], gamma: f64, unit: f64) -> f64 {
    pair_bound(r.metric, bound_norm(r.metric, q, r.shift), r.db_bound, gamma, unit)
}

/// What a reduced backend's rounding adds to query `q`'s bound ([`bound::extra`]); 0 for an
/// f32 backend. `buf`: scratch for the query's kernel row.
fn reduced_extra(r: &Refine<'_>, q: &[f32], buf: &mut Vec<f32>) -> f64 {
    let Some(red) = r.reduced else { return 0.0 };
    let inv = if r.cosine.is_some() { inverse_norm(q) } else { 1.0 };
    bound::kernel_row(r.metric, q, r.shift, inv, buf);
    let (norm, resid) = red.rounding.norm_and_residual(buf);
    bound::extra(red.rounding, red.accumulation, r.metric, norm, resid, &red.db, q.len())
}

/// `γ = d·u / (1 − d·u)` for sums of `d` products of unit roundoff `u`.
pub(crate) fn gamma(d: usize, unit: f64) -> f64 {
    let du = d as f64 * unit;
    // Past d·u = 1/2 no bound is claimed (dimensions of millions): nothing is proven then.
    if du < 0.5 {
        du / (1.0 - du)
    } else {
        f64::INFINITY
    }
}

/// The bound `E` of the module doc on a kernel key's error, from the row's own bound norm `qb`
/// ([`bound_norm`]) and the other side's `db_bound` ([`db_bound`]).
pub(crate) fn pair_bound(metric: FlatMetric, qb: f64, db_bound: f64, gamma: f64, unit: f64) -> f64 {
    if !gamma.is_finite() {
        // No bound claimed ([`gamma`]); not 0 · ∞ = NaN, which no comparison rejects.
        return f64::INFINITY;
    }
    let e = match metric {
        FlatMetric::L2 => (2.0 * gamma + 10.0 * unit) * (qb + db_bound),
        FlatMetric::InnerProduct | FlatMetric::Cosine => 2.0 * (gamma + unit) * qb * db_bound,
    };
    // A little slack for the f64 arithmetic of the bound itself.
    e * 1.01 + f64::MIN_POSITIVE
}

/// Asks the cache for the lines of `row` (a hint; no effect where unsupported).
#[inline]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: prefetching is a hint that never faults; the address lies inside `row`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// The smallest f32 above `x` (`x` itself when infinite or NaN).
pub(crate) fn next_up(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// Every database row's exact key for this query, best `k` by (key, index) into `scored`.
#[allow(clippy::too_many_arguments)]
fn brute_force(r: &Refine<'_>, q64: &[f64], inv_q: f64, own: Option<i64>, k: usize, scored: &mut Vec<(f32, i64)>, packed: &mut Vec<u64>) {
    scored.clear();
    let mut worst = (f32::INFINITY, i64::MAX);
    for j in 0..r.database.n() {
        let id = r.db_offset + j as i64;
        if Some(id) == own {
            continue;
        }
        let key = exact_key(r, q64, inv_q, j);
        if scored.len() < k || better(key, id, worst.0, worst.1) {
            scored.push((key, id));
            if scored.len() >= 2 * k.max(16) {
                rank(scored, packed, r);
                scored.truncate(k);
                worst = scored[k - 1];
            }
        }
    }
    rank(scored, packed, r);
    scored.truncate(k);
}

/// Sorts `(key, index)` candidates of `r`'s database best first in the crate's order ([`better`]:
/// key, then index; −0 equal to +0). Where the indices fit in 32 bits above the database's first,
/// each pair is packed into one integer (the key's order-preserving bits, then the index) and
/// plain integers are sorted: several times faster than comparing pairs, which matters at large k.
fn rank(scored: &mut [(f32, i64)], packed: &mut Vec<u64>, r: &Refine<'_>) {
    if r.database.n() as u64 > u32::MAX as u64 + 1 {
        scored.sort_unstable_by(|a, b| key_bits(a.0).cmp(&key_bits(b.0)).then(a.1.cmp(&b.1)));
        return;
    }
    packed.clear();
    packed.extend(scored.iter().map(|&(key, id)| ((key_bits(key) as u64) << 32) | (id - r.db_offset) as u64));
    packed.sort_unstable();
    for (s, p) in scored.iter_mut().zip(packed.iter()) {
        *s = (key_from_bits((p >> 32) as u32), r.db_offset + (p & 0xffff_ffff) as i64);
    }
}

/// Query row `q` in f64 into `dst`; returns its scale for [`exact_key`]: `1/‖q‖` under cosine;
/// under inner product `‖q‖·max‖x‖`, a bound on `Σ|q_j·x_j|` for every database row
/// (Cauchy–Schwarz; `db_bound` is `max‖x‖` there), which lets most keys skip summing the
/// magnitudes ([`key32`]); 1 under L2.
#[inline]
fn load_query(r: &Refine<'_>, q: &[f32], dst: &mut [f64]) -> f64 {
    load_row64(q, dst);
    match (r.metric, r.cosine) {
        (_, Some(_)) => inverse_norm(q),
        (FlatMetric::L2, None) => 1.0,
        (FlatMetric::InnerProduct, None) => square_norm(q).sqrt() * r.db_bound,
        // Unit rows without their norms: no bound known here, every key sums its magnitudes.
        (FlatMetric::Cosine, None) => f64::INFINITY,
    }
}

/// Row `q` in f64 into `dst`.
#[inline]
pub(crate) fn load_row64(q: &[f32], dst: &mut [f64]) {
    for (a, b) in dst.iter_mut().zip(q) {
        *a = *b as f64;
    }
}

/// `1/‖x‖` in f64 (0 for a zero row, which is refused before any search).
#[inline]
pub(crate) fn inverse_norm(x: &[f32]) -> f64 {
    let n2 = square_norm(x);
    if n2 > 0.0 {
        1.0 / n2.sqrt()
    } else {
        0.0
    }
}

/// The exact key of query `q64` (from [`load_query`], with its `scale`) and database row `j`,
/// rounded to f32.
#[inline]
fn exact_key(r: &Refine<'_>, q64: &[f64], scale: f64, j: usize) -> f32 {
    let x = r.database.row(j);
    match (r.metric, r.cosine) {
        (FlatMetric::Cosine, Some(inv)) => -(cosine_of(simd::ip(q64, x), scale, inv[j]) as f32),
        (metric, _) => key32(metric, q64, x, scale),
    }
}

/// The cosine of two rows from their inner product and inverse norms, in f64: `a·b` times
/// `(1/‖a‖)·(1/‖b‖)` (a product that does not depend on which row comes first, so a pair scores
/// alike from both sides), clamped to [−1, 1] (rounding may step just outside).
#[inline]
pub(crate) fn cosine_of(ip: f64, inv_a: f64, inv_b: f64) -> f64 {
    (ip * (inv_a * inv_b)).clamp(-1.0, 1.0)
}

/// The pair's exact key rounded to f32: ‖q − x‖² or −q·x, summed in f64 and, where that sum
/// lies too near an f32 rounding boundary, exactly ([`super::rounded`]). `reach` bounds
/// `Σ|q_j·x_j|` (inner product; [`load_query`]): where it settles the key, the magnitudes are
/// not summed.
#[inline]
fn key32(metric: FlatMetric, q64: &[f64], x: &[f32], reach: f64) -> f32 {
    match metric {
        FlatMetric::L2 => super::rounded::l2(q64, x, simd::l2(q64, x)),
        FlatMetric::InnerProduct | FlatMetric::Cosine => -super::rounded::ip_settled(q64.len(), simd::ip(q64, x), reach).unwrap_or_else(|| ip_key_slow(q64, x)),
    }
}

/// [`key32`]'s inner product where `reach` does not settle it: with the sum of magnitudes.
#[cold]
#[inline(never)]
fn ip_key_slow(q64: &[f64], x: &[f32]) -> f32 {
    let (s, abs) = simd::ip_abs(q64, x);
    super::rounded::ip(q64, x, s, abs)
}

/// A pair's verdict against a threshold's `value` and, where `passes` accepts the verdict, the
/// score a list reports for the pair (the same rounding as the lists' keys). The verdict is how
/// the pair's exact score compares with `value`: for L2 and inner product the exact value
/// ([`super::rounded`]), for cosine the f64 formula ([`cosine_of`]). `a64` is row `a` in f64
/// ([`load_row64`]); `inv_a`, `inv_b` the rows' inverse norms (cosine); `reach` a bound on
/// `Σ|a_j·b_j|` (inner product: `‖a‖·max‖b‖`), which decides most pairs without summing the
/// magnitudes.
pub(crate) fn pair_against(
    metric: FlatMetric,
    (a64, b): (&[f64], &[f32]),
    (inv_a, inv_b): (f64, f64),
    reach: f64,
    value: f64,
    passes: impl FnOnce(std::cmp::Ordering) -> bool,
) -> Option<f32> {
    match metric {
        FlatMetric::L2 => {
            let s = simd::l2(a64, b);
            passes(super::rounded::l2_cmp(a64, b, s, value)).then(|| super::rounded::l2(a64, b, s))
        }
        FlatMetric::InnerProduct => {
            let s = simd::ip(a64, b);
            let order = super::rounded::ip_clear(a64.len(), s, reach, value).unwrap_or_else(|| {
                let (s, abs) = simd::ip_abs(a64, b);
                super::rounded::ip_cmp(a64, b, s, abs, value)
            });
            passes(order).then(|| super::rounded::ip_settled(a64.len(), s, reach).unwrap_or_else(|| ip_key_slow(a64, b)))
        }
        FlatMetric::Cosine => {
            let c = cosine_of(simd::ip(a64, b), inv_a, inv_b);
            passes(c.partial_cmp(&value).unwrap_or(std::cmp::Ordering::Equal)).then_some(c as f32)
        }
    }
}

/// The re-scoring kernel for one pair, `Σ (q − x)²` in f64, as [`refine`] runs it: exposed
/// only for the `scale` bench, which measures its cost per pair (not part of the API).
#[doc(hidden)]
pub fn l2_pair_kernel(q: &[f64], x: &[f32]) -> f64 {
    simd::l2(q, x)
}

/// f64 dot products and squared distances, with AVX2 where the CPU has it.
mod simd {
    /// What [`sum_avx2`] sums: `Σ (q − x)²`, `Σ q·x`, or `Σ q·x` and `Σ |q·x|`.
    const L2: u8 = 0;
    const IP: u8 = 1;
    const IP_ABS: u8 = 2;

    #[inline]
    pub(super) fn l2(q: &[f64], x: &[f32]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features the function is compiled for were detected just now.
            return unsafe { sum_avx2::<L2>(q, x) }.0;
        }
        l2_portable(q, x)
    }

    #[inline]
    pub(super) fn ip(q: &[f64], x: &[f32]) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { sum_avx2::<IP>(q, x) }.0;
        }
        ip_portable(q, x)
    }

    /// `(Σ q·x, Σ |q·x|)`: the sum (as [`ip`] sums it) and what bounds its rounding
    /// ([`super::super::rounded`]).
    #[inline]
    pub(super) fn ip_abs(q: &[f64], x: &[f32]) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { sum_avx2::<IP_ABS>(q, x) };
        }
        let mut abs = 0f64;
        for (a, b) in q.iter().zip(x) {
            abs += (a * *b as f64).abs();
        }
        (ip_portable(q, x), abs)
    }

    #[inline(always)]
    fn l2_portable(q: &[f64], x: &[f32]) -> f64 {
        let mut acc = [0f64; 8];
        let (qc, xc) = (q.chunks_exact(8), x.chunks_exact(8));
        let (qr, xr) = (qc.remainder(), xc.remainder());
        for (a, b) in qc.zip(xc) {
            for t in 0..8 {
                let v = a[t] - b[t] as f64;
                acc[t] += v * v;
            }
        }
        for (t, (a, b)) in qr.iter().zip(xr).enumerate() {
            let v = a - *b as f64;
            acc[t] += v * v;
        }
        acc.iter().sum()
    }

    #[inline(always)]
    fn ip_portable(q: &[f64], x: &[f32]) -> f64 {
        let mut acc = [0f64; 8];
        let (qc, xc) = (q.chunks_exact(8), x.chunks_exact(8));
        let (qr, xr) = (qc.remainder(), xc.remainder());
        for (a, b) in qc.zip(xc) {
            for t in 0..8 {
                acc[t] += a[t] * b[t] as f64;
            }
        }
        for (t, (a, b)) in qr.iter().zip(xr).enumerate() {
            acc[t] += a * *b as f64;
        }
        acc.iter().sum()
    }

    /// `Σ (q − x)²` ([`L2`]) or `Σ q·x` ([`IP`]) with 16 lanes of f64 FMAs, and (only for
    /// [`IP_ABS`], else 0) `Σ |q·x|` in 16 more lanes. The first sum's order is the same in
    /// every mode, so [`ip`] and [`ip_abs`] agree on it.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum_avx2<const MODE: u8>(q: &[f64], x: &[f32]) -> (f64, f64) {
        use std::arch::x86_64::*;
        let n = q.len().min(x.len());
        let (qp, xp) = (q.as_ptr(), x.as_ptr());
        let sign = _mm256_set1_pd(-0.0);
        let (mut acc, mut abs) = ([_mm256_setzero_pd(); 4], [_mm256_setzero_pd(); 4]);
        let mut i = 0;
        while i + 16 <= n {
            for t in 0..4 {
                let xv = _mm256_cvtps_pd(_mm_loadu_ps(xp.add(i + 4 * t)));
                let qv = _mm256_loadu_pd(qp.add(i + 4 * t));
                if MODE == L2 {
                    let dv = _mm256_sub_pd(qv, xv);
                    acc[t] = _mm256_fmadd_pd(dv, dv, acc[t]);
                } else {
                    acc[t] = _mm256_fmadd_pd(qv, xv, acc[t]);
                }
                if MODE == IP_ABS {
                    abs[t] = _mm256_fmadd_pd(_mm256_andnot_pd(sign, qv), _mm256_andnot_pd(sign, xv), abs[t]);
                }
            }
            i += 16;
        }
        let (mut tail, mut tail_abs) = (0.0, 0.0);
        for j in i..n {
            let p = if MODE == L2 { (q[j] - x[j] as f64).powi(2) } else { q[j] * x[j] as f64 };
            tail += p;
            tail_abs += p.abs();
        }
        (hsum(acc) + tail, if MODE == IP_ABS { hsum(abs) + tail_abs } else { 0.0 })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(acc: [std::arch::x86_64::__m256d; 4]) -> f64 {
        use std::arch::x86_64::*;
        let s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
        let mut lanes = [0f64; 4];
        _mm256_storeu_pd(lanes.as_mut_ptr(), s);
        (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_candidates_within_reach_are_rescored() {
        let keys = [1.0f32, 2.0, 2.15, 2.25, 3.0, f32::INFINITY];
        let ids = [4i64, 9, 1, 7, 3, -1];
        // k = 2: the 2nd key is 2.0; with errors of 0.1 a candidate can still rank in the top 2
        // while its key is at most about 2.2.
        assert_eq!(reach(&keys, valid_candidates(&ids), 2, Some(0.1)), 3);
        assert_eq!(reach(&keys, valid_candidates(&ids), 2, Some(0.2)), 4);
        assert_eq!(reach(&keys, valid_candidates(&ids), 2, Some(0.0)), 2);
        // An unknown error re-scores every valid candidate; k beyond them, all of them.
        assert_eq!(reach(&keys, valid_candidates(&ids), 2, None), 5);
        assert_eq!(reach(&keys, valid_candidates(&ids), 5, Some(0.0)), 5);
        assert_eq!(reach(&keys, valid_candidates(&ids), 6, Some(0.1)), 5);
        // At the top of f32's range the cut would be infinite: every candidate is re-scored.
        let top = [f32::MAX, f32::MAX, f32::MAX];
        assert_eq!(reach(&top, 3, 1, Some(1e38)), 3);
    }

    #[test]
    fn lane_sums_match_a_plain_sum() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let s: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!((square_norm(&x) - plain).abs() <= plain * 1e-14);
        let shifted: f64 = x.iter().zip(&s).map(|(a, b)| ((*a - *b) as f64).powi(2)).sum();
        assert!((lanes_sum(&x, Some(&s)) - shifted).abs() <= shifted * 1e-14);
    }

    #[test]
    fn next_up_is_the_next_float() {
        assert_eq!(next_up(1.0), 1.0 + f32::EPSILON);
        assert!(next_up(0.0) > 0.0);
        assert!(next_up(-1.0) > -1.0 && next_up(-1.0) < -0.99999);
    }

    #[test]
    fn exact_scores_are_f64_sums() {
        let q: Vec<f64> = (0..19).map(|i| 1000.0 + i as f64 * 0.01).collect();
        let x: Vec<f32> = (0..19).map(|i| (1000.0 + i as f64 * 0.01 + 0.001) as f32).collect();
        let want: f64 = q.iter().zip(&x).map(|(a, b)| (a - *b as f64).powi(2)).sum();
        assert!((simd::l2(&q, &x) - want).abs() <= want * 1e-12);
        let want_ip: f64 = q.iter().zip(&x).map(|(a, b)| a * *b as f64).sum();
        assert!((simd::ip(&q, &x) - want_ip).abs() <= want_ip * 1e-12);
    }
}
