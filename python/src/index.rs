//! `FlatIndex`: the exact index with faiss's `IndexFlat` conventions, and its `range_search`.

use crate::args::{device_arg, k_arg, matrix, metric_arg, opt_positive, owned_2d, positive, precision_arg, threshold_arg};
use crate::errors::{detached, interruptible, invalid, raise};
use faiss_nn::{ErrorKind, Metric};
use numpy::{PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;
use std::sync::RwLock;

/// A search's `(distances, labels)`, as faiss's `Index.search` returns them.
type Found<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// Exact L2 / inner-product / cosine index with faiss's `IndexFlat` conventions.
#[pyclass(name = "FlatIndex", module = "faiss_nn._faiss_nn", frozen)]
pub(crate) struct PyFlatIndex {
    // Locks are only taken with the GIL released, so a search in one thread never blocks
    // another thread that holds the GIL (and the other way round).
    inner: RwLock<faiss_nn::FlatIndex>,
    d: usize,
    metric: Metric,
    device: String,
}

impl PyFlatIndex {
    fn check_d(&self, py: Python<'_>, got: usize, n: usize, what: &str) -> PyResult<()> {
        if got != self.d && n > 0 {
            return Err(invalid(py, format!("{what} have dimension {got}, the index has d = {}", self.d)));
        }
        Ok(())
    }
}

#[pymethods]
impl PyFlatIndex {
    #[new]
    #[pyo3(signature = (d, metric, device, threads, memory_budget, precision, approximate=false))]
    fn new(
        py: Python<'_>,
        d: &Bound<'_, PyAny>,
        metric: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
        threads: Option<&Bound<'_, PyAny>>,
        memory_budget: Option<&Bound<'_, PyAny>>,
        precision: &Bound<'_, PyAny>,
        approximate: bool,
    ) -> PyResult<Self> {
        let d = positive(py, "dimension", d, "vectors need at least one component")?;
        let metric = metric_arg(py, metric)?;
        let device = device_arg(py, device)?;
        let mut options = faiss_nn::EngineOptions { precision: precision_arg(py, precision)?, approximate, ..Default::default() };
        options.threads = opt_positive(py, "threads", threads, "at least one worker thread is needed")?;
        options.memory_budget = opt_positive(py, "memory_budget", memory_budget, "the search needs working memory (bytes)")?;
        let dev = device.clone();
        let index = detached(py, "FlatIndex", move || Ok(faiss_nn::FlatIndex::new(d, metric)?.with_device(dev).with_options(options)))?;
        Ok(PyFlatIndex { inner: RwLock::new(index), d, metric, device: device.to_string() })
    }

    /// Appends rows (float32, C-contiguous, `n × d`); they get labels `ntotal .. ntotal + n`.
    fn add(&self, py: Python<'_>, x: PyReadonlyArray2<'_, f32>) -> PyResult<()> {
        let (data, n, d) = matrix(py, &x, "added vectors")?;
        self.check_d(py, d, n, "added vectors")?;
        let inner = &self.inner;
        detached(py, "FlatIndex.add", || inner.write().unwrap_or_else(|p| p.into_inner()).add(data))
    }

    /// The k nearest stored rows of each query: `(distances float32[nq, k], labels int64[nq, k])`.
    fn search<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'py, f32>, k: &Bound<'py, PyAny>) -> PyResult<Found<'py>> {
        let k = k_arg(py, k)?;
        let (data, nq, d) = matrix(py, &x, "queries")?;
        self.check_d(py, d, nq, "queries")?;
        let inner = &self.inner;
        let work = data.len().saturating_mul(inner.read().unwrap_or_else(|p| p.into_inner()).ntotal());
        let (dist, labels) =
            interruptible(py, "FlatIndex.search", work, |progress| inner.read().unwrap_or_else(|p| p.into_inner()).search_with_progress(data, k, progress))?;
        if dist.len() != nq * k || labels.len() != nq * k {
            return Err(raise(
                py,
                Some(ErrorKind::Internal),
                format!("internal error in FlatIndex.search (a bug in faiss-nn, please report it): {} results for {nq} queries and k = {k}", dist.len()),
            ));
        }
        Ok((owned_2d(py, dist, nq, k)?, owned_2d(py, labels, nq, k)?))
    }

    /// Every stored row within `radius` of each query, as faiss's `range_search` returns them:
    /// `(lims int64[nq + 1], distances float32[total], labels int64[total])`, each query's
    /// results in label order; decided on the exact (f64) scores.
    #[allow(clippy::type_complexity)]
    fn range_search<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        radius: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<i64>>)> {
        let radius = threshold_arg(py, "radius", radius)?;
        let (data, nq, d) = matrix(py, &x, "queries")?;
        self.check_d(py, d, nq, "queries")?;
        let inner = &self.inner;
        let work = data.len().saturating_mul(inner.read().unwrap_or_else(|p| p.into_inner()).ntotal());
        let r = interruptible(py, "FlatIndex.range_search", work, |progress| {
            inner.read().unwrap_or_else(|p| p.into_inner()).range_search_with_progress(data, radius, progress)
        })?;
        Ok((PyArray1::from_vec(py, r.lims), PyArray1::from_vec(py, r.distances), PyArray1::from_vec(py, r.labels)))
    }

    /// Removes every row.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        detached(py, "FlatIndex.reset", || {
            inner.write().unwrap_or_else(|p| p.into_inner()).reset();
            Ok(())
        })
    }

    /// Rows stored.
    #[getter]
    fn ntotal(&self, py: Python<'_>) -> PyResult<usize> {
        let inner = &self.inner;
        detached(py, "FlatIndex.ntotal", || Ok(inner.read().unwrap_or_else(|p| p.into_inner()).ntotal()))
    }

    /// Dimension.
    #[getter]
    fn d(&self) -> usize {
        self.d
    }

    /// faiss's METRIC_* integer (1 = L2, 0 = inner product; cosine is an inner product of
    /// normalised rows: 0).
    #[getter]
    fn metric_type(&self) -> u32 {
        self.metric.faiss_code()
    }

    /// The metric's name: `"l2"`, `"ip"` or `"cosine"`.
    #[getter]
    fn metric(&self) -> &'static str {
        self.metric.name()
    }

    /// The device, as the `device` argument spells it (`"cpu"`, `"0"`, `"0,1"`, `"-1"`).
    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    /// Times the rows were loaded onto the engine (once per search that followed an add).
    #[getter]
    fn loads(&self, py: Python<'_>) -> PyResult<usize> {
        let inner = &self.inner;
        detached(py, "FlatIndex.loads", || Ok(inner.read().unwrap_or_else(|p| p.into_inner()).loads()))
    }
}
