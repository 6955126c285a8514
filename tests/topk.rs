//! The shared k-selection: heaps, finished lists, merge.

use faiss_nn::topk::{merge_lists, TopKHeaps, TopKLists};

#[test]
fn heaps_keep_the_k_best_with_ties_by_lower_index() {
    let mut h = TopKHeaps::new(1, 3);
    for (key, id) in [(5.0, 9), (1.0, 4), (1.0, 2), (3.0, 7), (1.0, 3), (0.5, 8), (1.0, 1)] {
        h.offer(0, key, id);
    }
    let l = h.into_lists();
    assert_eq!(l.row(0).0, &[0.5, 1.0, 1.0]);
    assert_eq!(l.row(0).1, &[8, 1, 2]);
}

#[test]
fn unfilled_slots_are_minus_one_and_inf() {
    let mut h = TopKHeaps::new(2, 3);
    h.offer(0, 2.0, 5);
    let l = h.into_lists();
    assert_eq!(l.row(0).1, &[5, -1, -1]);
    assert_eq!(l.row(0).0[1], f32::INFINITY);
    assert_eq!(l.row(1).1, &[-1, -1, -1]);
}

#[test]
fn order_of_offers_does_not_change_the_result() {
    let cands: Vec<(f32, i64)> = (0..200).map(|i| (((i * 37) % 11) as f32, i as i64)).collect();
    let mut fwd = TopKHeaps::new(1, 7);
    let mut rev = TopKHeaps::new(1, 7);
    cands.iter().for_each(|(k, i)| fwd.offer(0, *k, *i));
    cands.iter().rev().for_each(|(k, i)| rev.offer(0, *k, *i));
    assert_eq!(fwd.into_lists(), rev.into_lists());
}

#[test]
fn merge_equals_one_heap_over_all_candidates() {
    let cands: Vec<(f32, i64)> = (0..300).map(|i| (((i * 53) % 17) as f32 * 0.5, i as i64)).collect();
    let mut all = TopKHeaps::new(1, 10);
    cands.iter().for_each(|(k, i)| all.offer(0, *k, *i));
    // Three disjoint parts, one of them shorter than k.
    let parts: Vec<TopKLists> = [0..140usize, 140..295, 295..300]
        .into_iter()
        .map(|r| {
            let mut h = TopKHeaps::new(1, 10);
            cands[r].iter().for_each(|(k, i)| h.offer(0, *k, *i));
            h.into_lists()
        })
        .collect();
    assert_eq!(merge_lists(&parts, 10), all.into_lists());
}
