//! The nearest-neighbour step: `FaissNearestNeighbour`, with the controls its users know.
//!
//! Like the original it indexes every row and gives each its `k` nearest other rows
//! (`nn_indices`) and their scores (`nn_scores`). Unlike the original, a row is removed from its
//! own list *by index*: the original searched k + 1 and dropped the first hit, which on real data
//! with duplicate rows drops a twin and keeps the row itself.

use crate::data::{widen, Element, Vectors};
use crate::device::Device;
use crate::engine::{self, Backend, Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::gpu::GpuPath;
use crate::metric::Metric;
use crate::neighbours::Neighbours;
use crate::precision::Precision;
use crate::progress::Progress;
use crate::shard::ShardMode;

/// The step. Build it with [`FaissNearestNeighbour::new`] and the setters, then [`run`](Self::run).
#[derive(Debug, Clone)]
pub struct FaissNearestNeighbour {
    device: Device,
    string_factory: Option<String>,
    metric: MetricChoice,
    k: usize,
    search_batch_size: usize,
    exclude_self: bool,
    options: EngineOptions,
    train_sample: usize,
    search_params: Option<String>,
}

/// The metric as the caller gave it: faiss's integer (checked when the step runs, as the
/// original does), or a [`Metric`] (which includes cosine, which has no faiss integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricChoice {
    Code(i64),
    Named(Metric),
}

impl MetricChoice {
    fn resolve(self) -> Result<Metric> {
        match self {
            MetricChoice::Code(c) => Metric::from_faiss(c),
            MetricChoice::Named(m) => Ok(m),
        }
    }
}

impl Default for FaissNearestNeighbour {
    fn default() -> Self {
        Self::new()
    }
}

impl FaissNearestNeighbour {
    /// Defaults: CPU, flat index, L2, k = 1, search_batch_size = 50, exclude_self = true, and
    /// [`EngineOptions::default`].
    pub fn new() -> Self {
        FaissNearestNeighbour {
            device: Device::Cpu,
            string_factory: None,
            metric: MetricChoice::Code(1),
            k: 1,
            search_batch_size: 50,
            exclude_self: true,
            options: EngineOptions::default(),
            train_sample: 1 << 17,
            search_params: None,
        }
    }
    /// Where to run.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// faiss index factory string; `None` or `"Flat"` is exact search on our own kernels.
    pub fn string_factory(mut self, s: Option<&str>) -> Self {
        self.string_factory = s.map(str::to_owned);
        self
    }
    /// faiss `METRIC_*` integer (0 = inner product, 1 = L2, …); an integer faiss does not
    /// define is an error when the step runs.
    pub fn metric_type(mut self, m: i64) -> Self {
        self.metric = MetricChoice::Code(m);
        self
    }
    /// The metric by name, including [`Metric::Cosine`] (which has no faiss integer).
    pub fn metric(mut self, m: Metric) -> Self {
        self.metric = MetricChoice::Named(m);
        self
    }
    /// Neighbours per row.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
    /// Query rows per search call of a faiss index (our flat kernels size their own tiles).
    pub fn search_batch_size(mut self, n: usize) -> Self {
        self.search_batch_size = n;
        self
    }
    /// Leave each row out of its own list (by index).
    pub fn exclude_self(mut self, yes: bool) -> Self {
        self.exclude_self = yes;
        self
    }
    /// The products' arithmetic (default [`Precision::Auto`]; see [`Precision`]).
    pub fn precision(mut self, p: Precision) -> Self {
        self.options.precision = p;
        self
    }
    /// Return reduced-precision lists (bf16, f16, int8 products) re-scored but unproven (default
    /// false: exact lists; see [`crate::engine::EngineOptions::approximate`]).
    pub fn approximate(mut self, yes: bool) -> Self {
        self.options.approximate = yes;
        self
    }
    /// Which GPU code path computes a flat search (the fused kernel, or cuBLAS tiles + select).
    pub fn gpu_path(mut self, p: GpuPath) -> Self {
        self.options.gpu_path = p;
        self
    }
    /// Multi-device mode.
    pub fn shard_mode(mut self, m: ShardMode) -> Self {
        self.options.shard_mode = m;
        self
    }
    /// CPU worker threads (default: every core).
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = Some(n.max(1));
        self
    }
    /// Working-memory budget in bytes for tiles and packed operands (default: 512 MiB on the
    /// CPU; on a GPU a cap on top of half its free memory).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.options.memory_budget = Some(bytes);
        self
    }
    /// All engine options at once.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }
    /// At most this many rows train a faiss index; larger datasets are sampled evenly (default 131,072).
    pub fn train_sample(mut self, rows: usize) -> Self {
        self.train_sample = rows.max(1);
        self
    }

    /// Search-time parameters of a faiss index in faiss's syntax, e.g. `"nprobe=16,efSearch=64"`
    /// (`nprobe`, `efSearch`, `quantizer_efSearch`, `k_factor_rf`, `ht`). Exact flat search has
    /// none: setting them with it is an error rather than silently ignored.
    pub fn search_params(mut self, params: Option<&str>) -> Self {
        self.search_params = params.map(str::to_owned).filter(|p| !p.trim().is_empty());
        self
    }

    /// The options its engine opens with: these controls' (near the GPU's k limit, f32 in place
    /// of bf16 or f16, see [`engine::options_for`]).
    pub fn engine_options(&self) -> EngineOptions {
        engine::options_for(&self.device, self.k, self.options)
    }

    /// The decision [`engine::strategy`] makes for these controls on `n` rows (after the same
    /// argument checks as [`run`](Self::run)).
    pub fn strategy(&self, n: usize) -> Result<engine::Strategy> {
        let metric = self.metric.resolve()?;
        if self.search_batch_size == 0 {
            return Err(Error::invalid("search_batch_size", "0: a batch needs at least one row"));
        }
        self.check_k(n)?;
        let strategy = engine::choose(&self.device, self.string_factory.as_deref(), metric, self.k, &self.engine_options())?;
        if let (Some(p), false) = (&self.search_params, strategy.backend == Backend::Faiss) {
            return Err(Error::invalid(
                "search_params",
                format!("{p:?}: exact flat search has no search parameters; they apply to faiss indexes (string_factory)"),
            ));
        }
        Ok(strategy)
    }

    /// Runs on `n × d` row-major data.
    pub fn run<T: Element>(&self, data: &[T], d: usize) -> Result<Neighbours> {
        self.run_with_progress(data, d, &crate::progress::NoProgress)
    }

    /// Runs, reporting progress to `progress`.
    pub fn run_with_progress<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress) -> Result<Neighbours> {
        let data = widen(data);
        let v = Vectors::new(&data, d, "embeddings")?;
        let strat = self.strategy(v.n())?;
        engine::host_memory::check_lists(v.n(), self.k, strat.candidates)?;
        let metric = self.metric.resolve()?;
        match (strat.backend, strat.flat) {
            (Backend::CpuTermwise, _) => {
                let threads = self.options.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                crate::flat::termwise::self_knn(v, metric, self.k, self.exclude_self, threads, progress)
            }
            (Backend::Faiss, _) | (_, None) => {
                let factory = self.string_factory.as_deref().map(str::trim).unwrap_or("Flat");
                if metric == Metric::Cosine {
                    // faiss's own recipe: inner products of unit-length rows (a copy).
                    let unit = crate::engine::exact::unit_rows(&v, "embeddings")?;
                    return self.run_faiss(Vectors::shaped_unchecked(&unit, d), factory, Metric::InnerProduct, progress);
                }
                self.run_faiss(v, factory, metric, progress)
            }
            (_, Some(flat)) => {
                let engine = Engine::open(&self.device, self.engine_options())?;
                let shard = engine.load_shard(&data, d, 0, flat)?;
                let lists = if self.exclude_self { shard.self_join(self.k, progress)? } else { shard.search(&data, None, self.k, progress)? };
                Ok(lists.into_neighbours(flat))
            }
        }
    }

    fn check_k(&self, n: usize) -> Result<()> {
        let k = self.k;
        if k == 0 {
            return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
        }
        if self.exclude_self && k > n - 1 {
            return Err(Error::InvalidK {
                k, reason: format!("each of the {n} rows has only {} other rows to be its neighbours (k must be ≤ n − 1)", n - 1)
            });
        }
        if !self.exclude_self && k > n {
            return Err(Error::InvalidK { k, reason: format!("the dataset has only {n} rows (k must be ≤ n)") });
        }
        Ok(())
    }

    #[cfg(feature = "faiss")]
    fn run_faiss(&self, v: Vectors<'_>, factory: &str, metric: Metric, progress: &dyn Progress) -> Result<Neighbours> {
        let spec = crate::faiss_backend::FaissSpec {
            factory,
            metric,
            k: self.k,
            exclude_self: self.exclude_self,
            batch: self.search_batch_size,
            train_sample: self.train_sample,
            search_params: self.search_params.as_deref().unwrap_or(""),
        };
        if let (true, Some(flat)) = (crate::faiss_backend::is_flat_sq(factory), metric.flat()) {
            // Every code is compared with every query: the exact flat search of the decoded
            // rows finds the same neighbours (see faiss_backend::decoded_rows).
            let decoded = crate::faiss_backend::decoded_rows(v, &spec)?;
            let engine = Engine::open(&self.device, self.engine_options())?;
            let shard = engine.load_shard(&decoded, v.d(), 0, flat)?;
            let own = if self.exclude_self { Some(0) } else { None };
            return Ok(shard.search(v.as_slice(), own, self.k, progress)?.into_neighbours(flat));
        }
        crate::faiss_backend::self_knn(v, &spec, progress)
    }

    #[cfg(not(feature = "faiss"))]
    fn run_faiss(&self, _: Vectors<'_>, factory: &str, metric: Metric, _: &dyn Progress) -> Result<Neighbours> {
        Err(Error::Unavailable {
            what: format!("index {factory:?} with metric {metric:?}"),
            reason: "this build has no `faiss` feature; only exact flat L2 / inner-product search is built in".into(),
        })
    }
}
