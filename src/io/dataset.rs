//! The table model: every input row and column as Arrow record batches, next to the embedding
//! matrix pulled out of one of those columns, and the output table with the neighbour columns.

use super::format::Format;
use crate::error::{Error, Result};
use crate::neighbours::Neighbours;
use arrow_array::builder::{ListBuilder, PrimitiveBuilder};
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the output column with each row's neighbour row numbers (`list<int64>`).
pub const NN_INDICES: &str = "nn_indices";
/// Name of the output column with each row's neighbour scores (`list<float32>`).
pub const NN_SCORES: &str = "nn_scores";

/// An input file, read: its table and its validated embedding matrix.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// The embedding column's name (`embedding` for `.npy` input).
    pub column: String,
    /// Schema of `batches`: every input column, in input order.
    pub schema: SchemaRef,
    /// Every input row, in order.
    pub batches: Vec<RecordBatch>,
    /// Row-major `n × d` embeddings, every value finite.
    pub embeddings: Vec<f32>,
    /// Number of rows (at least 1).
    pub n: usize,
    /// Dimension (at least 1).
    pub d: usize,
}

impl Dataset {
    /// The record batch holding row `row` and the row's position in it.
    pub fn locate(&self, row: usize) -> Option<(&RecordBatch, usize)> {
        let mut start = 0;
        for b in &self.batches {
            if row < start + b.num_rows() {
                return Some((b, row - start));
            }
            start += b.num_rows();
        }
        None
    }

    /// The output table: every input column, then `nn_indices` and `nn_scores`. An input that
    /// already has columns of those names (the output of an earlier run) has them replaced.
    pub fn with_neighbours(&self, nn: &Neighbours) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let table_rows: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        if nn.n != self.n || table_rows != self.n || nn.indices.len() != nn.n * nn.k || nn.scores.len() != nn.n * nn.k {
            return Err(Error::invalid(
                "neighbours",
                format!(
                    "{} rows of {} neighbours ({} indices, {} scores) do not fit a data set of {} rows ({table_rows} in its table)",
                    nn.n,
                    nn.k,
                    nn.indices.len(),
                    nn.scores.len(),
                    self.n
                ),
            ));
        }
        let keep: Vec<usize> = (0..self.schema.fields().len()).filter(|&i| !matches!(self.schema.field(i).name().as_str(), NN_INDICES | NN_SCORES)).collect();
        let mut fields: Vec<Arc<Field>> = keep.iter().map(|&i| self.schema.fields()[i].clone()).collect();
        fields.push(Arc::new(Field::new(NN_INDICES, list_of(DataType::Int64), false)));
        fields.push(Arc::new(Field::new(NN_SCORES, list_of(DataType::Float32), false)));
        let schema = Arc::new(Schema::new_with_metadata(fields, self.schema.metadata().clone()));

        let mut out = Vec::with_capacity(self.batches.len());
        let mut start = 0;
        for b in &self.batches {
            let rows = start..start + b.num_rows();
            let mut columns: Vec<ArrayRef> = keep.iter().map(|&i| b.column(i).clone()).collect();
            columns.push(lists::<Int64Type>(&nn.indices[rows.start * nn.k..rows.end * nn.k], rows.len(), NN_INDICES)?);
            columns.push(lists::<Float32Type>(&nn.scores[rows.start * nn.k..rows.end * nn.k], rows.len(), NN_SCORES)?);
            out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::invalid("output table", e.to_string()))?);
            start = rows.end;
        }
        Ok((schema, out))
    }
}

/// `list<T>` with non-null items, the type of the neighbour columns.
fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

/// Arrow lists use 32-bit offsets; a batch whose lists would overflow them is refused here
/// rather than left to panic inside the builder.
fn check_offsets(values: usize, what: &str) -> Result<()> {
    if values > i32::MAX as usize {
        return Err(Error::invalid(what, format!("{values} values in one record batch exceed the {} an Arrow list can address", i32::MAX)));
    }
    Ok(())
}

/// `rows` lists of `values.len() / rows` items each, as `list<T>` with non-null items.
pub(crate) fn lists<T: ArrowPrimitiveType>(values: &[T::Native], rows: usize, what: &str) -> Result<ArrayRef> {
    check_offsets(values.len(), what)?;
    let width = values.len().checked_div(rows).unwrap_or(0);
    let mut b =
        ListBuilder::with_capacity(PrimitiveBuilder::<T>::with_capacity(values.len()), rows).with_field(Arc::new(Field::new("item", T::DATA_TYPE, false)));
    for r in 0..rows {
        b.values().append_slice(&values[r * width..(r + 1) * width]);
        b.append(true);
    }
    Ok(Arc::new(b.finish()))
}
