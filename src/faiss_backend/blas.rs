//! One BLAS thread while faiss runs. faiss parallelises its searches and k-means with OpenMP,
//! and calls BLAS (sgemm) from inside those parallel regions; a BLAS built with its own
//! thread pool (Debian's default OpenBLAS is the pthreads build) then starts its threads on top
//! of OpenMP's, and the two fight for the cores (most of the time goes to the kernel scheduler).
//! While a faiss index is built and searched, OpenBLAS is asked for one thread; its previous
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
}
