//! Merging partial top-k lists of the same rows into one: per-thread states of the symmetric
//! self-join, per-shard results of the sharded search.

use super::{better, TopKLists};

/// Merges lists that cover the same rows (each sorted best first) into the best `k` per row.
/// Inputs may have different lengths per row (a shard smaller than k yields short lists padded
/// with −1); the candidates of different inputs must be distinct, as they are when the inputs
/// searched disjoint database rows or offered disjoint pairs.
pub fn merge_lists(parts: &[TopKLists], k: usize) -> TopKLists {
    assert!(!parts.is_empty(), "merge of no lists");
    let n = parts[0].n();
    assert!(parts.iter().all(|p| p.n() == n), "merged lists must cover the same rows");
    let mut keys = Vec::with_capacity(n * k);
    let mut ids = Vec::with_capacity(n * k);
    let mut heads = vec![0usize; parts.len()];
    for row in 0..n {
        heads.iter_mut().for_each(|h| *h = 0);
        for _ in 0..k {
            // Small fan-in (threads, shards): a linear scan of the heads beats a heap.
            let mut best: Option<(usize, f32, i64)> = None;
            for (p, part) in parts.iter().enumerate() {
                let (pk, pi) = part.row(row);
                let h = heads[p];
                if h >= pk.len() || pi[h] < 0 {
                    continue;
                }
                if best.is_none_or(|(_, bk, bi)| better(pk[h], pi[h], bk, bi)) {
                    best = Some((p, pk[h], pi[h]));
                }
            }
            match best {
                Some((p, key, id)) => {
                    heads[p] += 1;
                    keys.push(key);
                    ids.push(id);
                }
                None => {
                    keys.push(f32::INFINITY);
                    ids.push(-1);
                }
            }
        }
    }
    TopKLists::from_raw(k, keys, ids)
}
