//! Exact flat self-kNN for the metrics computed term by term: L1, Linf, Canberra, BrayCurtis and
//! Jensen–Shannon (faiss's `METRIC_L1` … `METRIC_JensenShannon`).
//!
//! faiss's `IndexFlat` computes these too, but its formulas give NaN where a term is 0/0
//! (Canberra on a component both rows have at 0, Jensen–Shannon on any zero component), and NaN
//! distances silently fall out of its top-k. Here every term has a defined value, as in scipy:
//! a 0/0 Canberra term is 0, a 0·log 0 Jensen–Shannon term is 0, BrayCurtis of two all-zero
//! rows is 0, and BrayCurtis of rows that cancel (x = −y ≠ 0, so Σ|xᵢ + yᵢ| = 0), or nearly
//! enough for the ratio to leave f32's range, is f32's largest value.
//! Jensen–Shannon is defined for non-negative data; rows with a negative component are refused
//! (see [`check_domain`]). The definitions follow faiss's (and scipy's, for BrayCurtis on any
//! signs) so that scores agree with it wherever it is defined:
//! - L1: Σ|xᵢ − yᵢ|; Linf: max |xᵢ − yᵢ|;
//! - Canberra: Σ |xᵢ − yᵢ| / (|xᵢ| + |yᵢ|);
//! - BrayCurtis: Σ|xᵢ − yᵢ| / Σ|xᵢ + yᵢ|;
//! - Jensen–Shannon: ½ Σ (xᵢ ln(xᵢ / mᵢ) + yᵢ ln(yᵢ / mᵢ)), mᵢ = (xᵢ + yᵢ) / 2 (a divergence, in nats).
//!
//! Terms are computed in f64 (so that no term overflows or underflows where f32 would: a
//! Canberra term of ±3e38, a Jensen–Shannon mean of two subnormals) across 4 lanes. Each row is
//! compared with every other (n² pairs, split over threads by row ranges); ties go to the lower
//! index.

use crate::data::Vectors;
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::neighbours::Neighbours;
use crate::progress::Progress;
use crate::topk::{RowSink, TopKHeaps};

/// Lanes of the per-term accumulators (one AVX register of f64).
const LANES: usize = 4;
/// Query rows a worker takes at a time (and reports progress for).
const ROWS_PER_TASK: usize = 64;

/// True for the metrics this module serves.
pub fn serves(metric: Metric) -> bool {
    matches!(metric, Metric::L1 | Metric::Linf | Metric::Canberra | Metric::BrayCurtis | Metric::JensenShannon)
}

/// Refuses data outside a metric's domain: Jensen–Shannon compares non-negative rows
/// (probability vectors); a negative component makes its logarithms meaningless. Names the first
/// offending row and component. (BrayCurtis takes any signs: its denominator is Σ|xᵢ + yᵢ|.)
pub fn check_domain(data: Vectors<'_>, metric: Metric, what: &str) -> Result<()> {
    if metric != Metric::JensenShannon {
        return Ok(());
    }
    let d = data.d();
    match data.as_slice().iter().position(|v| *v < 0.0) {
        None => Ok(()),
        Some(p) => Err(Error::invalid(
            "data",
            format!("{what}: row {}, component {} is {}; metric {metric:?} is defined for non-negative data only", p / d, p % d, data.as_slice()[p]),
        )),
    }
}

/// Every row's `k` nearest other rows (`exclude_self`) or nearest rows under `metric`, on
/// `threads` threads. `k` must be checked against `n` by the caller.
pub fn self_knn(data: Vectors<'_>, metric: Metric, k: usize, exclude_self: bool, threads: usize, progress: &dyn Progress) -> Result<Neighbours> {
    if !serves(metric) {
        return Err(Error::Unavailable {
            what: format!("metric {metric:?} in the term-by-term search"),
            reason: "it serves L1, Linf, Canberra, BrayCurtis and JensenShannon".into(),
        });
    }
    if k == 0 {
        return Err(Error::InvalidK { k, reason: "at least one neighbour must be asked for".into() });
    }
    check_domain(data, metric, "embeddings")?;
    let n = data.n();
    progress.start(n as u64);
    let tasks: Vec<(usize, usize)> = (0..n).step_by(ROWS_PER_TASK).map(|r0| (r0, (r0 + ROWS_PER_TASK).min(n))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let joined: Result<Vec<Vec<(usize, crate::topk::TopKLists)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1).min(tasks.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        crate::progress::check(progress, "the term-by-term search")?;
                        let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(r0, r1)) = tasks.get(t) else { break };
                        done.push((r0, rows(data, metric, k, exclude_self, r0, r1)?));
                        progress.advance((r1 - r0) as u64);
                    }
                    Ok::<_, Error>(done)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|p| Error::from_panic("term-by-term search worker", &*p)).and_then(|r| r)).collect()
    });
    let mut parts: Vec<_> = joined?.into_iter().flatten().collect();
    parts.sort_by_key(|(r0, _)| *r0);
    let mut indices = Vec::with_capacity(n * k);
    let mut scores = Vec::with_capacity(n * k);
    for (_, lists) in parts {
        indices.extend_from_slice(&lists.ids);
        scores.extend_from_slice(&lists.keys);
    }
    Ok(Neighbours { n, k, indices, scores })
}

/// The lists of query rows `r0..r1` against all rows; a distance beyond f32's range is an error
/// (a score of inf would read as an unfilled slot).
fn rows(data: Vectors<'_>, metric: Metric, k: usize, exclude_self: bool, r0: usize, r1: usize) -> Result<crate::topk::TopKLists> {
    let mut heaps = TopKHeaps::new(r1 - r0, k);
    for i in r0..r1 {
        let q = data.row(i);
        for j in 0..data.n() {
            if exclude_self && i == j {
                continue;
            }
            let key = distance(metric, q, data.row(j));
            if !key.is_finite() {
                return Err(Error::invalid("data", format!("rows {i} and {j} are at {metric:?} distance beyond float32's range; scale the data down")));
            }
            if key <= heaps.threshold(i - r0) {
                heaps.offer(i - r0, key, j as i64);
            }
        }
    }
    Ok(heaps.into_lists())
}

/// The distance between two rows under `metric` (one of [`serves`]).
pub fn distance(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { distance_avx2(metric, x, y) };
    }
    distance_portable(metric, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn distance_avx2(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    distance_portable(metric, x, y)
}

#[inline(always)]
fn distance_portable(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    let d = match metric {
        Metric::L1 => lanes(x, y, |a, b| (a - b).abs()),
        Metric::Linf => x.iter().zip(y).fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - f64::from(*b)).abs())),
        Metric::Canberra => lanes(x, y, |a, b| {
            let den = a.abs() + b.abs();
            if den > 0.0 {
                (a - b).abs() / den
            } else {
                0.0
            }
        }),
        Metric::BrayCurtis => {
            let num = lanes(x, y, |a, b| (a - b).abs());
            let den = lanes(x, y, |a, b| (a + b).abs());
            if num == 0.0 {
                0.0
            } else {
                // Rows that (nearly) cancel, Σ|xᵢ + yᵢ| = 0 or tiny: as far apart as the metric
                // goes; f32's largest, since +inf marks an empty slot (the ratio does not change
                // with the data's scale, so there is nothing to scale down).
                (num / den).min(f64::from(f32::MAX))
            }
        }
        Metric::JensenShannon => {
            0.5 * lanes(x, y, |a, b| {
                let m = 0.5 * (a + b);
                let t = |v: f64| if v > 0.0 { v * (v / m).ln() } else { 0.0 };
                t(a) + t(b)
            })
        }
        _ => f64::NAN,
    };
    d as f32
}

/// Σ term(xᵢ, yᵢ) in f64, over `LANES` accumulators.
#[inline(always)]
fn lanes(x: &[f32], y: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (xc, xr) = x.split_at(x.len() - x.len() % LANES);
    let (yc, yr) = y.split_at(xc.len());
    for (a, b) in xc.chunks_exact(LANES).zip(yc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += term(f64::from(a[l]), f64::from(b[l]));
        }
    }
    let tail: f64 = xr.iter().zip(yr).map(|(a, b)| term(f64::from(*a), f64::from(*b))).sum();
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions in f64, written independently of the lane code.
    fn reference(metric: Metric, x: &[f32], y: &[f32]) -> f64 {
        let p = x.iter().zip(y).map(|(a, b)| (f64::from(*a), f64::from(*b)));
        match metric {
            Metric::L1 => p.map(|(a, b)| (a - b).abs()).sum(),
            Metric::Linf => p.map(|(a, b)| (a - b).abs()).fold(0.0, f64::max),
            Metric::Canberra => p.map(|(a, b)| if a == 0.0 && b == 0.0 { 0.0 } else { (a - b).abs() / (a.abs() + b.abs()) }).sum(),
            Metric::BrayCurtis => {
                let (num, den) = p.fold((0.0, 0.0), |(n, d), (a, b)| (n + (a - b).abs(), d + (a + b).abs()));
                if den == 0.0 {
                    if num == 0.0 {
                        0.0
                    } else {
                        f64::INFINITY
                    }
                } else {
                    num / den
                }
            }
            Metric::JensenShannon => {
                let kl = |v: f64, m: f64| if v == 0.0 { 0.0 } else { v * (v / m).ln() };
                0.5 * p.map(|(a, b)| kl(a, (a + b) / 2.0) + kl(b, (a + b) / 2.0)).sum::<f64>()
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn distances_match_the_definitions_with_zeros() {
        // Probability rows with zeros (where faiss's formulas give NaN), d = 13 (a lane tail).
        let x: Vec<f32> = [0.0, 0.2, 0.0, 0.1, 0.3, 0.0, 0.0, 0.1, 0.1, 0.0, 0.2, 0.0, 0.0].to_vec();
        let y: Vec<f32> = [0.5, 0.0, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0].to_vec();
        for m in [Metric::L1, Metric::Linf, Metric::Canberra, Metric::BrayCurtis, Metric::JensenShannon] {
            let (got, want) = (distance(m, &x, &y), reference(m, &x, &y));
            assert!(got.is_finite() && (f64::from(got) - want).abs() <= 1e-6 * want.max(1e-3), "{m:?}: {got} vs {want}");
            assert_eq!(distance(m, &x, &x), 0.0, "{m:?}: a row is at distance 0 from itself");
            let z = vec![0.0f32; 13];
            assert_eq!(distance(m, &z, &z), 0.0, "{m:?}: two zero rows");
        }
        // Known values: Canberra of (1, 0) and (0, 0) is 1 (the 0/0 term counts 0).
        assert_eq!(distance(Metric::Canberra, &[1.0, 0.0], &[0.0, 0.0]), 1.0);
        // JS of disjoint distributions is ln 2.
        assert!((distance(Metric::JensenShannon, &[1.0, 0.0], &[0.0, 1.0]) - std::f32::consts::LN_2).abs() < 1e-7);
        // Extremes where f32 terms would overflow or underflow.
        assert_eq!(distance(Metric::Canberra, &[3e38, 1.0], &[-3e38, 1.0]), 1.0);
        assert_eq!(distance(Metric::JensenShannon, &[3e38], &[3e38]), 0.0);
        assert!(distance(Metric::JensenShannon, &[1e-45], &[0.0]).is_finite());
    }

    #[test]
    fn bray_curtis_takes_any_signs() {
        // Σ|x − y| = 2 + 3 + 2.5, Σ|x + y| = 0 + 1 + 3.5 (scipy's braycurtis gives 7.5 / 4.5).
        let (x, y) = ([1.0f32, -2.0, 3.0], [-1.0f32, 1.0, 0.5]);
        assert!((f64::from(distance(Metric::BrayCurtis, &x, &y)) - 7.5 / 4.5).abs() < 1e-6);
        assert_eq!(reference(Metric::BrayCurtis, &x, &[-1.0, 2.0, -3.0]), f64::INFINITY);
        assert_eq!(distance(Metric::BrayCurtis, &x, &[-1.0, 2.0, -3.0]), f32::MAX);
        // A ratio beyond f32's range (the sums in f64): 2 / 1.4e-45.
        assert_eq!(distance(Metric::BrayCurtis, &[1.0, 1e-45], &[-1.0, 0.0]), f32::MAX);
        // Rows that cancel are as far apart as the metric goes, and still listed (last).
        let rows = [1.0f32, 2.0, -1.0, -2.0, 2.0, 4.1];
        let data = Vectors::new(&rows, 2, "rows").unwrap();
        check_domain(data, Metric::BrayCurtis, "rows").unwrap();
        let e = check_domain(data, Metric::JensenShannon, "rows").unwrap_err().to_string();
        assert!(e.contains("row 1, component 0 is -1"), "{e}");
        let nn = self_knn(data, Metric::BrayCurtis, 2, true, 2, &crate::progress::NoProgress).unwrap();
        assert_eq!(nn.indices_of(0), &[2, 1]);
        assert_eq!(nn.scores_of(0)[1], f32::MAX);
        assert_eq!(nn.indices_of(1), &[2, 0]);
    }
}
