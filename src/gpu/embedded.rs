//! The compiled kernels embedded by `build.rs`: per `kernels/<name>.cu` a fatbin (sm_80 + sm_90
//! SASS, compute_80 PTX), the PTX alone, the NVRTC source and ptxas's `-v` report.
//!
//! [`BUILT`] is false (and every constant empty) when the crate was built without the `cuda`
//! feature or without nvcc; the crate is then also compiled without `cfg(faiss_nn_kernels)`.

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
