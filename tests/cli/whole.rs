//! Inputs and outputs kept whole: no column silently dropped or overwritten, JSON values kept
//! exactly (or the file refused), files read once (pipes work), memory planned before it is
//! allocated, no temporary file left behind by a signal, faiss's warnings muted by `-q`.

use super::fixtures::*;
use super::{fails, five_points};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A Parquet file with the given extra columns next to `embedding`.
fn parquet_with(path: &Path, extra: &[&str], dup_embedding: bool) {
    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;
    let list = || {
        let mut b = ListBuilder::new(Float32Builder::new());
        for i in 0..4 {
            b.values().append_slice(&[i as f32, 1.0]);
            b.append(true);
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let mut fields = vec![Field::new("embedding", list().data_type().clone(), true)];
    let mut columns = vec![list()];
    for name in extra {
        fields.push(Field::new(*name, arrow_schema::DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(vec![7i64; 4])) as ArrayRef);
    }
    if dup_embedding {
        fields.push(Field::new("embedding", list().data_type().clone(), true));
        columns.push(list());
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn output_columns_are_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("again.parquet");
    parquet_with(&input, &["nn_indices", "nn_scores"], false);
    fails(dir.path(), &input, &[], &["nn_indices", "nn_scores", "--overwrite"]);
    // With --overwrite the earlier run's columns are replaced by this run's.
    let out = dir.path().join("out.parquet");
    run(args(&[&"--input", &input, &"--output", &out, &"--overwrite", &"-q"])).assert_ok();
    let batches = read_parquet(&out);
    let names: Vec<String> = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["embedding", "nn_indices", "nn_scores"]);
    assert_eq!(int64_lists(&batches, "nn_indices"), [[1], [0], [1], [2]]);
    // An embedding column named like an output column would be dropped from the output.
    let renamed = dir.path().join("renamed.jsonl");
    std::fs::write(&renamed, "{\"nn_scores\": [0, 1]}\n{\"nn_scores\": [1, 1]}\n").unwrap();
    fails(dir.path(), &renamed, &["--column", "nn_scores"], &["nn_scores", "rename"]);
    fails(dir.path(), &renamed, &["--column", "nn_scores", "--overwrite"], &["nn_scores", "rename"]);
}

#[test]
fn two_columns_of_the_same_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dup.parquet");
    parquet_with(&input, &["id"], true);
    fails(dir.path(), &input, &[], &["2 columns are named \"embedding\"", "#1 and #3"]);
    let jsonl = dir.path().join("dup.jsonl");
    std::fs::write(&jsonl, "{\"embedding\": [0, 1]}\n{\"embedding\": [1, 1], \"embedding\": [2, 2]}\n").unwrap();
    fails(dir.path(), &jsonl, &[], &["line 2", "\"embedding\" appears more than once"]);
    // Any other repeated JSON key too: serde would keep the last value and lose the first.
    let ids = dir.path().join("ids.jsonl");
    std::fs::write(&ids, "{\"id\": 1, \"embedding\": [0, 1]}\n{\"id\": 2, \"embedding\": [1, 1], \"id\": 5}\n").unwrap();
    fails(dir.path(), &ids, &[], &["line 2", "\"id\" appears more than once"]);
    // Two other columns of one name: Parquet holds both, a JSON object cannot.
    let twice = dir.path().join("twice.parquet");
    parquet_with(&twice, &["id", "id"], false);
    let before = entries(dir.path());
    let json = dir.path().join("twice.jsonl");
    run(args(&[&"--input", &twice, &"--output", &json])).assert_fails(&["two columns named \"id\"", "JSON"]);
    assert_eq!(entries(dir.path()), before, "a failed run left files behind");
    let parquet = dir.path().join("twice.nn.parquet");
    run(args(&[&"--input", &twice, &"--output", &parquet, &"-q"])).assert_ok();
    let names: Vec<String> = read_parquet(&parquet)[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["embedding", "id", "id", "nn_indices", "nn_scores"]);
}

#[test]
fn the_output_is_never_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    parquet_with(&input, &["id"], false);
    let original = std::fs::read(&input).unwrap();
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let hard = dir.path().join("hard.parquet");
    std::fs::hard_link(&input, &hard).unwrap();
    let dotted = dir.path().join(".").join("in.parquet");
    let before = entries(dir.path());
    for (i, o) in [(&input, &input), (&input, &dotted), (&input, &link), (&link, &input), (&input, &hard)] {
        run(args(&[&"--input", i, &"--output", o])).assert_fails(&["is the input file", "another file"]);
        assert_eq!(std::fs::read(&input).unwrap(), original, "{} was changed", input.display());
        assert_eq!(entries(dir.path()), before, "a refused run left files behind");
    }
}

#[test]
fn an_output_link_is_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    for (target, existing) in [(real.join("old.parquet"), true), (real.join("new.parquet"), false)] {
        if existing {
            std::fs::write(&target, "old").unwrap();
        }
        let link = dir.path().join(format!("link-{existing}.parquet"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        run(args(&[&"--input", &input, &"--output", &link, &"-q"])).assert_ok();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced by a file");
        assert_eq!(int64_lists(&read_parquet(&target), "nn_indices"), [[1], [0], [0], [4], [3]]);
    }
    assert_eq!(entries(&real), ["new.parquet", "old.parquet"], "temporary files left beside the target");
    // A relative target is relative to the link's directory, not to the working directory.
    let rel = dir.path().join("rel.parquet");
    std::os::unix::fs::symlink("real/rel-target.parquet", &rel).unwrap();
    run(args(&[&"--input", &input, &"--output", &rel, &"-q"])).assert_ok();
    assert_eq!(int64_lists(&read_parquet(&real.join("rel-target.parquet")), "nn_indices"), [[1], [0], [0], [4], [3]]);
    // A loop of links is refused, and no link is replaced.
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    run(args(&[&"--input", &input, &"--output", &a])).assert_fails(&["symbolic links", "a.parquet"]);
    assert!(std::fs::symlink_metadata(&a).unwrap().file_type().is_symlink() && std::fs::symlink_metadata(&b).unwrap().file_type().is_symlink());
}

#[test]
fn jsonl_values_are_kept_exactly_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let big = write("big.jsonl", "{\"id\": 1, \"embedding\": [0, 1]}\n{\"id\": 9223372036854775808, \"embedding\": [1, 1]}\n");
    fails(dir.path(), &big, &[], &["line 2", "\"id\"", "9223372036854775808", "int64"]);
    let mixed = write("mixed.jsonl", "{\"id\": 9007199254740993, \"embedding\": [0, 1]}\n{\"id\": 1.5, \"embedding\": [1, 1]}\n");
    fails(dir.path(), &mixed, &[], &["line 2", "\"id\"", "2^53", "line 1"]);
    let types = write("types.jsonl", "{\"a\": 1, \"embedding\": [0, 1]}\n{\"a\": \"x\", \"embedding\": [1, 1]}\n");
    fails(dir.path(), &types, &[], &["line 2", "field \"a\" is a string here but a number on line 1"]);
    let huge = write("huge.jsonl", "{\"id\": 18446744073709551616, \"embedding\": [0, 1]}\n{\"id\": 1, \"embedding\": [1, 1]}\n");
    fails(dir.path(), &huge, &[], &["line 1", "\"id\"", "18446744073709551616", "int64"]);
    let nested = write("nested.jsonl", "{\"tags\": [1, 2], \"embedding\": [0, 1]}\n{\"tags\": [3, \"x\"], \"embedding\": [1, 1]}\n");
    fails(dir.path(), &nested, &[], &["line 2", "an item of the list in field \"tags\" is a string here but a number on line 1"]);
    let broken = write("broken.jsonl", "{\"embedding\": [0, 1]}\n{\"text\": \"ok\", \"embedding\": [1, 1}\n");
    fails(dir.path(), &broken, &[], &["line 2", "field \"embedding\"", "invalid JSON"]);

    // Exact integers beyond 2^53 stay exact when the column has no fractions; nulls stay.
    let exact =
        write("exact.jsonl", "{\"id\": 9007199254740993, \"note\": null, \"embedding\": [0, 1]}\n{\"id\": 2, \"note\": \"b\", \"embedding\": [1, 1]}\n");
    let out = dir.path().join("exact.out.jsonl");
    run(args(&[&"--input", &exact, &"--output", &out, &"-q"])).assert_ok();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"id\":9007199254740993") && text.contains("\"note\":null"), "{text}");
}

#[test]
fn jsonl_with_a_byte_order_mark_and_any_line_end() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("bom.jsonl", "\u{feff}{\"t\": \"a\", \"embedding\": [0, 0]}\n{\"t\": \"b\", \"embedding\": [1, 0]}\n{\"t\": \"c\", \"embedding\": [5, 0]}\n"),
        ("crlf.jsonl", "{\"t\": \"a\", \"embedding\": [0, 0]}\r\n{\"t\": \"b\", \"embedding\": [1, 0]}\r\n{\"t\": \"c\", \"embedding\": [5, 0]}\r\n"),
        ("cr.jsonl", "{\"t\": \"a\", \"embedding\": [0, 0]}\r{\"t\": \"b\", \"embedding\": [1, 0]}\r{\"t\": \"c\", \"embedding\": [5, 0]}"),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join(format!("{name}.out.jsonl"));
        run(args(&[&"--input", &input, &"--output", &out, &"-q"])).assert_ok();
        let rows = read_jsonl(&out);
        let got: Vec<(String, i64)> = rows.iter().map(|r| (r["t"].as_str().unwrap().to_owned(), r["nn_indices"][0].as_i64().unwrap())).collect();
        assert_eq!(got, [("a".into(), 1), ("b".into(), 0), ("c".into(), 1)], "{name}");
    }
}

/// Writes `bytes` into a FIFO at `path` from another thread while the binary reads it.
fn through_fifo(dir: &Path, name: &str, bytes: Vec<u8>) -> Run {
    let fifo = dir.join(name);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let out = dir.join(format!("{name}.out.parquet"));
    let r = run(args(&[&"--input", &fifo, &"--output", &out, &"-q"]));
    writer.join().unwrap();
    r
}

#[test]
fn pipes_are_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"embedding\": [0, 0]}\n{\"embedding\": [1, 0]}\n{\"embedding\": [5, 0]}\n";
    through_fifo(dir.path(), "p.jsonl", text.as_bytes().to_vec()).assert_ok();
    let npy = five_points(dir.path());
    through_fifo(dir.path(), "p.npy", std::fs::read(npy).unwrap()).assert_ok();
}

#[test]
fn npy_headers_are_checked_before_the_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/zero never ends: the missing magic must stop the read at once.
    let zero = dir.path().join("zero.npy");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    fails(dir.path(), &zero, &[], &["zero.npy", "magic"]);
    // A header promising far more data than the file has.
    let huge = dir.path().join("huge.npy");
    write_npy(&huge, "<f4", "(4000000000, 384)", &[0u8; 64]);
    fails(dir.path(), &huge, &[], &["huge.npy", "truncated"]);
    // A float64 that is finite but beyond float32.
    let wide = dir.path().join("wide.npy");
    let data: Vec<u8> = [1.0f64, 2.0, 1e39, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&wide, "<f8", "(2, 2)", &data);
    fails(dir.path(), &wide, &[], &["row 1, component 0", "1e39", "overflows float32"]);
}

#[test]
fn lists_too_large_for_memory_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.npy");
    let n = 200_000;
    write_npy_f32(&input, &(0..n).map(|i| i as f32).collect::<Vec<_>>(), 1);
    fails(dir.path(), &input, &["--k", &(n - 1).to_string()], &["out of memory", "k = 199999", "smaller k"]);
}

#[test]
fn output_directory_and_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let input = five_points(dir.path());
    let as_dir = dir.path().join("taken.parquet");
    std::fs::create_dir(&as_dir).unwrap();
    run(args(&[&"--input", &input, &"--output", &as_dir])).assert_fails(&["taken.parquet", "is a directory"]);
    assert_eq!(entries(dir.path()), ["five.npy", "taken.parquet"]);
    // A name of 250 bytes is valid; the temporary name must not push it over the limit.
    let long = dir.path().join(format!("{}.parquet", "n".repeat(242)));
    run(args(&[&"--input", &input, &"--output", &long, &"-q"])).assert_ok();
    assert!(long.is_file());
}

/// Starts the binary on `input` with default signal dispositions (the test harness may run with
/// some ignored, which the binary would keep) and no core files (SIGQUIT would write one).
fn spawn_with_default_signals(input: &Path, out: &Path, k: &str) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faiss-nn"));
    cmd.arg("--input").arg(input).arg("--output").arg(out).args(["--k", k, "-q"]);
    // SAFETY: only `signal` and `setrlimit`, which are async-signal-safe, run between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGXCPU, libc::SIGUSR1] {
                libc::signal(s, libc::SIG_DFL);
            }
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn send(sig: &str, child: &std::process::Child) {
    assert!(Command::new("kill").args([format!("-{sig}"), child.id().to_string()]).status().unwrap().success());
}

#[test]
fn a_signal_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.npy");
    let (n, d) = (20_000, 96);
    let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    write_npy_f32(&input, &x, d);
    let out = dir.path().join("out.parquet");
    // During the search no temporary file exists at all: even SIGKILL (the OOM killer, a CPU
    // time limit's last step) leaves nothing.
    for sig in ["INT", "TERM", "HUP", "QUIT", "XCPU", "USR1", "KILL"] {
        let mut child = spawn_with_default_signals(&input, &out, "10");
        std::thread::sleep(Duration::from_millis(150));
        assert!(entries(dir.path()) == ["big.npy"], "SIG{sig}: a file appeared before the output is written");
        send(sig, &child);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "SIG{sig}: the run finished before the signal; make the input larger");
        assert_eq!(entries(dir.path()), ["big.npy"], "SIG{sig} left files behind");
    }
    // While the output is written (k = 400: 8 million entries), the handler removes the file.
    for sig in ["TERM", "QUIT"] {
        let mut child = spawn_with_default_signals(&input, &out, "400");
        let start = Instant::now();
        let temp = loop {
            if let Some(t) = entries(dir.path()).into_iter().find(|e| e.ends_with(".faiss-nn-tmp")) {
                break t;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no temporary file appeared");
            std::thread::sleep(Duration::from_millis(1));
        };
        send(sig, &child);
        assert!(temp.starts_with(".out.parquet."), "{temp}");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), None, "SIG{sig}: the output was written before the signal; make it larger");
        assert_eq!(entries(dir.path()), ["big.npy"], "SIG{sig} left files behind");
    }
}

/// 100 rows of 8 small integers (many ties), as `few.npy` in `dir`.
fn few_rows(dir: &Path) -> std::path::PathBuf {
    let input = dir.join("few.npy");
    let x: Vec<f32> = (0..100 * 8).map(|i| ((i * 31) % 17) as f32).collect();
    write_npy_f32(&input, &x, 8);
    input
}

#[test]
fn short_lists_of_an_approximate_index_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let input = few_rows(dir.path());
    let out = dir.path().join("out.parquet");
    // 64 lists for 100 rows, one probed: most lists hold fewer than 5 other rows.
    let r = run(args(&[&"--input", &input, &"--output", &out, &"--string-factory", &"IVF64,Flat", &"--k", &"5"]));
    r.assert_ok();
    let lists = int64_lists(&read_parquet(&out), "nn_indices");
    let short = lists.iter().filter(|l| l.contains(&-1)).count();
    assert!(short > 0, "no short list: the test proves nothing");
    assert!(r.stderr.contains(&format!("warning: {short} of 100 rows have fewer than k = 5 neighbours")), "{}", r.stderr);
    // Exact search fills every list: no warning.
    let r = run(args(&[&"--input", &input, &"--output", &out, &"--k", &"5"]));
    r.assert_ok();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn quiet_mutes_faiss_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let input = few_rows(dir.path());
    let out = dir.path().join("out.parquet");
    let loud = run(args(&[&"--input", &input, &"--output", &out, &"--string-factory", &"IVF64,Flat"]));
    loud.assert_ok();
    assert!(loud.stderr.contains("WARNING clustering"), "faiss no longer warns here, so this test proves nothing:\n{}", loud.stderr);
    let quiet = run(args(&[&"--input", &input, &"--output", &out, &"--string-factory", &"IVF64,Flat", &"-q"]));
    quiet.assert_ok();
    assert_eq!(quiet.stderr, "", "-q printed something");
}
