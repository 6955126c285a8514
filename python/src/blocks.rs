//! Block primitives of the distributed self-join (`faiss_nn.ray`).

use crate::args::{device_arg, k_arg, matrix, metric_arg, opt_positive, owned_2d, precision_arg, threshold_arg};
use crate::errors::{detached, invalid, lib_err, raise};
use faiss_nn::ErrorKind;
use numpy::{PyArray1, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

//
// Rows are split into blocks with global row numbers; a block's self-join and each unordered
// block pair's join give every row exact candidates (keys: L2 distances, or negated inner
// products, so that smaller is better for both), and merging them per row gives exactly the
// single-process result: scores are exact, ties go to the lower global index.

pub(crate) fn flat_metric(py: Python<'_>, metric: &Bound<'_, PyAny>) -> PyResult<faiss_nn::FlatMetric> {
    let m = metric_arg(py, metric)?;
    m.flat().ok_or_else(|| raise(py, Some(ErrorKind::Unsupported), format!("the distributed self-join runs flat L2 / inner-product search only, not {m:?}")))
}

/// What a block primitive's engine opens with (the run's controls, as every call passes them).
#[derive(Clone, Copy)]
pub(crate) struct EngineArgs<'a, 'py> {
    pub device: Option<&'a Bound<'py, PyAny>>,
    pub threads: Option<&'a Bound<'py, PyAny>>,
    /// `None`: `"auto"`.
    pub precision: Option<&'a Bound<'py, PyAny>>,
    pub approximate: bool,
}

impl<'a, 'py> EngineArgs<'a, 'py> {
    /// A CPU engine of `threads` threads and the default precision (the threshold joins').
    pub(crate) fn cpu(threads: Option<&'a Bound<'py, PyAny>>) -> Self {
        EngineArgs { device: None, threads, precision: None, approximate: false }
    }
}

/// The engine of a block primitive searching `k` neighbours: on a GPU near its k limit, f32 in
/// place of bf16 / f16 as in the single-process step (`faiss_nn::engine::options_for`).
pub(crate) fn block_engine(py: Python<'_>, args: EngineArgs<'_, '_>, k: usize) -> PyResult<faiss_nn::Engine> {
    let device = device_arg(py, args.device)?;
    let precision = args.precision.map(|p| precision_arg(py, p)).transpose()?.unwrap_or_default();
    let options = faiss_nn::EngineOptions {
        threads: opt_positive(py, "threads", args.threads, "at least one worker thread is needed")?,
        precision,
        approximate: args.approximate,
        ..Default::default()
    };
    let options = faiss_nn::engine::options_for(&device, k, options);
    detached(py, "block engine", move || faiss_nn::Engine::open(&device, options))
}

/// Checks a precision on the driver before any actor starts (the actors parse it again).
#[pyfunction]
pub(crate) fn _check_precision(py: Python<'_>, precision: &Bound<'_, PyAny>) -> PyResult<()> {
    precision_arg(py, precision).map(|_| ())
}

pub(crate) fn block_id0(py: Python<'_>, id0: i64, n: usize, what: &str) -> PyResult<i64> {
    if id0 < 0 || id0.checked_add(n as i64).is_none() {
        return Err(invalid(py, format!("{what}: first global row {id0} is invalid")));
    }
    Ok(id0)
}

pub(crate) type Lists<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Both blocks' lists of a pair join: `(ids_a, keys_a, ids_b, keys_b)`.
pub(crate) type PairLists<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

pub(crate) fn lists_out<'py>(py: Python<'py>, l: faiss_nn::topk::TopKLists) -> PyResult<Lists<'py>> {
    let (n, k) = (l.n(), l.k());
    Ok((owned_2d(py, l.ids, n, k)?, owned_2d(py, l.keys, n, k)?))
}

/// Every row's `k` best other rows of block `x` (global rows `id0 ..`): `(ids, keys)`.
#[pyfunction]
#[pyo3(signature = (x, id0, k, metric, device=None, threads=None, precision=None, approximate=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _block_self_join<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    id0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    precision: Option<&Bound<'py, PyAny>>,
    approximate: bool,
) -> PyResult<Lists<'py>> {
    let k = k_arg(py, k)?;
    let metric = flat_metric(py, metric)?;
    let engine = block_engine(py, EngineArgs { device, threads, precision, approximate }, k)?;
    let (data, n, d) = matrix(py, &x, "block")?;
    let id0 = block_id0(py, id0, n, "block")?;
    let l = detached(py, "block self-join", || engine.load_shard(data, d, id0, metric)?.self_join(k, &faiss_nn::NoProgress))?;
    lists_out(py, l)
}

/// The arguments every two-block primitive shares, checked: `k`, the metric, the engine, and
/// both blocks (same dimension, valid first global rows).
pub(crate) struct TwoBlocks<'a> {
    k: usize,
    metric: faiss_nn::FlatMetric,
    engine: faiss_nn::Engine,
    d: usize,
    a: (&'a [f32], i64),
    b: (&'a [f32], i64),
}

pub(crate) fn two_blocks<'a>(
    py: Python<'_>,
    (a, a0, a_name): (&'a PyReadonlyArray2<'_, f32>, i64, &str),
    (b, b0, b_name): (&'a PyReadonlyArray2<'_, f32>, i64, &str),
    k: &Bound<'_, PyAny>,
    metric: &Bound<'_, PyAny>,
    engine: EngineArgs<'_, '_>,
) -> PyResult<TwoBlocks<'a>> {
    let k = k_arg(py, k)?;
    let metric = flat_metric(py, metric)?;
    let engine = block_engine(py, engine, k)?;
    let (da, na, d) = matrix(py, a, a_name)?;
    let (db, nb, dbd) = matrix(py, b, b_name)?;
    if d != dbd {
        return Err(invalid(py, format!("{b_name} has dimension {dbd}, {a_name} has {d}")));
    }
    let a0 = block_id0(py, a0, na, a_name)?;
    let b0 = block_id0(py, b0, nb, b_name)?;
    Ok(TwoBlocks { k, metric, engine, d, a: (da, a0), b: (db, b0) })
}

/// The join of two disjoint blocks: `(ids_a, keys_a, ids_b, keys_b)`, the `k` best rows of `b`
/// for each row of `a` and the `k` best rows of `a` for each row of `b`. On the CPU every pair
/// is computed once for both.
#[pyfunction]
#[pyo3(signature = (a, a0, b, b0, k, metric, device=None, threads=None, precision=None, approximate=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _block_pair_join<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, f32>,
    a0: i64,
    b: PyReadonlyArray2<'py, f32>,
    b0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    precision: Option<&Bound<'py, PyAny>>,
    approximate: bool,
) -> PyResult<PairLists<'py>> {
    let t = two_blocks(py, (&a, a0, "block a"), (&b, b0, "block b"), k, metric, EngineArgs { device, threads, precision, approximate })?;
    let (la, lb) = detached(py, "block pair join", || {
        let sa = t.engine.load_shard(t.a.0, t.d, t.a.1, t.metric)?;
        let sb = t.engine.load_shard(t.b.0, t.d, t.b.1, t.metric)?;
        sa.pair_join(&sb, t.k, &faiss_nn::NoProgress)
    })?;
    let (ia, ka) = lists_out(py, la)?;
    let (ib, kb) = lists_out(py, lb)?;
    Ok((ia, ka, ib, kb))
}

/// The `k` best rows of block `x` (global rows `x0 ..`) for each row of `q` (global rows
/// `q0 ..`; a query row is left out of its own list when the two ranges overlap, as when `q`
/// is `x`): `(ids, keys)`. The broadcast schedule's unit of work.
#[pyfunction]
#[pyo3(signature = (q, q0, x, x0, k, metric, device=None, threads=None, precision=None, approximate=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _block_search<'py>(
    py: Python<'py>,
    q: PyReadonlyArray2<'py, f32>,
    q0: i64,
    x: PyReadonlyArray2<'py, f32>,
    x0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    precision: Option<&Bound<'py, PyAny>>,
    approximate: bool,
) -> PyResult<Lists<'py>> {
    let t = two_blocks(py, (&q, q0, "query block"), (&x, x0, "block"), k, metric, EngineArgs { device, threads, precision, approximate })?;
    let l = detached(py, "block search", || t.engine.load_shard(t.b.0, t.d, t.b.1, t.metric)?.search(t.a.0, Some(t.a.1), t.k, &faiss_nn::NoProgress))?;
    lists_out(py, l)
}

/// Merges candidate lists of the same rows (each `(ids, keys)` sorted best first, ids distinct
/// across parts, −1 marking an empty slot) into the best `k` per row, ties to the lower id.
#[pyfunction]
pub(crate) fn _merge_lists<'py>(
    py: Python<'py>,
    parts: Vec<(PyReadonlyArray2<'py, i64>, PyReadonlyArray2<'py, f32>)>,
    k: &Bound<'py, PyAny>,
) -> PyResult<Lists<'py>> {
    let k = k_arg(py, k)?;
    if parts.is_empty() {
        return Err(invalid(py, "merge: no lists to merge"));
    }
    let n = parts[0].0.shape()[0];
    let mut lists = Vec::with_capacity(parts.len());
    for (p, (ids, keys)) in parts.iter().enumerate() {
        if ids.shape() != keys.shape() {
            return Err(invalid(py, format!("merge: part {p} has ids of shape {:?} and keys of shape {:?}", ids.shape(), keys.shape())));
        }
        if ids.shape()[0] != n {
            return Err(invalid(py, format!("merge: part {p} covers {} rows, part 0 covers {n}", ids.shape()[0])));
        }
        let pk = ids.shape()[1];
        if pk == 0 {
            continue;
        }
        let ids = ids.as_array().iter().copied().collect::<Vec<i64>>();
        let keys = keys.as_array().iter().copied().collect::<Vec<f32>>();
        lists.push(faiss_nn::topk::TopKLists::from_raw(pk, keys, ids));
    }
    if lists.is_empty() {
        return lists_out(py, faiss_nn::topk::TopKLists::empty(n, k));
    }
    let merged = detached(py, "merge", || Ok(faiss_nn::topk::merge_lists(&lists, k)))?;
    lists_out(py, merged)
}

/// Collects a block join's pairs, sorted by `(i, j)`, as `(i, j, score)` arrays.
fn pairs_out<'py>(py: Python<'py>, found: Vec<faiss_nn::range::Pair>) -> PairArrays<'py> {
    let p = faiss_nn::range::Pairs::from_unsorted(found);
    (PyArray1::from_vec(py, p.i), PyArray1::from_vec(py, p.j), PyArray1::from_vec(py, p.score))
}

type PairArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);

/// The threshold and cap of a block's threshold join.
fn block_threshold(
    py: Python<'_>,
    metric: faiss_nn::FlatMetric,
    threshold: &Bound<'_, PyAny>,
    max_pairs: Option<&Bound<'_, PyAny>>,
) -> PyResult<(faiss_nn::Threshold, usize)> {
    let t = threshold_arg(py, "threshold", threshold)?;
    let threshold = faiss_nn::Threshold::new(metric.metric(), t).map_err(|e| lib_err(py, e))?;
    let cap = opt_positive(py, "max_pairs", max_pairs, "at least one pair must be allowed")?
        .unwrap_or_else(|| faiss_nn::range::default_max_pairs(faiss_nn::flat::plan::DEFAULT_CPU_BUDGET));
    Ok((threshold, cap))
}

/// Every pair `i < j` of block `x` (global rows `id0 ..`) whose exact score passes `threshold`:
/// `(i, j, score)` sorted by `(i, j)`, global indices. The symmetric threshold schedule's
/// diagonal unit.
#[pyfunction]
#[pyo3(signature = (x, id0, threshold, metric, max_pairs=None, threads=None))]
pub(crate) fn _block_range_self<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    id0: i64,
    threshold: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    max_pairs: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<PairArrays<'py>> {
    let metric = flat_metric(py, metric)?;
    let (threshold, cap) = block_threshold(py, metric, threshold, max_pairs)?;
    let engine = block_engine(py, EngineArgs::cpu(threads), 1)?;
    let (data, n, d) = matrix(py, &x, "block")?;
    let id0 = block_id0(py, id0, n, "block")?;
    let found = detached(py, "block threshold join", || {
        let mut found = Vec::new();
        engine.load_shard(data, d, id0, metric)?.range_self_join(&threshold, cap, &faiss_nn::NoProgress, &mut |b: &[faiss_nn::range::Pair]| {
            found.extend_from_slice(b);
            Ok(())
        })?;
        Ok(found)
    })?;
    Ok(pairs_out(py, found))
}

/// Every pair of a row of block `a` (`i`) and a row of the disjoint block `b` (`j`) whose exact
/// score passes `threshold`: `(i, j, score)` sorted, global indices. Each pair computed once.
#[pyfunction]
#[pyo3(signature = (a, a0, b, b0, threshold, metric, max_pairs=None, threads=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn _block_range_pair<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, f32>,
    a0: i64,
    b: PyReadonlyArray2<'py, f32>,
    b0: i64,
    threshold: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    max_pairs: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<PairArrays<'py>> {
    let one = pyo3::types::PyInt::new(py, 1);
    let t = two_blocks(py, (&a, a0, "block a"), (&b, b0, "block b"), one.as_any(), metric, EngineArgs::cpu(threads))?;
    let (threshold, cap) = block_threshold(py, t.metric, threshold, max_pairs)?;
    let found = detached(py, "block pair threshold join", || {
        let sa = t.engine.load_shard(t.a.0, t.d, t.a.1, t.metric)?;
        let sb = t.engine.load_shard(t.b.0, t.d, t.b.1, t.metric)?;
        let mut found = Vec::new();
        sa.range_pair_join(&sb, &threshold, cap, &faiss_nn::NoProgress, &mut |p: &[faiss_nn::range::Pair]| {
            found.extend_from_slice(p);
            Ok(())
        })?;
        Ok(found)
    })?;
    Ok(pairs_out(py, found))
}
