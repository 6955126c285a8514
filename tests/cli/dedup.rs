//! `--threshold`: the dedup from the command line. Output columns, the keep policy by a column,
//! the pair list against the library, JSON Lines, and each bad input refused before anything is
//! written.

use super::fixtures::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use faiss_nn::range::RangeJoin;
use faiss_nn::Metric;
use std::path::Path;
use std::sync::Arc;

fn column<'a>(batches: &'a [RecordBatch], name: &str) -> Vec<&'a ArrayRef> {
    batches.iter().map(|b| b.column(b.schema().index_of(name).unwrap())).collect()
}

fn int64s(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    column(batches, name).iter().flat_map(|c| c.as_primitive::<Int64Type>().values().to_vec()).collect()
}

fn bools(batches: &[RecordBatch], name: &str) -> Vec<bool> {
    column(batches, name).iter().flat_map(|c| (0..c.len()).map(|i| c.as_boolean().value(i)).collect::<Vec<_>>()).collect()
}

/// The small set's rows with a `len` column (text length, as int64) and a few copies of rows
/// 0..5 appended, written to `dir/in.parquet`.
fn with_copies(dir: &Path) -> (std::path::PathBuf, Vec<f32>) {
    let batches = read_parquet(&small_parquet());
    let x: Vec<f32> = float32_lists(&batches, "embedding").concat();
    let mut rows: Vec<Option<Vec<f32>>> = x.chunks(384).map(|r| Some(r.to_vec())).collect();
    for r in 0..5 {
        rows.push(Some(x[r * 384..(r + 1) * 384].to_vec()));
    }
    let path = dir.join("plain.parquet");
    write_parquet(&path, &rows);
    // Add a text column whose length is largest for the copies.
    let plain = read_parquet(&path);
    let n = rows.len();
    let texts: Vec<String> = (0..n).map(|i| if i >= 200 { "a much longer text".to_owned() } else { format!("t{i}") }).collect();
    let b = &plain[0];
    let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow_schema::Field::new("text", DataType::Utf8, false)));
    fields.push(Arc::new(arrow_schema::Field::new("rank", DataType::Int64, false)));
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let mut cols = b.columns().to_vec();
    cols.push(Arc::new(StringArray::from(texts)));
    cols.push(Arc::new(Int64Array::from((0..n as i64).map(|i| 1000 - i).collect::<Vec<_>>())));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let out = dir.join("in.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&out).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::remove_file(&path).unwrap();
    (out, rows.into_iter().flatten().flatten().collect())
}

#[test]
fn dedup_writes_groups_and_pairs_equal_to_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (input, x) = with_copies(dir.path());
    let out = dir.path().join("out.parquet");
    let pairs = dir.path().join("pairs.parquet");
    let r = run(args(&[&"--input", &input, &"--output", &out, &"--threshold", &"0.9", &"--pairs", &pairs]));
    r.assert_ok();
    assert!(r.stderr.contains("pairs pass") && r.stderr.contains("removed"), "{}", r.stderr);
    let got = read_parquet(&out);
    let names: Vec<String> = got[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "embedding", "text", "rank", "dup_group", "keep"]);
    let (group, keep) = (int64s(&got, "dup_group"), bools(&got, "keep"));
    let want = faiss_nn::Dedup::new(0.9).run(&x, 384).unwrap();
    assert_eq!((group.clone(), keep), (want.group.clone(), want.keep.clone()));
    // The copies (rows 200..205) are in the groups of rows 0..5, which keep the first row.
    for c in 0..5 {
        assert_eq!(group[200 + c], group[c]);
        assert!(group[c] <= c as i64);
    }
    let p = read_parquet(&pairs);
    let lib = RangeJoin::new(0.9).metric(Metric::Cosine).run(&x, 384).unwrap();
    assert_eq!(int64s(&p, "i"), lib.i);
    assert_eq!(int64s(&p, "j"), lib.j);
    let scores: Vec<f32> = column(&p, "score").iter().flat_map(|c| c.as_primitive::<Float32Type>().values().to_vec()).collect();
    assert_eq!(scores, lib.score);
    assert_eq!(entries(dir.path()), ["in.parquet", "out.parquet", "pairs.parquet"]);

    // Keep by the longest text: the copies win their groups; by the smallest rank (1000 − row):
    // the last row of each group.
    let r = run(args(&[&"--input", &input, &"--output", &out, &"--threshold", &"0.9", &"--keep", &"max:text", &"-q"]));
    r.assert_ok();
    assert_eq!(r.stderr, "");
    let g = int64s(&read_parquet(&out), "dup_group");
    for (c, &kept) in g.iter().take(5).enumerate() {
        assert_eq!(kept, 200 + c as i64, "row {c}'s group keeps its longer copy");
    }
    run(args(&[&"--input", &input, &"--output", &out, &"--threshold", &"0.9", &"--keep", &"min:rank"])).assert_ok();
    let g = int64s(&read_parquet(&out), "dup_group");
    for (r, &k) in g.iter().enumerate() {
        let members: Vec<usize> = (0..g.len()).filter(|&s| g[s] == k).collect();
        assert_eq!(k, *members.iter().max().unwrap() as i64, "row {r}");
    }
}

#[test]
fn dedup_to_jsonl_by_default_name_and_l2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("v.npy");
    // 40 rows: 20 points and a copy of each, 1e-3 apart.
    let x: Vec<f32> = (0..40).flat_map(|i| [(i % 20) as f32, (i / 20) as f32 * 1e-3]).collect();
    write_npy_f32(&input, &x, 2);
    let r = run(args(&[&"--input", &input, &"--threshold", &"0.01", &"--metric", &"l2"]));
    r.assert_ok();
    let out = dir.path().join("v.dedup.parquet");
    let b = read_parquet(&out);
    let group = int64s(&b, "dup_group");
    assert_eq!(group, (0..40).map(|i| i % 20).collect::<Vec<i64>>());
    let jsonl = dir.path().join("o.jsonl");
    run(args(&[&"--input", &input, &"--output", &jsonl, &"--threshold", &"0.01", &"--metric", &"l2"])).assert_ok();
    let rows = read_jsonl(&jsonl);
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[25]["dup_group"], 5);
    assert_eq!(rows[25]["keep"], false);
    assert_eq!(rows[5]["keep"], true);
}

#[test]
fn bad_dedup_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = with_copies(dir.path());
    let out = dir.path().join("out.parquet");
    let pairs = dir.path().join("pairs.parquet");
    let fails = |extra: &[&dyn AsRef<std::ffi::OsStr>], needles: &[&str]| {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--input", &input, &"--output", &out];
        a.extend_from_slice(extra);
        run(args(&a)).assert_fails(needles);
        assert_eq!(entries(dir.path()), ["in.parquet"], "{needles:?}");
    };
    fails(&[&"--threshold", &"NaN"], &["threshold", "finite"]);
    fails(&[&"--threshold", &"1.5"], &["selects no pair"]);
    fails(&[&"--threshold", &"-2"], &["selects every pair"]);
    fails(&[&"--threshold", &"0", &"--metric", &"l2"], &["selects no pair"]);
    fails(&[&"--threshold", &"0.9", &"--keep", &"max:nope"], &["no column \"nope\"", "embedding", "text", "--keep max:COLUMN"]);
    fails(&[&"--threshold", &"-0.99", &"--max-pairs", &"100"], &["passes more than max_pairs = 100", "tighter"]);
    fails(&[&"--threshold", &"0.9", &"--pairs", &out], &["also the output"]);
    fails(&[&"--threshold", &"0.9", &"--pairs", &dir.path().join(".").join("out.parquet")], &["also the output"]);
    fails(&[&"--threshold", &"0.9", &"--pairs", &input], &["is the input file", "write the pairs to another file"]);
    fails(&[&"--threshold", &"0.9", &"--metric", &"l1"], &["runs under L2, inner product or cosine"]);
    let missing = dir.path().join("no").join("p.parquet");
    fails(&[&"--threshold", &"0.9", &"--pairs", &missing], &["cannot write"]);
    // Flags that need --threshold, or that a dedup does not take: clap's status 2.
    run(args(&[&"--input", &input, &"--pairs", &pairs])).assert_flag_error(&["--threshold"]);
    // Also beside a flag that conflicts with --threshold (clap alone ran these as a k-NN search).
    run(args(&[&"--input", &input, &"--k", &"2", &"--pairs", &pairs])).assert_flag_error(&["--pairs", "needs --threshold"]);
    run(args(&[&"--input", &input, &"--string-factory", &"HNSW8", &"--keep", &"first"])).assert_flag_error(&["--keep", "needs --threshold"]);
    assert!(!pairs.exists());
    run(args(&[&"--input", &input, &"--threshold", &"0.9", &"--k", &"3"])).assert_flag_error(&["--k"]);
    run(args(&[&"--input", &input, &"--threshold", &"0.9", &"--keep", &"longest"])).assert_flag_error(&["expected first"]);
    // An input with the output columns needs --overwrite.
    run(args(&[&"--input", &input, &"--output", &out, &"--threshold", &"0.9"])).assert_ok();
    let again = dir.path().join("again.parquet");
    run(args(&[&"--input", &out, &"--output", &again, &"--threshold", &"0.9"])).assert_fails(&["already has column", "--overwrite"]);
    run(args(&[&"--input", &out, &"--output", &again, &"--threshold", &"0.9", &"--overwrite"])).assert_ok();
    assert_eq!(int64s(&read_parquet(&again), "dup_group"), int64s(&read_parquet(&out), "dup_group"));
}

#[test]
fn the_demo_prints_duplicate_groups() {
    let r = run(["--threshold", "0.95"]);
    r.assert_ok();
    assert!(r.stdout.contains("duplicate groups of the bundled data set"), "{}", r.stdout);
    assert!(r.stdout.contains("group of 3 rows, keeps row 591") && r.stdout.contains("drop  row  1347"), "{}", r.stdout);
    // On a GPU device the join is still the CPU's, and says so.
    let r = run(["--threshold", "0.95", "--device", "0"]);
    r.assert_ok();
    assert!(r.stderr.contains("runs on the CPU"), "{}", r.stderr);
}

#[test]
fn keep_ranks_a_dictionary_column_by_its_values() {
    // A pandas categorical is a dictionary-encoded column in Parquet.
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, FixedSizeListArray, Float32Array};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cat.parquet");
    let x: Vec<f32> = (0..6).flat_map(|i| [(i / 2) as f32 + 1.0, 1.0]).collect();
    let item = Arc::new(arrow_schema::Field::new("item", DataType::Float32, false));
    let emb = FixedSizeListArray::try_new(item, 2, Arc::new(Float32Array::from(x)), None).unwrap();
    let cat: DictionaryArray<Int32Type> = vec!["bb", "a", "a", "ccc", "c", "aaaa"].into_iter().collect();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("embedding", emb.data_type().clone(), false),
        arrow_schema::Field::new("cat", cat.data_type().clone(), false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(emb), Arc::new(cat)]).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&input).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = dir.path().join("out.parquet");
    // Rows (0, 1), (2, 3), (4, 5) are identical pairs; each keeps its longer text.
    run(args(&[&"--input", &input, &"--output", &out, &"--threshold", &"0.999999", &"--keep", &"max:cat"])).assert_ok();
    assert_eq!(int64s(&read_parquet(&out), "dup_group"), [0, 0, 3, 3, 5, 5]);
}
