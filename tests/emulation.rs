//! The kernels' own CUDA source run on the CPU (kernels/emu/simt.h emulates threads, warps,
//! shared memory and the mma fragments), against references written independently of the
//! kernels. Needs only g++, not CUDA, so it runs in every build; without g++ it is skipped with
//! a message, or fails where `FAISS_NN_REQUIRE_KERNELS` is set (as in CI).

use crate::common::data::repo_root;
use std::process::Command;

/// Builds `kernels/emu/<name>.cpp` with g++ and runs it; it prints "N passed, 0 failed". At
/// least `min_cases` must have run, so a program that silently checks nothing fails.
fn run_emulation(name: &str, min_cases: usize) {
    let root = repo_root();
    let out = tempfile::tempdir().expect("a temporary directory");
    let exe = out.path().join(name);
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let build = Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-fno-strict-aliasing", "-pthread", "-I"])
        .arg(root.join("kernels"))
        .arg(root.join(format!("kernels/emu/{name}.cpp")))
        .arg("-o")
        .arg(&exe)
        .output();
    let build = match build {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("{name}: SKIPPED, cannot run {cxx}: {e}");
            assert!(std::env::var_os("FAISS_NN_REQUIRE_KERNELS").is_none(), "{msg} (FAISS_NN_REQUIRE_KERNELS is set)");
            eprintln!("{msg}");
            return;
        }
    };
    assert!(build.status.success(), "compiling {name}.cpp failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let run = Command::new(&exe).output().unwrap_or_else(|e| panic!("run {name}: {e}"));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{name} failed:\n{text}{}", String::from_utf8_lossy(&run.stderr));
    let passed: usize = text
        .lines()
        .find_map(|l| l.strip_suffix(" passed, 0 failed").and_then(|n| n.rsplit(' ').next()).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("{name}: no \"N passed, 0 failed\" line:\n{text}"));
    assert!(passed >= min_cases, "{name}: only {passed} cases ran, expected at least {min_cases}:\n{text}");
}

/// The select, merge, pack and norm kernels against plain sorts and f64 sums.
#[test]
fn kernels_match_reference_on_cpu_emulation() {
    run_emulation("kernel_tests", 100);
}

/// The fused self-join kernels (tensor-core fragments, epilogue, locked list merges, symmetric
/// column side) against a float64 reference on the same rounded inputs.
#[test]
fn fused_kernels_match_reference_on_cpu_emulation() {
    run_emulation("fused_tests", 30);
}
