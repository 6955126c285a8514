//! The kernels' instantiation table, in one place: the k buckets, element types, precisions and
//! metrics that `kernels/*.cu` instantiate, and the entry-point names they produce. The
//! launchers index by it, the loader resolves names from it, and a test holds it to the entry
//! points ptxas actually compiled, so the Rust and CUDA sides cannot drift apart.

use crate::metric::FlatMetric;
use crate::precision::Precision;

/// The select kernels' k buckets, smallest first (`topk_select_k{B}_{metric}`).
pub const SELECT_BUCKETS: [usize; 5] = [32, 128, 512, 2048, 4096];
/// The fused kernels' k buckets (`fused_knn_{prec}_{metric}_k{B}`).
pub const FUSED_BUCKETS: [usize; 2] = [32, 128];
/// Largest k the GPU kernels serve (the largest select bucket).
pub const MAX_K: usize = SELECT_BUCKETS[SELECT_BUCKETS.len() - 1];
/// Largest k the fused kernels serve.
pub const FUSED_MAX_K: usize = FUSED_BUCKETS[FUSED_BUCKETS.len() - 1];
/// Stored element types (`pack_rows_{e}`, `row_norms_{e}`): name and bytes.
pub const ELEMS: [(&str, usize); 3] = [("f32", 4), ("f16", 2), ("bf16", 2)];
/// The fused kernels' product precisions, in the order of `fnn::FusedPrec`.
pub const FUSED_PRECS: [&str; 4] = ["bf16", "f16", "tf32", "f32"];
/// Metric suffixes, in the order of `fnn::METRIC_*`.
pub const METRICS: [&str; 2] = ["l2", "ip"];

/// Index of a precision's stored element type in [`ELEMS`].
pub fn elem_index(p: Precision) -> usize {
    match p {
        Precision::F32 | Precision::Auto | Precision::Int8 | Precision::Tf32 => 0,
        Precision::F16 => 1,
        Precision::Bf16 => 2,
    }
}

/// Bytes of a precision's stored element.
pub fn elem_bytes(p: Precision) -> usize {
    ELEMS[elem_index(p)].1
}

/// Index of a precision in [`FUSED_PRECS`].
pub fn fused_index(p: Precision) -> usize {
    match p {
        Precision::Bf16 => 0,
        Precision::F16 => 1,
        Precision::Tf32 => 2,
        Precision::F32 | Precision::Auto | Precision::Int8 => 3,
    }
}

/// Index of a metric in [`METRICS`].
pub fn metric_index(m: FlatMetric) -> usize {
    match m {
        FlatMetric::L2 => 0,
        FlatMetric::InnerProduct | FlatMetric::Cosine => 1,
    }
}

/// Index in [`SELECT_BUCKETS`] of the smallest bucket that holds `k` (None above [`MAX_K`]).
pub fn select_bucket(k: usize) -> Option<usize> {
    SELECT_BUCKETS.iter().position(|b| *b >= k)
}

/// Index in [`FUSED_BUCKETS`] of the smallest bucket that holds `k`.
pub fn fused_bucket(k: usize) -> Option<usize> {
    FUSED_BUCKETS.iter().position(|b| *b >= k)
}

/// `topk_select_k{bucket}_{metric}`.
pub fn select_name(bucket: usize, metric: usize) -> String {
    format!("topk_select_k{}_{}", SELECT_BUCKETS[bucket], METRICS[metric])
}

/// `fused_knn_{prec}_{metric}_k{bucket}`.
pub fn fused_name(prec: usize, metric: usize, bucket: usize) -> String {
    format!("fused_knn_{}_{}_k{}", FUSED_PRECS[prec], METRICS[metric], FUSED_BUCKETS[bucket])
}

/// Every entry point with its module: what `kernels/*.cu` must define.
pub fn entry_points() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for (e, _) in ELEMS {
        v.push(("convert", format!("pack_rows_{e}")));
        v.push(("norms", format!("row_norms_{e}")));
    }
    for b in 0..SELECT_BUCKETS.len() {
        for m in 0..METRICS.len() {
            v.push(("select", select_name(b, m)));
        }
    }
    v.push(("merge", "topk_merge".into()));
    for p in 0..FUSED_PRECS.len() {
        for m in 0..METRICS.len() {
            for b in 0..FUSED_BUCKETS.len() {
                v.push(("fused", fused_name(p, m, b)));
            }
        }
    }
    v.push(("fused", "fused_clear_lists".into()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_k() {
        assert_eq!(select_bucket(1), Some(0));
        assert_eq!(select_bucket(32), Some(0));
        assert_eq!(select_bucket(33), Some(1));
        assert_eq!(select_bucket(MAX_K), Some(4));
        assert_eq!(select_bucket(MAX_K + 1), None);
        assert_eq!(fused_bucket(33), Some(1));
        assert_eq!(fused_bucket(129), None);
        assert_eq!(select_name(2, 1), "topk_select_k512_ip");
        assert_eq!(fused_name(fused_index(Precision::Tf32), 0, 1), "fused_knn_tf32_l2_k128");
        assert_eq!(entry_points().len(), 3 * 2 + 5 * 2 + 1 + 4 * 2 * 2 + 1);
    }
}
