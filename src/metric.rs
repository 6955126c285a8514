//! faiss's `METRIC_*` integers and what this crate does with each.

use crate::error::{Error, Result};

/// A faiss metric, identified by the integer faiss gives it (`faiss::MetricType`).
///
/// L2 is *squared* Euclidean distance, as in faiss. Our own flat kernels serve
/// [`Metric::InnerProduct`] and [`Metric::L2`]; the others go to the faiss backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// `METRIC_INNER_PRODUCT` = 0: larger is closer.
    InnerProduct,
    /// `METRIC_L2` = 1: squared Euclidean distance, smaller is closer.
    L2,
    /// `METRIC_L1` = 2.
    L1,
    /// `METRIC_Linf` = 3.
    Linf,
    /// `METRIC_Canberra` = 20.
    Canberra,
    /// `METRIC_BrayCurtis` = 21.
    BrayCurtis,
    /// `METRIC_JensenShannon` = 22.
    JensenShannon,
}

/// The faiss metric integers the step serves, for messages.
const SERVED: &str = "0 (INNER_PRODUCT), 1 (L2), 2 (L1), 3 (Linf), 20 (Canberra), 21 (BrayCurtis), 22 (JensenShannon)";

impl Metric {
    /// Parses faiss's integer. `METRIC_Lp` (4) is refused because it needs a `metric_arg` (p)
    /// that the step does not take, faiss's Jaccard, NaNEuclidean and GOWER (23–25) because the
    /// step does not serve them; other integers are refused with the list of those served.
    pub fn from_faiss(code: i64) -> Result<Self> {
        Ok(match code {
            0 => Metric::InnerProduct,
            1 => Metric::L2,
            2 => Metric::L1,
            3 => Metric::Linf,
            4 => return Err(Error::Metric { metric: code, reason: "METRIC_Lp needs a metric_arg (the p of the norm), which this step does not take".into() }),
            20 => Metric::Canberra,
            21 => Metric::BrayCurtis,
            22 => Metric::JensenShannon,
            // faiss's metrics for sparse or partly missing data: its flat search of them is not
            // the nearest-neighbour search this step makes.
            23..=25 => {
                let name = ["Jaccard", "NaNEuclidean", "GOWER"][(code - 23) as usize];
                return Err(Error::Metric { metric: code, reason: format!("METRIC_{name} is not served; this step takes {SERVED}") });
            }
            _ => return Err(Error::Metric { metric: code, reason: format!("not a faiss metric; this step takes {SERVED}") }),
        })
    }

    /// Parses a CLI spelling: `l2`, `ip` (or `inner_product`), `l1`, `linf`, `canberra`,
    /// `braycurtis`, `jensenshannon`, or a faiss `METRIC_*` integer.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" | "inner_product" | "inner-product" => Ok(Metric::InnerProduct),
            "l1" => Ok(Metric::L1),
            "linf" => Ok(Metric::Linf),
            "canberra" => Ok(Metric::Canberra),
            "braycurtis" | "bray_curtis" | "bray-curtis" => Ok(Metric::BrayCurtis),
            "jensenshannon" | "jensen_shannon" | "jensen-shannon" => Ok(Metric::JensenShannon),
            "cosine" | "cos" => {
                Err(Error::invalid("metric", format!("{s:?}: cosine similarity is the inner product of unit-length rows: normalise the rows and use ip")))
            }
            other => match other.parse::<i64>() {
                Ok(code) => Metric::from_faiss(code),
                Err(_) => {
                    Err(Error::invalid("metric", format!("{s:?}: expected l2, ip, l1, linf, canberra, braycurtis, jensenshannon or a faiss METRIC_* integer")))
                }
            },
        }
    }

    /// faiss's integer for this metric.
    pub fn faiss_code(self) -> u32 {
        match self {
            Metric::InnerProduct => 0,
            Metric::L2 => 1,
            Metric::L1 => 2,
            Metric::Linf => 3,
            Metric::Canberra => 20,
            Metric::BrayCurtis => 21,
            Metric::JensenShannon => 22,
        }
    }

    /// True where larger scores are closer (faiss's `is_similarity_metric`).
    pub fn is_similarity(self) -> bool {
        matches!(self, Metric::InnerProduct)
    }

    /// The flat metric our own kernels serve, if any.
    pub fn flat(self) -> Option<FlatMetric> {
        match self {
            Metric::L2 => Some(FlatMetric::L2),
            Metric::InnerProduct => Some(FlatMetric::InnerProduct),
            _ => None,
        }
    }
}

/// The two metrics served by our own flat kernels (CPU and GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlatMetric {
    /// Squared Euclidean distance.
    L2,
    /// Inner product.
    InnerProduct,
}

impl FlatMetric {
    /// The general metric.
    pub fn metric(self) -> Metric {
        match self {
            FlatMetric::L2 => Metric::L2,
            FlatMetric::InnerProduct => Metric::InnerProduct,
        }
    }

    /// Internally every backend ranks by a *key* where smaller is better: the distance for L2,
    /// the negated inner product for IP. This turns a key back into the user's score.
    #[inline]
    pub fn score_from_key(self, key: f32) -> f32 {
        match self {
            FlatMetric::L2 => key,
            // 0 − key rather than −key: a zero product is reported as +0, never −0.
            FlatMetric::InnerProduct => 0.0 - key,
        }
    }
}
