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
    // Every entry is written below (padding lanes too), so old contents need no clearing.
    out.resize(rows.div_ceil(r) * d * r, 0.0);
    pack_into(data, d, row0, rows, r, shift, out);
}

/// [`pack_panels`] with the panels shared out among `workers` threads: packing a large block is
/// a transposing copy that one thread would do while the others wait.
#[allow(clippy::too_many_arguments)]
pub fn pack_panels_parallel(data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, out: &mut Vec<f32>, workers: usize) {
    let panels = rows.div_ceil(r);
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

/// Writes the panels of rows `row0..row0 + rows` into `dst` (sized for them), zero lanes for the
/// rows past the end included.
fn pack_into(data: &[f32], d: usize, row0: usize, rows: usize, r: usize, shift: Option<&[f32]>, dst: &mut [f32]) {
    for (panel, pdst) in dst.chunks_mut(d * r).enumerate() {
        let lanes = r.min(rows.saturating_sub(panel * r));
        let first = row0 + panel * r;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && r <= 16 && d >= 8 {
            // SAFETY: AVX2 was detected; `pdst` holds d·r floats and rows first..first + lanes
            // are rows of `data` (checked by the slice below).
            let src = &data[first * d..(first + lanes) * d];
            unsafe { avx2::pack_panel(src, d, lanes, r, shift, pdst) };
            continue;
        }
        pack_panel_scalar(&data[first * d..(first + lanes) * d], d, lanes, r, shift, pdst);
    }
}

/// `dst[j·ldt + i] = src[i·lds + j]` for `i < rows`, `j < cols`: a product tile turned so that its
/// columns become contiguous rows (the symmetric join's column side with large per-row state).
pub fn transpose(src: &[f32], lds: usize, rows: usize, cols: usize, dst: &mut [f32], ldt: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected; the bounds are checked inside against the slices.
        unsafe { avx2::transpose(src, lds, rows, cols, dst, ldt) };
        return;
    }
    for i in 0..rows {
        for j in 0..cols {
            dst[j * ldt + i] = src[i * lds + j];
        }
    }
}

/// One panel: `src` holds `lanes` rows of `d`; lanes `lanes..r` of every depth are zero.
///
/// A panel is the transpose of `r` rows. Copying row by row would store with a stride of `r`
/// floats, a new cache line per store; instead the depth is walked in blocks of [`DEPTH_BLOCK`]
/// so that each block of the panel (`DEPTH_BLOCK × r` floats, at most 1.5 KiB) stays in L1 while
/// the rows are read contiguously into it.
fn pack_panel_scalar(src: &[f32], d: usize, lanes: usize, r: usize, shift: Option<&[f32]>, pdst: &mut [f32]) {
    for p0 in (0..d).step_by(DEPTH_BLOCK) {
        let p1 = (p0 + DEPTH_BLOCK).min(d);
        for lane in 0..r {
            if lane >= lanes {
                for p in p0..p1 {
                    pdst[p * r + lane] = 0.0;
                }
                continue;
            }
            let row = &src[lane * d + p0..lane * d + p1];
            match shift {
                None => {
                    for (p, v) in row.iter().enumerate() {
                        pdst[(p0 + p) * r + lane] = *v;
                    }
                }
                Some(s) => {
                    for (p, (v, m)) in row.iter().zip(&s[p0..p1]).enumerate() {
                        pdst[(p0 + p) * r + lane] = *v - *m;
                    }
                }
            }
        }
    }
}

/// The panel transpose with AVX2: 8 rows × 8 depths at a time through an 8 × 8 register
/// transpose, stored as 8 depth rows of up to 8 lanes.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2; `src` holds `lanes ≤ r ≤ 16` rows of `d ≥ 8` values, `pdst`
    /// holds `d·r` floats, `shift` (if any) `d` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_panel(src: &[f32], d: usize, lanes: usize, r: usize, shift: Option<&[f32]>, pdst: &mut [f32]) {
        debug_assert!(lanes <= r && r <= 16 && d >= 8 && src.len() >= lanes * d && pdst.len() >= d * r);
        let zero = _mm256_setzero_ps();
        let groups = r.div_ceil(8);
        let full = d / 8 * 8;
        for g in 0..groups {
            let lane0 = g * 8;
            let width = (r - lane0).min(8); // lanes this group stores
            let mask = store_mask(width);
            let mut p = 0;
            while p < full {
                let m = match shift {
                    Some(s) => _mm256_loadu_ps(s.as_ptr().add(p)),
                    None => zero,
                };
                let mut v = [zero; 8];
                for (i, vi) in v.iter_mut().enumerate() {
                    let lane = lane0 + i;
                    if lane < lanes {
                        *vi = _mm256_sub_ps(_mm256_loadu_ps(src.as_ptr().add(lane * d + p)), m);
                    }
                }
                let t = transpose8(v);
                for (j, tj) in t.iter().enumerate() {
                    let at = pdst.as_mut_ptr().add((p + j) * r + lane0);
                    if width == 8 {
                        _mm256_storeu_ps(at, *tj);
                    } else {
                        _mm256_maskstore_ps(at, mask, *tj);
                    }
                }
                p += 8;
            }
            // The last depths (d not a multiple of 8), lane by lane.
            for pp in full..d {
                let m = shift.map_or(0.0, |s| s[pp]);
                for i in 0..width {
                    let lane = lane0 + i;
                    pdst[pp * r + lane] = if lane < lanes { src[lane * d + pp] - m } else { 0.0 };
                }
            }
        }
    }

    /// See [`super::transpose`]: 8 × 8 blocks through registers, the edges element by element.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose(src: &[f32], lds: usize, rows: usize, cols: usize, dst: &mut [f32], ldt: usize) {
        assert!(rows == 0 || cols == 0 || (src.len() >= (rows - 1) * lds + cols && dst.len() >= (cols - 1) * ldt + rows));
        let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        for i0 in (0..r8).step_by(8) {
            for j0 in (0..c8).step_by(8) {
                let v: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(src.as_ptr().add((i0 + t) * lds + j0)));
                for (t, col) in transpose8(v).iter().enumerate() {
                    _mm256_storeu_ps(dst.as_mut_ptr().add((j0 + t) * ldt + i0), *col);
                }
            }
            for j in c8..cols {
                for i in i0..i0 + 8 {
                    dst[j * ldt + i] = src[i * lds + j];
                }
            }
        }
        for i in r8..rows {
            for j in 0..cols {
                dst[j * ldt + i] = src[i * lds + j];
            }
        }
    }

    #[inline(always)]
    unsafe fn store_mask(width: usize) -> __m256i {
        let lanes: [i32; 8] = std::array::from_fn(|i| if i < width { -1 } else { 0 });
        _mm256_loadu_si256(lanes.as_ptr() as *const __m256i)
    }

    /// Column j of the 8 × 8 input as vector j.
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
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

    /// The AVX2 transpose and the scalar loop write the same panels: both panel widths, odd
    /// dimensions, partial last panels, with and without a shift, over stale buffer contents.
    #[test]
    fn avx2_and_scalar_packing_agree() {
        for (n, d) in [(1usize, 8usize), (7, 9), (23, 16), (40, 33), (17, 385)] {
            let data: Vec<f32> = (0..n * d).map(|v| (v % 97) as f32 - 40.0).collect();
            let shift: Vec<f32> = (0..d).map(|c| c as f32 * 0.25).collect();
            for r in [6usize, 16] {
                for sh in [None, Some(&shift[..])] {
                    let mut fast = vec![f32::NAN; 3];
                    pack_panels(&data, d, 0, n, r, sh, &mut fast);
                    let mut slow = vec![0f32; n.div_ceil(r) * d * r];
                    for (panel, pdst) in slow.chunks_mut(d * r).enumerate() {
                        let lanes = r.min(n - panel * r);
                        pack_panel_scalar(&data[panel * r * d..(panel * r + lanes) * d], d, lanes, r, sh, pdst);
                    }
                    assert_eq!(fast, slow, "n {n} d {d} r {r} shift {}", sh.is_some());
                }
            }
        }
    }

    #[test]
    fn transpose_turns_columns_into_rows() {
        for (rows, cols) in [(0usize, 5usize), (1, 1), (8, 8), (13, 21), (48, 40)] {
            let lds = cols + 3;
            let src: Vec<f32> = (0..rows.max(1) * lds).map(|v| v as f32).collect();
            let ldt = rows + 5;
            let mut dst = vec![-1f32; cols.max(1) * ldt];
            transpose(&src, lds, rows, cols, &mut dst, ldt);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(dst[j * ldt + i], src[i * lds + j], "{rows}×{cols} at {i},{j}");
                }
            }
        }
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
