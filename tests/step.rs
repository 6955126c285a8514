//! The step API end to end: defaults, self-exclusion by index, f16/bf16 input, faiss-backed
//! factory strings and metrics, and every bad argument as a typed, named error.

use crate::common::data::{normal, tied};
use faiss_nn::{Device, Error, FaissNearestNeighbour};
use half::{bf16, f16};

#[test]
fn defaults_are_the_originals() {
    // k = 1, L2, CPU, flat: each row's single nearest other row.
    let x = vec![0.0f32, 0.0, 1.0, 0.0, 5.0, 0.0, 5.5, 0.0];
    let nn = FaissNearestNeighbour::new().run(&x, 2).unwrap();
    assert_eq!((nn.n, nn.k), (4, 1));
    assert_eq!(nn.indices, vec![1, 0, 3, 2]);
    assert_eq!(nn.scores, vec![1.0, 1.0, 0.25, 0.25]);
}

#[test]
fn inner_product_scores_are_descending_products() {
    let x = vec![1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0];
    let nn = FaissNearestNeighbour::new().metric_type(0).k(2).run(&x, 2).unwrap();
    assert_eq!(nn.indices_of(0), &[1, 2]);
    assert_eq!(nn.scores_of(0), &[0.9, 0.0]);
    assert!(nn.scores_of(1)[0] >= nn.scores_of(1)[1]);
}

#[test]
fn a_row_never_appears_in_its_own_list_even_among_duplicates() {
    let x = tied(400, 8, 11);
    for metric in [0, 1] {
        let nn = FaissNearestNeighbour::new().metric_type(metric).k(7).run(&x, 8).unwrap();
        for i in 0..400 {
            assert!(!nn.indices_of(i).contains(&(i as i64)), "metric {metric}: row {i} lists itself");
        }
    }
}

#[test]
fn exclude_self_false_keeps_the_row() {
    let x = normal(50, 4, 1);
    let nn = FaissNearestNeighbour::new().exclude_self(false).k(1).run(&x, 4).unwrap();
    for i in 0..50 {
        assert_eq!(nn.indices_of(i), &[i as i64]);
    }
}

#[test]
fn half_precision_inputs_are_widened() {
    let x = normal(200, 16, 5);
    let want = FaissNearestNeighbour::new().k(3).run(&x.iter().map(|v| f16::from_f32(*v).to_f32()).collect::<Vec<_>>(), 16).unwrap();
    let h: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
    assert_eq!(FaissNearestNeighbour::new().k(3).run(&h, 16).unwrap(), want);
    let b: Vec<bf16> = x.iter().map(|v| bf16::from_f32(*v)).collect();
    let want_b = FaissNearestNeighbour::new().k(3).run(&b.iter().map(|v| v.to_f32()).collect::<Vec<_>>(), 16).unwrap();
    assert_eq!(FaissNearestNeighbour::new().k(3).run(&b, 16).unwrap(), want_b);
}

#[test]
fn k_zero_and_k_beyond_n_minus_one_are_errors() {
    let x = normal(5, 3, 1);
    let e = FaissNearestNeighbour::new().k(0).run(&x, 3).unwrap_err();
    assert!(matches!(e, Error::InvalidK { k: 0, .. }), "{e}");
    let e = FaissNearestNeighbour::new().k(5).run(&x, 3).unwrap_err();
    assert!(matches!(e, Error::InvalidK { k: 5, .. }), "{e}");
    assert!(e.to_string().contains("n − 1"), "{e}");
    // k = n − 1: each list is every other row, in (score, index) order.
    let nn = FaissNearestNeighbour::new().k(4).run(&x, 3).unwrap();
    for i in 0..5 {
        let mut want: Vec<(f64, i64)> = (0..5)
            .filter(|&j| j != i)
            .map(|j| (crate::common::reference::score(faiss_nn::FlatMetric::L2, &x[i * 3..i * 3 + 3], &x[j * 3..j * 3 + 3]), j as i64))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        assert_eq!(nn.indices_of(i), want.iter().map(|w| w.1).collect::<Vec<_>>(), "row {i}");
        for (s, w) in nn.scores_of(i).iter().zip(&want) {
            assert!((f64::from(*s) - w.0).abs() <= 1e-6 * (1.0 + w.0), "row {i}: {s} vs {}", w.0);
        }
    }
}

/// Degenerate shapes: two rows, one dimension, every row identical (all distances tie at 0:
/// lists in index order), both metrics.
#[test]
fn two_rows_one_dimension_and_identical_rows() {
    for metric in [0i64, 1] {
        let nn = FaissNearestNeighbour::new().metric_type(metric).run(&[1.0f32, 3.0], 1).unwrap();
        assert_eq!((nn.indices_of(0), nn.indices_of(1)), (&[1i64][..], &[0i64][..]));
        let want = if metric == 1 { 4.0 } else { 3.0 };
        assert_eq!((nn.scores_of(0)[0], nn.scores_of(1)[0]), (want, want));
        let same = vec![0.25f32; 6 * 4];
        let nn = FaissNearestNeighbour::new().metric_type(metric).k(5).run(&same, 4).unwrap();
        for i in 0..6 {
            let others: Vec<i64> = (0..6i64).filter(|&j| j != i as i64).collect();
            assert_eq!(nn.indices_of(i), &others[..], "metric {metric}, row {i}");
            let s = if metric == 1 { 0.0 } else { 0.25 };
            assert!(nn.scores_of(i).iter().all(|v| *v == s), "metric {metric}, row {i}: {:?}", nn.scores_of(i));
        }
    }
}

#[test]
fn empty_ragged_and_non_finite_input_are_named() {
    let e = FaissNearestNeighbour::new().run::<f32>(&[], 3).unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e}");
    let e = FaissNearestNeighbour::new().run(&[1.0f32; 7], 3).unwrap_err();
    assert!(matches!(e, Error::Shape { len: 7, d: 3, .. }), "{e}");
    let rows: Vec<Vec<f32>> = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0]];
    let e = faiss_nn::data::flatten_rows(&rows, "embeddings").unwrap_err();
    assert!(matches!(e, Error::Ragged { row: 2, len: 1, expected: 2, .. }), "{e}");
    let mut x = normal(10, 4, 2);
    x[4 * 6 + 3] = f32::NAN;
    let e = FaissNearestNeighbour::new().run(&x, 4).unwrap_err();
    assert!(matches!(e, Error::NonFinite { row: 6, col: 3, .. }), "{e}");
    x[4 * 6 + 3] = f32::NEG_INFINITY;
    assert!(FaissNearestNeighbour::new().run(&x, 4).unwrap_err().to_string().contains("row 6, component 3"));
}

#[test]
fn unknown_metric_and_lp_are_refused() {
    let x = normal(10, 4, 2);
    let e = FaissNearestNeighbour::new().metric_type(99).run(&x, 4).unwrap_err();
    assert!(matches!(e, Error::Metric { metric: 99, .. }), "{e}");
    let e = FaissNearestNeighbour::new().metric_type(4).run(&x, 4).unwrap_err();
    assert!(e.to_string().contains("metric_arg"), "{e}");
}

#[test]
fn a_gpu_device_without_cuda_is_a_clear_error() {
    let x = normal(10, 4, 2);
    for dev in [Device::from_id(0), Device::AllCuda, Device::Cuda(vec![0, 0])] {
        let e = FaissNearestNeighbour::new().device(dev.clone()).run(&x, 4).unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. } | Error::BadDevice { .. }), "{dev}: {e}");
        assert!(e.to_string().to_lowercase().contains("cuda"), "{e}");
    }
}

#[test]
fn device_strings_parse_as_the_original_takes_them() {
    assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
    assert_eq!("0".parse::<Device>().unwrap(), Device::Cuda(vec![0]));
    assert_eq!("-1".parse::<Device>().unwrap(), Device::AllCuda);
    assert_eq!("1,0,0".parse::<Device>().unwrap(), Device::Cuda(vec![1, 0, 0]));
    for bad in ["", "gpu", "0,-1", "1,x"] {
        assert!(matches!(bad.parse::<Device>(), Err(Error::InvalidArgument { .. })), "{bad:?}");
    }
}

#[test]
fn search_batch_size_zero_is_refused() {
    let x = normal(10, 4, 2);
    let e = FaissNearestNeighbour::new().search_batch_size(0).run(&x, 4).unwrap_err();
    assert!(e.to_string().contains("search_batch_size"), "{e}");
}

#[cfg(feature = "faiss")]
mod faiss_backed {
    use super::*;

    #[test]
    fn ivf_and_hnsw_run_and_exclude_the_row_itself() {
        let x = normal(2000, 16, 9);
        for factory in ["IVF16,Flat", "HNSW16", "IVF8,PQ4"] {
            let nn = FaissNearestNeighbour::new().string_factory(Some(factory)).k(5).search_batch_size(128).run(&x, 16).unwrap();
            assert_eq!(nn.indices.len(), 2000 * 5);
            let mut found = 0;
            for i in 0..2000 {
                assert!(!nn.indices_of(i).contains(&(i as i64)), "{factory}: row {i}");
                found += nn.indices_of(i).iter().filter(|j| **j >= 0).count();
                let s = nn.scores_of(i);
                assert!(s.windows(2).all(|w| w[0] <= w[1]), "{factory}: row {i} not ascending: {s:?}");
            }
            assert!(found > 2000 * 4, "{factory}: only {found} neighbours found");
        }
    }

    #[test]
    fn faiss_flat_with_other_metrics() {
        let x = normal(300, 8, 4);
        let nn = FaissNearestNeighbour::new().metric_type(2).k(3).run(&x, 8).unwrap(); // L1
        let l1 = |a: usize, b: usize| (0..8).map(|t| (x[a * 8 + t] - x[b * 8 + t]).abs()).sum::<f32>();
        for i in [0usize, 17, 299] {
            let ids = nn.indices_of(i);
            assert!(!ids.contains(&(i as i64)));
            assert!((nn.scores_of(i)[0] - l1(i, ids[0] as usize)).abs() < 1e-4);
            let best = (0..300).filter(|j| *j != i).map(|j| l1(i, j)).fold(f32::INFINITY, f32::min);
            assert!((nn.scores_of(i)[0] - best).abs() < 1e-4);
        }
    }

    #[test]
    fn flat_string_factory_is_our_exact_search() {
        let x = normal(300, 8, 4);
        let a = FaissNearestNeighbour::new().string_factory(Some("Flat")).k(4).run(&x, 8).unwrap();
        let b = FaissNearestNeighbour::new().k(4).run(&x, 8).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn invalid_factory_string_names_it() {
        let x = normal(100, 8, 4);
        let e = FaissNearestNeighbour::new().string_factory(Some("Bogus12")).run(&x, 8).unwrap_err();
        assert!(e.to_string().contains("Bogus12"), "{e}");
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    }

    #[test]
    fn too_few_rows_to_train_is_refused_before_faiss() {
        let x = normal(100, 8, 4);
        let e = FaissNearestNeighbour::new().string_factory(Some("IVF256,Flat")).run(&x, 8).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("IVF256") && msg.contains("training rows") && msg.contains("there are 100"), "{msg}");
        // The training sample caps the rows k-means sees.
        let e = FaissNearestNeighbour::new().string_factory(Some("IVF64,Flat")).train_sample(50).run(&x, 8).unwrap_err();
        assert!(e.to_string().contains("there are 50"), "{e}");
    }

    #[test]
    fn search_params_reach_faiss_and_are_checked() {
        let x = normal(2000, 16, 5);
        let run = |p: Option<&str>| FaissNearestNeighbour::new().string_factory(Some("IVF64,Flat")).k(10).search_params(p).run(&x, 16);
        let exact = FaissNearestNeighbour::new().k(10).run(&x, 16).unwrap();
        let recall = |nn: &faiss_nn::Neighbours| {
            (0..2000).map(|i| nn.indices_of(i).iter().filter(|j| exact.indices_of(i).contains(j)).count()).sum::<usize>() as f64 / 20_000.0
        };
        // nprobe = nlist visits every list: exact; the default (1) does not.
        let (one, all) = (recall(&run(None).unwrap()), recall(&run(Some("nprobe=64")).unwrap()));
        assert!(all > 0.999 && one < 0.9, "recall nprobe 1: {one}, nprobe 64: {all}");
        let e = run(Some("efSearch=16")).unwrap_err().to_string();
        assert!(e.contains("efSearch") && e.contains("IVF64,Flat") && e.contains("graph search"), "{e}");
        // faiss's own text (a C++ signature, a source path) is not the user's business.
        assert!(!e.contains("faiss::") && !e.contains(".cpp"), "{e}");
        let e = run(Some("nprobe=-1")).unwrap_err().to_string();
        assert!(e.contains("from 1 to"), "{e}");
        let e = FaissNearestNeighbour::new().search_params(Some("nprobe=4")).run(&x, 16).unwrap_err().to_string();
        assert!(e.contains("exact flat search has no search parameters"), "{e}");
        let hnsw = |p: &str| recall(&FaissNearestNeighbour::new().string_factory(Some("HNSW8")).k(10).search_params(Some(p)).run(&x, 16).unwrap());
        let (narrow, wide) = (hnsw("efSearch=1"), hnsw("efSearch=256"));
        assert!(wide > 0.99 && wide > narrow + 0.02, "HNSW recall efSearch 1: {narrow}, 256: {wide}");
        // RFlat re-ranks k_factor_rf × k candidates by their exact distances.
        let refine = |p: &str| recall(&FaissNearestNeighbour::new().string_factory(Some("PQ4np,RFlat")).k(10).search_params(Some(p)).run(&x, 16).unwrap());
        let (one, many) = (refine("k_factor_rf=1"), refine("k_factor_rf=64"));
        assert!(many > one + 0.1, "PQ4,RFlat recall k_factor_rf 1: {one}, 64: {many}");
    }

    #[test]
    fn a_faiss_index_on_a_gpu_is_refused() {
        let x = normal(100, 8, 4);
        let e = FaissNearestNeighbour::new().string_factory(Some("HNSW8")).device(Device::from_id(0)).run(&x, 8).unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    }
}

/// Progress that asks to stop once `after` units are done (a caller's Ctrl-C).
struct StopAfter {
    after: u64,
    done: std::sync::atomic::AtomicU64,
}

impl faiss_nn::Progress for StopAfter {
    fn start(&self, _: u64) {}
    fn advance(&self, units: u64) {
        self.done.fetch_add(units, std::sync::atomic::Ordering::Relaxed);
    }
    fn cancelled(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::Relaxed) >= self.after
    }
}

#[test]
fn a_cancelled_search_stops_with_cancelled() {
    let x = normal(3000, 16, 4);
    let stop = || StopAfter { after: 1, done: Default::default() };
    let kinds = |r: faiss_nn::Result<faiss_nn::Neighbours>| r.map(|_| ()).map_err(|e| (e.kind(), e.to_string()));
    // The symmetric CPU join (small tiles: many units), the term-by-term search and a faiss index.
    let step = FaissNearestNeighbour::new().k(5).memory_budget(1 << 20);
    let (kind, message) = kinds(step.run_with_progress(&x, 16, &stop())).unwrap_err();
    assert_eq!(kind, faiss_nn::ErrorKind::Cancelled, "{message}");
    assert!(message.contains("cancelled"), "{message}");
    for step in [FaissNearestNeighbour::new().k(5).metric_type(2), FaissNearestNeighbour::new().k(5).string_factory(Some("HNSW16"))] {
        assert_eq!(kinds(step.run_with_progress(&x, 16, &stop())).unwrap_err().0, faiss_nn::ErrorKind::Cancelled);
    }
    // FlatIndex: queries against the stored rows.
    let mut index = faiss_nn::FlatIndex::new(16, faiss_nn::Metric::L2).unwrap();
    index.add(&x).unwrap();
    let e = index.search_with_progress(&x, 3, &stop()).unwrap_err();
    assert_eq!(e.kind(), faiss_nn::ErrorKind::Cancelled, "{e}");
    // Not asked to stop: the same calls finish.
    assert!(index.search_with_progress(&x[..160], 3, &StopAfter { after: u64::MAX, done: Default::default() }).is_ok());
}
