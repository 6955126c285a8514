// Included (`include!`) by build.rs and python/build.rs: both link faiss, so both ask for the
// same BLAS at run time.

/// Where Debian's (or Ubuntu's) OpenMP build of OpenBLAS is installed (package
/// `libopenblas0-openmp`, which scripts/setup.sh installs), the executables and the Python module
/// built here load it instead of the system default (the pthreads build), through a run-path
/// entry: faiss calls BLAS both from inside its OpenMP loops and around them, and only an OpenMP
/// BLAS shares faiss's threads in both cases (it runs single-threaded inside a parallel region
/// and on every OpenMP thread outside one, as the faiss-cpu wheels' OpenBLAS does). With the
/// pthreads build the faiss backend has to pin BLAS to one thread while faiss runs, which leaves
/// k-means one core. For the executables `LD_LIBRARY_PATH` still overrides the choice at run
/// time (a run path is searched after it); the wheel carries its own copy of the BLAS it was
/// built with. `FAISS_NN_SYSTEM_BLAS` set to anything but the empty string at build time
/// leaves the system's default.
fn link_openmp_blas() {
    println!("cargo::rerun-if-env-changed=FAISS_NN_SYSTEM_BLAS");
    let system = std::env::var_os("FAISS_NN_SYSTEM_BLAS").is_some_and(|v| !v.is_empty());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") || system {
        return;
    }
    let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => return,
    };
    let lib = format!("/usr/lib/{multiarch}");
    println!("cargo::rerun-if-changed={lib}");
    let dir = format!("{lib}/openblas-openmp");
    if std::path::Path::new(&dir).join("libblas.so.3").is_file() {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
