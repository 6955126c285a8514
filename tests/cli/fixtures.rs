//! Helpers for the CLI tests: running the binary, writing input files, reading output files.

use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// What a run of the binary did.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Command-line arguments from strings and paths alike.
pub fn args(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_owned()).collect()
}

/// Runs `faiss-nn` with `args`.
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(args, &[])
}

/// Runs `faiss-nn` with `args` and the environment variables `env` set.
pub fn run_env<I, S>(args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_faiss-nn")).args(args).envs(env.iter().copied()).output().expect("the binary runs");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    /// Asserts success, showing stderr otherwise.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok, "faiss-nn failed ({:?}):\n{}", self.code, self.stderr);
        self
    }

    /// Asserts a clean failure of the run: exit status 1 (the documented status of an error;
    /// death by a signal has none), nothing on stdout, an `error:` message containing every
    /// `needle` (case-insensitive), and no panic or backtrace.
    pub fn assert_fails(&self, needles: &[&str]) {
        self.assert_failure(1, needles);
    }

    /// Asserts a flag error: exit status 2 (clap's convention), otherwise as [`Run::assert_fails`].
    pub fn assert_flag_error(&self, needles: &[&str]) {
        self.assert_failure(2, needles);
    }

    fn assert_failure(&self, code: i32, needles: &[&str]) {
        assert!(!self.ok, "expected a failure, got success; stderr:\n{}", self.stderr);
        assert_eq!(self.code, Some(code), "exit status (None: killed by a signal); stderr:\n{}", self.stderr);
        assert_eq!(self.stdout, "", "a failed run printed to stdout");
        assert!(self.stderr.contains("error"), "no error message:\n{}", self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("stack backtrace"), "panicked:\n{}", self.stderr);
        let lower = self.stderr.to_lowercase();
        for n in needles {
            assert!(lower.contains(&n.to_lowercase()), "stderr does not mention {n:?}:\n{}", self.stderr);
        }
    }
}

/// Names of the entries in `dir`, sorted: a failed run must leave only its inputs there.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The 200-row MiniLM fixture (columns package, text, embedding).
pub fn small_parquet() -> PathBuf {
    crate::common::data::repo_root().join("tests/data/small.parquet")
}

/// A `.npy` file (format 1.0) with the given dtype descriptor and raw little-endian data.
pub fn write_npy(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// An `n × d` float32 `.npy` file.
pub fn write_npy_f32(path: &Path, values: &[f32], d: usize) {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(path, "<f4", &format!("({}, {d})", values.len() / d), &data);
}

/// A Parquet file with an `id` column and an `embedding` column (`None` = a null row).
pub fn write_parquet(path: &Path, rows: &[Option<Vec<f32>>]) {
    let mut lists = ListBuilder::new(Float32Builder::new());
    for r in rows {
        match r {
            Some(v) => {
                lists.values().append_slice(v);
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows.len() as i64));
    let batch = RecordBatch::try_from_iter([("id", ids), ("embedding", Arc::new(lists.finish()) as ArrayRef)]).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Every record batch of a Parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(Result::unwrap).collect()
}

/// Column `name` across `batches`, each row mapped by `f`.
fn column<T>(batches: &[RecordBatch], name: &str, f: impl Fn(&dyn Array, usize) -> T) -> Vec<T> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
        out.extend((0..b.num_rows()).map(|i| f(c.as_ref(), i)));
    }
    out
}

/// A `list<int64>` column as rows.
pub fn int64_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<i64>> {
    column(batches, name, |c, i| c.as_list::<i32>().value(i).as_primitive::<Int64Type>().values().to_vec())
}

/// A `list<float32>` column as rows.
pub fn float32_lists(batches: &[RecordBatch], name: &str) -> Vec<Vec<f32>> {
    column(batches, name, |c, i| c.as_list::<i32>().value(i).as_primitive::<Float32Type>().values().to_vec())
}

/// A string column as rows.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    column(batches, name, |c, i| c.as_string::<i32>().value(i).to_owned())
}

/// Lines of a JSON Lines file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}"))).collect()
}
