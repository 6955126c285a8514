//! The CPU the bundled faiss was compiled for. By default (`.cargo/config.toml`) faiss is built
//! with its AVX2 code (`-mavx2 -mfma -mf16c -mpopcnt`), as the faiss-cpu wheels ship it for
//! x86-64. On a CPU without those instructions such code dies of SIGILL, and not only mid-search:
//! the compiler also uses AVX instructions in faiss's static initialisers, which run when the
//! program (or the Python module) is loaded, before `main`. So:
//! - `startup_check` runs as a load-time initialiser ordered before every C++ one (an
//!   `.init_array` entry with a priority); on a CPU without the instructions it writes one line
//!   naming them and the portable build to stderr and exits with status 1: a clear error at
//!   start, never SIGILL;
//! - every entry into faiss also asks [`require_cpu`] (an [`Error`], for any code path that
//!   reaches faiss without the initialiser, e.g. a build for another loader).
//!
//! A portable build (`CXXFLAGS_x86_64_unknown_linux_gnu=` set to nothing, and faiss compiled
//! again: see `.cargo/config.toml`) compiles faiss without them; then neither check requires
//! anything. In the Python module the load-time check runs at `import`, so on such a CPU the
//! import ends the interpreter with that message (there is no way to refuse only the faiss part
//! once faiss's own initialisers would fault).

use crate::error::{Error, Result};

/// The way out for a CPU without the instructions, in both checks' messages.
macro_rules! portable_build {
    () => {
        "rebuild with CXXFLAGS_x86_64_unknown_linux_gnu= set to nothing (see .cargo/config.toml) for a portable faiss"
    };
}

/// The instructions faiss was compiled to use, as `std::arch` names them (empty for a
/// portable build).
pub const COMPILED_FOR: &[&str] = if cfg!(faiss_nn_avx2) { &["avx2", "fma", "f16c", "popcnt"] } else { &[] };

/// `Ok` where this CPU runs the bundled faiss; otherwise an [`Error::Unavailable`] naming the
/// missing instructions and the portable build.
pub fn require_cpu() -> Result<()> {
    let missing: Vec<&str> = COMPILED_FOR.iter().copied().filter(|f| !has(f)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Unavailable {
        what: "the faiss backend".into(),
        reason: format!(
            concat!("this build's faiss uses {} instructions, which this CPU lacks ({}); ", portable_build!()),
            COMPILED_FOR.join("/"),
            missing.join(", ")
        ),
    })
}

/// Set once the load-time check ran (and passed): tests assert that it is wired in.
static CHECKED_AT_LOAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `startup_check` ran when this program or module was loaded.
pub fn checked_at_load() -> bool {
    CHECKED_AT_LOAD.load(std::sync::atomic::Ordering::Relaxed)
}

/// The load-time check (see the module doc). Uses no allocation and no AVX itself.
#[cfg_attr(not(all(faiss_nn_avx2, target_os = "linux", target_arch = "x86_64")), allow(dead_code))]
extern "C" fn startup_check() {
    let missing = COMPILED_FOR.iter().any(|f| !has(f));
    if missing {
        let msg: &[u8] = concat!(
            "faiss-nn: this build's bundled faiss needs an x86-64 CPU with AVX2, FMA, F16C and POPCNT, which this CPU lacks; ",
            portable_build!(),
            "\n"
        )
        .as_bytes();
        // SAFETY: writing a static buffer to fd 2 and ending the process; nothing else has run.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(1);
        }
    }
    CHECKED_AT_LOAD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The initialiser's entry: `.init_array.00101` sorts before the unprioritised `.init_array`
/// that holds the C++ static constructors (the linker orders prioritised entries first).
#[cfg(all(faiss_nn_avx2, target_os = "linux", target_arch = "x86_64"))]
#[used]
#[unsafe(link_section = ".init_array.00101")]
static STARTUP_CHECK: extern "C" fn() = startup_check;

fn has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "f16c" => std::arch::is_x86_feature_detected!("f16c"),
            "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_runs_the_bundled_faiss() {
        // The project's machines (and CI) have AVX2: the check must pass here, and name what a
        // CPU without it would miss.
        require_cpu().unwrap();
        if cfg!(all(faiss_nn_avx2, target_os = "linux", target_arch = "x86_64")) {
            assert!(checked_at_load(), "the load-time CPU check did not run");
        }
        for f in COMPILED_FOR {
            assert!(has(f), "{f}");
        }
        assert!(!has("no-such-instruction"));
    }
}
