//! The table model: every input row and column as Arrow record batches, next to the embedding
//! matrix pulled out of one of those columns, and the output table with the neighbour columns.

use super::format::Format;
use crate::dedup::Groups;
use crate::error::{Error, Result};
use crate::neighbours::Neighbours;
use arrow_array::builder::{ListBuilder, PrimitiveBuilder};
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, BooleanArray, FixedSizeListArray, Float32Array, GenericListArray, Int64Array, OffsetSizeTrait, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the output column with each row's neighbour row numbers (`list<int64>`).
pub const NN_INDICES: &str = "nn_indices";
/// Name of the output column with each row's neighbour scores (`list<float32>`).
pub const NN_SCORES: &str = "nn_scores";
/// Name of the dedup output column with the row its duplicate group keeps (`int64`).
pub const DUP_GROUP: &str = "dup_group";
/// Name of the dedup output column saying whether the row is kept (`bool`).
pub const KEEP: &str = "keep";

/// An input file, read: its table and its validated embedding matrix.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The format it was read as.
    pub format: Format,
    /// The embedding column's name (for `.npy` input, the name the reader was given).
    pub column: String,
    /// Schema of `batches`: every input column, in input order.
    pub schema: SchemaRef,
    /// Every input row, in order.
    pub batches: Vec<RecordBatch>,
    /// Row-major `n × d` embeddings, every value finite. Where the embedding column holds
    /// float32 lists (and for float32 `.npy` input) the table's column is a view of this very
    /// buffer, so the matrix is held once.
    pub embeddings: ScalarBuffer<f32>,
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

    /// Refuses a table whose columns would be lost or overwritten by the output columns: an
    /// embedding column named `nn_indices` / `nn_scores`, or an input that already has columns
    /// of those names (the output of an earlier run; see [`Dataset::drop_neighbour_columns`]).
    pub fn check_output_columns(&self) -> Result<()> {
        self.check_free(&[NN_INDICES, NN_SCORES])
    }

    /// [`Dataset::check_output_columns`] for the output columns `names` (e.g. the dedup's
    /// [`DUP_GROUP`] and [`KEEP`]).
    pub fn check_free(&self, names: &[&str]) -> Result<()> {
        if names.contains(&self.column.as_str()) {
            return Err(Error::invalid(
                "column",
                format!(
                    "{:?} of {}: the embedding column has the name of an output column, which would replace it; rename the column",
                    self.column,
                    self.path.display()
                ),
            ));
        }
        let existing: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).filter(|n| names.contains(n)).collect();
        if !existing.is_empty() {
            return Err(Error::invalid(
                "input",
                format!(
                    "{} already has column(s) {}; they would be overwritten (the CLI's --overwrite replaces them)",
                    self.path.display(),
                    existing.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" and ")
                ),
            ));
        }
        Ok(())
    }

    /// Removes the columns `nn_indices` and `nn_scores` from the table (an earlier run's output),
    /// so that a new run can write its own.
    pub fn drop_neighbour_columns(&mut self) -> Result<()> {
        self.drop_columns(&[NN_INDICES, NN_SCORES])
    }

    /// Removes the columns named `names` from the table (an earlier run's output).
    pub fn drop_columns(&mut self, names: &[&str]) -> Result<()> {
        let keep: Vec<usize> = (0..self.schema.fields().len()).filter(|&i| !names.contains(&self.schema.field(i).name().as_str())).collect();
        self.schema = Arc::new(self.schema.project(&keep).map_err(|e| Error::invalid("input table", e.to_string()))?);
        self.batches =
            self.batches.iter().map(|b| b.project(&keep)).collect::<std::result::Result<_, _>>().map_err(|e| Error::invalid("input table", e.to_string()))?;
        Ok(())
    }

    /// The dedup's output table: every input column, then [`DUP_GROUP`] (`int64`, the row its
    /// group keeps) and [`KEEP`] (`bool`).
    pub fn with_groups(&self, groups: &Groups) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.check_free(&[DUP_GROUP, KEEP])?;
        let table_rows: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        if groups.group.len() != self.n || groups.keep.len() != self.n || table_rows != self.n {
            return Err(Error::invalid(
                "groups",
                format!("{} groups do not fit a data set of {} rows ({table_rows} in its table)", groups.group.len(), self.n),
            ));
        }
        let mut fields: Vec<Arc<Field>> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(DUP_GROUP, DataType::Int64, false)));
        fields.push(Arc::new(Field::new(KEEP, DataType::Boolean, false)));
        let schema = Arc::new(Schema::new_with_metadata(fields, self.schema.metadata().clone()));
        let mut out = Vec::with_capacity(self.batches.len());
        let mut start = 0;
        for b in &self.batches {
            let rows = start..start + b.num_rows();
            let mut columns: Vec<ArrayRef> = b.columns().to_vec();
            columns.push(Arc::new(Int64Array::from(groups.group[rows.clone()].to_vec())));
            columns.push(Arc::new(BooleanArray::from(groups.keep[rows.clone()].to_vec())));
            out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::invalid("output table", e.to_string()))?);
            start = rows.end;
        }
        Ok((schema, out))
    }

    /// The output table: every input column, then `nn_indices` and `nn_scores`. Fails (see
    /// [`Dataset::check_output_columns`]) rather than overwrite a column.
    pub fn with_neighbours(&self, nn: &Neighbours) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.check_output_columns()?;
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

/// True for the embedding column types that [`view_column`] can rebuild over the matrix.
pub(crate) fn viewable(field: &Field) -> bool {
    match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => item.data_type() == &DataType::Float32,
        _ => false,
    }
}

/// Rows `row0 .. row0 + rows` of the `d`-wide matrix `values` as a column of `field`'s type
/// (`list`, `large_list` or `fixed_size_list` of float32; see [`viewable`]), without copying
/// the values.
pub(crate) fn view_column(field: &Field, values: &ScalarBuffer<f32>, d: usize, row0: usize, rows: usize) -> Result<ArrayRef> {
    let bad = |e: arrow_schema::ArrowError| Error::invalid(field.name().as_str(), e.to_string());
    let child = Float32Array::new(values.slice(row0 * d, rows * d), None);
    fn offsets<O: OffsetSizeTrait>(rows: usize, d: usize) -> Result<OffsetBuffer<O>> {
        let o: Option<Vec<O>> = (0..=rows).map(|r| O::from_usize(r * d)).collect();
        let o = o.ok_or_else(|| Error::invalid("embedding column", format!("{} values exceed the list offsets' range", rows * d)))?;
        Ok(OffsetBuffer::new(ScalarBuffer::from(o)))
    }
    Ok(match field.data_type() {
        DataType::List(item) => Arc::new(GenericListArray::<i32>::try_new(item.clone(), offsets(rows, d)?, Arc::new(child), None).map_err(bad)?),
        DataType::LargeList(item) => Arc::new(GenericListArray::<i64>::try_new(item.clone(), offsets(rows, d)?, Arc::new(child), None).map_err(bad)?),
        DataType::FixedSizeList(item, w) => Arc::new(FixedSizeListArray::try_new(item.clone(), *w, Arc::new(child), None).map_err(bad)?),
        other => return Err(Error::invalid(field.name().as_str(), format!("type {other} cannot view a float32 matrix"))),
    })
}

/// Inserts the matrix view of `field` at position `index` into every batch (which lack it),
/// giving batches of `schema`.
pub(crate) fn insert_view(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    index: usize,
    field: &FieldRef,
    values: &ScalarBuffer<f32>,
    d: usize,
) -> Result<Vec<RecordBatch>> {
    let mut row0 = 0;
    batches
        .into_iter()
        .map(|b| {
            let mut columns = b.columns().to_vec();
            columns.insert(index, view_column(field, values, d, row0, b.num_rows())?);
            row0 += b.num_rows();
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::invalid("input table", e.to_string()))
        })
        .collect()
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
