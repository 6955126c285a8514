//! A faiss-like exact index for library users: `FlatIndex::new(d, metric)`, `add`, `search`.
//!
//! Results follow faiss's conventions: row-major `nq × k` distances and labels, best first;
//! where fewer than `k` rows exist, label −1 with distance `f32::MAX` (L2) or `−f32::MAX` (inner
//! product, cosine), as faiss's `IndexFlat` writes them. [`FlatIndex::range_search`] returns
//! faiss's `lims` / distances / labels layout.
//! The engine and the loaded rows are kept between searches: rows reach a device once, at the
//! first search after an `add`, and each search streams only its queries.

use crate::data::Vectors;
use crate::device::Device;
use crate::engine::range::{default_max_pairs, Pair, Threshold};
use crate::engine::{exact, Engine, EngineOptions, Shard};
use crate::error::{Error, Result};
use crate::flat::plan::DEFAULT_CPU_BUDGET;
use crate::metric::{FlatMetric, Metric};
use crate::progress::{NoProgress, Progress};
use crate::topk::TopKLists;
use std::sync::{Arc, RwLock};

/// What [`FlatIndex::range_search`] returns, in faiss's layout: query `q`'s results are
/// `labels[lims[q]..lims[q + 1]]` and their scores `distances[lims[q]..lims[q + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeResult {
    /// `nq + 1` offsets into `distances` / `labels`, from 0 to their length.
    pub lims: Vec<i64>,
    /// Exact scores (squared L2 distances, inner products or cosine similarities).
    pub distances: Vec<f32>,
    /// Stored rows' labels.
    pub labels: Vec<i64>,
}

/// Exact (brute-force) L2, inner-product or cosine index, like faiss's `IndexFlatL2` /
/// `IndexFlatIP` (cosine: `IndexFlatIP` over unit-length rows, with exact cosines).
pub struct FlatIndex {
    d: usize,
    metric: FlatMetric,
    data: Arc<Vec<f32>>,
    device: Device,
    options: EngineOptions,
    /// The engine (opened at the first search) and the rows loaded on it (until the next add).
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    engine: Option<Engine>,
    shard: Option<Shard<'static>>,
    loads: usize,
}

impl Clone for FlatIndex {
    /// A copy of the rows and settings; the copy opens its own engine when it first searches.
    fn clone(&self) -> Self {
        FlatIndex {
            d: self.d,
            metric: self.metric,
            data: Arc::new(self.data.as_ref().clone()),
            device: self.device.clone(),
            options: self.options,
            state: RwLock::new(State::default()),
        }
    }
}

impl std::fmt::Debug for FlatIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatIndex").field("d", &self.d).field("metric", &self.metric).field("ntotal", &self.ntotal()).field("device", &self.device).finish()
    }
}

impl FlatIndex {
    /// An empty index of dimension `d` for `metric` (L2, inner product or cosine).
    pub fn new(d: usize, metric: Metric) -> Result<Self> {
        if d == 0 {
            return Err(Error::invalid("dimension", "0: vectors need at least one component"));
        }
        let metric = metric.flat().ok_or_else(|| Error::Metric {
            metric: metric.faiss_code() as i64,
            reason: "a flat index serves L2 (1), inner product (0) and cosine; use the step with this metric for faiss's flat index".into(),
        })?;
        Ok(FlatIndex { d, metric, data: Arc::new(Vec::new()), device: Device::Cpu, options: EngineOptions::default(), state: RwLock::new(State::default()) })
    }

    /// Searches on `device` instead of the CPU (needs the `cuda` feature for a GPU; a device
    /// that cannot be opened is an error at the first search).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self.state = RwLock::new(State::default());
        self
    }

    /// Uses these engine options (threads, memory budget, GPU precision and path).
    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self.state = RwLock::new(State::default());
        self
    }

    /// Dimension.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Number of vectors added.
    pub fn ntotal(&self) -> usize {
        self.data.len() / self.d
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric.metric()
    }

    /// How many times the rows were loaded onto the engine's devices: once per search that
    /// followed an `add` (or the first search), never for a search on unchanged rows.
    pub fn loads(&self) -> usize {
        self.read().loads
    }

    /// Row transfers to devices made for the rows loaded now (0 on the CPU, which reads them in
    /// place; one per device on a GPU).
    pub fn uploads(&self) -> usize {
        self.read().shard.as_ref().map_or(0, Shard::uploads)
    }

    /// Appends `n × d` row-major vectors; they get labels `ntotal..ntotal + n`.
    pub fn add(&mut self, x: &[f32]) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        let v = Vectors::new(x, self.d, "added vectors")?;
        match self.metric {
            FlatMetric::Cosine => drop(exact::inverse_norms(&v, "added vectors")?),
            _ => exact::check_magnitudes(&v, "added vectors")?,
        }
        // The loaded rows are stale now (and dropping them frees the data for in-place growth).
        self.state.get_mut().unwrap_or_else(|p| p.into_inner()).shard = None;
        Arc::make_mut(&mut self.data).extend_from_slice(x);
        Ok(())
    }

    /// Removes every vector.
    pub fn reset(&mut self) {
        self.state.get_mut().unwrap_or_else(|p| p.into_inner()).shard = None;
        self.data = Arc::new(Vec::new());
    }

    /// The `k` nearest stored vectors of each query: `(distances, labels)`, each `nq × k`.
    pub fn search(&self, queries: &[f32], k: usize) -> Result<(Vec<f32>, Vec<i64>)> {
        self.search_with_progress(queries, k, &NoProgress)
    }

    /// [`FlatIndex::search`], reporting to `progress` (which may stop it: [`Error::Cancelled`]).
    pub fn search_with_progress(&self, queries: &[f32], k: usize, progress: &dyn Progress) -> Result<(Vec<f32>, Vec<i64>)> {
        if k == 0 {
            return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
        }
        if queries.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let q = Vectors::new(queries, self.d, "queries")?;
        crate::engine::host_memory::check_lists(q.n(), k, k)?;
        // No list holds more than the stored rows: search for those, and give the slots beyond
        // them empty (so that a k far beyond ntotal costs its output, not k candidates a row).
        let found = k.min(self.data.len() / self.d).max(1);
        let lists = if self.data.is_empty() { TopKLists::empty(q.n(), found) } else { self.search_loaded(queries, found, progress)? };
        let mut nn = lists.widened(k)?.into_neighbours(self.metric);
        // faiss's IndexFlat leaves an unfilled slot at ±FLT_MAX (its heaps' initial value).
        let empty = if self.metric.is_similarity() { -f32::MAX } else { f32::MAX };
        for (s, _) in nn.scores.iter_mut().zip(&nn.indices).filter(|(_, i)| **i < 0) {
            *s = empty;
        }
        Ok((nn.scores, nn.indices))
    }

    /// Every stored row within `radius` of each query, faiss's `range_search`: a squared L2
    /// distance strictly below `radius`, or an inner product (cosine) strictly above it, decided
    /// on the exact (f64) score. Results are grouped by query, each query's in label order:
    /// query `q`'s are `labels[lims[q]..lims[q + 1]]` with their exact scores in `distances`.
    /// A radius no row can pass (an L2 radius of 0 or less) gives no results.
    ///
    /// Errors: a NaN or infinite radius; more results than the memory budget holds (20 bytes
    /// each), as [`Error::TooManyPairs`]. Runs on the CPU threads whatever the device.
    pub fn range_search(&self, queries: &[f32], radius: f64) -> Result<RangeResult> {
        self.range_search_with_progress(queries, radius, &NoProgress)
    }

    /// [`FlatIndex::range_search`], reporting to `progress` (which may stop it).
    pub fn range_search_with_progress(&self, queries: &[f32], radius: f64, progress: &dyn Progress) -> Result<RangeResult> {
        let threshold = Threshold::radius(self.metric.metric(), radius)?;
        if queries.is_empty() {
            return Ok(RangeResult { lims: vec![0], distances: Vec::new(), labels: Vec::new() });
        }
        let q = Vectors::new(queries, self.d, "queries")?;
        let nq = q.n();
        let mut found: Vec<Pair> = Vec::new();
        if !self.data.is_empty() {
            let engine = Engine::open(&Device::Cpu, self.options)?;
            let shard = engine.load_shard(&self.data, self.d, 0, self.metric)?;
            let cap = default_max_pairs(self.options.memory_budget.unwrap_or(DEFAULT_CPU_BUDGET));
            shard.range_search(queries, &threshold, cap, progress, &mut |batch: &[Pair]| {
                found.extend_from_slice(batch);
                Ok(())
            })?;
        } else {
            // Still checks the queries as a search would.
            match self.metric {
                FlatMetric::Cosine => drop(exact::inverse_norms(&q, "queries")?),
                _ => exact::check_magnitudes(&q, "queries")?,
            }
        }
        found.sort_unstable_by_key(|p| (p.i, p.j));
        let mut lims = vec![0i64; nq + 1];
        for p in &found {
            lims[p.i as usize + 1] += 1;
        }
        for t in 0..nq {
            lims[t + 1] += lims[t];
        }
        Ok(RangeResult { lims, distances: found.iter().map(|p| p.score).collect(), labels: found.iter().map(|p| p.j).collect() })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Searches the loaded rows, loading them first if an add made them stale.
    fn search_loaded(&self, queries: &[f32], k: usize, progress: &dyn Progress) -> Result<TopKLists> {
        {
            let st = self.read();
            if let Some(shard) = &st.shard {
                return shard.search(queries, None, k, progress);
            }
        }
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if st.shard.is_none() {
            if st.engine.is_none() {
                st.engine = Some(Engine::open(&self.device, self.options)?);
            }
            let engine = st.engine.as_ref().expect("opened above");
            let shard = engine.load_shard_shared(self.data.clone(), self.d, 0, self.metric)?;
            st.shard = Some(shard);
            st.loads += 1;
        }
        st.shard.as_ref().expect("loaded above").search(queries, None, k, progress)
    }
}
