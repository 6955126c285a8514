//! Round trips through the readers and writers, without a search (neighbours made up here).

use super::*;
use crate::neighbours::Neighbours;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_schema::DataType;
use std::fs;

fn nn(n: usize, k: usize, score: impl Fn(usize) -> f32) -> Neighbours {
    Neighbours { n, k, indices: (0..n * k).map(|i| ((i / k + 1 + i % k) % n) as i64).collect(), scores: (0..n * k).map(score).collect() }
}

#[test]
fn jsonl_keeps_columns_in_file_order_and_writes_inf_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(
        &input,
        "{\"zid\": 1, \"embedding\": [1, 2.5], \"name\": \"a\"}\n\
         {\"zid\": 2, \"embedding\": [3, 4], \"name\": \"b\", \"extra\": true}\n\
         \n{\"zid\": 3, \"embedding\": [5, 6], \"name\": null}\n\n",
    )
    .unwrap();
    let data = read_embeddings(&input, "embedding").unwrap();
    assert_eq!((data.n, data.d), (3, 2));
    assert_eq!(data.embeddings, [1.0, 2.5, 3.0, 4.0, 5.0, 6.0]);
    let names: Vec<&str> = data.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["zid", "embedding", "name", "extra"]);

    // Unfilled slots hold +inf (distances) or -inf (similarities): both must become null.
    let out = dir.path().join("out.jsonl");
    let scores = |i: usize| [0.5, f32::INFINITY, f32::NEG_INFINITY][i % 3];
    write_with_neighbours(&data, &nn(3, 3, scores), &out).unwrap();
    let text = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("{\"zid\":1,\"embedding\":"), "{}", lines[0]);
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("every line is valid JSON");
        assert_eq!(v["nn_scores"], serde_json::json!([0.5, null, null]), "{line}");
        assert_eq!(v["nn_indices"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn jsonl_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let err = |text: &str| {
        fs::write(&input, text).unwrap();
        read_embeddings(&input, "embedding").unwrap_err().to_string()
    };
    let e = err("{\"embedding\": [1, 2]}\n{\"embedding\": [1, 2]}\n{\"embedding\": [1]}\n");
    assert!(e.contains("line 3") && e.contains("ragged") && e.contains("line 1"), "{e}");
    let e = err("{\"embedding\": [1, 2]}\n{\"embedding\": [1, \"x\"]}\n");
    assert!(e.contains("line 2") && e.contains("component 1 is a string"), "{e}");
    let e = err("{\"embedding\": [1, 2]}\n{\"vec\": [1, 2], \"id\": 3}\n");
    assert!(e.contains("line 2") && e.contains("\"vec\"") && e.contains("\"id\""), "{e}");
    // One line without the field is that line's fault, not a missing column.
    assert!(e.contains("this line has no \"embedding\" field (earlier lines have one)") && !e.contains("--column"), "{e}");
    // Text after a whole object is not blamed on its last field.
    let e = err("{\"embedding\": [1, 2]},\n");
    assert!(e.contains("line 1") && e.contains("more text after the object ends") && !e.contains("in field"), "{e}");
    let e = err("{\"embedding\": [1, 2]}\n{\"embedding\": null}\n");
    assert!(e.contains("line 2") && e.contains("null"), "{e}");
    let e = err("{\"embedding\": [1, 2]}\n{\"embedding\": [1, 2e39]}\n");
    assert!(e.contains("line 2") && e.contains("finite"), "{e}");
    let e = err("{\"embedding\": [1, 2]}\n{\"embedding\": [1, 2]\n");
    assert!(e.contains("line 2") && e.contains("invalid JSON"), "{e}");
    let e = err("[{\"embedding\": [1, 2]}]\n");
    assert!(e.contains("line 1") && e.contains("not a JSON array"), "{e}");
    let e = err("[1, 2]\n");
    assert!(e.contains("line 1") && e.contains("expected a JSON object"), "{e}");
    assert!(err("\n\n").contains("empty"));
    assert!(err("").contains("empty"));
    assert!(err("{\"embedding\": []}").contains("empty array"));
}

#[test]
fn npy_to_parquet_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.npy");
    let values = [0.0f32, 0.0, 1.0, 0.0, 0.0, 3.0, 4.0, 4.0];
    npy_file(&input, "<f4", false, (4, 2), &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());

    // The column is named as asked (the CLI's default is "embedding").
    let named = read_embeddings(&input, "vec").unwrap();
    assert_eq!(named.schema.field(0).name(), "vec");
    let data = read_embeddings(&input, "embedding").unwrap();
    assert_eq!((data.n, data.d, &data.embeddings[..]), (4, 2, &values[..]));
    let out = dir.path().join("m.nn.parquet");
    write_with_neighbours(&data, &nn(4, 2, |i| i as f32), &out).unwrap();

    let back = read_embeddings(&out, "embedding").unwrap();
    assert_eq!(back.embeddings, values);
    let names: Vec<&str> = back.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["embedding", NN_INDICES, NN_SCORES]);
    let b = &back.batches[0];
    let idx = b.column(1).as_list::<i32>();
    assert_eq!(idx.value_type(), DataType::Int64);
    assert_eq!(idx.value(0).as_primitive::<Int64Type>().values(), &[1, 2]);
    let sc = b.column(2).as_list::<i32>();
    assert_eq!(sc.value(3).as_primitive::<Float32Type>().values(), &[6.0, 7.0]);

    // Writing the output again is refused (it would overwrite the neighbour columns) unless
    // the earlier columns are dropped first; then they are replaced, not duplicated.
    let again = dir.path().join("again.parquet");
    let e = write_with_neighbours(&back, &nn(4, 1, |_| 1.0), &again).unwrap_err().to_string();
    assert!(e.contains("already has column(s) \"nn_indices\" and \"nn_scores\""), "{e}");
    assert!(!again.exists());
    let mut back = back;
    back.drop_neighbour_columns().unwrap();
    write_with_neighbours(&back, &nn(4, 1, |_| 1.0), &again).unwrap();
    let again = read_embeddings(&again, "embedding").unwrap();
    assert_eq!(again.schema.fields().len(), 3);
    assert_eq!(&again.embeddings[..], &values[..]);
}

#[test]
fn output_is_atomic_and_checked_early() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/out.parquet");
    let e = Output::create(&missing).unwrap_err();
    assert!(matches!(e, crate::Error::Io { .. }) && e.to_string().contains("no/such/dir/out.parquet"), "{e}");
    assert!(e.to_string().contains("directory") && e.to_string().contains("does not exist"), "{e}");
    assert!(Output::create(&dir.path().join("out.csv")).unwrap_err().to_string().contains(".csv"));
    // A directory is named as one, with or without an extension-like name.
    for d in ["outdir", "out.parquet.d", "x.parquet"] {
        fs::create_dir(dir.path().join(d)).unwrap();
        let e = Output::create(&dir.path().join(d)).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{d}: {e}");
        fs::remove_dir(dir.path().join(d)).unwrap();
    }

    // Creating an output checks the directory but leaves no file there until `begin` (the
    // temporary file); a dropped output leaves nothing behind; a failed write neither.
    let out = dir.path().join("out.parquet");
    let mut o = Output::create(&out).unwrap();
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "a file exists before the output is written");
    // The caller learns the name before the file exists (to register it for removal).
    let mut named = Vec::new();
    let temp = o.begin_with(|p| named.push((p.to_path_buf(), p.exists()))).unwrap().to_path_buf();
    assert_eq!(named, [(temp.clone(), false)]);
    assert!(temp.is_file() && temp.file_name().unwrap().to_string_lossy().ends_with(".faiss-nn-tmp"), "{}", temp.display());
    drop(o);
    assert!(!temp.exists());
    let input = dir.path().join("in.jsonl");
    fs::write(&input, "{\"embedding\": [1, 2]}\n{\"embedding\": [3, 4]}\n").unwrap();
    let data = read_embeddings(&input, "embedding").unwrap();
    let wrong = nn(5, 1, |_| 0.0);
    assert!(write_with_neighbours(&data, &wrong, &out).is_err());
    // The dataset's own file is never the output.
    let e = write_with_neighbours(&data, &nn(2, 1, |_| 0.0), &input).unwrap_err().to_string();
    assert!(e.contains("is the input file"), "{e}");
    assert_eq!(fs::read_to_string(&input).unwrap(), "{\"embedding\": [1, 2]}\n{\"embedding\": [3, 4]}\n");
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["in.jsonl"]);
}

/// A `.npy` file of `shape` with the raw `data` under header dtype `descr`.
fn npy_file(path: &std::path::Path, descr: &str, fortran: bool, shape: (usize, usize), data: &[u8]) {
    let order = if fortran { "True" } else { "False" };
    let header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({}, {}), }}", shape.0, shape.1);
    fs::write(path, npy::test_file(1, &header, data)).unwrap();
}

#[test]
fn npy_output_keeps_the_files_own_values() {
    use arrow_array::types::{Float64Type, Int16Type};
    let dir = tempfile::tempdir().unwrap();
    // float64 values that float32 would round, stored big-endian and column by column.
    let rows = [[0.1f64, 1e-30], [2.0 / 3.0, 7.0], [1.0 + 1e-12, -5.5]];
    let mut cols = Vec::new();
    for j in 0..2 {
        for r in &rows {
            cols.extend(r[j].to_be_bytes());
        }
    }
    let input = dir.path().join("f8.npy");
    npy_file(&input, ">f8", true, (3, 2), &cols);
    let data = read_embeddings(&input, "embedding").unwrap();
    assert_eq!(&data.embeddings[..], &rows.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>()[..]);
    for out in ["f8.out.parquet", "f8.out.jsonl"] {
        let out = dir.path().join(out);
        write_with_neighbours(&data, &nn(3, 1, |_| 0.0), &out).unwrap();
        let back = read_embeddings(&out, "embedding").unwrap();
        let col = back.batches[0].column(0).as_list::<i32>();
        assert_eq!(col.value_type(), DataType::Float64, "{}", out.display());
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(col.value(i).as_primitive::<Float64Type>().values(), r, "{} row {i}", out.display());
        }
    }
    // Integers stay integers.
    let input = dir.path().join("i2.npy");
    npy_file(&input, "<i2", false, (2, 2), &[-3i16, 4, 1000, -1000].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let data = read_embeddings(&input, "embedding").unwrap();
    let out = dir.path().join("i2.out.parquet");
    write_with_neighbours(&data, &nn(2, 1, |_| 0.0), &out).unwrap();
    let back = read_embeddings(&out, "embedding").unwrap();
    let col = back.batches[0].column(0).as_list::<i32>();
    assert_eq!(col.value(1).as_primitive::<Int16Type>().values(), &[1000, -1000]);
}

#[test]
fn parquet_of_every_codec_is_read() {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(&input, "{\"t\": \"a\", \"embedding\": [1, 2]}\n{\"t\": \"b\", \"embedding\": [3, 4.5]}\n").unwrap();
    let data = read_embeddings(&input, "embedding").unwrap();
    for codec in [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::LZ4,
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::default()),
        Compression::BROTLI(BrotliLevel::default()),
    ] {
        let path = dir.path().join(format!("{codec:?}.parquet").replace(['(', ')', ' ', '{', '}', ':'], "_"));
        let props = WriterProperties::builder().set_compression(codec).build();
        let mut w = ArrowWriter::try_new(fs::File::create(&path).unwrap(), data.schema.clone(), Some(props)).unwrap();
        for b in &data.batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        let back = read_embeddings(&path, "embedding").unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(&back.embeddings[..], &[1.0, 2.0, 3.0, 4.5], "{codec:?}");
    }
}

#[test]
fn a_column_json_cannot_hold_is_refused_before_the_search() {
    use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema, TimeUnit};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(&input, "{\"embedding\": [1, 2]}\n{\"embedding\": [3, 4]}\n").unwrap();
    let mut data = read_embeddings(&input, "embedding").unwrap();
    // A time zone no database knows: the JSON writer cannot format it (named zones it can).
    let with_zone = |zone: &str, values: Vec<Option<i64>>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(values).with_timezone(zone)) };
    let some = vec![None, Some(1_600_000_000_000_000)];
    // An unknown zone fails also in a column of nulls only: the writer's encoder is per type.
    for (zone, values, ok) in [
        ("Europe/Berlin", some.clone(), true),
        ("+02:00", some.clone(), true),
        ("Mars/Olympus_Mons", some.clone(), false),
        ("Mars/Olympus_Mons", vec![None, None], false),
    ] {
        let field = Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into())), true);
        let mut fields: Vec<_> = data.schema.fields().iter().filter(|f| f.name() != "t").cloned().collect();
        fields.push(Arc::new(field));
        let schema = Arc::new(Schema::new(fields));
        let b = &data.batches[0];
        let all_null = values.iter().all(Option::is_none);
        let columns = vec![b.column(0).clone(), with_zone(zone, values)];
        data.batches = vec![RecordBatch::try_new(schema.clone(), columns).unwrap()];
        data.schema = schema;
        let out = dir.path().join("out.jsonl");
        let checked = Output::create(&out).unwrap().check_columns(&data);
        assert_eq!(checked.is_ok(), ok, "{zone}: {checked:?}");
        if !ok {
            let e = checked.unwrap_err().to_string();
            assert!(e.contains("column \"t\"") && e.contains("Parquet"), "{e}");
            assert!(Output::create(&dir.path().join("out.parquet")).unwrap().check_columns(&data).is_ok());
            // Writing it anyway fails before a file exists.
            assert!(write_with_neighbours(&data, &nn(2, 1, |_| 0.0), &out).is_err());
            assert!(!out.exists(), "{zone}, all null {all_null}");
        } else {
            write_with_neighbours(&data, &nn(2, 1, |_| 0.0), &out).unwrap();
            let text = fs::read_to_string(&out).unwrap();
            assert!(text.lines().nth(1).unwrap().contains("\"t\":\"2020-09-13T"), "{text}");
            fs::remove_file(&out).unwrap();
        }
    }
}
