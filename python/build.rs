//! Links the Python module against the OpenMP OpenBLAS where it is installed, as the main crate's
//! executables are (see `link_openmp_blas`); maturin then bundles that BLAS into the wheel.

include!("../build-support/openmp_blas.rs");

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../build-support/openmp_blas.rs");
    link_openmp_blas();
}
