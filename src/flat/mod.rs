//! Exact flat search, split as faiss/gpu splits it: row norms, distance tiles (products plus the
//! L2/IP epilogue), k-selection fused per tile, and the merge of partial lists. Every backend
//! (the CPU one here, the CUDA one in `gpu`, shards of either in `shard`) takes the same
//! [`FlatJob`] and returns the same [`TopKLists`].

pub mod cpu;
pub mod plan;

use crate::data::Vectors;
use crate::error::Result;
use crate::metric::FlatMetric;
use crate::progress::Progress;
use crate::topk::TopKLists;

/// One exact search: every query row against every database row.
#[derive(Clone, Copy)]
pub struct FlatJob<'a> {
    /// Query rows.
    pub queries: Vectors<'a>,
    /// Database rows.
    pub database: Vectors<'a>,
    /// L2 or inner product.
    pub metric: FlatMetric,
    /// Neighbours per query (≥ 1). May exceed the database size; the surplus stays empty.
    pub k: usize,
    /// Global index of database row 0 (non-zero for a shard).
    pub db_offset: i64,
    /// For a self-join: global index of query row 0. A database row whose global index equals a
    /// query's is that query itself and is skipped. `None`: queries are foreign rows.
    pub query_offset: Option<i64>,
    /// Receives progress in query rows.
    pub progress: &'a dyn Progress,
}

impl<'a> FlatJob<'a> {
    /// A self-join of `data` with itself, every row excluded from its own list.
    pub fn self_join(data: Vectors<'a>, metric: FlatMetric, k: usize, progress: &'a dyn Progress) -> Self {
        FlatJob { queries: data, database: data, metric, k, db_offset: 0, query_offset: Some(0), progress }
    }

    /// Queries against a database, no exclusion.
    pub fn search(queries: Vectors<'a>, database: Vectors<'a>, metric: FlatMetric, k: usize, progress: &'a dyn Progress) -> Self {
        FlatJob { queries, database, metric, k, db_offset: 0, query_offset: None, progress }
    }

    /// True when queries and database are the very same rows with the same global indices, so
    /// each pair's distance can be computed once and offered to both rows.
    pub fn is_symmetric(&self) -> bool {
        let (q, x) = (self.queries.as_slice(), self.database.as_slice());
        std::ptr::eq(q.as_ptr(), x.as_ptr()) && q.len() == x.len() && self.query_offset == Some(self.db_offset)
    }

    /// The global index of query row `i`, if queries belong to the dataset.
    #[inline]
    pub fn query_id(&self, i: usize) -> Option<i64> {
        self.query_offset.map(|o| o + i as i64)
    }
}

/// An exact flat search engine (CPU threads, one GPU, …).
pub trait FlatSearcher: Sync {
    /// Where it runs, for messages ("cpu", "cuda:0").
    fn name(&self) -> String;
    /// Top-k of every query row, best first, database indices offset by `job.db_offset`.
    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists>;
}
