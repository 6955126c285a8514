// The compiled kernels, kept once per target directory and reused by every build of the crate
// that compiles the same text with the same tools.
//
// Why: nvcc takes minutes for kernels/ (fused.cu above all), and cargo runs this build script
// once per profile and per tool that builds the crate (clippy, rustdoc, the tests, the release
// wheel), and again in every fresh checkout that shares a target directory (CI). Those runs
// compile byte-for-byte the same input with the same flags, so one compile serves them all.
//
// Where: `<target dir>/faiss-nn-kernels/<module>-<hash>/` beside cargo's profile directories
// (found from OUT_DIR, `<target>/[<triple>/]<profile>/build/<pkg>-<hash>/out`), so `cargo clean`
// removes it. An entry holds the fatbin, the PTX, ptxas's report and `key.txt`: the whole key
// (tool versions, flags, the module's source with its local headers inlined, and every `.h`
// file under kernels/, which the kernels include uninlined). An entry is used only when its key
// equals this build's key byte for byte, so a hash collision can never substitute a kernel.
// `FAISS_NN_KERNEL_CACHE=off` compiles without it.

/// Files of a cache entry besides `key.txt`, in the order `kernel_cache_store` takes them.
const CACHED: [&str; 3] = ["fatbin", "ptx", "ptxas.txt"];

/// The cache directory for a build whose OUT_DIR is `out_dir`; `None` when the layout is not
/// cargo's or the cache is switched off.
fn kernel_cache_root(out_dir: &Path) -> Option<PathBuf> {
    println!("cargo::rerun-if-env-changed=FAISS_NN_KERNEL_CACHE");
    if env::var("FAISS_NN_KERNEL_CACHE").is_ok_and(|v| v == "off") {
        return None;
    }
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.parent()?.join("faiss-nn-kernels"))
}

/// What the tools are: nvcc's full `--version`, ptxas's beside it, and the size of cicc (the
/// nvidia-nvvm wheel is pinned apart from nvcc's), so that other tools never reuse an entry.
fn kernel_tools(nvcc: &Path) -> String {
    let mut s = String::new();
    let bin = nvcc.parent().unwrap_or(Path::new("."));
    for tool in [nvcc.to_path_buf(), bin.join("ptxas")] {
        if let Ok(o) = Command::new(&tool).arg("--version").output() {
            s.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    if let Some(root) = bin.parent() {
        let cicc = root.join("nvvm/bin/cicc");
        if let Ok(m) = fs::metadata(&cicc) {
            let _ = writeln!(s, "cicc {} bytes", m.len());
        }
    }
    s
}

/// The key of module `name`: the tools, the flags of both compiles, the inlined source, and the
/// `.h` files under `kernels_dir` (sorted by path).
fn kernel_key(tools: &str, flags: &[String], name: &str, inlined: &str, kernels_dir: &Path) -> String {
    let mut key = format!("faiss-nn kernel cache v1\nmodule {name}\n{tools}\nflags {}\n", flags.join(" "));
    let mut headers = Vec::new();
    collect_headers(kernels_dir, &mut headers);
    headers.sort();
    for h in headers {
        let rel = h.strip_prefix(kernels_dir).unwrap_or(&h).display().to_string();
        let _ = writeln!(key, "header {rel}\n{}", fs::read_to_string(&h).unwrap_or_default());
    }
    let _ = writeln!(key, "source\n{inlined}");
    key
}

fn collect_headers(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_headers(&p, out);
        } else if p.extension().is_some_and(|x| x == "h") {
            out.push(p);
        }
    }
}

/// FNV-1a, 64 bits: names an entry (the full key decides whether it is used).
fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

fn kernel_entry(root: &Path, name: &str, key: &str) -> PathBuf {
    root.join(format!("{name}-{:016x}", fnv64(key)))
}

/// Copies a cached module to `outputs` (fatbin, PTX, ptxas report); false on any miss.
fn kernel_cache_load(root: &Path, name: &str, key: &str, outputs: [&Path; 3]) -> bool {
    let entry = kernel_entry(root, name, key);
    if fs::read_to_string(entry.join("key.txt")).ok().as_deref() != Some(key) {
        return false;
    }
    CACHED.iter().zip(outputs).all(|(file, dst)| fs::copy(entry.join(file), dst).is_ok())
}

/// Stores a compiled module (best effort: a cache that cannot be written only costs time). The
/// entry is written under a temporary name and renamed, so a reader never sees half of it.
fn kernel_cache_store(root: &Path, name: &str, key: &str, outputs: [&Path; 3]) {
    let entry = kernel_entry(root, name, key);
    let tmp = root.join(format!(".{name}-{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let written = fs::create_dir_all(&tmp).is_ok()
        && CACHED.iter().zip(outputs).all(|(file, src)| fs::copy(src, tmp.join(file)).is_ok())
        && fs::write(tmp.join("key.txt"), key).is_ok();
    if !written {
        let _ = fs::remove_dir_all(&tmp);
        return;
    }
    // An entry under that name that is not this key (a hash collision, or a broken write) is
    // replaced; one with this key is kept.
    if fs::read_to_string(entry.join("key.txt")).ok().as_deref() != Some(key) {
        let _ = fs::remove_dir_all(&entry);
    }
    if fs::rename(&tmp, &entry).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
}
