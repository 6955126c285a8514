//! Reading embedding datasets from files and writing them back with their neighbours.
//!
//! Inputs: Parquet (`.parquet`, `.pq`), JSON Lines (`.jsonl`, `.ndjson`, `.json`: one object per
//! line) and NumPy arrays (`.npy`: 2-D floats or integers, either byte order, C or Fortran
//! order). Reading gives
//! a [`Dataset`]: the validated `n × d` matrix for the search, and every input row and column
//! as Arrow record batches. Writing (Parquet or JSON Lines, chosen by the output's extension)
//! adds `nn_indices` (`list<int64>`) and `nn_scores` (`list<float32>`) to those columns, and
//! is atomic (see [`Output`]).
//!
//! ```no_run
//! use faiss_nn::{io, FaissNearestNeighbour};
//! use std::path::Path;
//! # fn main() -> faiss_nn::Result<()> {
//! let data = io::read_embeddings(Path::new("in.parquet"), "embedding")?;
//! let nn = FaissNearestNeighbour::new().k(5).run(&data.embeddings, data.d)?;
//! io::write_with_neighbours(&data, &nn, Path::new("out.parquet"))?;
//! # Ok(()) }
//! ```

mod dataset;
mod embedding;
mod format;
mod json_keys;
mod json_types;
mod jsonl;
pub mod npy;
mod rank;
mod read_parquet;
mod write;
mod write_parquet;

pub use dataset::{Dataset, DUP_GROUP, KEEP, NN_INDICES, NN_SCORES};
pub use format::Format;
pub use write::{check_not_input, pairs_table, same_file, write_with_neighbours, Output};

use crate::error::Result;
use std::path::Path;

/// Reads `path` (format by extension), taking the embeddings from `column`. For `.npy` input
/// the array is the embedding, and the table has one column, named `column`, of the file's
/// own element type.
///
/// Every problem is an error naming the file and where in it: a missing column (with the
/// columns that exist), a column that is not a list of numbers (with its type), a null
/// embedding, ragged rows, NaN or ±inf (row and component), no rows, a corrupted file.
pub fn read_embeddings(path: &Path, column: &str) -> Result<Dataset> {
    match Format::from_path(path)? {
        Format::Parquet => read_parquet::read(path, column),
        Format::Jsonl => jsonl::read(path, column),
        Format::Npy => npy::read_dataset(path, column),
    }
}

#[cfg(test)]
mod tests;
