//! Our CPU flat backend against the naive f64 reference: both metrics, symmetric and blocked
//! paths, the AVX2 and portable kernels, tiny memory budgets, exact ties and duplicates.

use crate::common::data::{normal, tied};
use crate::common::parity::{compare_row, max_norm2, tolerance, Row};
use crate::common::reference::{knn, score};
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::{FlatMetric, NoProgress, Vectors};
use proptest::prelude::*;

/// Runs `searcher` on a self-join (or a foreign query set) and checks every row against the f64
/// reference, including each returned index's true score.
fn check(searcher: &CpuSearcher, metric: FlatMetric, q: &[f32], x: &[f32], d: usize, k: usize, self_join: bool) -> Result<(), String> {
    let xv = Vectors::new(x, d, "x").unwrap();
    let qv = if self_join { xv } else { Vectors::new(q, d, "q").unwrap() };
    let job = if self_join { FlatJob::self_join(xv, metric, k, &NoProgress) } else { FlatJob::search(qv, xv, metric, k, &NoProgress) };
    let got = searcher.search(&job).map_err(|e| e.to_string())?.into_neighbours(metric);
    let want = knn(metric, qv.as_slice(), x, d, k, self_join);
    let tol = tolerance(max_norm2(x, d).max(max_norm2(qv.as_slice(), d)));
    for (i, want_i) in want.iter().enumerate() {
        let mut w_ids: Vec<i64> = want_i.iter().map(|p| p.0).collect();
        let mut w_sc: Vec<f32> = want_i.iter().map(|p| p.1 as f32).collect();
        w_ids.resize(k, -1);
        w_sc.resize(k, if metric == FlatMetric::L2 { f32::INFINITY } else { f32::NEG_INFINITY });
        let exact = |id: i64| score(metric, qv.row(i), xv.row(id as usize));
        compare_row(metric, Row { ids: got.indices_of(i), scores: got.scores_of(i) }, Row { ids: &w_ids, scores: &w_sc }, tol, Some(&exact))
            .map_err(|e| format!("row {i}: {e}"))?;
        if self_join && got.indices_of(i).contains(&(i as i64)) {
            return Err(format!("row {i} is in its own list"));
        }
    }
    Ok(())
}

fn metric_strategy() -> impl Strategy<Value = FlatMetric> {
    prop_oneof![Just(FlatMetric::L2), Just(FlatMetric::InnerProduct)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random shapes (several tiles, ragged last tiles), ties and duplicates, both kernels,
    /// symmetric and blocked, a budget small enough to force the smallest tiles.
    #[test]
    fn self_join_matches_f64_reference(n in 2usize..260, d in prop_oneof![Just(1usize), 1usize..70], k_frac in 0.0f64..=1.0, metric in metric_strategy(),
                                       ties in any::<bool>(), seed in any::<u64>(), variant in 0usize..4) {
        // k over 1 ..= n − 1: the square keeps small k common, k_frac = 1 reaches n − 1.
        let k = (1 + ((n - 1) as f64 * k_frac * k_frac) as usize).min(n - 1);
        let x = if ties { tied(n, d, seed) } else { normal(n, d, seed) };
        let s = match variant {
            0 => CpuSearcher::new(),
            1 => CpuSearcher::new().symmetric(false),
            2 => CpuSearcher::new().portable().threads(3),
            _ => CpuSearcher::new().memory_budget(64 << 10).threads(2),
        };
        check(&s, metric, &[], &x, d, k, true).map_err(TestCaseError::fail)?;
    }

    /// Foreign queries against a database, k possibly larger than the database.
    #[test]
    fn query_search_matches_f64_reference(nq in 1usize..120, nx in 1usize..200, d in 1usize..50, k in 1usize..20,
                                          metric in metric_strategy(), seed in any::<u64>()) {
        let q = normal(nq, d, seed);
        let x = tied(nx, d, seed ^ 1);
        check(&CpuSearcher::new(), metric, &q, &x, d, k, false).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn larger_self_join_both_paths_agree_exactly() {
    // 1,000 × 96: many tiles; the symmetric and blocked paths compute the same products in the
    // same order, so their results are identical, not just close.
    let x = normal(1000, 96, 7);
    let v = Vectors::new(&x, 96, "x").unwrap();
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let job = FlatJob::self_join(v, metric, 10, &NoProgress);
        let sym = CpuSearcher::new().search(&job).unwrap();
        let blk = CpuSearcher::new().symmetric(false).search(&job).unwrap();
        assert!(CpuSearcher::new().plan(&job).symmetric);
        assert_eq!(sym.ids, blk.ids, "{metric:?}");
        assert_eq!(sym.keys, blk.keys, "{metric:?}");
        check(&CpuSearcher::new(), metric, &[], &x, 96, 10, true).unwrap();
    }
}

#[test]
fn large_k_self_joins_with_sampled_ceilings_agree_exactly_with_the_blocked_path() {
    // k = 600 of 6,000 rows: the symmetric join samples rows for per-row ceilings (see
    // flat::cpu::ceiling); a ceiling filters, it must never change a list. Random rows and rows
    // full of exact ties and duplicates, both metrics.
    let d = 16;
    for (what, x) in [("normal", normal(6000, d, 11)), ("tied", tied(6000, d, 12))] {
        let v = Vectors::new(&x, d, "x").unwrap();
        for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
            let job = FlatJob::self_join(v, metric, 600, &NoProgress);
            assert!(CpuSearcher::new().plan(&job).symmetric);
            let sym = CpuSearcher::new().search(&job).unwrap();
            let blk = CpuSearcher::new().symmetric(false).search(&job).unwrap();
            assert_eq!(sym.ids, blk.ids, "{what} {metric:?}");
            assert_eq!(sym.keys, blk.keys, "{what} {metric:?}");
        }
    }
    check(&CpuSearcher::new(), FlatMetric::L2, &[], &normal(6000, d, 11), d, 600, true).unwrap();
}

#[test]
fn lists_handed_over_block_by_block_equal_the_whole_lists() {
    // search_each: the symmetric join's lists block by block (each state freed as its block is
    // handed over), in row order, covering every row once, equal to search()'s, for heaps
    // (small k), threshold buffers (k = 48), ceilings (k = 600: handed over whole) and the
    // cross search (one block).
    let d = 16;
    let x = tied(6000, d, 21);
    let v = Vectors::new(&x, d, "x").unwrap();
    for (k, searcher) in
        [(5, CpuSearcher::new()), (48, CpuSearcher::new().memory_budget(1 << 20)), (600, CpuSearcher::new()), (5, CpuSearcher::new().symmetric(false))]
    {
        let job = FlatJob::self_join(v, FlatMetric::L2, k, &NoProgress);
        let whole = searcher.search(&job).unwrap();
        let (mut keys, mut ids, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        searcher
            .search_each(&job, &mut |first, lists| {
                starts.push((first, lists.n()));
                keys.extend_from_slice(&lists.keys);
                ids.extend_from_slice(&lists.ids);
                Ok(())
            })
            .unwrap();
        let mut next = 0;
        for &(first, n) in &starts {
            assert_eq!(first, next, "k {k}: blocks {starts:?} out of order");
            next += n;
        }
        assert_eq!(next, 6000, "k {k}: blocks {starts:?}");
        let streamed = searcher.plan(&job).symmetric && k < 600;
        assert_eq!(starts.len() > 1, streamed, "k {k}: blocks {starts:?}");
        assert_eq!((ids, keys), (whole.ids, whole.keys), "k {k}");
    }
}

#[test]
fn exact_duplicates_are_neighbours_and_the_row_itself_never_is() {
    // Rows 0, 1, 2 identical; 3 elsewhere. Row 0's nearest are 1 and 2 at distance 0, by index.
    let d = 4;
    let x = vec![1., 2., 3., 4., 1., 2., 3., 4., 1., 2., 3., 4., 9., 9., 9., 9.];
    let v = Vectors::new(&x, d, "x").unwrap();
    let got = CpuSearcher::new().search(&FlatJob::self_join(v, FlatMetric::L2, 2, &NoProgress)).unwrap();
    assert_eq!(got.row(0).1, &[1, 2]);
    assert_eq!(got.row(1).1, &[0, 2]);
    assert_eq!(got.row(2).1, &[0, 1]);
    assert_eq!(got.row(0).0, &[0.0, 0.0]);
    assert_eq!(got.row(3).1, &[0, 1]);
}

#[test]
fn a_tiny_budget_keeps_the_symmetric_join_and_its_result() {
    let x = normal(300, 16, 3);
    let v = Vectors::new(&x, 16, "x").unwrap();
    let job = FlatJob::self_join(v, FlatMetric::L2, 5, &NoProgress);
    let small = CpuSearcher::new().memory_budget(32 << 10);
    let plan = small.plan(&job);
    assert!(plan.symmetric && plan.block == plan.q_tile.min(plan.db_tile), "{plan:?}");
    assert_eq!(small.search(&job).unwrap(), CpuSearcher::new().search(&job).unwrap());
}

/// The symmetric path is planned at 300,000 rows with the default budget (it holds one set of
/// top-k lists, the size of the output, whatever n is).
#[test]
fn the_symmetric_join_is_planned_at_300k_rows() {
    let x = vec![0f32; 300_000 * 4];
    let v = Vectors::new(&x, 4, "x").unwrap();
    for k in [10, 1000] {
        let plan = CpuSearcher::new().plan(&FlatJob::self_join(v, FlatMetric::L2, k, &NoProgress));
        assert!(plan.symmetric, "k {k}: {plan:?}");
    }
}
