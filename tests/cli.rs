//! The `faiss-nn` binary end to end: round trips between formats (every input row and column
//! kept, neighbour columns typed and correct) and, for each kind of bad input, a non-zero exit,
//! a message naming the problem, and no output file left behind.

mod dedup;
#[cfg(feature = "faiss")]
mod faiss_guard;
mod fixtures;
mod whole;

use crate::common::parity::{max_norm2, tolerance};
use crate::common::reference;
use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use faiss_nn::FlatMetric;
use fixtures::*;
use std::ffi::OsString;
use std::path::Path;

/// Checks neighbour lists against the f64 reference: length k, never the row itself, every
/// index a row, no index twice, each reported score equal to the true score of the index
/// reported with it (so a writer that shifted or shuffled lists between rows fails), and scores
/// equal to the reference's position by position (ties may swap indices).
fn check_neighbours(metric: FlatMetric, x: &[f32], d: usize, k: usize, idx: &[Vec<i64>], scores: &[Vec<f32>]) {
    let n = x.len() / d;
    assert_eq!((idx.len(), scores.len()), (n, n));
    let want = reference::knn(metric, x, x, d, k, true);
    let tol = tolerance(max_norm2(x, d));
    for i in 0..n {
        assert_eq!((idx[i].len(), scores[i].len()), (k, k), "row {i}");
        assert!(!idx[i].contains(&(i as i64)), "row {i} is in its own list {:?}", idx[i]);
        assert!(idx[i].iter().all(|&j| (0..n as i64).contains(&j)), "row {i}: {:?}", idx[i]);
        let mut unique = idx[i].clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), k, "row {i} lists an index twice: {:?}", idx[i]);
        for (t, &j) in idx[i].iter().enumerate() {
            let truth = reference::score(metric, &x[i * d..(i + 1) * d], &x[j as usize * d..(j as usize + 1) * d]);
            assert!((scores[i][t] as f64 - truth).abs() <= tol, "row {i} position {t}: index {j} is reported at {} but scores {truth}", scores[i][t]);
        }
        for t in 0..k {
            let (g, w) = (scores[i][t] as f64, want[i][t].1);
            assert!((g - w).abs() <= tol, "row {i} position {t}: score {g}, reference {w}");
        }
    }
}

fn flat(rows: &[Vec<f32>]) -> Vec<f32> {
    rows.concat()
}

// ---------------------------------------------------------------- round trips

#[test]
fn parquet_to_parquet_keeps_every_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let r = run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--k", &"3"]));
    r.assert_ok();
    assert!(r.stderr.contains("200 rows") && r.stderr.contains("384 dims"), "summary missing:\n{}", r.stderr);

    let input = read_parquet(&small_parquet());
    let output = read_parquet(&out);
    let schema = output[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["package", "text", "embedding", "nn_indices", "nn_scores"]);
    assert!(matches!(schema.field(3).data_type(), DataType::List(f) if f.data_type() == &DataType::Int64));
    assert!(matches!(schema.field(4).data_type(), DataType::List(f) if f.data_type() == &DataType::Float32));
    assert_eq!(strings(&output, "package"), strings(&input, "package"));
    assert_eq!(strings(&output, "text"), strings(&input, "text"));
    let x = flat(&float32_lists(&input, "embedding"));
    assert_eq!(flat(&float32_lists(&output, "embedding")), x);
    let (idx, sc) = (int64_lists(&output, "nn_indices"), float32_lists(&output, "nn_scores"));
    check_neighbours(FlatMetric::L2, &x, 384, 3, &idx, &sc);
    assert!(sc.iter().all(|s| s.windows(2).all(|w| w[0] <= w[1])), "L2 scores ascend");
    assert_eq!(entries(dir.path()), ["out.parquet"]);
}

#[test]
fn jsonl_to_jsonl_default_output_name_and_exact_neighbours() {
    // Points 0, 1, 4, 9, … on a line: row i's nearest other row is i − 1 (row 0's is row 1).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pts.jsonl");
    let lines: Vec<String> = (0..12).map(|i| format!("{{\"id\": {i}, \"name\": \"p{i}\", \"embedding\": [{}, 0]}}", i * i)).collect();
    std::fs::write(&input, lines.join("\n") + "\n\n").unwrap();
    run(args(&[&"--input", &input, &"--quiet"])).assert_ok();

    let out = dir.path().join("pts.nn.jsonl");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("{\"id\":0,\"name\":\"p0\",\"embedding\":"), "columns keep their order:\n{text}");
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 12);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], i as i64);
        assert_eq!(row["name"], format!("p{i}"));
        assert_eq!(row["embedding"][0].as_f64(), Some((i * i) as f64));
        let (want, dist) = if i == 0 { (1, 1.0) } else { (i - 1, ((2 * i - 1) * (2 * i - 1)) as f64) };
        assert_eq!(row["nn_indices"], serde_json::json!([want]), "row {i}");
        assert_eq!(row["nn_scores"], serde_json::json!([dist]), "row {i}");
    }
    assert_eq!(entries(dir.path()), ["pts.jsonl", "pts.nn.jsonl"]);
}

#[test]
fn npy_to_parquet_has_an_embedding_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.npy");
    let x = crate::common::data::normal(64, 8, 7);
    let f8: Vec<u8> = x.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
    write_npy(&input, "<f8", "(64, 8)", &f8);
    run(args(&[&"--input", &input, &"--k", &"4"])).assert_ok();

    let out = dir.path().join("m.nn.parquet");
    let output = read_parquet(&out);
    let schema = output[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["embedding", "nn_indices", "nn_scores"]);
    // The file's float64 values are written back as they were, not as the search's float32.
    assert!(matches!(schema.field(0).data_type(), DataType::List(f) if f.data_type() == &DataType::Float64));
    let back: Vec<f64> = output
        .iter()
        .flat_map(|b| {
            let lists = b.column(0).as_list::<i32>();
            (0..lists.len()).flat_map(move |i| lists.value(i).as_primitive::<arrow_array::types::Float64Type>().values().to_vec())
        })
        .collect();
    assert_eq!(back, x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
    check_neighbours(FlatMetric::L2, &x, 8, 4, &int64_lists(&output, "nn_indices"), &float32_lists(&output, "nn_scores"));
}

#[test]
fn parquet_to_jsonl_inner_product() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--k", &"2", &"--metric", &"ip"])).assert_ok();

    let input = read_parquet(&small_parquet());
    let rows = read_jsonl(&out);
    assert_eq!(rows.len(), 200);
    let packages = strings(&input, "package");
    let texts = strings(&input, "text");
    let (mut idx, mut sc) = (Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["package"], packages[i]);
        assert_eq!(row["text"], texts[i]);
        assert_eq!(row["embedding"].as_array().unwrap().len(), 384);
        idx.push(row["nn_indices"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect::<Vec<_>>());
        sc.push(row["nn_scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<_>>());
    }
    let x = flat(&float32_lists(&input, "embedding"));
    check_neighbours(FlatMetric::InnerProduct, &x, 384, 2, &idx, &sc);
    assert!(sc.iter().all(|s| s[0] >= s[1]), "inner products descend");
}

#[test]
fn no_arguments_runs_the_demo() {
    let r = run(std::iter::empty::<&str>());
    r.assert_ok();
    assert!(r.stdout.contains("demo.parquet") && r.stdout.contains("3000 rows"), "{}", r.stdout);
    assert!(r.stdout.contains("row    0") && r.stdout.contains("  3. "), "five rows with three neighbours each:\n{}", r.stdout);
}

#[test]
fn help_lists_the_flags() {
    let r = run(["--help"]);
    r.assert_ok();
    for flag in ["--input", "--output", "--column", "--k", "--metric", "--device", "--string-factory", "--search-batch-size"] {
        assert!(r.stdout.contains(flag), "--help lacks {flag}:\n{}", r.stdout);
    }
}

// ---------------------------------------------------------------- bad input

/// Runs with `--input input --output <dir>/out.parquet` plus `extra`, expects a clean failure
/// mentioning `needles`, and checks that `dir` holds only what it held before.
fn fails(dir: &Path, input: &Path, extra: &[&str], needles: &[&str]) {
    fails_with(dir, input, extra, |r| r.assert_fails(needles));
}

/// As [`fails`], for a value the flag parser refuses (exit status 2).
fn flag_fails(dir: &Path, input: &Path, extra: &[&str], needles: &[&str]) {
    fails_with(dir, input, extra, |r| r.assert_flag_error(needles));
}

fn fails_with(dir: &Path, input: &Path, extra: &[&str], check: impl FnOnce(&Run)) {
    let before = entries(dir);
    let out = dir.join("out.parquet");
    let mut argv = args(&[&"--input", &input, &"--output", &out]);
    argv.extend(extra.iter().map(OsString::from));
    check(&run(argv));
    assert_eq!(entries(dir), before, "a failed run left files behind");
}

fn five_points(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("five.npy");
    write_npy_f32(&p, &[0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 3.0, 5.0, 1.0], 2);
    p
}

#[test]
fn ragged_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("r.jsonl");
    std::fs::write(&input, "{\"embedding\": [1, 2]}\n{\"embedding\": [3, 4]}\n{\"embedding\": [5]}\n").unwrap();
    fails(dir.path(), &input, &[], &["ragged", "line 3", "r.jsonl"]);
}

#[test]
fn empty_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("e.jsonl");
    std::fs::write(&jsonl, "").unwrap();
    fails(dir.path(), &jsonl, &[], &["empty", "e.jsonl"]);
    let parquet = dir.path().join("e.parquet");
    write_parquet(&parquet, &[]);
    fails(dir.path(), &parquet, &[], &["empty", "e.parquet"]);
    let npy = dir.path().join("e.npy");
    write_npy(&npy, "<f4", "(0, 3)", &[]);
    fails(dir.path(), &npy, &[], &["empty", "e.npy"]);
}

#[test]
fn k_zero_and_k_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    fails(dir.path(), &input, &["--k", "0"], &["k = 0"]);
    fails(dir.path(), &input, &["--k", "5"], &["k = 5"]);
    // A negative number is a bad value, not an unknown flag.
    flag_fails(dir.path(), &input, &["--k", "-1"], &["invalid value '-1'", "--k"]);
    flag_fails(dir.path(), &input, &["--search-batch-size", "-3"], &["invalid value '-3'", "--search-batch-size"]);
}

#[test]
fn nan_in_npy_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("nan.npy");
    write_npy_f32(&npy, &[0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN], 2);
    fails(dir.path(), &npy, &[], &["nan.npy", "row 2, component 1 is NaN"]);
    let parquet = dir.path().join("nan.parquet");
    let rows: Vec<Option<Vec<f32>>> = (0..5).map(|i| Some(vec![if i == 3 { f32::NAN } else { i as f32 }, 1.0])).collect();
    write_parquet(&parquet, &rows);
    fails(dir.path(), &parquet, &[], &["nan.parquet", "row 3, component 0 is NaN"]);
    let inf = dir.path().join("inf.parquet");
    let rows: Vec<Option<Vec<f32>>> = (0..5).map(|i| Some(vec![1.0, if i == 4 { f32::INFINITY } else { 0.0 }])).collect();
    write_parquet(&inf, &rows);
    fails(dir.path(), &inf, &[], &["row 4, component 1 is inf"]);
}

#[test]
fn null_embedding_in_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("null.parquet");
    write_parquet(&input, &[Some(vec![1.0, 2.0]), None, Some(vec![3.0, 4.0])]);
    fails(dir.path(), &input, &[], &["row 1", "null"]);
}

#[test]
fn missing_and_non_numeric_columns() {
    let dir = tempfile::tempdir().unwrap();
    fails(dir.path(), &small_parquet(), &["--column", "vec"], &["\"vec\"", "\"package\", \"text\", \"embedding\""]);
    fails(dir.path(), &small_parquet(), &["--column", "text"], &["\"text\"", "utf8", "list of numbers"]);
    let input = dir.path().join("x.jsonl");
    std::fs::write(&input, "{\"embedding\": [1, 2]}\n{\"embedding\": [1, 2]}\n{\"vec\": [1, 2]}\n").unwrap();
    fails(dir.path(), &input, &[], &["line 3", "\"embedding\"", "\"vec\""]);
}

#[test]
fn invalid_factory_string() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    fails(dir.path(), &input, &["--string-factory", "Bogus12"], &["Bogus12"]);
}

#[test]
fn unknown_metric() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    flag_fails(dir.path(), &input, &["--metric", "99"], &["99", "metric"]);
    flag_fails(dir.path(), &input, &["--metric", "cosinus"], &["cosinus", "expected l2, ip, cosine"]);
}

#[test]
fn unwritable_or_unknown_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    let out = dir.path().join("missing").join("out.parquet");
    let r = run(args(&[&"--input", &input, &"--output", &out, &"--k", &"1"]));
    r.assert_fails(&["cannot write", &out.display().to_string(), "does not exist"]);
    assert!(!r.stderr.contains("faiss-nn-tmp"), "the temporary file is internal:\n{}", r.stderr);
    assert_eq!(entries(dir.path()), ["five.npy"]);
    let csv = dir.path().join("out.csv");
    run(args(&[&"--input", &input, &"--output", &csv])).assert_fails(&[".csv", ".parquet"]);
    run(args(&[&"--input", &input, &"--output", &dir.path().join("o.npy")])).assert_fails(&[".npy"]);
    assert_eq!(entries(dir.path()), ["five.npy"]);
}

#[test]
fn missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    fails(dir.path(), &dir.path().join("nope.parquet"), &[], &["cannot read", "nope.parquet"]);
}

#[test]
fn corrupted_files() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.parquet");
    let bytes = std::fs::read(small_parquet()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(dir.path(), &cut, &[], &["cut.parquet"]);
    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"this is not a numpy file at all").unwrap();
    fails(dir.path(), &garbage, &[], &["garbage.npy", "magic"]);
    let short = dir.path().join("short.npy");
    write_npy(&short, "<f4", "(4, 2)", &[0u8; 20]);
    fails(dir.path(), &short, &[], &["short.npy", "truncated"]);
    let complex = dir.path().join("complex.npy");
    write_npy(&complex, "<c8", "(2, 2)", &[0u8; 32]);
    fails(dir.path(), &complex, &[], &["complex.npy", "<c8", "not supported"]);
}

#[test]
fn bad_device() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    flag_fails(dir.path(), &input, &["--device", "abc"], &["device", "abc"]);
    flag_fails(dir.path(), &input, &["--device", "0,x"], &["device"]);
}

/// Without a GPU (this build with or without the `cuda` feature), asking for one is a clean
/// error that says so; with one, the same runs succeed.
#[test]
fn gpu_device_without_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    let has_gpu = cfg!(feature = "cuda") && Path::new("/dev/nvidia0").exists();
    for device in ["0", "-1", "-2"] {
        if has_gpu {
            let out = dir.path().join("gpu.parquet");
            run(args(&[&"--input", &input, &"--output", &out, &"--device", &device])).assert_ok();
            std::fs::remove_file(out).unwrap();
        } else {
            // A negative id means every GPU, whichever negative number was given: never "-1".
            let named = if device.starts_with('-') { "every CUDA device" } else { "CUDA device 0" };
            fails(dir.path(), &input, &["--device", device], &["cuda", named]);
        }
    }
}

/// A CPU without AVX-512 (or without AVX2), forced with `FAISS_NN_CPU`: the default and the
/// reduced precisions give the same lists as the AVX-512 kernels do, on the 3,000 demo rows.
#[test]
fn the_lists_do_not_depend_on_the_cpu_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let demo = crate::common::data::repo_root().join("data/demo.parquet");
    let lists = |precision: &str, cap: &str| {
        let out = dir.path().join(format!("{precision}-{cap}.parquet"));
        let r = run_env(args(&[&"--input", &demo, &"--output", &out, &"--k", &"10", &"--precision", &precision, &"--quiet"]), &[("FAISS_NN_CPU", cap)]);
        r.assert_ok();
        let batches = read_parquet(&out);
        (int64_lists(&batches, "nn_indices"), float32_lists(&batches, "nn_scores"))
    };
    let want = lists("f32", "native");
    for precision in ["auto", "bf16", "int8"] {
        for cap in ["native", "avxvnni", "avx2", "generic"] {
            assert!(lists(precision, cap) == want, "--precision {precision} with FAISS_NN_CPU={cap}");
        }
    }
}

/// `--approximate` is accepted; with f32 products, which it does not change, a note says so.
#[test]
fn approximate_with_f32_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.parquet");
    let r = run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--precision", &"f32", &"--approximate"]));
    r.assert_ok();
    assert!(r.stderr.contains("note: --approximate applies to reduced-precision products"), "{}", r.stderr);
    let r = run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--overwrite", &"--precision", &"int8", &"--approximate"]));
    r.assert_ok();
    assert!(!r.stderr.contains("--approximate applies"), "{}", r.stderr);
}

/// Where the GPU path's k limit cuts bf16's proof margin below half, the search computes in f32,
/// and says so (with or without a GPU to run it on).
#[test]
fn a_gpu_bf16_search_near_the_k_limit_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    write_npy_f32(&input, &(0..3400 * 4).map(|i| ((i * 37) % 101) as f32).collect::<Vec<_>>(), 4);
    let has_gpu = cfg!(feature = "cuda") && Path::new("/dev/nvidia0").exists();
    for (k, noted) in [("3000", false), ("3300", true)] {
        let out = dir.path().join(format!("o{k}.parquet"));
        let r = run(args(&[&"--input", &input, &"--output", &out, &"--device", &"0", &"--precision", &"bf16", &"--k", &k]));
        assert_eq!(r.stderr.contains("the search computes in f32 (exact); --approximate keeps bf16"), noted, "k {k}: {}", r.stderr);
        if has_gpu {
            r.assert_ok();
        } else {
            r.assert_fails(&["CUDA device 0"]);
        }
    }
}

#[test]
fn a_gpu_precision_on_the_cpu_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.parquet");
    let r = run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--precision", &"f16"]));
    r.assert_ok();
    assert!(r.stderr.contains("note: --precision f16 applies to GPU products; the CPU search computes in f32"), "{}", r.stderr);
    // bf16 and int8 run on the CPU (candidates proven exact): a note only where the CPU lacks
    // their instructions (AVX-512 BF16; AVX2 for int8) and the search computes in f32.
    use faiss_nn::flat::cpu::int8::Int8Kernel;
    for (p, runs) in [("bf16", faiss_nn::flat::cpu::bf16::native()), ("int8", Int8Kernel::detect() != Int8Kernel::Portable)] {
        let r = run(args(&[&"--input", &small_parquet(), &"--output", &out, &"--precision", &p]));
        r.assert_ok();
        assert_eq!(r.stderr.contains("the search computes in f32 (the lists are the same)"), !runs, "{p}: {}", r.stderr);
    }
    // Beyond int8's largest dimension the search computes in f32, and says so.
    let wide = dir.path().join("wide.npy");
    let d = faiss_nn::flat::cpu::int8::MAX_DEPTH + 1;
    write_npy_f32(&wide, &(0..3 * d).map(|i| (i % 7) as f32).collect::<Vec<_>>(), d);
    let r = run(args(&[&"--input", &wide, &"--output", &dir.path().join("w.parquet"), &"--precision", &"int8"]));
    r.assert_ok();
    assert!(r.stderr.contains("int8 products handle at most 131072 dimensions"), "{}", r.stderr);
    let quiet = run(args(&[&"--input", &small_parquet(), &"--output", &dir.path().join("q.parquet"), &"--precision", &"f16", &"--quiet"]));
    quiet.assert_ok();
    assert!(!quiet.stderr.contains("note:"), "{}", quiet.stderr);
}
