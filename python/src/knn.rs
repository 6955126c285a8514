//! `self_knn`: every row's k nearest other rows, as the step computes them.

use crate::args::{device_arg, k_arg, matrix, metric_arg, opt_positive, owned_2d, positive, precision_arg, shard_mode_arg};
use crate::errors::{interruptible, invalid, raise};
use faiss_nn::{ErrorKind, FaissNearestNeighbour};
use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Address of the buffer the most recent `self_knn` searched (tests check it is the caller's).
static LAST_INPUT: AtomicUsize = AtomicUsize::new(0);

/// Every row's k nearest other rows: `(indices int64[n, k], scores float32[n, k])`.
#[pyfunction]
#[pyo3(signature = (embeddings, k, metric, device, string_factory, search_batch_size, precision, exclude_self, threads, memory_budget, train_size, shard_mode, search_params=None, approximate=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn self_knn<'py>(
    py: Python<'py>,
    embeddings: PyReadonlyArray2<'py, f32>,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    string_factory: Option<String>,
    search_batch_size: &Bound<'py, PyAny>,
    precision: &Bound<'py, PyAny>,
    exclude_self: bool,
    threads: Option<&Bound<'py, PyAny>>,
    memory_budget: Option<&Bound<'py, PyAny>>,
    train_size: Option<&Bound<'py, PyAny>>,
    shard_mode: &Bound<'py, PyAny>,
    search_params: Option<String>,
    approximate: bool,
) -> PyResult<crate::blocks::Lists<'py>> {
    let k = k_arg(py, k)?;
    let metric = metric_arg(py, metric)?;
    let device = device_arg(py, device)?;
    let batch = positive(py, "search_batch_size", search_batch_size, "a batch needs at least one row")?;
    let precision = precision_arg(py, precision)?;
    let shard_mode = shard_mode_arg(py, shard_mode)?;
    let threads = opt_positive(py, "threads", threads, "at least one worker thread is needed")?;
    let budget = opt_positive(py, "memory_budget", memory_budget, "the search needs working memory (bytes)")?;
    let train = opt_positive(py, "train_size", train_size, "training needs at least one row")?;

    let mut step = FaissNearestNeighbour::new()
        .k(k)
        .metric(metric)
        .device(device)
        .string_factory(string_factory.as_deref())
        .search_params(search_params.as_deref())
        .search_batch_size(batch)
        .precision(precision)
        .approximate(approximate)
        .shard_mode(shard_mode)
        .exclude_self(exclude_self);
    if let Some(t) = threads {
        step = step.threads(t);
    }
    if let Some(b) = budget {
        step = step.memory_budget(b);
    }
    if let Some(t) = train {
        step = step.train_sample(t);
    }

    let (data, n, d) = matrix(py, &embeddings, "embeddings")?;
    if n > 0 && d == 0 {
        return Err(invalid(py, format!("embeddings is empty: its {n} rows have no values (shape ({n}, 0))")));
    }
    LAST_INPUT.store(data.as_ptr() as usize, Ordering::Relaxed);
    let nn = interruptible(py, "self_knn", data.len().saturating_mul(n), |progress| step.run_with_progress(data, d, progress))?;
    if nn.n != n || nn.k != k || nn.indices.len() != n * k || nn.scores.len() != n * k {
        return Err(raise(
            py,
            Some(ErrorKind::Internal),
            format!("internal error in self_knn (a bug in faiss-nn, please report it): result is {} × {} for {n} rows and k = {k}", nn.n, nn.k),
        ));
    }
    Ok((owned_2d(py, nn.indices, n, k)?, owned_2d(py, nn.scores, n, k)?))
}

/// Address of the buffer the most recent `self_knn` searched, for the zero-copy test.
#[pyfunction]
pub(crate) fn _last_input_address() -> usize {
    LAST_INPUT.load(Ordering::Relaxed)
}
