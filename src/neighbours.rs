//! The step's result: for every row, k neighbour indices and their scores, best first.

/// `n × k` neighbour lists in row-major order, as the step adds them to a dataset
/// (`nn_indices`, `nn_scores`).
///
/// Scores are squared L2 distances (ascending) or inner products (descending), in faiss's
/// conventions; a slot that could not be filled (an approximate index that found fewer than k
/// rows) holds index −1 and score +inf (distances) or −inf (similarities).
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    /// Number of rows.
    pub n: usize,
    /// Neighbours per row.
    pub k: usize,
    /// Row indices, `n × k`.
    pub indices: Vec<i64>,
    /// Scores, `n × k`.
    pub scores: Vec<f32>,
}

impl Neighbours {
    /// Neighbour indices of row `i`, best first.
    pub fn indices_of(&self, i: usize) -> &[i64] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }

    /// Scores of row `i`, best first.
    pub fn scores_of(&self, i: usize) -> &[f32] {
        &self.scores[i * self.k..(i + 1) * self.k]
    }
}
