//! Tie-aware comparison of neighbour lists, as faiss's own GPU tests compare: scores within a
//! tolerance position by position, indices compared as sets inside groups of equal score.
//!
//! For one row with reference scores `r[0..k]` (best first) and tested `(ids, s)`:
//! 1. `|s[t] − r[t]| ≤ tol` for every position;
//! 2. every index whose reference score is clearly inside the list (better than the k-th score
//!    by more than `tol`) is in the tested list, and vice versa: only the last group of near-equal
//!    scores, which the cut at k splits arbitrarily, may differ;
//! 3. the tested list has no duplicate, no −1 where the reference has a row, and (when `exact`
//!    is given) each tested index's true score matches its reported score within `tol`.

use faiss_nn::FlatMetric;

/// One row to compare.
pub struct Row<'a> {
    pub ids: &'a [i64],
    pub scores: &'a [f32],
}

/// Tolerance for f32 L2/IP results on data with squared norms up to `max_norm2`.
pub fn tolerance(max_norm2: f64) -> f64 {
    1e-4 * (1.0 + 2.0 * max_norm2)
}

/// Largest squared row norm of `x`.
pub fn max_norm2(x: &[f32], d: usize) -> f64 {
    x.chunks(d).map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>()).fold(0.0, f64::max)
}

/// Compares `got` against `want`; `exact(id)` gives the true score of the row's pair with `id`.
/// Returns a description of the first mismatch.
pub fn compare_row(metric: FlatMetric, got: Row<'_>, want: Row<'_>, tol: f64, exact: Option<&dyn Fn(i64) -> f64>) -> Result<(), String> {
    let k = want.ids.len();
    if got.ids.len() != k || got.scores.len() != k {
        return Err(format!("length {} vs {}", got.ids.len(), k));
    }
    for t in 0..k {
        let (g, w) = (got.scores[t] as f64, want.scores[t] as f64);
        let both_empty = got.ids[t] < 0 && want.ids[t] < 0;
        // Written as !(a <= b) on purpose: a NaN difference must fail the check.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let off = !((g - w).abs() <= tol);
        if !both_empty && off {
            return Err(format!("position {t}: score {g} vs {w} (tol {tol})"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (t, id) in got.ids.iter().enumerate() {
        if *id >= 0 && !seen.insert(*id) {
            return Err(format!("index {id} appears twice"));
        }
        if (*id < 0) != (want.ids[t] < 0) {
            return Err(format!("position {t}: index {id} vs {}", want.ids[t]));
        }
        if let (Some(f), true) = (exact, *id >= 0) {
            let e = f(*id);
            #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN must fail too
            let off = !((e - got.scores[t] as f64).abs() <= tol);
            if off {
                return Err(format!("position {t}: index {id} reported {} but its true score is {e}", got.scores[t]));
            }
        }
    }
    // The last group: scores within tol of the k-th (last filled) reference score.
    let filled = want.ids.iter().take_while(|i| **i >= 0).count();
    if filled == 0 {
        return Ok(());
    }
    let edge = want.scores[filled - 1] as f64;
    let clearly_in = |s: f32| match metric {
        FlatMetric::L2 => (s as f64) < edge - tol,
        FlatMetric::InnerProduct | FlatMetric::Cosine => (s as f64) > edge + tol,
    };
    for (ids_a, sc_a, ids_b, name) in
        [(want.ids, want.scores, got.ids, "missing from the tested list"), (got.ids, got.scores, want.ids, "not in the reference")]
    {
        for (id, s) in ids_a.iter().zip(sc_a) {
            if *id >= 0 && clearly_in(*s) && !ids_b.contains(id) {
                return Err(format!("index {id} (score {s}, inside the list) {name}"));
            }
        }
    }
    Ok(())
}
