//! Our exact flat search on the CPU, in pure Rust: packed panels and a register-blocked
//! micro-kernel for the products, the L2/IP epilogue fused with per-row top-k per tile, worker
//! threads over tiles, tiles planned from a memory budget, and the symmetric self-join.

mod blocked;
mod epilogue;
pub mod microkernel;
mod norms;
mod pack;
mod symmetric;
mod tile;

use crate::error::Result;
use crate::flat::plan::{balance, plan_cpu, PlanInput, DEFAULT_CPU_BUDGET};
use crate::flat::{FlatJob, FlatSearcher};
use crate::metric::FlatMetric;
use crate::topk::TopKLists;
use microkernel::{Kernel, MR, NR};

pub use norms::squared_norms;

/// Tiles are multiples of both register-block sizes.
const ALIGN: usize = 48;
const _: () = assert!(ALIGN % MR == 0 && ALIGN % NR == 0);

/// The CPU backend.
#[derive(Debug, Clone)]
pub struct CpuSearcher {
    threads: usize,
    budget: usize,
    symmetric: bool,
    kernel: Kernel,
}

impl Default for CpuSearcher {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSearcher {
    /// All cores, the default budget ([`DEFAULT_CPU_BUDGET`]), symmetry where possible, the best
    /// micro-kernel this CPU supports.
    pub fn new() -> Self {
        CpuSearcher {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            budget: DEFAULT_CPU_BUDGET,
            symmetric: true,
            kernel: Kernel::detect(),
        }
    }

    /// Worker threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Working-memory budget in bytes (tiles, packed copies, per-worker top-k state).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Allow (default) or forbid the symmetric self-join; forbidding it is for comparisons.
    pub fn symmetric(mut self, yes: bool) -> Self {
        self.symmetric = yes;
        self
    }

    /// Use the portable micro-kernel even where AVX2 exists (for tests and comparisons).
    pub fn portable(mut self) -> Self {
        self.kernel = Kernel::Portable;
        self
    }

    /// The tile plan this searcher would use for `job`.
    pub fn plan(&self, job: &FlatJob<'_>) -> crate::flat::plan::TilePlan {
        let mut plan = plan_cpu(
            &PlanInput {
                nq: job.queries.n(),
                ndb: job.database.n(),
                d: job.queries.d(),
                k: job.k,
                workers: self.threads,
                budget: self.budget,
                symmetric: self.symmetric && job.is_symmetric(),
            },
            ALIGN,
        );
        if !plan.symmetric {
            // Query panels of the blocked path need only MR alignment: balance them over the
            // workers. (The symmetric path balances itself: many panels, taken largest first.)
            plan.q_tile = balance(job.queries.n(), plan.q_tile, self.threads, MR);
        }
        plan
    }
}

impl FlatSearcher for CpuSearcher {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists> {
        let plan = self.plan(job);
        let l2 = job.metric == FlatMetric::L2;
        let norms_of = |v, what| if l2 { squared_norms(v, what) } else { Ok(vec![0f32; v.n()]) };
        if plan.symmetric {
            let norms = norms_of(&job.database, "embeddings")?;
            let tile = plan.q_tile.min(plan.db_tile);
            return Ok(symmetric::self_join(self.kernel, job, &norms, tile, self.threads));
        }
        let qn = norms_of(&job.queries, "queries")?;
        let xn = if job.is_symmetric() { qn.clone() } else { norms_of(&job.database, "database")? };
        // Pack as much of the database at once as half the budget allows.
        let db_block = (self.budget / 2 / (job.database.d() * 4)).max(plan.db_tile);
        Ok(blocked::search(self.kernel, job, &qn, &xn, plan, self.threads, db_block))
    }
}

/// Rounds `x` up to a multiple of `m`.
fn round_to(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}
