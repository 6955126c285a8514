//! Test data: seeded random normal matrices, small-integer matrices full of ties and duplicate
//! rows, and the real MiniLM demo rows.

use std::path::PathBuf;

/// A small deterministic generator (xorshift64*), so tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `n × d` standard-normal values.
pub fn normal(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n * d).map(|_| r.normal()).collect()
}

/// `n × d` values from {−2, …, 2}, with about a quarter of the rows copies of earlier rows:
/// exact ties and exact duplicates everywhere.
pub fn tied(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        if i > 0 && r.below(4) == 0 {
            let src = r.below(i);
            let row: Vec<f32> = out[src * d..(src + 1) * d].to_vec();
            out.extend(row);
        } else {
            out.extend((0..d).map(|_| r.below(5) as f32 - 2.0));
        }
    }
    out
}

/// The checkout the tests read their data from: `FAISS_NN_ROOT` when set (a test binary built
/// here and run from another copy of the repository, as on the GPU machine), else this crate.
pub fn repo_root() -> PathBuf {
    std::env::var_os("FAISS_NN_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The demo set shipped in the repo (3,000 rows of the real PyPI MiniLM data, d = 384).
pub fn demo_path() -> PathBuf {
    repo_root().join("data/demo.parquet")
}

/// The demo set's embeddings, `(data, d)`.
pub fn demo_embeddings() -> (Vec<f32>, usize) {
    let ds = faiss_nn::io::read_embeddings(&demo_path(), "embedding").expect("the demo set is readable");
    (ds.embeddings.to_vec(), ds.d)
}

/// The full 10,000-row set, if the shared data folder is beside the checkout.
pub fn full_minilm_path() -> Option<PathBuf> {
    let p = repo_root().join("../shared/data/pypi-minilm-10k.parquet");
    p.exists().then_some(p)
}
