//! Finished top-k lists: per row, k `(key, index)` pairs best first.

use crate::metric::FlatMetric;
use crate::neighbours::Neighbours;

/// `n × k` lists sorted best first by `(key, index)`, where the key is smaller-is-better.
/// Unfilled slots hold key +inf and index −1.
#[derive(Debug, Clone, PartialEq)]
pub struct TopKLists {
    k: usize,
    /// Keys, `n × k`.
    pub keys: Vec<f32>,
    /// Indices, `n × k`.
    pub ids: Vec<i64>,
}

impl TopKLists {
    /// Wraps buffers that already are sorted best first per row.
    pub fn from_raw(k: usize, keys: Vec<f32>, ids: Vec<i64>) -> Self {
        debug_assert_eq!(keys.len(), ids.len());
        debug_assert!(k > 0 && keys.len().is_multiple_of(k));
        TopKLists { k, keys, ids }
    }

    /// `n` rows of empty lists.
    pub fn empty(n: usize, k: usize) -> Self {
        TopKLists { k, keys: vec![f32::INFINITY; n * k], ids: vec![-1; n * k] }
    }

    /// Rows.
    pub fn n(&self) -> usize {
        self.keys.len() / self.k
    }

    /// Length of each list.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `i` as `(keys, ids)`.
    pub fn row(&self, i: usize) -> (&[f32], &[i64]) {
        (&self.keys[i * self.k..(i + 1) * self.k], &self.ids[i * self.k..(i + 1) * self.k])
    }

    /// Row `i` of a search for one entry more than needed that did not leave the row itself
    /// out: its `k − 1` best entries other than the row's own `own` (or, where `own` is absent,
    /// as when duplicates with smaller indices push it out, all but the last).
    pub(crate) fn row_without(&self, i: usize, own: Option<i64>) -> impl Iterator<Item = (f32, i64)> + '_ {
        let (keys, ids) = self.row(i);
        let skip = own.and_then(|o| ids.iter().position(|&id| id == o)).unwrap_or(self.k - 1);
        keys.iter().zip(ids).enumerate().filter(move |&(s, _)| s != skip).map(|(_, (key, id))| (*key, *id))
    }

    /// These lists widened to `k` (at least their own length) slots per row, the new slots
    /// empty; [`Error::OutOfMemory`](crate::Error::OutOfMemory) where they cannot be allocated.
    pub(crate) fn widened(self, k: usize) -> crate::Result<TopKLists> {
        if k <= self.k {
            return Ok(self);
        }
        let n = self.n();
        let oom = || crate::Error::OutOfMemory {
            device: "cpu".into(),
            context: format!("{n} neighbour lists of k = {k}"),
            needed_bytes: n.saturating_mul(k).saturating_mul(12),
        };
        let total = n.checked_mul(k).ok_or_else(oom)?;
        let (mut keys, mut ids) = (Vec::new(), Vec::new());
        keys.try_reserve_exact(total).map_err(|_| oom())?;
        ids.try_reserve_exact(total).map_err(|_| oom())?;
        for r in 0..n {
            let (rk, ri) = self.row(r);
            keys.extend_from_slice(rk);
            keys.resize(keys.len() + k - self.k, f32::INFINITY);
            ids.extend_from_slice(ri);
            ids.resize(ids.len() + k - self.k, -1);
        }
        Ok(TopKLists { k, keys, ids })
    }

    /// Appends the rows of `other` (same k) after these.
    pub fn extend(&mut self, other: TopKLists) {
        assert_eq!(self.k, other.k);
        self.keys.extend(other.keys);
        self.ids.extend(other.ids);
    }

    /// Turns keys into the metric's scores: L2 distances as they are, inner products negated
    /// back; an empty slot becomes +inf (L2) or −inf (IP) (faiss writes ±f32::MAX there; an
    /// infinity cannot be mistaken for a score).
    pub fn into_neighbours(self, metric: FlatMetric) -> Neighbours {
        let n = self.n();
        let scores = self.keys.into_iter().map(|key| metric.score_from_key(key)).collect();
        Neighbours { n, k: self.k, indices: self.ids, scores }
    }
}
