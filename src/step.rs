//! The nearest-neighbour step: `FaissNearestNeighbour`, with the controls its users know.
//!
//! Like the original it indexes every row and gives each its `k` nearest other rows
//! (`nn_indices`) and their scores (`nn_scores`). Unlike the original, a row is removed from its
//! own list *by index*: the original searched k + 1 and dropped the first hit, which on real data
//! with duplicate rows drops a twin and keeps the row itself.

use crate::data::{widen, Element, Vectors};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::cpu::CpuSearcher;
use crate::flat::{FlatJob, FlatSearcher};
use crate::gpu::{GpuKernel, GpuOptions};
use crate::metric::{FlatMetric, Metric};
use crate::shard;
use crate::topk::TopKLists;
use crate::neighbours::Neighbours;
use crate::precision::Precision;
use crate::progress::Progress;
use crate::shard::ShardMode;

/// The step. Build it with [`FaissNearestNeighbour::new`] and the setters, then [`run`](Self::run).
#[derive(Debug, Clone)]
pub struct FaissNearestNeighbour {
    device: Device,
    string_factory: Option<String>,
    metric_type: i64,
    k: usize,
    search_batch_size: usize,
    exclude_self: bool,
    memory_budget: Option<usize>,
    threads: Option<usize>,
    precision: Precision,
    gpu_kernel: GpuKernel,
    shard_mode: ShardMode,
    train_sample: usize,
}

impl Default for FaissNearestNeighbour {
    fn default() -> Self {
        Self::new()
    }
}

impl FaissNearestNeighbour {
    /// Defaults: CPU, flat index, L2, k = 1, search_batch_size = 50, exclude_self = true.
    pub fn new() -> Self {
        FaissNearestNeighbour {
            device: Device::Cpu,
            string_factory: None,
            metric_type: 1,
            k: 1,
            search_batch_size: 50,
            exclude_self: true,
            memory_budget: None,
            threads: None,
            precision: Precision::F32,
            gpu_kernel: GpuKernel::Auto,
            shard_mode: ShardMode::Sharded,
            train_sample: 1 << 17,
        }
    }
    /// Where to run.
    pub fn device(mut self, device: Device) -> Self { self.device = device; self }
    /// faiss index factory string; `None` or `"Flat"` is exact search on our own kernels.
    pub fn string_factory(mut self, s: Option<&str>) -> Self { self.string_factory = s.map(str::to_owned); self }
    /// faiss `METRIC_*` integer (0 = inner product, 1 = L2, …).
    pub fn metric_type(mut self, m: i64) -> Self { self.metric_type = m; self }
    /// Neighbours per row.
    pub fn k(mut self, k: usize) -> Self { self.k = k; self }
    /// Query rows per batch.
    pub fn search_batch_size(mut self, n: usize) -> Self { self.search_batch_size = n; self }
    /// Leave each row out of its own list (by index).
    pub fn exclude_self(mut self, yes: bool) -> Self { self.exclude_self = yes; self }
    /// GPU precision.
    pub fn precision(mut self, p: Precision) -> Self { self.precision = p; self }
    /// Which GPU kernels compute a flat search (the fused kernel, or cuBLAS tiles + select).
    pub fn gpu_kernel(mut self, k: GpuKernel) -> Self { self.gpu_kernel = k; self }
    /// Multi-device mode.
    pub fn shard_mode(mut self, m: ShardMode) -> Self { self.shard_mode = m; self }

    /// Worker threads of the CPU backend (default: every core).
    pub fn threads(mut self, n: usize) -> Self { self.threads = Some(n.max(1)); self }
    /// Working-memory budget in bytes for tiles and top-k state (default: 512 MiB on the CPU,
    /// half the free memory on a GPU).
    pub fn memory_budget(mut self, bytes: usize) -> Self { self.memory_budget = Some(bytes); self }
    /// At most this many rows train a faiss index; larger datasets are sampled evenly (default 131,072).
    pub fn train_sample(mut self, rows: usize) -> Self { self.train_sample = rows.max(1); self }

    /// Runs on `n × d` row-major data.
    pub fn run<T: Element>(&self, data: &[T], d: usize) -> Result<Neighbours> {
        self.run_with_progress(data, d, &crate::progress::NoProgress)
    }

    /// Runs, reporting progress to `progress`.
    pub fn run_with_progress<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress) -> Result<Neighbours> {
        let metric = Metric::from_faiss(self.metric_type)?;
        let factory = self.factory()?;
        if self.search_batch_size == 0 {
            return Err(Error::invalid("search_batch_size", "0: a batch needs at least one row"));
        }
        let data = widen(data);
        let v = Vectors::new(&data, d, "embeddings")?;
        self.check_k(v.n())?;
        match (factory, metric.flat()) {
            (None, Some(fm)) => self.run_flat(v, fm, progress),
            (factory, _) => self.run_faiss(v, factory.unwrap_or("Flat"), metric, progress),
        }
    }

    /// The factory string, `None` for exact flat search.
    fn factory(&self) -> Result<Option<&str>> {
        match self.string_factory.as_deref().map(str::trim) {
            None | Some("Flat") => Ok(None),
            Some("") => Err(Error::invalid("string_factory", "empty string (leave it unset for exact flat search)")),
            Some(s) => Ok(Some(s)),
        }
    }

    fn check_k(&self, n: usize) -> Result<()> {
        let k = self.k;
        if k == 0 {
            return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
        }
        if self.exclude_self && k > n - 1 {
            return Err(Error::InvalidK {
                k,
                reason: format!("each of the {n} rows has only {} other rows to be its neighbours (k must be ≤ n − 1)", n - 1),
            });
        }
        if !self.exclude_self && k > n {
            return Err(Error::InvalidK { k, reason: format!("the dataset has only {n} rows (k must be ≤ n)") });
        }
        Ok(())
    }

    fn run_flat(&self, v: Vectors<'_>, metric: FlatMetric, progress: &dyn Progress) -> Result<Neighbours> {
        let job = if self.exclude_self {
            FlatJob::self_join(v, metric, self.k, progress)
        } else {
            FlatJob::search(v, v, metric, self.k, progress)
        };
        let lists = match &self.device {
            Device::Cpu => {
                let mut cpu = CpuSearcher::new();
                if let Some(t) = self.threads {
                    cpu = cpu.threads(t);
                }
                if let Some(b) = self.memory_budget {
                    cpu = cpu.memory_budget(b);
                }
                cpu.search(&job)?
            }
            gpu_device => {
                let opts = GpuOptions { precision: self.precision, kernel: self.gpu_kernel, ..GpuOptions::default() };
                let searchers = crate::gpu::open_searchers(gpu_device, &opts)?;
                let refs: Vec<&dyn FlatSearcher> = searchers.iter().map(|s| s.as_ref() as &dyn FlatSearcher).collect();
                // Shard lists are merged by our merge kernel on the first listed device.
                let merge_device = match gpu_device {
                    Device::Cuda(ids) => ids.first().copied().unwrap_or(0),
                    _ => 0,
                };
                let merge = move |parts: &[TopKLists], k: usize| crate::gpu::merge_on_device(merge_device, parts, k);
                shard::search(&refs, &job, self.shard_mode, &merge)?
            }
        };
        Ok(lists.into_neighbours(metric))
    }

    #[cfg(feature = "faiss")]
    fn run_faiss(&self, v: Vectors<'_>, factory: &str, metric: Metric, progress: &dyn Progress) -> Result<Neighbours> {
        if self.device.is_gpu() {
            return Err(Error::Unavailable {
                what: format!("index {factory:?} on a GPU"),
                reason: "faiss's GPU indexes are not part of this crate; only exact flat search (string_factory unset \
                         or \"Flat\", metric L2 or inner product) runs on the GPU. Use device cpu for this index."
                    .into(),
            });
        }
        let spec = crate::faiss_backend::FaissSpec {
            factory,
            metric,
            k: self.k,
            exclude_self: self.exclude_self,
            batch: self.search_batch_size,
            train_sample: self.train_sample,
        };
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
