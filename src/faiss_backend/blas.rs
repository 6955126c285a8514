//! One BLAS thread while faiss runs, where the BLAS has its own thread pool. faiss parallelises
//! its searches and k-means with OpenMP, and calls BLAS (sgemm) from inside those parallel
//! regions; a BLAS built with its own thread pool (Debian's default OpenBLAS is the pthreads
//! build) then starts its threads on top of OpenMP's, and the two fight for the cores (most of
//! the time goes to the kernel scheduler).
//!
//! The builds made here avoid that where they can: where Debian's OpenMP OpenBLAS is installed,
//! the executables and the Python module load it (`build-support/openmp_blas.rs`), and it shares
//! faiss's OpenMP threads by itself: one thread inside a parallel region, all of them outside
//! one (k-means' large products). Otherwise (the pthreads build is what gets loaded, e.g. a
//! program of a user linking this crate, or `LD_LIBRARY_PATH` pointing at it), while a faiss
//! index is built and searched OpenBLAS is asked for one thread; its previous
//! setting is restored afterwards, so the caller's own BLAS use is unchanged. Only the pthreads
//! build is touched (`openblas_get_parallel() == 1`): in the OpenMP build BLAS shares OpenMP's
//! threads, and setting its count would also shrink faiss's own parallel regions. The symbols
//! are looked up at run time: with another BLAS this does nothing.

use std::ffi::c_int;
use std::sync::Mutex;

type SetThreads = unsafe extern "C" fn(c_int);
type GetThreads = unsafe extern "C" fn() -> c_int;

/// Nesting depth and the setting to restore, shared by concurrent faiss runs.
static STATE: Mutex<(usize, c_int)> = Mutex::new((0, 0));

/// `openblas_get_parallel()`'s answer for the pthreads build.
const PTHREADS_BUILD: c_int = 1;

/// OpenBLAS's thread-count setter and getter, where the linked BLAS is OpenBLAS's pthreads build.
fn symbols() -> Option<(SetThreads, GetThreads)> {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names; a non-null result is the
    // function OpenBLAS exports under that name, with these C signatures.
    unsafe {
        let set = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_set_num_threads".as_ptr());
        let get = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_num_threads".as_ptr());
        let parallel = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_parallel".as_ptr());
        if set.is_null() || get.is_null() || parallel.is_null() {
            return None;
        }
        let parallel = std::mem::transmute::<*mut libc::c_void, GetThreads>(parallel);
        if parallel() != PTHREADS_BUILD {
            return None;
        }
        Some((std::mem::transmute::<*mut libc::c_void, SetThreads>(set), std::mem::transmute::<*mut libc::c_void, GetThreads>(get)))
    }
}

/// While alive, OpenBLAS runs single-threaded.
pub(super) struct OneBlasThread(Option<SetThreads>);

impl OneBlasThread {
    pub(super) fn new() -> Self {
        let Some((set, get)) = symbols() else { return OneBlasThread(None) };
        let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 == 0 {
            // SAFETY: OpenBLAS's own setters, called with a valid thread count.
            st.1 = unsafe { get() };
            unsafe { set(1) };
        }
        st.0 += 1;
        OneBlasThread(Some(set))
    }
}

impl Drop for OneBlasThread {
    fn drop(&mut self) {
        let Some(set) = self.0 else { return };
        let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
        st.0 -= 1;
        if st.0 == 0 {
            // SAFETY: restores the count read in `new`.
            unsafe { set(st.1.max(1)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_inside_and_the_old_setting_after() {
        let Some((_, get)) = symbols() else { return };
        // SAFETY: OpenBLAS's getter.
        let before = unsafe { get() };
        {
            let _a = OneBlasThread::new();
            let _b = OneBlasThread::new();
            assert_eq!(unsafe { get() }, 1);
        }
        assert_eq!(unsafe { get() }, before);
    }

    #[test]
    fn the_openmp_openblas_is_loaded_where_installed() {
        // build.rs gives the test binaries a run path to Debian's OpenMP OpenBLAS when it is
        // installed (setup.sh installs it): faiss must then run on it, not the pthreads default.
        let dir = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3";
        if !cfg!(all(target_os = "linux", target_arch = "x86_64")) || !std::path::Path::new(dir).is_file() {
            return;
        }
        if std::env::var_os("FAISS_NN_SYSTEM_BLAS").is_some() || std::env::var_os("LD_LIBRARY_PATH").is_some_and(|p| !p.is_empty()) {
            return; // the user chose the BLAS
        }
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; the symbol is OpenBLAS's
        // `int openblas_get_parallel(void)`.
        let parallel = unsafe {
            let f = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_parallel".as_ptr());
            assert!(!f.is_null(), "OpenBLAS is not linked");
            std::mem::transmute::<*mut libc::c_void, GetThreads>(f)()
        };
        assert_eq!(parallel, 2, "the linked OpenBLAS is not the OpenMP build (openblas_get_parallel = {parallel})");
        assert!(symbols().is_none(), "the one-thread pin must stay off with an OpenMP BLAS");
    }
}
