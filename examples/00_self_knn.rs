//! The step on an in-memory dataset: every row's 5 nearest other rows, on the CPU.
//!
//! `cargo run --release --example 00_self_knn`

use faiss_nn::{FaissNearestNeighbour, FlatIndex, Metric};

fn main() -> faiss_nn::Result<()> {
    // 1,000 points on a circle in 8-d: each one's nearest neighbours are the ones beside it.
    let (n, d) = (1000, 8);
    let data: Vec<f32> = (0..n)
        .flat_map(|i| {
            let t = i as f32 * std::f32::consts::TAU / n as f32;
            let mut row = vec![0.0; d];
            row[0] = t.cos();
            row[1] = t.sin();
            row
        })
        .collect();

    // The step: nn_indices and nn_scores for every row (squared L2, the row itself excluded).
    let nn = FaissNearestNeighbour::new().k(5).run(&data, d)?;
    println!("row 0: nn_indices {:?}", nn.indices_of(0));
    println!("row 0: nn_scores  {:?}", nn.scores_of(0));

    // The faiss-like index: foreign queries against the stored rows.
    let mut index = FlatIndex::new(d, Metric::InnerProduct)?;
    index.add(&data)?;
    let (scores, labels) = index.search(&data[..d], 3)?;
    println!("query = row 0, inner product: labels {labels:?}, scores {scores:?}");
    Ok(())
}
