//! Exact flat search, split as faiss/gpu splits it: row norms, distance tiles (products plus the
//! L2/IP epilogue), k-selection fused per tile, and the merge of partial lists. Every backend
//! (the CPU one here, the CUDA one in `gpu`, shards of either in `shard`) takes the same
//! [`FlatJob`] and returns the same [`TopKLists`].

pub mod cpu;
pub mod plan;
pub mod termwise;

use crate::data::Vectors;
use crate::error::Result;
use crate::gpu::GpuPath;
use crate::metric::FlatMetric;
use crate::progress::Progress;
use crate::topk::TopKLists;
pub use cpu::tile::Operands;

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
    /// L2 only: a vector subtracted from every query and database row before the products.
    /// Distances do not change under translation, but the cancellation in
    /// ‖q‖² + ‖x‖² − 2·q·x does: centring the data (the engine passes the column means) keeps
    /// the f32 error relative to the spread of the data instead of its distance from the origin.
    pub shift: Option<&'a [f32]>,
    /// Database rows this device already holds (from [`FlatSearcher::load`] of this very
    /// `database`), so that the search streams only the queries.
    pub resident: Option<&'a Resident>,
    /// Which GPU kernels compute it (decided by [`crate::engine::strategy`]; the CPU ignores it).
    pub gpu_path: GpuPath,
    /// The CPU products' operands: f32, bf16 or int8 (whose lists the exact layer proves with
    /// the reduced products' error bound). GPUs take their arithmetic from their own options.
    pub operands: Operands,
    /// Receives progress (backend-defined units: rows, tiles or block pairs).
    pub progress: &'a dyn Progress,
}

impl<'a> FlatJob<'a> {
    /// A self-join of `data` with itself, every row excluded from its own list.
    pub fn self_join(data: Vectors<'a>, metric: FlatMetric, k: usize, progress: &'a dyn Progress) -> Self {
        FlatJob {
            queries: data,
            database: data,
            metric,
            k,
            db_offset: 0,
            query_offset: Some(0),
            shift: None,
            resident: None,
            gpu_path: GpuPath::Cublas,
            operands: Operands::F32,
            progress,
        }
    }

    /// Queries against a database, no exclusion.
    pub fn search(queries: Vectors<'a>, database: Vectors<'a>, metric: FlatMetric, k: usize, progress: &'a dyn Progress) -> Self {
        FlatJob {
            queries,
            database,
            metric,
            k,
            db_offset: 0,
            query_offset: None,
            shift: None,
            resident: None,
            gpu_path: GpuPath::Cublas,
            operands: Operands::F32,
            progress,
        }
    }

    /// True when queries and database are the very same rows with the same global indices, so
    /// each pair's distance can be computed once and offered to both rows.
    pub fn is_symmetric(&self) -> bool {
        let (q, x) = (self.queries.as_slice(), self.database.as_slice());
        std::ptr::eq(q.as_ptr(), x.as_ptr()) && q.len() == x.len() && self.query_offset == Some(self.db_offset)
    }

    /// The same job with rows shifted by `shift` before the products (ignored for inner product).
    pub fn with_shift(self, shift: Option<&'a [f32]>) -> Self {
        FlatJob { shift: if self.metric == FlatMetric::L2 { shift } else { None }, ..self }
    }

    /// The global index of query row `i`, if queries belong to the dataset.
    #[inline]
    pub fn query_id(&self, i: usize) -> Option<i64> {
        self.query_offset.map(|o| o + i as i64)
    }
}

/// A flat search engine on one device (CPU threads, one GPU, …): every query against every
/// database row in f32 (or the GPU precision asked for). The results are the backend's raw
/// ranking; [`crate::engine`] re-scores them exactly.
pub trait FlatSearcher: Send + Sync {
    /// Where it runs, for messages ("cpu", "cuda:0").
    fn name(&self) -> String;
    /// Top-k of every query row, best first, database indices offset by `job.db_offset`.
    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists>;

    /// [`FlatSearcher::search`] with the lists handed to `each` in contiguous blocks of query
    /// rows (the block's first row, its lists), so that a caller can consume and free each block
    /// before the next is made. The blocks come in row order, each starting where the last
    /// ended, and cover every query row once; by default one block holds them all.
    fn search_each(&self, job: &FlatJob<'_>, each: &mut dyn FnMut(usize, TopKLists) -> Result<()>) -> Result<()> {
        each(0, self.search(job)?)
    }

    /// Makes `database` (shifted by `shift`, as jobs on it will be) resident on this device, for
    /// jobs that pass the returned handle as [`FlatJob::resident`]: a GPU uploads the rows once
    /// here instead of once per search. The CPU reads rows where they are and keeps nothing.
    fn load(&self, database: Vectors<'_>, shift: Option<&[f32]>) -> Result<Resident> {
        let _ = (database, shift);
        Ok(Resident::default())
    }
}

/// Rows a device holds between searches (see [`FlatSearcher::load`]); dropping it frees them.
#[derive(Default)]
pub struct Resident {
    /// The backend's own record of the rows (device buffers); `None` where nothing is kept.
    pub(crate) rows: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Row transfers to the device made for these rows (1 for a loaded GPU shard, 0 on the CPU).
    pub(crate) uploads: usize,
}

impl Resident {
    /// Times the rows were transferred to the device: at most once, at load.
    pub fn uploads(&self) -> usize {
        self.uploads
    }
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident").field("held", &self.rows.is_some()).field("uploads", &self.uploads).finish()
    }
}
