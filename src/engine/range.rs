//! Exact threshold joins: every pair of rows whose exact score passes a threshold, each pair
//! computed once, streamed out in batches.
//!
//! The kernels find *candidates*: pairs whose f32 key is within the exact layer's error bound
//! `E` of the threshold or better (see [`super::exact`]; the bound is the one that proves the
//! k-nearest lists). Every candidate is then scored in f64 from the original rows, with the
//! lists' own sums, and kept if and only if that score passes: a pair whose exact score passes
//! has an f32 key at most `E` away from it, so it is always a candidate, and no pair is listed
//! on the strength of its f32 key alone. For L2 and inner product "exact" is exact: a pair
//! whose f64 sum lies too near the threshold is decided on its exact value (the private module
//! `engine::rounded`); cosine scores are the f64 formula. Reported scores are those the
//! k-nearest lists report (L2 and inner product: the exact values correctly rounded to f32;
//! cosine: the f64 scores rounded).
//!
//! Pass means faiss's `range_search` convention: a distance strictly below the threshold (L2),
//! a similarity strictly above it (inner product, cosine).

use super::exact::{self, U32};
use super::Shard;
use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::flat::cpu::{Candidate, JoinSide};
use crate::metric::{FlatMetric, Metric};
use crate::progress::Progress;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A threshold on a metric's scores, with the metric's direction: a pair passes when its
/// squared L2 distance is below it, or its inner product or cosine similarity above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    metric: FlatMetric,
    value: f64,
}

impl Threshold {
    /// A threshold of `value` under `metric` (L2, inner product or cosine), for a threshold
    /// join, where a value that selects nothing or everything is a mistake.
    ///
    /// Errors: a NaN or infinite value; a value no pair can pass (an L2 distance of 0 or less, a
    /// cosine of 1 or more) or every pair passes by definition (a cosine below −1).
    pub fn new(metric: Metric, value: f64) -> Result<Threshold> {
        if !value.is_finite() {
            return Err(Error::invalid("threshold", format!("{value}: a threshold must be a finite number")));
        }
        let t = Threshold::radius(metric, value)?;
        let refuse = |why: &str| Err(Error::invalid("threshold", format!("{value:?} {why}")));
        if t.selects_nothing() && t.metric == FlatMetric::L2 {
            return refuse("selects no pair: squared L2 distances are ≥ 0 and a pair passes below the threshold");
        }
        if t.selects_nothing() {
            return refuse("selects no pair: cosine similarities are at most 1 and a pair passes above the threshold");
        }
        if t.metric == FlatMetric::Cosine && value < -1.0 {
            return refuse("selects every pair: cosine similarities are at least −1; use a threshold in [−1, 1)");
        }
        Ok(t)
    }

    /// A radius as faiss's `range_search` takes it: any value but NaN (one that no pair can pass
    /// gives no results; an infinite one, every pair: an L2 radius of +inf, a similarity radius
    /// of −inf).
    pub fn radius(metric: Metric, value: f64) -> Result<Threshold> {
        let flat = metric.flat().ok_or_else(|| Error::Metric {
            metric: metric.faiss_code() as i64,
            reason: "a threshold join or range search runs under L2, inner product or cosine".into(),
        })?;
        if value.is_nan() {
            return Err(Error::invalid("radius", "NaN: a radius must be a number"));
        }
        Ok(Threshold { metric: flat, value })
    }

    /// True when no pair can pass: an L2 distance below 0 or 0, a cosine above 1 or 1.
    pub fn selects_nothing(&self) -> bool {
        match self.metric {
            FlatMetric::L2 => self.value <= 0.0,
            FlatMetric::Cosine => self.value >= 1.0,
            FlatMetric::InnerProduct => false,
        }
    }

    /// The threshold's value.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Its metric.
    pub fn metric(&self) -> FlatMetric {
        self.metric
    }

    /// True when an exact `score` passes: below the threshold for L2, above it for similarities.
    #[inline]
    pub fn passes(&self, score: f64) -> bool {
        // NaN compares as Equal: it never passes.
        self.passes_order(score.partial_cmp(&self.value).unwrap_or(std::cmp::Ordering::Equal))
    }

    /// True when a score that compares with the threshold as `order` passes.
    #[inline]
    fn passes_order(&self, order: std::cmp::Ordering) -> bool {
        order == if self.metric == FlatMetric::L2 { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater }
    }

    /// The threshold as a key (smaller is better: the distance, or the negated similarity).
    fn key(&self) -> f64 {
        if self.metric == FlatMetric::L2 {
            self.value
        } else {
            -self.value
        }
    }
}

/// One pair of a threshold join: global row indices (`i < j` in a self-join; in a search, `i`
/// the query and `j` the stored row) and the exact score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The first row (the query of a search).
    pub i: i64,
    /// The second row.
    pub j: i64,
    /// The exact score (f64, rounded to f32): squared L2 distance, inner product or cosine.
    pub score: f32,
}

/// What a threshold join did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RangeStats {
    /// Pairs that passed.
    pub pairs: usize,
    /// Pairs the kernels found near or past the threshold and scored in f64.
    pub candidates: usize,
}

/// Bytes a collected pair takes: two int64 indices and a float32 score.
pub const PAIR_BYTES: usize = 20;

/// The default cap on a join's pairs for a memory budget of `budget` bytes: as many pairs as
/// the budget holds collected (at least a million).
pub fn default_max_pairs(budget: usize) -> usize {
    (budget / PAIR_BYTES).max(1 << 20)
}

/// Where a join's pairs go: called with one batch at a time (from one thread at a time).
pub type PairSink<'a> = dyn FnMut(&[Pair]) -> Result<()> + Send + 'a;

/// Scores the kernels' candidates exactly and hands the passing pairs to the sink, counting
/// them against `max_pairs`.
struct Scorer<'s, 'r> {
    threshold: Threshold,
    /// Rows of the first set (original values) and the global index of its row 0.
    a: (Vectors<'r>, i64),
    /// Rows of the second set, its row 0's global index, and (cosine) `1/‖x‖` of each row.
    b: (Vectors<'r>, i64, Option<&'r [f64]>),
    /// `max‖x‖` over the second set's rows (inner product; else 0): with `‖a‖`, a bound on
    /// `Σ|a_j·x_j|` by Cauchy–Schwarz ([`exact::pair_against`]'s `reach`).
    b_max_norm: f64,
    max_pairs: usize,
    found: AtomicUsize,
    candidates: AtomicUsize,
    /// Rows that have a pair (both sides of the join), for the message of a run that stops.
    rows_seen: Vec<AtomicBool>,
    seen_offset: (i64, i64, usize),
    /// A sample of the passing scores (for the message of a run that stops): every `stride`-th.
    sample: Mutex<(Vec<f32>, usize, usize)>,
    sink: Mutex<&'s mut PairSink<'s>>,
}

/// Scores kept in the sample, at most.
const SAMPLE: usize = 1 << 14;

impl<'s, 'r> Scorer<'s, 'r> {
    fn new(
        threshold: Threshold,
        a: (Vectors<'r>, i64),
        b: (Vectors<'r>, i64, Option<&'r [f64]>),
        own: bool,
        max_pairs: usize,
        sink: &'s mut PairSink<'s>,
    ) -> Self {
        let rows = if own { a.0.n() } else { a.0.n() + b.0.n() };
        let b_max_norm = if threshold.metric == FlatMetric::InnerProduct { exact::db_bound(FlatMetric::InnerProduct, &b.0, None) } else { 0.0 };
        Scorer {
            threshold,
            b_max_norm,
            seen_offset: (a.1, b.1, if own { 0 } else { a.0.n() }),
            a,
            b,
            max_pairs,
            found: AtomicUsize::new(0),
            candidates: AtomicUsize::new(0),
            rows_seen: (0..rows).map(|_| AtomicBool::new(false)).collect(),
            sample: Mutex::new((Vec::new(), 1, 0)),
            sink: Mutex::new(sink),
        }
    }

    /// Scores one worker's candidates (leaving the buffer empty) and passes the pairs on.
    fn flush(&self, found: &mut Vec<Candidate>) -> Result<()> {
        let d = self.a.0.d();
        let unit = self.threshold.metric == FlatMetric::Cosine;
        let mut a64 = vec![0f64; d];
        let (mut last, mut inv_a, mut reach) = (None, 1.0, 0.0);
        let mut out = Vec::with_capacity(found.len() / 4 + 1);
        for c in found.iter() {
            if last != Some(c.i) {
                let row = self.a.0.row((c.i - self.a.1) as usize);
                exact::load_row64(row, &mut a64);
                inv_a = if unit { exact::inverse_norm(row) } else { 1.0 };
                reach = if self.threshold.metric == FlatMetric::InnerProduct {
                    exact::bound_norm(FlatMetric::InnerProduct, row, None) * self.b_max_norm
                } else {
                    0.0
                };
                last = Some(c.i);
            }
            let jb = (c.j - self.b.1) as usize;
            let inv_b = self.b.2.map_or(1.0, |inv| inv[jb]);
            let passes = |order| self.threshold.passes_order(order);
            if let Some(score) = exact::pair_against(self.threshold.metric, (&a64, self.b.0.row(jb)), (inv_a, inv_b), reach, self.threshold.value, passes) {
                out.push(Pair { i: c.i, j: c.j, score });
            }
        }
        self.candidates.fetch_add(found.len(), Ordering::Relaxed);
        found.clear();
        if out.is_empty() {
            return Ok(());
        }
        for p in &out {
            self.rows_seen[(p.i - self.seen_offset.0) as usize].store(true, Ordering::Relaxed);
            self.rows_seen[self.seen_offset.2 + (p.j - self.seen_offset.1) as usize].store(true, Ordering::Relaxed);
        }
        self.keep_sample(&out);
        let total = self.found.fetch_add(out.len(), Ordering::Relaxed) + out.len();
        if total > self.max_pairs {
            return Err(self.too_many(total));
        }
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        (*sink)(&out)
    }

    fn keep_sample(&self, pairs: &[Pair]) {
        let mut s = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        let (scores, stride, skip) = &mut *s;
        for p in pairs {
            if *skip == 0 {
                scores.push(p.score);
                *skip = *stride;
            }
            *skip -= 1;
            if scores.len() >= SAMPLE {
                // Keep every other one and sample half as often from now on.
                let halved: Vec<f32> = scores.iter().step_by(2).copied().collect();
                *scores = halved;
                *stride *= 2;
            }
        }
    }

    fn too_many(&self, found: usize) -> Error {
        let rows = self.rows_seen.iter().filter(|r| r.load(Ordering::Relaxed)).count();
        let mut scores = self.sample.lock().unwrap_or_else(|p| p.into_inner()).0.clone();
        scores.sort_unstable_by(|a, b| a.total_cmp(b));
        let similarity = self.threshold.metric.is_similarity();
        // A threshold that about one in ten of the pairs found passes.
        let tighter = if scores.is_empty() {
            None
        } else if similarity {
            Some(scores[scores.len() * 9 / 10])
        } else {
            Some(scores[scores.len() / 10])
        };
        let (lo, hi) = (scores.first().copied().unwrap_or(f32::NAN), scores.last().copied().unwrap_or(f32::NAN));
        Error::TooManyPairs {
            threshold: self.threshold.value,
            found,
            rows,
            max_pairs: self.max_pairs,
            detail: match tighter {
                Some(t) => format!(
                    "their scores range from {lo} to {hi}; a threshold of about {t} (which one in ten of them passes) is tighter, \
                     or raise max_pairs"
                ),
                None => "raise max_pairs or use a tighter threshold".into(),
            },
        }
    }
}

/// `limits[r]`: the largest f32 key of row `r` of `rows` that can belong to a passing pair: the
/// threshold's key plus the bound on the kernel's error for that row against `other_bound`,
/// rounded up to f32.
fn limits(threshold: &Threshold, rows: &Vectors<'_>, shift: Option<&[f32]>, other_bound: f64) -> Vec<f32> {
    let metric = threshold.metric;
    let gamma = exact::gamma(rows.d(), U32);
    (0..rows.n())
        .map(|r| {
            let qb = exact::bound_norm(metric, rows.row(r), shift);
            let limit = threshold.key() + exact::pair_bound(metric, qb, other_bound, gamma, U32);
            let l = limit as f32;
            if (l as f64) < limit {
                exact::next_up(l)
            } else {
                l
            }
        })
        .collect()
}

impl Shard<'_> {
    /// Every pair of this shard's rows (`i < j`, global indices) whose exact score passes
    /// `threshold` (see the module doc), each computed once, handed to `sink` in batches of
    /// unspecified order. More than `max_pairs` pairs stop the join with
    /// [`Error::TooManyPairs`]. Runs on the CPU threads of the engine (also for a GPU engine).
    pub fn range_self_join(&self, threshold: &Threshold, max_pairs: usize, progress: &dyn Progress, sink: &mut PairSink<'_>) -> Result<RangeStats> {
        if self.check_threshold(threshold)? {
            return Ok(RangeStats::default());
        }
        let (k, shift) = (self.kernel_rows(), self.shift());
        let bound = exact::db_bound(self.metric(), &k, shift);
        let limits = limits(threshold, &k, shift, bound);
        let id0 = self.row_offset();
        let scorer = Scorer::new(*threshold, (self.rows(), id0), (self.rows(), id0, self.inverse_norms()), true, max_pairs, rebind(sink));
        let side = JoinSide { rows: k, id0 };
        self.engine().cpu().range_join(side, &limits, None, self.metric(), shift, progress, &|c: &mut Vec<Candidate>| scorer.flush(c))?;
        Ok(RangeStats { pairs: scorer.found.load(Ordering::Relaxed), candidates: scorer.candidates.load(Ordering::Relaxed) })
    }

    /// Every pair of a row of this shard (`i`) and a row of the disjoint shard `other` (`j`)
    /// whose exact score passes `threshold`, each computed once; as [`Shard::range_self_join`].
    pub fn range_pair_join(
        &self,
        other: &Shard<'_>,
        threshold: &Threshold,
        max_pairs: usize,
        progress: &dyn Progress,
        sink: &mut PairSink<'_>,
    ) -> Result<RangeStats> {
        if self.check_threshold(threshold)? {
            return Ok(RangeStats::default());
        }
        if other.d() != self.d() || other.metric() != self.metric() {
            return Err(Error::invalid("range_pair_join", "the two shards differ in dimension or metric"));
        }
        let (a0, a1) = (self.row_offset(), self.row_offset() + self.n() as i64);
        let (b0, b1) = (other.row_offset(), other.row_offset() + other.n() as i64);
        if a0 < b1 && b0 < a1 {
            return Err(Error::invalid("range_pair_join", format!("rows {a0}..{a1} and {b0}..{b1} overlap; a pair joins disjoint row blocks")));
        }
        self.range_with(other.kernel_rows(), other.rows(), b0, other.inverse_norms(), threshold, max_pairs, progress, sink)
    }

    /// Every pair of a query row (`i`, counted from 0) and a row of this shard (`j`, global)
    /// whose exact score passes `threshold`; queries are foreign rows (none is left out).
    pub fn range_search(
        &self,
        queries: &[f32],
        threshold: &Threshold,
        max_pairs: usize,
        progress: &dyn Progress,
        sink: &mut PairSink<'_>,
    ) -> Result<RangeStats> {
        let nothing = self.check_threshold(threshold)?;
        let q = Vectors::new(queries, self.d(), "queries")?;
        let unit = match self.metric() {
            FlatMetric::Cosine => Some(super::shard::Unit::of(&q, "queries")?),
            _ => {
                exact::check_magnitudes(&q, "queries")?;
                None
            }
        };
        if nothing {
            return Ok(RangeStats::default());
        }
        let kq = unit.as_ref().map_or(q, |u| Vectors::shaped_unchecked(&u.rows, q.d()));
        // The queries are the first set (row side); the shard the second.
        let shift = self.shift();
        let bound = exact::db_bound(self.metric(), &self.kernel_rows(), shift);
        let limits = limits(threshold, &kq, shift, bound);
        let scorer = Scorer::new(*threshold, (q, 0), (self.rows(), self.row_offset(), self.inverse_norms()), false, max_pairs, rebind(sink));
        let (a, b) = (JoinSide { rows: kq, id0: 0 }, JoinSide { rows: self.kernel_rows(), id0: self.row_offset() });
        self.engine().cpu().range_join(a, &limits, Some(b), self.metric(), shift, progress, &|c: &mut Vec<Candidate>| scorer.flush(c))?;
        Ok(RangeStats { pairs: scorer.found.load(Ordering::Relaxed), candidates: scorer.candidates.load(Ordering::Relaxed) })
    }

    /// This shard's rows (first set) against rows `b` (kernel copy `kb`, originals `b`, global
    /// row 0 `b0`, cosine scales `inv`).
    #[allow(clippy::too_many_arguments)]
    fn range_with(
        &self,
        kb: Vectors<'_>,
        b: Vectors<'_>,
        b0: i64,
        inv: Option<&[f64]>,
        threshold: &Threshold,
        max_pairs: usize,
        progress: &dyn Progress,
        sink: &mut PairSink<'_>,
    ) -> Result<RangeStats> {
        let (ka, shift) = (self.kernel_rows(), self.shift());
        let bound = exact::db_bound(self.metric(), &kb, shift);
        let limits = limits(threshold, &ka, shift, bound);
        let scorer = Scorer::new(*threshold, (self.rows(), self.row_offset()), (b, b0, inv), false, max_pairs, rebind(sink));
        let (sa, sb) = (JoinSide { rows: ka, id0: self.row_offset() }, JoinSide { rows: kb, id0: b0 });
        self.engine().cpu().range_join(sa, &limits, Some(sb), self.metric(), shift, progress, &|c: &mut Vec<Candidate>| scorer.flush(c))?;
        Ok(RangeStats { pairs: scorer.found.load(Ordering::Relaxed), candidates: scorer.candidates.load(Ordering::Relaxed) })
    }

    /// Refuses a threshold of another metric; true when it selects nothing (nothing to run).
    fn check_threshold(&self, threshold: &Threshold) -> Result<bool> {
        if threshold.metric != self.metric() {
            return Err(Error::invalid("threshold", format!("a threshold on {:?} scores for rows loaded under {:?}", threshold.metric, self.metric())));
        }
        Ok(threshold.selects_nothing())
    }
}

/// The sink with the scorer's lifetime (both live for the one call).
fn rebind<'s>(sink: &'s mut PairSink<'_>) -> &'s mut PairSink<'s> {
    sink
}
