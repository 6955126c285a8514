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
//!
//! Split by concern: `errors` (exception classes, guarded calls, Ctrl-C), `args` (argument
//! checks), `pack` (rows given as Python sequences), `knn` (`self_knn`), `index` (`FlatIndex`),
//! `dedup` (the threshold join and duplicate groups), `blocks` (the Ray primitives).

mod args;
mod blocks;
mod dedup;
mod errors;
mod index;
mod knn;
mod pack;

use errors::{detached, raise};
use faiss_nn::ErrorKind;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

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
    // The threshold join's default cap on pairs (the default memory budget's worth).
    m.add("DEFAULT_MAX_PAIRS", faiss_nn::range::default_max_pairs(faiss_nn::flat::plan::DEFAULT_CPU_BUDGET))?;
    m.add_function(wrap_pyfunction!(knn::self_knn, m)?)?;
    m.add_function(wrap_pyfunction!(knn::_last_input_address, m)?)?;
    m.add_function(wrap_pyfunction!(pack::_pack_rows, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_kind, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_inside, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_block_self_join, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_block_pair_join, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_merge_lists, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_block_search, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_check_precision, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_block_range_self, m)?)?;
    m.add_function(wrap_pyfunction!(blocks::_block_range_pair, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::range_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::dedup, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::_groups_from_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::_check_threshold, m)?)?;
    m.add_class::<index::PyFlatIndex>()?;
    Ok(())
}
