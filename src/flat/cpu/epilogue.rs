//! The distance epilogue fused with k-selection: a product tile becomes keys (L2 distance or
//! negated inner product) that are offered to the rows' heaps, and in the symmetric join also to
//! the columns' heaps. Most keys fail the heap threshold, so the common path is a compare.

use crate::metric::FlatMetric;
use crate::topk::HeapRowsMut;

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

/// Offers a row of keys to heap row `row`, candidates numbered `id0 + j`. NaN keys (excluded
/// pairs) never pass the threshold test.
#[inline]
pub fn offer_row(sink: &mut HeapRowsMut<'_>, row: usize, keys: &[f32], id0: i64) {
    let mut thr = sink.threshold(row);
    for (chunk_i, chunk) in keys.chunks(8).enumerate() {
        // Branch-free test of 8 keys first: most tiles offer nothing past their first rows.
        let mut hit = false;
        for key in chunk {
            hit |= *key <= thr;
        }
        if !hit {
            continue;
        }
        for (t, key) in chunk.iter().enumerate() {
            if *key <= thr {
                sink.offer(row, *key, id0 + (chunk_i * 8 + t) as i64);
                thr = sink.threshold(row);
            }
        }
    }
}

/// Offers a row of keys to the *columns'* heaps (the symmetric half of a pair): key `j` goes to
/// heap row `col0 + j` as candidate `id`. `thr` caches those heaps' thresholds across the rows of
/// a tile.
#[inline]
pub fn offer_columns(sink: &mut HeapRowsMut<'_>, col0: usize, keys: &[f32], thr: &mut [f32], id: i64) {
    for (chunk_i, (kc, tc)) in keys.chunks(8).zip(thr.chunks_mut(8)).enumerate() {
        let mut hit = false;
        for (key, t) in kc.iter().zip(tc.iter()) {
            hit |= *key <= *t;
        }
        if !hit {
            continue;
        }
        for (t, (key, th)) in kc.iter().zip(tc.iter_mut()).enumerate() {
            if *key <= *th {
                let col = col0 + chunk_i * 8 + t;
                sink.offer(col, *key, id);
                *th = sink.threshold(col);
            }
        }
    }
}
