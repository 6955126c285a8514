//! Errors: every `faiss_nn::Error` becomes an exception of the class its kind names (the classes
//! live in `faiss_nn/_errors.py`), and every call into the library runs guarded (a panic becomes
//! `InternalError`), with the GIL released, and where long, interruptible by Ctrl-C.

use faiss_nn::ErrorKind;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

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
pub(crate) fn class_of(py: Python<'_>, kind: Option<ErrorKind>) -> PyResult<&Bound<'_, PyType>> {
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
pub(crate) fn raise(py: Python<'_>, kind: Option<ErrorKind>, message: String) -> PyErr {
    match class_of(py, kind) {
        Ok(ty) => PyErr::from_type(ty.clone(), (message,)),
        // The errors module could not be imported (a broken installation): say so, with the
        // message that was meant.
        Err(e) => PyErr::new::<pyo3::exceptions::PyImportError, _>(format!("faiss_nn: cannot import {ERRORS_MODULE} ({e}) while raising: {message}")),
    }
}

pub(crate) fn lib_err(py: Python<'_>, e: faiss_nn::Error) -> PyErr {
    raise(py, Some(e.kind()), e.to_string())
}

pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, Some(ErrorKind::BadInput), message.into())
}

/// `f` (a call into the library), a panic in it turned into `faiss_nn::Error::Internal`.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> faiss_nn::Result<T>) -> faiss_nn::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(faiss_nn::Error::from_panic(what, payload.as_ref())))
}

/// Runs `f` (a call into the library) with the GIL released; a panic becomes
/// `faiss_nn::Error::Internal`.
pub(crate) fn detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> faiss_nn::Result<T> + Send) -> PyResult<T> {
    py.detach(|| guarded(what, f)).map_err(|e| lib_err(py, e))
}

/// A search's progress that the Python caller can stop: set when a signal handler raises
/// (Ctrl-C's KeyboardInterrupt).
pub(crate) struct Interrupt(pub(crate) AtomicBool);

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
pub(crate) fn interruptible<T: Send>(
    py: Python<'_>,
    what: &str,
    products: usize,
    f: impl FnOnce(&dyn faiss_nn::Progress) -> faiss_nn::Result<T> + Send,
) -> PyResult<T> {
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
