//! The one place that calls faiss's C API directly: the `faiss` crate's factory only knows L2
//! and inner product, while faiss itself takes every `METRIC_*` integer.

use crate::error::{Error, Result};
use crate::metric::Metric;
use faiss::index::{FromInnerPtr, IndexImpl};
use std::ffi::{CStr, CString};

/// `faiss::index_factory(d, factory, metric)`, with faiss's own message on failure.
pub fn index_factory(d: usize, factory: &str, metric: Metric) -> Result<IndexImpl> {
    super::simd::require_cpu()?;
    let bad = |reason: String| Error::invalid("string_factory", format!("{factory:?}: {reason}"));
    if factory.trim().is_empty() {
        return Err(bad("empty".into()));
    }
    let desc = CString::new(factory).map_err(|_| bad("contains a NUL byte".into()))?;
    let d = i32::try_from(d).map_err(|_| Error::invalid("dimension", format!("{d} is beyond faiss's limit")))?;
    let mut ptr = std::ptr::null_mut();
    // SAFETY: `desc` is a valid C string for the call's duration and `ptr` a valid out-pointer.
    let code = unsafe { faiss_sys::faiss_index_factory(&mut ptr, d, desc.as_ptr(), metric.faiss_code()) };
    if code != 0 || ptr.is_null() {
        return Err(bad(format!("faiss cannot build it: {}", last_error())));
    }
    // SAFETY: faiss returned a fresh, owned index; IndexImpl frees it on drop.
    Ok(unsafe { IndexImpl::from_inner_ptr(ptr) })
}

/// faiss's message for the last failed call on this thread.
pub(super) fn last_error() -> String {
    // SAFETY: faiss returns NULL or a NUL-terminated string valid until its next call.
    unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            "no message".into()
        } else {
            CStr::from_ptr(p).to_string_lossy().trim().to_string()
        }
    }
}
