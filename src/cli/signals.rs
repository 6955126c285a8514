//! Process-level care the binary takes around a run: the temporary output file (which exists
//! only while the output is written) is removed when the process is interrupted (SIGINT,
//! SIGTERM, SIGHUP, SIGQUIT), reaches a resource limit (SIGXCPU, SIGXFSZ), gets a signal whose
//! default is to end it (SIGUSR1/2, SIGALRM, SIGVTALRM) or is killed by a fault or abort inside a
//! native library (SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL), and `--quiet` mutes what faiss
//! prints straight to the standard error (its training warnings).

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// The temporary files to remove, as C strings owned by [`TempGuard`]s (null: a free slot). Two:
/// a dedup writes its table and its pair list, and renames both at the end.
static TEMP: [AtomicPtr<libc::c_char>; 2] = [AtomicPtr::new(std::ptr::null_mut()), AtomicPtr::new(std::ptr::null_mut())];

/// Every signal whose default action ends the process and that a handler may catch.
const SIGNALS: [libc::c_int; 15] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
];

/// Installs the handlers: from now on a signal removes the registered temporary file (if any)
/// before the process ends as the signal says. A signal the process inherited as ignored
/// (`nohup`, a background job of a script) stays ignored.
pub fn install() {
    for sig in SIGNALS {
        // SAFETY: sigaction with zeroed, then filled, structures; `on_signal` only calls
        // async-signal-safe functions (unlink, signal, raise).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 || old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // On the alternate stack where one is set up (Rust's, for stack overflows).
            new.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(sig, &new, std::ptr::null_mut());
        }
    }
}

/// While alive, a signal removes `path` (with the handlers of [`install`]).
pub struct TempGuard(*mut libc::c_char);

impl TempGuard {
    /// Registers `path` for removal by the handlers.
    /// Registers `path` for removal by the handlers (`None` when both slots are taken, or the
    /// path holds a NUL byte).
    pub fn register(path: &Path) -> Option<TempGuard> {
        use std::os::unix::ffi::OsStrExt;
        let raw = CString::new(path.as_os_str().as_bytes()).ok()?.into_raw();
        if TEMP.iter().any(|slot| slot.compare_exchange(std::ptr::null_mut(), raw, Ordering::SeqCst, Ordering::SeqCst).is_ok()) {
            return Some(TempGuard(raw));
        }
        // SAFETY: `raw` came from `into_raw` just above and was stored nowhere.
        drop(unsafe { CString::from_raw(raw) });
        None
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        // Only this guard's own path: a guard registered after it (a new temporary name) stays.
        for slot in &TEMP {
            let _ = slot.compare_exchange(self.0, std::ptr::null_mut(), Ordering::SeqCst, Ordering::SeqCst);
        }
        // SAFETY: the pointer came from `CString::into_raw` in `register`, and no handler can
        // read it any more (TEMP no longer holds it).
        drop(unsafe { CString::from_raw(self.0) });
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // A crash message from native code under --quiet went to /dev/null; what follows should not.
    unmute();
    // SAFETY: each `p` is null or a NUL-terminated path registered by `TempGuard::register`,
    // alive until its guard is dropped; unlink, signal and raise are async-signal-safe.
    unsafe {
        for slot in &TEMP {
            let p = slot.swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() {
                libc::unlink(p);
            }
        }
        // End the way the signal would have: default action, raised again.
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// The real standard error while [`Mute`] holds fd 2 (−1: not muted).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Gives fd 2 back its real destination (the panic hook calls this, so that an internal error
/// is printed even under `--quiet`).
pub fn unmute() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the descriptor Mute duplicated from 2.
        unsafe { libc::dup2(saved, 2) };
    }
}

/// While alive, the process's standard error goes to /dev/null (what native code writes there
/// directly, which Rust cannot intercept); dropping it restores the original.
pub struct Mute(libc::c_int);

impl Mute {
    /// Redirects file descriptor 2, or does nothing if that fails.
    pub fn stderr() -> Option<Mute> {
        // SAFETY: plain descriptor calls; each result is checked before use.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return None;
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null < 0 {
                libc::close(saved);
                return None;
            }
            libc::dup2(null, 2);
            libc::close(null);
            SAVED_STDERR.store(saved, Ordering::SeqCst);
            Some(Mute(saved))
        }
    }
}

impl Drop for Mute {
    fn drop(&mut self) {
        SAVED_STDERR.store(-1, Ordering::SeqCst);
        // SAFETY: `self.0` is the descriptor duplicated from 2 in `stderr`.
        unsafe {
            libc::dup2(self.0, 2);
            libc::close(self.0);
        }
    }
}
