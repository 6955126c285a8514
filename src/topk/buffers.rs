//! Threshold buffers for large k: each row keeps its current k-th best `(key, index)` as a
//! threshold and appends every candidate that beats it to a buffer of `k + extra` slots; when the
//! buffer fills, a selection (not a sort) keeps the best k and moves the threshold. A rejected
//! candidate costs one compare and an accepted one an append plus its share of a selection,
//! where a heap costs log₂k data-dependent steps per accepted candidate.
//!
//! Entries are packed into one `u64`: the key's order-preserving bits above the candidate's
//! index relative to the buffers' `id_base`, so that integer order is exactly the crate-wide
//! `(key, index)` order and selection runs on plain integers.

use super::{heaps::RowSink, TopKLists};

/// `n` rows of threshold buffers of capacity `k + extra`, candidates numbered from `id_base`
/// (every offered index must lie in `id_base ..= id_base + u32::MAX`).
#[derive(Debug, Clone)]
pub struct TopKBuffers {
    k: usize,
    cap: usize,
    id_base: i64,
    entries: Vec<u64>,
    len: Vec<u32>,
    thr: Vec<u64>,
}

/// Largest span of candidate indices the packed entries can hold.
pub const MAX_ID_SPAN: u64 = u32::MAX as u64;

/// Order-preserving bits of an f32 key (not NaN): negative keys below positive ones, and −0
/// equal to +0 (as `<` and `==` see them).
#[inline(always)]
pub(crate) fn key_bits(key: f32) -> u32 {
    let b = (key + 0.0).to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline(always)]
pub(crate) fn key_from_bits(b: u32) -> f32 {
    f32::from_bits(if b & 0x8000_0000 != 0 { b & 0x7fff_ffff } else { !b })
}

impl TopKBuffers {
    /// Buffers for `n` rows keeping `k` (> 0) each, with `extra` spare slots per row (at least
    /// one; more spare slots mean fewer selections and more memory).
    pub fn new(n: usize, k: usize, extra: usize, id_base: i64) -> Self {
        assert!(k > 0, "k is validated before buffers are built");
        let cap = k + extra.max(1);
        // Empty threshold: every real candidate beats it.
        TopKBuffers { k, cap, id_base, entries: vec![0; n * cap], len: vec![0; n], thr: vec![u64::MAX; n] }
    }

    /// Bytes of the buffers of `n` rows keeping `k` with `extra` spare slots (8 per slot, and
    /// each row's length and threshold).
    pub fn bytes(n: usize, k: usize, extra: usize) -> usize {
        n.saturating_mul((k + extra.max(1)).saturating_mul(8).saturating_add(12))
    }

    /// The spare slots a search should give buffers for `k`: half of k, at least 32.
    pub fn default_extra(k: usize) -> usize {
        (k / 2).max(32)
    }

    /// The spare slots for the lists of reduced-precision candidates (k plus a proof margin): a
    /// quarter of k, at least 8. Those lists are several times the f32 path's, so over many rows
    /// their state is what lifts the join's memory above it; the extra selections cost a few
    /// per cent of a large join's time, more of a small one's (the searcher gives small joins
    /// the default slots).
    pub fn lean_extra(k: usize) -> usize {
        (k / 4).max(8)
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.len.len()
    }

    #[inline(always)]
    fn pack(&self, key: f32, id: i64) -> u64 {
        let rel = (id - self.id_base) as u64;
        debug_assert!(rel <= MAX_ID_SPAN, "candidate {id} outside the buffers' index span");
        ((key_bits(key) as u64) << 32) | rel
    }

    #[inline(always)]
    fn unpack(&self, e: u64) -> (f32, i64) {
        (key_from_bits((e >> 32) as u32), self.id_base + (e & 0xffff_ffff) as i64)
    }

    /// Keeps the best k entries of a full row and makes the k-th of them the threshold.
    #[cold]
    fn compact(&mut self, row: usize) {
        let (k, cap) = (self.k, self.cap);
        let slots = &mut self.entries[row * cap..(row + 1) * cap];
        slots.select_nth_unstable(k - 1);
        // Everything before position k − 1 is smaller: the k-th best is the threshold.
        self.thr[row] = slots[k - 1];
        self.len[row] = k as u32;
    }

    /// Sorts every row best first into finished lists (empty slots → −1 / +inf).
    pub fn into_lists(self) -> TopKLists {
        let (n, k) = (self.n(), self.k);
        let (mut keys, mut ids) = (vec![0f32; n * k], vec![0i64; n * k]);
        self.write_rows(0, &mut keys, &mut ids);
        TopKLists::from_raw(k, keys, ids)
    }

    /// Rows `first..` (as many as `keys` holds) sorted best first into `keys` and `ids` (a
    /// row's entries are copied and the copy sorted, so that the state can be shared).
    pub fn write_rows(&self, first: usize, keys: &mut [f32], ids: &mut [i64]) {
        let (k, cap) = (self.k, self.cap);
        debug_assert!(keys.len().is_multiple_of(k) && ids.len() == keys.len() && first + keys.len() / k <= self.n(), "whole rows of the state");
        let mut sorted = Vec::with_capacity(cap);
        for (r, (kr, ir)) in keys.chunks_mut(k).zip(ids.chunks_mut(k)).enumerate() {
            let row = first + r;
            sorted.clear();
            sorted.extend_from_slice(&self.entries[row * cap..row * cap + self.len[row] as usize]);
            sorted.sort_unstable();
            for t in 0..k {
                (kr[t], ir[t]) = match sorted.get(t) {
                    Some(&e) => self.unpack(e),
                    None => (f32::INFINITY, -1),
                };
            }
        }
    }
}

impl RowSink for TopKBuffers {
    const LARGE_ROWS: bool = true;

    #[inline(always)]
    fn threshold(&self, row: usize) -> f32 {
        let t = self.thr[row];
        if t == u64::MAX {
            f32::INFINITY
        } else {
            key_from_bits((t >> 32) as u32)
        }
    }

    #[inline]
    fn ceiling(&mut self, row: usize, key: f32) {
        if key.is_nan() || key == f32::INFINITY {
            return; // no limit
        }
        // The first packed entry of the next larger key: every entry of `key` itself (any
        // index) still enters, every larger key is turned away.
        let c = (key_bits(key) as u64 + 1) << 32;
        self.thr[row] = self.thr[row].min(c);
    }

    #[inline]
    fn offer(&mut self, row: usize, key: f32, id: i64) {
        if key.is_nan() {
            return;
        }
        let e = self.pack(key, id);
        if e >= self.thr[row] {
            return;
        }
        let l = self.len[row] as usize;
        self.entries[row * self.cap + l] = e;
        self.len[row] += 1;
        if l + 1 == self.cap {
            self.compact(row);
        }
    }

    fn into_lists(self) -> TopKLists {
        TopKBuffers::into_lists(self)
    }

    fn rows(&self) -> usize {
        self.n()
    }

    fn k(&self) -> usize {
        self.k
    }

    fn write_rows(&self, first: usize, keys: &mut [f32], ids: &mut [i64]) {
        TopKBuffers::write_rows(self, first, keys, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bits_preserve_order() {
        let keys = [f32::NEG_INFINITY, -1e30, -2.0, -1.0, -0.0, 0.0, 1e-30, 1.0, 2.5, 1e30, f32::INFINITY];
        for w in keys.windows(2) {
            assert!(key_bits(w[0]) <= key_bits(w[1]), "{} {}", w[0], w[1]);
        }
        for k in keys {
            assert_eq!(key_from_bits(key_bits(k)), k);
        }
        assert_eq!(key_bits(-0.0), key_bits(0.0));
    }
}
