//! A faiss-like exact index for library users: `FlatIndex::new(d, metric)`, `add`, `search`.
//!
//! Results follow faiss's conventions: row-major `nq × k` distances and labels, best first;
//! where fewer than `k` rows exist, label −1 with distance +inf (L2) or −inf (inner product).
//! The engine and the loaded rows are kept between searches: rows reach a device once, at the
//! first search after an `add`, and each search streams only its queries.

use crate::data::Vectors;
use crate::device::Device;
use crate::engine::{exact, Engine, EngineOptions, Shard};
use crate::error::{Error, Result};
use crate::metric::{FlatMetric, Metric};
use crate::progress::{NoProgress, Progress};
use crate::topk::TopKLists;
use std::sync::{Arc, RwLock};

/// Exact (brute-force) L2 or inner-product index, like faiss's `IndexFlatL2` / `IndexFlatIP`.
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
    /// An empty index of dimension `d` for `metric` (L2 or inner product).
    pub fn new(d: usize, metric: Metric) -> Result<Self> {
        if d == 0 {
            return Err(Error::invalid("dimension", "0: vectors need at least one component"));
        }
        let metric = metric.flat().ok_or_else(|| Error::Metric {
            metric: metric.faiss_code() as i64,
            reason: "a flat index serves L2 (1) and inner product (0); use the step with this metric for faiss's flat index".into(),
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
        exact::check_magnitudes(&v, "added vectors")?;
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
        let nn = lists.widened(k)?.into_neighbours(self.metric);
        Ok((nn.scores, nn.indices))
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
