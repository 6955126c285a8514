//! How several devices share rows: the modes of a multi-device [`crate::engine::Engine`] and the
//! row split they use.
//!
//! *Sharded* (default): the rows are split into contiguous, near-equal parts, one per device;
//! every query is searched against every part (global indices kept by each part's offset) and
//! the per-part top-k lists are merged with the same `(key, index)` order as everywhere else.
//! *Replicated*: every device holds all rows and takes a contiguous share of the queries; the
//! shares are concatenated. A failing device fails the whole call.

/// How several devices share a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ShardMode {
    /// Rows split across devices; per-device top-k merged.
    #[default]
    Sharded,
    /// Every device holds all rows and takes a share of the queries.
    Replicated,
}

impl std::str::FromStr for ShardMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sharded" => Ok(ShardMode::Sharded),
            "replicated" => Ok(ShardMode::Replicated),
            _ => Err(crate::Error::invalid("shard_mode", format!("{s:?}: expected sharded or replicated"))),
        }
    }
}

/// Splits `n` rows into `parts` contiguous ranges whose sizes differ by at most one.
pub fn split_rows(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts).map(|p| (p * n / parts)..((p + 1) * n / parts)).collect()
}
