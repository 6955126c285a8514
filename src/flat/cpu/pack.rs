//! Packing row blocks into the micro-kernel's panel layouts.
//!
//! A *panel* of `R` rows over a depth range `k0..k0+kc` is stored depth-major: for each depth
//! `p`, the `R` values of the rows at that depth, so that the micro-kernel reads both operands
//! with unit stride. Rows past the end of the data are zero, which makes every edge block a full
//! block (their products are computed and then ignored by the epilogue).

/// Packs rows `row0..row0 + rows` (rounded up to panels of `r`) of the row-major matrix `data`
/// (dimension `d`) over depths `k0..k0 + kc` into `out`: panel after panel, each `kc × r`.
pub fn pack_panels(data: &[f32], d: usize, row0: usize, rows: usize, k0: usize, kc: usize, r: usize, out: &mut Vec<f32>) {
    let n_total = data.len() / d;
    let panels = rows.div_ceil(r);
    out.clear();
    out.resize(panels * kc * r, 0.0);
    for panel in 0..panels {
        let dst = &mut out[panel * kc * r..(panel + 1) * kc * r];
        for lane in 0..r {
            let row = row0 + panel * r + lane;
            if row >= row0 + rows || row >= n_total {
                continue; // stays zero
            }
            let src = &data[row * d + k0..row * d + k0 + kc];
            for (p, v) in src.iter().enumerate() {
                dst[p * r + lane] = *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_depth_major_with_zero_padding() {
        // 3 rows × 4 dims, values = 10·row + col.
        let data: Vec<f32> = (0..3).flat_map(|r| (0..4).map(move |c| (10 * r + c) as f32)).collect();
        let mut out = Vec::new();
        pack_panels(&data, 4, 1, 2, 1, 2, 4, &mut out); // rows 1..3, depths 1..3, panel of 4
        assert_eq!(out, vec![11.0, 21.0, 0.0, 0.0, 12.0, 22.0, 0.0, 0.0]);
    }
}
