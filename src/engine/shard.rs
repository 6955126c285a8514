//! Rows loaded once on an engine's devices, searched many times.

use super::bound::{self, Accumulation, Rounding, SideMax};
use super::exact::{self, Reduced, Refine, RefineStats};
use super::Engine;
use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::flat::{FlatJob, FlatSearcher, Operands, Resident};
use crate::gpu::{GpuPath, FUSED_MAX_K, MAX_K};
use crate::metric::FlatMetric;
use crate::precision::Precision;
use crate::progress::{NoProgress, Progress};
use crate::shard::{split_rows, ShardMode};
use crate::topk::TopKLists;
use std::ops::Range;
use std::sync::Arc;

/// Rows a shard holds: borrowed from the caller (no copy), or shared.
#[derive(Debug, Clone)]
enum Rows<'a> {
    Borrowed(&'a [f32]),
    Shared(Arc<Vec<f32>>),
}

impl Rows<'_> {
    fn as_slice(&self) -> &[f32] {
        match self {
            Rows::Borrowed(s) => s,
            Rows::Shared(v) => v,
        }
    }
}

/// One device's part of a shard: a contiguous range of its rows (all of them when replicated).
#[derive(Debug)]
struct Part {
    slot: usize,
    range: Range<usize>,
    resident: Resident,
    /// The database term of the exact layer's error bound over this part's rows.
    db_bound: f64,
    /// The database side of the bf16, f16 and int8 bounds over this part's rows, once a search
    /// needed it.
    sides: [std::sync::OnceLock<SideMax>; 3],
}

impl Part {
    /// The database side of `rounding`'s bound over this part's rows, computed by `init` once.
    fn side(&self, rounding: Rounding, init: impl FnOnce() -> SideMax) -> SideMax {
        let slot = match rounding {
            Rounding::Bf16 => 0,
            Rounding::F16 => 1,
            Rounding::Int8 => 2,
        };
        *self.sides[slot].get_or_init(init)
    }
}

/// [`Shard::proof_plan`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProofPlan {
    /// The proof's unit roundoff; `None`: the candidates are re-ranked only.
    unit: Option<f64>,
    /// The reduced products' rounding and accumulation (`None`: f32 products).
    reduced: Option<(Rounding, Accumulation)>,
}

/// The margins (candidates beyond k) that reduced searches need on a shard's rows, predicted by
/// the planner's sample; `None`: the reduced search would not pay, or it was not sampled (the
/// plan may not use it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Margins {
    bf16: Option<usize>,
    int8: Option<usize>,
}

/// The roundings a plan may use, and so the ones worth sampling: the int8 sample widens the
/// sampled search (its cap is larger) and computes its own maxima over every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Wanted {
    bf16: bool,
    int8: bool,
}

/// Rows `row_offset ..` of a data set, resident on an engine's devices (see
/// [`Engine::load_shard`]).
#[derive(Debug)]
pub struct Shard<'a> {
    engine: Engine,
    rows: Rows<'a>,
    d: usize,
    row_offset: i64,
    metric: FlatMetric,
    shift: Option<Vec<f32>>,
    parts: Vec<Part>,
    /// Cosine: what the kernels search instead of the rows.
    unit: Option<Unit>,
    /// The reduced margins the planner sampled for each k and set of roundings asked.
    margins: std::sync::Mutex<std::collections::HashMap<(usize, Wanted), Margins>>,
}

/// Under cosine, the rows scaled to unit length (what the devices hold and the kernels
/// multiply) and each row's `1/‖x‖` in f64 (with which the exact layer scores the originals).
#[derive(Debug)]
pub(crate) struct Unit {
    pub rows: Vec<f32>,
    pub inv: Vec<f64>,
}

impl Unit {
    /// The unit-length copies of `v`'s rows; a zero row is an error naming it (as `what`).
    pub(crate) fn of(v: &Vectors<'_>, what: &str) -> Result<Unit> {
        let inv = exact::inverse_norms(v, what)?;
        Ok(Unit { rows: exact::normalised(v, &inv), inv })
    }
}

impl Engine {
    /// Loads `rows` (row-major `n × d`, not copied) as global rows `row_offset ..`, to be
    /// searched under `metric`. A GPU uploads them here, once. Checks every value (finite) and
    /// every row's magnitude (its distances must not overflow f32).
    pub fn load_shard<'a>(&self, rows: &'a [f32], d: usize, row_offset: i64, metric: FlatMetric) -> Result<Shard<'a>> {
        self.load(Rows::Borrowed(rows), d, row_offset, metric)
    }

    /// [`Engine::load_shard`] for rows the shard keeps alive itself.
    pub fn load_shard_shared(&self, rows: Arc<Vec<f32>>, d: usize, row_offset: i64, metric: FlatMetric) -> Result<Shard<'static>> {
        self.load(Rows::Shared(rows), d, row_offset, metric)
    }

    fn load<'a>(&self, rows: Rows<'a>, d: usize, row_offset: i64, metric: FlatMetric) -> Result<Shard<'a>> {
        let v = Vectors::new(rows.as_slice(), d, "embeddings")?;
        // Cosine scores are bounded whatever the norms; a zero row has none.
        let unit = match metric {
            FlatMetric::Cosine => Some(Unit::of(&v, "embeddings")?),
            _ => {
                exact::check_magnitudes(&v, "embeddings")?;
                None
            }
        };
        if row_offset < 0 || row_offset.checked_add(v.n() as i64).is_none() {
            return Err(Error::invalid("row_offset", format!("{row_offset}: global row indices must be ≥ 0 and fit in i64")));
        }
        let shift = match metric {
            FlatMetric::L2 => Some(column_means(&v)),
            FlatMetric::InnerProduct | FlatMetric::Cosine => None,
        };
        let kernel_rows = match &unit {
            Some(u) => Vectors::shaped_unchecked(&u.rows, d),
            None => v,
        };
        let n = v.n();
        let ranges: Vec<Range<usize>> = if self.slots() == 1 {
            std::iter::once(0..n).collect()
        } else {
            match self.options().shard_mode {
                ShardMode::Sharded => split_rows(n, self.slots()).into_iter().filter(|r| !r.is_empty()).collect(),
                ShardMode::Replicated => vec![0..n; self.slots()],
            }
        };
        let mut parts = Vec::with_capacity(ranges.len());
        for (slot, range) in ranges.into_iter().enumerate() {
            let part_rows = kernel_rows.rows(range.start, range.end);
            let resident = self.searcher(slot).load(part_rows, shift.as_deref()).map_err(|e| self.shard_error(slot, e))?;
            let db_bound = exact::db_bound(metric, &part_rows, shift.as_deref());
            parts.push(Part { slot, range, resident, db_bound, sides: Default::default() });
        }
        Ok(Shard { engine: self.clone(), rows, d, row_offset, metric, shift, parts, unit, margins: Default::default() })
    }

    fn shard_error(&self, slot: usize, e: Error) -> Error {
        if self.slots() == 1 {
            return e;
        }
        Error::Shard { shard: slot, device: self.searcher(slot).name(), source: Box::new(e) }
    }
}

/// Column means in f64, rounded to f32: the shift that centres L2 products.
fn column_means(v: &Vectors<'_>) -> Vec<f32> {
    let mut sum = vec![0f64; v.d()];
    for i in 0..v.n() {
        for (s, x) in sum.iter_mut().zip(v.row(i)) {
            *s += *x as f64;
        }
    }
    sum.iter().map(|s| (s / v.n() as f64) as f32).collect()
}

impl<'a> Shard<'a> {
    /// Rows held.
    pub fn n(&self) -> usize {
        self.rows.as_slice().len() / self.d
    }

    /// Dimension.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Global index of the shard's row 0.
    pub fn row_offset(&self) -> i64 {
        self.row_offset
    }

    /// The metric it is searched under.
    pub fn metric(&self) -> FlatMetric {
        self.metric
    }

    /// The rows, as loaded.
    pub fn rows(&self) -> Vectors<'_> {
        Vectors::shaped_unchecked(self.rows.as_slice(), self.d)
    }

    /// The rows the kernels search: the rows, or under cosine their unit-length copies.
    pub(crate) fn kernel_rows(&self) -> Vectors<'_> {
        match &self.unit {
            Some(u) => Vectors::shaped_unchecked(&u.rows, self.d),
            None => self.rows(),
        }
    }

    /// Under cosine, `1/‖x‖` of every row (f64).
    pub(crate) fn inverse_norms(&self) -> Option<&[f64]> {
        self.unit.as_ref().map(|u| u.inv.as_slice())
    }

    /// The column means L2 products are centred on.
    pub(crate) fn shift(&self) -> Option<&[f32]> {
        self.shift.as_deref()
    }

    /// The engine it lives on.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks foreign query rows as the search will read them: magnitudes (L2 / inner product)
    /// or non-zero rows (cosine, whose unit-length copies the kernels search, returned here).
    fn check_queries(&self, q: &Vectors<'_>) -> Result<Option<Unit>> {
        match self.metric {
            FlatMetric::Cosine => Unit::of(q, "queries").map(Some),
            _ => exact::check_magnitudes(q, "queries").map(|()| None),
        }
    }

    /// Row transfers to devices made for this shard (once per device part at load on a GPU,
    /// 0 on the CPU): searches never add to it.
    pub fn uploads(&self) -> usize {
        self.parts.iter().map(|p| p.resident.uploads()).sum()
    }

    /// The `k` best rows of this shard for every query (row-major, this shard's dimension).
    /// `query_id0`: when the queries are rows of the same data set, the global index of query
    /// row 0, so that each query is left out of its own list.
    pub fn search(&self, queries: &[f32], query_id0: Option<i64>, k: usize, progress: &dyn Progress) -> Result<TopKLists> {
        let q = Vectors::new(queries, self.d, "queries")?;
        if q.d() != self.d {
            return Err(Error::invalid("queries", format!("dimension {} differs from the shard's {}", q.d(), self.d)));
        }
        let unit = self.check_queries(&q)?;
        let kq = unit.as_ref().map_or(q, |u| Vectors::shaped_unchecked(&u.rows, self.d));
        self.run(q, kq, query_id0, k, progress).map(|(l, _)| l)
    }

    /// Every row's `k` best other rows of this shard (each row left out of its own list). On
    /// the CPU each pair is computed once and offered to both rows.
    pub fn self_join(&self, k: usize, progress: &dyn Progress) -> Result<TopKLists> {
        self.self_join_with_stats(k, progress).map(|(l, _)| l)
    }

    /// [`Shard::self_join`], also saying how many rows the exact layer had to brute-force.
    pub fn self_join_with_stats(&self, k: usize, progress: &dyn Progress) -> Result<(TopKLists, RefineStats)> {
        self.run(self.rows(), self.kernel_rows(), Some(self.row_offset), k, progress)
    }

    /// The join of this shard with a disjoint one: the `k` best rows of `other` for each row of
    /// this shard, and the `k` best rows of this shard for each row of `other`. On the CPU each
    /// pair is computed once and serves both lists (half the products of two searches).
    pub fn pair_join(&self, other: &Shard<'_>, k: usize, progress: &dyn Progress) -> Result<(TopKLists, TopKLists)> {
        if other.d != self.d {
            return Err(Error::invalid("pair_join", format!("dimension {} differs from this shard's {}", other.d, self.d)));
        }
        if other.metric != self.metric {
            return Err(Error::invalid("pair_join", "the two shards are searched under different metrics"));
        }
        let (a0, a1) = (self.row_offset, self.row_offset + self.n() as i64);
        let (b0, b1) = (other.row_offset, other.row_offset + other.n() as i64);
        if a0 < b1 && b0 < a1 {
            return Err(Error::invalid(
                "pair_join",
                format!("rows {a0}..{a1} and {b0}..{b1} overlap; a pair joins disjoint row blocks (use self_join for one block)"),
            ));
        }
        let strat = self.strategy(k)?;
        if self.engine.is_distributed() {
            // Two searches: the GPU kernels (and split shards) have no bipartite symmetric form.
            let a = self.search(other.rows.as_slice(), None, k, progress)?;
            let b = other.search(self.rows.as_slice(), None, k, progress)?;
            return Ok((b, a));
        }
        let kc = strat.candidates;
        let shift = self.shift.as_deref();
        let kernel = self.metric.kernel();
        let (ka, kb) = (self.kernel_rows(), other.kernel_rows());
        let a = crate::flat::cpu::JoinSide { rows: ka, id0: a0 };
        let b = crate::flat::cpu::JoinSide { rows: kb, id0: b0 };
        let (la, lb) = self.engine.cpu().bipartite(a, b, kernel, kc, shift, progress)?;
        let unit = strat.proven.then_some(exact::U32);
        // Rows of `q` (originals) against `db`: the kernels' rows `kdb`, the originals `db`.
        let refine = |q: Vectors<'_>, q0: i64, db: &Shard<'_>, approx: TopKLists| {
            let (kdb, db0) = (db.kernel_rows(), db.row_offset);
            // Unproven rows are searched again against `db` on the CPU with more candidates.
            let widen = |wq: Vectors<'_>, kc: usize| {
                let wunit = if self.metric == FlatMetric::Cosine { Some(Unit::of(&wq, "queries")?) } else { None };
                let job = FlatJob {
                    queries: wunit.as_ref().map_or(wq, |u| Vectors::shaped_unchecked(&u.rows, wq.d())),
                    database: kdb,
                    metric: kernel,
                    k: kc,
                    db_offset: db0,
                    query_offset: None,
                    shift,
                    resident: None,
                    gpu_path: GpuPath::Cublas,
                    operands: Operands::F32,
                    progress: &NoProgress,
                };
                self.engine.cpu().search(&job)
            };
            let r = Refine {
                metric: self.metric,
                queries: q,
                query_id0: Some(q0),
                database: db.rows(),
                db_offset: db0,
                shift,
                db_bound: exact::db_bound(self.metric, &kdb, shift),
                proof_unit: unit,
                threads: self.engine.cpu().thread_count(),
                query_ids: None,
                widen: Some(&widen),
                cosine: db.inverse_norms(),
                reduced: None,
                fallback: None,
            };
            exact::refine(&r, approx, k).map(|(l, _)| l)
        };
        Ok((refine(self.rows(), a0, other, la)?, refine(other.rows(), b0, self, lb)?))
    }

    /// The operands a self-join of this shard for `k` neighbours would multiply: what
    /// [`Precision`] and, for `Auto`, the planner choose (f32 on a GPU, whose precision is its
    /// own). For diagnostics and tests.
    pub fn planned_operands(&self, k: usize) -> Operands {
        match self.strategy(k) {
            Ok(strat) if !self.engine.device().is_gpu() => self.cpu_plan(strat.precision, k, true).0,
            _ => Operands::F32,
        }
    }

    /// The CPU products' operands for `precision` (see [`Precision`]) and the candidates a row
    /// keeps: bf16 or int8 where asked for, or where `Auto` finds the CPU's kernel and data on
    /// which its candidates' proofs hold (with the margin the sample asks for), else f32 with its
    /// own.
    ///
    /// `Bf16` and `Int8` run reduced only where the CPU has their kernel (AVX-512 BF16; AVX-512
    /// VNNI, AVX-VNNI or AVX2; elsewhere the portable ones would be far slower than f32). `Auto` plans
    /// reduced products for self-joins only: the margins are sampled from the rows' own
    /// neighbours, which foreign queries need not resemble. It never plans the AVX2 int8 kernel:
    /// its narrow format's residuals left 4 % (10k MiniLM, k = 10) to 99.9 % (random normal rows)
    /// of the rows unproven, and it ran at 0.40–0.97× the f32 path (BENCHMARKS.md, *int8 with
    /// AVX2 only*). The AVX-VNNI kernel (256-bit `vpdpbusd`, the wide format) it plans as
    /// AVX-512 VNNI's: on a CPU with both, capped to AVX2 + AVX-VNNI, it ran at 1.49× (10k) and
    /// 2.28–2.36× (100k MiniLM-like rows, k = 10) the AVX2 f32 path (BENCHMARKS.md, *The f32 kernel in
    /// 512 bits, and AVX-VNNI measured*). So on a CPU with neither VNNI nor AVX-512 BF16 `Auto`
    /// is the f32 path with no sample taken. It
    /// prefers int8 (twice bf16's products per cycle with VNNI) wherever its sampled margin stays
    /// within its cap ([`bound::max_margin`]: on the MiniLM-like 100k rows its longer lists still
    /// cost less than bf16's products, BENCHMARKS.md, *int8 candidates*), else bf16, else f32.
    fn cpu_plan(&self, precision: Precision, k: usize, self_join: bool) -> (Operands, usize) {
        let f32_plan = (Operands::F32, k + exact::margin(k));
        let int8_ok = self.int8_runs();
        let int8_auto = int8_ok && crate::flat::cpu::int8::native();
        let bf16_ok = crate::flat::cpu::bf16::native();
        match precision {
            Precision::Bf16 if bf16_ok => {
                let m = self.margins_cached(k, Wanted { bf16: true, int8: false });
                (Operands::Bf16, k + m.bf16.unwrap_or_else(|| bound::default_margin(Rounding::Bf16, k)))
            }
            Precision::Int8 if int8_ok => {
                let m = self.margins_cached(k, Wanted { bf16: false, int8: true });
                (Operands::Int8, k + m.int8.unwrap_or_else(|| bound::default_margin(Rounding::Int8, k)))
            }
            Precision::Auto if self_join && (bf16_ok || int8_auto) && bound::reduced_pays(self.n(), self.d, k) => {
                let m = self.margins_cached(k, Wanted { bf16: bf16_ok, int8: int8_auto });
                // Only the wanted margins were sampled: the others are None.
                match (m.int8, m.bf16) {
                    (Some(i), _) => (Operands::Int8, k + i),
                    (None, Some(b)) => (Operands::Bf16, k + b),
                    (None, None) => f32_plan,
                }
            }
            _ => f32_plan,
        }
    }

    /// Whether an int8 kernel runs here: the CPU has AVX-512 VNNI, AVX-VNNI or AVX2 and the rows'
    /// dimension keeps the integer sums exact ([`crate::flat::cpu::int8::MAX_DEPTH`]).
    fn int8_runs(&self) -> bool {
        use crate::flat::cpu::int8;
        int8::Int8Kernel::detect() != int8::Int8Kernel::Portable && self.d <= int8::MAX_DEPTH
    }

    /// [`Shard::sample_margins`] of the `wanted` roundings, sampled once per k for this shard's
    /// rows (an index searched many times plans once).
    fn margins_cached(&self, k: usize, wanted: Wanted) -> Margins {
        let cached = self.margins.lock().unwrap_or_else(|p| p.into_inner()).get(&(k, wanted)).copied();
        cached.unwrap_or_else(|| {
            let m = self.sample_margins(k, wanted);
            self.margins.lock().unwrap_or_else(|p| p.into_inner()).insert((k, wanted), m);
            m
        })
    }

    /// The candidates beyond k that bf16 and int8 searches need here (for the `wanted` ones,
    /// which the caller's plan may use: the caller checks that the CPU has their kernels),
    /// predicted on an even sample of the rows: each sampled row's f32 keys (exact to far
    /// below the reduced bounds) are searched, and its margin is the fewest candidates beyond k
    /// whose last key lies more than twice the row's reduced bound above its k-th (the
    /// candidates' keys move by up to one bound each way). The margin that
    /// [`bound::PREDICT_PERCENT`] % of the rows reach, if it stays within
    /// [`bound::max_margin`]; `None` where rows are too close to their neighbours for that (rows
    /// in high dimension with no structure, or clusters of near-copies larger than the cap):
    /// their lists would be searched again in f32, which costs more than the reduced products save.
    fn sample_margins(&self, k: usize, wanted: Wanted) -> Margins {
        let n = self.n();
        let roundings: Vec<Rounding> =
            [(Rounding::Bf16, wanted.bf16), (Rounding::Int8, wanted.int8)].into_iter().filter_map(|(r, ok)| ok.then_some(r)).collect();
        let kc = k + roundings.iter().map(|r| bound::max_margin(*r, k)).max().unwrap_or(0);
        if roundings.is_empty() || kc + 1 >= n {
            return Margins::default();
        }
        let kernel = self.kernel_rows();
        let m = bound::PREDICT_ROWS.min(n);
        let picked: Vec<usize> = (0..m).map(|i| i * n / m).collect();
        let mut rows = Vec::with_capacity(picked.len() * self.d);
        for &i in &picked {
            rows.extend_from_slice(kernel.row(i));
        }
        let q = Vectors::shaped_unchecked(&rows, self.d);
        let mut job = FlatJob::search(q, kernel, self.metric.kernel(), kc + 1, &NoProgress).with_shift(self.shift.as_deref());
        job.db_offset = 0;
        let Ok(lists) = self.engine.cpu().search(&job) else { return Margins::default() };
        let keys: Vec<Vec<f32>> = picked.iter().enumerate().map(|(t, &i)| lists.row_without(t, Some(i as i64)).map(|(key, _)| key).collect()).collect();
        let mut out = Margins::default();
        for rounding in roundings {
            let whole = || SideMax::of(rounding, self.metric, &self.rows(), self.shift.as_deref(), self.inverse_norms());
            // One part holding every row (the CPU's): the search that follows reuses these maxima.
            let db = match &self.parts[..] {
                [one] if one.range.len() == n => one.side(rounding, whole),
                _ => whole(),
            };
            let cap = bound::max_margin(rounding, k);
            let mut buf = Vec::with_capacity(self.d);
            let mut needed: Vec<usize> = picked
                .iter()
                .zip(&keys)
                .map(|(&i, keys)| {
                    let inv = self.inverse_norms().map_or(1.0, |v| v[i]);
                    bound::kernel_row(self.metric, self.rows().row(i), self.shift.as_deref(), inv, &mut buf);
                    let (norm, resid) = rounding.norm_and_residual(&buf);
                    let e = bound::extra(rounding, Accumulation::Cpu, self.metric, norm, resid, &db, self.d);
                    let kth = keys.get(k - 1).map_or(f64::INFINITY, |v| *v as f64);
                    (bound::MIN_MARGIN..=cap).find(|&m| keys.get(k + m - 1).is_some_and(|w| *w as f64 - 2.0 * e > kth)).unwrap_or(usize::MAX)
                })
                .collect();
            needed.sort_unstable();
            let at = (needed.len() * bound::PREDICT_PERCENT).div_ceil(100).clamp(1, needed.len()) - 1;
            let margin = (needed[at] != usize::MAX).then_some(needed[at]);
            match rounding {
                Rounding::Int8 => out.int8 = margin,
                _ => out.bf16 = margin,
            }
        }
        out
    }

    fn strategy(&self, k: usize) -> Result<super::Strategy> {
        let metric = self.metric.metric();
        super::choose(self.engine.device(), None, metric, k, self.engine.options())
    }

    /// How the exact layer treats a search's candidates: the unit roundoff its proof takes
    /// (`None`: re-ranked, not proven) and, for reduced products, their rounding and how the
    /// backend sums them. `ops`: the CPU's operands (f32 on a GPU, whose precision is the
    /// strategy's). A GPU's bf16 and f16 products are proven with the tensor cores' bound
    /// ([`bound::Accumulation::TensorCores`]); its TF32 products, whose rounding the bound does not
    /// model, are re-ranked only. With [`super::EngineOptions::approximate`], reduced products
    /// are re-ranked only.
    fn proof_plan(&self, strat: &super::Strategy, gpu: bool, ops: Operands) -> ProofPlan {
        let rounding = if gpu {
            match strat.precision {
                Precision::Bf16 => Some((Rounding::Bf16, Accumulation::TensorCores)),
                Precision::F16 => Some((Rounding::F16, Accumulation::TensorCores)),
                _ => None,
            }
        } else {
            match ops {
                Operands::F32 => None,
                Operands::Bf16 => Some((Rounding::Bf16, Accumulation::Cpu)),
                Operands::Int8 => Some((Rounding::Int8, Accumulation::Cpu)),
            }
        };
        if !strat.proven || (rounding.is_some() && self.engine.options().approximate) {
            return ProofPlan { unit: None, reduced: None };
        }
        ProofPlan { unit: Some(rounding.map_or(exact::U32, |(_, acc)| acc.unit())), reduced: rounding }
    }

    /// An f32 search by the CPU of query rows (original values; unit length under cosine) against
    /// `kdb` (kernel rows, global row 0 at `db_offset`) for their `k` best rows.
    fn cpu_search(&self, wq: Vectors<'_>, kdb: Vectors<'_>, db_offset: i64, k: usize) -> Result<TopKLists> {
        let wunit = if self.metric == FlatMetric::Cosine { Some(Unit::of(&wq, "queries")?) } else { None };
        let job = FlatJob {
            queries: wunit.as_ref().map_or(wq, |u| Vectors::shaped_unchecked(&u.rows, wq.d())),
            database: kdb,
            metric: self.metric.kernel(),
            k,
            db_offset,
            query_offset: None,
            shift: self.shift.as_deref(),
            resident: None,
            gpu_path: GpuPath::Cublas,
            operands: Operands::F32,
            progress: &NoProgress,
        };
        self.engine.cpu().search(&job)
    }

    /// Queries `q` (rows of this shard when `q` is `self.rows()`) against every part, refined
    /// and merged; `kq` is what the kernels search for them (`q`, or its unit-length copy under
    /// cosine; this shard's own [`Shard::kernel_rows`] for a self-join, which the kernels
    /// recognise as symmetric).
    fn run(&self, q: Vectors<'_>, kq: Vectors<'_>, query_id0: Option<i64>, k: usize, progress: &dyn Progress) -> Result<(TopKLists, RefineStats)> {
        if q.d() != self.d {
            return Err(Error::invalid("queries", format!("dimension {} differs from the shard's {}", q.d(), self.d)));
        }
        let strat = self.strategy(k)?;
        let path = match strat.backend {
            super::Backend::GpuFused => GpuPath::Fused,
            _ => GpuPath::Cublas,
        };
        let gpu = self.engine.device().is_gpu();
        let self_join = std::ptr::eq(kq.as_slice().as_ptr(), self.kernel_rows().as_slice().as_ptr()) && query_id0 == Some(self.row_offset);
        let (ops, kc) = if gpu { (Operands::F32, strat.candidates) } else { self.cpu_plan(strat.precision, k, self_join) };
        let kc = kc.min(if path == GpuPath::Fused { FUSED_MAX_K } else { usize::MAX });
        let kc = if gpu { kc.min(MAX_K) } else { kc };
        let proof = self.proof_plan(&strat, gpu, ops);
        let (own, kown) = (self.rows(), self.kernel_rows());
        let kernel = self.metric.kernel();
        let mode = self.engine.options().shard_mode;
        let replicated = self.parts.len() > 1 && mode == ShardMode::Replicated;
        // Each part: (query rows, their global id of row 0) against its rows.
        let tasks: Vec<(usize, Range<usize>)> = if replicated {
            split_rows(q.n(), self.parts.len()).into_iter().enumerate().filter(|(_, r)| !r.is_empty()).collect()
        } else {
            (0..self.parts.len()).map(|p| (p, 0..q.n())).collect()
        };
        let one = |(p, qr): &(usize, Range<usize>)| -> Result<(TopKLists, RefineStats)> {
            let part = &self.parts[*p];
            let db = own.rows(part.range.start, part.range.end);
            let kdb = kown.rows(part.range.start, part.range.end);
            let queries = q.rows(qr.start, qr.end);
            let qid0 = query_id0.map(|o| o + qr.start as i64);
            let db_offset = self.row_offset + part.range.start as i64;
            let job = FlatJob {
                queries: kq.rows(qr.start, qr.end),
                database: kdb,
                metric: kernel,
                k: kc,
                db_offset,
                query_offset: qid0,
                shift: self.shift.as_deref(),
                resident: Some(&part.resident),
                gpu_path: path,
                operands: ops,
                progress: if *p == 0 { progress } else { &NoProgress },
            };
            let searcher = self.engine.searcher(part.slot);
            // Unproven rows are searched again by the same backend with more candidates (on the
            // CPU; the GPU kernels' candidate limits make the brute force the fallback there);
            // a bf16 search's, in f32. The rows come as the exact layer holds them (originals):
            // unit length under cosine.
            let search_again = |wq: Vectors<'_>, wk: usize, operands: Operands| {
                let wunit = if self.metric == FlatMetric::Cosine { Some(Unit::of(&wq, "queries")?) } else { None };
                let wq = wunit.as_ref().map_or(wq, |u| Vectors::shaped_unchecked(&u.rows, wq.d()));
                let wjob = FlatJob { queries: wq, query_offset: None, k: wk, operands, progress: &NoProgress, ..job };
                self.engine.searcher(part.slot).search(&wjob).map_err(|e| self.engine.shard_error(part.slot, e))
            };
            let widen = |wq: Vectors<'_>, wk: usize| search_again(wq, wk, ops);
            // A GPU's reduced rows are stored rounded: the rows its candidates leave unproven are
            // searched in f32 by the CPU, from the host's rows.
            let in_f32 = |wq: Vectors<'_>, wk: usize| {
                if gpu {
                    self.cpu_search(wq, kdb, db_offset, wk)
                } else {
                    search_again(wq, wk, Operands::F32)
                }
            };
            let reduced = proof.reduced.map(|(rounding, accumulation)| Reduced {
                rounding,
                accumulation,
                db: part.side(rounding, || {
                    SideMax::of(rounding, self.metric, &db, self.shift.as_deref(), self.inverse_norms().map(|inv| &inv[part.range.clone()]))
                }),
            });
            let r = Refine {
                metric: self.metric,
                queries,
                query_id0: qid0,
                database: db,
                db_offset,
                shift: self.shift.as_deref(),
                db_bound: part.db_bound,
                proof_unit: proof.unit,
                threads: self.engine.cpu().thread_count(),
                query_ids: None,
                widen: if gpu || reduced.is_some() || proof.unit.is_none() { None } else { Some(&widen) },
                cosine: self.inverse_norms().map(|inv| &inv[part.range.clone()]),
                reduced,
                fallback: reduced.is_some().then_some(&in_f32 as &exact::Widen<'_>),
            };
            // The candidates come block by block where the backend makes them so (the CPU's
            // symmetric join): each block is re-scored and freed before the next is made.
            // The re-scoring's own errors are kept apart: only the search's are the device's.
            let mut pass = exact::Pass::new(&r, k);
            let mut refine_error = None;
            let searched = searcher.search_each(&job, &mut |first, lists| {
                pass.add(first, lists).map_err(|e| {
                    let stop = Error::Internal { what: "the exact re-scoring".into(), message: e.to_string() };
                    refine_error = Some(e);
                    stop
                })
            });
            if let Some(e) = refine_error {
                return Err(e);
            }
            searched.map_err(|e| self.engine.shard_error(part.slot, e))?;
            pass.finish()
        };
        let results: Vec<Result<(TopKLists, RefineStats)>> = if tasks.len() == 1 {
            vec![one(&tasks[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = tasks.iter().map(|t| scope.spawn(move || one(t))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|p| Err(Error::from_panic("a shard's search", p.as_ref())))).collect()
            })
        };
        let mut lists = Vec::with_capacity(results.len());
        let mut stats = RefineStats::default();
        for r in results {
            let (l, s) = r?;
            stats.brute_force_rows += s.brute_force_rows;
            stats.widened_rows += s.widened_rows;
            stats.fallback_rows += s.fallback_rows;
            lists.push(l);
        }
        let out = if lists.len() == 1 {
            lists.pop().expect("one list")
        } else if replicated {
            let mut it = lists.into_iter();
            let mut out = it.next().expect("at least one part");
            for l in it {
                out.extend(l);
            }
            out
        } else {
            self.engine.merge(&lists, k)?
        };
        Ok((out, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineOptions;
    use crate::flat::cpu::{bf16, int8};
    use crate::Device;

    /// Rows with structure (a few hundred clusters) so that every reduced plan is sampled.
    fn rows(n: usize, d: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..256 * d).map(|_| next()).collect();
        (0..n).flat_map(|i| (0..d).map(|j| centres[(i % 256) * d + j] + 0.05 * next()).collect::<Vec<_>>()).collect()
    }

    /// The sets of roundings sampled by the plans of `precision` on this CPU.
    fn sampled(precision: Precision, x: &[f32], d: usize) -> Vec<Wanted> {
        let e = Engine::open(&Device::Cpu, EngineOptions { precision, ..EngineOptions::default() }).unwrap();
        let shard = e.load_shard(x, d, 0, FlatMetric::L2).unwrap();
        shard.planned_operands(10);
        let margins = shard.margins.lock().unwrap();
        for ((_, wanted), m) in margins.iter() {
            assert!(wanted.bf16 || m.bf16.is_none(), "a bf16 margin was sampled for {wanted:?}");
            assert!(wanted.int8 || m.int8.is_none(), "an int8 margin was sampled for {wanted:?}");
        }
        margins.keys().map(|(_, w)| *w).collect()
    }

    /// The sample computes the margins asked for, and only those, whatever the CPU (the
    /// margins are bound arithmetic on f32 searches; no reduced kernel runs).
    #[test]
    fn the_sample_computes_only_the_wanted_margins() {
        let d = 64;
        let x = rows(3000, d);
        let e = Engine::open(&Device::Cpu, EngineOptions::default()).unwrap();
        let shard = e.load_shard(&x, d, 0, FlatMetric::L2).unwrap();
        for (bf16, int8) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = shard.sample_margins(10, Wanted { bf16, int8 });
            // Clustered rows: every wanted margin fits its cap.
            assert_eq!((m.bf16.is_some(), m.int8.is_some()), (bf16, int8), "{m:?}");
        }
    }

    #[test]
    fn plans_sample_only_the_roundings_they_may_use() {
        // Large enough for Auto to consider reduced candidates (bound::reduced_pays).
        let d = 64;
        let x = rows(3000, d);
        assert!(bound::reduced_pays(3000, d, 10));
        let int8_runs = int8::Int8Kernel::detect() != int8::Int8Kernel::Portable;
        let none: Vec<Wanted> = Vec::new();
        // A forced rounding samples itself alone (where its kernel runs), never the other.
        let want = if int8_runs { vec![Wanted { bf16: false, int8: true }] } else { none.clone() };
        assert_eq!(sampled(Precision::Int8, &x, d), want);
        let want = if bf16::native() { vec![Wanted { bf16: true, int8: false }] } else { none.clone() };
        assert_eq!(sampled(Precision::Bf16, &x, d), want);
        // Auto samples what it may plan: bf16 where it runs, int8 with VNNI (either) only, never AVX2's.
        let want = if bf16::native() || int8::native() { vec![Wanted { bf16: bf16::native(), int8: int8::native() }] } else { none.clone() };
        assert_eq!(sampled(Precision::Auto, &x, d), want);
        assert_eq!(sampled(Precision::F32, &x, d), none);
    }
}
