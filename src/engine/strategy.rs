//! The one place that decides how a search runs: which backend (our CPU kernels, the GPU's
//! cuBLAS path or fused kernel, or faiss), with which arithmetic, where shard results merge, and
//! whether the exact layer can prove its sets. Every front (the step, [`crate::FlatIndex`], the
//! Python package, the Ray actors) asks here, so the same options give the same choice
//! everywhere; the tests pin each decision. [`options_for`] adjusts the options an engine opens
//! with for a known k (a GPU's precision near its k limit), and a shard's decisions follow the
//! options its engine opened with.

use super::bound::{default_margin, Rounding};
use super::EngineOptions;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::{GpuPath, FUSED_MAX_K, MAX_K};
use crate::metric::{FlatMetric, Metric};
use crate::precision::Precision;

/// Which code computes a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Our CPU kernels (exact flat L2 / inner product).
    Cpu,
    /// cuBLAS product tiles with our select and merge kernels.
    GpuCublas,
    /// Our fused tensor-core kernel.
    GpuFused,
    /// faiss itself: any other factory string (CPU).
    Faiss,
    /// Our term-by-term exact search ([`crate::flat::termwise`]) for the metrics other than L2
    /// and inner product with a flat index (CPU).
    CpuTermwise,
}

/// Where the lists of several shards are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeAt {
    /// [`crate::topk::merge_lists`] on the host (one device, or CPU shards).
    Host,
    /// Our merge kernel on this CUDA device (the first one listed).
    Device(usize),
}

/// The decision for one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// The backend.
    pub backend: Backend,
    /// The flat metric our kernels compute (`None` for faiss).
    pub flat: Option<FlatMetric>,
    /// The arithmetic of the products (always f32 off the GPU).
    pub precision: Precision,
    /// Where shard lists merge.
    pub merge: MergeAt,
    /// The exact layer proves each row's set from the candidates (see [`super::exact`]); false
    /// for a GPU's TF32 products and, with [`EngineOptions::approximate`], a GPU's bf16 and f16
    /// products, whose candidates are re-scored but not proven. (On the CPU the products'
    /// precision is planned per search: with `approximate` the searches that plan bf16 or int8
    /// products are not proven either, though this says true.)
    pub proven: bool,
    /// Candidates the backend returns per row before the exact layer cuts them to k.
    pub candidates: usize,
}

/// Decides how `k` neighbours under `metric` are searched on `device`, for `factory` (`None` or
/// `"Flat"`: exact flat search).
pub fn choose(device: &Device, factory: Option<&str>, metric: Metric, k: usize, opts: &EngineOptions) -> Result<Strategy> {
    let factory = match factory.map(str::trim) {
        None | Some("Flat") => None,
        Some("") => return Err(Error::invalid("string_factory", "empty string (leave it unset for exact flat search)")),
        Some(s) => Some(s),
    };
    let flat = match (factory, metric.flat()) {
        (None, Some(fm)) => fm,
        (None, None) if !device.is_gpu() && crate::flat::termwise::serves(metric) => {
            if k == 0 {
                return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
            }
            let merge = MergeAt::Host;
            return Ok(Strategy { backend: Backend::CpuTermwise, flat: None, precision: Precision::F32, merge, proven: false, candidates: k });
        }
        (factory, _) => {
            if device.is_gpu() {
                let what = match factory {
                    Some(f) => format!("index {f:?} on a GPU"),
                    None => format!("metric {metric:?} on a GPU"),
                };
                return Err(Error::Unavailable {
                    what,
                    reason: "only exact flat search (string_factory unset or \"Flat\", metric L2 or inner product) runs on \
                             the GPU in this crate; use device cpu for faiss's indexes and other metrics"
                        .into(),
                });
            }
            let merge = MergeAt::Host;
            return Ok(Strategy { backend: Backend::Faiss, flat: None, precision: Precision::F32, merge, proven: false, candidates: k });
        }
    };
    if k == 0 {
        return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
    }
    let (backend, precision, cap) = match device {
        Device::Cpu => (Backend::Cpu, opts.precision.on_cpu(), usize::MAX),
        _ => {
            let backend = match opts.gpu_path {
                // Auto: the cuBLAS path, faster than the fused kernel in the large cases measured
                // on an H200 (f32 and bf16 at 200k × 384, bf16 at 1M × 1024; BENCHMARKS.md, GPU).
                GpuPath::Auto | GpuPath::Cublas => Backend::GpuCublas,
                GpuPath::Fused => Backend::GpuFused,
            };
            (backend, opts.precision.on_gpu(), path_k_limit(opts.gpu_path))
        }
    };
    if k > cap {
        let reason = match backend {
            Backend::GpuFused => format!("the fused GPU kernel serves k ≤ {FUSED_MAX_K}; use the cuBLAS path (GpuPath::Cublas)"),
            _ => format!("the CUDA backend serves 1 ≤ k ≤ {MAX_K}"),
        };
        return Err(Error::InvalidK { k, reason });
    }
    let merge = match device {
        Device::Cuda(ids) if ids.len() > 1 => MergeAt::Device(ids[0]),
        Device::AllCuda => MergeAt::Device(0),
        _ => MergeAt::Host,
    };
    // The CPU proves every list (reduced candidates with their bound, see engine::bound); a GPU
    // its f32 lists, and its bf16 and f16 lists with the tensor cores' bound, keeping more
    // candidates for them. TF32 lists, and reduced lists where the options ask for approximate
    // ones, are re-ranked, not proven.
    let gpu_reduced = gpu_rounding(precision).filter(|_| backend != Backend::Cpu);
    let proven = backend == Backend::Cpu || precision == Precision::F32 || (gpu_reduced.is_some() && !opts.approximate);
    let candidates = match gpu_reduced {
        _ if !proven => k,
        Some(r) => (k + default_margin(r, k)).min(cap),
        None => (k + super::exact::margin(k)).min(cap),
    };
    Ok(Strategy { backend, flat: Some(flat), precision, merge, proven, candidates })
}

/// The options to open an engine with for searches of `k` neighbours on `device`. A GPU's bf16
/// and f16 products are proven with extra candidates beyond k (the tensor cores' bound is wide:
/// [`default_margin`], k/2 and at least 8), and a path returns at most its k limit. Where that
/// limit cuts the extra candidates below half and f32's own margin (the exact layer's,
/// k/16 and at least 4) still fits whole, the GPU computes in f32 instead: fewer bf16 rows would
/// be proven, and each unproven one is searched again by the CPU. Closer to the limit, where f32's
/// margin is cut too (its unproven rows then fall to the CPU's per-row exact search), bf16 and f16
/// stay. A planning rule: the shares of rows proven near the limit are not measured on a GPU.
/// Approximate lists, which keep no margin, keep their precision. (An engine's GPU precision is
/// fixed when it opens: the step and the CLI, which know k then, ask here; an engine or a
/// [`crate::FlatIndex`] opened directly keeps its precision.)
pub fn options_for(device: &Device, k: usize, opts: EngineOptions) -> EngineOptions {
    let cap = path_k_limit(opts.gpu_path);
    let Some(rounding) = gpu_rounding(opts.precision.on_gpu()) else { return opts };
    let cut = cap.saturating_sub(k) < default_margin(rounding, k) / 2;
    if device.is_gpu() && !opts.approximate && k <= cap && cut && k + super::exact::margin(k) <= cap {
        return EngineOptions { precision: Precision::F32, ..opts };
    }
    opts
}

/// The most neighbours (and candidates) a GPU path returns per row.
fn path_k_limit(path: GpuPath) -> usize {
    match path {
        GpuPath::Auto | GpuPath::Cublas => MAX_K,
        GpuPath::Fused => FUSED_MAX_K,
    }
}

/// The rounding of a GPU's reduced products at `precision` (bf16, f16), which the tensor cores'
/// bound proves; `None` for f32 and TF32.
fn gpu_rounding(precision: Precision) -> Option<Rounding> {
    match precision {
        Precision::Bf16 => Some(Rounding::Bf16),
        Precision::F16 => Some(Rounding::F16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> EngineOptions {
        EngineOptions::default()
    }

    #[test]
    fn cpu_flat_and_faiss() {
        let s = choose(&Device::Cpu, None, Metric::L2, 10, &opts()).unwrap();
        assert_eq!((s.backend, s.flat, s.precision, s.merge, s.proven), (Backend::Cpu, Some(FlatMetric::L2), Precision::Auto, MergeAt::Host, true));
        assert_eq!(s.candidates, 14);
        let s = choose(&Device::Cpu, Some(" Flat "), Metric::InnerProduct, 1000, &opts()).unwrap();
        assert_eq!((s.backend, s.candidates), (Backend::Cpu, 1062));
        // The CPU proves its bf16 candidates; TF32 and f16 run as f32 there.
        let s = choose(&Device::Cpu, None, Metric::L2, 5, &EngineOptions { precision: Precision::Bf16, ..opts() }).unwrap();
        assert_eq!((s.precision, s.proven), (Precision::Bf16, true));
        let s = choose(&Device::Cpu, None, Metric::L2, 5, &EngineOptions { precision: Precision::F16, ..opts() }).unwrap();
        assert_eq!((s.precision, s.proven), (Precision::F32, true));
        assert_eq!(choose(&Device::Cpu, None, Metric::L2, 5, &opts()).unwrap().precision, Precision::Auto);
        for (f, m) in [(Some("IVF16,Flat"), Metric::L2), (Some("HNSW32"), Metric::InnerProduct), (Some("HNSW32"), Metric::L1)] {
            assert_eq!(choose(&Device::Cpu, f, m, 3, &opts()).unwrap().backend, Backend::Faiss, "{f:?} {m:?}");
        }
        // Flat under the term-by-term metrics is our own exact search, never faiss's NaN terms.
        for (f, m) in [(None, Metric::L1), (Some("Flat"), Metric::Linf), (None, Metric::Canberra), (Some("Flat"), Metric::JensenShannon)] {
            assert_eq!(choose(&Device::Cpu, f, m, 3, &opts()).unwrap().backend, Backend::CpuTermwise, "{f:?} {m:?}");
        }
        assert!(choose(&Device::Cpu, Some(""), Metric::L2, 3, &opts()).is_err());
    }

    #[test]
    fn gpu_paths_precisions_and_merge() {
        let one = Device::Cuda(vec![1]);
        let s = choose(&one, None, Metric::L2, 10, &opts()).unwrap();
        assert_eq!((s.backend, s.merge, s.proven, s.candidates), (Backend::GpuCublas, MergeAt::Host, true, 14));
        let bf16 = EngineOptions { precision: Precision::Bf16, ..opts() };
        let s = choose(&one, None, Metric::L2, 10, &bf16).unwrap();
        // A GPU's bf16 and f16 candidates are proven with the tensor cores' bound, with the
        // reduced margin (k/2, at least 8); TF32's, and approximate ones, are re-ranked only.
        assert_eq!((s.precision, s.proven, s.candidates), (Precision::Bf16, true, 18));
        let s = choose(&one, None, Metric::L2, 10, &EngineOptions { precision: Precision::F16, ..opts() }).unwrap();
        assert_eq!((s.precision, s.proven, s.candidates), (Precision::F16, true, 18));
        let s = choose(&one, None, Metric::L2, 10, &EngineOptions { precision: Precision::Tf32, ..opts() }).unwrap();
        assert_eq!((s.precision, s.proven, s.candidates), (Precision::Tf32, false, 10));
        let s = choose(&one, None, Metric::L2, 10, &EngineOptions { approximate: true, ..bf16 }).unwrap();
        assert_eq!((s.precision, s.proven, s.candidates), (Precision::Bf16, false, 10));
        // f32 stays proven when approximate lists are asked for.
        let s = choose(&one, None, Metric::L2, 10, &EngineOptions { approximate: true, ..opts() }).unwrap();
        assert_eq!((s.precision, s.proven, s.candidates), (Precision::F32, true, 14));
        let fused = EngineOptions { gpu_path: GpuPath::Fused, ..opts() };
        assert_eq!(choose(&one, None, Metric::L2, 128, &fused).unwrap().candidates, 128);
        // Where a path's k limit cuts the reduced margin below half and f32's whole margin
        // fits, the engine opens in f32, unless approximate lists (no margin) are asked for;
        // closer to the limit, and on the CPU, the precision stays.
        let cases = [(GpuPath::Fused, FUSED_MAX_K, 104, 121), (GpuPath::Cublas, MAX_K, 3278, 3855), (GpuPath::Auto, MAX_K, 3278, 3855)];
        for (path, cap, f32_from, f32_to) in cases {
            for p in [Precision::Bf16, Precision::F16] {
                let o = EngineOptions { gpu_path: path, precision: p, ..opts() };
                for k in [f32_from - 1, f32_to + 1, cap] {
                    let s = choose(&one, None, Metric::L2, k, &options_for(&one, k, o)).unwrap();
                    assert_eq!((s.precision, s.proven, s.candidates), (p, true, cap), "{path:?} {p:?} k = {k}");
                }
                for k in [f32_from, f32_to] {
                    let s = choose(&one, None, Metric::InnerProduct, k, &options_for(&one, k, o)).unwrap();
                    assert_eq!((s.precision, s.proven, s.candidates), (Precision::F32, true, k + k / 16), "{path:?} {p:?} k = {k}");
                }
                let approx = EngineOptions { approximate: true, ..o };
                assert_eq!(options_for(&one, f32_from, approx).precision, p);
                assert_eq!(options_for(&Device::Cpu, f32_from, EngineOptions { precision: Precision::Bf16, ..o }).precision, Precision::Bf16);
            }
        }
        assert_eq!(options_for(&one, 30, EngineOptions { precision: Precision::Bf16, ..opts() }).precision, Precision::Bf16);
        assert_eq!(options_for(&one, 4000, EngineOptions { precision: Precision::Tf32, ..opts() }).precision, Precision::Tf32);
        assert!(matches!(choose(&one, None, Metric::L2, 129, &fused), Err(Error::InvalidK { .. })));
        assert!(matches!(choose(&one, None, Metric::L2, 4097, &opts()), Err(Error::InvalidK { .. })));
        assert_eq!(choose(&Device::Cuda(vec![2, 0]), None, Metric::L2, 1, &opts()).unwrap().merge, MergeAt::Device(2));
        assert_eq!(choose(&Device::AllCuda, None, Metric::L2, 1, &opts()).unwrap().merge, MergeAt::Device(0));
        assert!(matches!(choose(&one, Some("HNSW32"), Metric::L2, 1, &opts()), Err(Error::Unavailable { .. })));
        assert!(matches!(choose(&one, None, Metric::L1, 1, &opts()), Err(Error::Unavailable { .. })));
    }
}
