//! Parquet output with its columns encoded in parallel: a few row groups at a time (one per
//! thread, at most [`MAX_WINDOW`]), every top-level column of those groups encoded (levels,
//! pages, compression) as its own task, then the finished column chunks appended in order. At
//! large k the two neighbour columns hold most of the bytes (10,000 rows × k = 1000 is 20
//! million list entries), and one thread encoding and compressing them was most of the write.

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

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

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
    // Row groups: slices of the batches of about ROW_GROUP_BYTES each.
    let mut slices = Vec::new();
    for b in batches {
        let bytes: usize = b.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
        let rows = (b.num_rows() * group_bytes).checked_div(bytes).unwrap_or(b.num_rows()).clamp(1, b.num_rows().max(1));
        slices.extend((0..b.num_rows()).step_by(rows).map(|start| b.slice(start, rows.min(b.num_rows() - start))));
    }
    // The leaf columns (writers) of each top-level column, in schema order.
    let descr = file_writer.schema_descr();
    let roots: Vec<usize> = (0..descr.num_columns()).map(|i| descr.get_column_root_idx(i)).collect();
    // Up to one row group per thread is encoded at a time (one column, e.g. the neighbours'
    // indices, can hold half the bytes of a group), one task per top-level column of each,
    // then appended in order.
    let threads = threads.max(1);
    let groups = threads.min(MAX_WINDOW);
    for (w, window) in slices.chunks(groups).enumerate() {
        let mut jobs = Vec::new();
        for (g, slice) in window.iter().enumerate() {
            let mut writers: Vec<Vec<ArrowColumnWriter>> = (0..schema.fields().len()).map(|_| Vec::new()).collect();
            for (writer, &root) in factory.create_column_writers(w * groups + g).map_err(other)?.into_iter().zip(&roots) {
                writers[root].push(writer);
            }
            jobs.extend(schema.fields().iter().zip(slice.columns()).zip(writers).map(|((f, c), w)| Job { field: f, column: c, writers: w }));
        }
        let columns_per_group = schema.fields().len();
        let mut encoded = encode(jobs, threads).map_err(other)?.into_iter();
        for _ in window {
            let mut row_group = file_writer.next_row_group().map_err(other)?;
            for chunk in encoded.by_ref().take(columns_per_group).flatten() {
                chunk.append_to_row_group(&mut row_group).map_err(other)?;
            }
            row_group.close().map_err(other)?;
        }
    }
    file_writer.into_inner().map_err(other)?.flush()
}

/// One top-level column of one row group: its array and the writers of its leaf columns.
struct Job<'a> {
    field: &'a FieldRef,
    column: &'a ArrayRef,
    writers: Vec<ArrowColumnWriter>,
}

impl Job<'_> {
    /// The column's leaves (their repetition and definition levels) and their encoding.
    fn run(self) -> Encoded {
        let leaves = compute_leaves(self.field, self.column)?;
        if leaves.len() != self.writers.len() {
            return Err(ParquetError::General(format!("column {}: {} leaves for {} writers", self.field.name(), leaves.len(), self.writers.len())));
        }
        self.writers.into_iter().zip(leaves).map(|(mut w, leaf)| w.write(&leaf).and_then(|()| w.close())).collect()
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

    #[test]
    fn parallel_row_groups_read_back_as_written() {
        let (schema, batch) = table(1000);
        let halves = [batch.slice(0, 600), batch.slice(600, 400)];
        for threads in [1, 2, 3, 8] {
            let mut file = tempfile::tempfile().unwrap();
            write_row_groups(&mut file, schema.clone(), &halves, threads, 2048).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let groups = reader.metadata().num_row_groups();
            assert!(groups > 3, "{groups} row groups");
            let mut offset = 0;
            for read in reader.build().unwrap() {
                let read = read.unwrap();
                assert_eq!(read.schema().fields(), schema.fields(), "threads {threads}");
                let want = batch.slice(offset, read.num_rows());
                for c in 0..schema.fields().len() {
                    let (got, want) = (read.column(c), want.column(c));
                    assert_eq!(got.as_ref(), want.as_ref(), "column {c}, rows from {offset}, threads {threads}");
                }
                offset += read.num_rows();
            }
            assert_eq!(offset, 1000, "threads {threads}");
        }
    }
}
