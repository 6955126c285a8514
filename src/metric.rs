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
    /// Cosine similarity, larger is closer: the inner product of the rows divided by their
    /// norms. faiss has no integer for it (its users normalise the rows and search by inner
    /// product, which is what the kernels do here); the rows are normalised by this crate, the
    /// caller's data is not modified, and scores are re-scored from the original rows in f64.
    /// A zero row has no direction and is refused.
    Cosine,
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

    /// Parses a CLI spelling: `l2`, `ip` (or `inner_product`), `cosine`, `l1`, `linf`,
    /// `canberra`, `braycurtis`, `jensenshannon`, or a faiss `METRIC_*` integer.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" | "inner_product" | "inner-product" => Ok(Metric::InnerProduct),
            "l1" => Ok(Metric::L1),
            "linf" => Ok(Metric::Linf),
            "canberra" => Ok(Metric::Canberra),
            "braycurtis" | "bray_curtis" | "bray-curtis" => Ok(Metric::BrayCurtis),
            "jensenshannon" | "jensen_shannon" | "jensen-shannon" => Ok(Metric::JensenShannon),
            "cosine" | "cos" => Ok(Metric::Cosine),
            other => match other.parse::<i64>() {
                Ok(code) => Metric::from_faiss(code),
                Err(_) => Err(Error::invalid(
                    "metric",
                    format!("{s:?}: expected l2, ip, cosine, l1, linf, canberra, braycurtis, jensenshannon or a faiss METRIC_* integer"),
                )),
            },
        }
    }

    /// faiss's integer for this metric. Cosine has none: it is faiss's inner product (0), which
    /// faiss users apply to normalised rows, as this crate does.
    pub fn faiss_code(self) -> u32 {
        match self {
            Metric::InnerProduct | Metric::Cosine => 0,
            Metric::L2 => 1,
            Metric::L1 => 2,
            Metric::Linf => 3,
            Metric::Canberra => 20,
            Metric::BrayCurtis => 21,
            Metric::JensenShannon => 22,
        }
    }

    /// True where larger scores are closer (faiss's `is_similarity_metric`, and cosine).
    pub fn is_similarity(self) -> bool {
        matches!(self, Metric::InnerProduct | Metric::Cosine)
    }

    /// The flat metric our own kernels serve, if any.
    pub fn flat(self) -> Option<FlatMetric> {
        match self {
            Metric::L2 => Some(FlatMetric::L2),
            Metric::InnerProduct => Some(FlatMetric::InnerProduct),
            Metric::Cosine => Some(FlatMetric::Cosine),
            _ => None,
        }
    }

    /// The name the CLI and the Python package take for it (`l2`, `ip`, `cosine`, `l1`, …).
    pub fn name(self) -> &'static str {
        match self {
            Metric::InnerProduct => "ip",
            Metric::L2 => "l2",
            Metric::L1 => "l1",
            Metric::Linf => "linf",
            Metric::Canberra => "canberra",
            Metric::BrayCurtis => "braycurtis",
            Metric::JensenShannon => "jensenshannon",
            Metric::Cosine => "cosine",
        }
    }
}

/// The metrics served by our own flat kernels (CPU and GPU): the kernels compute squared L2
/// distances or inner products; cosine is the inner product of rows the engine normalised first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlatMetric {
    /// Squared Euclidean distance.
    L2,
    /// Inner product.
    InnerProduct,
    /// Cosine similarity: the kernels see normalised copies of the rows (an inner product), the
    /// exact layer scores the original rows.
    Cosine,
}

impl FlatMetric {
    /// The general metric.
    pub fn metric(self) -> Metric {
        match self {
            FlatMetric::L2 => Metric::L2,
            FlatMetric::InnerProduct => Metric::InnerProduct,
            FlatMetric::Cosine => Metric::Cosine,
        }
    }

    /// What the kernels compute for it: cosine is an inner product of normalised rows.
    #[inline]
    pub fn kernel(self) -> FlatMetric {
        match self {
            FlatMetric::Cosine => FlatMetric::InnerProduct,
            m => m,
        }
    }

    /// True where larger scores are closer (inner product, cosine).
    #[inline]
    pub fn is_similarity(self) -> bool {
        self != FlatMetric::L2
    }

    /// Internally every backend ranks by a *key* where smaller is better: the distance for L2,
    /// the negated inner product for IP. This turns a key back into the user's score.
    #[inline]
    pub fn score_from_key(self, key: f32) -> f32 {
        match self {
            FlatMetric::L2 => key,
            // 0 − key rather than −key: a zero product is reported as +0, never −0.
            FlatMetric::InnerProduct | FlatMetric::Cosine => 0.0 - key,
        }
    }
}
