//! The error of reduced-precision products, for the exact layer's proof: one module for every
//! backend that rounds its operands before multiplying them (the CPU's bf16 and int8 kernels; a
//! GPU's bf16 or f16 products).
//!
//! # The bound
//!
//! The kernels multiply rows as they hold them: `x'` is the row shifted by the column means and
//! rounded to f32 for L2, the row itself for inner product, its unit-length copy for cosine (the
//! rows the f32 bound of [`super::exact`] speaks of). A reduced backend rounds every component
//! once more, `x̃ = round(x')`, multiplies the rounded values exactly (a product of two bf16 or
//! two f16 values fits an f32 significand) and sums in f32. Against the f32 product `q'·x'`:
//!
//! ```text
//! |q'·x' − q̃·x̃| = |(q' − q̃)·x' + q̃·(x' − x̃)| ≤ r_q·‖x'‖ + ‖q̃‖·r_x ≤ r_q·‖x'‖ + (‖q'‖ + r_q)·r_x
//! ```
//!
//! with the residuals `r = ‖x' − x̃‖` (Cauchy–Schwarz, then the triangle inequality), computed in
//! f64 from the very rounding the kernels apply. The f32 sums of the rounded products err by at
//! most `γ_d·‖q̃‖·‖x̃‖ ≤ γ_d·(‖q'‖ + r_q)·(‖x'‖ + r_x)`: the f32 bound's own `γ` term covers
//! `γ_d·‖q'‖·‖x'‖`, and the rest, `γ_d·(r_q·‖x'‖ + ‖q'‖·r_x + r_q·r_x)`, is at most `γ_d` times
//! the rounding term below. An L2 key is `‖q'‖² + ‖x'‖² − 2·q̃·x̃` with the f32 norms of the
//! unrounded rows: twice the product's error. So a key's error is at most the f32 bound `E` plus
//!
//! ```text
//! E_r(q) = c · (r_q · max‖x'‖ + (‖q'‖ + r_q) · max r_x) · (1 + γ_d) + t,   c = 2 (L2), 1 otherwise
//! ```
//!
//! over the database rows `x`, where `t` covers what AVX-512 BF16 flushes to zero (denormal inputs
//! and sums: at most `2^-126` each, `t = 4·d·2^-126·(1 + ‖q'‖)·(1 + max‖x'‖)`). Every term is
//! rounded upwards by the same 1 % slack as `E`.
//!
//! # int8
//!
//! The int8 kernels ([`crate::flat::cpu::int8`]) replace each row by `x̃ = s_x·x̂` (a per-row
//! scale times integers), so the first inequality holds as it stands, with the residuals of that
//! quantisation. The integer sums are exact; the entry `((q̂·x̂) as f32 · s_q) · s_x` rounds
//! three times, a relative error of at most `γ₃` of `|q̃·x̃| ≤ (‖q'‖ + r_q)·(‖x'‖ + r_x)`, which
//! is not the f32 bound's `γ_d` summation error: for int8 `E_r` adds its own conversion term
//! `c · γ₃ · (‖q'‖ + r_q) · (max‖x'‖ + max r_x)` (the f32 bound's `γ_d` term, kept, is then
//! slack). Its residuals are far larger than bf16's (a row's largest component sets the step of
//! all the others), so int8 candidates need longer lists; the planner weighs that.

//! # A GPU's keys
//!
//! A GPU's bf16 and f16 products ([`Accumulation::TensorCores`]) differ from the CPU's in two
//! ways, and their `E_r` with them:
//!
//! - **Norms of the rounded rows.** The GPU rounds a row once when it uploads it and takes the
//!   norm of what it stored, so an L2 key is `‖q̃‖² + ‖x̃‖² − 2·q̃·x̃ = ‖q̃ − x̃‖²` up to the f32
//!   arithmetic. With `D = ‖q' − x'‖`, `D̃ = ‖q̃ − x̃‖` and `ρ = r_q + r_x`, the triangle
//!   inequality gives `|D̃ − D| ≤ ρ`, so `|D̃² − D²| = |D̃ − D|·(D̃ + D) ≤ ρ·(2·D + ρ)
//!   ≤ ρ·(2·(‖q'‖ + ‖x'‖) + ρ)`. The f32 arithmetic on the rounded rows errs by the f32
//!   bound's factor `(2γ + 10u)` times `‖q̃‖² + ‖x̃‖²`, which exceeds `‖q'‖² + ‖x'‖²` (the f32
//!   bound's own term) by at most `ρ·(2·(‖q'‖ + ‖x'‖) + ρ)` again. So for L2
//!   `E_r(q) = ρ·(2·(‖q'‖ + max‖x'‖) + ρ)·(1 + 2γ + 10u) + t` with `ρ = r_q + max r_x`. Inner
//!   product and cosine keys are `−q̃·x̃` as on the CPU, with the CPU's `E_r`.
//! - **The accumulation.** Tensor cores add the exact products into f32 accumulators, but the
//!   additions need not round to nearest: measurements of V100, T4 and A100 tensor cores (Fasi,
//!   Higham, Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021)
//!   found the terms of one step aligned to the largest exponent and truncated, and the sum
//!   truncated, each term then erring by up to one f32 ulp of the step's largest term
//!   (`2⁻²³` relative, against `2⁻²⁴` for rounding to nearest). The proof therefore takes
//!   `u = 2⁻²²` ([`TENSOR_UNIT`]) for every `γ` of a GPU's reduced products: twice the
//!   truncating unit, for the alignment inside a step. cuBLAS's split reductions add f32 values
//!   and are covered by the same `γ`. This is an assumption about the hardware, not a proven
//!   property of it: `scripts/gpu-check.sh` measures the largest key error against this bound
//!   on the device.

use crate::data::Vectors;
use crate::metric::FlatMetric;

/// The unit roundoff the proof takes for a GPU's tensor-core sums (module doc, *A GPU's keys*):
/// `2⁻²²`, four times f32's round-to-nearest unit.
pub const TENSOR_UNIT: f64 = 1.0 / (1u64 << 22) as f64;

/// How a reduced backend sums its products and forms its keys (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Accumulation {
    /// Our CPU kernels: f32 sums rounded to nearest (or exact integer sums, int8); L2 keys from
    /// the f32 norms of the unrounded rows.
    Cpu,
    /// A GPU's tensor cores: f32 sums whose additions may truncate ([`TENSOR_UNIT`]); L2 keys
    /// from the norms of the rounded rows.
    TensorCores,
}

impl Accumulation {
    /// The unit roundoff of the sums: the `u` of the bound's `γ`.
    pub fn unit(self) -> f64 {
        match self {
            Accumulation::Cpu => super::exact::U32,
            Accumulation::TensorCores => TENSOR_UNIT,
        }
    }
}

/// How a backend rounds its operands before the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rounding {
    /// To bf16 (8 significant bits), ties to even.
    Bf16,
    /// To f16 (11 significant bits), ties to even; beyond f16's range to infinity.
    F16,
    /// To integers of a per-row scale (`crate::flat::cpu::int8`): not a rounding of single
    /// values, so [`Rounding::round`] leaves values as they are; use
    /// [`Rounding::norm_and_residual`] on whole rows.
    Int8,
}

impl Rounding {
    /// `x` rounded (bf16, f16; int8 rounds whole rows, see [`Rounding::Int8`]).
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Rounding::Bf16 => half::bf16::from_f32(x).to_f32(),
            Rounding::F16 => half::f16::from_f32(x).to_f32(),
            Rounding::Int8 => x,
        }
    }

    /// `(‖x‖, ‖x − round(x)‖)` in f64. For bf16 on a CPU with AVX-512 BF16 the rounding is
    /// that instruction set's, the one the CPU kernels' packing applies (a denormal f32 rounds
    /// to 0 there: the bound's flushed-values term covers the difference either way).
    pub fn norm_and_residual(self, x: &[f32]) -> (f64, f64) {
        if self == Rounding::Int8 {
            return crate::flat::cpu::int8::norm_and_residual(x, crate::flat::cpu::int8::format());
        }
        #[cfg(target_arch = "x86_64")]
        if self == Rounding::Bf16 && crate::flat::cpu::bf16::native() {
            // SAFETY: AVX-512 F and BF16 were detected just now.
            return unsafe { avx512::bf16_norm_and_residual(x) };
        }
        let (mut n, mut r) = (0f64, 0f64);
        for v in x {
            let d = *v as f64 - self.round(*v) as f64;
            n += (*v as f64) * (*v as f64);
            r += d * d;
        }
        (n.sqrt(), r.sqrt())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::Rounding::norm_and_residual`] for bf16, 16 values at a time: each rounded by
    /// `vcvtneps2bf16` and widened back (exact), the difference (exact in f32) and the value
    /// squared and summed in f64.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn bf16_norm_and_residual(x: &[f32]) -> (f64, f64) {
        let (mut n, mut r) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        let full = x.len() / 16 * 16;
        let mut i = 0;
        while i < full {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            let b16: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            let b = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(b16)));
            let dv = _mm512_sub_ps(v, b);
            for half in [_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))] {
                let w = _mm512_cvtps_pd(half);
                n = _mm512_fmadd_pd(w, w, n);
            }
            for half in [_mm512_castps512_ps256(dv), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(dv)))] {
                let w = _mm512_cvtps_pd(half);
                r = _mm512_fmadd_pd(w, w, r);
            }
            i += 16;
        }
        let (mut ns, mut rs) = (_mm512_reduce_add_pd(n), _mm512_reduce_add_pd(r));
        for v in &x[full..] {
            let b = _mm512_cvtneps_pbh(_mm512_set1_ps(*v));
            let b: [u16; 16] = std::mem::transmute(b);
            let d = *v as f64 - f32::from_bits((b[0] as u32) << 16) as f64;
            ns += (*v as f64) * (*v as f64);
            rs += d * d;
        }
        (ns.sqrt(), rs.sqrt())
    }
}

/// The row as the kernels hold it before rounding (see the module doc) into `out`: shifted
/// (L2 with a shift), as it is (inner product), or its unit-length copy (cosine, from its f64
/// inverse norm `inv`).
pub(crate) fn kernel_row(metric: FlatMetric, x: &[f32], shift: Option<&[f32]>, inv: f64, out: &mut Vec<f32>) {
    out.clear();
    match (metric, shift) {
        (FlatMetric::L2, Some(s)) => out.extend(x.iter().zip(s).map(|(v, m)| *v - *m)),
        (FlatMetric::Cosine, _) => out.extend(x.iter().map(|v| (*v as f64 * inv) as f32)),
        _ => out.extend_from_slice(x),
    }
}

/// The largest norm and the largest residual over a set of rows (the database side of `E_r`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SideMax {
    /// max ‖x'‖.
    pub norm: f64,
    /// max ‖x' − round(x')‖.
    pub resid: f64,
}

impl SideMax {
    /// Over `rows` (original values) as the kernels hold them under `metric` (see
    /// [`kernel_row`]); `inv`: the cosine's inverse norms of the rows.
    pub(crate) fn of(rounding: Rounding, metric: FlatMetric, rows: &Vectors<'_>, shift: Option<&[f32]>, inv: Option<&[f64]>) -> SideMax {
        let mut buf = Vec::with_capacity(rows.d());
        let mut m = SideMax::default();
        for i in 0..rows.n() {
            kernel_row(metric, rows.row(i), shift, inv.map_or(1.0, |v| v[i]), &mut buf);
            let (n, r) = rounding.norm_and_residual(&buf);
            m.norm = m.norm.max(n);
            m.resid = m.resid.max(r);
        }
        m
    }
}

/// `E_r` of the module doc: what `rounding` the operands adds to the f32 bound of a query whose
/// kernel row has norm `norm` and residual `resid`, against rows of `db`, in dimension `d`, for
/// a backend that sums as `acc` says (the f32 bound must then use `acc.unit()` too).
pub fn extra(rounding: Rounding, acc: Accumulation, metric: FlatMetric, norm: f64, resid: f64, db: &SideMax, d: usize) -> f64 {
    let u = acc.unit();
    let gamma = super::exact::gamma(d, u);
    if !gamma.is_finite() {
        return f64::INFINITY;
    }
    let flushed = 4.0 * d as f64 * f32::MIN_POSITIVE as f64 * (1.0 + norm) * (1.0 + db.norm);
    if acc == Accumulation::TensorCores && metric == FlatMetric::L2 {
        let rho = resid + db.resid;
        return (rho * (2.0 * (norm + db.norm) + rho) * (1.0 + 2.0 * gamma + 10.0 * u) + flushed) * 1.01;
    }
    let c = if metric == FlatMetric::L2 { 2.0 } else { 1.0 };
    let converted = if rounding == Rounding::Int8 { c * super::exact::gamma(3, u) * (norm + resid) * (db.norm + db.resid) } else { 0.0 };
    (c * (resid * db.norm + (norm + resid) * db.resid) * (1.0 + gamma) + converted + flushed) * 1.01
}

/// The bound the proof uses on a reduced backend's keys, for tests and diagnostics: how far a
/// key the backend computes for a query row and any row of the database may lie from the exact
/// key (`‖q − x‖²`, `−q·x`, or under cosine `−q·x` of the unit-length rows): the f32 bound of
/// [`super::exact`] at the backend's unit plus `E_r`. The GPU tests hold a device's keys to it.
#[derive(Debug, Clone)]
pub struct KeyBound {
    rounding: Rounding,
    acc: Accumulation,
    metric: FlatMetric,
    side: SideMax,
    db_bound: f64,
    shift: Option<Vec<f32>>,
}

impl KeyBound {
    /// The bound against the rows of `db`, for a backend that rounds as `rounding` and sums as
    /// `acc`, after centring L2 rows on `shift` (as the engine loads them; `None`: not centred).
    pub fn new(rounding: Rounding, acc: Accumulation, metric: FlatMetric, db: &Vectors<'_>, shift: Option<&[f32]>) -> KeyBound {
        let shift = shift.filter(|_| metric == FlatMetric::L2);
        let inv: Option<Vec<f64>> = (metric == FlatMetric::Cosine).then(|| (0..db.n()).map(|i| super::exact::inverse_norm(db.row(i))).collect());
        KeyBound {
            rounding,
            acc,
            metric,
            side: SideMax::of(rounding, metric, db, shift, inv.as_deref()),
            db_bound: super::exact::db_bound(metric, db, shift),
            shift: shift.map(<[f32]>::to_vec),
        }
    }

    /// The bound for query row `q` (original values).
    pub fn of(&self, q: &[f32]) -> f64 {
        let (d, unit, shift) = (q.len(), self.acc.unit(), self.shift.as_deref());
        let inv = if self.metric == FlatMetric::Cosine { super::exact::inverse_norm(q) } else { 1.0 };
        let mut row = Vec::with_capacity(d);
        kernel_row(self.metric, q, shift, inv, &mut row);
        let (norm, resid) = self.rounding.norm_and_residual(&row);
        let f32_part =
            super::exact::pair_bound(self.metric, super::exact::bound_norm(self.metric, q, shift), self.db_bound, super::exact::gamma(d, unit), unit);
        f32_part + extra(self.rounding, self.acc, self.metric, norm, resid, &self.side, d)
    }
}

/// Candidates beyond k a reduced search keeps where no sample chose them (a forced bf16 or int8
/// search on data whose proofs the sample predicted to fail).
pub fn default_margin(rounding: Rounding, k: usize) -> usize {
    match rounding {
        Rounding::Int8 => k.max(32),
        _ => (k / 2).max(8),
    }
}

/// The most candidates beyond k a reduced search may keep: beyond, the larger lists cost more
/// than the reduced products save.
pub fn max_margin(rounding: Rounding, k: usize) -> usize {
    match rounding {
        Rounding::Int8 => k.max(64),
        _ => k.max(32),
    }
}

/// The fewest candidates beyond k a bf16 search keeps.
pub const MIN_MARGIN: usize = 4;

/// Rows sampled to predict whether bf16 candidates' proofs hold, and with how many candidates.
pub const PREDICT_ROWS: usize = 128;

/// The share of sampled rows (percent) whose proofs the chosen margin must be predicted to pass.
pub const PREDICT_PERCENT: usize = 95;

/// Whether reduced candidates may pay for `n` rows of dimension `d` at `k` neighbours: the
/// products are a large share of the work (the kernels' presence is the planner's to check).
pub fn reduced_pays(n: usize, d: usize, k: usize) -> bool {
    n >= 2000 && d >= 64 && k <= 256
}

/// Adversarial rows for the bounds' tests (row-major, `7 · per_kind` rows of `d`): plain, large,
/// far from the origin, one dominant component, smooth with tiny noise, cancelling, and
/// near-copies of one row.
#[cfg(test)]
pub(crate) fn adversarial_rows(d: usize, per_kind: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let base: Vec<f32> = (0..d).map(|_| next()).collect();
    let mut rows = Vec::with_capacity(7 * per_kind * d);
    for kind in 0..7 {
        for _ in 0..per_kind {
            rows.extend((0..d).map(|j| match kind {
                0 => next(),
                1 => 1e4 * next(),
                2 => 1000.0 + 0.01 * next(),
                3 if j == 0 => 1e3,
                3 => 1e-3 * next(),
                4 => (j as f32 * 0.1).sin() * (1.0 + 1e-3 * next()),
                5 if j % 2 == 0 => 1.0 + next() * 1e-2,
                5 => -1.0,
                _ => base[j] + 1e-4 * next(),
            }));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds on adversarial rows: large norms, offsets, one dominant component, rows
    /// whose products cancel, against the f64 product of the unrounded rows.
    #[test]
    fn the_products_of_rounded_rows_stay_within_the_bound() {
        let d = 96;
        let flat = adversarial_rows(d, 8, 7);
        let rows: Vec<&[f32]> = flat.chunks(d).collect();
        for rounding in [Rounding::Bf16, Rounding::F16, Rounding::Int8] {
            let v = Vectors::new(&flat, d, "rows").unwrap();
            let db = SideMax::of(rounding, FlatMetric::InnerProduct, &v, None, None);
            for q in rows.iter().copied() {
                let (n, r) = rounding.norm_and_residual(q);
                let e = extra(rounding, Accumulation::Cpu, FlatMetric::InnerProduct, n, r, &db, d);
                let qr = rounded(rounding, q);
                for x in rows.iter().copied() {
                    let exact: f64 = q.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let rounded: f64 = qr.iter().zip(rounded(rounding, x)).map(|(a, b)| a * b).sum();
                    assert!((exact - rounded).abs() <= e, "{rounding:?}: {exact} vs {rounded}, bound {e}");
                }
            }
        }
    }

    /// The values a backend multiplies for row `x`, in f64 (exact).
    fn rounded(rounding: Rounding, x: &[f32]) -> Vec<f64> {
        use crate::flat::cpu::int8;
        match rounding {
            Rounding::Int8 => {
                let f = int8::format();
                let (s, inv) = int8::scale_of(x.iter().fold(0f32, |m, v| m.max(v.abs())), f);
                x.iter().map(|v| s as f64 * int8::quantise(*v, inv, f) as f64).collect()
            }
            _ => x.iter().map(|v| rounding.round(*v) as f64).collect(),
        }
    }

    #[test]
    fn the_fast_residual_equals_the_scalar_one() {
        let x: Vec<f32> = (0..77).map(|i| ((i as f32) * 0.37).sin() * 10f32.powi(i % 5 - 2)).collect();
        let (n, r) = Rounding::Bf16.norm_and_residual(&x);
        let n0: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let r0: f64 = x.iter().map(|v| (*v as f64 - Rounding::Bf16.round(*v) as f64).powi(2)).sum::<f64>().sqrt();
        assert!((n - n0).abs() <= 1e-12 * n0 && (r - r0).abs() <= 1e-12 * r0, "{n} {n0} {r} {r0}");
    }

    #[test]
    fn kernel_rows_are_shifted_or_unit_length() {
        let mut out = Vec::new();
        kernel_row(FlatMetric::L2, &[3.0, 4.0], Some(&[1.0, 1.0]), 1.0, &mut out);
        assert_eq!(out, [2.0, 3.0]);
        kernel_row(FlatMetric::Cosine, &[3.0, 4.0], None, 0.2, &mut out);
        assert_eq!(out, [0.6, 0.8]);
        kernel_row(FlatMetric::InnerProduct, &[3.0, 4.0], Some(&[1.0, 1.0]), 1.0, &mut out);
        assert_eq!(out, [3.0, 4.0]);
    }
}
