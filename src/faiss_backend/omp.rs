//! One OpenMP thread while faiss builds an HNSW graph. faiss inserts the rows into the graph on
//! every OpenMP thread at once, and which links a row gets depends on which rows its threads
//! inserted before it: the graph, and so every approximate list searched on it, changes from run
//! to run (on 5,000 MiniLM rows, HNSW16's lists differed in about a fifth of the rows between
//! runs, also with `threads = 1`, which sizes our own pool, not faiss's). Built on one thread the
//! graph is the same every time; the search stays parallel (each query walks the graph alone).
//!
//! `omp_set_num_threads` sets the calling thread's own count, so concurrent faiss runs on other
//! threads keep theirs. The symbols are looked up at run time: without an OpenMP runtime faiss
//! runs serially anyway and this does nothing.

use super::c_symbols::{self, SetThreads};
use std::ffi::c_int;

/// While alive, OpenMP regions started by this thread run on one thread.
pub(super) struct OneOmpThread(Option<(SetThreads, c_int)>);

impl OneOmpThread {
    pub(super) fn new() -> Self {
        // SAFETY: OpenMP declares `void omp_set_num_threads(int)` and `int omp_get_max_threads(void)`.
        let found = unsafe { c_symbols::setter_and_getter(c"omp_set_num_threads", c"omp_get_max_threads") };
        OneOmpThread(found.map(|(set, get)| {
            // SAFETY: OpenMP's own getter and setter, called on this thread.
            let before = unsafe { get() };
            unsafe { set(1) };
            (set, before)
        }))
    }
}

impl Drop for OneOmpThread {
    fn drop(&mut self) {
        if let Some((set, before)) = self.0 {
            // SAFETY: restores this thread's count read in `new`.
            unsafe { set(before.max(1)) };
        }
    }
}
