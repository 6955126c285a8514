//! k-selection shared by every backend: bounded per-row heaps that candidates are offered to,
//! finished best-first lists, and the merge of partial lists (per thread, per tile, per shard).
//!
//! Every backend ranks by a *key* where smaller is better (the L2 distance, or the negated inner
//! product), and breaks ties by the lower row index. Because `(key, index)` is a strict total
//! order, the top-k set of a row is unique: the result never depends on the order in which
//! tiles, threads or shards offered their candidates.

mod heaps;
mod lists;
mod merge;

pub use heaps::{HeapRowsMut, TopKHeaps};
pub use lists::TopKLists;
pub use merge::merge_lists;

/// Sentinel index of an empty heap slot; it loses every tie, so real candidates replace it.
pub(crate) const EMPTY_ID: i64 = i64::MAX;

/// `(a, ia)` ranks strictly before `(b, ib)`: smaller key, or equal key and lower index.
#[inline(always)]
pub fn better(a: f32, ia: i64, b: f32, ib: i64) -> bool {
    a < b || (a == b && ia < ib)
}
