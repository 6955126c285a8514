//! How a GPU search splits its work to fit a memory budget: whether the database stays resident
//! on the device, how many database rows one product tile spans, how many query rows one batch
//! holds. Pure arithmetic, so it is tested without a GPU.
//!
//! Device memory of a search (bytes; `row` = one stored row, `ld · elem + 4` with its norm):
//! * resident database: `ndb · row`, or two streamed tiles `2 · tile · row`;
//! * query batches, when the queries are not rows of the resident database: `2 · batch · row`
//!   (double-buffered: the next batch uploads while this one computes);
//! * one product tile `batch · tile_ld · 4` (the compute stream reuses it tile after tile);
//! * top-k lists, running + tile partial, double-buffered across batches: `2 · 2 · batch · k · 12`;
//! * upload staging for raw f32 rows, two chunks: `2 · chunk · d · 4`;
//! * a fixed reserve for cuBLAS's workspace and the context's own allocations.

use crate::flat::plan::round_up;
pub use crate::gpu::table::MAX_K;
/// Rows are stored with a stride that is a multiple of this many elements, so that every row
/// starts 16-byte aligned (vector loads; tensor-core GEMMs want 8 half-precision elements).
pub const ROW_ALIGN: usize = 8;
/// Bytes kept free for cuBLAS workspaces and other allocations we do not make ourselves.
pub const RESERVE: usize = 96 << 20;
/// Database rows per product tile, before shrinking.
const TILE_COLS: usize = 16384;
/// Query rows per batch at most, before shrinking.
const MAX_BATCH: usize = 8192;
/// Upload chunk, bytes of raw f32 rows, before shrinking.
const CHUNK_BYTES: usize = 32 << 20;
/// Bytes of one top-k entry (f32 key + i64 index).
const ENTRY: usize = 12;

/// Row stride of stored rows, in elements: `d` rounded up to [`ROW_ALIGN`].
pub fn stored_ld(d: usize) -> usize {
    round_up(d.max(1), ROW_ALIGN)
}

/// Rows of `d` raw f32 per upload chunk (at most `rows`), halved `shrink` times.
pub fn upload_chunk(d: usize, rows: usize, shrink: u32) -> usize {
    ((CHUNK_BYTES >> shrink) / (d.max(1) * 4)).clamp(1, rows.max(1))
}

/// What the planner needs.
#[derive(Debug, Clone, Copy)]
pub struct GpuPlanInput {
    /// Query rows.
    pub nq: usize,
    /// Database rows.
    pub ndb: usize,
    /// Dimension.
    pub d: usize,
    /// Neighbours per query (≤ [`MAX_K`]).
    pub k: usize,
    /// Bytes per stored element: 4 (f32, tf32) or 2 (f16, bf16).
    pub elem_bytes: usize,
    /// Device bytes this search may use.
    pub budget: usize,
    /// The queries are rows of the database, so a resident database serves them without upload.
    pub queries_in_db: bool,
    /// The database is already on the device (loaded rows): resident, and outside the budget.
    pub db_on_device: bool,
    /// Query rows per batch asked for by the user.
    pub batch_rows: Option<usize>,
    /// How many times an out-of-memory error already halved the tiles.
    pub shrink: u32,
}

/// The planner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuPlan {
    /// Row stride of stored rows, elements (`d` rounded up to [`ROW_ALIGN`]).
    pub ld: usize,
    /// The whole database is uploaded once and stays on the device.
    pub resident: bool,
    /// Database rows per product tile.
    pub tile: usize,
    /// Row stride of the product tile (`tile` rounded up to 4 for vector loads).
    pub tile_ld: usize,
    /// Query rows per batch.
    pub batch: usize,
    /// Rows per upload chunk.
    pub chunk: usize,
    /// Queries are uploaded (not read from the resident database).
    pub upload_queries: bool,
    /// Estimated device bytes.
    pub bytes: usize,
}

impl GpuPlan {
    /// Number of shrink steps after which the planner cannot go smaller.
    pub const MAX_SHRINK: u32 = 5;
}

/// Plans a search; see the module doc for the memory model. The plan always has at least one
/// query row per batch and one tile column; whether it really fits is for the allocator to say
/// (an out-of-memory error then re-plans with `shrink + 1`).
pub fn plan(p: &GpuPlanInput) -> GpuPlan {
    let ld = stored_ld(p.d);
    let row = ld * p.elem_bytes + 4;
    let shrink = p.shrink.min(GpuPlan::MAX_SHRINK);
    let budget = p.budget.saturating_sub(RESERVE);

    let chunk = upload_chunk(p.d, p.ndb.max(p.nq), shrink);
    let staging = 2 * chunk * p.d * 4;
    let tile = round_up((TILE_COLS >> shrink).max(256).min(p.ndb.max(1)), 4).min(round_up(p.ndb.max(1), 4));
    let tile_ld = round_up(tile, 4);

    // Resident when the database takes at most half the budget: the rest feeds the tiles.
    let db_resident = p.ndb.saturating_mul(row);
    let resident = p.db_on_device || db_resident <= budget / 2;
    let upload_queries = !(resident && p.queries_in_db);
    let db_bytes = if p.db_on_device {
        0
    } else if resident {
        db_resident
    } else {
        2 * tile * row
    };

    let per_query = tile_ld * 4 + 2 * 2 * p.k * ENTRY + if upload_queries { 2 * row } else { 0 };
    let fixed = db_bytes + staging;
    let fit = budget.saturating_sub(fixed) / per_query.max(1);
    let cap = (MAX_BATCH >> shrink).max(1);
    let batch = match p.batch_rows {
        Some(b) => b.max(1),
        None => fit.clamp(1, cap),
    }
    .min(p.nq.max(1));
    let bytes = fixed + batch * per_query + RESERVE;
    GpuPlan { ld, resident, tile, tile_ld, batch, chunk, upload_queries, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(nq: usize, ndb: usize, d: usize, k: usize, budget: usize) -> GpuPlanInput {
        GpuPlanInput { nq, ndb, d, k, elem_bytes: 4, budget, queries_in_db: true, db_on_device: false, batch_rows: None, shrink: 0 }
    }

    #[test]
    fn a_small_self_join_is_resident_and_uploads_no_queries() {
        let p = plan(&input(3000, 3000, 384, 10, 8 << 30));
        assert!(p.resident && !p.upload_queries);
        assert_eq!(p.ld, 384);
        assert_eq!(p.batch, 3000);
        assert_eq!(p.tile, 3000);
        assert!(p.bytes <= 8 << 30);
    }

    #[test]
    fn a_large_database_is_streamed_within_the_budget() {
        let budget = 2usize << 30;
        let p = plan(&input(10_000_000, 10_000_000, 768, 100, budget));
        assert!(!p.resident && p.upload_queries);
        assert!(p.bytes <= budget, "{p:?}");
        assert!(p.batch >= 256, "{p:?}");
    }

    #[test]
    fn odd_dimensions_are_padded_and_tiles_aligned() {
        let p = plan(&input(5, 7, 3, 1, 1 << 30));
        assert_eq!(p.ld, 8);
        assert_eq!(p.tile % 4, 0);
        assert!(p.tile >= 7);
        assert_eq!(p.batch, 5);
    }

    #[test]
    fn shrinking_halves_tiles_and_batches() {
        let mut i = input(1 << 20, 1 << 20, 128, 4096, 64 << 30);
        let a = plan(&i);
        i.shrink = 2;
        let b = plan(&i);
        assert!(b.tile <= a.tile / 4 + 4 && b.batch <= a.batch / 4 + 1, "{a:?} {b:?}");
    }

    #[test]
    fn the_user_batch_wins_but_never_exceeds_the_queries() {
        let mut i = input(100, 100, 16, 5, 1 << 30);
        i.batch_rows = Some(7);
        assert_eq!(plan(&i).batch, 7);
        i.batch_rows = Some(1000);
        assert_eq!(plan(&i).batch, 100);
    }

    #[test]
    fn loaded_rows_are_resident_and_outside_the_budget() {
        let mut i = input(10_000_000, 10_000_000, 768, 10, 1 << 30);
        i.db_on_device = true;
        let p = plan(&i);
        assert!(p.resident && !p.upload_queries);
        assert!(p.bytes <= 1 << 30, "{p:?}");
    }

    #[test]
    fn a_tiny_budget_still_plans_one_row() {
        let p = plan(&input(10, 10, 4, 4096, 0));
        assert!(p.batch >= 1 && p.tile >= 4);
    }
}
