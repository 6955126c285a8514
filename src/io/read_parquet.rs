//! Parquet input: every column read into Arrow record batches, the embedding column checked
//! against the schema before any data is decoded. The matrix is collected batch by batch into
//! one allocation; where the column holds float32 lists, each batch's own copy is dropped as soon
//! as it is collected and the table's column becomes a view of the matrix, so the embeddings are
//! held once.

use super::dataset::{insert_view, viewable, Dataset};
use super::embedding::{find_column, Collector};
use super::format::Format;
use crate::error::{Error, Result};
use arrow_buffer::ScalarBuffer;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::path::Path;

/// Rows per decoded record batch, at most.
const BATCH_ROWS: usize = 8192;
/// Decoded bytes per record batch, at most (wide rows get fewer rows per batch).
const BATCH_BYTES: usize = 64 << 20;

/// Reads a Parquet file, taking the embeddings from `column`.
pub(crate) fn read(path: &Path, column: &str) -> Result<Dataset> {
    let file = File::open(path).map_err(|source| Error::Io { action: "cannot read".into(), path: path.into(), source })?;
    let corrupt = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        let hint = if text.contains("compile time") || text.to_ascii_lowercase().contains("codec") {
            "a compression codec this program does not read; it reads uncompressed, snappy, gzip, zstd, LZ4 and brotli pages"
        } else {
            "is the file a complete Parquet file?"
        };
        Error::format(path, "parquet", format!("{text} ({hint})"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?;
    let schema = builder.schema().clone();
    let index = find_column(&schema, column, path)?;
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let field = schema.fields()[index].clone();
    let view = viewable(&field);
    let others: Vec<usize> = (0..schema.fields().len()).filter(|&i| i != index).collect();
    // Bytes per row from the first row group's uncompressed size, so that a batch of very wide
    // rows (d = 100,000) is not 8192 rows (3.3 GB) at once.
    let per_row =
        builder.metadata().row_groups().first().map_or(1, |g| (g.total_byte_size().max(0) as usize).checked_div(g.num_rows().max(0) as usize).unwrap_or(1));
    let batch_rows = (BATCH_BYTES / per_row.max(1)).clamp(1, BATCH_ROWS);
    let reader = builder.with_batch_size(batch_rows).build().map_err(|e| corrupt(&e))?;
    let mut collector = Collector::new(path, column, rows);
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(&e))?;
        collector.push_column(batch.column(index).as_ref())?;
        batches.push(if view { batch.project(&others).map_err(|e| corrupt(&e))? } else { batch });
    }
    let (values, n, d) = collector.finish()?;
    let embeddings = ScalarBuffer::from(values);
    if view {
        batches = insert_view(batches, &schema, index, &field, &embeddings, d)?;
    }
    Ok(Dataset { path: path.into(), format: Format::Parquet, column: column.into(), schema, batches, embeddings, n, d })
}
