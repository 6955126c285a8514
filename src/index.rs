//! A faiss-like exact index for library users: `FlatIndex::new(d, metric)`, `add`, `search`.
//!
//! Results follow faiss's conventions: row-major `nq × k` distances and labels, best first;
//! where fewer than `k` rows exist, label −1 with distance +inf (L2) or −inf (inner product).

use crate::data::Vectors;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::cpu::CpuSearcher;
use crate::flat::{FlatJob, FlatSearcher};
use crate::metric::{FlatMetric, Metric};
use crate::progress::NoProgress;
use crate::shard::{self, ShardMode};
use crate::topk::TopKLists;

/// Exact (brute-force) L2 or inner-product index, like faiss's `IndexFlatL2` / `IndexFlatIP`.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    d: usize,
    metric: FlatMetric,
    data: Vec<f32>,
    device: Device,
    cpu: CpuSearcher,
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
        Ok(FlatIndex { d, metric, data: Vec::new(), device: Device::Cpu, cpu: CpuSearcher::new() })
    }

    /// Searches on `device` instead of the CPU (needs the `cuda` feature for a GPU).
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Uses this CPU searcher configuration (threads, memory budget).
    pub fn with_cpu(mut self, cpu: CpuSearcher) -> Self {
        self.cpu = cpu;
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

    /// Appends `n × d` row-major vectors; they get labels `ntotal..ntotal + n`.
    pub fn add(&mut self, x: &[f32]) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        Vectors::new(x, self.d, "added vectors")?;
        self.data.extend_from_slice(x);
        Ok(())
    }

    /// Removes every vector.
    pub fn reset(&mut self) {
        self.data.clear();
    }

    /// The `k` nearest stored vectors of each query: `(distances, labels)`, each `nq × k`.
    pub fn search(&self, queries: &[f32], k: usize) -> Result<(Vec<f32>, Vec<i64>)> {
        if k == 0 {
            return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
        }
        if queries.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let q = Vectors::new(queries, self.d, "queries")?;
        let lists = if self.data.is_empty() {
            TopKLists::empty(q.n(), k)
        } else {
            let x = Vectors::shaped(&self.data, self.d, "index")?;
            let job = FlatJob::search(q, x, self.metric, k, &NoProgress);
            self.run(&job)?
        };
        let nn = lists.into_neighbours(self.metric);
        Ok((nn.scores, nn.indices))
    }

    fn run(&self, job: &FlatJob<'_>) -> Result<TopKLists> {
        match &self.device {
            Device::Cpu => self.cpu.search(job),
            dev => {
                let searchers = crate::gpu::open_searchers(dev, &crate::gpu::GpuOptions::default())?;
                let refs: Vec<&dyn FlatSearcher> = searchers.iter().map(|s| s.as_ref() as &dyn FlatSearcher).collect();
                shard::search(&refs, job, ShardMode::Sharded, &shard::host_merge)
            }
        }
    }
}
