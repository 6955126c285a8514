//! Parquet output with its columns encoded in parallel: row groups of about 16 MiB of input, a
//! few at a time (one per thread, at most [`MAX_WINDOW`]), every top-level column of those
//! groups encoded (levels, pages, compression) as its own task, then the finished column chunks
//! appended in order. At large k the two neighbour columns hold most of the bytes (10,000 rows
//! × k = 1000 is 20 million list entries), and one thread encoding and compressing them was
//! most of the write.

use super::write::other;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{FieldRef, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bytes of input per row group: every row group is encoded in memory before it is written (up
/// to [`MAX_WINDOW`] at a time), so this bounds the writer's memory; a default of a million
/// rows would hold a second copy of a 1M × 384 embedding column.
const ROW_GROUP_BYTES: usize = 16 << 20;

/// Row groups encoded at once, at most: with many cores the window's encoded pages (held in
/// memory until appended) stay within 4 × ROW_GROUP_BYTES, and 4 groups × their columns are
/// already tasks enough for the threads.
const MAX_WINDOW: usize = 4;

/// Bytes of a column's input whose levels are computed at once (see [`Job::run`]).
const LEVEL_SLICE_BYTES: usize = 1 << 20;

/// Writes `batches` (all of `schema`) to `file` as Parquet: ZSTD, no dictionaries, row groups of
/// about [`ROW_GROUP_BYTES`], columns encoded on up to `threads` threads.
pub(super) fn write_parquet(file: &mut std::fs::File, schema: SchemaRef, batches: &[RecordBatch], threads: usize) -> std::io::Result<()> {
    write_row_groups(file, schema, batches, threads, ROW_GROUP_BYTES)
}

/// [`write_parquet`] with row groups of about `group_bytes` bytes of input.
fn write_row_groups(file: &mut std::fs::File, schema: SchemaRef, batches: &[RecordBatch], threads: usize, group_bytes: usize) -> std::io::Result<()> {
    // No dictionary encoding: embeddings are distinct floats, and a dictionary of millions of
    // them would be built (in memory) only to be abandoned.
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).set_dictionary_enabled(false).build();
    // ArrowWriter lays out the file (the Parquet schema and the Arrow schema in the footer);
    // the row groups are then encoded here.
    let (mut file_writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props)).and_then(|w| w.into_serialized_writer()).map_err(other)?;
    // Row groups of about `group_bytes` of input each: wide batches are cut into slices, and
    // consecutive slices (the readers make batches of at most 8,192 rows) are gathered into one
    // group until it holds that much.
    let mut groups: Vec<Vec<RecordBatch>> = Vec::new();
    let mut open = (Vec::new(), 0usize);
    for b in batches {
        let bytes: usize = b.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
        let rows = rows_per_slice(b.num_rows(), bytes, group_bytes);
        for start in (0..b.num_rows()).step_by(rows) {
            let slice = b.slice(start, rows.min(b.num_rows() - start));
            let slice_bytes = bytes * slice.num_rows() / b.num_rows();
            if !open.0.is_empty() && open.1 + slice_bytes > group_bytes {
                groups.push(std::mem::take(&mut open.0));
                open.1 = 0;
            }
            open.0.push(slice);
            open.1 += slice_bytes;
        }
    }
    if !open.0.is_empty() {
        groups.push(open.0);
    }
    // The leaf columns (writers) of each top-level column, in schema order.
    let descr = file_writer.schema_descr();
    let roots: Vec<usize> = (0..descr.num_columns()).map(|i| descr.get_column_root_idx(i)).collect();
    // Up to one row group per thread is encoded at a time (one column, e.g. the neighbours'
    // indices, can hold half the bytes of a group), one task per top-level column of each,
    // then appended in order.
    let threads = threads.max(1);
    let window = threads.min(MAX_WINDOW);
    let columns = schema.fields().len();
    for (w, groups) in groups.chunks(window).enumerate() {
        let mut jobs = Vec::new();
        for (g, slices) in groups.iter().enumerate() {
            let mut writers: Vec<Vec<ArrowColumnWriter>> = (0..columns).map(|_| Vec::new()).collect();
            for (writer, &root) in factory.create_column_writers(w * window + g).map_err(other)?.into_iter().zip(&roots) {
                writers[root].push(writer);
            }
            for (c, (field, writers)) in schema.fields().iter().zip(writers).enumerate() {
                jobs.push(Job { field, parts: slices.iter().map(|s| s.column(c)).collect(), writers });
            }
        }
        let mut encoded = encode(jobs, threads).map_err(other)?.into_iter();
        for _ in groups {
            let mut row_group = file_writer.next_row_group().map_err(other)?;
            for chunk in encoded.by_ref().take(columns).flatten() {
                chunk.append_to_row_group(&mut row_group).map_err(other)?;
            }
            row_group.close().map_err(other)?;
        }
    }
    file_writer.into_inner().map_err(other)?.flush()
}

/// Rows per slice of about `target` bytes, of `rows` rows that hold `bytes` bytes in all: at
/// least one, at most all of them (all of them when `bytes` is 0).
fn rows_per_slice(rows: usize, bytes: usize, target: usize) -> usize {
    rows.saturating_mul(target).checked_div(bytes).unwrap_or(rows).clamp(1, rows.max(1))
}

/// One top-level column of one row group: its array (in consecutive parts) and the writers of
/// its leaf columns.
struct Job<'a> {
    field: &'a FieldRef,
    parts: Vec<&'a ArrayRef>,
    writers: Vec<ArrowColumnWriter>,
}

impl Job<'_> {
    /// The column's leaves (their repetition and definition levels), part by part, and their
    /// encoding.
    fn run(mut self) -> Encoded {
        for part in &self.parts {
            // Levels are computed a slice of rows at a time: a list column's repetition and
            // definition levels take 4 bytes per value, as much as f32 values themselves, and
            // for a whole part (up to a row group) they would double the group in memory.
            let bytes = part.to_data().get_slice_memory_size().unwrap_or(0);
            let rows = rows_per_slice(part.len(), bytes, LEVEL_SLICE_BYTES);
            for start in (0..part.len()).step_by(rows) {
                let slice = part.slice(start, rows.min(part.len() - start));
                let leaves = compute_leaves(self.field, &slice)?;
                if leaves.len() != self.writers.len() {
                    return Err(ParquetError::General(format!("column {}: {} leaves for {} writers", self.field.name(), leaves.len(), self.writers.len())));
                }
                for (w, leaf) in self.writers.iter_mut().zip(leaves) {
                    w.write(&leaf)?;
                }
            }
        }
        self.writers.into_iter().map(|w| w.close()).collect()
    }
}

/// One top-level column's chunks, or why it could not be encoded.
type Encoded = Result<Vec<ArrowColumnChunk>, ParquetError>;

/// Runs every job on up to `threads` threads taking jobs in order; the chunks come back in the
/// jobs' order.
fn encode(jobs: Vec<Job<'_>>, threads: usize) -> Result<Vec<Vec<ArrowColumnChunk>>, ParquetError> {
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        return jobs.into_iter().map(Job::run).collect();
    }
    let n = jobs.len();
    let jobs: Vec<Mutex<Option<Job<'_>>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let done: Vec<Mutex<Option<Encoded>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let job = jobs[i].lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(job) = job {
                    *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(job.run());
                }
            });
        }
    });
    done.into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| Err(ParquetError::General("a column was not encoded".into()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, ListArray, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    /// A table with a nested column of two leaves (a struct) between single-leaf ones, so that
    /// writers are matched to their top-level columns, and lists of uneven lengths with nulls.
    fn table(rows: usize) -> (SchemaRef, RecordBatch) {
        let inner = Fields::from(vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Utf8, true)]);
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("meta", DataType::Struct(inner.clone()), true),
            Field::new("vec", DataType::List(item.clone()), true),
        ]));
        let id = Int64Array::from_iter_values(0..rows as i64);
        let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7));
        let b = StringArray::from_iter((0..rows).map(|i| (i % 3 != 0).then(|| format!("row {i}"))));
        let meta = StructArray::new(inner, vec![Arc::new(a), Arc::new(b)], None);
        let lists = (0..rows).map(|i| (i % 5 != 4).then(|| (0..i % 7).map(|j| Some((i * j) as f32)).collect::<Vec<_>>()));
        let vec = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>(lists);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(id), Arc::new(meta), Arc::new(vec)]).unwrap();
        (schema, batch)
    }

    /// Writes `batches`, reads the file back, checks it equals `whole`, returns its row groups.
    fn round_trip(schema: &SchemaRef, whole: &RecordBatch, batches: &[RecordBatch], threads: usize, group_bytes: usize) -> usize {
        let mut file = tempfile::tempfile().unwrap();
        write_row_groups(&mut file, schema.clone(), batches, threads, group_bytes).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let groups = reader.metadata().num_row_groups();
        let mut offset = 0;
        for read in reader.build().unwrap() {
            let read = read.unwrap();
            assert_eq!(read.schema().fields(), schema.fields(), "threads {threads}");
            let want = whole.slice(offset, read.num_rows());
            for c in 0..schema.fields().len() {
                assert_eq!(read.column(c).as_ref(), want.column(c).as_ref(), "column {c}, rows from {offset}, threads {threads}");
            }
            offset += read.num_rows();
        }
        assert_eq!(offset, whole.num_rows(), "threads {threads}");
        groups
    }

    #[test]
    fn slices_hold_about_the_target_bytes() {
        assert_eq!(rows_per_slice(1000, 4000, 400), 100);
        assert_eq!(rows_per_slice(1000, 4000, 1 << 20), 1000, "never more than all rows");
        assert_eq!(rows_per_slice(1000, 1 << 30, 1), 1, "at least one row");
        assert_eq!(rows_per_slice(1000, 0, 400), 1000, "no bytes: one slice");
        assert_eq!(rows_per_slice(0, 0, 400), 1);
        assert_eq!(rows_per_slice(usize::MAX, usize::MAX, 1 << 20), 1, "saturates (a smaller slice), no overflow");
    }

    #[test]
    fn parallel_row_groups_read_back_as_written() {
        let (schema, batch) = table(1000);
        let halves = [batch.slice(0, 600), batch.slice(600, 400)];
        for threads in [1, 2, 3, 8] {
            // Small groups: the batches are cut, many groups encoded in windows.
            let groups = round_trip(&schema, &batch, &halves, threads, 2048);
            assert!(groups > 8, "{groups} row groups");
        }
    }

    #[test]
    fn large_parts_are_levelled_in_slices() {
        // One group of several MiB: each column's levels are computed a slice of rows at a
        // time (LEVEL_SLICE_BYTES), the row group and its contents unchanged.
        let (schema, batch) = table(300_000);
        assert!(batch.column(2).to_data().get_slice_memory_size().unwrap() > 2 * LEVEL_SLICE_BYTES, "the list column spans several slices");
        for threads in [1, 2] {
            assert_eq!(round_trip(&schema, &batch, std::slice::from_ref(&batch), threads, 1 << 30), 1);
        }
    }

    #[test]
    fn small_batches_are_gathered_into_row_groups() {
        // Readers deliver batches of at most 8,192 rows: narrow rows must not make a row group
        // per batch.
        let (schema, batch) = table(1000);
        let batches: Vec<RecordBatch> = (0..20).map(|i| batch.slice(i * 50, 50)).collect();
        for threads in [1, 2] {
            assert_eq!(round_trip(&schema, &batch, &batches, threads, 1 << 20), 1);
            let bytes: usize = batches.iter().flat_map(|b| b.columns()).map(|c| c.to_data().get_slice_memory_size().unwrap()).sum();
            let groups = round_trip(&schema, &batch, &batches, threads, bytes / 4);
            assert!((4..=6).contains(&groups), "{groups} row groups of about a quarter of the data");
        }
    }
}
