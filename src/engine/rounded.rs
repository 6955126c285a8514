//! Exact L2 and inner-product keys: correctly rounded to f32, and compared with thresholds.
//!
//! A list ranks its rows by the exact key rounded to f32, ties by index ([`super::exact`]). The
//! f64 sums that compute the keys are not exact: every product `q_j·x_j` of two f32 values is
//! (48 significant bits), but each addition rounds, so the sum lies within `e` (below) of the
//! exact value `t`. Where an f32 rounding boundary (the midpoint between two adjacent f32
//! values) lies within `e` of the sum, its rounding may differ from `t`'s by one ulp (rare: a
//! check against exact rational arithmetic found 2 of 1.2 million scores of a random
//! inner-product run), and two rows whose exact keys round alike could be ordered
//! by that ulp instead of by index, or one row's list end on a different row than the exact
//! order puts there. Likewise a threshold join's verdict on a pair whose sum lies within `e` of
//! the threshold. So, in three steps:
//!
//! - **the f64 sum** `s` and its bound `e`: when both midpoints around `fl32(s)` (or the
//!   threshold) lie farther than `e` from `s`, `fl32(s)` is `t`'s rounding (or `s`'s side of
//!   the threshold is `t`'s);
//! - **an exact f64 sum** (otherwise): the terms summed again, one by one, checking that no
//!   operation rounds (two-sum and FMA remainders of zero). Rows on a coarse grid (values far
//!   from the origin, small integers, quantised embeddings) often sum exactly onto a midpoint,
//!   where the bound cannot decide; this settles most of them;
//! - **integer arithmetic** (otherwise): every f32 is an integer multiple of 2⁻¹⁴⁹, so every
//!   product of two is an integer multiple of 2⁻²⁹⁸ below 2²⁵⁶ in magnitude, and `t = N·2⁻²⁹⁸`
//!   for an integer `N` that a 768-bit accumulator holds for any dimension; `N` is then rounded
//!   to f32 once (to nearest, ties to even, subnormals included), or compared with the
//!   threshold. L2 sums `q_j² − 2·q_j·x_j + x_j²`: products of f32 values again.
//!
//! The bounds, with `u = 2⁻⁵³` and `n` the dimension: inner product `|s − t| ≤ γ_n·Σ|q_j·x_j|`
//! (`γ_n = n·u/(1 − n·u)`: recursive or lane-split sums of exact products, FMA or not); L2
//! `|s − t| ≤ (γ_n + 3u)/(1 − γ_n − 3u) · s` (each difference `q_j − x_j` rounded once, its
//! square once without FMA, then the sums; every term non-negative). The code uses
//! `(n + 4)·2⁻⁵²`, about twice either factor, which also covers the rounding of `Σ|q_j·x_j|`
//! itself and of `s ± e`.
//!
//! Cosine keys divide by square roots: they stay the f64 formula's rounding (documented where
//! the metric is).

use std::cmp::Ordering;

/// Bits of the accumulator: 768 (12 limbs). Sums of products below 2²⁵⁸ each (L2's three terms
/// per component) need at most 556 + log₂ n bits; thresholds up to 2³⁴² fit beside them.
const LIMBS: usize = 12;
/// `t = N · 2^-SCALE`: the exponent of the least product of two f32 values (2⁻¹⁴⁹ squared).
const SCALE: i32 = 298;

/// The f32 rounding of the exact `Σ (q_j − x_j)²`, given the f64 sum `s` of the same terms.
/// `q64` holds f32 values (widened), as the re-scoring loads its queries.
#[inline]
pub(crate) fn l2(q64: &[f64], x: &[f32], s: f64) -> f32 {
    let e = slack(q64.len()) * s.abs();
    settled(s, e).unwrap_or_else(|| l2_slow(q64, x))
}

/// [`l2`] where the f64 sum does not settle the key (rare: kept out of the callers' loops).
#[cold]
#[inline(never)]
fn l2_slow(q64: &[f64], x: &[f32]) -> f32 {
    l2_in_f64(q64, x).map(|t| t as f32).unwrap_or_else(|| l2_exact(q64, x).to_f32())
}

/// The f32 rounding of the exact `Σ q_j·x_j`, given the f64 sum `s` and `abs = Σ |q_j·x_j|`
/// (in f64).
#[inline]
pub(crate) fn ip(q64: &[f64], x: &[f32], s: f64, abs: f64) -> f32 {
    let e = slack(q64.len()) * abs;
    settled(s, e).unwrap_or_else(|| ip_slow(q64, x))
}

/// [`ip`] where the f64 sum does not settle the key.
#[cold]
#[inline(never)]
fn ip_slow(q64: &[f64], x: &[f32]) -> f32 {
    ip_in_f64(q64, x).map(|t| t as f32).unwrap_or_else(|| ip_exact(q64, x).to_f32())
}

/// `fl32(s)` for the f64 sum `s` of `n` products `q_j·x_j` where it is the exact sum's rounding
/// by the bound with `reach ≥ Σ|q_j·x_j|` (a cheaper bound than the sum of magnitudes, e.g. by
/// Cauchy–Schwarz); `None` where that does not settle it ([`ip`] then decides).
#[inline]
pub(crate) fn ip_settled(n: usize, s: f64, reach: f64) -> Option<f32> {
    settled(s, slack(n) * reach)
}

/// How the exact `Σ (q_j − x_j)²` compares with `value`, given the f64 sum `s`.
pub(crate) fn l2_cmp(q64: &[f64], x: &[f32], s: f64, value: f64) -> Ordering {
    compare(s, slack(q64.len()) * s.abs(), value, || l2_in_f64(q64, x), || l2_exact(q64, x))
}

/// How the exact `Σ q_j·x_j` compares with `value`, given the f64 sum `s` and `abs` as in [`ip`].
pub(crate) fn ip_cmp(q64: &[f64], x: &[f32], s: f64, abs: f64, value: f64) -> Ordering {
    compare(s, slack(q64.len()) * abs, value, || ip_in_f64(q64, x), || ip_exact(q64, x))
}

/// How the exact `Σ q_j·x_j` of `n` products compares with `value`, decided from its f64 sum `s`
/// alone by the bound with `reach ≥ Σ|q_j·x_j|` (as in [`ip_settled`]); `None` where that does
/// not decide it ([`ip_cmp`] then does).
#[inline]
pub(crate) fn ip_clear(n: usize, s: f64, reach: f64, value: f64) -> Option<Ordering> {
    clear_of(s, slack(n) * reach, value)
}

/// `s`'s side of `value` where every value within `e` of `s` lies on that side.
#[inline]
fn clear_of(s: f64, e: f64, value: f64) -> Option<Ordering> {
    if s - e > value {
        Some(Ordering::Greater)
    } else if s + e < value {
        Some(Ordering::Less)
    } else {
        None
    }
}

/// `t` against `value` (finite) by the three steps of the module doc.
fn compare(s: f64, e: f64, value: f64, in_f64: impl FnOnce() -> Option<f64>, exact: impl FnOnce() -> Exact) -> Ordering {
    if let Some(side) = clear_of(s, e, value) {
        return side;
    }
    match in_f64() {
        Some(t) => t.partial_cmp(&value).unwrap_or(Ordering::Equal),
        None => exact().cmp_f64(value),
    }
}

fn l2_in_f64(q64: &[f64], x: &[f32]) -> Option<f64> {
    exact_in_f64(q64.iter().zip(x).map(|(a, b)| exact_sum(*a, -(*b as f64))), true)
}

fn ip_in_f64(q64: &[f64], x: &[f32]) -> Option<f64> {
    exact_in_f64(q64.iter().zip(x).map(|(a, b)| Some(*a * *b as f64)), false)
}

fn l2_exact(q64: &[f64], x: &[f32]) -> Exact {
    let mut n = Exact::default();
    for (a, b) in q64.iter().zip(x) {
        let a = *a as f32;
        n.add_product(a, a, 1);
        n.add_product(a, *b, -2);
        n.add_product(*b, *b, 1);
    }
    n
}

fn ip_exact(q64: &[f64], x: &[f32]) -> Exact {
    let mut n = Exact::default();
    for (a, b) in q64.iter().zip(x) {
        n.add_product(*a as f32, *b, 1);
    }
    n
}

/// `Σ t_j` (or `Σ t_j²` where `square`) where every operation of the f64 sum is exact (each
/// term was computed exactly, each square and addition leaves no remainder): then the sum is the
/// exact value. `terms` yields the differences `q_j − x_j` (L2; `None` where the f64
/// subtraction rounded) or the products `q_j·x_j` (inner product; two f32 values' product is
/// always exact in f64, and at least 2⁻²⁹⁸ when not zero: no remainder is lost to underflow).
fn exact_in_f64(terms: impl Iterator<Item = Option<f64>>, square: bool) -> Option<f64> {
    let mut s = 0f64;
    for t in terms {
        let t = t?;
        let t = if square {
            let sq = t * t;
            // The square is exact iff its FMA remainder is zero.
            if t.mul_add(t, -sq) != 0.0 {
                return None;
            }
            sq
        } else {
            t
        };
        s = exact_sum(s, t)?;
    }
    Some(s)
}

/// `a + b` where the f64 addition is exact (its two-sum remainder is zero), else `None`.
#[inline]
fn exact_sum(a: f64, b: f64) -> Option<f64> {
    let sum = a + b;
    let bv = sum - a;
    ((a - (sum - bv)) + (b - bv) == 0.0).then_some(sum)
}

/// `(n + 4)·2⁻⁵²`: the bound's factor (module doc).
#[inline]
fn slack(n: usize) -> f64 {
    (n as f64 + 4.0) * f64::EPSILON
}

/// `fl32(s)` where no f32 rounding boundary lies within `e` of `s`: then every value within `e`
/// of `s` (the exact one among them) rounds to it. `None` where one does, or where `s` is not
/// finite or at the end of f32's range.
#[inline]
fn settled(s: f64, e: f64) -> Option<f32> {
    let f = s as f32;
    if !f.is_finite() || f.abs() == f32::MAX || !e.is_finite() {
        return None;
    }
    // Two adjacent f32 values sum to at most 25 significant bits: their midpoint is exact in f64.
    let below = (f as f64 + next_down(f) as f64) / 2.0;
    let above = (f as f64 + super::exact::next_up(f) as f64) / 2.0;
    (s - e > below && s + e < above).then_some(f)
}

/// The largest f32 below `x` (finite `x`).
#[inline]
fn next_down(x: f32) -> f32 {
    -super::exact::next_up(-x)
}

/// An integer `N` in two's complement over [`LIMBS`] 64-bit limbs, least significant first; the
/// value it stands for is `N·2⁻²⁹⁸`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Exact {
    limbs: [u64; LIMBS],
}

/// `v = m·2^e` with `|m| < 2²⁴` and `e ≥ −149` (every finite f32): `(m, e + 149)`.
#[inline]
fn split(v: f32) -> (i64, u32) {
    let b = v.to_bits();
    let (exp, frac) = ((b >> 23) & 0xff, (b & 0x7f_ffff) as i64);
    let (m, shift) = if exp == 0 { (frac, 0) } else { (frac | 0x80_0000, exp - 1) };
    (if b >> 31 == 1 { -m } else { m }, shift)
}

impl Exact {
    /// `N += times · a · b` (`times` is ±1 or ±2; `a`, `b` finite).
    fn add_product(&mut self, a: f32, b: f32, times: i64) {
        let ((ma, sa), (mb, sb)) = (split(a), split(b));
        let m = ma as i128 * mb as i128 * times as i128;
        if m == 0 {
            return;
        }
        // a·b = m · 2^(sa + sb − 298): the product's bits start at bit sa + sb of N.
        let shift = (sa + sb) as usize;
        let (limb, bit) = (shift / 64, shift % 64);
        // |m| < 2⁴⁹ and bit < 64: the shifted magnitude fits 113 bits.
        let mag = m.unsigned_abs() << bit;
        let parts = [mag as u64, (mag >> 64) as u64];
        self.add_at(limb, parts, m < 0);
    }

    /// `N ± parts·2^(64·limb)` (minus where `subtract`), carries or borrows rippling up.
    fn add_at(&mut self, limb: usize, parts: [u64; 2], subtract: bool) {
        let mut carry = false;
        for (i, l) in self.limbs.iter_mut().enumerate().skip(limb) {
            let p = parts.get(i - limb).copied().unwrap_or(0);
            let (v, c1, c2) = if subtract {
                let (v, c1) = l.overflowing_sub(p);
                let (v, c2) = v.overflowing_sub(carry as u64);
                (v, c1, c2)
            } else {
                let (v, c1) = l.overflowing_add(p);
                let (v, c2) = v.overflowing_add(carry as u64);
                (v, c1, c2)
            };
            *l = v;
            carry = c1 || c2;
            if i > limb && !carry {
                break;
            }
        }
    }

    /// Whether `N·2⁻²⁹⁸` is below, equal to or above the finite `value`. `value = m·2^e` with
    /// an integer `|m| < 2⁵³`: where `e ≥ −298` it is an integer multiple of 2⁻²⁹⁸ and is
    /// subtracted from `N`; below, it lies strictly between two multiples, `⌊value⌋` (in those
    /// units) and the next, so the exact value is above it iff `N > ⌊value⌋`.
    fn cmp_f64(&self, value: f64) -> Ordering {
        let b = value.to_bits();
        let (exp, frac) = (((b >> 52) & 0x7ff) as i32, (b & ((1 << 52) - 1)) as i64);
        let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | 1 << 52, exp - 1075) };
        let m = if b >> 63 == 1 { -m } else { m };
        let shift = e + SCALE;
        let mut diff = self.clone();
        let mut between = false;
        // (Zero: N's sign decides.)
        if m != 0 && shift >= 0 {
            let (limb, bit) = (shift as usize / 64, shift as usize % 64);
            if limb + 2 > LIMBS {
                // |value| ≥ 2³⁴²: beyond any sum the accumulator holds.
                return if value > 0.0 { Ordering::Less } else { Ordering::Greater };
            }
            let mag = (m.unsigned_abs() as u128) << bit;
            diff.add_at(limb, [mag as u64, (mag >> 64) as u64], m > 0);
        } else if m != 0 {
            let drop = (-shift) as u32;
            // Arithmetic shifts round toward −∞: the floor, also for negative values.
            let floor = if drop >= 63 { m >> 63 } else { m >> drop };
            between = drop >= 63 || m & ((1i64 << drop) - 1) != 0;
            diff.add_at(0, [floor.unsigned_abs(), 0], floor > 0);
        }
        let sign = if diff.limbs[LIMBS - 1] >> 63 == 1 {
            Ordering::Less
        } else if diff.limbs.iter().any(|l| *l != 0) {
            Ordering::Greater
        } else {
            Ordering::Equal
        };
        match (between, sign) {
            (true, Ordering::Greater) => Ordering::Greater,
            (true, _) => Ordering::Less,
            (false, sign) => sign,
        }
    }

    /// `N·2⁻²⁹⁸` rounded to the nearest f32, ties to even (±inf beyond f32's range, +0 for 0).
    fn to_f32(&self) -> f32 {
        let negative = self.limbs[LIMBS - 1] >> 63 == 1;
        let mut mag = self.limbs;
        if negative {
            // Two's complement: invert and add one.
            let mut carry = true;
            for l in mag.iter_mut() {
                let (v, c) = (!*l).overflowing_add(carry as u64);
                *l = v;
                carry = c;
            }
        }
        let Some(top) = (0..LIMBS * 64).rev().find(|&i| bit(&mag, i)) else {
            return 0.0;
        };
        // The f32's last bit: 23 below the leading one, but never below 2⁻¹⁴⁹ (bit 149 of N):
        // subnormal results keep fewer bits.
        let low = top.saturating_sub(23).max(149);
        let mut sig: u64 = if top >= low { (low..=top).rev().fold(0, |acc, i| (acc << 1) | bit(&mag, i) as u64) } else { 0 };
        let half = low >= 1 && bit(&mag, low - 1);
        let sticky = low >= 2 && (0..low - 1).any(|i| bit(&mag, i));
        if half && (sticky || sig & 1 == 1) {
            sig += 1;
        }
        // sig ≤ 2²⁴ times a power of two of f64's range: exact; beyond f32's range it becomes ±inf.
        let v = (sig as f64 * 2f64.powi(low as i32 - SCALE)) as f32;
        if negative {
            -v
        } else {
            v
        }
    }
}

#[inline]
fn bit(limbs: &[u64; LIMBS], i: usize) -> bool {
    limbs[i / 64] >> (i % 64) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::super::exact;
    use super::*;
    use crate::metric::FlatMetric;

    /// Exact sums of f32 products where f64 holds them exactly (small integers times powers of
    /// two), and their roundings.
    #[test]
    fn the_accumulator_sums_products_exactly() {
        let cases: [(&[f32], &[f32]); 5] = [
            (&[1.0, 2.0, 3.0], &[4.0, -5.0, 6.0]),
            (&[0.5, 0.25], &[-0.5, 8.0]),
            (&[1e-30, 3.0], &[1e-10, -3.0]),
            (&[f32::from_bits(1), 1.0], &[f32::from_bits(1), 0.0]),
            (&[1e19, -1e19], &[1e19, 1e19]),
        ];
        for (a, b) in cases {
            let mut n = Exact::default();
            let mut want = 0f64;
            for (x, y) in a.iter().zip(b) {
                n.add_product(*x, *y, 1);
                want += *x as f64 * *y as f64;
            }
            assert_eq!(n.to_f32(), want as f32, "{a:?}·{b:?}");
        }
        // 2⁻¹⁴⁹ squared is 2⁻²⁹⁸: far below f32's least subnormal, rounds to zero.
        let mut n = Exact::default();
        n.add_product(f32::from_bits(1), f32::from_bits(1), 1);
        assert_eq!(n.limbs[0], 1);
        assert_eq!(n.to_f32(), 0.0);
        // 2¹⁰⁰ squared overflows f32: +inf, and −inf negated.
        let big = 2f32.powi(100);
        let mut n = Exact::default();
        n.add_product(big, big, 1);
        assert_eq!(n.to_f32(), f32::INFINITY);
        n.add_product(big, big, -2);
        assert_eq!(n.to_f32(), f32::NEG_INFINITY);
        n.add_product(big, big, 1);
        assert_eq!(n, Exact::default());
    }

    /// Comparisons with thresholds: values that are multiples of 2⁻²⁹⁸ (equality possible),
    /// values between two multiples (never equal), zero, and values beyond any sum.
    #[test]
    fn exact_sums_compare_with_any_threshold() {
        use Ordering::{Equal, Greater, Less};
        let tiny = f32::from_bits(1); // 2⁻¹⁴⁹
        let mut n = Exact::default();
        assert_eq!(n.cmp_f64(0.0), Equal);
        assert_eq!(n.cmp_f64(f64::from_bits(1)), Less); // 2⁻¹⁰⁷⁴
        assert_eq!(n.cmp_f64(-f64::from_bits(1)), Greater);
        n.add_product(tiny, tiny, 1); // N = 1: 2⁻²⁹⁸
        let unit = 2f64.powi(-298);
        assert_eq!(n.cmp_f64(unit), Equal);
        assert_eq!(n.cmp_f64(unit * (1.0 + f64::EPSILON)), Less);
        assert_eq!(n.cmp_f64(unit * (1.0 - f64::EPSILON / 2.0)), Greater);
        assert_eq!(n.cmp_f64(unit / 2.0), Greater);
        assert_eq!(n.cmp_f64(-unit / 2.0), Greater);
        assert_eq!(n.cmp_f64(2.0 * unit), Less);
        n.add_product(tiny, tiny, -3); // N = −2
        assert_eq!(n.cmp_f64(-2.0 * unit), Equal);
        assert_eq!(n.cmp_f64(-1.5 * unit), Less);
        assert_eq!(n.cmp_f64(-2.5 * unit), Greater);
        assert_eq!(n.cmp_f64(0.0), Less);
        let mut n = Exact::default();
        n.add_product(1.0, 1.0, 1);
        n.add_product(2f32.powi(-30), 2f32.powi(-30), 1); // 1 + 2⁻⁶⁰
        assert_eq!(n.cmp_f64(1.0), Greater);
        assert_eq!(n.cmp_f64(1.0 + f64::EPSILON), Less);
        assert_eq!(n.cmp_f64(2f64.powi(400)), Less);
        assert_eq!(n.cmp_f64(-2f64.powi(400)), Greater);
        assert_eq!(n.cmp_f64(2f64.powi(300)), Less);
        n.add_product(f32::MAX, f32::MAX, 1); // about 2²⁵⁶
        assert_eq!(n.cmp_f64(2f64.powi(255)), Greater);
        assert_eq!(n.cmp_f64(2f64.powi(257)), Less);
    }

    /// A threshold equal to a pair's f64 sum, where the exact value lies 2⁻⁶⁰ beyond it: the
    /// f64 sum would call them equal.
    #[test]
    fn threshold_verdicts_are_exact() {
        let (a, b, c) = (2f32.powi(-24), 2f32.powi(-52), 2f32.powi(-60));
        let value = 1.0 + a as f64 + b as f64;
        let q = [1.0f64, a as f64, b as f64, c as f64];
        let ones = [1.0f32; 4];
        let s = q.iter().sum::<f64>();
        assert_eq!(s, value);
        assert_eq!(ip_cmp(&q, &ones, s, s, value), Ordering::Greater);
        assert_eq!(ip_cmp(&q, &ones, s, s, value + f64::EPSILON), Ordering::Less);
        // L2 from the origin to (1, 2⁻¹², 2⁻²⁶, 2⁻³⁰): 1 + 2⁻²⁴ + 2⁻⁵² + 2⁻⁶⁰.
        let x = [1.0f32, 2f32.powi(-12), 2f32.powi(-26), 2f32.powi(-30)];
        let s = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        assert_eq!(s, value);
        assert_eq!(l2_cmp(&[0.0; 4], &x, s, value), Ordering::Greater);
        // Grid sums exactly equal to the threshold are equal.
        assert_eq!(l2_cmp(&[0.0; 2], &[1.0, 0.5], 1.25, 1.25), Ordering::Equal);
        assert_eq!(ip_cmp(&[1.0, 0.5], &[1.0, 0.5], 1.25, 1.25, 1.25), Ordering::Equal);
        // Far from the threshold, the f64 sum decides.
        assert_eq!(l2_cmp(&[0.0; 2], &[1.0, 0.5], 1.25, 3.0), Ordering::Less);
    }

    /// Sums that land exactly on, and just beside, the midpoint between two f32 values: ties go
    /// to the even one, anything beyond the midpoint (by 2⁻²⁹⁸ · 2⁴⁸ or by 2⁻¹⁴⁹ · 1) to the
    /// other. An f64 sum rounds these terms away, the accumulator does not.
    #[test]
    fn rounding_is_to_nearest_even_with_every_bit_counted() {
        let one_ulp = f32::EPSILON; // ulp of 1.0
        let half = one_ulp / 2.0;
        for (extra, want) in [(0.0f32, 1.0f32), (1e-30, 1.0 + one_ulp), (-1e-30, 1.0)] {
            let mut n = Exact::default();
            n.add_product(1.0, 1.0, 1);
            n.add_product(half, 1.0, 1);
            n.add_product(extra, 1e-15, 1);
            assert_eq!(n.to_f32(), want, "1 + ulp/2 + {extra}·1e-15");
            // The f64 sum loses the tiny term: it would tie to 1.0 every time.
            assert_eq!((1.0f64 + half as f64 + extra as f64 * 1e-15) as f32, 1.0);
        }
        // 1 + 3·ulp/2 ties up to the even 1 + 2·ulp.
        let mut n = Exact::default();
        n.add_product(1.0, 1.0, 1);
        n.add_product(half, 3.0, 1);
        assert_eq!(n.to_f32(), 1.0 + 2.0 * one_ulp);
        // Subnormal results: 3·2⁻¹⁵⁰ ties to the even 2·2⁻¹⁴⁹; a hair more rounds up to it too,
        // a hair less down to 2⁻¹⁴⁹.
        let tiny = f32::from_bits(1);
        for (extra, want) in [(0i64, 2u32), (1, 2), (-1, 1)] {
            let mut n = Exact::default();
            n.add_product(tiny, 1.5, 1);
            n.add_product(tiny, tiny, extra);
            assert_eq!(n.to_f32().to_bits(), want, "3·2⁻¹⁵⁰ + {extra}·2⁻²⁹⁸");
        }
    }

    /// The keys equal the accumulator's rounding on random rows, on rows far from the origin,
    /// and on rows whose last component puts the exact value within about 2⁻⁴⁹ of an f32
    /// midpoint (which take the exact path: both metrics are checked to).
    #[test]
    fn keys_are_the_exact_values_rounded() {
        // A 64-bit LCG's top 53 bits: uniform in [−0.5, 0.5).
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let midpoint_above = |s: f64| (s as f32 as f64 + exact::next_up(s as f32) as f64) / 2.0;
        let (mut exact_l2, mut exact_ip, mut grid) = (0, 0, 0);
        for trial in 0..4000 {
            let d = 1 + trial % 50;
            let offset = if trial % 3 == 0 { 1000.0 } else { 0.0 };
            let mut q: Vec<f32> = (0..d).map(|_| (offset + next()) as f32).collect();
            let mut x: Vec<f32> = (0..d).map(|_| (offset + next()) as f32).collect();
            let sums = |q: &[f32], x: &[f32]| {
                let (mut l2s, mut ips, mut abs) = (0f64, 0f64, 0f64);
                for (a, b) in q.iter().zip(x) {
                    l2s += (*a as f64 - *b as f64).powi(2);
                    ips += *a as f64 * *b as f64;
                    abs += (*a as f64 * *b as f64).abs();
                }
                (l2s, ips, abs)
            };
            if trial % 2 == 1 {
                // One more component aimed at the midpoint above the sum so far.
                let (l2s, ips, _) = sums(&q, &x);
                if trial % 4 == 1 {
                    q.push(0.0);
                    x.push((midpoint_above(l2s) - l2s).sqrt() as f32);
                } else {
                    q.push(1.0);
                    x.push((midpoint_above(ips) - ips) as f32);
                }
            }
            let (l2s, ips, abs) = sums(&q, &x);
            let q64: Vec<f64> = q.iter().map(|v| *v as f64).collect();
            let (mut nl, mut ni) = (Exact::default(), Exact::default());
            for (a, b) in q.iter().zip(&x) {
                nl.add_product(*a, *a, 1);
                nl.add_product(*a, *b, -2);
                nl.add_product(*b, *b, 1);
                ni.add_product(*a, *b, 1);
            }
            assert_eq!(l2(&q64, &x, l2s).to_bits(), nl.to_f32().to_bits(), "L2, trial {trial}");
            assert_eq!(ip(&q64, &x, ips, abs).to_bits(), ni.to_f32().to_bits(), "ip, trial {trial}");
            // Which keys needed the wide accumulator: neither the bound nor an exact f64 sum settled them.
            let wide_l2 =
                settled(l2s, slack(q.len()) * l2s).is_none() && exact_in_f64(q64.iter().zip(&x).map(|(a, b)| exact_sum(*a, -(*b as f64))), true).is_none();
            let wide_ip = settled(ips, slack(q.len()) * abs).is_none() && exact_in_f64(q64.iter().zip(&x).map(|(a, b)| Some(*a * *b as f64)), false).is_none();
            grid += (settled(l2s, slack(q.len()) * l2s).is_none() && !wide_l2) as usize;
            exact_l2 += wide_l2 as usize;
            exact_ip += wide_ip as usize;
            // Random rows never need it: a boundary within the bound is rare, and the rows far
            // from the origin that sum exactly onto a midpoint (a grid of 2⁻²⁸ steps) are exact in f64.
            assert!(trial % 2 == 1 || !(wide_l2 || wide_ip), "trial {trial}: wide accumulator for L2 {wide_l2}, ip {wide_ip}");
        }
        assert!(exact_l2 > 100 && exact_ip > 100, "keys that needed the wide accumulator: L2 {exact_l2}, ip {exact_ip}");
        assert!(grid > 10, "L2 keys settled by an exact f64 sum: {grid}");
    }

    /// A threshold join's verdicts and scores ([`exact::pair_against`], as the range search
    /// calls it: the inner product's bound from `‖a‖·‖b‖`) are the exact ones for thresholds
    /// within a few f64 ulps of the sum, where the f64 sum alone often decides wrongly.
    #[test]
    fn pair_verdicts_near_the_threshold_are_exact() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut naive_wrong = 0;
        for trial in 0..600 {
            let d = 1 + trial % 64;
            let offset = if trial % 3 == 0 { 100.0 } else { 0.0 };
            let a: Vec<f32> = (0..d).map(|_| (offset + next()) as f32).collect();
            let b: Vec<f32> = (0..d).map(|_| (offset + next()) as f32).collect();
            let a64: Vec<f64> = a.iter().map(|v| *v as f64).collect();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let reach = norm(&a) * norm(&b);
            let (mut nl, mut ni) = (Exact::default(), Exact::default());
            for (p, q) in a.iter().zip(&b) {
                nl.add_product(*p, *p, 1);
                nl.add_product(*p, *q, -2);
                nl.add_product(*q, *q, 1);
                ni.add_product(*p, *q, 1);
            }
            for (metric, exact, s) in [
                (FlatMetric::L2, &nl, exact::l2_pair_kernel(&a64, &b)),
                (FlatMetric::InnerProduct, &ni, a64.iter().zip(&b).map(|(p, q)| p * *q as f64).sum::<f64>()),
            ] {
                let ulp = f64::EPSILON * s.abs().max(f64::MIN_POSITIVE);
                for step in -6..=6 {
                    let value = s + step as f64 * ulp;
                    let mut verdict = None;
                    let score = exact::pair_against(metric, (&a64, &b), (1.0, 1.0), reach, value, |o| {
                        verdict = Some(o);
                        o == Ordering::Greater
                    });
                    let truth = exact.cmp_f64(value);
                    assert_eq!(verdict, Some(truth), "{metric:?} trial {trial} step {step}");
                    assert_eq!(score.map(f32::to_bits), (truth == Ordering::Greater).then(|| exact.to_f32().to_bits()), "{metric:?} trial {trial}");
                    naive_wrong += (s.partial_cmp(&value) != Some(truth)) as usize;
                }
            }
        }
        assert!(naive_wrong > 100, "verdicts the f64 sum alone gets wrong: {naive_wrong}");
    }
}
