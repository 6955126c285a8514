//! The one integration-test binary. GPU tests are `#[ignore = "needs a CUDA GPU"]`; run them with
//! `cargo test --features cuda --test lib -- --ignored` on a machine with one.

mod common;

mod emulation;
mod engine;
mod exact;
mod flat_cpu;
mod index;
mod range;
mod reduced;
mod step;
mod topk;

#[cfg(feature = "faiss")]
mod faiss_factories;
#[cfg(feature = "faiss")]
mod parity_faiss;

mod cli;

#[cfg(feature = "cuda")]
mod gpu;
