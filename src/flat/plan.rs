//! The tiling planner: how many query rows and database rows one tile may hold so that the
//! working memory of a search stays within a budget whatever n is. Shared by the CPU and GPU
//! backends (the GPU passes its own budget and element size).

/// Default working-memory budget of a CPU search (tiles and top-k state, not the input or the
/// output): 512 MiB.
pub const DEFAULT_CPU_BUDGET: usize = 512 << 20;

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
    /// Working memory allowed, bytes.
    pub budget: usize,
    /// Queries and database are the same rows (self-join).
    pub symmetric: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// Query rows per tile.
    pub q_tile: usize,
    /// Database rows per tile.
    pub db_tile: usize,
    /// Use the symmetric self-join (each pair computed once, private per-worker top-k state for
    /// every row). False when that state would not fit the budget.
    pub symmetric: bool,
}

/// Bytes of one top-k slot (f32 key + i64 index).
const SLOT: usize = 12;

/// Plans tiles for a CPU search. Tiles are multiples of `align` rows (the micro-kernel's
/// register block) and sized so that one tile's distance block fits in L2 cache; the budget
/// bounds the per-worker packed panels and, for the symmetric join, the per-worker state.
pub fn plan_cpu(p: &PlanInput, align: usize) -> TilePlan {
    // Per-worker top-k state for all rows (symmetric mode): workers × n × k slots.
    let sym_state = p.workers.saturating_mul(p.ndb).saturating_mul(p.k).saturating_mul(SLOT);
    // The symmetric join also keeps a packed copy of the data in two layouts.
    let sym_pack = 2 * p.ndb * round_up(p.d, 1) * 4;
    let symmetric = p.symmetric && sym_state.saturating_add(sym_pack) <= p.budget / 2;

    // A tile's products (q_tile × db_tile f32) should stay cache resident: 256 × 256 × 4 = 256 KiB.
    let base = 256usize;
    let mut q_tile = round_up(base.min(p.nq.max(1)), align).max(align);
    let mut db_tile = round_up(base.min(p.ndb.max(1)), align).max(align);
    // Packed panels per worker: (q_tile + db_tile) × d floats, plus the product tile.
    let per_worker = |q: usize, x: usize| (q + x) * p.d * 4 + q * x * 4;
    let avail = p.budget / p.workers.max(1);
    while per_worker(q_tile, db_tile) > avail && (q_tile > align || db_tile > align) {
        if db_tile >= q_tile && db_tile > align {
            db_tile = round_up(db_tile / 2, align);
        } else {
            q_tile = round_up(q_tile / 2, align);
        }
    }
    TilePlan { q_tile, db_tile, symmetric }
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
    fn balance_makes_whole_rounds() {
        assert_eq!(balance(2000, 288, 2, 6), 252);
        assert_eq!(2000usize.div_ceil(252) % 2, 0);
        assert_eq!(balance(100, 288, 2, 6), 54); // 2 tiles
        assert_eq!(balance(10, 288, 4, 6), 6);
        for n in [1usize, 7, 500, 999, 10_000] {
            for w in [1usize, 2, 3, 8] {
                let t = balance(n, 288, w, 6);
                assert!(t % 6 == 0 && t <= 288 && t >= 6, "n {n} w {w}: {t}");
            }
        }
    }
}
