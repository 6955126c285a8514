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

use super::c_symbols::{self, GetThreads, SetThreads};
use std::ffi::c_int;
use std::sync::Mutex;

/// Nesting depth and the setting to restore, shared by concurrent faiss runs.
static STATE: Mutex<(usize, c_int)> = Mutex::new((0, 0));

/// `openblas_get_parallel()`'s answer for the pthreads build.
const PTHREADS_BUILD: c_int = 1;

/// `openblas_get_parallel()` of the loaded OpenBLAS (0 sequential, 1 pthreads, 2 OpenMP), or
/// `None` where no OpenBLAS is loaded.
fn openblas_parallel() -> Option<c_int> {
    // SAFETY: OpenBLAS declares `int openblas_get_parallel(void)`; calling it reads a constant.
    unsafe { c_symbols::getter(c"openblas_get_parallel").map(|f| f()) }
}

/// OpenBLAS's thread-count setter and getter, where the linked BLAS is OpenBLAS's pthreads build.
fn symbols() -> Option<(SetThreads, GetThreads)> {
    if openblas_parallel()? != PTHREADS_BUILD {
        return None;
    }
    // SAFETY: OpenBLAS declares `void openblas_set_num_threads(int)` and
    // `int openblas_get_num_threads(void)`.
    unsafe { c_symbols::setter_and_getter(c"openblas_set_num_threads", c"openblas_get_num_threads") }
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

    // The unit-test binary contains no faiss code, so nothing in it pulls BLAS in: one BLAS
    // routine is called here, so that it loads the BLAS the crate's programs load (through
    // the same run path).
    #[link(name = "blas")]
    extern "C" {
        fn sdot_(n: *const c_int, x: *const f32, incx: *const c_int, y: *const f32, incy: *const c_int) -> f32;
    }

    fn load_blas() {
        let (one, two, three): (c_int, f32, f32) = (1, 2.0, 3.0);
        // SAFETY: the Fortran BLAS `sdot` on one element of two valid buffers.
        let dot = unsafe { sdot_(&one, &two, &one, &three, &one) };
        assert_eq!(dot, 6.0, "BLAS sdot");
    }

    /// Set for the child process of `the_pin_is_tested_on_the_pthreads_build`: the pthreads
    /// OpenBLAS must then be the one loaded.
    const EXPECT_PTHREADS: &str = "FAISS_NN_TEST_EXPECT_PTHREADS_BLAS";
    /// Debian's multiarch library directory, as `build-support/openmp_blas.rs` derives it.
    const LIB_DIR: Option<&str> = if cfg!(not(target_os = "linux")) {
        None
    } else if cfg!(target_arch = "x86_64") {
        Some("/usr/lib/x86_64-linux-gnu")
    } else if cfg!(target_arch = "aarch64") {
        Some("/usr/lib/aarch64-linux-gnu")
    } else {
        None
    };

    /// The directory of one of Debian's two OpenBLAS builds (`openblas-openmp`,
    /// `openblas-pthread`), where it is installed.
    fn installed(build: &str) -> Option<std::path::PathBuf> {
        let dir = std::path::Path::new(LIB_DIR?).join(build);
        dir.join("libblas.so.3").is_file().then_some(dir)
    }

    /// Whether `LD_LIBRARY_PATH` names a directory with a `libblas.so.3` (it then wins over the
    /// run path). Cargo itself sets the variable for test binaries, to its own directories.
    fn blas_from_library_path() -> bool {
        std::env::var_os("LD_LIBRARY_PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("libblas.so.3").exists()))
    }

    #[test]
    fn one_thread_inside_and_the_old_setting_after() {
        load_blas();
        let Some((_, get)) = symbols() else {
            assert!(std::env::var_os(EXPECT_PTHREADS).is_none(), "the pthreads OpenBLAS was expected to be loaded");
            return;
        };
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
    fn the_pin_is_tested_on_the_pthreads_build() {
        // Where the OpenMP build is loaded the pin is off and the test above checks nothing: it
        // runs again in a child process that loads the pthreads build (`LD_LIBRARY_PATH` first).
        let Some(pthread_dir) = installed("openblas-pthread") else { return };
        if std::env::var_os(EXPECT_PTHREADS).is_some() {
            return;
        }
        let mut path = std::ffi::OsString::from(pthread_dir);
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            path.push(":");
            path.push(old);
        }
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "faiss_backend::blas::tests::one_thread_inside_and_the_old_setting_after", "--test-threads=1"])
            .env("LD_LIBRARY_PATH", path)
            .env(EXPECT_PTHREADS, "1")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn the_openmp_openblas_is_loaded_where_installed() {
        // build.rs gives the test binaries a run path to Debian's OpenMP OpenBLAS when it is
        // installed (setup.sh installs it): faiss must then run on it, not the pthreads default.
        load_blas();
        let chosen = option_env!("FAISS_NN_SYSTEM_BLAS").is_some_and(|v| !v.is_empty()) || blas_from_library_path();
        if installed("openblas-openmp").is_none() || chosen {
            return; // not installed, or the user chose the BLAS
        }
        let parallel = openblas_parallel().expect("OpenBLAS is not linked");
        assert_eq!(parallel, 2, "the linked OpenBLAS is not the OpenMP build (openblas_get_parallel = {parallel})");
        assert!(symbols().is_none(), "the one-thread pin must stay off with an OpenMP BLAS");
    }
}
