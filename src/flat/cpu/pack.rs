//! Packing row blocks into the micro-kernel's panel layouts.
//!
//! A *panel* of `R` rows is stored depth-major: for each depth
//! `p`, the `R` values of the rows at that depth, so that the micro-kernel reads both operands
//! with unit stride. Rows past the end of the data are zero, which makes every edge block a full
//! block (their products are computed and then ignored by the epilogue).

/// Packs rows `row0..row0 + rows` (rounded up to panels of `r`) of the row-major matrix `data`
/// (dimension `d`), minus `shift` when given, over full depth into `out`: panel after panel,
/// each `d × r`.
pub fn pack_panels(data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, out: &mut Vec<f32>) {
    out.clear();
    out.resize(rows.div_ceil(r) * d * r, 0.0);
    pack_into(data, d, row0, rows, r, shift, out);
}

/// [`pack_panels`] with the panels shared out among `workers` threads: packing a large block is
/// a transposing copy that one thread would do while the others wait.
#[allow(clippy::too_many_arguments)]
pub fn pack_panels_parallel(data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, out: &mut Vec<f32>, workers: usize) {
    let panels = rows.div_ceil(r);
    out.clear();
    out.resize(panels * d * r, 0.0);
    let per = panels.div_ceil(workers.max(1)).max(1);
    std::thread::scope(|scope| {
        for (c, dst) in out.chunks_mut(per * d * r).enumerate() {
            let first = c * per * r; // first row of this chunk, relative to row0
            let n_rows = (per * r).min(rows - first);
            scope.spawn(move || pack_into(data, d, row0 + first, n_rows, r, shift, dst));
        }
    });
}

/// Writes the panels of rows `row0..row0 + rows` into `dst` (already zeroed, sized for them).
///
/// A panel is the transpose of `r` rows. Copying row by row would store with a stride of `r`
/// floats, a new cache line per store; instead the depth is walked in blocks of [`DEPTH_BLOCK`]
/// so that each block of the panel (`DEPTH_BLOCK × r` floats, at most 1.5 KiB) stays in L1 while
/// the `r` rows are read contiguously into it.
fn pack_into(data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, dst: &mut [f32]) {
    for (panel, pdst) in dst.chunks_mut(d * r).enumerate() {
        let lanes = r.min(rows.saturating_sub(panel * r)); // the rest of the panel stays zero
        for p0 in (0..d).step_by(DEPTH_BLOCK) {
            let p1 = (p0 + DEPTH_BLOCK).min(d);
            for lane in 0..lanes {
                let row = row0 + panel * r + lane;
                let src = &data[row * d + p0..row * d + p1];
                match shift {
                    None => {
                        for (p, v) in src.iter().enumerate() {
                            pdst[(p0 + p) * r + lane] = *v;
                        }
                    }
                    Some(s) => {
                        for (p, (v, m)) in src.iter().zip(&s[p0..p1]).enumerate() {
                            pdst[(p0 + p) * r + lane] = *v - *m;
                        }
                    }
                }
            }
        }
    }
}

/// Depth of one packing block (see [`pack_into`]).
const DEPTH_BLOCK: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_depth_major_with_zero_padding() {
        // 3 rows × 4 dims, values = 10·row + col.
        let data: Vec<f32> = (0..3).flat_map(|r| (0..4).map(move |c| (10 * r + c) as f32)).collect();
        let mut out = Vec::new();
        pack_panels(&data, 4, 1, 2, 4, None, &mut out); // rows 1..3, a panel of 4
        assert_eq!(out, vec![10.0, 20.0, 0.0, 0.0, 11.0, 21.0, 0.0, 0.0, 12.0, 22.0, 0.0, 0.0, 13.0, 23.0, 0.0, 0.0]);
        let shift = [10.0, 10.0, 10.0, 10.0];
        pack_panels(&data, 4, 1, 2, 4, Some(&shift), &mut out);
        assert_eq!(&out[..4], &[0.0, 10.0, 0.0, 0.0]);
    }

    #[test]
    fn parallel_packing_equals_serial() {
        let (n, d, r) = (101, 7, 16);
        let data: Vec<f32> = (0..n * d).map(|v| v as f32).collect();
        let mut serial = Vec::new();
        let shift: Vec<f32> = (0..d).map(|c| c as f32 * 0.5).collect();
        pack_panels(&data, d, 3, n - 3, r, Some(&shift), &mut serial);
        for workers in [1, 2, 3, 8, 64] {
            let mut par = Vec::new();
            pack_panels_parallel(&data, d, 3, n - 3, r, Some(&shift), &mut par, workers);
            assert_eq!(par, serial, "{workers} workers");
        }
    }
}
