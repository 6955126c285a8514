//! A column of a table as the values that rank rows for the dedup's keep policy
//! ([`crate::dedup::Keep`]): numbers by value, dates and times by their instant, booleans as 0/1,
//! text, binary and lists by their length.

use super::dataset::Dataset;
use crate::dedup::RankValues;
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

/// How a column's values are ranked.
enum Kind {
    Int,
    UInt,
    Float,
}

impl Dataset {
    /// The values of `column` that rank rows for [`crate::dedup::Keep::Largest`] /
    /// [`crate::dedup::Keep::Smallest`]: integers, floats and decimals by value; dates, times,
    /// timestamps and durations by value in their unit; booleans as 0 / 1; strings by their
    /// length in characters; binary values and lists by their length; a dictionary-encoded
    /// column by its values. Nulls rank last.
    ///
    /// Errors: no such column (naming those there are), two columns of that name, or a type
    /// with no order (structs, maps, unions, intervals…).
    pub fn rank_values(&self, column: &str) -> Result<RankValues> {
        let fields = self.schema.fields();
        let found: Vec<usize> = (0..fields.len()).filter(|&i| fields[i].name() == column).collect();
        let c = match found[..] {
            [c] => c,
            [] => {
                return Err(Error::MissingColumn {
                    path: self.path.clone(),
                    location: "keep".into(),
                    column: column.into(),
                    available: fields.iter().map(|f| f.name().clone()).collect(),
                })
            }
            _ => return Err(Error::invalid("keep", format!("{} columns of {} are named {column:?}; rename all but one", found.len(), self.path.display()))),
        };
        // A dictionary-encoded column (a pandas categorical) ranks by its values.
        let (data_type, encoded) = match fields[c].data_type() {
            DataType::Dictionary(_, values) => (values.as_ref(), true),
            t => (t, false),
        };
        let kind = kind_of(data_type).ok_or_else(|| {
            Error::invalid(
                "keep",
                format!(
                    "column {column:?} of {} has type {data_type}, which has no order; rank by a column of numbers, dates, times, \
                     booleans, text (by length) or lists (by length)",
                    self.path.display()
                ),
            )
        })?;
        let columns: Vec<ArrayRef> = self
            .batches
            .iter()
            .map(|b| if encoded { arrow_cast::cast(b.column(c), data_type) } else { Ok(b.column(c).clone()) })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid("keep", format!("column {column:?}: {e}")))?;
        let columns = columns.iter();
        Ok(match kind {
            Kind::Int => RankValues::Int(columns.flat_map(ints).collect()),
            Kind::UInt => RankValues::UInt(columns.flat_map(uints).collect()),
            Kind::Float => RankValues::Float(columns.flat_map(floats).collect()),
        })
    }
}

fn kind_of(t: &DataType) -> Option<Kind> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | Int64 | Boolean | Date32 | Date64 | Time32(_) | Time64(_) | Timestamp(_, _) | Duration(_) => Kind::Int,
        Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Kind::Int,
        List(_) | LargeList(_) | FixedSizeList(_, _) | ListView(_) | LargeListView(_) => Kind::Int,
        UInt8 | UInt16 | UInt32 | UInt64 => Kind::UInt,
        Float16 | Float32 | Float64 | Decimal32(_, _) | Decimal64(_, _) | Decimal128(_, _) | Decimal256(_, _) => Kind::Float,
        _ => return None,
    })
}

/// `Some(f(i))` for valid slots, `None` for nulls.
fn each<T>(a: &dyn Array, f: impl Fn(usize) -> T) -> Vec<Option<T>> {
    (0..a.len()).map(|i| a.is_valid(i).then(|| f(i))).collect()
}

fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
    use DataType::*;
    let a = a.as_ref();
    match a.data_type() {
        Int8 => each(a, |i| a.as_primitive::<Int8Type>().value(i) as i64),
        Int16 => each(a, |i| a.as_primitive::<Int16Type>().value(i) as i64),
        Int32 => each(a, |i| a.as_primitive::<Int32Type>().value(i) as i64),
        Int64 => each(a, |i| a.as_primitive::<Int64Type>().value(i)),
        Boolean => each(a, |i| a.as_boolean().value(i) as i64),
        Date32 => each(a, |i| a.as_primitive::<Date32Type>().value(i) as i64),
        Date64 => each(a, |i| a.as_primitive::<Date64Type>().value(i)),
        Time32(TimeUnit::Second) => each(a, |i| a.as_primitive::<Time32SecondType>().value(i) as i64),
        Time32(_) => each(a, |i| a.as_primitive::<Time32MillisecondType>().value(i) as i64),
        Time64(TimeUnit::Microsecond) => each(a, |i| a.as_primitive::<Time64MicrosecondType>().value(i)),
        Time64(_) => each(a, |i| a.as_primitive::<Time64NanosecondType>().value(i)),
        // A timestamp column has one unit: its raw values order its instants.
        Timestamp(TimeUnit::Second, _) => each(a, |i| a.as_primitive::<TimestampSecondType>().value(i)),
        Timestamp(TimeUnit::Millisecond, _) => each(a, |i| a.as_primitive::<TimestampMillisecondType>().value(i)),
        Timestamp(TimeUnit::Microsecond, _) => each(a, |i| a.as_primitive::<TimestampMicrosecondType>().value(i)),
        Timestamp(TimeUnit::Nanosecond, _) => each(a, |i| a.as_primitive::<TimestampNanosecondType>().value(i)),
        Duration(TimeUnit::Second) => each(a, |i| a.as_primitive::<DurationSecondType>().value(i)),
        Duration(TimeUnit::Millisecond) => each(a, |i| a.as_primitive::<DurationMillisecondType>().value(i)),
        Duration(TimeUnit::Microsecond) => each(a, |i| a.as_primitive::<DurationMicrosecondType>().value(i)),
        Duration(TimeUnit::Nanosecond) => each(a, |i| a.as_primitive::<DurationNanosecondType>().value(i)),
        Utf8 => each(a, |i| a.as_string::<i32>().value(i).chars().count() as i64),
        LargeUtf8 => each(a, |i| a.as_string::<i64>().value(i).chars().count() as i64),
        Utf8View => each(a, |i| a.as_string_view().value(i).chars().count() as i64),
        Binary => each(a, |i| a.as_binary::<i32>().value(i).len() as i64),
        LargeBinary => each(a, |i| a.as_binary::<i64>().value(i).len() as i64),
        BinaryView => each(a, |i| a.as_binary_view().value(i).len() as i64),
        FixedSizeBinary(w) => each(a, |_| *w as i64),
        List(_) => each(a, |i| a.as_list::<i32>().value_length(i) as i64),
        LargeList(_) => each(a, |i| a.as_list::<i64>().value_length(i)),
        FixedSizeList(_, w) => each(a, |_| *w as i64),
        ListView(_) => each(a, |i| a.as_list_view::<i32>().value_size(i) as i64),
        LargeListView(_) => each(a, |i| a.as_list_view::<i64>().value_size(i)),
        _ => vec![None; a.len()],
    }
}

fn uints(a: &ArrayRef) -> Vec<Option<u64>> {
    use DataType::*;
    let a = a.as_ref();
    match a.data_type() {
        UInt8 => each(a, |i| a.as_primitive::<UInt8Type>().value(i) as u64),
        UInt16 => each(a, |i| a.as_primitive::<UInt16Type>().value(i) as u64),
        UInt32 => each(a, |i| a.as_primitive::<UInt32Type>().value(i) as u64),
        UInt64 => each(a, |i| a.as_primitive::<UInt64Type>().value(i)),
        _ => vec![None; a.len()],
    }
}

fn floats(a: &ArrayRef) -> Vec<Option<f64>> {
    use DataType::*;
    let a = a.as_ref();
    // Decimals by their value (scaled), to f64's precision.
    let scaled = |v: f64, scale: i8| v / 10f64.powi(scale as i32);
    match a.data_type() {
        Float16 => each(a, |i| a.as_primitive::<Float16Type>().value(i).to_f64()),
        Float32 => each(a, |i| a.as_primitive::<Float32Type>().value(i) as f64),
        Float64 => each(a, |i| a.as_primitive::<Float64Type>().value(i)),
        Decimal32(_, s) => each(a, |i| scaled(a.as_primitive::<Decimal32Type>().value(i) as f64, *s)),
        Decimal64(_, s) => each(a, |i| scaled(a.as_primitive::<Decimal64Type>().value(i) as f64, *s)),
        Decimal128(_, s) => each(a, |i| scaled(a.as_primitive::<Decimal128Type>().value(i) as f64, *s)),
        Decimal256(_, s) => each(a, |i| scaled(a.as_primitive::<Decimal256Type>().value(i).to_string().parse::<f64>().unwrap_or(f64::NAN), *s)),
        _ => vec![None; a.len()],
    }
}
