//! "Exact" means exact: data far from the origin (where ‖q‖² + ‖x‖² − 2·q·x cancels in f32),
//! duplicates, inner products near f32's range. The step, the index and the engine give the f64
//! reference's neighbours (tie-aware) with scores within 1e-6 relative.

use crate::common::data::{normal, Rng};
use crate::common::parity::{compare_row, Row};
use crate::common::reference::{knn, score};
use faiss_nn::engine::{Engine, EngineOptions};
use faiss_nn::{Device, Error, FaissNearestNeighbour, FlatIndex, FlatMetric, Metric, NoProgress};

/// `n` rows of `offset + 0.01·noise`, 384-d.
fn offset_rows(n: usize, offset: f32, seed: u64) -> Vec<f32> {
    normal(n, 384, seed).into_iter().map(|v| offset + 0.01 * v).collect()
}

/// Checks lists against the f64 reference: tie-aware, every score within `rel` of the largest
/// reference score of its row (relative), and each listed index's true score.
fn check(metric: FlatMetric, q: &[f32], x: &[f32], d: usize, k: usize, self_join: bool, ids: &[i64], scores: &[f32], rel: f64) -> Result<(), String> {
    let want = knn(metric, q, x, d, k, self_join);
    for (i, w) in want.iter().enumerate() {
        let w_ids: Vec<i64> = w.iter().map(|p| p.0).collect();
        let w_sc: Vec<f32> = w.iter().map(|p| p.1 as f32).collect();
        let scale = w.iter().map(|p| p.1.abs()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        let tol = rel * scale;
        let exact = |id: i64| score(metric, &q[i * d..(i + 1) * d], &x[id as usize * d..(id as usize + 1) * d]);
        let got_ids = &ids[i * k..(i + 1) * k];
        let got = Row { ids: got_ids, scores: &scores[i * k..(i + 1) * k] };
        compare_row(metric, got, Row { ids: &w_ids, scores: &w_sc }, tol, Some(&exact)).map_err(|e| format!("row {i}: {e}"))?;
        if self_join && got_ids.contains(&(i as i64)) {
            return Err(format!("row {i} lists itself"));
        }
    }
    Ok(())
}

#[test]
fn far_from_the_origin_l2_is_exact() {
    let (n, d, k) = (600, 384, 10);
    for offset in [0.0f32, 10.0, 300.0, 1000.0] {
        let x = offset_rows(n, offset, 7);
        let nn = FaissNearestNeighbour::new().k(k).run(&x, d).unwrap();
        check(FlatMetric::L2, &x, &x, d, k, true, &nn.indices, &nn.scores, 1e-6).unwrap_or_else(|e| panic!("offset {offset}: {e}"));
        assert!(nn.scores.iter().all(|s| *s > 0.0), "offset {offset}: a distinct pair scored 0");
        // Foreign queries through the index.
        let q = offset_rows(40, offset, 8);
        let mut idx = FlatIndex::new(d, Metric::L2).unwrap();
        idx.add(&x).unwrap();
        let (dist, labels) = idx.search(&q, k).unwrap();
        check(FlatMetric::L2, &q, &x, d, k, false, &labels, &dist, 1e-6).unwrap_or_else(|e| panic!("offset {offset}, index: {e}"));
    }
}

#[test]
fn duplicates_score_exactly_zero_far_from_the_origin() {
    let d = 384;
    for offset in [0.0f32, 1000.0] {
        let base = offset_rows(200, offset, 3);
        let x: Vec<f32> = base.iter().chain(&base).chain(&base).copied().collect();
        let nn = FaissNearestNeighbour::new().k(2).run(&x, d).unwrap();
        for i in 0..600 {
            let mut want: Vec<i64> = [0, 200, 400].iter().map(|o| ((i % 200) + o) as i64).filter(|j| *j != i as i64).collect();
            want.sort();
            assert_eq!(nn.indices_of(i), &want[..], "offset {offset}, row {i}");
            assert_eq!(nn.scores_of(i), &[0.0, 0.0], "offset {offset}, row {i}");
        }
    }
}

#[test]
fn inner_product_far_from_the_origin_is_exact() {
    let (n, d, k) = (500, 384, 10);
    for offset in [0.0f32, 10.0, 1000.0] {
        let x = offset_rows(n, offset, 11);
        let nn = FaissNearestNeighbour::new().metric_type(0).k(k).run(&x, d).unwrap();
        check(FlatMetric::InnerProduct, &x, &x, d, k, true, &nn.indices, &nn.scores, 1e-6).unwrap_or_else(|e| panic!("offset {offset}: {e}"));
    }
}

#[test]
fn products_beyond_f32_are_refused_naming_the_row() {
    let d = 8;
    let mut x = normal(20, d, 1);
    for v in &mut x[5 * d..6 * d] {
        *v = 1e19;
    }
    for metric in [0, 1] {
        let e = FaissNearestNeighbour::new().metric_type(metric).run(&x, d).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().contains("row 5") && e.to_string().contains("overflow"), "{e}");
    }
    let mut idx = FlatIndex::new(d, Metric::InnerProduct).unwrap();
    assert!(idx.add(&x).unwrap_err().to_string().contains("row 5"));
}

/// faiss sums over rows in f32 and, on rows too large for those sums, crashes (IVF training: a
/// bus error), loops (PQ) or returns empty lists (HNSW) instead of failing: its factories get
/// the exact path's refusal, and a total check besides (rows each fine, their sum too large).
#[cfg(feature = "faiss")]
#[test]
fn faiss_never_sees_rows_too_large_for_its_sums() {
    let d = 8;
    let scaled = |s: f32| normal(300, d, 3).into_iter().map(|v| v * s).collect::<Vec<f32>>();
    // faiss METRIC_*: 0 inner product, 1 L2, 2 L1 (faiss's flat and HNSW indexes only).
    for (factory, metrics) in [("IVF4,Flat", &[0, 1][..]), ("PQ2", &[0, 1]), ("HNSW8", &[0, 1, 2]), ("PCA4,Flat", &[1])] {
        for &metric in metrics {
            let run = |x: &[f32]| FaissNearestNeighbour::new().string_factory(Some(factory)).metric_type(metric).k(3).run(x, d);
            // One row too large on its own: named.
            let mut x = scaled(1.0);
            x[7 * d] = 1e30;
            let e = run(&x).err().unwrap_or_else(|| panic!("{factory}, metric {metric}: a row of 1e30 ran"));
            assert!(matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("row 7"), "{factory}, metric {metric}: {e}");
            // Every row below the exact path's limit, their sum above it.
            let e = run(&scaled(1e18)).err().unwrap_or_else(|| panic!("{factory}, metric {metric}: rows of 1e18 ran"));
            assert!(matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("sum to"), "{factory}, metric {metric}: {e}");
            // Large but summable rows still run, with the lists of the unscaled rows: scaling by a
            // power of two is exact, so IVF's, PQ's and HNSW's every comparison is the same (HNSW's
            // graph is built on one thread: the same graph every run). PCA's eigen-solver need not
            // scale exactly: it is held to 90 % of the same entries.
            let big = run(&scaled(2f32.powi(50))).unwrap_or_else(|e| panic!("{factory}, metric {metric}: {e}"));
            let small = run(&scaled(1.0)).unwrap();
            assert!(big.indices.iter().all(|&i| i >= 0), "{factory}, metric {metric}: an empty slot");
            if !factory.starts_with("PCA") {
                assert_eq!(big.indices, small.indices, "{factory}, metric {metric}");
            } else {
                let same = big.indices.iter().zip(&small.indices).filter(|(a, b)| a == b).count();
                assert!(same * 10 >= big.indices.len() * 9, "{factory}, metric {metric}: {same} of {} entries equal", big.indices.len());
            }
        }
    }
}

/// `SQfp16` stores float16 (alone or under an HNSW graph): a value beyond 65504 is refused by
/// name, not turned into infinity.
#[cfg(feature = "faiss")]
#[test]
fn sq_fp16_refuses_values_beyond_float16() {
    let d = 8;
    let mut x = normal(300, d, 4);
    x[5 * d + 2] = 1e5;
    // SQfp16 alone and as the code of an HNSW graph's rows.
    for factory in ["SQfp16", "HNSW8,SQfp16", "HNSW8_SQfp16"] {
        let e = FaissNearestNeighbour::new().string_factory(Some(factory)).k(3).run(&x, d).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("row 5, component 2") && e.to_string().contains("65504"),
            "{factory}: {e}"
        );
    }
    x[5 * d + 2] = 6e4;
    FaissNearestNeighbour::new().string_factory(Some("SQfp16")).k(3).run(&x, d).unwrap();
    x[5 * d + 2] = 1e5;
    FaissNearestNeighbour::new().string_factory(Some("SQbf16")).k(3).run(&x, d).unwrap();
}

/// On ordinary data almost every row's set is proven from the candidates (the f64 brute force
/// is a rare fallback, not the common path), and the result is the reference's.
#[test]
fn proofs_succeed_on_real_rows() {
    let (x, d) = crate::common::data::demo_embeddings();
    let engine = Engine::open(&Device::Cpu, EngineOptions::default()).unwrap();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let shard = engine.load_shard(&x, d, 0, metric).unwrap();
        let (lists, stats) = shard.self_join_with_stats(10, &NoProgress).unwrap();
        let n = x.len() / d;
        assert!(stats.brute_force_rows * 100 <= n, "{metric:?}: {} of {n} rows needed the brute force", stats.brute_force_rows);
        let nn = lists.into_neighbours(metric);
        let rows = 300; // the reference is O(n²·d): check a prefix of the rows
        check(metric, &x[..rows * d], &x, d, 10, true, &nn.indices[..rows * 10], &nn.scores[..rows * 10], 1e-6).unwrap();
    }
}

/// Ties at the cut (small integers, heavy duplication) make proofs fail; the brute force then
/// gives exactly the reference's lists, lowest indices first among equal scores.
#[test]
fn unprovable_rows_fall_back_to_the_exact_answer() {
    let mut rng = Rng::new(5);
    let (n, d, k) = (300, 6, 12);
    let x: Vec<f32> = (0..n * d).map(|_| (rng.below(2) as f32) * 1000.0 + 7.0).collect();
    let engine = Engine::open(&Device::Cpu, EngineOptions::default()).unwrap();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let (lists, stats) = engine.load_shard(&x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
        assert!(stats.brute_force_rows + stats.widened_rows > 0, "{metric:?}: the test data should defeat some proofs");
        let want = knn(metric, &x, &x, d, k, true);
        for (i, w) in want.iter().enumerate() {
            let ids: Vec<i64> = w.iter().map(|p| p.0).collect();
            assert_eq!(lists.row(i).1, &ids[..], "{metric:?} row {i}");
        }
    }
}

/// Exact duplicates put a tie group at the cut of every row (a row's copies, or its nearest
/// row's): the candidates cannot prove the set, so the rows are searched again with more
/// candidates, which passes the group, and none needs the f64 brute force over the whole data
/// (which made such data tens of times slower). The lists are the reference's, lowest indices
/// first among equal scores.
#[test]
fn duplicated_rows_are_proven_by_wider_searches() {
    let d = 16;
    let distinct = normal(200, d, 21);
    for (copies, k) in [(6, 1), (8, 10)] {
        let x: Vec<f32> = (0..copies).flat_map(|_| distinct.iter().copied()).collect();
        let engine = Engine::open(&Device::Cpu, EngineOptions::default()).unwrap();
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
            let (lists, stats) = engine.load_shard(&x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
            assert!(stats.widened_rows > 0, "{metric:?} copies {copies} k {k}: the copies should defeat the first proofs");
            assert_eq!(stats.brute_force_rows, 0, "{metric:?} copies {copies} k {k}: {stats:?}");
            let want = knn(metric, &x, &x, d, k, true);
            for (i, w) in want.iter().enumerate() {
                let ids: Vec<i64> = w.iter().map(|p| p.0).collect();
                assert_eq!(lists.row(i).1, &ids[..], "{metric:?} copies {copies} k {k} row {i}");
            }
        }
    }
}

/// Large k (threshold buffers in the join, many candidates re-scored per row, packed ranking)
/// on rows whose scores differ by less than the f32 kernels' error: the lists are still the
/// reference's, whether a row's set was proven or recomputed.
#[test]
fn large_k_near_ties_are_ranked_exactly() {
    let mut rng = Rng::new(11);
    let (n, d) = (400, 64);
    let noise = normal(n, d, 12);
    let x: Vec<f32> = noise.iter().map(|e| (rng.below(2) as f32) + 100.0 + 2e-5 * e).collect();
    let mut brute = 0;
    let engine = Engine::open(&Device::Cpu, EngineOptions::default()).unwrap();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        for k in [40, 200, n - 1] {
            let (lists, stats) = engine.load_shard(&x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap();
            brute += stats.brute_force_rows;
            let nn = lists.into_neighbours(metric);
            check(metric, &x, &x, d, k, true, &nn.indices, &nn.scores, 1e-6).unwrap_or_else(|e| panic!("{metric:?} k = {k}: {e}"));
        }
    }
    assert!(brute > 0, "the data should defeat some proofs, so that the fallback runs at large k too");
}

/// Keys are the exact values correctly rounded, not their f64 sums rounded: the query
/// `(1, 2⁻²⁴, 2⁻⁶⁰)` against row 0 `(1, 1, 1)` has the exact product `1 + 2⁻²⁴ + 2⁻⁶⁰`, just
/// above the midpoint between 1 and 1 + 2⁻²³, so it rounds up to 1 + 2⁻²³ (its f64 sum drops
/// the 2⁻⁶⁰, lands on the midpoint and would round to the even 1); row 1 `(1, 2, 0)` scores
/// exactly 1 + 2⁻²³. The two tie, and the lower index comes first. Likewise for L2, where
/// row 0's distance from `(0, 0, 0)`, `1 + 2⁻²⁴ + 2⁻⁶⁰` again, ties with row 1's 1 + 2⁻²³.
#[test]
fn keys_are_exact_values_rounded_once() {
    let (h, t) = (2f32.powi(-24), 2f32.powi(-60));
    let mut ip = FlatIndex::new(3, Metric::InnerProduct).unwrap();
    ip.add(&[1.0, 1.0, 1.0, 1.0, 2.0, 0.0]).unwrap();
    let (scores, ids) = ip.search(&[1.0, h, t], 2).unwrap();
    assert_eq!((ids, scores), (vec![0, 1], vec![1.0 + 2.0 * h; 2]));
    // Squares: row 0 is 1 + (2⁻¹²)² + (2⁻³⁰)² = 1 + 2⁻²⁴ + 2⁻⁶⁰, row 1 1 + 2·(2⁻¹²)² = 1 + 2⁻²³.
    let mut l2 = FlatIndex::new(3, Metric::L2).unwrap();
    let (a, b) = (2f32.powi(-12), 2f32.powi(-30));
    l2.add(&[1.0, a, b, 1.0, a, a]).unwrap();
    let (scores, ids) = l2.search(&[0.0, 0.0, 0.0], 2).unwrap();
    assert_eq!((ids, scores), (vec![0, 1], vec![1.0 + 2.0 * h; 2]));
    // A range search reports the same scores.
    let r = ip.range_search(&[1.0, h, t], 0.5).unwrap();
    assert_eq!((r.labels, r.distances), (vec![0, 1], vec![1.0 + 2.0 * h; 2]));
    let r = l2.range_search(&[0.0, 0.0, 0.0], 2.0).unwrap();
    assert_eq!((r.labels, r.distances), (vec![0, 1], vec![1.0 + 2.0 * h; 2]));
    // A range search decides on the exact value: `1 + 2⁻²⁴ + 2⁻⁵² + 2⁻⁶⁰` is above the radius
    // `1 + 2⁻²⁴ + 2⁻⁵²`, which its f64 sum equals (the 2⁻⁶⁰ dropped).
    let mut ip = FlatIndex::new(4, Metric::InnerProduct).unwrap();
    ip.add(&[1.0, h, 2f32.powi(-52), t]).unwrap();
    let radius = 1.0 + h as f64 + 2f64.powi(-52);
    let r = ip.range_search(&[1.0; 4], radius).unwrap();
    assert_eq!(r.labels, vec![0], "the exact inner product passes the radius");
    let r = ip.range_search(&[1.0; 4], radius + f64::EPSILON).unwrap();
    assert_eq!(r.labels, Vec::<i64>::new());
}
