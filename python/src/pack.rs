//! Rows given as Python sequences (lists, tuples, 1-D arrays), packed into one float32 matrix in
//! native code.

use crate::args::{owned_2d, type_name};
use crate::errors::{invalid, lib_err};
use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyList, PySequence, PyString, PyTuple};

/// Packs a sequence of rows (lists or tuples of numbers, or 1-D numeric arrays) into one
/// C-contiguous float32 `n × d` array, in one pass with no Python-level loop. Refuses, naming
/// the row (and component): a ragged row, a row that is not a sequence, a component that is
/// not a number (strings and None included; numbers written as strings are not parsed), and a
/// finite value too large for float32. NaN and infinities pass through: the search names them.
#[pyfunction]
pub(crate) fn _pack_rows<'py>(py: Python<'py>, rows: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyArray2<f32>>> {
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
pub(crate) fn narrow(py: Python<'_>, v: f64, i: usize, j: usize, what: &str) -> PyResult<f32> {
    let f = v as f32;
    if f.is_infinite() && v.is_finite() {
        return Err(invalid(py, format!("{what}: row {i}, component {j} is {v:e}, which is too large for float32")));
    }
    Ok(f)
}

pub(crate) fn short_repr(v: &Bound<'_, PyAny>) -> String {
    let r = v.repr().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
    if r.chars().count() > 60 {
        format!("{}…", r.chars().take(60).collect::<String>())
    } else {
        r
    }
}
