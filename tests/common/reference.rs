//! A naive reference in f64: every pair's score computed directly, sorted by (score, index).

use faiss_nn::FlatMetric;

/// Exact score of a pair in f64: squared distance, inner product, or cosine similarity (the
/// inner product over both norms, clamped to [−1, 1]).
pub fn score(metric: FlatMetric, a: &[f32], b: &[f32]) -> f64 {
    let dot = || a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    match metric {
        FlatMetric::L2 => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum(),
        FlatMetric::InnerProduct => dot(),
        FlatMetric::Cosine => {
            let norm = |r: &[f32]| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            (dot() / (norm(a) * norm(b))).clamp(-1.0, 1.0)
        }
    }
}

/// For each query, the `k` best database rows `(index, score)` best first (ties by index),
/// skipping database row `i` for query `i` when `self_join`.
pub fn knn(metric: FlatMetric, q: &[f32], x: &[f32], d: usize, k: usize, self_join: bool) -> Vec<Vec<(i64, f64)>> {
    let nq = q.len() / d;
    let nx = x.len() / d;
    (0..nq)
        .map(|i| {
            let qi = &q[i * d..(i + 1) * d];
            let mut all: Vec<(i64, f64)> = (0..nx).filter(|&j| !(self_join && j == i)).map(|j| (j as i64, score(metric, qi, &x[j * d..(j + 1) * d]))).collect();
            all.sort_by(|a, b| {
                let o = match metric {
                    FlatMetric::L2 => a.1.total_cmp(&b.1),
                    FlatMetric::InnerProduct | FlatMetric::Cosine => b.1.total_cmp(&a.1),
                };
                o.then(a.0.cmp(&b.0))
            });
            all.truncate(k);
            all
        })
        .collect()
}
