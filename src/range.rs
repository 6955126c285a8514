//! The threshold self-join: every unordered pair of rows whose exact score passes a threshold.
//!
//! ```
//! use faiss_nn::range::RangeJoin;
//! use faiss_nn::Metric;
//! # fn main() -> faiss_nn::Result<()> {
//! let rows = [1.0, 0.0, 0.99, 0.1, 0.0, 1.0, 0.0, 1.0];
//! // Cosine similarity above 0.95: rows 0 and 1 (0.995), rows 2 and 3 (identical).
//! let pairs = RangeJoin::new(0.95).metric(Metric::Cosine).run(&rows, 2)?;
//! assert_eq!((pairs.i, pairs.j), (vec![0, 2], vec![1, 3]));
//! # Ok(()) }
//! ```
//!
//! Each pair is computed once (the symmetric join), every candidate near the threshold is scored
//! in f64, and a pair is listed if and only if its exact score passes: a squared L2 distance
//! strictly below the threshold, an inner product or cosine similarity strictly above it
//! (faiss's `range_search` convention). Pairs stream out in batches ([`RangeJoin::stream`]) or
//! are collected sorted by `(i, j)` ([`RangeJoin::run`]); a threshold that passes more than
//! `max_pairs` pairs stops with [`Error::TooManyPairs`], which says
//! how many pairs it found in how many rows and suggests a tighter threshold.
//!
//! The join runs on the CPU threads (this crate's kernels); there is no GPU threshold join.

use crate::data::{widen, Element, Vectors};
use crate::device::Device;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::flat::plan::DEFAULT_CPU_BUDGET;
use crate::metric::Metric;
use crate::progress::{NoProgress, Progress};

pub use crate::engine::range::{default_max_pairs, Pair, PairSink, RangeStats, Threshold, PAIR_BYTES};

/// Pairs of rows with their exact scores, sorted by `(i, j)`, `i < j`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairs {
    /// First row of each pair.
    pub i: Vec<i64>,
    /// Second row of each pair.
    pub j: Vec<i64>,
    /// Exact score of each pair (squared L2 distance, inner product or cosine similarity).
    pub score: Vec<f32>,
}

impl Pairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.i.len()
    }

    /// True when no pair passed.
    pub fn is_empty(&self) -> bool {
        self.i.is_empty()
    }

    /// Collected pairs, sorted by `(i, j)`.
    pub fn from_unsorted(mut pairs: Vec<Pair>) -> Pairs {
        pairs.sort_unstable_by_key(|p| (p.i, p.j));
        Pairs { i: pairs.iter().map(|p| p.i).collect(), j: pairs.iter().map(|p| p.j).collect(), score: pairs.iter().map(|p| p.score).collect() }
    }
}

/// The threshold self-join, with the controls every front shares. Defaults: cosine, `max_pairs`
/// from the memory budget ([`default_max_pairs`]), every core, a 512 MiB budget.
#[derive(Debug, Clone)]
pub struct RangeJoin {
    threshold: f64,
    metric: Metric,
    max_pairs: Option<usize>,
    options: EngineOptions,
}

impl RangeJoin {
    /// Pairs whose score passes `threshold` (a cosine similarity unless [`RangeJoin::metric`]
    /// says otherwise).
    pub fn new(threshold: f64) -> Self {
        RangeJoin { threshold, metric: Metric::Cosine, max_pairs: None, options: EngineOptions::default() }
    }

    /// The metric: [`Metric::Cosine`] (default), [`Metric::InnerProduct`] or [`Metric::L2`].
    pub fn metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// Stop with an error once more than this many pairs pass.
    pub fn max_pairs(mut self, n: usize) -> Self {
        self.max_pairs = Some(n);
        self
    }

    /// CPU worker threads (default: every core).
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = Some(n.max(1));
        self
    }

    /// Working memory in bytes for tiles and packed operands, which also sizes the default
    /// `max_pairs` (default 512 MiB).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.options.memory_budget = Some(bytes);
        self
    }

    /// The threshold, checked against the metric.
    pub fn threshold(&self) -> Result<Threshold> {
        Threshold::new(self.metric, self.threshold)
    }

    /// The cap on pairs this join runs with.
    pub fn pair_cap(&self) -> usize {
        self.max_pairs.unwrap_or_else(|| default_max_pairs(self.options.memory_budget.unwrap_or(DEFAULT_CPU_BUDGET)))
    }

    /// Every passing pair of the `n × d` row-major `data`, sorted by `(i, j)`.
    pub fn run<T: Element>(&self, data: &[T], d: usize) -> Result<Pairs> {
        self.run_with_progress(data, d, &NoProgress)
    }

    /// [`RangeJoin::run`], reporting progress (in block pairs) to `progress`, which may stop it.
    pub fn run_with_progress<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress) -> Result<Pairs> {
        let mut all = Vec::new();
        self.stream(data, d, progress, &mut |batch: &[Pair]| {
            all.extend_from_slice(batch);
            Ok(())
        })?;
        Ok(Pairs::from_unsorted(all))
    }

    /// Every passing pair of `data`, handed to `sink` in batches as the join finds them (in no
    /// particular order; the set is the same on every run). Memory holds one batch per worker.
    pub fn stream<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress, sink: &mut PairSink<'_>) -> Result<RangeStats> {
        let threshold = self.threshold()?;
        let max_pairs = self.pair_cap();
        if max_pairs == 0 {
            return Err(Error::invalid("max_pairs", "0: at least one pair must be allowed"));
        }
        let data = widen(data);
        let v = Vectors::new(&data, d, "embeddings")?;
        let engine = Engine::open(&Device::Cpu, self.options)?;
        let flat = threshold.metric();
        let shard = engine.load_shard(v.as_slice(), d, 0, flat)?;
        shard.range_self_join(&threshold, max_pairs, progress, sink)
    }
}
