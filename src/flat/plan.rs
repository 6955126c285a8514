//! The tiling planner: how many query rows and database rows one tile may hold so that the
//! working memory of a search stays within a budget whatever n is. Shared by the CPU and GPU
//! backends (the GPU passes its own budget and element size).

/// Default working-memory budget of a CPU search (packed operands and tiles; not the input, the
/// output, or the top-k state, which has the output's size): 512 MiB.
pub const DEFAULT_CPU_BUDGET: usize = 512 << 20;

/// The least scratch the CPU plan keeps, whatever the data's size.
pub const MIN_SCRATCH: usize = 32 << 20;

/// What a search needs to plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput {
    /// Query rows.
    pub nq: usize,
    /// Database rows.
    pub ndb: usize,
    /// Dimension.
    pub d: usize,
    /// Neighbours per row.
    pub k: usize,
    /// Concurrent workers (threads, or streams), each holding one tile at a time.
    pub workers: usize,
    /// Working memory allowed for packed operands and tiles, bytes (the top-k state, the size of
    /// the output, is not part of it).
    pub budget: usize,
    /// Queries and database are the same rows (self-join) and the symmetric join is allowed.
    pub symmetric: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// Query rows per tile.
    pub q_tile: usize,
    /// Database rows per tile.
    pub db_tile: usize,
    /// Use the symmetric self-join (each pair computed once, offered to both rows). Its top-k
    /// state is one set of lists for all rows, the size of the output, so it is taken whenever
    /// the job is a self-join, at any n.
    pub symmetric: bool,
    /// Rows per block of the symmetric join (a multiple of the tile): workers own whole blocks.
    pub block: usize,
}

/// Plans tiles for a CPU search. Tiles are multiples of `align` rows (the micro-kernel's
/// register block) and sized so that one tile's distance block fits in L2 cache; the budget
/// bounds the per-worker packed panels and blocks.
pub fn plan_cpu(p: &PlanInput, align: usize) -> TilePlan {
    // Scratch stays small next to the data itself: a quarter of the larger operand (at least
    // MIN_SCRATCH), so that a few very wide rows (1,000 × 100,000) do not pack half a GiB.
    let data = p.nq.max(p.ndb).saturating_mul(p.d).saturating_mul(4);
    let p = &PlanInput { budget: scratch_budget(p.budget, data), ..*p };
    // A tile's products (q_tile × db_tile f32) should stay cache resident: 256 × 256 × 4 = 256 KiB.
    let base = 256usize;
    let mut q_tile = round_up(base.min(p.nq.max(1)), align).max(align);
    let mut db_tile = round_up(base.min(p.ndb.max(1)), align).max(align);
    // Packed panels per worker: (q_tile + db_tile) × d floats, plus the product tile.
    let per_worker = |q: usize, x: usize| (q + x) * p.d * 4 + q * x * 4;
    let workers = p.workers.max(1);
    let avail = p.budget / workers;
    while per_worker(q_tile, db_tile) > avail && (q_tile > align || db_tile > align) {
        if db_tile >= q_tile && db_tile > align {
            db_tile = round_up(db_tile / 2, align);
        } else {
            q_tile = round_up(q_tile / 2, align);
        }
    }
    let block = if p.symmetric { sym_block(p, q_tile.min(db_tile), avail) } else { 0 };
    TilePlan { q_tile, db_tile, symmetric: p.symmetric, block }
}

/// The scratch a search may pack, given its `budget` and the bytes of the data it packs: at most
/// a quarter of the data (at least [`MIN_SCRATCH`]).
pub fn scratch_budget(budget: usize, data_bytes: usize) -> usize {
    budget.min((data_bytes / 4).max(MIN_SCRATCH))
}

/// Rows per block of the symmetric join: half of each worker's share of the rows (so that every
/// round of the schedule has a pair for every worker; every pair re-packs its two blocks, so
/// fewer, larger blocks pack less), at most 8 tiles (the block is re-read once per tile row of its
/// partner), and small enough that a worker's packed block and tile fit its share of the budget.
fn sym_block(p: &PlanInput, tile: usize, avail: usize) -> usize {
    let n = p.ndb.max(1);
    let mut block = round_up(n.div_ceil(2 * p.workers.max(1)), tile).clamp(tile, 8 * tile);
    let per_worker = |b: usize| (b + tile) * p.d * 4 + tile * tile * 4;
    while block > tile && per_worker(block) > avail {
        block -= tile;
    }
    block
}

/// Rounds `x` up to a multiple of `m`.
pub fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Re-sizes a tile of `tile` rows over `n` rows so that the number of tiles is a multiple of
/// `workers` (no worker idles through the last round) while staying a multiple of `align` and
/// no larger than before. E.g. 2,000 queries in 288-row tiles make 7 tiles for 2 workers; in
/// 252-row tiles they make 8.
pub fn balance(n: usize, tile: usize, workers: usize, align: usize) -> usize {
    let workers = workers.max(1);
    let tiles = round_up(n.div_ceil(tile.max(1)), workers);
    round_up(n.div_ceil(tiles), align).clamp(align, tile.max(align))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symmetric_join_is_planned_at_any_n() {
        for n in [10usize, 10_000, 300_000, 10_000_000] {
            let p = PlanInput { nq: n, ndb: n, d: 384, k: 10, workers: 2, budget: DEFAULT_CPU_BUDGET, symmetric: true };
            let plan = plan_cpu(&p, 48);
            assert!(plan.symmetric, "n {n}");
            assert!(plan.block >= plan.q_tile && plan.block.is_multiple_of(plan.q_tile.min(plan.db_tile)), "{plan:?}");
            assert!(plan.block <= 8 * plan.q_tile, "{plan:?}");
        }
        // A budget too small for a block of more than one tile still plans one.
        let p = PlanInput { nq: 50_000, ndb: 50_000, d: 1024, k: 10, workers: 2, budget: 1 << 20, symmetric: true };
        let plan = plan_cpu(&p, 48);
        assert!(plan.symmetric && plan.block == plan.q_tile.min(plan.db_tile), "{plan:?}");
        // Few very wide rows: the packed block and tile stay within a quarter of the data.
        let p = PlanInput { nq: 1000, ndb: 1000, d: 100_000, k: 10, workers: 2, budget: DEFAULT_CPU_BUDGET, symmetric: true };
        let plan = plan_cpu(&p, 48);
        let scratch = 2 * (plan.block + plan.q_tile.min(plan.db_tile)) * p.d * 4;
        assert!(scratch <= 1000 * 100_000 * 4 / 4, "{plan:?}: {scratch} bytes");
    }

    #[test]
    fn balance_makes_whole_rounds() {
        assert_eq!(balance(2000, 288, 2, 6), 252);
        assert_eq!(2000usize.div_ceil(252) % 2, 0);
        assert_eq!(balance(100, 288, 2, 6), 54); // 2 tiles
        assert_eq!(balance(10, 288, 4, 6), 6);
        for n in [1usize, 7, 500, 999, 10_000] {
            for w in [1usize, 2, 3, 8] {
                let t = balance(n, 288, w, 6);
                assert!(t.is_multiple_of(6) && (6..=288).contains(&t), "n {n} w {w}: {t}");
            }
        }
    }
}
