//! Squared row norms, the ‖x‖² terms of the L2 epilogue.

use crate::data::Vectors;
use crate::error::{Error, Result};

/// ‖row − shift‖² for every row (‖row‖² without a shift), in f32 with 8 independent partial
/// sums: vectorisable, and the same value for identical rows, which keeps exact duplicates
/// exactly tied.
pub fn squared_norms(v: &Vectors<'_>, shift: Option<&[f32]>, what: &str) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(v.n());
    let mut centred = vec![0f32; if shift.is_some() { v.d() } else { 0 }];
    for i in 0..v.n() {
        let row = match shift {
            None => v.row(i),
            Some(s) => {
                // The same subtraction the packing does, so that norms and products agree.
                for ((c, x), m) in centred.iter_mut().zip(v.row(i)).zip(s) {
                    *c = *x - *m;
                }
                &centred[..]
            }
        };
        let s = sum_of_squares(row);
        if !s.is_finite() {
            return Err(Error::invalid(what, format!("row {i}: its squared norm overflows f32 (values too large to compare by L2 or inner product)")));
        }
        out.push(s);
    }
    Ok(out)
}

fn sum_of_squares(row: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact(8);
    // Plain multiply-add, not `mul_add`: without FMA enabled at compile time that is a libm
    // call per element, and this loop must vectorise.
    for c in &mut chunks {
        for t in 0..8 {
            acc[t] += c[t] * c[t];
        }
    }
    for (t, x) in chunks.remainder().iter().enumerate() {
        acc[t] += x * x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}
