//! The shared k-selection: heaps, threshold buffers, finished lists, merge — each held to a plain
//! sort of the same candidates with known indices.

use faiss_nn::topk::{merge_lists, RowSink, TopKBuffers, TopKHeaps, TopKLists};
use proptest::prelude::*;

/// The `k` best `(key, id)` of `cands` by a plain sort, padded with (+inf, −1).
fn sorted_top(cands: &[(f32, i64)], k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut v: Vec<(f32, i64)> = cands.iter().copied().filter(|c| !c.0.is_nan()).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    v.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    v.resize(k.max(v.len()), (f32::INFINITY, -1));
    v.truncate(k);
    (v.iter().map(|c| c.0).collect(), v.iter().map(|c| c.1).collect())
}

fn offer_all<S: RowSink>(s: &mut S, row: usize, cands: &[(f32, i64)]) {
    for (key, id) in cands {
        s.offer(row, *key, *id);
    }
}

#[test]
fn heaps_keep_the_k_best_with_ties_by_lower_index() {
    let cands = [(5.0, 9), (1.0, 4), (1.0, 2), (3.0, 7), (1.0, 3), (0.5, 8), (1.0, 1)];
    let mut h = TopKHeaps::new(1, 3);
    offer_all(&mut h, 0, &cands);
    let l = h.into_lists();
    assert_eq!(l.row(0).0, &[0.5, 1.0, 1.0]);
    assert_eq!(l.row(0).1, &[8, 1, 2]);
}

#[test]
fn a_ceiling_keeps_the_keys_up_to_it_and_turns_larger_ones_away() {
    let top = u32::MAX as i64; // the last index a buffer's span can hold
    let tiny = f32::from_bits(1);
    for (ceiling, keys, kept) in [
        (1.0f32, vec![0.5, 1.0, 1.0 + f32::EPSILON, 2.0], vec![0.5, 1.0]),
        (0.0, vec![-1.0, 0.0, -0.0, tiny], vec![-1.0, 0.0, 0.0]),
        (-tiny, vec![-1.0, -tiny, 0.0], vec![-1.0, -tiny]),
        (f32::MAX, vec![f32::MAX, f32::INFINITY, 1.0], vec![1.0, f32::MAX]),
        (f32::INFINITY, vec![f32::INFINITY, 1.0, f32::MAX], vec![1.0, f32::MAX, f32::INFINITY]),
        (f32::NAN, vec![3.0, 1.0], vec![1.0, 3.0]),
    ] {
        let mut b = TopKBuffers::new(1, 8, 4, 0);
        b.ceiling(0, ceiling);
        // The largest index first: an entry equal to the ceiling enters whatever its index.
        for (t, key) in keys.iter().enumerate() {
            b.offer(0, *key, top - t as i64);
        }
        let l = b.into_lists();
        let (lk, li) = l.row(0);
        let got: Vec<f32> = lk.iter().zip(li).filter(|(_, id)| **id >= 0).map(|(k, _)| *k).collect();
        assert_eq!(got, kept, "ceiling {ceiling}");
        // The default of any state: no ceiling.
        let mut h = TopKHeaps::new(1, 8);
        h.ceiling(0, ceiling);
        offer_all(&mut h, 0, &keys.iter().enumerate().map(|(t, k)| (*k, t as i64)).collect::<Vec<_>>());
        assert_eq!(h.into_lists().row(0).1.iter().filter(|id| **id >= 0).count(), keys.len());
    }
}

#[test]
fn unfilled_slots_are_minus_one_and_inf() {
    for k in [3usize, 40] {
        let mut h = TopKHeaps::new(2, k);
        h.offer(0, 2.0, 5);
        let mut b = TopKBuffers::new(2, k, 8, 0);
        b.offer(0, 2.0, 5);
        for l in [h.into_lists(), b.into_lists()] {
            assert_eq!(l.row(0).1[..2], [5, -1]);
            assert!(l.row(0).1[1..].iter().all(|i| *i == -1));
            assert!(l.row(0).0[1..].iter().all(|v| *v == f32::INFINITY));
            assert!(l.row(1).1.iter().all(|i| *i == -1));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Heaps and threshold buffers (any number of spare slots) keep exactly what a plain sort of
    /// the offered candidates keeps: ties (keys from a handful of values), NaN keys (never kept),
    /// fewer candidates than k, offers in any order.
    #[test]
    fn heaps_and_buffers_equal_a_sort(k in 1usize..70, n in 0usize..400, values in 1u32..6, extra in 1usize..40, seed in any::<u64>()) {
        let mut x = seed | 1;
        let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let cands: Vec<(f32, i64)> = (0..n)
            .map(|i| {
                let r = next();
                let key = if r % 97 == 0 { f32::NAN } else { (r % values as u64) as f32 - 1.0 };
                (key, i as i64 + 1000)
            })
            .collect();
        let want = sorted_top(&cands, k);
        let mut h = TopKHeaps::new(1, k);
        offer_all(&mut h, 0, &cands);
        let mut b = TopKBuffers::new(1, k, extra, 1000);
        offer_all(&mut b, 0, &cands);
        let (h, b) = (h.into_lists(), b.into_lists());
        prop_assert_eq!((h.keys.clone(), h.ids.clone()), want.clone());
        prop_assert_eq!((b.keys, b.ids), want);
    }
}

#[test]
fn merge_equals_a_sort_over_all_candidates() {
    let cands: Vec<(f32, i64)> = (0..300).map(|i| (((i * 53) % 17) as f32 * 0.5, i as i64)).collect();
    // Three disjoint parts, one of them shorter than k.
    let parts: Vec<TopKLists> = [0..140usize, 140..295, 295..300]
        .into_iter()
        .map(|r| {
            let mut h = TopKHeaps::new(1, 10);
            offer_all(&mut h, 0, &cands[r]);
            h.into_lists()
        })
        .collect();
    let merged = merge_lists(&parts, 10);
    let want = sorted_top(&cands, 10);
    assert_eq!((merged.keys, merged.ids), want);
    // Longer output than any part holds: padded.
    let merged = merge_lists(&parts[2..], 7);
    assert_eq!(merged.ids, vec![298, 299, 295, 296, 297, -1, -1]);
    assert_eq!((merged.keys, merged.ids), sorted_top(&cands[295..], 7));
}
