//! # faiss-nn
//!
//! For every row of an embedding dataset, its k nearest neighbours among the same rows: the
//! nearest-neighbour step known from distilabel (`FaissNearestNeighbour`), rebuilt as a native
//! crate. Exact flat search runs on our own kernels (multi-threaded, tiled, symmetric CPU code;
//! CUDA kernels with the `cuda` feature) and is exact: candidates are re-scored in f64 and every
//! row's set is proven (see [`engine::exact`]). Every other faiss index factory string and metric
//! goes to faiss itself (the `faiss` feature, on by default). Every front (the step,
//! [`FlatIndex`], the Python package) goes through one [`Engine`].
//!
//! ```no_run
//! use faiss_nn::FaissNearestNeighbour;
//! # fn main() -> faiss_nn::Result<()> {
//! let (d, data): (usize, Vec<f32>) = (3, vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0, 0.0]);
//! let nn = FaissNearestNeighbour::new().k(1).run(&data, d)?;
//! assert_eq!(nn.indices_of(0), &[1]); // row 0's nearest other row is row 1
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod data;
pub mod dedup;
pub mod device;
pub mod engine;
pub mod error;
pub mod flat;
pub mod gpu;
pub mod index;
pub mod io;
pub mod metric;
pub mod neighbours;
pub mod precision;
pub mod progress;
pub mod range;
pub mod shard;
pub mod step;
pub mod topk;

#[cfg(feature = "faiss")]
pub mod faiss_backend;

pub use data::{Element, Vectors};
pub use dedup::{Dedup, Groups, Keep};
pub use device::Device;
pub use engine::{Engine, EngineOptions, Shard};
pub use error::{Error, ErrorKind, Result};
pub use gpu::GpuPath;
pub use index::{FlatIndex, RangeResult};
pub use metric::{FlatMetric, Metric};
pub use neighbours::Neighbours;
pub use precision::Precision;
pub use progress::{NoProgress, Progress};
pub use range::{Pairs, RangeJoin, Threshold};
pub use shard::ShardMode;
pub use step::FaissNearestNeighbour;
