//! The faiss-like FlatIndex.

use crate::common::data::normal;
use faiss_nn::{Error, FlatIndex, Metric};

#[test]
fn add_and_search_follow_faiss_conventions() {
    let mut idx = FlatIndex::new(2, Metric::L2).unwrap();
    idx.add(&[0.0, 0.0, 3.0, 0.0]).unwrap();
    idx.add(&[0.0, 1.0]).unwrap();
    assert_eq!(idx.ntotal(), 3);
    let (dist, labels) = idx.search(&[0.0, 0.0, 3.0, 1.0], 4).unwrap();
    assert_eq!(labels, vec![0, 2, 1, -1, 1, 2, 0, -1]);
    assert_eq!(dist[..3], [0.0, 1.0, 9.0]);
    assert_eq!(dist[3], f32::MAX, "faiss pads with FLT_MAX");
    assert_eq!(dist[4..7], [1.0, 9.0, 10.0]);
}

#[test]
fn inner_product_pads_with_minus_flt_max() {
    let mut idx = FlatIndex::new(2, Metric::InnerProduct).unwrap();
    idx.add(&[1.0, 0.0]).unwrap();
    let (dist, labels) = idx.search(&[2.0, 1.0], 2).unwrap();
    assert_eq!(labels, vec![0, -1]);
    assert_eq!(dist, vec![2.0, -f32::MAX]);
}

#[test]
fn empty_index_and_empty_queries() {
    let idx = FlatIndex::new(3, Metric::L2).unwrap();
    let (d, l) = idx.search(&[1.0, 2.0, 3.0], 2).unwrap();
    assert_eq!(l, vec![-1, -1]);
    assert!(d.iter().all(|v| *v == f32::MAX));
    assert_eq!(idx.search(&[], 2).unwrap(), (vec![], vec![]));
}

#[test]
fn bad_arguments_are_errors() {
    assert!(FlatIndex::new(0, Metric::L2).is_err());
    assert!(matches!(FlatIndex::new(4, Metric::L1), Err(Error::Metric { metric: 2, .. })));
    let mut idx = FlatIndex::new(4, Metric::L2).unwrap();
    assert!(matches!(idx.add(&[1.0; 6]), Err(Error::Shape { .. })));
    assert!(matches!(idx.add(&[1.0, 2.0, f32::NAN, 0.0]), Err(Error::NonFinite { row: 0, col: 2, .. })));
    idx.add(&normal(10, 4, 1)).unwrap();
    assert!(matches!(idx.search(&[1.0; 4], 0), Err(Error::InvalidK { .. })));
    assert!(matches!(idx.search(&[1.0; 5], 1), Err(Error::Shape { .. })));
}

#[test]
fn a_k_far_beyond_the_rows_costs_only_its_output() {
    // 100 rows, k = 2,000,000: the search keeps 100 candidates a query, the other slots are
    // empty; lists of k candidates a row (tens of bytes per slot) are never built.
    let mut idx = FlatIndex::new(4, Metric::L2).unwrap();
    idx.add(&normal(100, 4, 2)).unwrap();
    let k = 2_000_000;
    let (dist, labels) = idx.search(&normal(2, 4, 3), k).unwrap();
    assert_eq!((dist.len(), labels.len()), (2 * k, 2 * k));
    let (near, _) = idx.search(&normal(2, 4, 3), 100).unwrap();
    for q in 0..2 {
        assert_eq!(dist[q * k..q * k + 100], near[q * 100..q * 100 + 100]);
        assert!(labels[q * k + 100..(q + 1) * k].iter().all(|&l| l == -1));
        assert!(dist[q * k + 100..(q + 1) * k].iter().all(|&v| v == f32::MAX));
    }
    // Output that no memory could hold is refused, not attempted.
    assert!(matches!(idx.search(&normal(2, 4, 3), usize::MAX / 4), Err(Error::OutOfMemory { .. })));
}
