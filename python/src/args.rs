//! Arguments as Python passes them, checked and converted with the library's own parsers and
//! messages; matrices borrowed from numpy and results handed back without a copy.

use crate::errors::{invalid, lib_err};
use faiss_nn::{Device, Metric, Precision, ShardMode};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList, PyString, PyTuple};

/// An integer argument (not a bool, which Python would otherwise accept as 0 / 1).
pub(crate) fn int_arg(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>) -> PyResult<i64> {
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

pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A positive integer argument that fits usize.
pub(crate) fn positive(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>, why: &str) -> PyResult<usize> {
    let i = int_arg(py, name, v)?;
    if i <= 0 {
        return Err(invalid(py, format!("invalid {name}: {i}: {why}")));
    }
    usize::try_from(i).map_err(|_| invalid(py, format!("invalid {name}: {i} does not fit this platform's sizes")))
}

pub(crate) fn opt_positive(py: Python<'_>, name: &str, v: Option<&Bound<'_, PyAny>>, why: &str) -> PyResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => positive(py, name, v, why).map(Some),
    }
}

/// `k` as the library's error would phrase it.
pub(crate) fn k_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<usize> {
    let k = int_arg(py, "k", v)?;
    if k <= 0 {
        return Err(invalid(py, format!("k = {k} is invalid: at least one neighbour must be asked for")));
    }
    usize::try_from(k).map_err(|_| invalid(py, format!("k = {k} is invalid: too large")))
}

/// `metric`: faiss's METRIC_* integer, or a name (`"l2"`, `"ip"`, `"cosine"`, `"l1"`, …).
pub(crate) fn metric_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Metric> {
    let r = if let Ok(s) = v.cast::<PyString>() {
        Metric::parse(&s.to_cow()?)
    } else if v.is_instance_of::<PyBool>() {
        return Err(invalid(py, format!("invalid metric: {}: expected \"l2\", \"ip\", \"cosine\" or a faiss METRIC_* integer, not a bool", v.repr()?)));
    } else if v.is_instance_of::<PyInt>() || v.hasattr("__index__")? {
        Metric::from_faiss(int_arg(py, "metric", v)?)
    } else {
        return Err(invalid(
            py,
            format!("invalid metric: {}: expected \"l2\", \"ip\", \"cosine\" or a faiss METRIC_* integer, got {}", v.repr()?, type_name(v)),
        ));
    };
    r.map_err(|e| lib_err(py, e))
}

/// A threshold or radius: a real number (not a bool, not NaN or infinite: the library names those).
pub(crate) fn threshold_arg(py: Python<'_>, name: &str, v: &Bound<'_, PyAny>) -> PyResult<f64> {
    if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyString>() {
        return Err(invalid(py, format!("invalid {name}: {}: expected a number", v.repr()?)));
    }
    v.extract::<f64>()
        .map_err(|_| invalid(py, format!("invalid {name}: {}: expected a number, got {}", v.repr().map(|r| r.to_string()).unwrap_or_default(), type_name(v))))
}

/// `device`: None (CPU), an id, a negative id (every GPU), a list of ids, or a string
/// (`"cpu"`, `"0"`, `"0,1"`, `"-1"`).
pub(crate) fn device_arg(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Device> {
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

pub(crate) fn precision_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<Precision> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow()?.parse::<Precision>().map_err(|e| lib_err(py, e)),
        Err(_) => Err(invalid(py, format!("invalid precision: {}: expected \"auto\", \"f32\", \"bf16\", \"int8\", \"tf32\" or \"f16\"", v.repr()?))),
    }
}

pub(crate) fn shard_mode_arg(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<ShardMode> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow()?.parse::<ShardMode>().map_err(|e| lib_err(py, e)),
        Err(_) => Err(invalid(py, format!("invalid shard_mode: {}: expected \"sharded\" or \"replicated\"", v.repr()?))),
    }
}

/// The matrix's buffer, borrowed (it must be C-contiguous: the Python layer makes it so).
pub(crate) fn matrix<'a>(py: Python<'_>, a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize, usize)> {
    let shape = a.shape();
    let (n, d) = (shape[0], shape[1]);
    let s =
        a.as_slice().map_err(|_| invalid(py, format!("{what}: the array must be C-contiguous (faiss_nn.self_knn converts it; the native module does not)")))?;
    Ok((s, n, d))
}

/// `n × k` numpy array owning `v` (no copy).
pub(crate) fn owned_2d<'py, T: numpy::Element>(py: Python<'py>, v: Vec<T>, n: usize, k: usize) -> PyResult<Bound<'py, PyArray2<T>>> {
    PyArray1::from_vec(py, v).reshape([n, k])
}
