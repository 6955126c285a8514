//! The threshold join and duplicate groups: `range_pairs`, `dedup`, and the groups of given pairs
//! (the distilabel steps and the Ray driver build them from their own pairs).

use crate::args::{matrix, metric_arg, opt_positive, threshold_arg};
use crate::errors::{detached, interruptible, invalid};
use faiss_nn::dedup::{Groups, Keep, RankValues, UnionFind};
use faiss_nn::range::{Pair, RangeJoin};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

type PairArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);
type GroupArrays<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<bool>>);

/// The join the arguments describe (threshold checked against the metric).
fn join_of(
    py: Python<'_>,
    threshold: &Bound<'_, PyAny>,
    metric: &Bound<'_, PyAny>,
    max_pairs: Option<&Bound<'_, PyAny>>,
    threads: Option<&Bound<'_, PyAny>>,
    memory_budget: Option<&Bound<'_, PyAny>>,
) -> PyResult<RangeJoin> {
    let t = threshold_arg(py, "threshold", threshold)?;
    let mut join = RangeJoin::new(t).metric(metric_arg(py, metric)?);
    if let Some(m) = opt_positive(py, "max_pairs", max_pairs, "at least one pair must be allowed")? {
        join = join.max_pairs(m);
    }
    if let Some(n) = opt_positive(py, "threads", threads, "at least one worker thread is needed")? {
        join = join.threads(n);
    }
    if let Some(b) = opt_positive(py, "memory_budget", memory_budget, "the join needs working memory (bytes)")? {
        join = join.memory_budget(b);
    }
    join.threshold().map_err(|e| crate::errors::lib_err(py, e))?;
    Ok(join)
}

/// Checks a threshold against its metric, as the joins will (for callers that start work
/// elsewhere first, as the Ray driver does).
#[pyfunction]
pub(crate) fn _check_threshold(py: Python<'_>, threshold: &Bound<'_, PyAny>, metric: &Bound<'_, PyAny>) -> PyResult<()> {
    join_of(py, threshold, metric, None, None, None).map(drop)
}

/// Every pair `i < j` of rows whose exact score passes `threshold`: `(i int64, j int64, score
/// float32)`, sorted by `(i, j)`.
#[pyfunction]
#[pyo3(signature = (x, threshold, metric, max_pairs=None, threads=None, memory_budget=None))]
pub(crate) fn range_pairs<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    threshold: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    max_pairs: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    memory_budget: Option<&Bound<'py, PyAny>>,
) -> PyResult<PairArrays<'py>> {
    let join = join_of(py, threshold, metric, max_pairs, threads, memory_budget)?;
    let (data, n, d) = matrix(py, &x, "embeddings")?;
    let work = data.len().saturating_mul(n) / 2;
    let pairs = interruptible(py, "range_pairs", work, |progress| join.run_with_progress(data, d, progress))?;
    Ok((PyArray1::from_vec(py, pairs.i), PyArray1::from_vec(py, pairs.j), PyArray1::from_vec(py, pairs.score)))
}

/// The keep policy from `keep` (`"first"`, `"max"`, `"min"`) and the ranking values `by`:
/// `(kind, values, valid)` with kind `"int"`, `"uint"` or `"float"` (the Python layer converts
/// columns, lists and arrays to these), `valid` false where a value is missing.
fn keep_of(py: Python<'_>, keep: &str, by: Option<(String, Bound<'_, PyAny>, PyReadonlyArray1<'_, bool>)>, n: usize) -> PyResult<Keep> {
    let by = match (keep, by) {
        ("first", None) => return Ok(Keep::First),
        ("first", Some(_)) => return Err(invalid(py, "invalid keep: \"first\" ranks by row number; `by` is for keep=\"max\" or \"min\"")),
        ("max" | "min", None) => return Err(invalid(py, format!("invalid keep: {keep:?} needs `by`, the values to rank rows by (one per row)"))),
        ("max" | "min", Some(by)) => by,
        (other, _) => return Err(invalid(py, format!("invalid keep: {other:?}: expected \"first\", \"max\" or \"min\""))),
    };
    let (kind, values, valid) = by;
    let valid = valid.as_slice().map_err(|_| invalid(py, "keep: the validity mask must be contiguous"))?;
    if valid.len() != n {
        return Err(invalid(py, format!("invalid by: {} values for {n} rows; give one per row", valid.len())));
    }
    fn masked<T: Copy + numpy::Element>(py: Python<'_>, v: &Bound<'_, PyAny>, valid: &[bool]) -> PyResult<Vec<Option<T>>> {
        let arr: PyReadonlyArray1<'_, T> = v.extract().map_err(|_| invalid(py, "keep: the ranking values have an unexpected dtype"))?;
        let s = arr.as_slice().map_err(|_| invalid(py, "keep: the ranking values must be contiguous"))?;
        if s.len() != valid.len() {
            return Err(invalid(py, format!("invalid by: {} values for {} rows", s.len(), valid.len())));
        }
        Ok(s.iter().zip(valid).map(|(x, ok)| ok.then_some(*x)).collect())
    }
    let values = match kind.as_str() {
        "int" => RankValues::Int(masked::<i64>(py, &values, valid)?),
        "uint" => RankValues::UInt(masked::<u64>(py, &values, valid)?),
        "float" => RankValues::Float(masked::<f64>(py, &values, valid)?),
        other => return Err(invalid(py, format!("keep: unknown kind of ranking values {other:?}"))),
    };
    Ok(if keep == "max" { Keep::Largest(values) } else { Keep::Smallest(values) })
}

fn groups_out<'py>(py: Python<'py>, g: Groups) -> GroupArrays<'py> {
    (PyArray1::from_vec(py, g.group), PyArray1::from_vec(py, g.keep))
}

/// Duplicate groups by the exact threshold join: `(group int64[n], keep bool[n])`, `group[r]`
/// the row that `r`'s group keeps.
#[pyfunction]
#[pyo3(signature = (x, threshold, metric, keep, by=None, max_pairs=None, threads=None, memory_budget=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dedup<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    threshold: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    keep: &str,
    by: Option<(String, Bound<'py, PyAny>, PyReadonlyArray1<'py, bool>)>,
    max_pairs: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    memory_budget: Option<&Bound<'py, PyAny>>,
) -> PyResult<GroupArrays<'py>> {
    let join = join_of(py, threshold, metric, max_pairs, threads, memory_budget)?;
    let (data, n, d) = matrix(py, &x, "embeddings")?;
    let keep = keep_of(py, keep, by, n)?;
    let work = data.len().saturating_mul(n) / 2;
    let groups = interruptible(py, "dedup", work, |progress| {
        let mut uf = UnionFind::new(n);
        let mut count = 0usize;
        join.stream(data, d, progress, &mut |batch: &[Pair]| {
            count += batch.len();
            batch.iter().for_each(|p| uf.union(p.i as usize, p.j as usize));
            Ok(())
        })?;
        Groups::from_union_find(&mut uf, &keep, count)
    })?;
    Ok(groups_out(py, groups))
}

/// The duplicate groups of `n` rows joined by the pairs `(i[t], j[t])`: `(group, keep)`.
#[pyfunction]
#[pyo3(signature = (n, i, j, keep, by=None))]
pub(crate) fn _groups_from_pairs<'py>(
    py: Python<'py>,
    n: usize,
    i: PyReadonlyArray1<'py, i64>,
    j: PyReadonlyArray1<'py, i64>,
    keep: &str,
    by: Option<(String, Bound<'py, PyAny>, PyReadonlyArray1<'py, bool>)>,
) -> PyResult<GroupArrays<'py>> {
    if i.len() != j.len() {
        return Err(invalid(py, format!("pairs: {} first rows and {} second rows", i.len(), j.len())));
    }
    let keep = keep_of(py, keep, by, n)?;
    let (i, j) = (i.as_array(), j.as_array());
    let groups = detached(py, "groups", || Groups::from_pairs(n, i.iter().copied().zip(j.iter().copied()), &keep))?;
    Ok(groups_out(py, groups))
}
