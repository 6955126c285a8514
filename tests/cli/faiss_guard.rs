//! faiss never takes the process down: factory strings (valid, degenerate and malformed) ×
//! every metric × small random data, each run in a child process (the binary), which must end
//! with status 0 or 1, never by a signal or a panic, within a time limit. A run that succeeds must
//! have no NaN score, and exact search (`Flat`) no unfilled slot.
//!
//! `FAISS_NN_FUZZ_CASES` sets the number of cases (default 64, a few seconds; 1,000 take about a
//! minute and a quarter), `FAISS_NN_FUZZ_RANDOM=1` draws new cases instead of the fixed sequence.

use super::fixtures::{float32_lists, int64_lists, read_parquet, write_npy_f32};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single run may take.
const LIMIT: Duration = Duration::from_secs(30);

/// Parameters: the degenerate and huge ones that crash faiss, and (more often) usable ones.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => prop::sample::select(vec![0u64, 1, 3, 256, 70_000]),
        4 => prop::sample::select(vec![2u64, 4, 8, 16, 32]),
    ]
}

/// PQ codes carry `np` (no polysemous training): that training takes 12–30 s whatever the data
/// size, in faiss's own wheel too, which would only slow the search for crashes down.
fn code() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Flat".to_owned()),
        number().prop_map(|m| format!("PQ{m}np")),
        (number(), number()).prop_map(|(m, b)| format!("PQ{m}x{b}np")),
        // Polysemous training (no `np`) with codes small enough to train quickly.
        (number(), prop::sample::select(vec![0u64, 1, 2, 4])).prop_map(|(m, b)| format!("PQ{m}x{b}")),
        number().prop_map(|m| format!("PQ{m}x4fs")),
        Just("SQ8".to_owned()),
        Just("SQfp16".to_owned()),
        Just("SQ4".to_owned()),
    ]
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Flat".to_owned()),
        number().prop_map(|m| format!("HNSW{m}")),
        number().prop_map(|n| format!("IVF{n},Flat")),
        (number(), code()).prop_map(|(m, c)| format!("HNSW{m},{c}")),
        (number(), code()).prop_map(|(n, c)| format!("IVF{n},{c}")),
        (number(), number(), code()).prop_map(|(n, m, c)| format!("IVF{n}_HNSW{m},{c}")),
        code(),
        Just("LSH".to_owned()),
        number().prop_map(|b| format!("LSH{b}")),
        number().prop_map(|b| format!("LSH{b}rt")),
        Just("NSG8".to_owned()),
        Just("IVF4,Flat,Flat".to_owned()),
    ]
}

fn transform() -> impl Strategy<Value = String> {
    prop_oneof![
        number().prop_map(|d| format!("PCA{d}")),
        number().prop_map(|d| format!("PCAW{d}")),
        number().prop_map(|m| format!("OPQ{m}")),
        (number(), number()).prop_map(|(m, d)| format!("OPQ{m}_{d}")),
        number().prop_map(|d| format!("RR{d}")),
        Just("L2norm".to_owned()),
    ]
}

fn factory() -> impl Strategy<Value = String> {
    (prop::option::weighted(0.3, transform()), body(), prop::bool::weighted(0.1)).prop_map(|(t, b, refine)| {
        let mut s = t.map(|t| format!("{t},")).unwrap_or_default();
        s.push_str(&b);
        if refine {
            s.push_str(",RFlat");
        }
        s
    })
}

/// Kinds of data: signed normal-ish, non-negative with many zeros (probability rows), far from
/// the origin, and all rows identical.
fn data(kind: u8, n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32
    };
    match kind {
        0 => (0..n * d).map(|_| next() * 2.0 - 1.0).collect(),
        1 => (0..n * d).map(|_| if next() < 0.5 { 0.0 } else { next() }).collect(),
        2 => (0..n * d).map(|_| 1000.0 + 0.01 * next()).collect(),
        _ => (0..n).flat_map(|_| (0..d).map(|j| j as f32 * 0.5)).collect(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    factory: String,
    metric: i64,
    n: usize,
    d: usize,
    k: usize,
    kind: u8,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        factory(),
        prop::sample::select(vec![0i64, 1, 0, 1, 0, 1, 2, 3, 20, 21, 22]),
        prop::sample::select(vec![2usize, 3, 5, 40, 300, 300, 300]),
        prop::sample::select(vec![1usize, 2, 4, 8, 16]),
        1usize..4,
        0u8..4,
        any::<u64>(),
    )
        .prop_map(|(factory, metric, n, d, k, kind, seed)| Case { factory, metric, n, d, k: k.min(n - 1), kind, seed })
}

/// A `Flat` body after any transforms: the index compares every pair and must fill every slot
/// (an unfilled one is a NaN distance faiss dropped).
fn exhaustive(factory: &str) -> bool {
    let parts: Vec<&str> = factory.split(',').collect();
    parts.last() == Some(&"Flat") && parts[..parts.len() - 1].iter().all(|p| ["PCA", "OPQ", "RR", "L2norm"].iter().any(|t| p.starts_with(t)))
}

/// Runs the binary on `c`: Ok(true) if it searched, Ok(false) if it refused cleanly; Err
/// describes a crash, a hang or a wrong output.
fn run_case(c: &Case, dir: &std::path::Path) -> Result<bool, String> {
    let input = dir.join("x.npy");
    let output = dir.join("x.nn.parquet");
    let _ = std::fs::remove_file(&output);
    write_npy_f32(&input, &data(c.kind, c.n, c.d, c.seed), c.d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_faiss-nn"))
        .args(["--input".as_ref(), input.as_os_str(), "--output".as_ref(), output.as_os_str()])
        .args(["--k", &c.k.to_string(), "--metric", &c.metric.to_string(), "--string-factory", &c.factory, "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if start.elapsed() > Duration::from_secs(5) {
        eprintln!("slow case ({:.1} s): {c:?}", start.elapsed().as_secs_f64());
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr).map_err(|e| e.to_string())?;
    match status.code() {
        None => return Err(format!("killed by a signal ({status}); stderr: {stderr}")),
        Some(1) => {
            if stderr.contains("internal error") || !stderr.starts_with("error: ") {
                return Err(format!("status 1 without a clean error: {stderr}"));
            }
            if output.exists() {
                return Err("a failed run left an output file".into());
            }
            return Ok(false);
        }
        Some(0) => {}
        Some(code) => return Err(format!("status {code}; stderr: {stderr}")),
    }
    let batches = read_parquet(&output);
    let scores = float32_lists(&batches, "nn_scores");
    let indices = int64_lists(&batches, "nn_indices");
    for (i, (s, ix)) in scores.iter().zip(&indices).enumerate() {
        if s.iter().any(|v| v.is_nan()) {
            return Err(format!("row {i} has a NaN score: {s:?}"));
        }
        if exhaustive(&c.factory) && ix.contains(&-1) {
            return Err(format!("an index that compares every pair left row {i} with an unfilled slot: {ix:?}"));
        }
    }
    Ok(true)
}

#[test]
fn factory_strings_never_crash_the_process() {
    let cases = std::env::var("FAISS_NN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    // Deterministic by default (CI sees the same cases every run); FAISS_NN_FUZZ_RANDOM=1 draws new ones.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = if std::env::var_os("FAISS_NN_FUZZ_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha))
    };
    let searched = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&case(), |c| {
        let ran = run_case(&c, dir.path()).map_err(|e| TestCaseError::fail(format!("{c:?}: {e}")))?;
        searched.fetch_add(u32::from(ran), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The grammar must reach faiss often enough for the test to mean something.
    let searched = searched.into_inner();
    eprintln!("{searched} of {cases} cases searched, the others were refused cleanly");
    assert!(searched * 10 >= cases, "only {searched} of {cases} cases reached a search");
}

/// The reproductions from the issue, each refused with a clear error (or, for the metrics faiss
/// computes with NaN terms, answered exactly).
#[test]
fn known_crashes_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (factory, metric, n, d, kind) in [
        ("HNSW0", 1, 100, 8, 0u8),
        ("HNSW1", 1, 100, 8, 0),
        ("IVF0,Flat", 1, 100, 8, 0),
        ("PQ0", 1, 100, 8, 0),
        ("PQ1x0", 1, 100, 8, 0),
        ("IVF2,PQ0", 1, 100, 8, 0),
        ("OPQ8,Flat", 1, 300, 384, 0),
        ("IVF1,Flat", 20, 60, 8, 1),
        ("IVF1,Flat", 22, 60, 8, 1),
        ("PCA0,Flat", 1, 100, 8, 0),
        ("LSH0", 1, 100, 8, 0),
        // Whitening rank-deficient (identical) rows divides by zero eigenvalues: NaN distances.
        ("PCAW4,Flat", 1, 300, 8, 3),
    ] {
        let c = Case { factory: factory.into(), metric, n, d, k: 3, kind, seed: 7 };
        assert!(!run_case(&c, dir.path()).unwrap_or_else(|e| panic!("{c:?}: {e}")), "{c:?} searched");
        let input = dir.path().join("x.npy");
        let run = super::fixtures::run([
            "--input".as_ref(),
            input.as_os_str(),
            "--string-factory".as_ref(),
            factory.as_ref(),
            "--metric".as_ref(),
            metric.to_string().as_ref(),
        ]);
        run.assert_fails(&[factory]);
    }
}
