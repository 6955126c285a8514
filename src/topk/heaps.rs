//! Bounded max-heaps, one per row, stored flat: the root of each row's heap is its current
//! worst kept candidate, so rejecting a candidate costs one comparison.

use super::{better, TopKLists, EMPTY_ID};

/// `n` bounded heaps of capacity `k` over `(key, index)`.
#[derive(Debug, Clone)]
pub struct TopKHeaps {
    k: usize,
    keys: Vec<f32>,
    ids: Vec<i64>,
}

impl TopKHeaps {
    /// `n` empty heaps of capacity `k` (> 0).
    pub fn new(n: usize, k: usize) -> Self {
        assert!(k > 0, "k is validated before heaps are built");
        TopKHeaps { k, keys: vec![f32::INFINITY; n * k], ids: vec![EMPTY_ID; n * k] }
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.keys.len() / self.k
    }

    /// Capacity per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Sorts every row best first and turns empty slots into index −1 / key +inf.
    pub fn into_lists(self) -> TopKLists {
        let TopKHeaps { k, mut keys, mut ids } = self;
        finish_rows(k, &mut keys, &mut ids);
        TopKLists::from_raw(k, keys, ids)
    }
}

/// Per-row top-k state that the kernels offer candidates to: bounded heaps ([`TopKHeaps`]) or
/// threshold buffers ([`super::TopKBuffers`]).
pub trait RowSink {
    /// True where a row's state spans many cache lines (threshold buffers): offers to many rows
    /// in turn then miss the cache on every row, so the kernels group a tile's offers by row.
    const LARGE_ROWS: bool = false;
    /// The key a candidate must reach (`<=`, then ties by index) to enter row `row`; callers
    /// test against it before calling [`RowSink::offer`], so that a rejection costs one compare.
    fn threshold(&self, row: usize) -> f32;
    /// Offers `(key, id)` to row `row`; kept if it ranks before the row's current worst. NaN
    /// keys are never kept.
    fn offer(&mut self, row: usize, key: f32, id: i64);
    /// Rejects from now on every candidate of row `row` whose key is above `key` (a hint: a
    /// state may ignore it). A row whose best keys lie above its ceiling ends short.
    fn ceiling(&mut self, row: usize, key: f32) {
        let _ = (row, key);
    }
    /// Sorts every row best first into finished lists (empty slots: index −1, key +inf).
    fn into_lists(self) -> TopKLists
    where
        Self: Sized;
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Candidates kept per row.
    fn k(&self) -> usize;
    /// Rows `first..` (as many as `keys` holds, `k` entries each) sorted best first into `keys`
    /// and `ids`, the state left as it is: several threads can write the rows of one state into
    /// their parts of one output.
    fn write_rows(&self, first: usize, keys: &mut [f32], ids: &mut [i64]);
}

impl RowSink for TopKHeaps {
    #[inline(always)]
    fn threshold(&self, row: usize) -> f32 {
        self.keys[row * self.k]
    }

    #[inline]
    fn offer(&mut self, row: usize, key: f32, id: i64) {
        let base = row * self.k;
        if !better(key, id, self.keys[base], self.ids[base]) {
            return;
        }
        sift_down_replace(&mut self.keys[base..base + self.k], &mut self.ids[base..base + self.k], key, id);
    }

    fn into_lists(self) -> TopKLists {
        TopKHeaps::into_lists(self)
    }

    fn rows(&self) -> usize {
        self.n()
    }

    fn k(&self) -> usize {
        self.k
    }

    fn write_rows(&self, first: usize, keys: &mut [f32], ids: &mut [i64]) {
        let k = self.k;
        let mut pairs = Vec::with_capacity(k);
        for (r, (kr, ir)) in keys.chunks_mut(k).zip(ids.chunks_mut(k)).enumerate() {
            let base = (first + r) * k;
            pairs.clear();
            pairs.extend(self.keys[base..base + k].iter().copied().zip(self.ids[base..base + k].iter().copied()));
            sort_into(&mut pairs, kr, ir);
        }
    }
}

/// Replaces the root of a max-heap with `(key, id)` and restores the heap order.
#[inline]
fn sift_down_replace(keys: &mut [f32], ids: &mut [i64], key: f32, id: i64) {
    let k = keys.len();
    let mut i = 0;
    loop {
        let l = 2 * i + 1;
        if l >= k {
            break;
        }
        let r = l + 1;
        // The larger (worse) child.
        let c = if r < k && better(keys[l], ids[l], keys[r], ids[r]) { r } else { l };
        if better(keys[c], ids[c], key, id) {
            break;
        }
        keys[i] = keys[c];
        ids[i] = ids[c];
        i = c;
    }
    keys[i] = key;
    ids[i] = id;
}

/// Sorts each `k`-row best first; empty slots become (+inf, −1).
pub(crate) fn finish_rows(k: usize, keys: &mut [f32], ids: &mut [i64]) {
    let mut pairs: Vec<(f32, i64)> = Vec::with_capacity(k);
    for (kr, ir) in keys.chunks_mut(k).zip(ids.chunks_mut(k)) {
        pairs.clear();
        pairs.extend(kr.iter().copied().zip(ir.iter().copied()));
        sort_into(&mut pairs, kr, ir);
    }
}

/// Sorts one row's `(key, id)` pairs best first into `keys` / `ids`, empty slots as (+inf, −1).
fn sort_into(pairs: &mut [(f32, i64)], keys: &mut [f32], ids: &mut [i64]) {
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (j, (key, id)) in pairs.iter().enumerate() {
        keys[j] = *key;
        ids[j] = if *id == EMPTY_ID { -1 } else { *id };
    }
}
