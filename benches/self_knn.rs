//! Self-kNN (k = 10) and query-vs-database search: our CPU flat backend against faiss's
//! IndexFlat, side by side in one run. `cargo bench --bench self_knn`; then
//! `python3 benches/ratios.py` prints the ratio table that BENCHMARKS.md records.
//!
//! faiss's self-kNN is the original step's method: search every row for k + 1 neighbours.
//!
//! What each side includes: *ours* is the whole step (input checks, centring, the symmetric
//! join, the exact f64 re-scoring and its proof) or `FlatIndex::search`; *kernel* is our CPU
//! searcher alone (`CpuSearcher::search` of the same job: products, epilogue and selection, no
//! checks and no exact layer), to compare kernel with kernel; *faiss* is `IndexFlat::search` on
//! an index filled before the timing (its `add` is not timed).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faiss::index::Index;
use faiss::FlatIndex as FaissFlat;
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::{FaissNearestNeighbour, FlatIndex, FlatMetric, NoProgress, Vectors};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

const K: usize = 10;

fn minilm() -> (Vec<f32>, usize, &'static str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let full = root.join("../shared/data/pypi-minilm-10k.parquet");
    let (path, name) = if full.exists() { (full, "minilm_10k_x384") } else { (root.join("data/demo.parquet"), "minilm_demo_3k_x384") };
    let ds = faiss_nn::io::read_embeddings(&path, "embedding").expect("bench data");
    (ds.embeddings.to_vec(), ds.d, name)
}

/// Seeded standard-normal data (xorshift + Box–Muller; no RNG crate needed).
fn normal(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut u = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n * d).map(|_| ((-2.0 * u().max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()) as f32).collect()
}

fn faiss_flat(metric: FlatMetric, d: usize, x: &[f32]) -> FaissFlat {
    faiss_nn::faiss_backend::reference_flat(metric, d, x).unwrap()
}

fn code(m: FlatMetric) -> i64 {
    if m == FlatMetric::L2 {
        1
    } else {
        0
    }
}

fn tag(m: FlatMetric) -> &'static str {
    if m == FlatMetric::L2 {
        "l2"
    } else {
        "ip"
    }
}

fn self_join_group(c: &mut Criterion, name: &str, x: &[f32], d: usize) {
    let mut g = c.benchmark_group(format!("self_knn_k10/{name}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        g.bench_function(BenchmarkId::new("ours", tag(metric)), |b| {
            b.iter(|| black_box(FaissNearestNeighbour::new().metric_type(code(metric)).k(K).run(x, d).unwrap()))
        });
        let v = Vectors::new(x, d, "x").unwrap();
        let cpu = CpuSearcher::new();
        g.bench_function(BenchmarkId::new("kernel", tag(metric)), |b| {
            b.iter(|| black_box(cpu.search(&FlatJob::self_join(v, metric, K, &NoProgress)).unwrap()))
        });
        let mut f = faiss_flat(metric, d, x);
        g.bench_function(BenchmarkId::new("faiss", tag(metric)), |b| b.iter(|| black_box(f.search(x, K + 1).unwrap())));
    }
    g.finish();
}

fn query_group(c: &mut Criterion, name: &str, q: &[f32], x: &[f32], d: usize) {
    let mut g = c.benchmark_group(format!("search_k10/{name}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let mut ours = FlatIndex::new(d, metric.metric()).unwrap();
        ours.add(x).unwrap();
        g.bench_function(BenchmarkId::new("ours", tag(metric)), |b| b.iter(|| black_box(ours.search(q, K).unwrap())));
        let (qv, xv) = (Vectors::new(q, d, "q").unwrap(), Vectors::new(x, d, "x").unwrap());
        let cpu = CpuSearcher::new();
        g.bench_function(BenchmarkId::new("kernel", tag(metric)), |b| {
            b.iter(|| black_box(cpu.search(&FlatJob::search(qv, xv, metric, K, &NoProgress)).unwrap()))
        });
        let mut f = faiss_flat(metric, d, x);
        g.bench_function(BenchmarkId::new("faiss", tag(metric)), |b| b.iter(|| black_box(f.search(q, K).unwrap())));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let (x, d, name) = minilm();
    self_join_group(c, name, &x, d);
    // Queries: the first 2,000 rows perturbed, against all rows.
    let q: Vec<f32> = x[..2000 * d].iter().zip(normal(2000, d, 3)).map(|(a, b)| a + 0.01 * b).collect();
    query_group(c, name, &q, &x, d);
    let big = normal(20_000, 1024, 42);
    self_join_group(c, "normal_20k_x1024", &big, 1024);
}

criterion_group!(self_knn, benches);
criterion_main!(self_knn);
