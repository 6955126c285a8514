//! A CPU model of a GPU's reduced-precision search, to test the proof of its candidates
//! ([`super::bound`], *A GPU's keys*) where no GPU is at hand.
//!
//! [`EmulatedGpu`] computes keys as the CUDA path does: the rows (shifted for L2) rounded to bf16
//! or f16 as the upload packs them; their squared norms summed in f32 from the rounded values, in
//! 32 lanes of FMAs over 16-byte chunks and a tree (kernels/norms.cu); the products summed as tensor cores were
//! measured to add them, in steps of 8 exact products plus the running sum, each term truncated
//! to the f32 precision of the step's largest and the step's sum truncated into f32 (the
//! behaviour the bound's unit assumes, at its worst: truncation, never rounding); the key as
//! `key_of` in kernels/topk.cuh forms it. An [`Engine`] over it runs the production path of a
//! GPU search ([`super::shard`]): the strategy's candidates, the proof with the tensor cores'
//! bound, the CPU's f32 search of unproven rows.
//!
//! What it does not model: the order of cuBLAS's or the fused kernel's sums (the bound does not
//! depend on it), and whether real tensor cores stay within the assumed unit: that is measured
//! on the device (`scripts/gpu-check.sh`).

use super::bound::Rounding;
use super::{Engine, EngineOptions};
use crate::data::Vectors;
use crate::error::Result;
use crate::flat::{FlatJob, FlatSearcher};
use crate::metric::FlatMetric;
use crate::topk::TopKLists;

/// Products a tensor-core step adds to the running sum.
const STEP: usize = 8;

/// A stand-in for one GPU whose products are `rounding`'s (bf16 or f16).
pub(crate) struct EmulatedGpu {
    pub rounding: Rounding,
}

/// An engine that runs as a one-GPU engine (`cuda:0`) over an [`EmulatedGpu`].
pub(crate) fn engine(rounding: Rounding, options: EngineOptions) -> Engine {
    Engine::emulated_gpu(Box::new(EmulatedGpu { rounding }), options)
}

impl EmulatedGpu {
    /// Row `x` as the upload stores it: shifted (L2 with a shift), rounded.
    pub(crate) fn stored(&self, x: &[f32], shift: Option<&[f32]>) -> Vec<f32> {
        match shift {
            Some(s) => x.iter().zip(s).map(|(v, m)| self.rounding.round(*v - *m)).collect(),
            None => x.iter().map(|v| self.rounding.round(*v)).collect(),
        }
    }

    /// The key the GPU computes for two stored rows with their norms.
    pub(crate) fn key(metric: FlatMetric, q: &[f32], qn: f32, x: &[f32], xn: f32) -> f32 {
        let p = tensor_dot(q, x);
        if metric == FlatMetric::L2 {
            (qn + xn - 2.0 * p).max(0.0)
        } else {
            -p
        }
    }
}

impl FlatSearcher for EmulatedGpu {
    fn name(&self) -> String {
        "cuda:0 (emulated)".into()
    }

    fn search(&self, job: &FlatJob<'_>) -> Result<TopKLists> {
        let shift = if job.metric == FlatMetric::L2 { job.shift } else { None };
        let store = |v: &Vectors<'_>| -> Vec<(Vec<f32>, f32)> {
            (0..v.n())
                .map(|i| {
                    let r = self.stored(v.row(i), shift);
                    let n = norm(&r);
                    (r, n)
                })
                .collect()
        };
        let (qs, xs) = (store(&job.queries), store(&job.database));
        let k = job.k;
        let (mut keys, mut ids) = (Vec::with_capacity(qs.len() * k), Vec::with_capacity(qs.len() * k));
        for (i, (q, qn)) in qs.iter().enumerate() {
            let own = job.query_id(i);
            let mut row: Vec<(f32, i64)> = xs
                .iter()
                .enumerate()
                .map(|(j, (x, xn))| (EmulatedGpu::key(job.metric, q, *qn, x, *xn), job.db_offset + j as i64))
                .filter(|(_, id)| Some(*id) != own)
                .collect();
            row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            row.resize(k, (f32::INFINITY, -1));
            for (key, id) in row.into_iter().take(k) {
                keys.push(key);
                ids.push(id);
            }
        }
        Ok(TopKLists::from_raw(k, keys, ids))
    }
}

/// `Σ x_j²` in f32 as kernels/norms.cu sums a row of 2-byte values: lane `l` of 32 takes the
/// 16-byte chunks (8 values) `l, l + 32, …` and then the leftover values `c0 + l, c0 + l + 32, …`,
/// each with an FMA, and a butterfly of shuffles adds the lanes (lane 0's sum is this tree's).
pub(crate) fn norm(x: &[f32]) -> f32 {
    const VEC: usize = 8;
    let mut lanes = [0f32; 32];
    let chunks = x.len() / VEC;
    for c in 0..chunks {
        for v in &x[c * VEC..(c + 1) * VEC] {
            lanes[c % 32] = v.mul_add(*v, lanes[c % 32]);
        }
    }
    for (t, v) in x[chunks * VEC..].iter().enumerate() {
        lanes[t % 32] = v.mul_add(*v, lanes[t % 32]);
    }
    let mut w = 16;
    while w > 0 {
        for l in 0..w {
            lanes[l] += lanes[l + w];
        }
        w /= 2;
    }
    lanes[0]
}

/// `Σ q_j·x_j` of rounded values as a tensor core adds it (module doc): per step, the exact
/// products and the running sum, each truncated to a multiple of the f32 ulp of the step's
/// largest term, added exactly, and the sum truncated into f32.
pub(crate) fn tensor_dot(q: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (qs, xs) in q.chunks(STEP).zip(x.chunks(STEP)) {
        let terms: Vec<f64> = qs.iter().zip(xs).map(|(a, b)| *a as f64 * *b as f64).chain(std::iter::once(acc as f64)).collect();
        let big = terms.iter().fold(0f64, |m, t| m.max(t.abs()));
        if big == 0.0 {
            continue;
        }
        // The f32 ulp at the largest term's exponent (the terms are normal f64 values).
        let exponent = ((big.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let ulp = 2f64.powi(exponent - 23);
        // Multiples of `ulp` below 2²⁴·ulp each, at most 9 of them: the sum is exact in f64.
        let sum: f64 = terms.iter().map(|t| (t / ulp).trunc() * ulp).sum();
        acc = toward_zero(sum);
    }
    acc
}

/// `v` rounded to f32 toward zero.
fn toward_zero(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64).abs() > v.abs() {
        let bits = f.to_bits() - 1;
        f32::from_bits(bits)
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::super::bound::{adversarial_rows, Accumulation, KeyBound};
    use super::*;
    use crate::progress::NoProgress;

    /// 64-bit LCG: uniform in [−1, 1).
    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// `r − s` per component, in f64, of the unrounded rows: the exact key up to f64 rounding.
    fn f64_key(metric: FlatMetric, q: &[f32], x: &[f32]) -> f64 {
        match metric {
            FlatMetric::L2 => q.iter().zip(x).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum(),
            _ => -q.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>(),
        }
    }

    /// The largest ratio of a key's error to its bound over every pair of `rows`, with the bound
    /// of `acc` ([`KeyBound`]).
    fn worst_ratio(gpu: &EmulatedGpu, metric: FlatMetric, rows: &[f32], d: usize, shift: Option<&[f32]>, acc: Accumulation) -> f64 {
        let v = Vectors::new(rows, d, "rows").unwrap();
        let bound = KeyBound::new(gpu.rounding, acc, metric, &v, shift);
        let stored: Vec<(Vec<f32>, f32)> = (0..v.n())
            .map(|i| {
                let r = gpu.stored(v.row(i), shift);
                let n = norm(&r);
                (r, n)
            })
            .collect();
        let mut worst = 0f64;
        for i in 0..v.n() {
            let e = bound.of(v.row(i));
            for j in 0..v.n() {
                let key = EmulatedGpu::key(metric, &stored[i].0, stored[i].1, &stored[j].0, stored[j].1) as f64;
                worst = worst.max((key - f64_key(metric, v.row(i), v.row(j))).abs() / e);
            }
        }
        worst
    }

    /// Every key of the model lies within the bound the proof uses for a GPU, on adversarial
    /// rows, for both roundings and both metrics (L2 centred on the column means, as loaded).
    #[test]
    fn tensor_core_keys_stay_within_their_bound() {
        let d = 72;
        let rows = adversarial_rows(d, 6, 5);
        let v = Vectors::new(&rows, d, "rows").unwrap();
        let means: Vec<f32> = (0..d).map(|j| ((0..v.n()).map(|i| v.row(i)[j] as f64).sum::<f64>() / v.n() as f64) as f32).collect();
        for rounding in [Rounding::Bf16, Rounding::F16] {
            let gpu = EmulatedGpu { rounding };
            // f16 overflows past 65504: the large rows' keys are infinite and their bound too.
            let rows: Vec<f32> = if rounding == Rounding::F16 { rows.iter().map(|x| x.clamp(-300.0, 300.0)).collect() } else { rows.clone() };
            for (metric, shift) in [(FlatMetric::L2, Some(&means[..])), (FlatMetric::L2, None), (FlatMetric::InnerProduct, None)] {
                let r = worst_ratio(&gpu, metric, &rows, d, shift, Accumulation::TensorCores);
                eprintln!("{rounding:?} {metric:?} shift {}: largest error {r:.3e} of the bound", shift.is_some());
                assert!(r <= 1.0, "{rounding:?} {metric:?} shift {}: error {r} of the bound", shift.is_some());
                assert!(r > 0.01, "{rounding:?} {metric:?}: the test's rows should come within 100× of the bound ({r})");
            }
        }
    }

    /// The CPU's bound does not cover a GPU's L2 keys: norms of the rounded rows make the key
    /// `‖q̃ − x̃‖²`, whose error grows with the rows' own residuals. Rows whose every component
    /// rounds up (1 + 3·2⁻⁹ to bf16's 1 + 2⁻⁷) against their negation err by about twice the CPU
    /// form's allowance; the GPU form covers them.
    #[test]
    fn the_gpu_form_is_needed_for_rounded_norms() {
        let d = 64;
        let a = 1.0 + 3.0 * 2f32.powi(-9);
        let rows: Vec<f32> = [vec![a; d], vec![-a; d]].concat();
        let gpu = EmulatedGpu { rounding: Rounding::Bf16 };
        let cpu_form = worst_ratio(&gpu, FlatMetric::L2, &rows, d, None, Accumulation::Cpu);
        let gpu_form = worst_ratio(&gpu, FlatMetric::L2, &rows, d, None, Accumulation::TensorCores);
        assert!(cpu_form > 1.0, "the CPU form should fall short here: {cpu_form}");
        assert!(gpu_form <= 1.0, "{gpu_form}");
    }

    #[test]
    fn the_model_truncates() {
        // 1 + 2⁻²⁴ + 2⁻²⁴: each small term is below the step's ulp and truncated away.
        assert_eq!(tensor_dot(&[1.0, 2f32.powi(-24), 2f32.powi(-24)], &[1.0; 3]), 1.0);
        // A sum between two f32 values goes toward zero.
        assert_eq!(tensor_dot(&[1.0, 1.0, 2f32.powi(-23) * 1.5], &[1.0; 3]), 2.0);
        assert_eq!(tensor_dot(&[-1.0, -1.0 - 2f32.powi(-23)], &[1.0; 2]), -2.0);
        assert_eq!(toward_zero(-(1.0 + 2f64.powi(-30))), -1.0);
        assert_eq!(norm(&[3.0, 4.0]), 25.0);
    }

    /// Lists of the engine over the model equal the CPU's exact lists for every row: the proof
    /// settles most rows from the reduced candidates and the CPU searches the rest in f32. With
    /// approximate lists asked for, some rows miss a neighbour on near-copies.
    #[test]
    fn a_gpus_reduced_lists_are_proven_exact() {
        let d = 40;
        // Rows of one scale (the bound takes the database's largest norm and residual): plain
        // ones, whose lists the proof settles, and groups of near-copies, which it cannot.
        let mut next = rng(9);
        let mut rows: Vec<f32> = (0..300 * d).map(|_| next()).collect();
        // Groups larger than the candidates kept (k + 8 at k = 1 and 10).
        for size in [12, 20, 30] {
            let base: Vec<f32> = (0..d).map(|_| next()).collect();
            for _ in 0..size {
                rows.extend(base.iter().map(|b| b + 1e-3 * next()));
            }
        }
        let cpu = Engine::open(&crate::device::Device::Cpu, EngineOptions::default()).unwrap();
        let mut approximate_differs = false;
        for (rounding, precision) in [(Rounding::Bf16, crate::precision::Precision::Bf16), (Rounding::F16, crate::precision::Precision::F16)] {
            let rows: Vec<f32> = if rounding == Rounding::F16 { rows.iter().map(|x| x.clamp(-300.0, 300.0)).collect() } else { rows.clone() };
            for metric in [FlatMetric::L2, FlatMetric::InnerProduct, FlatMetric::Cosine] {
                for k in [1, 10] {
                    let want = cpu.load_shard(&rows, d, 0, metric).unwrap().self_join(k, &NoProgress).unwrap();
                    let exact_gpu = engine(rounding, EngineOptions { precision, ..EngineOptions::default() });
                    let (got, stats) = exact_gpu.load_shard(&rows, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
                    assert_eq!(got, want, "{rounding:?} {metric:?} k = {k}");
                    let n = rows.len() / d;
                    eprintln!("{rounding:?} {metric:?} k = {k}: {} of {n} rows searched again", stats.fallback_rows);
                    assert!(
                        stats.fallback_rows < n / 4,
                        "{rounding:?} {metric:?} k = {k}: most rows should be proven ({} of {n} searched again)",
                        stats.fallback_rows
                    );
                    assert!(stats.fallback_rows > 0, "{rounding:?} {metric:?} k = {k}: the near-copies should need the f32 search");
                    let loose = engine(rounding, EngineOptions { precision, approximate: true, ..EngineOptions::default() });
                    let (approx, stats) = loose.load_shard(&rows, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
                    assert_eq!((stats.fallback_rows, stats.brute_force_rows), (0, 0));
                    approximate_differs |= approx != want;
                }
            }
        }
        assert!(approximate_differs, "unproven lists should miss a neighbour somewhere on these rows");
    }
}
