//! Near-duplicates of the bundled demo set by the exact threshold join: the pairs above a
//! cosine similarity, the duplicate groups they make, and which row each group keeps.
//!
//! `cargo run --release --example 02_dedup`

use faiss_nn::dedup::{Dedup, Keep};
use faiss_nn::range::RangeJoin;
use faiss_nn::Metric;
use std::path::Path;

fn main() -> faiss_nn::Result<()> {
    let data = faiss_nn::io::read_embeddings(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo.parquet"), "embedding")?;
    let (x, d) = (&data.embeddings[..], data.d);

    // Every pair with a cosine similarity above 0.9, each computed once, exact scores.
    let pairs = RangeJoin::new(0.9).metric(Metric::Cosine).run(x, d)?;
    println!("{} pairs above 0.9 among {} rows", pairs.len(), data.n);
    for t in 0..pairs.len().min(5) {
        println!("  rows {:>4} and {:>4}: cosine {:.4}", pairs.i[t], pairs.j[t], pairs.score[t]);
    }

    // The groups, keeping the row with the longest text (ties: the first).
    let lengths = data.rank_values("text")?;
    let groups = Dedup::new(0.9).keep(Keep::Largest(lengths)).run(x, d)?;
    println!("{} duplicate groups; {} rows kept, {} removed", groups.duplicate_groups(), groups.kept(), groups.removed());

    // Keeping the first row instead: the same groups, other keepers.
    let first = Dedup::new(0.9).run(x, d)?;
    let moved = (0..data.n).filter(|&r| first.group[r] != groups.group[r]).count();
    println!("keeping the first row of each group instead changes the kept row of {moved} rows");
    Ok(())
}
