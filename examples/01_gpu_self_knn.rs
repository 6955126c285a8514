//! 01: the nearest-neighbour self-join on a GPU, then the same rows searched directly with a
//! GPU searcher in half precision, and its agreement with exact f32.
//!
//!     cargo run --release --features cuda --example 01_gpu_self_knn [-- N D K]
//!
//! Needs a CUDA GPU with driver and cuBLAS, and a build with nvcc (see
//! docs/cuda-toolchain.md); otherwise it prints why the GPU is unavailable.

use faiss_nn::flat::FlatJob;
use faiss_nn::gpu::{self, GpuOptions};
use faiss_nn::{Device, FaissNearestNeighbour, FlatMetric, NoProgress, Precision, Vectors};
use std::time::Instant;

fn main() -> faiss_nn::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, d, k) = (args.first().copied().unwrap_or(100_000), args.get(1).copied().unwrap_or(384), args.get(2).copied().unwrap_or(10));
    let data = random_rows(n, d);

    // 1. The step on device 0, exact f32, every row's k nearest other rows.
    let t = Instant::now();
    let nn = match FaissNearestNeighbour::new().device(Device::Cuda(vec![0])).k(k).run(&data, d) {
        Ok(nn) => nn,
        Err(e) => {
            eprintln!("GPU search unavailable: {e}");
            return Ok(());
        }
    };
    println!("{n} × {d}, k = {k}: self-join on cuda:0 in {:.2?}", t.elapsed());
    println!("row 0 → {:?} at {:?}", nn.indices_of(0), nn.scores_of(0));

    // 2. A searcher directly, with bf16 products, and its recall against f32.
    let exact = gpu::open_searchers(&Device::Cuda(vec![0]), &GpuOptions::default())?.remove(0);
    let half = gpu::open_searchers(&Device::Cuda(vec![0]), &GpuOptions { precision: Precision::Bf16, ..Default::default() })?.remove(0);
    let v = Vectors::new(&data, d, "embeddings")?;
    let job = FlatJob::self_join(v, FlatMetric::InnerProduct, k, &NoProgress);
    let a = exact.search(&job)?;
    let t = Instant::now();
    let b = half.search(&job)?;
    println!("bf16 inner-product self-join in {:.2?}", t.elapsed());
    let hits: usize = (0..n).map(|i| b.row(i).1.iter().filter(|id| a.row(i).1.contains(id)).count()).sum();
    println!("bf16 recall@{k} against f32: {:.4}", hits as f64 / (n * k) as f64);
    Ok(())
}

/// Deterministic pseudo-random rows in [−1, 1).
fn random_rows(n: usize, d: usize) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
