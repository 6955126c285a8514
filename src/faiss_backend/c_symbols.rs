//! Thread-count functions of the C runtimes that faiss may have loaded (OpenMP, OpenBLAS),
//! looked up by name at run time: a runtime that is not loaded is simply not found, and the
//! guards that use them ([`super::omp`], [`super::blas`]) then do nothing.

use std::ffi::{c_int, CStr};

/// `void f(int)`: a thread-count setter.
pub(super) type SetThreads = unsafe extern "C" fn(c_int);
/// `int f(void)`: a thread-count (or build-kind) getter.
pub(super) type GetThreads = unsafe extern "C" fn() -> c_int;

/// The loaded function `name`, as a getter.
///
/// # Safety
/// Where a function of that name is loaded, its C signature must be `int name(void)`.
pub(super) unsafe fn getter(name: &CStr) -> Option<GetThreads> {
    let f = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
    (!f.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, GetThreads>(f))
}

/// The loaded setter `set` and getter `get`, where both are loaded.
///
/// # Safety
/// Where functions of those names are loaded, their C signatures must be `void set(int)` and
/// `int get(void)`.
pub(super) unsafe fn setter_and_getter(set: &CStr, get: &CStr) -> Option<(SetThreads, GetThreads)> {
    let s = libc::dlsym(libc::RTLD_DEFAULT, set.as_ptr());
    let g = getter(get)?;
    (!s.is_null()).then(|| (std::mem::transmute::<*mut libc::c_void, SetThreads>(s), g))
}
