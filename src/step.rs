//! The nearest-neighbour step: `FaissNearestNeighbour`, with the controls its users know.
//! (STUB: signatures fixed, body being written.)

use crate::data::Element;
use crate::device::Device;
use crate::error::Result;
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
    /// Multi-device mode.
    pub fn shard_mode(mut self, m: ShardMode) -> Self { self.shard_mode = m; self }

    /// Runs on `n × d` row-major data.
    pub fn run<T: Element>(&self, data: &[T], d: usize) -> Result<Neighbours> {
        self.run_with_progress(data, d, &crate::progress::NoProgress)
    }

    /// Runs, reporting progress in query rows.
    pub fn run_with_progress<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress) -> Result<Neighbours> {
        let _ = (data, d, progress);
        todo!("step body")
    }
}
