//! The distance epilogue fused with k-selection: a product tile becomes keys (L2 distance or
//! negated inner product) that are offered to the rows' heaps, and in the symmetric join also to
//! the columns' heaps. Most keys fail the heap threshold, so the common path is a compare.

use crate::metric::FlatMetric;
use crate::topk::RowSink;

/// Turns one row of products into keys: `max(‖q‖² + ‖x‖² − 2·q·x, 0)` for L2, `−q·x` for IP.
#[inline]
pub fn fill_keys(metric: FlatMetric, products: &[f32], qn: f32, xn: &[f32], keys: &mut [f32]) {
    match metric {
        FlatMetric::L2 => {
            for ((k, c), x) in keys.iter_mut().zip(products).zip(xn) {
                *k = ((qn + *x) - 2.0 * *c).max(0.0);
            }
        }
        FlatMetric::InnerProduct | FlatMetric::Cosine => {
            for (k, c) in keys.iter_mut().zip(products) {
                *k = -*c;
            }
        }
    }
}

/// [`fill_keys`] in place: a row of products becomes its keys.
#[inline]
pub fn fill_keys_in_place(metric: FlatMetric, row: &mut [f32], qn: f32, xn: &[f32]) {
    match metric {
        FlatMetric::L2 => {
            for (k, x) in row.iter_mut().zip(xn) {
                *k = ((qn + *x) - 2.0 * *k).max(0.0);
            }
        }
        FlatMetric::InnerProduct | FlatMetric::Cosine => {
            for k in row.iter_mut() {
                *k = -*k;
            }
        }
    }
}

/// Offers a row of keys to the sink's row `row`, candidates numbered `id0 + j`. NaN keys
/// (excluded pairs) never pass the threshold test.
#[inline]
pub fn offer_row<S: RowSink>(sink: &mut S, row: usize, keys: &[f32], id0: i64) {
    let mut thr = sink.threshold(row);
    for (chunk_i, chunk) in keys.chunks(LANES).enumerate() {
        // Most chunks offer nothing once the state has filled: all lanes are tested at once.
        if !S::LARGE_ROWS {
            // Small k: hits are rare once a heap has filled, and its threshold moves on every
            // offer; the lanes of a chunk with a hit are tested one by one.
            if le_mask(chunk, |_| thr) == 0 {
                continue;
            }
            for (t, key) in chunk.iter().enumerate() {
                if *key <= thr {
                    sink.offer(row, *key, id0 + (chunk_i * LANES + t) as i64);
                    thr = sink.threshold(row);
                }
            }
            continue;
        }
        // Large k (threshold buffers): a third of the candidates may be accepted, and a branch
        // per lane mispredicts on every hit; only the lanes that passed are visited.
        let mut hits = le_mask(chunk, |_| thr);
        while hits != 0 {
            let t = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            // The threshold may have dropped since the mask was taken (a buffer's moves when an
            // offer fills it and it is compacted).
            if chunk[t] <= thr {
                sink.offer(row, chunk[t], id0 + (chunk_i * LANES + t) as i64);
                thr = sink.threshold(row);
            }
        }
    }
}

/// Offers a row of keys to the *columns'* rows (the symmetric half of a pair): key `j` goes to
/// the sink's row `col0 + j` as candidate `id`. `thr` caches those rows' thresholds across the
/// rows of a tile. (States with large rows get their column offers through [`offer_row`] on
/// the turned tile instead, so that each row's state is touched once per tile.)
#[inline]
pub fn offer_columns<S: RowSink>(sink: &mut S, col0: usize, keys: &[f32], thr: &mut [f32], id: i64) {
    for (chunk_i, (kc, tc)) in keys.chunks(LANES).zip(thr.chunks_mut(LANES)).enumerate() {
        if le_mask(kc, |t| tc[t]) == 0 {
            continue;
        }
        for (t, (key, th)) in kc.iter().zip(tc.iter_mut()).enumerate() {
            if *key <= *th {
                let col = col0 + chunk_i * LANES + t;
                sink.offer(col, *key, id);
                *th = sink.threshold(col);
            }
        }
    }
}

/// Calls `hit(j, key)` for every key at or below `limit` (never for NaN), in order: the scan of
/// a threshold join, where nearly every chunk of keys has no hit.
#[inline]
pub fn scan_at_most(keys: &[f32], limit: f32, mut hit: impl FnMut(usize, f32)) {
    for (chunk_i, chunk) in keys.chunks(LANES).enumerate() {
        let mut hits = le_mask(chunk, |_| limit);
        while hits != 0 {
            let t = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            hit(chunk_i * LANES + t, chunk[t]);
        }
    }
}

/// Keys tested together before any is offered: one AVX register of f32.
const LANES: usize = 8;

/// Bit `t` set where `chunk[t] <= thr(t)` (never for NaN). A full chunk is two SSE compares and
/// mask moves (SSE2 is part of x86-64; left to itself the compiler mixed vector and per-lane
/// scalar compares); elsewhere, and for a short tail, lane by lane.
#[inline(always)]
fn le_mask(chunk: &[f32], thr: impl Fn(usize) -> f32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Ok(full) = <&[f32; LANES]>::try_from(chunk) {
        use std::arch::x86_64::*;
        let t: [f32; LANES] = std::array::from_fn(thr);
        // SAFETY: SSE2 is in every x86-64 CPU; the loads read the 8 floats of `full` and `t`.
        unsafe {
            let (k, t) = (full.as_ptr(), t.as_ptr());
            let lo = _mm_movemask_ps(_mm_cmple_ps(_mm_loadu_ps(k), _mm_loadu_ps(t)));
            let hi = _mm_movemask_ps(_mm_cmple_ps(_mm_loadu_ps(k.add(4)), _mm_loadu_ps(t.add(4))));
            return (lo | (hi << 4)) as u32;
        }
    }
    let mut mask = 0u32;
    for (t, key) in chunk.iter().enumerate() {
        mask |= u32::from(*key <= thr(t)) << t;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_find_every_key_at_or_below_the_limit_in_order() {
        let keys: Vec<f32> = (0..21).map(|i| if i % 5 == 0 { f32::NAN } else { (i % 7) as f32 }).collect();
        let mut got = Vec::new();
        scan_at_most(&keys, 2.0, |j, k| got.push((j, k)));
        let want: Vec<(usize, f32)> = keys.iter().enumerate().filter(|(_, k)| **k <= 2.0).map(|(j, k)| (j, *k)).collect();
        assert_eq!(got, want);
        got.clear();
        scan_at_most(&keys, f32::NEG_INFINITY, |j, k| got.push((j, k)));
        assert!(got.is_empty());
    }

    #[test]
    fn masks_mark_the_keys_at_or_below_their_thresholds() {
        let keys = [0.5, f32::NAN, 2.0, -1.0, f32::INFINITY, 1.0, 0.0, -0.0];
        assert_eq!(le_mask(&keys, |_| 1.0), 0b1110_1001);
        assert_eq!(le_mask(&keys, |_| f32::INFINITY), 0b1111_1101, "NaN never passes");
        assert_eq!(le_mask(&keys, |t| keys[t]), 0b1111_1101, "equal keys pass");
        assert_eq!(le_mask(&keys, |_| f32::NAN), 0);
        assert_eq!(le_mask(&keys[..5], |_| 1.0), 0b0_1001, "a short tail, lane by lane");
        assert_eq!(le_mask(&keys[..3], |_| 0.0), 0);
    }
}
