//! k-selection shared by every backend: per-row state that candidates are offered to (bounded
//! heaps for small k, threshold buffers for large k), finished best-first lists, and the merge of
//! partial lists (per block, per shard, per machine).
//!
//! Every backend ranks by a *key* where smaller is better (the L2 distance, or the negated inner
//! product), and breaks ties by the lower row index. Because `(key, index)` is a strict total
//! order, the top-k set of a row is unique: the result never depends on the order in which
//! tiles, threads or shards offered their candidates, nor on which state kept them.

mod buffers;
mod heaps;
mod lists;
mod merge;

pub(crate) use buffers::{key_bits, key_from_bits};
pub use buffers::{TopKBuffers, MAX_ID_SPAN};
pub use heaps::{RowSink, TopKHeaps};
pub use lists::TopKLists;
pub use merge::merge_lists;

/// Sentinel index of an empty heap slot; it loses every tie, so real candidates replace it.
pub(crate) const EMPTY_ID: i64 = i64::MAX;

/// From this k on, rows keep threshold buffers instead of heaps (measured on the CPU self-join:
/// below it a heap's few levels are cheaper than the buffers' selections).
pub const BUFFER_MIN_K: usize = 32;

/// `(a, ia)` ranks strictly before `(b, ib)`: smaller key, or equal key and lower index.
#[inline(always)]
pub fn better(a: f32, ia: i64, b: f32, ib: i64) -> bool {
    a < b || (a == b && ia < ib)
}

/// Whether rows keeping `k` candidates whose indices span `id_span` values use threshold buffers
/// (large k, and a span their packed entries can hold) rather than heaps.
pub fn uses_buffers(k: usize, id_span: u64) -> bool {
    k >= BUFFER_MIN_K && id_span <= MAX_ID_SPAN
}

/// Bytes of the per-row state of `n` rows (see [`uses_buffers`]).
pub fn state_bytes(n: usize, k: usize, id_span: u64) -> usize {
    if uses_buffers(k, id_span) {
        TopKBuffers::bytes(n, k, TopKBuffers::default_extra(k))
    } else {
        n.saturating_mul(k * 12)
    }
}
