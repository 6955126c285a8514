//! Times `FaissNearestNeighbour::run` from Rust on a raw float32 matrix, for the comparison with
//! `faiss_nn.self_knn` from Python (benches/python_vs_rust.py writes the file and runs this).
//!
//! ```sh
//! cargo run --release --example rust_self_knn -- ROWS.f32 D K REPS
//! ```
//! Prints one line per repetition after a warm-up: `run_ms <milliseconds>`.

use faiss_nn::FaissNearestNeighbour;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: rust_self_knn ROWS.f32 D K REPS");
        std::process::exit(2);
    }
    let bytes = std::fs::read(&args[1]).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", args[1])));
    let d: usize = args[2].parse().unwrap_or_else(|_| fail("D must be a positive integer"));
    let k: usize = args[3].parse().unwrap_or_else(|_| fail("K must be a positive integer"));
    let reps: usize = args[4].parse().unwrap_or_else(|_| fail("REPS must be a positive integer"));
    if bytes.len() % 4 != 0 {
        fail("the file is not a whole number of float32 values");
    }
    let x: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let step = FaissNearestNeighbour::new().k(k);
    let warm = step.run(&x, d).unwrap_or_else(|e| fail(&e.to_string()));
    println!("rows {} k {}", warm.n, warm.k);
    for _ in 0..reps {
        let t = Instant::now();
        let nn = step.run(&x, d).unwrap_or_else(|e| fail(&e.to_string()));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(&nn);
        println!("run_ms {ms:.3}");
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("rust_self_knn: {msg}");
    std::process::exit(1);
}
