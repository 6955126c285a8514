//! Our flat search on the CPU, in pure Rust: packed panels and a register-blocked micro-kernel
//! for the products, the L2/IP epilogue fused with per-row top-k per tile, worker threads over
//! tiles or block pairs, tiles planned from a memory budget, and the symmetric joins.

pub mod bf16;
mod ceiling;
mod cross;
mod epilogue;
pub mod features;
pub mod int8;
pub mod microkernel;
mod norms;
mod pack;
mod pairs;
mod range;
mod schedule;
pub mod tile;

use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::flat::plan::{balance, plan_cpu, scratch_budget, PlanInput, TilePlan, DEFAULT_CPU_BUDGET};
use crate::flat::{FlatJob, FlatSearcher};
use crate::metric::FlatMetric;
use crate::progress::Progress;
use crate::topk::{uses_buffers, TopKBuffers, TopKHeaps, TopKLists};
use microkernel::{MicroKernel, MR, NR};
use pairs::{JoinSpec, RowSet};
use tile::{Kernels, Operands};

pub use norms::squared_norms;
pub use range::Candidate;
pub(crate) use range::Flush;

/// Tiles are multiples of both register-block sizes.
const ALIGN: usize = 48;
const _: () = assert!(ALIGN.is_multiple_of(MR) && ALIGN.is_multiple_of(NR));

/// The CPU backend.
#[derive(Debug, Clone)]
pub struct CpuSearcher {
    threads: usize,
    budget: usize,
    symmetric: bool,
    kernels: Kernels,
}

impl Default for CpuSearcher {
    fn default() -> Self {
        Self::new()
    }
}

/// One side of a [`CpuSearcher::bipartite`] join: rows and the global index of row 0.
#[derive(Debug, Clone, Copy)]
pub struct JoinSide<'a> {
    /// The rows.
    pub rows: Vectors<'a>,
    /// Global index of `rows`' row 0.
    pub id0: i64,
}

impl CpuSearcher {
    /// All cores, the default budget ([`DEFAULT_CPU_BUDGET`]), symmetry where possible, the best
    /// micro-kernel this CPU supports.
    pub fn new() -> Self {
        CpuSearcher {
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            budget: DEFAULT_CPU_BUDGET,
            symmetric: true,
            kernels: Kernels::detect(),
        }
    }

    /// Worker threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The worker threads it runs.
    pub fn thread_count(&self) -> usize {
        self.threads
    }

    /// Working-memory budget in bytes (packed operands and tiles).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Allow (default) or forbid the symmetric self-join; forbidding it is for comparisons.
    pub fn symmetric(mut self, yes: bool) -> Self {
        self.symmetric = yes;
        self
    }

    /// Use the portable micro-kernels even where AVX2 (and AVX-512 BF16 or VNNI) exist (for
    /// tests and comparisons).
    pub fn portable(mut self) -> Self {
        self.kernels = Kernels { f32: MicroKernel::Portable, bf16: bf16::Bf16Kernel::Portable, int8: int8::Int8Kernel::Portable };
        self
    }

    /// The tile plan this searcher would use for `job`.
    pub fn plan(&self, job: &FlatJob<'_>) -> TilePlan {
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
            // Query panels of the cross search need only MR alignment: balance them over the
            // workers. (The symmetric join balances itself over many block pairs.)
            plan.q_tile = balance(job.queries.n(), plan.q_tile, self.threads, MR);
        }
        plan
    }

    fn join_spec<'a>(&self, ops: Operands, metric: FlatMetric, shift: Option<&'a [f32]>, plan: &TilePlan, progress: &'a dyn Progress) -> JoinSpec<'a> {
        JoinSpec { kernels: self.kernels, ops, metric, shift, tile: plan.q_tile.min(plan.db_tile), block: plan.block, workers: self.threads, progress }
    }

    /// The bipartite join of two disjoint row sets: the `k` best rows of `b` for every row of
    /// `a`, and the `k` best rows of `a` for every row of `b`, each pair computed once. Indices
    /// are global (`id0` on). Rows are shifted by `shift` (L2 only) before the products.
    pub fn bipartite(
        &self,
        a: JoinSide<'_>,
        b: JoinSide<'_>,
        metric: FlatMetric,
        k: usize,
        shift: Option<&[f32]>,
        progress: &dyn Progress,
    ) -> Result<(TopKLists, TopKLists)> {
        let shift = if metric == FlatMetric::L2 { shift } else { None };
        let n = a.rows.n().max(b.rows.n());
        let input = PlanInput { nq: n, ndb: n, d: a.rows.d(), k, workers: self.threads, budget: self.budget, symmetric: true };
        let plan = plan_cpu(&input, ALIGN);
        let spec = self.join_spec(Operands::F32, metric, shift, &plan, progress);
        let (na, nb) = (norms_of(metric, &a.rows, shift, "rows")?, norms_of(metric, &b.rows, shift, "rows")?);
        let sa = RowSet { rows: a.rows, norms: &na, id0: a.id0 };
        let sb = RowSet { rows: b.rows, norms: &nb, id0: b.id0 };
        let span_a = b.rows.n() as u64; // a's candidates come from b, and b's from a
        let span_b = a.rows.n() as u64;
        if uses_buffers(k, span_a) && uses_buffers(k, span_b) {
            let extra = TopKBuffers::default_extra(k);
            pairs::bipartite(&spec, sa, sb, |r| TopKBuffers::new(r, k, extra, b.id0), |r| TopKBuffers::new(r, k, extra, a.id0))
        } else {
            pairs::bipartite(&spec, sa, sb, |r| TopKHeaps::new(r, k), |r| TopKHeaps::new(r, k))
        }
    }
}

impl CpuSearcher {
    /// The threshold join: every pair of `a` with `b` (without `b`: of `a` with itself, each
    /// unordered pair once, `i < j`) whose f32 key (L2 distance or negated inner product of the
    /// rows shifted by `shift`, as `metric` says) is at most `limits[r]`, `r` the row of `a`.
    /// Candidates go to `flush` from the worker threads, in batches (see the `range` module).
    pub(crate) fn range_join(
        &self,
        a: JoinSide<'_>,
        limits: &[f32],
        b: Option<JoinSide<'_>>,
        metric: FlatMetric,
        shift: Option<&[f32]>,
        progress: &dyn Progress,
        flush: &Flush<'_>,
    ) -> Result<()> {
        let metric = metric.kernel();
        let shift = if metric == FlatMetric::L2 { shift } else { None };
        let n = a.rows.n().max(b.map_or(0, |b| b.rows.n()));
        // Planned as a k = 1 join: the candidates' buffers are the only state.
        let input = PlanInput { nq: n, ndb: n, d: a.rows.d(), k: 1, workers: self.threads, budget: self.budget, symmetric: true };
        let plan = plan_cpu(&input, ALIGN);
        let na = norms_of(metric, &a.rows, shift, "rows")?;
        let nb = match b {
            Some(b) => Some(norms_of(metric, &b.rows, shift, "rows")?),
            None => None,
        };
        let sa = RowSet { rows: a.rows, norms: &na, id0: a.id0 };
        let sb = b.zip(nb.as_deref()).map(|(b, norms)| RowSet { rows: b.rows, norms, id0: b.id0 });
        // f32 products: the limits are the f32 bound's.
        range::range_join(&self.join_spec(Operands::F32, metric, shift, &plan, progress), sa, limits, sb, flush)
    }
}

impl CpuSearcher {
    /// The symmetric self-join of `job` (its queries are its database): the lists handed to
    /// `each` whole, or with `stream` block by block in row order (see
    /// [`pairs::self_join_each`]) where no ceilings need them whole afterwards.
    fn self_join(&self, job: &FlatJob<'_>, plan: &TilePlan, stream: bool, each: &mut dyn FnMut(usize, TopKLists) -> Result<()>) -> Result<()> {
        let shift = if job.metric == FlatMetric::L2 { job.shift } else { None };
        let (k, id0) = (job.k, job.db_offset);
        let norms = norms_of(job.metric, &job.database, shift, "embeddings")?;
        let spec = self.join_spec(job.operands, job.metric, shift, plan, job.progress);
        let set = RowSet { rows: job.database, norms: &norms, id0 };
        if !uses_buffers(k, job.database.n() as u64) {
            let make = |r| TopKHeaps::new(r, k);
            return if stream { pairs::self_join_each(&spec, set, make, each) } else { each(0, pairs::self_join(&spec, set, None, make)?) };
        }
        let extra = buffer_extra(k, job.operands, job.database.n());
        let make = |r| TopKBuffers::new(r, k, extra, id0);
        let sampled = ceiling::Sampled { rows: job.database, norms: &norms, shift, metric: job.metric, kernel: self.kernels.f32, workers: self.threads };
        let ceilings = ceiling::ceilings(&sampled, k);
        if stream && ceilings.is_none() {
            return pairs::self_join_each(&spec, set, make, each);
        }
        let mut lists = pairs::self_join(&spec, set, ceilings.as_deref(), make)?;
        if ceilings.is_some() {
            ceiling::refill_short_rows(self, job, &mut lists)?;
        }
        each(0, lists)
    }
}

/// Reduced candidates' buffers of all rows together at most this large keep the default spare
/// slots; larger ones the lean slots.
const LEAN_FROM_BYTES: usize = 32 << 20;

/// The threshold buffers' spare slots for `rows` rows of `k` candidates from `operands`'
/// products: reduced candidates' longer lists take fewer where their buffers would be large
/// (see [`TopKBuffers::lean_extra`]). Fewer spare slots mean more selections: on a Zen 5 with
/// int8 products (BENCHMARKS.md, *The f32 kernel in 512 bits, and AVX-VNNI measured*) the lean
/// slots made the 10k-row join 1.08× slower side by side (1.17× in an experiment) with the same
/// peak memory (its peak lies elsewhere),
/// and saved 13 MB of 248 at 100k rows for 3 % of the time; 32 MiB (about 37,000 rows at k = 10
/// with int8's largest margin) lies between.
fn buffer_extra(k: usize, operands: Operands, rows: usize) -> usize {
    match operands {
        Operands::F32 => TopKBuffers::default_extra(k),
        Operands::Bf16 | Operands::Int8 if TopKBuffers::bytes(rows, k, TopKBuffers::default_extra(k)) <= LEAN_FROM_BYTES => TopKBuffers::default_extra(k),
        Operands::Bf16 | Operands::Int8 => TopKBuffers::lean_extra(k),
    }
}

fn norms_of(metric: FlatMetric, v: &Vectors<'_>, shift: Option<&[f32]>, what: &str) -> Result<Vec<f32>> {
    match metric {
        FlatMetric::L2 => squared_norms(v, shift, what),
        FlatMetric::InnerProduct | FlatMetric::Cosine => Ok(vec![0f32; v.n()]),
    }
}

impl FlatSearcher for CpuSearcher {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn search_each(&self, job: &FlatJob<'_>, each: &mut dyn FnMut(usize, TopKLists) -> Result<()>) -> Result<()> {
        let plan = self.plan(job);
        if plan.symmetric {
            self.self_join(job, &plan, true, each)
        } else {
            each(0, self.search(job)?)
        }
    }

    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists> {
        let plan = self.plan(job);
        let shift = if job.metric == FlatMetric::L2 { job.shift } else { None };
        let k = job.k;
        let span = job.database.n() as u64;
        let buffers = uses_buffers(k, span);
        let extra = buffer_extra(k, job.operands, job.queries.n());
        let id0 = job.db_offset;
        if plan.symmetric {
            let mut whole = None;
            self.self_join(job, &plan, false, &mut |_, lists| {
                whole = Some(lists);
                Ok(())
            })?;
            return whole.ok_or_else(|| Error::Empty { what: "the search".into(), detail: "no lists from the self-join".into() });
        }
        let qn = norms_of(job.metric, &job.queries, shift, "queries")?;
        let xn = if job.is_symmetric() { qn.clone() } else { norms_of(job.metric, &job.database, shift, "database")? };
        // Pack as much of the database at once as half the budget allows.
        // The packed database super-block: half the budget, and like the join's scratch at most
        // a quarter of the database (at least 32 MiB), so that a few very wide rows are not
        // packed into a second copy of themselves.
        let db_bytes = job.database.n().saturating_mul(job.database.d()).saturating_mul(4);
        let budget = scratch_budget(self.budget, db_bytes);
        let db_block = (budget / 2 / (job.database.d() * 4)).max(plan.db_tile);
        if buffers {
            cross::search(self.kernels, job, &qn, &xn, plan, self.threads, db_block, |r| TopKBuffers::new(r, k, extra, id0))
        } else {
            cross::search(self.kernels, job, &qn, &xn, plan, self.threads, db_block, |r| TopKHeaps::new(r, k))
        }
    }
}

/// Rounds `x` up to a multiple of `m`.
fn round_to(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 candidates keep the default spare slots; reduced ones keep them while every row's
    /// buffers fit in `LEAN_FROM_BYTES`, and the lean ones beyond.
    #[test]
    fn reduced_candidates_take_lean_slots_only_over_many_rows() {
        let k = 74;
        let (default, lean) = (TopKBuffers::default_extra(k), TopKBuffers::lean_extra(k));
        assert!(lean < default);
        let fit = (1..).find(|&n| TopKBuffers::bytes(n + 1, k, default) > LEAN_FROM_BYTES).unwrap();
        for ops in [Operands::F32, Operands::Bf16, Operands::Int8] {
            assert_eq!(buffer_extra(k, ops, 10_000), default, "{ops:?}");
            assert_eq!(buffer_extra(k, ops, fit), default, "{ops:?}");
        }
        assert_eq!(buffer_extra(k, Operands::F32, 100_000), default);
        for ops in [Operands::Bf16, Operands::Int8] {
            assert_eq!(buffer_extra(k, ops, fit + 1), lean, "{ops:?}");
            assert_eq!(buffer_extra(k, ops, 100_000), lean, "{ops:?}");
            assert_eq!(buffer_extra(k, ops, usize::MAX), lean, "{ops:?}");
        }
    }
}
