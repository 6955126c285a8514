//! Pulls the embedding matrix out of an Arrow column of numeric lists (`list`, `large_list` or
//! `fixed_size_list` of floats or integers), naming the row and component of every problem.

use crate::data::check_finite;
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::{DataType, Schema};
use std::borrow::Cow;
use std::path::Path;

/// Finds `column` in `schema`, checking that its type can hold embeddings.
pub(crate) fn find_column(schema: &Schema, column: &str, path: &Path) -> Result<usize> {
    let same: Vec<usize> = (0..schema.fields().len()).filter(|&i| schema.field(i).name() == column).collect();
    if same.len() > 1 {
        let at: Vec<String> = same.iter().map(|i| format!("#{}", i + 1)).collect();
        return Err(Error::format(path, "schema", format!("{} columns are named {column:?} (columns {}); rename all but one", same.len(), at.join(" and "))));
    }
    let Ok(index) = schema.index_of(column) else {
        return Err(Error::MissingColumn {
            path: path.into(),
            location: "schema".into(),
            column: column.into(),
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        });
    };
    let dt = schema.field(index).data_type();
    let item = match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f.data_type()),
        _ => None,
    };
    match item {
        Some(item) if numeric(item) => Ok(index),
        _ => Err(Error::format(path, format!("column {column:?}"), format!("has type {dt}; embeddings must be a list of numbers (e.g. list<float32>)"))),
    }
}

/// Types a component may have. Wider or integer values are converted to f32.
fn numeric(dt: &DataType) -> bool {
    dt.is_integer() || matches!(dt, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

/// Where a matrix is being collected: the dimension is fixed by the first row seen.
pub(crate) struct Collector<'a> {
    path: &'a Path,
    column: &'a str,
    values: Vec<f32>,
    d: Option<usize>,
    rows: usize,
    /// Rows expected in all (from the file's metadata): the matrix is allocated once, exactly,
    /// when the first row fixes the dimension.
    expect_rows: usize,
    /// In the batch being pushed: the first float64 component (position in the list's child
    /// array, value) that is finite but beyond float32's range.
    overflow: Option<(usize, f64)>,
}

impl<'a> Collector<'a> {
    fn what(&self) -> String {
        format!("column {:?} of {}", self.column, self.path.display())
    }

    /// Appends one row, given as a range of `child` (already converted to f32).
    fn push(&mut self, child: &[f32], child_nulls: &dyn Array, start: usize, end: usize) -> Result<()> {
        let row = self.rows;
        let len = end - start;
        let d = match self.d {
            Some(d) => d,
            None => {
                if len == 0 {
                    return Err(Error::Empty { what: self.what(), detail: "row 0 has no values".into() });
                }
                self.d = Some(len);
                let want = self.expect_rows.saturating_mul(len);
                self.values.try_reserve_exact(want).map_err(|_| Error::OutOfMemory {
                    device: "cpu".into(),
                    context: format!("reading {} ({} rows × {len})", self.what(), self.expect_rows),
                    needed_bytes: want.saturating_mul(4),
                })?;
                len
            }
        };
        if len != d {
            return Err(Error::Ragged { what: self.what(), row, len, expected: d });
        }
        if child_nulls.null_count() > 0 {
            if let Some(j) = (start..end).find(|&j| child_nulls.is_null(j)) {
                return Err(Error::format(self.path, format!("row {row}, column {:?}", self.column), format!("component {} is null", j - start)));
            }
        }
        if let Some((p, v)) = self.overflow.filter(|(p, _)| (start..end).contains(p)) {
            return Err(Error::format(
                self.path,
                format!("row {row}, column {:?}", self.column),
                format!("component {} is {v:e}, which overflows float32 (largest finite: {:e})", p - start, f32::MAX),
            ));
        }
        self.values.extend_from_slice(&child[start..end]);
        self.rows += 1;
        Ok(())
    }

    fn null_row(&self) -> Error {
        Error::format(self.path, format!("row {}, column {:?}", self.rows, self.column), "the embedding is null")
    }

    /// A collector for `column` of `path`, expecting `rows` rows.
    pub(crate) fn new(path: &'a Path, column: &'a str, rows: usize) -> Self {
        Collector { path, column, values: Vec::new(), d: None, rows: 0, expect_rows: rows, overflow: None }
    }

    /// The validated matrix: at least one row, every value finite.
    pub(crate) fn finish(self) -> Result<(Vec<f32>, usize, usize)> {
        let Some(d) = self.d else {
            return Err(Error::Empty { what: self.what(), detail: "no rows".into() });
        };
        check_finite(&self.values, d, &self.what())?;
        Ok((self.values, self.rows, d))
    }

    /// Appends every row of one batch's embedding column.
    pub(crate) fn push_column(&mut self, array: &dyn Array) -> Result<()> {
        match array.data_type() {
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let child = to_f32(list.values().as_ref(), &mut *self)?;
                for (i, w) in list.value_offsets().windows(2).enumerate() {
                    if list.is_null(i) {
                        return Err(self.null_row());
                    }
                    self.push(&child, list.values().as_ref(), w[0] as usize, w[1] as usize)?;
                }
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                let child = to_f32(list.values().as_ref(), &mut *self)?;
                for (i, w) in list.value_offsets().windows(2).enumerate() {
                    if list.is_null(i) {
                        return Err(self.null_row());
                    }
                    self.push(&child, list.values().as_ref(), w[0] as usize, w[1] as usize)?;
                }
            }
            DataType::FixedSizeList(_, _) => {
                let list = array.as_fixed_size_list();
                let child = to_f32(list.values().as_ref(), &mut *self)?;
                let width = list.value_length() as usize;
                for i in 0..list.len() {
                    if list.is_null(i) {
                        return Err(self.null_row());
                    }
                    let start = list.value_offset_at(i);
                    self.push(&child, list.values().as_ref(), start, start + width)?;
                }
            }
            other => {
                return Err(Error::format(self.path, format!("column {:?}", self.column), format!("has type {other}; embeddings must be a list of numbers")))
            }
        }
        Ok(())
    }
}

/// Converts a list's child array to f32. A finite f64 beyond f32's range is noted in
/// `at.overflow`, for [`Collector::push`] to name its row and component.
fn to_f32<'c>(child: &'c dyn Array, at: &mut Collector<'_>) -> Result<Cow<'c, [f32]>> {
    fn conv<T: ArrowPrimitiveType>(a: &dyn Array, f: impl Fn(T::Native) -> f32) -> Cow<'static, [f32]> {
        Cow::Owned(a.as_primitive::<T>().values().iter().map(|&v| f(v)).collect())
    }
    Ok(match child.data_type() {
        // Read in place: no copy of the batch's values besides the matrix itself.
        DataType::Float32 => Cow::Borrowed(&child.as_primitive::<Float32Type>().values()[..]),
        DataType::Float64 => {
            let values = child.as_primitive::<Float64Type>().values();
            at.overflow = values.iter().position(|v| v.is_finite() && !(*v as f32).is_finite()).map(|p| (p, values[p]));
            conv::<Float64Type>(child, |v| v as f32)
        }
        DataType::Float16 => conv::<Float16Type>(child, |v| v.to_f32()),
        DataType::Int8 => conv::<Int8Type>(child, f32::from),
        DataType::Int16 => conv::<Int16Type>(child, f32::from),
        DataType::Int32 => conv::<Int32Type>(child, |v| v as f32),
        DataType::Int64 => conv::<Int64Type>(child, |v| v as f32),
        DataType::UInt8 => conv::<UInt8Type>(child, f32::from),
        DataType::UInt16 => conv::<UInt16Type>(child, f32::from),
        DataType::UInt32 => conv::<UInt32Type>(child, |v| v as f32),
        DataType::UInt64 => conv::<UInt64Type>(child, |v| v as f32),
        other => return Err(Error::format(at.path, format!("column {:?}", at.column), format!("holds lists of {other}; embeddings must be numbers"))),
    })
}

/// The validated `n × d` matrix in `column` (index `index`) across `batches`: no null rows or
/// components, every row as long as row 0, every value finite, at least one row.
#[cfg(test)]
pub(crate) fn extract(batches: &[arrow_array::RecordBatch], index: usize, column: &str, path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let mut c = Collector::new(path, column, batches.iter().map(arrow_array::RecordBatch::num_rows).sum());
    for b in batches {
        c.push_column(b.column(index).as_ref())?;
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Float64Builder, ListBuilder};
    use arrow_array::RecordBatch;
    use std::sync::Arc;

    fn batch(rows: &[Option<Vec<Option<f64>>>]) -> RecordBatch {
        let mut b = ListBuilder::new(Float64Builder::new());
        for r in rows {
            match r {
                Some(v) => {
                    for x in v {
                        b.values().append_option(*x);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        RecordBatch::try_from_iter([("e", Arc::new(b.finish()) as _)]).unwrap()
    }

    #[test]
    fn errors_name_row_and_component() {
        let p = Path::new("t.parquet");
        let ok = batch(&[Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(3.0), Some(4.0)])]);
        assert_eq!(extract(&[ok.clone(), ok], 0, "e", p).unwrap(), (vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0], 4, 2));

        let ragged = batch(&[Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(3.0)])]);
        let e = extract(&[ragged], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("row 1 has 1 values, expected 2"), "{e}");

        let null_row = batch(&[Some(vec![Some(1.0)]), None]);
        let e = extract(&[null_row], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("null"), "{e}");

        let null_item = batch(&[Some(vec![Some(1.0), None])]);
        let e = extract(&[null_item], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("component 1 is null"), "{e}");

        let nan = batch(&[Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(f64::NAN), Some(2.0)])]);
        let e = extract(&[nan], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("row 1, component 0 is NaN"), "{e}");

        let big = batch(&[Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(3.0), Some(1e300)])]);
        let e = extract(&[big], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("component 1 is 1e300, which overflows float32"), "{e}");

        let e = extract(&[batch(&[])], 0, "e", p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn column_checks() {
        let p = Path::new("t.parquet");
        let schema = Schema::new(vec![
            arrow_schema::Field::new("text", DataType::Utf8, true),
            arrow_schema::Field::new("e", DataType::new_list(DataType::Float32, true), true),
        ]);
        assert_eq!(find_column(&schema, "e", p).unwrap(), 1);
        let e = find_column(&schema, "vec", p).unwrap_err();
        assert!(matches!(&e, Error::MissingColumn { available, .. } if available == &["text", "e"]), "{e}");
        assert!(e.to_string().contains("no column \"vec\"; the columns are: \"text\", \"e\""), "{e}");
        let e = find_column(&schema, "text", p).unwrap_err().to_string();
        assert!(e.contains("Utf8"), "{e}");
    }
}
