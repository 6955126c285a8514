//! The native half of the `faiss_nn` Python package (`faiss_nn._faiss_nn`).
//!
//! It takes C-contiguous float32 numpy matrices (the pure-Python half, `faiss_nn/__init__.py`,
//! converts everything else), borrows their buffers without a copy, releases the GIL for the
//! search, and hands the result back as numpy arrays that own the Rust vectors (no copy either).
//!
//! Every `faiss_nn::Error` becomes an exception of the class its [`ErrorKind`] names (the classes
//! live in `faiss_nn/_errors.py`) with the error's own message. Every call into the library runs
//! under `catch_unwind`: a panic, which would be a bug, surfaces as `InternalError`, never as
//! pyo3's `PanicException`.

use faiss_nn::{Device, ErrorKind, FaissNearestNeighbour, Metric, Precision, ShardMode};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PySequence, PyString, PyTuple, PyType};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;

// ---------------------------------------------------------------------------------------------
// Errors

static FAISS_NN_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UNSUPPORTED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DEVICE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OUT_OF_MEMORY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BACKEND: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IO: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INTERNAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

const ERRORS_MODULE: &str = "faiss_nn._errors";

/// The exception class for a kind of failure, as a Python type.
fn class_of(py: Python<'_>, kind: Option<ErrorKind>) -> PyResult<&Bound<'_, PyType>> {
    let (cell, name) = match kind {
        Some(ErrorKind::BadInput) => (&INVALID_INPUT, "InvalidInputError"),
        Some(ErrorKind::Unsupported) => (&UNSUPPORTED, "UnsupportedError"),
        Some(ErrorKind::Device) => (&DEVICE, "DeviceError"),
        Some(ErrorKind::OutOfMemory) => (&OUT_OF_MEMORY, "OutOfMemoryError"),
        Some(ErrorKind::Backend) => (&BACKEND, "BackendError"),
        Some(ErrorKind::Io) => (&IO, "IoError"),
        Some(ErrorKind::Internal) => (&INTERNAL, "InternalError"),
        // A kind added to the library after this binding: the package's base class.
        Some(_) | None => (&FAISS_NN_ERROR, "FaissNNError"),
    };
    cell.import(py, ERRORS_MODULE, name)
}

/// An exception of the class `kind` maps to, carrying `message`.
fn raise(py: Python<'_>, kind: Option<ErrorKind>, message: String) -> PyErr {
    match class_of(py, kind) {
        Ok(ty) => PyErr::from_type(ty.clone(), (message,)),
        // The errors module could not be imported (a broken installation): say so, with the
        // message that was meant.
        Err(e) => PyErr::new::<pyo3::exceptions::PyImportError, _>(format!("faiss_nn: cannot import {ERRORS_MODULE} ({e}) while raising: {message}")),
    }
}

fn lib_err(py: Python<'_>, e: faiss_nn::Error) -> PyErr {
    raise(py, Some(e.kind()), e.to_string())
}

fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, Some(ErrorKind::BadInput), message.into())
}

/// `f` (a call into the library), a panic in it turned into `faiss_nn::Error::Internal`.
fn guarded<T>(what: &str, f: impl FnOnce() -> faiss_nn::Result<T>) -> faiss_nn::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(faiss_nn::Error::from_panic(what, payload.as_ref())))
}

/// Runs `f` (a call into the library) with the GIL released; a panic becomes
/// `faiss_nn::Error::Internal`.
fn detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> faiss_nn::Result<T> + Send) -> PyResult<T> {
    py.detach(|| guarded(what, f)).map_err(|e| lib_err(py, e))
}

/// A search's progress that the Python caller can stop: set when a signal handler raises
/// (Ctrl-C's KeyboardInterrupt).
struct Interrupt(AtomicBool);

impl faiss_nn::Progress for Interrupt {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A search of fewer products (query rows × rows × dimensions) than this takes well under a
/// second: it runs as [`detached`], without the extra thread a Ctrl-C check needs.
const INTERRUPTIBLE_PRODUCTS: usize = 1 << 30;

/// [`detached`] for a search of `products` products that a Ctrl-C should stop: `f` runs on a
/// worker thread while this thread waits without the GIL, taking it back every 50 ms to run
/// Python's signal handlers. When one raises, the search is asked to stop (it stops between
/// units of its work; a GPU search or a faiss training runs to its end), is waited for, and the
/// handler's exception (KeyboardInterrupt) is raised instead of a result.
fn interruptible<T: Send>(py: Python<'_>, what: &str, products: usize, f: impl FnOnce(&dyn faiss_nn::Progress) -> faiss_nn::Result<T> + Send) -> PyResult<T> {
    if products < INTERRUPTIBLE_PRODUCTS {
        return detached(py, what, || f(&faiss_nn::NoProgress));
    }
    let stop = Interrupt(AtomicBool::new(false));
    let stop_ref = &stop;
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let worker = scope.spawn(move || {
                let r = guarded(what, || f(stop_ref));
                let _ = done.send(());
                r
            });
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(std::time::Duration::from_millis(50)) {
                if raised.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        stop.0.store(true, Ordering::Relaxed);
                        raised = Some(e);
                    }
                }
            }
            worker.join().unwrap_or_else(|payload| Err(faiss_nn::Error::from_panic(what, payload.as_ref())))
        })
    });
    match raised {
        Some(e) => Err(e),
        None => result.map_err(|e| lib_err(py, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments

/// An integer argument (not a bool, which Python would otherwise accept as 0 / 1).
fn int_arg(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>) -> PyResult<i64> {
    if v.is_instance_of::<PyBool>() {
        return Err(invalid(py, format!("invalid {name}: {}: expected an integer, not a bool", v.repr()?)));
    }
    // numpy integers and other objects with __index__ are integers too.
    let Ok(index) = v.call_method0("__index__") else {
        return Err(invalid(py, format!("invalid {name}: {}: expected an integer, got {}", v.repr()?, type_name(v))));
    };
    // An integer beyond 64 bits is out of range, not of the wrong type.
    match index.extract::<i64>() {
        Ok(i) => Ok(i),
        Err(_) => Err(invalid(py, format!("invalid {name}: {}: out of the 64-bit integer range", v.repr()?))),
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A positive integer argument that fits usize.
fn positive(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>, why: &str) -> PyResult<usize> {
    let i = int_arg(py, name, v)?;
    if i <= 0 {
        return Err(invalid(py, format!("invalid {name}: {i}: {why}")));
    }
    usize::try_from(i).map_err(|_| invalid(py, format!("invalid {name}: {i} does not fit this platform's sizes")))
}

fn opt_positive(py: Python<'_>, name: &str, v: Option<&Bound<'_, PyAny>>, why: &str) -> PyResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => positive(py, name, v, why).map(Some),
    }
}

/// `k` as the library's error would phrase it.
fn k_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<usize> {
    let k = int_arg(py, "k", v)?;
    if k <= 0 {
        return Err(invalid(py, format!("k = {k} is invalid: at least one neighbour must be asked for")));
    }
    usize::try_from(k).map_err(|_| invalid(py, format!("k = {k} is invalid: too large")))
}

/// `metric`: faiss's METRIC_* integer, or a name (`"l2"`, `"ip"`, `"l1"`, `"linf"`).
fn metric_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Metric> {
    let r = if let Ok(s) = v.cast::<PyString>() {
        Metric::parse(&s.to_cow()?)
    } else if v.is_instance_of::<PyBool>() {
        return Err(invalid(py, format!("invalid metric: {}: expected \"l2\", \"ip\" or a faiss METRIC_* integer, not a bool", v.repr()?)));
    } else if v.is_instance_of::<PyInt>() || v.hasattr("__index__")? {
        Metric::from_faiss(int_arg(py, "metric", v)?)
    } else {
        return Err(invalid(py, format!("invalid metric: {}: expected \"l2\", \"ip\" or a faiss METRIC_* integer, got {}", v.repr()?, type_name(v))));
    };
    r.map_err(|e| lib_err(py, e))
}

/// `device`: None (CPU), an id, a negative id (every GPU), a list of ids, or a string
/// (`"cpu"`, `"0"`, `"0,1"`, `"-1"`).
fn device_arg(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Device> {
    let v = match v {
        None => return Ok(Device::Cpu),
        Some(v) if v.is_none() => return Ok(Device::Cpu),
        Some(v) => v,
    };
    let expected = "expected None (CPU), a CUDA device id, a list of ids, or a negative id for every GPU";
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_cow()?.parse::<Device>().map_err(|e| lib_err(py, e));
    }
    if v.is_instance_of::<PyBool>() {
        return Err(invalid(py, format!("invalid device: {}: {expected}, not a bool", v.repr()?)));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut ids = Vec::new();
        for (i, item) in v.try_iter()?.enumerate() {
            let item = item?;
            let id = int_arg(py, &format!("device (item {i})"), &item)?;
            if id < 0 {
                return Err(invalid(py, format!("invalid device: item {i} is {id}; a negative id (every GPU) cannot appear in a list")));
            }
            ids.push(id as usize);
        }
        if ids.is_empty() {
            return Err(invalid(py, format!("invalid device: an empty list; {expected}")));
        }
        return Ok(Device::Cuda(ids));
    }
    if v.hasattr("__index__")? {
        return Ok(Device::from_id(int_arg(py, "device", v)?));
    }
    Err(invalid(py, format!("invalid device: {}: {expected}, got {}", v.repr()?, type_name(v))))
}

fn precision_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Precision> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow()?.parse::<Precision>().map_err(|e| lib_err(py, e)),
        Err(_) => Err(invalid(py, format!("invalid precision: {}: expected \"f32\", \"tf32\", \"f16\" or \"bf16\"", v.repr()?))),
    }
}

fn shard_mode_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<ShardMode> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow()?.parse::<ShardMode>().map_err(|e| lib_err(py, e)),
        Err(_) => Err(invalid(py, format!("invalid shard_mode: {}: expected \"sharded\" or \"replicated\"", v.repr()?))),
    }
}

/// The matrix's buffer, borrowed (it must be C-contiguous: the Python layer makes it so).
fn matrix<'a>(py: Python<'_>, a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize, usize)> {
    let shape = a.shape();
    let (n, d) = (shape[0], shape[1]);
    let s =
        a.as_slice().map_err(|_| invalid(py, format!("{what}: the array must be C-contiguous (faiss_nn.self_knn converts it; the native module does not)")))?;
    Ok((s, n, d))
}

/// `n × k` numpy array owning `v` (no copy).
fn owned_2d<'py, T: numpy::Element>(py: Python<'py>, v: Vec<T>, n: usize, k: usize) -> PyResult<Bound<'py, PyArray2<T>>> {
    PyArray1::from_vec(py, v).reshape([n, k])
}

// ---------------------------------------------------------------------------------------------
// Rows given as Python sequences

/// Packs a sequence of rows (lists or tuples of numbers, or 1-D numeric arrays) into one
/// C-contiguous float32 `n × d` array, in one pass with no Python-level loop. Refuses, naming
/// the row (and component): a ragged row, a row that is not a sequence, a component that is
/// not a number (strings and None included; numbers written as strings are not parsed), and a
/// finite value too large for float32. NaN and infinities pass through: the search names them.
#[pyfunction]
fn _pack_rows<'py>(py: Python<'py>, rows: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let seq = rows.cast::<PySequence>().map_err(|_| invalid(py, format!("{what}: expected a 2-D array or a sequence of rows, got {}", type_name(rows))))?;
    let n = seq.len()?;
    if n == 0 {
        return Err(lib_err(py, faiss_nn::Error::Empty { what: what.into(), detail: "no rows".into() }));
    }
    let mut out: Vec<f32> = Vec::new();
    let mut d = 0usize;
    let numpy = py.import("numpy")?;
    for i in 0..n {
        let row = seq.get_item(i)?;
        let start = out.len();
        if let Ok(list) = row.cast::<PyList>() {
            push_items(py, &mut out, list.iter(), i, what)?;
        } else if let Ok(tuple) = row.cast::<PyTuple>() {
            push_items(py, &mut out, tuple.iter(), i, what)?;
        } else if row.is_none() || row.is_instance_of::<PyString>() || row.is_instance_of::<PyBytes>() || !row.hasattr("__len__")? {
            return Err(invalid(py, format!("{what}: row {i} is {} ({}), expected a sequence of numbers", short_repr(&row), type_name(&row))));
        } else {
            // A numpy row (or another array-like): numeric dtypes only, 1-D.
            let arr = numpy.call_method1("asarray", (&row,))?;
            let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
            let ndim: usize = arr.getattr("ndim")?.extract()?;
            if !matches!(kind.as_str(), "f" | "i" | "u") || ndim != 1 {
                return Err(invalid(
                    py,
                    format!("{what}: row {i} is a {ndim}-D array of dtype {}, expected a 1-D array of numbers", arr.getattr("dtype")?.str()?),
                ));
            }
            let arr = numpy.call_method1("ascontiguousarray", (arr, numpy.getattr("float64")?))?;
            let arr: PyReadonlyArray1<'_, f64> = arr.extract()?;
            for (j, &v) in arr.as_slice().map_err(|_| invalid(py, format!("{what}: row {i}: not contiguous")))?.iter().enumerate() {
                out.push(narrow(py, v, i, j, what)?);
            }
        }
        let len = out.len() - start;
        if i == 0 {
            d = len;
            if d == 0 {
                return Err(lib_err(py, faiss_nn::Error::Empty { what: what.into(), detail: "row 0 has no values".into() }));
            }
            out.reserve(d * (n - 1));
        } else if len != d {
            return Err(lib_err(py, faiss_nn::Error::Ragged { what: what.into(), row: i, len, expected: d }));
        }
    }
    owned_2d(py, out, n, d)
}

fn push_items<'py>(py: Python<'py>, out: &mut Vec<f32>, items: impl Iterator<Item = Bound<'py, PyAny>>, i: usize, what: &str) -> PyResult<()> {
    for (j, item) in items.enumerate() {
        // Exact floats first (the common case), then ints and other numbers (numpy scalars):
        // anything float() accepts except strings, bytes and None.
        let v = match item.cast_exact::<PyFloat>() {
            Ok(f) => f.value(),
            Err(_) => {
                if item.is_none() || item.is_instance_of::<PyString>() || item.is_instance_of::<PyBytes>() {
                    return Err(not_a_number(py, &item, i, j, what));
                }
                item.extract::<f64>().map_err(|_| not_a_number(py, &item, i, j, what))?
            }
        };
        out.push(narrow(py, v, i, j, what)?);
    }
    Ok(())
}

fn not_a_number(py: Python<'_>, item: &Bound<'_, PyAny>, i: usize, j: usize, what: &str) -> PyErr {
    invalid(py, format!("{what}: row {i}, component {j} is {} ({}), expected a number", short_repr(item), type_name(item)))
}

/// f64 → f32, refusing a finite value that float32 cannot hold.
fn narrow(py: Python<'_>, v: f64, i: usize, j: usize, what: &str) -> PyResult<f32> {
    let f = v as f32;
    if f.is_infinite() && v.is_finite() {
        return Err(invalid(py, format!("{what}: row {i}, component {j} is {v:e}, which is too large for float32")));
    }
    Ok(f)
}

fn short_repr(v: &Bound<'_, PyAny>) -> String {
    let r = v.repr().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
    if r.chars().count() > 60 {
        format!("{}…", r.chars().take(60).collect::<String>())
    } else {
        r
    }
}

// ---------------------------------------------------------------------------------------------
// self_knn

/// Address of the buffer the most recent `self_knn` searched (tests check it is the caller's).
static LAST_INPUT: AtomicUsize = AtomicUsize::new(0);

/// Every row's k nearest other rows: `(indices int64[n, k], scores float32[n, k])`.
#[pyfunction]
#[pyo3(signature = (embeddings, k, metric, device, string_factory, search_batch_size, precision, exclude_self, threads, memory_budget, train_size, shard_mode, search_params=None))]
#[allow(clippy::too_many_arguments)]
fn self_knn<'py>(
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
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
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
        .metric_type(metric.faiss_code() as i64)
        .device(device)
        .string_factory(string_factory.as_deref())
        .search_params(search_params.as_deref())
        .search_batch_size(batch)
        .precision(precision)
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
fn _last_input_address() -> usize {
    LAST_INPUT.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// FlatIndex

/// Exact L2 / inner-product index with faiss's `IndexFlat` conventions.
#[pyclass(name = "FlatIndex", module = "faiss_nn._faiss_nn", frozen)]
struct PyFlatIndex {
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
    #[pyo3(signature = (d, metric, device, threads, memory_budget, precision))]
    fn new(
        py: Python<'_>,
        d: &Bound<'_, PyAny>,
        metric: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
        threads: Option<&Bound<'_, PyAny>>,
        memory_budget: Option<&Bound<'_, PyAny>>,
        precision: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let d = positive(py, "dimension", d, "vectors need at least one component")?;
        let metric = metric_arg(py, metric)?;
        let device = device_arg(py, device)?;
        let mut options = faiss_nn::EngineOptions { precision: precision_arg(py, precision)?, ..Default::default() };
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
    fn search<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        k: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
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

    /// faiss's METRIC_* integer (1 = L2, 0 = inner product).
    #[getter]
    fn metric_type(&self) -> u32 {
        self.metric.faiss_code()
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

// ---------------------------------------------------------------------------------------------
// Block primitives of the distributed self-join (faiss_nn.ray)
//
// Rows are split into blocks with global row numbers; a block's self-join and each unordered
// block pair's join give every row exact candidates (keys: L2 distances, or negated inner
// products, so that smaller is better for both), and merging them per row gives exactly the
// single-process result: scores are exact, ties go to the lower global index.

fn flat_metric(py: Python<'_>, metric: &Bound<'_, PyAny>) -> PyResult<faiss_nn::FlatMetric> {
    let m = metric_arg(py, metric)?;
    m.flat().ok_or_else(|| raise(py, Some(ErrorKind::Unsupported), format!("the distributed self-join runs flat L2 / inner-product search only, not {m:?}")))
}

fn block_engine(py: Python<'_>, device: Option<&Bound<'_, PyAny>>, threads: Option<&Bound<'_, PyAny>>) -> PyResult<faiss_nn::Engine> {
    let device = device_arg(py, device)?;
    let options = faiss_nn::EngineOptions { threads: opt_positive(py, "threads", threads, "at least one worker thread is needed")?, ..Default::default() };
    detached(py, "block engine", move || faiss_nn::Engine::open(&device, options))
}

fn block_id0(py: Python<'_>, id0: i64, n: usize, what: &str) -> PyResult<i64> {
    if id0 < 0 || id0.checked_add(n as i64).is_none() {
        return Err(invalid(py, format!("{what}: first global row {id0} is invalid")));
    }
    Ok(id0)
}

type Lists<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

fn lists_out<'py>(py: Python<'py>, l: faiss_nn::topk::TopKLists) -> PyResult<Lists<'py>> {
    let (n, k) = (l.n(), l.k());
    Ok((owned_2d(py, l.ids, n, k)?, owned_2d(py, l.keys, n, k)?))
}

/// Every row's `k` best other rows of block `x` (global rows `id0 ..`): `(ids, keys)`.
#[pyfunction]
#[pyo3(signature = (x, id0, k, metric, device=None, threads=None))]
fn _block_self_join<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    id0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Lists<'py>> {
    let k = k_arg(py, k)?;
    let metric = flat_metric(py, metric)?;
    let engine = block_engine(py, device, threads)?;
    let (data, n, d) = matrix(py, &x, "block")?;
    let id0 = block_id0(py, id0, n, "block")?;
    let l = detached(py, "block self-join", || engine.load_shard(data, d, id0, metric)?.self_join(k, &faiss_nn::NoProgress))?;
    lists_out(py, l)
}

/// The arguments every two-block primitive shares, checked: `k`, the metric, the engine, and
/// both blocks (same dimension, valid first global rows).
struct TwoBlocks<'a> {
    k: usize,
    metric: faiss_nn::FlatMetric,
    engine: faiss_nn::Engine,
    d: usize,
    a: (&'a [f32], i64),
    b: (&'a [f32], i64),
}

#[allow(clippy::too_many_arguments)]
fn two_blocks<'a>(
    py: Python<'_>,
    (a, a0, a_name): (&'a PyReadonlyArray2<'_, f32>, i64, &str),
    (b, b0, b_name): (&'a PyReadonlyArray2<'_, f32>, i64, &str),
    k: &Bound<'_, PyAny>,
    metric: &Bound<'_, PyAny>,
    device: Option<&Bound<'_, PyAny>>,
    threads: Option<&Bound<'_, PyAny>>,
) -> PyResult<TwoBlocks<'a>> {
    let k = k_arg(py, k)?;
    let metric = flat_metric(py, metric)?;
    let engine = block_engine(py, device, threads)?;
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
#[pyo3(signature = (a, a0, b, b0, k, metric, device=None, threads=None))]
#[allow(clippy::too_many_arguments)]
fn _block_pair_join<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, f32>,
    a0: i64,
    b: PyReadonlyArray2<'py, f32>,
    b0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
    let t = two_blocks(py, (&a, a0, "block a"), (&b, b0, "block b"), k, metric, device, threads)?;
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
#[pyo3(signature = (q, q0, x, x0, k, metric, device=None, threads=None))]
#[allow(clippy::too_many_arguments)]
fn _block_search<'py>(
    py: Python<'py>,
    q: PyReadonlyArray2<'py, f32>,
    q0: i64,
    x: PyReadonlyArray2<'py, f32>,
    x0: i64,
    k: &Bound<'py, PyAny>,
    metric: &Bound<'py, PyAny>,
    device: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Lists<'py>> {
    let t = two_blocks(py, (&q, q0, "query block"), (&x, x0, "block"), k, metric, device, threads)?;
    let l = detached(py, "block search", || t.engine.load_shard(t.b.0, t.d, t.b.1, t.metric)?.search(t.a.0, Some(t.a.1), t.k, &faiss_nn::NoProgress))?;
    lists_out(py, l)
}

/// Merges candidate lists of the same rows (each `(ids, keys)` sorted best first, ids distinct
/// across parts, −1 marking an empty slot) into the best `k` per row, ties to the lower id.
#[pyfunction]
fn _merge_lists<'py>(py: Python<'py>, parts: Vec<(PyReadonlyArray2<'py, i64>, PyReadonlyArray2<'py, f32>)>, k: &Bound<'py, PyAny>) -> PyResult<Lists<'py>> {
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

// ---------------------------------------------------------------------------------------------
// Module

#[pyfunction]
fn _raise_kind(py: Python<'_>, kind: &str, message: String) -> PyResult<()> {
    // For the tests of the error mapping: raise what a library error of this kind raises.
    let kind = match kind {
        "BadInput" => ErrorKind::BadInput,
        "Unsupported" => ErrorKind::Unsupported,
        "Device" => ErrorKind::Device,
        "OutOfMemory" => ErrorKind::OutOfMemory,
        "Backend" => ErrorKind::Backend,
        "Io" => ErrorKind::Io,
        "Internal" => ErrorKind::Internal,
        other => return Err(PyTypeError::new_err(format!("unknown error kind {other:?}"))),
    };
    Err(raise(py, Some(kind), message))
}

#[pyfunction]
fn _panic_inside(py: Python<'_>) -> PyResult<()> {
    // For the test that a panic inside the library surfaces as InternalError.
    detached(py, "the panic test", || -> faiss_nn::Result<()> { panic!("deliberate panic for the test") })
}

#[pymodule]
fn _faiss_nn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(self_knn, m)?)?;
    m.add_function(wrap_pyfunction!(_last_input_address, m)?)?;
    m.add_function(wrap_pyfunction!(_pack_rows, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_kind, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_inside, m)?)?;
    m.add_function(wrap_pyfunction!(_block_self_join, m)?)?;
    m.add_function(wrap_pyfunction!(_block_pair_join, m)?)?;
    m.add_function(wrap_pyfunction!(_merge_lists, m)?)?;
    m.add_function(wrap_pyfunction!(_block_search, m)?)?;
    m.add_class::<PyFlatIndex>()?;
    Ok(())
}
