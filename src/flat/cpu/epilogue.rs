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
        FlatMetric::InnerProduct => {
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
        FlatMetric::InnerProduct => {
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
        // Most chunks offer nothing once the heap has filled: test all lanes at once first.
        if !any_le(chunk, |_| thr) {
            continue;
        }
        for (t, key) in chunk.iter().enumerate() {
            if *key <= thr {
                sink.offer(row, *key, id0 + (chunk_i * LANES + t) as i64);
                thr = sink.threshold(row);
            }
        }
    }
}

/// Offers a row of keys to the *columns'* rows (the symmetric half of a pair): key `j` goes to
/// the sink's row `col0 + j` as candidate `id`. `thr` caches those rows' thresholds across the
/// rows of a tile.
#[inline]
pub fn offer_columns<S: RowSink>(sink: &mut S, col0: usize, keys: &[f32], thr: &mut [f32], id: i64) {
    for (chunk_i, (kc, tc)) in keys.chunks(LANES).zip(thr.chunks_mut(LANES)).enumerate() {
        if !any_le(kc, |t| tc[t]) {
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

/// Keys tested together before any is offered: one AVX register of f32.
const LANES: usize = 8;

/// Whether some `chunk[t] <= thr(t)`. A full chunk is tested as a fixed-size array, branch-free,
/// so that the compiler turns it into one vector compare; a short tail is tested element-wise.
#[inline(always)]
fn any_le(chunk: &[f32], thr: impl Fn(usize) -> f32) -> bool {
    match <&[f32; LANES]>::try_from(chunk) {
        Ok(full) => {
            let mut hit = false;
            for (t, key) in full.iter().enumerate() {
                hit |= *key <= thr(t);
            }
            hit
        }
        Err(_) => chunk.iter().enumerate().any(|(t, k)| *k <= thr(t)),
    }
}
