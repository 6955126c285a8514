//! Compiles the CUDA kernels in `kernels/` ahead of time when the `cuda` feature is on and an
//! `nvcc` can be found, and writes `$OUT_DIR/kernels.rs` for `src/gpu/embedded.rs` to include.
//!
//! For every `kernels/<name>.cu` it embeds: a fatbin (SASS for sm_80 and sm_90 plus compute_80
//! PTX, so Ampere and Hopper never JIT), the PTX alone (loaded when the driver rejects the
//! fatbin), the source with its local headers inlined (for NVRTC, the last resort), and ptxas's
//! `-v` report (registers, shared memory, spills per kernel; tests hold the select kernels to zero
//! spills). It then sets `cfg(faiss_nn_kernels)`.
//!
//! Without the `cuda` feature nothing is compiled and nothing is said: the CPU build must not pay
//! for nvcc. With the feature but without nvcc the crate still builds, with a warning, and the GPU
//! backend reports itself unavailable at run time. When nvcc *is* found, any compile error fails
//! the build loudly: a broken kernel must never ship silently.
//!
//! nvcc is looked for in `$NVCC` (set but missing: no nvcc at all, with a warning), then `.cuda/nvidia/cu13/bin/nvcc` under the crate (the pinned PyPI wheels, see
//! docs/cuda-toolchain.md), then `nvcc` on `PATH`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the bundled faiss is compiled for AVX2 CPUs: an x86-64 target whose C++ flags (the
/// variables the cc crate reads for faiss-sys's cmake build; `.cargo/config.toml` sets one)
/// ask for AVX2. The faiss backend then checks the CPU before faiss runs.
fn faiss_uses_avx2() -> bool {
    let target = env::var("TARGET").unwrap_or_default();
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return false;
    }
    let names = [format!("CXXFLAGS_{target}"), format!("CXXFLAGS_{}", target.replace('-', "_")), "TARGET_CXXFLAGS".into(), "CXXFLAGS".into()];
    names.iter().any(|name| {
        println!("cargo::rerun-if-env-changed={name}");
        env::var(name).is_ok_and(|f| f.split_whitespace().any(|w| matches!(w, "-mavx2" | "-march=x86-64-v3" | "-march=x86-64-v4")))
    })
}

/// Real architectures compiled to SASS; the last entry's virtual architecture also ships as PTX.
const SASS_ARCHS: &[&str] = &["80", "90"];
/// Virtual architecture of the embedded PTX (the JIT fallback for newer GPUs).
const PTX_ARCH: &str = "80";

include!("build-support/openmp_blas.rs");
include!("build-support/kernel_cache.rs");

fn main() {
    link_openmp_blas();
    println!("cargo::rustc-check-cfg=cfg(faiss_nn_kernels)");
    println!("cargo::rustc-check-cfg=cfg(faiss_nn_avx2)");
    if faiss_uses_avx2() {
        println!("cargo::rustc-cfg=faiss_nn_avx2");
    }
    println!("cargo::rerun-if-changed=kernels");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build-support/openmp_blas.rs");
    println!("cargo::rerun-if-changed=build-support/kernel_cache.rs");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kernels_dir = manifest_dir.join("kernels");
    let sources = list_sources(&kernels_dir);
    let wants_cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();

    if !wants_cuda {
        write_empty(&out_dir, &sources, "this build has no `cuda` feature");
        return;
    }
    let nvcc = match find_nvcc(&manifest_dir) {
        Ok(p) => p,
        Err(why) => {
            println!(
                "cargo::warning=faiss-nn: CUDA kernels not compiled ({why}); the GPU backend will report itself \
                 unavailable. Install nvcc (see docs/cuda-toolchain.md) or set NVCC."
            );
            write_empty(&out_dir, &sources, &format!("the crate was built without nvcc ({why})"));
            return;
        }
    };
    println!("cargo::rerun-if-changed={}", nvcc.display());
    let version = nvcc_version(&nvcc);
    let cache_root = kernel_cache_root(&out_dir);
    let tools = cache_root.as_ref().map(|_| kernel_tools(&nvcc)).unwrap_or_default();
    let toolchain = Toolchain { nvcc: &nvcc, kernels_dir: &kernels_dir, out_dir: &out_dir, cache: cache_root.as_deref().map(|r| (r, tools.as_str())) };

    // Compile every file on its own thread: nvcc is single-threaded and mostly waits on cicc/ptxas.
    let results: Vec<Result<Compiled, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let toolchain = &toolchain;
                s.spawn(move || compile(toolchain, src))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("compile thread panicked".into()))).collect()
    });
    let mut compiled = Vec::new();
    for r in results {
        match r {
            Ok(c) => compiled.push(c),
            // A kernel that does not compile is a bug in this crate: fail the build.
            Err(msg) => panic!("faiss-nn: nvcc failed:\n{msg}"),
        }
    }

    let mut rs = header(true, &version, "");
    for c in &compiled {
        let up = c.name.to_uppercase();
        let _ = writeln!(rs, "/// `kernels/{}.cu` as a fatbin (sm_80, sm_90 SASS + compute_{PTX_ARCH} PTX).", c.name);
        let _ = writeln!(rs, "pub const {up}_FATBIN: &[u8] = include_bytes!({:?});", c.fatbin.display().to_string());
        let _ = writeln!(rs, "/// `kernels/{}.cu` as compute_{PTX_ARCH} PTX text.", c.name);
        let _ = writeln!(rs, "pub const {up}_PTX: &str = include_str!({:?});", c.ptx.display().to_string());
        let _ = writeln!(rs, "/// `kernels/{}.cu` with its local headers inlined, for NVRTC.", c.name);
        let _ = writeln!(rs, "pub const {up}_SRC: &str = include_str!({:?});", c.src.display().to_string());
        let _ = writeln!(rs, "/// ptxas's `-v` report for `kernels/{}.cu` (every architecture).", c.name);
        let _ = writeln!(rs, "pub const {up}_PTXAS: &str = include_str!({:?});", c.ptxas.display().to_string());
    }
    write_table(&mut rs, &sources);
    fs::write(out_dir.join("kernels.rs"), rs).expect("write kernels.rs");
    println!("cargo::rustc-cfg=faiss_nn_kernels");
}

struct Compiled {
    name: String,
    fatbin: PathBuf,
    ptx: PathBuf,
    src: PathBuf,
    ptxas: PathBuf,
}

/// `kernels/*.cu`, sorted, as stems.
fn list_sources(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn find_nvcc(manifest_dir: &Path) -> Result<PathBuf, String> {
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        // An explicit but missing NVCC means "no nvcc" (e.g. NVCC=/nonexistent checks the
        // build without kernels), not "look elsewhere".
        return Err(format!("NVCC={} does not exist", p.display()));
    }
    let wheel = manifest_dir.join(".cuda/nvidia/cu13/bin/nvcc");
    if wheel.is_file() {
        return Ok(wheel);
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let c = dir.join("nvcc");
            if c.is_file() {
                return Ok(c);
            }
        }
    }
    Err("no nvcc in $NVCC, .cuda/nvidia/cu13/bin or PATH".into())
}

fn nvcc_version(nvcc: &Path) -> String {
    match Command::new(nvcc).arg("--version").output() {
        Ok(o) if o.status.success() => {
            let s = String::from_utf8_lossy(&o.stdout);
            s.lines().find(|l| l.contains("release")).unwrap_or("unknown").trim().to_string()
        }
        Ok(o) => panic!("faiss-nn: `{} --version` failed: {}", nvcc.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("faiss-nn: cannot run {}: {e}", nvcc.display()),
    }
}

/// nvcc's flags for the fatbin (every argument but the include path, output and source).
fn fatbin_flags() -> Vec<String> {
    let mut f: Vec<String> = ["-fatbin", "-O3", "-std=c++17", "-Xptxas", "-v", "-lineinfo"].map(String::from).to_vec();
    for a in SASS_ARCHS {
        f.push(format!("-gencode=arch=compute_{a},code=sm_{a}"));
    }
    f.push(format!("-gencode=arch=compute_{PTX_ARCH},code=compute_{PTX_ARCH}"));
    f
}

/// nvcc's flags for the PTX of the inlined source (all but output and source).
fn ptx_flags() -> Vec<String> {
    vec!["-ptx".into(), "-O3".into(), "-std=c++17".into(), format!("-arch=compute_{PTX_ARCH}"), "-x".into(), "cu".into()]
}

/// How the modules are compiled: nvcc, the kernels, where outputs go, and the cache (see
/// build-support/kernel_cache.rs) with the tools' description that keys it.
struct Toolchain<'a> {
    nvcc: &'a Path,
    kernels_dir: &'a Path,
    out_dir: &'a Path,
    cache: Option<(&'a Path, &'a str)>,
}

fn compile(t: &Toolchain<'_>, name: &str) -> Result<Compiled, String> {
    let (nvcc, kernels_dir, out_dir) = (t.nvcc, t.kernels_dir, t.out_dir);
    let src = kernels_dir.join(format!("{name}.cu"));
    let fatbin = out_dir.join(format!("{name}.fatbin"));
    let ptx = out_dir.join(format!("{name}.ptx"));
    let ptxas = out_dir.join(format!("{name}.ptxas.txt"));
    let inlined = out_dir.join(format!("{name}.nvrtc.cu"));

    // The PTX is compiled from the inlined source (no include path), the very text the NVRTC
    // fallback compiles at run time: a header the inliner missed fails the build here, not on a
    // GPU machine whose fatbin happened not to load.
    let text = inline_includes(&src, kernels_dir, &mut Vec::new())?;
    fs::write(&inlined, &text).map_err(|e| format!("write {}: {e}", inlined.display()))?;
    let outputs = [fatbin.as_path(), ptx.as_path(), ptxas.as_path()];
    let (fat_flags, ptx_flags) = (fatbin_flags(), ptx_flags());
    let key = t.cache.map(|(root, tools)| (root, kernel_key(tools, &[fat_flags.clone(), ptx_flags.clone()].concat(), name, &text, kernels_dir)));
    if let Some((root, key)) = &key {
        if kernel_cache_load(root, name, key, outputs) {
            return Ok(Compiled { name: name.to_string(), fatbin, ptx, src: inlined, ptxas });
        }
    }

    let mut fat = Command::new(nvcc);
    fat.args(&fat_flags).arg("-I").arg(kernels_dir).arg("-o").arg(&fatbin).arg(&src);
    let report = run(fat, name)?;
    fs::write(&ptxas, &report).map_err(|e| format!("write {}: {e}", ptxas.display()))?;
    let mut p = Command::new(nvcc);
    p.args(&ptx_flags).arg("-o").arg(&ptx).arg(&inlined);
    run(p, name)?;
    if let Some((root, key)) = &key {
        kernel_cache_store(root, name, key, outputs);
    }
    Ok(Compiled { name: name.to_string(), fatbin, ptx, src: inlined, ptxas })
}

/// Runs nvcc; returns its stderr (where ptxas -v reports) or the whole failure as an error.
fn run(mut cmd: Command, name: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{name}: cannot run nvcc: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("{name}.cu: {:?} exited with {}\n{}{}", cmd, out.status, String::from_utf8_lossy(&out.stdout), stderr));
    }
    Ok(stderr)
}

/// Replaces `#include "x.cuh"` lines (files in kernels/) by their text, recursively and once
/// each, so NVRTC needs no include path. `.h` headers (the CPU emulation) and `<…>` headers stay.
fn inline_includes(path: &Path, dir: &Path, seen: &mut Vec<PathBuf>) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        let inc = t.strip_prefix("#include").map(str::trim).and_then(|r| r.strip_prefix('"')).and_then(|r| r.split('"').next());
        match inc {
            Some(h) if h.ends_with(".cuh") => {
                let hp = dir.join(h);
                if !seen.contains(&hp) {
                    seen.push(hp.clone());
                    out.push_str(&inline_includes(&hp, dir, seen)?);
                    out.push('\n');
                }
            }
            // Inlined once already; in a single file the pragma only draws warnings.
            _ if t.trim_end() == "#pragma once" => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn header(built: bool, version: &str, reason: &str) -> String {
    let mut rs = String::new();
    let _ = writeln!(rs, "// @generated by build.rs; do not edit.");
    let _ = writeln!(rs, "/// True when nvcc compiled the kernels into this build.");
    let _ = writeln!(rs, "pub const BUILT: bool = {built};");
    let _ = writeln!(rs, "/// Why the kernels are missing (empty when they were built).");
    let _ = writeln!(rs, "pub const MISSING_REASON: &str = {reason:?};");
    let _ = writeln!(rs, "/// `nvcc --version`'s release line (empty without nvcc).");
    let _ = writeln!(rs, "pub const NVCC_VERSION: &str = {version:?};");
    let archs: Vec<String> = SASS_ARCHS.iter().map(|a| format!("\"sm_{a}\"")).collect();
    let _ = writeln!(rs, "/// Real architectures the fatbins carry SASS for.");
    let _ = writeln!(rs, "pub const SASS_ARCHS: &[&str] = &[{}];", archs.join(", "));
    rs
}

/// A table of every module: `(name, fatbin, ptx, nvrtc source, ptxas report)`.
fn write_table(rs: &mut String, sources: &[String]) {
    let _ = writeln!(rs, "/// Every kernel module: (name, fatbin, PTX, NVRTC source, ptxas report).");
    let _ = writeln!(rs, "pub const MODULES: &[(&str, &[u8], &str, &str, &str)] = &[");
    for s in sources {
        let up = s.to_uppercase();
        let _ = writeln!(rs, "    ({s:?}, {up}_FATBIN, {up}_PTX, {up}_SRC, {up}_PTXAS),");
    }
    let _ = writeln!(rs, "];");
}

/// kernels.rs with empty constants, so the crate compiles without nvcc.
fn write_empty(out_dir: &Path, sources: &[String], reason: &str) {
    let mut rs = header(false, "", reason);
    for s in sources {
        let up = s.to_uppercase();
        let _ = writeln!(rs, "/// Empty: kernels not built.");
        let _ = writeln!(rs, "pub const {up}_FATBIN: &[u8] = &[];");
        let _ = writeln!(rs, "/// Empty: kernels not built.");
        let _ = writeln!(rs, "pub const {up}_PTX: &str = \"\";");
        let _ = writeln!(rs, "/// Empty: kernels not built.");
        let _ = writeln!(rs, "pub const {up}_SRC: &str = \"\";");
        let _ = writeln!(rs, "/// Empty: kernels not built.");
        let _ = writeln!(rs, "pub const {up}_PTXAS: &str = \"\";");
    }
    write_table(&mut rs, sources);
    fs::write(out_dir.join("kernels.rs"), rs).expect("write kernels.rs");
}
