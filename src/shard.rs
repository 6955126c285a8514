//! Multi-device search (STUB).

/// How several devices share a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardMode {
    /// Database rows split across devices; per-device top-k merged.
    #[default]
    Sharded,
    /// Every device holds the whole database and takes a share of the queries.
    Replicated,
}
