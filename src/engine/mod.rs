//! The engine every front goes through: per-device resources opened once, rows loaded once as
//! resident [`Shard`]s, searches that stream only queries, exact answers, and the merge of partial
//! results.
//!
//! ```
//! use faiss_nn::engine::{Engine, EngineOptions};
//! use faiss_nn::{Device, FlatMetric, NoProgress};
//! # fn main() -> faiss_nn::Result<()> {
//! let engine = Engine::open(&Device::Cpu, EngineOptions::default())?;
//! let rows = vec![0.0, 0.0, 1.0, 0.0, 5.0, 5.0, 5.0, 6.0];
//! // Rows 100..104 of some larger data set, held by this shard.
//! let shard = engine.load_shard(&rows, 2, 100, FlatMetric::L2)?;
//! let own = shard.self_join(1, &NoProgress)?; // each row's nearest other row of the shard
//! assert_eq!(own.row(0).1, &[101]);
//! let q = shard.search(&[4.0, 5.0], None, 2, &NoProgress)?; // a foreign query
//! assert_eq!(q.row(0).1, &[102, 103]);
//! # Ok(()) }
//! ```
//!
//! The contract the distributed layer builds on: [`Engine::load_shard`] keeps rows with their
//! global offset; [`Shard::search`], [`Shard::self_join`] and [`Shard::pair_join`] return
//! partial top-k lists with global indices, ranked by `(key, index)` with keys exact to f32;
//! [`Engine::merge`] combines partial lists of the same rows. Because the ranking is a strict
//! total order on exact keys, a result is the same however the rows were split.

pub mod bound;
pub mod exact;
pub mod host_memory;
pub mod range;
mod rounded;
mod shard;
pub mod strategy;
#[cfg(test)]
mod tensor_emu;

pub use exact::RefineStats;
pub use range::{Pair, RangeStats, Threshold};
pub use shard::Shard;
pub use strategy::{choose, options_for, Backend, MergeAt, Strategy};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::flat::cpu::CpuSearcher;
use crate::flat::FlatSearcher;
use crate::gpu::{GpuOptions, GpuPath};
use crate::precision::Precision;
use crate::shard::ShardMode;
use crate::topk::{merge_lists, TopKLists};
use std::sync::Arc;

/// The options every front shares, with the same defaults everywhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineOptions {
    /// Arithmetic of the products: `Auto` (default) picks the fastest exact path; see
    /// [`Precision`].
    pub precision: Precision,
    /// Which GPU kernels compute a flat search. Default [`GpuPath::Auto`].
    pub gpu_path: GpuPath,
    /// Working memory for tiles and packed operands, bytes: default 512 MiB on the CPU; on a GPU
    /// a cap on top of half its free memory.
    pub memory_budget: Option<usize>,
    /// CPU worker threads (search and exact re-scoring). Default: every core.
    pub threads: Option<usize>,
    /// How several devices share rows. Default [`ShardMode::Sharded`].
    pub shard_mode: ShardMode,
    /// Return reduced-precision lists (bf16, f16, int8 products) unproven: their candidates are
    /// re-scored exactly and the best k kept, but no proof checks that the true neighbours were
    /// among them, and no row is searched again. Approximate: a row's list may miss a
    /// neighbour. Default false (exact lists). f32 lists stay exact either way; under
    /// [`Precision::Auto`] on the CPU, the searches the planner runs in bf16 or int8 are unproven
    /// too. (On the Python package's Ray path each block's lists are unproven, then merged.)
    pub approximate: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            precision: Precision::Auto,
            gpu_path: GpuPath::Auto,
            memory_budget: None,
            threads: None,
            shard_mode: ShardMode::Sharded,
            approximate: false,
        }
    }
}

/// Per-device resources, opened once and shared by every shard loaded on them. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    device: Device,
    options: EngineOptions,
    /// The CPU searcher: the threads of the exact re-scoring everywhere, and the bipartite join.
    cpu: CpuSearcher,
    /// One searcher per logical shard: one per listed GPU id, or the CPU searcher.
    searchers: Vec<Box<dyn FlatSearcher>>,
    merge: MergeAt,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("device", &self.inner.device).field("options", &self.inner.options).finish()
    }
}

impl Engine {
    /// Opens `device`: on a GPU, its context, streams, cuBLAS handle and kernels (once per
    /// process and device), one searcher per listed id.
    ///
    /// Errors: [`Error::BadDevice`] for an id the machine does not have, [`Error::Unavailable`]
    /// without CUDA, an invalid option as [`Error::InvalidArgument`].
    pub fn open(device: &Device, options: EngineOptions) -> Result<Engine> {
        if options.threads == Some(0) {
            return Err(Error::invalid("threads", "0: at least one worker thread is needed"));
        }
        if options.memory_budget == Some(0) {
            return Err(Error::invalid("memory_budget", "0 bytes: the search needs working memory"));
        }
        let mut cpu = CpuSearcher::new();
        if let Some(t) = options.threads {
            cpu = cpu.threads(t);
        }
        if let Some(b) = options.memory_budget {
            cpu = cpu.memory_budget(b);
        }
        let (searchers, merge) = match device {
            Device::Cpu => (vec![Box::new(cpu.clone()) as Box<dyn FlatSearcher>], MergeAt::Host),
            _ => {
                let gopts = GpuOptions { precision: options.precision.on_gpu(), budget_bytes: options.memory_budget, ..GpuOptions::default() };
                let searchers: Vec<Box<dyn FlatSearcher>> =
                    crate::gpu::open_searchers(device, &gopts)?.into_iter().map(|s| s as Box<dyn FlatSearcher>).collect();
                let first = match device {
                    Device::Cuda(ids) => ids.first().copied().unwrap_or(0),
                    _ => 0,
                };
                let merge = if searchers.len() > 1 { MergeAt::Device(first) } else { MergeAt::Host };
                (searchers, merge)
            }
        };
        Ok(Engine { inner: Arc::new(Inner { device: device.clone(), options, cpu, searchers, merge }) })
    }

    /// An engine that runs as one GPU (`cuda:0`) over `searcher`, a model of one
    /// ([`tensor_emu`]): the GPU's strategy, proof and fallbacks, without a GPU.
    #[cfg(test)]
    pub(crate) fn emulated_gpu(searcher: Box<dyn FlatSearcher>, options: EngineOptions) -> Engine {
        let inner = Inner { device: Device::Cuda(vec![0]), options, cpu: CpuSearcher::new(), searchers: vec![searcher], merge: MergeAt::Host };
        Engine { inner: Arc::new(inner) }
    }

    /// An engine over searchers of the caller's own, one per logical shard, merging on the host:
    /// e.g. several CPU searchers standing in for devices, or a custom [`FlatSearcher`]. It runs
    /// as a CPU engine (f32, or bf16 as `options.precision` says: the exact layer proves every
    /// set either way).
    pub fn from_searchers(searchers: Vec<Box<dyn FlatSearcher>>, options: EngineOptions) -> Result<Engine> {
        if searchers.is_empty() {
            return Err(Error::invalid("device", "no searchers to run on"));
        }
        let mut cpu = CpuSearcher::new();
        if let Some(t) = options.threads {
            cpu = cpu.threads(t);
        }
        Ok(Engine { inner: Arc::new(Inner { device: Device::Cpu, options, cpu, searchers, merge: MergeAt::Host }) })
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Its options.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Where several shards' lists merge.
    pub fn merge_at(&self) -> MergeAt {
        self.inner.merge
    }

    /// Number of searchers (logical shards): 1 on the CPU, one per listed GPU id.
    pub fn slots(&self) -> usize {
        self.inner.searchers.len()
    }

    pub(crate) fn searcher(&self, slot: usize) -> &dyn FlatSearcher {
        self.inner.searchers[slot].as_ref()
    }

    pub(crate) fn cpu(&self) -> &CpuSearcher {
        &self.inner.cpu
    }

    /// True when rows are split over several searchers or live on a GPU (rather than one CPU
    /// searcher, which alone runs the bipartite join).
    pub(crate) fn is_distributed(&self) -> bool {
        self.slots() > 1 || self.inner.device.is_gpu()
    }

    /// Merges partial lists of the same rows (each best first, candidates distinct across
    /// parts, as from disjoint shards) into the best `k` per row, where the strategy merges.
    pub fn merge(&self, parts: &[TopKLists], k: usize) -> Result<TopKLists> {
        if parts.is_empty() {
            return Err(Error::invalid("merge", "no lists to merge"));
        }
        if k == 0 {
            return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
        }
        let n = parts[0].n();
        if let Some(p) = parts.iter().position(|p| p.n() != n) {
            return Err(Error::invalid("merge", format!("part {p} covers {} rows, part 0 covers {n}", parts[p].n())));
        }
        match self.inner.merge {
            MergeAt::Device(id) => crate::gpu::merge_on_device(id, parts, k),
            MergeAt::Host => Ok(merge_lists(parts, k)),
        }
    }
}
