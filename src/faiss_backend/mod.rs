//! faiss as the backend for every factory string and metric our own kernels do not serve
//! ("IVF256,Flat", "HNSW32", "PQ16", L1, …), and as the reference our kernels are tested against.
//!
//! The step's semantics hold here too: the index is trained (on every row, or a deterministic
//! sample when n is large), every row is added, queries run in batches of `search_batch_size`,
//! a row is removed from its own list by index, and ties are ordered by the lower index.

mod blas;
mod c_symbols;
pub mod factory;
mod native;
mod omp;
pub mod params;
pub mod simd;

use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::neighbours::Neighbours;
use crate::progress::Progress;
use faiss::index::{Index, IndexImpl};
use native::index_factory;

/// What to build and how to search it.
#[derive(Debug, Clone)]
pub struct FaissSpec<'a> {
    /// faiss index factory string.
    pub factory: &'a str,
    /// Metric.
    pub metric: Metric,
    /// Neighbours per row.
    pub k: usize,
    /// Leave each row out of its own list.
    pub exclude_self: bool,
    /// Query rows per `search` call.
    pub batch: usize,
    /// At most this many rows train the index; more are sampled down to it.
    pub train_sample: usize,
    /// Search-time parameters in faiss's syntax (`"nprobe=16,efSearch=64"`); empty for none.
    pub search_params: &'a str,
}

/// An `Error::Faiss` for a failed faiss call, with what was being done.
fn fail(context: String) -> impl FnOnce(faiss::error::Error) -> Error {
    move |e| Error::Faiss { context, message: e.to_string() }
}

/// The index of `spec` built (after the checks), its search parameters set, trained (on every
/// row, or the sample) and filled with every row of `data`; with the factory check's plan and
/// the guard that keeps a pthreads BLAS at one thread while faiss runs (hold it until done).
fn filled_index(data: Vectors<'_>, spec: &FaissSpec<'_>) -> Result<(IndexImpl, factory::FactoryPlan, blas::OneBlasThread)> {
    let (n, d) = (data.n(), data.d());
    let plan = factory::check(spec.factory, d, n.min(spec.train_sample.max(1)), spec.metric)?;
    // faiss does not fail on rows too large for its f32 sums: it crashes, loops or answers
    // nothing (see the check).
    crate::engine::exact::check_total_magnitude(&data, "embeddings")?;
    check_fp16_range(data, &plan)?;
    let params = params::SearchParams::parse(spec.search_params)?;
    let blas = blas::OneBlasThread::new();
    let mut index = index_factory(d, &factory::build_string(spec.factory, params.has("ht")), spec.metric)?;
    params.apply(&mut index, spec.factory)?;
    // An HNSW graph (also IVF_HNSW's, over the centroids) built on several threads differs from
    // run to run (see `omp`): built on one, training and adding both.
    let _graph = plan.hnsw_graph.then(omp::OneOmpThread::new);
    if !index.is_trained() {
        let sample = training_sample(data, spec.train_sample);
        let rows = sample.len() / d;
        index.train(&sample).map_err(fail(format!("training index {:?} on {rows} rows (dimension {d})", spec.factory)))?;
    }
    index.add(data.as_slice()).map_err(fail(format!("adding {n} rows to index {:?}", spec.factory)))?;
    Ok((index, plan, blas))
}

/// `SQfp16` codes (with no transform before them: `SQfp16`, HNSW over it) store every value as
/// float16: a value beyond its largest, 65504, would be stored as infinity and reported later as
/// an infinite value the data never held. Refused here, naming it. (With a transform the encoded
/// values are projections, which faiss computes; `SQbf16` has float32's range.)
fn check_fp16_range(data: Vectors<'_>, plan: &factory::FactoryPlan) -> Result<()> {
    if !plan.fp16_rows {
        return Ok(());
    }
    const F16_MAX: f32 = half::f16::MAX.to_f32_const(); // 65504
    for i in 0..data.n() {
        if let Some((j, v)) = data.row(i).iter().enumerate().find(|(_, v)| v.abs() > F16_MAX) {
            return Err(Error::invalid(
                "embeddings",
                format!("row {i}, component {j} is {v:e}: index \"SQfp16\" stores float16 values, at most {F16_MAX} in magnitude; use SQbf16 or scale the data down"),
            ));
        }
    }
    Ok(())
}

/// Builds, trains and fills a faiss index on `data`, then searches every row against it.
pub fn self_knn(data: Vectors<'_>, spec: &FaissSpec<'_>, progress: &dyn Progress) -> Result<Neighbours> {
    let n = data.n();
    let (mut index, plan, _blas) = filled_index(data, spec)?;

    // One extra hit to make room for the row itself, which is then removed by index.
    let k_search = if spec.exclude_self { spec.k + 1 } else { spec.k }.min(n);
    let mut indices = Vec::with_capacity(n * spec.k);
    let mut scores = Vec::with_capacity(n * spec.k);
    let batch = spec.batch.max(1);
    progress.start(n as u64);
    for q0 in (0..n).step_by(batch) {
        crate::progress::check(progress, "the faiss search")?;
        let q1 = (q0 + batch).min(n);
        let res = index.search(data.rows(q0, q1).as_slice(), k_search).map_err(fail(format!("searching rows {q0}..{q1} in index {:?}", spec.factory)))?;
        for (r, i) in (q0..q1).enumerate() {
            let labels = &res.labels[r * k_search..(r + 1) * k_search];
            let dists = &res.distances[r * k_search..(r + 1) * k_search];
            let own = if spec.exclude_self { Some(i as i64) } else { None };
            let row = finish_row(labels, dists, own, spec.k, spec.metric.is_similarity());
            for (id, s) in row {
                indices.push(id);
                scores.push(s);
            }
        }
        progress.advance((q1 - q0) as u64);
    }
    // An exhaustive index compares every pair: a slot it left empty held a NaN distance, which
    // faiss drops from its lists. Refuse rather than return a list with a hole.
    let available = if spec.exclude_self { n - 1 } else { n };
    if plan.exhaustive && spec.k <= available {
        if let Some(p) = indices.iter().position(|&i| i < 0) {
            return Err(Error::Faiss {
                context: format!("searching index {:?}", spec.factory),
                message: format!(
                    "row {} has fewer than {} neighbours from an index that compares every pair: faiss computed NaN distances \
                     (a whitening PCA of rank-deficient data, or values whose transform overflows)",
                    p / spec.k,
                    spec.k
                ),
            });
        }
    }
    Ok(Neighbours { n, k: spec.k, indices, scores })
}

/// The flat scalar-quantizer factories (`SQ8`, …, no transform): their search scans every code,
/// so the step searches the decoded rows with the exact flat kernels instead (see
/// [`decoded_rows`]).
pub fn is_flat_sq(factory: &str) -> bool {
    matches!(factory.trim(), "SQ4" | "SQ6" | "SQ8" | "SQfp16" | "SQbf16")
}

/// Builds and trains the index of `spec` (a flat SQ one, [`is_flat_sq`]) the way
/// [`self_knn`] does, adds every row, and returns the rows as the index stores them: each
/// decoded from its code by faiss (`reconstruct_n`), `n × d`.
///
/// Why: faiss's search of a flat SQ index decodes every code for every query, a scan of
/// n² · d codes in its own SIMD loop (minutes at 100,000 rows); the same neighbours (the rows
/// nearest to each query after quantization) come from the decoded rows by the exact flat
/// search, at its cost, with exact scores. faiss's f32 sums and the exact ones can order a
/// near-tie differently; nothing else differs.
pub fn decoded_rows(data: Vectors<'_>, spec: &FaissSpec<'_>) -> Result<Vec<f32>> {
    let (n, d) = (data.n(), data.d());
    let (index, _, _blas) = filled_index(data, spec)?;
    let mut out = vec![0f32; n * d];
    index.reconstruct_n(faiss::Idx::new(0), n, &mut out).map_err(fail(format!("decoding the {n} rows of index {:?}", spec.factory)))?;
    Ok(out)
}

/// One row of faiss's answer in the step's conventions: the row itself removed by index (or the
/// last hit dropped if it was not found), best first with ties by lower index, unfilled slots as
/// (−1, ±inf), exactly `k` entries.
fn finish_row(labels: &[faiss::Idx], dists: &[f32], own: Option<i64>, k: usize, similarity: bool) -> Vec<(i64, f32)> {
    let mut row: Vec<(i64, f32)> = labels.iter().zip(dists).filter_map(|(l, s)| l.get().map(|l| (l as i64, *s))).filter(|(l, _)| Some(*l) != own).collect();
    row.sort_by(|a, b| {
        let by_score = if similarity { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) };
        by_score.then(a.0.cmp(&b.0))
    });
    row.truncate(k);
    let empty = if similarity { f32::NEG_INFINITY } else { f32::INFINITY };
    row.resize(k, (-1, empty));
    row
}

/// All rows (borrowed, not copied), or `cap` rows spread evenly over the data (deterministic, so
/// runs repeat).
fn training_sample(data: Vectors<'_>, cap: usize) -> std::borrow::Cow<'_, [f32]> {
    let n = data.n();
    if n <= cap.max(1) {
        return std::borrow::Cow::Borrowed(data.as_slice());
    }
    let mut out = Vec::with_capacity(cap * data.d());
    for s in 0..cap {
        out.extend_from_slice(data.row(s * n / cap));
    }
    std::borrow::Cow::Owned(out)
}

/// faiss's own `IndexFlatL2` / `IndexFlatIP` holding `x` (cosine: inner product, of rows the caller
/// normalised): the reference of the parity tests and
/// the benchmarks.
pub fn reference_flat(metric: crate::metric::FlatMetric, d: usize, x: &[f32]) -> Result<faiss::FlatIndex> {
    use crate::metric::FlatMetric;
    simd::require_cpu()?;
    let fail = |e: faiss::error::Error| Error::Faiss { context: format!("building IndexFlat of {} rows", x.len() / d.max(1)), message: e.to_string() };
    let mut idx = match metric {
        FlatMetric::L2 => faiss::FlatIndex::new_l2(d as u32),
        FlatMetric::InnerProduct | FlatMetric::Cosine => faiss::FlatIndex::new_ip(d as u32),
    }
    .map_err(fail)?;
    idx.add(x).map_err(fail)?;
    Ok(idx)
}

/// Runs a query set against an already filled faiss index.
pub fn search(index: &mut IndexImpl, queries: &[f32], k: usize) -> Result<(Vec<f32>, Vec<i64>)> {
    simd::require_cpu()?;
    let res = index.search(queries, k).map_err(|e| Error::Faiss { context: format!("searching {k} neighbours"), message: e.to_string() })?;
    let labels = res.labels.iter().map(|l| l.get().map_or(-1, |v| v as i64)).collect();
    Ok((res.distances, labels))
}
