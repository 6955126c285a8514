//! Parquet input: every column read into Arrow record batches, the embedding column checked
//! against the schema before any data is decoded.

use super::dataset::Dataset;
use super::embedding::{extract, find_column};
use super::format::Format;
use crate::error::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::path::Path;

/// Rows per decoded record batch.
const BATCH_ROWS: usize = 8192;

/// Reads a Parquet file, taking the embeddings from `column`.
pub(crate) fn read(path: &Path, column: &str) -> Result<Dataset> {
    let file = File::open(path).map_err(|source| Error::Io { action: "cannot read".into(), path: path.into(), source })?;
    let corrupt = |e: &dyn std::fmt::Display| Error::format(path, "parquet", format!("{e} (is the file a complete Parquet file?)"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?;
    let schema = builder.schema().clone();
    let index = find_column(&schema, column, path)?;
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| corrupt(&e))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| corrupt(&e))?;
    let (embeddings, n, d) = extract(&batches, index, column, path)?;
    Ok(Dataset { path: path.into(), format: Format::Parquet, column: column.into(), schema, batches, embeddings, n, d })
}
