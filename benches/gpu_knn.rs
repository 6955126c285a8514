//! The GPU benchmarks: self-kNN (k = 10) on random-normal rows, our two CUDA paths (cuBLAS tiles +
//! select kernels; the fused symmetric kernel) against the bare cuBLAS products of the full
//! self-join (the floor of the cuBLAS design, `gpu::gemm_floor`), and logical shards on one GPU
//! against one searcher. Run on a machine with a CUDA GPU:
//!
//!     cargo bench --no-default-features --features cuda --bench gpu_knn -- \
//!         cases=200000x384,1000000x1024 precisions=f32,tf32,bf16 reps=3 shards=1,2,4
//!
//! (scripts/gpu-check.sh runs it on the device machine, beside benches/torch_knn.py.)
//! Times: the rows are uploaded once (`FlatSearcher::load`, its host wall-clock reported as
//! "upload"); ours is host wall-clock around a search of the resident rows, which returns only
//! once its lists are on the host (so it includes their download), after a warm-up search of the
//! same job; the floor is CUDA events around the products alone, after a warm-up pass. Medians
//! of `reps` runs. benches/torch_knn.py times torch the same way (transfers reported apart).
//! Recall is against exact f64 lists of a fixed sample of rows, so every precision and size has
//! the same reference.

use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::gpu::{self, GpuOptions};
use faiss_nn::shard;
use faiss_nn::topk::TopKLists;
use faiss_nn::{Device, Engine, EngineOptions, FlatMetric, GpuPath, NoProgress, Precision, Vectors};
use std::time::Instant;

const K: usize = 10;

struct Config {
    cases: Vec<(usize, usize)>,
    precisions: Vec<Precision>,
    reps: usize,
    shards: Vec<usize>,
}

fn config() -> Config {
    let mut c = Config {
        cases: vec![(200_000, 384), (1_000_000, 1024)],
        precisions: vec![Precision::F32, Precision::Tf32, Precision::Bf16],
        reps: 3,
        shards: vec![1, 2, 4],
    };
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
        let (key, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match key {
            "cases" => {
                c.cases = value
                    .split(',')
                    .map(|v| {
                        let (n, d) = v.split_once('x').expect("cases=NxD,NxD");
                        (n.parse().expect("rows"), d.parse().expect("dimension"))
                    })
                    .collect()
            }
            "precisions" => c.precisions = value.split(',').map(|p| p.parse().expect("f32|tf32|f16|bf16")).collect(),
            "reps" => c.reps = value.parse().expect("reps=N"),
            "shards" => c.shards = if value.is_empty() { vec![] } else { value.split(',').map(|s| s.parse().expect("shards=1,2,4")).collect() },
            other => panic!("unknown argument {other:?}: cases=, precisions=, reps=, shards="),
        }
    }
    c
}

/// Seeded standard-normal rows, generated on every core (1M × 1024 is a billion values).
fn normal(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; n * d];
    let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1);
    let per = (n * d).div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (c, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || {
                let mut st = (seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
                let mut u = move || {
                    st ^= st >> 12;
                    st ^= st << 25;
                    st ^= st >> 27;
                    ((st.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
                };
                for v in chunk.iter_mut() {
                    *v = ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()) as f32;
                }
            });
        }
    });
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn searcher(ids: Vec<usize>, precision: Precision) -> Vec<Box<dyn FlatSearcher>> {
    gpu::open_searchers(&Device::Cuda(ids), &GpuOptions { precision, ..Default::default() }).expect("a CUDA device")
}

/// Median seconds of `reps` searches of `job` (after one warm-up search of the same job).
fn time_search(run: &dyn Fn(&FlatJob<'_>) -> TopKLists, job: &FlatJob<'_>, reps: usize) -> (f64, TopKLists) {
    run(job);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        last = Some(run(job));
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), last.expect("reps ≥ 1"))
}

/// Rows whose exact lists the recall is measured on: every `n / SAMPLE`-th row.
const SAMPLE: usize = 256;

fn sample_rows(n: usize) -> Vec<usize> {
    (0..SAMPLE.min(n)).map(|s| s * n / SAMPLE.min(n)).collect()
}

/// Exact L2 top-K (f64 arithmetic, self excluded, ties to the lower index) of each sampled row.
fn exact_sample(x: &[f32], d: usize, rows: &[usize]) -> Vec<Vec<i64>> {
    let n = x.len() / d;
    let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1);
    let per = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&q| {
                            let qr = &x[q * d..(q + 1) * d];
                            let mut best: Vec<(f64, usize)> = Vec::with_capacity(K + 1);
                            for j in (0..n).filter(|&j| j != q) {
                                let dist: f64 = qr.iter().zip(&x[j * d..(j + 1) * d]).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
                                if best.len() < K || dist < best[K - 1].0 {
                                    let at = best.partition_point(|e| e.0 <= dist);
                                    best.insert(at, (dist, j));
                                    best.truncate(K);
                                }
                            }
                            best.into_iter().map(|(_, j)| j as i64).collect::<Vec<i64>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().expect("exact sample")).collect()
    })
}

/// Share of the sampled rows' exact neighbours found in `got`.
fn recall(got: &TopKLists, rows: &[usize], exact: &[Vec<i64>]) -> f64 {
    let hits: usize = rows.iter().zip(exact).map(|(&i, want)| got.row(i).1.iter().filter(|id| want.contains(id)).count()).sum();
    hits as f64 / (rows.len() * K) as f64
}

fn main() {
    let c = config();
    println!(
        "| case | precision | upload (once) | cuBLAS path | fused | bare GEMM floor | cuBLAS / floor | fused / floor | fused / (floor / 2) | floor TFLOP/s | fused TFLOP/s (n²d, each pair once) | recall@10 of {SAMPLE} rows vs exact f64 (cuBLAS, fused) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &(n, d) in &c.cases {
        let x = normal(n, d, 42);
        let v = Vectors::new(&x, d, "rows").expect("finite rows");
        let job = FlatJob::self_join(v, FlatMetric::L2, K, &NoProgress);
        let flops = 2.0 * (n as f64) * (n as f64) * d as f64;
        let rows = sample_rows(n);
        let exact = exact_sample(&x, d, &rows);
        for &prec in &c.precisions {
            let s = searcher(vec![0], prec).remove(0);
            let t0 = Instant::now();
            let held = s.load(v, None).expect("upload");
            let upload = t0.elapsed().as_secs_f64();
            let job = FlatJob { resident: Some(&held), ..job };
            let (cublas, lists) = time_search(&|j| s.search(&FlatJob { gpu_path: GpuPath::Cublas, ..*j }).expect("GPU search"), &job, c.reps);
            let (fused, fused_lists) = time_search(&|j| s.search(&FlatJob { gpu_path: GpuPath::Fused, ..*j }).expect("fused GPU search"), &job, c.reps);
            drop(held);
            drop(s);
            let floor = median(
                gpu::gemm_floor(0, v, K, &GpuOptions { precision: prec, ..Default::default() }, c.reps)
                    .expect("GEMM floor")
                    .into_iter()
                    .map(|ms| ms as f64 / 1e3)
                    .collect(),
            );
            let r = format!("{:.5}, {:.5}", recall(&lists, &rows, &exact), recall(&fused_lists, &rows, &exact));
            println!(
                "| {n}×{d} | {prec:?} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× | {:.2}× | {:.2}× | {:.0} | {:.0} | {r} |",
                upload * 1e3,
                cublas * 1e3,
                fused * 1e3,
                floor * 1e3,
                cublas / floor,
                fused / floor,
                fused / (floor / 2.0),
                flops / floor / 1e12,
                flops / 2.0 / fused / 1e12
            );
        }
    }

    // The default (exact) mode of bf16 and f16: the engine's self-join, the GPU's candidates
    // proven on the host with the tensor cores' bound and the unproven rows searched again in f32
    // on the CPU (engine::bound). Rows loaded once; timed after one warm-up.
    let reduced: Vec<Precision> = c.precisions.iter().copied().filter(|p| matches!(p, Precision::Bf16 | Precision::F16)).collect();
    if !reduced.is_empty() {
        println!();
        println!("| case | precision | exact mode, k = {K} (engine, median) | rows proven by the first pass | recall@10 of {SAMPLE} rows vs exact f64 |");
        println!("|---|---|---|---|---|");
    }
    for &(n, d) in c.cases.iter().filter(|_| !reduced.is_empty()) {
        let x = normal(n, d, 42);
        let rows = sample_rows(n);
        let exact = exact_sample(&x, d, &rows);
        for &prec in &reduced {
            let engine = Engine::open(&Device::Cuda(vec![0]), EngineOptions { precision: prec, ..EngineOptions::default() }).expect("a CUDA device");
            let loaded = engine.load_shard(&x, d, 0, FlatMetric::L2).expect("load");
            loaded.self_join(K, &NoProgress).expect("warm-up");
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..c.reps {
                let t0 = Instant::now();
                last = Some(loaded.self_join_with_stats(K, &NoProgress).expect("exact-mode self-join"));
                times.push(t0.elapsed().as_secs_f64());
            }
            let (lists, stats) = last.expect("reps ≥ 1");
            println!(
                "| {n}×{d} | {prec:?} | {:.1} ms | {:.2} % | {:.5} |",
                median(times) * 1e3,
                100.0 * (n - stats.fallback_rows) as f64 / n as f64,
                recall(&lists, &rows, &exact)
            );
        }
    }

    if c.shards.is_empty() {
        return;
    }
    // Logical shards on GPU 0: the database split, per-shard top-k merged by our merge kernel.
    let (n, d) = (200_000, 384);
    let x = normal(n, d, 7);
    let v = Vectors::new(&x, d, "rows").expect("finite rows");
    let job = FlatJob::self_join(v, FlatMetric::L2, K, &NoProgress);
    println!();
    println!("| shards on GPU 0 | {n}×{d} f32, k = {K} (median) | vs 1 shard | merge kernel | merged bytes | merge GB/s |");
    println!("|---|---|---|---|---|---|");
    let mut one = None;
    for &m in &c.shards {
        // What the step runs: an engine over m logical shards of GPU 0, the rows loaded once,
        // the self-join timed (exact layer and device merge included) after one warm-up.
        let engine = Engine::open(&Device::Cuda(vec![0; m]), EngineOptions::default()).expect("a CUDA device");
        let loaded = engine.load_shard(&x, d, 0, FlatMetric::L2).expect("load");
        loaded.self_join(K, &NoProgress).expect("warm-up");
        let mut times = Vec::new();
        for _ in 0..c.reps {
            let t0 = Instant::now();
            loaded.self_join(K, &NoProgress).expect("sharded self-join");
            times.push(t0.elapsed().as_secs_f64());
        }
        let t = median(times);
        let base = *one.get_or_insert(t);
        // The merge alone, on per-shard lists of this split (m = 1 has nothing to merge).
        let merge_cols = if m > 1 {
            let shards = searcher(vec![0; m], Precision::F32);
            let parts: Vec<TopKLists> = shard::split_rows(n, m)
                .into_iter()
                .zip(&shards)
                .map(|(r, s)| s.search(&FlatJob { database: v.rows(r.start, r.end), db_offset: r.start as i64, ..job }).expect("shard search"))
                .collect();
            let (merged, ms) = gpu::merge_on_device_timed(0, &parts, K).expect("device merge");
            assert_eq!(merged, faiss_nn::topk::merge_lists(&parts, K), "the device merge must equal the host merge");
            // It reads m lists of k entries (key f32 + index i64) per row and writes one.
            let bytes = ((m + 1) * n * K * 12) as f64;
            format!("{ms:.3} ms | {:.1} MB | {:.0}", bytes / 1e6, bytes / (ms as f64 / 1e3) / 1e9)
        } else {
            "— | — | —".to_string()
        };
        println!("| {m} | {:.1} ms | {:+.1}% | {merge_cols} |", t * 1e3, (t / base - 1.0) * 100.0);
    }
}
