//! The threshold join, range search and duplicate groups against a brute-force f64 reference:
//! the same pairs (a pair listed if and only if its f64 score passes), scores equal to the f64
//! score rounded to f32, groups equal to the reference's connected components, and results that
//! do not depend on threads or memory budgets.

use crate::common::data::{normal, tied, Rng};
use crate::common::reference::score;
use faiss_nn::dedup::{Dedup, Groups, Keep, RankValues};
use faiss_nn::range::{Pair, RangeJoin};
use faiss_nn::{Error, FlatIndex, FlatMetric, Metric, NoProgress};

/// [`tied`] rows with no zero row (a zero row has no cosine): such a row gets a 1 in front.
fn tied_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut x = tied(n, d, seed);
    for row in x.chunks_mut(d) {
        if row.iter().all(|v| *v == 0.0) {
            row[0] = 1.0;
        }
    }
    x
}

/// Every pair `i < j` whose f64 score passes `t` (faiss's convention), with its f64 score.
fn brute_pairs(metric: FlatMetric, x: &[f32], d: usize, t: f64) -> Vec<(i64, i64, f64)> {
    let n = x.len() / d;
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let s = score(metric, &x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
            let pass = if metric == FlatMetric::L2 { s < t } else { s > t };
            if pass {
                out.push((i as i64, j as i64, s));
            }
        }
    }
    out
}

/// Checks the join against the reference; `slack`: reference scores this close to `t` may go
/// either way (where two f64 formulas of one cosine can differ in the last bit).
fn check_join(metric: Metric, x: &[f32], d: usize, t: f64, slack: f64) {
    let flat = metric.flat().unwrap();
    let got = RangeJoin::new(t).metric(metric).run(x, d).unwrap_or_else(|e| panic!("{metric:?} {t}: {e}"));
    let want = brute_pairs(flat, x, d, t);
    let key = |i: i64, j: i64| (i, j);
    let got_set: std::collections::BTreeMap<(i64, i64), f32> = got.i.iter().zip(&got.j).zip(&got.score).map(|((i, j), s)| (key(*i, *j), *s)).collect();
    assert_eq!(got_set.len(), got.len(), "{metric:?} {t}: a pair listed twice");
    assert!(got.i.windows(2).zip(got.j.windows(2)).all(|(i, j)| (i[0], j[0]) < (i[1], j[1])), "sorted by (i, j)");
    for (i, j, s) in &want {
        match got_set.get(&(*i, *j)) {
            Some(g) => {
                let want32 = *s as f32;
                // One f32 ulp, and f64's own rounding near 0 (cosines are sums of rounded terms).
                let ulp = (want32.abs() * f32::EPSILON).max(1e-15);
                assert!((*g - want32).abs() <= ulp, "{metric:?} {t}: pair ({i}, {j}) scored {g}, f64 {s}");
            }
            None if (s - t).abs() <= slack => {}
            None => panic!("{metric:?} {t}: pair ({i}, {j}) with f64 score {s} is missing"),
        }
    }
    let want_set: std::collections::BTreeSet<(i64, i64)> = want.iter().map(|p| (p.0, p.1)).collect();
    for ((i, j), g) in &got_set {
        assert!(i < j, "pairs are i < j");
        if !want_set.contains(&(*i, *j)) {
            let s = score(flat, &x[*i as usize * d..(*i as usize + 1) * d], &x[*j as usize * d..(*j as usize + 1) * d]);
            assert!((s - t).abs() <= slack, "{metric:?} {t}: pair ({i}, {j}) listed with {g}, f64 {s} does not pass");
        }
    }
}

#[test]
fn the_join_equals_the_f64_brute_force_at_thresholds_on_exact_ties() {
    // Integer rows with a quarter duplicated: every L2 distance and inner product is an exact
    // integer, so thresholds set to those integers land on exact ties (strict comparisons).
    let d = 9;
    let x = tied_rows(300, d, 5);
    for t in [1.0, 4.0, 5.0, 9.5] {
        check_join(Metric::L2, &x, d, t, 0.0);
    }
    for t in [3.0, 6.0, 8.0, -1.0] {
        check_join(Metric::InnerProduct, &x, d, t, 0.0);
    }
    // Cosines of integer rows: 1/√2, 0.5, … exactly reached by many pairs; duplicates are 1.
    for t in [0.5, std::f64::consts::FRAC_1_SQRT_2, 0.8, 0.999_999, -0.5] {
        check_join(Metric::Cosine, &x, d, t, 1e-12);
    }
}

#[test]
fn the_join_equals_the_f64_brute_force_on_real_scales() {
    let d = 48;
    let x: Vec<f32> = normal(400, d, 11).into_iter().map(|v| 100.0 + 0.1 * v).collect();
    // Far from the origin, where f32 products cancel: L2 around the data's spread.
    check_join(Metric::L2, &x, d, 0.5, 0.0);
    check_join(Metric::L2, &x, d, 0.9, 0.0);
    let y = normal(500, d, 12);
    check_join(Metric::Cosine, &y, d, 0.3, 1e-12);
    check_join(Metric::InnerProduct, &y, d, 14.0, 0.0);
}

#[test]
fn results_do_not_depend_on_threads_or_budgets() {
    let d = 16;
    let x = tied_rows(700, d, 9);
    let first = RangeJoin::new(0.5).run(&x, d).unwrap();
    assert!(first.len() > 1000, "the case must have many pairs: {}", first.len());
    for (threads, budget) in [(1, 512 << 20), (2, 1 << 16), (3, 1 << 20), (7, 4 << 10)] {
        let again = RangeJoin::new(0.5).threads(threads).memory_budget(budget).run(&x, d).unwrap();
        assert_eq!(again, first, "{threads} threads, {budget} bytes");
        let groups = Dedup::new(0.5).threads(threads).memory_budget(budget).run(&x, d).unwrap();
        assert_eq!(groups, Dedup::new(0.5).run(&x, d).unwrap(), "groups, {threads} threads");
    }
}

#[test]
fn streamed_batches_hold_the_same_pairs() {
    let d = 8;
    let x = normal(1500, d, 4);
    let join = RangeJoin::new(0.6);
    let mut streamed: Vec<Pair> = Vec::new();
    let mut batches = 0;
    let stats = join
        .stream(&x, d, &NoProgress, &mut |b: &[Pair]| {
            batches += 1;
            streamed.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    let collected = join.run(&x, d).unwrap();
    assert_eq!(stats.pairs, collected.len());
    assert!(stats.candidates >= stats.pairs);
    assert_eq!(faiss_nn::Pairs::from_unsorted(streamed), collected);
    assert!(batches >= 1);
}

/// The reference's groups: components of the brute-force pairs, each named by its lowest row.
fn reference_groups(n: usize, pairs: &[(i64, i64, f64)]) -> Vec<i64> {
    let mut adj = vec![Vec::new(); n];
    for (i, j, _) in pairs {
        adj[*i as usize].push(*j as usize);
        adj[*j as usize].push(*i as usize);
    }
    let mut group = vec![-1i64; n];
    for start in 0..n {
        if group[start] >= 0 {
            continue;
        }
        // Rows are visited in order, so `start` is the lowest row of its component.
        let mut stack = vec![start];
        group[start] = start as i64;
        while let Some(r) = stack.pop() {
            for &s in &adj[r] {
                if group[s] < 0 {
                    group[s] = start as i64;
                    stack.push(s);
                }
            }
        }
    }
    group
}

#[test]
fn groups_are_the_reference_components_keeping_one_row_each() {
    let d = 6;
    let x = tied_rows(500, d, 21);
    for (metric, t) in [(Metric::Cosine, 0.9), (Metric::L2, 2.0), (Metric::InnerProduct, 7.0)] {
        let g = Dedup::new(t).metric(metric).run(&x, d).unwrap();
        let want = reference_groups(500, &brute_pairs(metric.flat().unwrap(), &x, d, t));
        assert_eq!(g.group, want, "{metric:?}");
        for (r, &k) in g.keep.iter().enumerate() {
            assert_eq!(k, g.group[r] == r as i64);
        }
        // Exactly one kept row per group.
        let mut kept_of = std::collections::HashMap::new();
        for (r, &grp) in g.group.iter().enumerate() {
            if g.keep[r] {
                assert!(kept_of.insert(grp, r).is_none(), "{metric:?}: two rows kept in group {grp}");
            }
        }
        assert!(g.group.iter().all(|grp| kept_of.contains_key(grp)));
    }
}

#[test]
fn keep_by_value_picks_the_largest_or_smallest_deterministically() {
    let d = 4;
    let x = tied_rows(300, d, 3);
    let values: Vec<Option<i64>> = (0..300).map(|r| if r % 7 == 0 { None } else { Some((r as i64 * 37) % 11) }).collect();
    let by_first = Dedup::new(0.95).run(&x, d).unwrap();
    for largest in [true, false] {
        let keep = if largest { Keep::Largest(RankValues::Int(values.clone())) } else { Keep::Smallest(RankValues::Int(values.clone())) };
        let g = Dedup::new(0.95).keep(keep.clone()).run(&x, d).unwrap();
        assert_eq!(g, Dedup::new(0.95).keep(keep).threads(1).run(&x, d).unwrap());
        // Same components as keeping the first; the kept row is the group's best by value.
        for r in 0..300 {
            let members: Vec<usize> = (0..300).filter(|&s| by_first.group[s] == by_first.group[r]).collect();
            let best = members
                .iter()
                .copied()
                .min_by(|&a, &b| {
                    let (va, vb) = (values[a], values[b]);
                    let ord = match (va, vb) {
                        (Some(p), Some(q)) => {
                            if largest {
                                q.cmp(&p)
                            } else {
                                p.cmp(&q)
                            }
                        }
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    };
                    ord.then(a.cmp(&b))
                })
                .unwrap();
            assert_eq!(g.group[r], best as i64, "row {r}, largest {largest}");
        }
    }
}

#[test]
fn bad_thresholds_and_rows_are_clear_errors() {
    let d = 3;
    let x = normal(50, d, 1);
    for t in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = RangeJoin::new(t).run(&x, d).unwrap_err().to_string();
        assert!(e.contains("finite"), "{t}: {e}");
    }
    let e = RangeJoin::new(-1.5).run(&x, d).unwrap_err().to_string();
    assert!(e.contains("selects every pair"), "{e}");
    let e = RangeJoin::new(1.0).run(&x, d).unwrap_err().to_string();
    assert!(e.contains("selects no pair"), "{e}");
    let e = RangeJoin::new(0.0).metric(Metric::L2).run(&x, d).unwrap_err().to_string();
    assert!(e.contains("selects no pair"), "{e}");
    assert!(matches!(RangeJoin::new(1.0).metric(Metric::L1).run(&x, d), Err(Error::Metric { .. })));
    let mut z = x.clone();
    z[7 * d..8 * d].fill(0.0);
    let e = RangeJoin::new(0.5).run(&z, d).unwrap_err().to_string();
    assert!(e.contains("row 7") && e.contains("zero"), "{e}");
    // Under L2 and inner product a zero row is an ordinary row.
    RangeJoin::new(0.5).metric(Metric::L2).run(&z, d).unwrap();
    let mut nan = x.clone();
    nan[4] = f32::NAN;
    assert!(matches!(RangeJoin::new(0.5).run(&nan, d), Err(Error::NonFinite { row: 1, col: 1, .. })));
    assert!(matches!(RangeJoin::new(0.5).run(&x[..7], d), Err(Error::Shape { .. })));
    assert!(matches!(RangeJoin::new(0.5).run::<f32>(&[], d), Err(Error::Empty { .. })));
    let e = Dedup::new(0.5).keep(Keep::Largest(RankValues::Int(vec![Some(1); 3]))).run(&x, d).unwrap_err().to_string();
    assert!(e.contains("3 ranking values for 50 rows"), "{e}");
}

#[test]
fn a_threshold_passing_too_many_pairs_stops_and_says_what_it_found() {
    let d = 4;
    let x = normal(3000, d, 2);
    let e = RangeJoin::new(-0.9).max_pairs(10_000).run(&x, d).unwrap_err();
    let Error::TooManyPairs { found, rows, max_pairs, .. } = &e else { panic!("{e}") };
    assert!(*found > 10_000 && *max_pairs == 10_000 && *rows > 0 && *rows <= 3000, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("threshold -0.9 passes more than max_pairs = 10000") && msg.contains("tighter"), "{msg}");
    // Dedup streams into a union-find, but the cap holds there too.
    assert!(matches!(Dedup::new(-0.9).max_pairs(10_000).run(&x, d), Err(Error::TooManyPairs { .. })));
    // A default cap comes from the memory budget.
    assert_eq!(RangeJoin::new(0.5).memory_budget(200 << 20).pair_cap(), (200 << 20) / 20);
}

#[test]
fn range_search_follows_faiss_conventions_exactly() {
    // faiss's own flat range-search expectations, in f64: the radius is the median of the
    // queries' 10th-neighbour scores; each query's results are exactly the stored rows below
    // (L2) or above (inner product, cosine) it, with their scores.
    let (d, nb, nq) = (32, 1000, 200);
    let xb = normal(nb, d, 31);
    let xq = normal(nq, d, 32);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let flat = metric.flat().unwrap();
        let mut index = FlatIndex::new(d, metric).unwrap();
        index.add(&xb).unwrap();
        let (dist, _) = index.search(&xq, 10).unwrap();
        let mut tenth: Vec<f32> = (0..nq).map(|q| dist[q * 10 + 9]).collect();
        tenth.sort_by(f32::total_cmp);
        let radius = tenth[nq / 2] as f64;
        let r = index.range_search(&xq, radius).unwrap();
        assert_eq!(r.lims.len(), nq + 1);
        assert_eq!((r.lims[0], r.lims[nq] as usize), (0, r.labels.len()));
        for q in 0..nq {
            let (l0, l1) = (r.lims[q] as usize, r.lims[q + 1] as usize);
            let want: Vec<i64> = (0..nb)
                .filter(|&j| {
                    let s = score(flat, &xq[q * d..(q + 1) * d], &xb[j * d..(j + 1) * d]);
                    if flat == FlatMetric::L2 {
                        s < radius
                    } else {
                        s > radius
                    }
                })
                .map(|j| j as i64)
                .collect();
            assert_eq!(r.labels[l0..l1], want[..], "{metric:?} query {q}");
            for (t, &j) in r.labels[l0..l1].iter().enumerate() {
                let s = score(flat, &xq[q * d..(q + 1) * d], &xb[j as usize * d..(j as usize + 1) * d]);
                assert!((r.distances[l0 + t] as f64 - s).abs() <= 1e-6 * s.abs().max(1.0), "{metric:?} query {q} row {j}");
            }
        }
        // An empty query batch: lims = [0].
        let e = index.range_search(&[], radius).unwrap();
        assert_eq!((e.lims, e.labels.len()), (vec![0], 0));
    }
    // An empty index answers every query with nothing; a radius no row can pass likewise.
    let empty = FlatIndex::new(d, Metric::L2).unwrap();
    assert_eq!(empty.range_search(&xq[..2 * d], 5.0).unwrap().lims, vec![0, 0, 0]);
    let mut index = FlatIndex::new(d, Metric::L2).unwrap();
    index.add(&xb).unwrap();
    assert_eq!(index.range_search(&xq[..3 * d], 0.0).unwrap().lims, vec![0, 0, 0, 0]);
    assert!(index.range_search(&xq[..d], f64::NAN).is_err());
    assert!(matches!(index.range_search(&xq[..d + 1], 1.0), Err(Error::Shape { .. })));
}

#[test]
fn cosine_lists_are_exact_on_rows_of_any_norm() {
    // Rows of one direction at norms from 1e-3 to 1e3 have cosine 1 with each other (exact
    // ties, broken by index); the step's cosine lists equal the f64 reference's.
    let d = 24;
    let mut rng = Rng::new(8);
    let base = normal(150, d, 6);
    let mut x = Vec::new();
    for i in 0..300 {
        let src = if i < 150 { i } else { rng.below(150) };
        let scale = 10f32.powf(rng.uniform() as f32 * 6.0 - 3.0);
        x.extend(base[src * d..(src + 1) * d].iter().map(|v| v * scale));
    }
    let k = 12;
    let nn = faiss_nn::FaissNearestNeighbour::new().metric(Metric::Cosine).k(k).run(&x, d).unwrap();
    let want = crate::common::reference::knn(FlatMetric::Cosine, &x, &x, d, k, true);
    for (i, w) in want.iter().enumerate() {
        let ids: Vec<i64> = w.iter().map(|p| p.0).collect();
        let scores: Vec<f32> = w.iter().map(|p| p.1 as f32).collect();
        let row = crate::common::parity::Row { ids: &nn.indices[i * k..(i + 1) * k], scores: &nn.scores[i * k..(i + 1) * k] };
        crate::common::parity::compare_row(FlatMetric::Cosine, row, crate::common::parity::Row { ids: &ids, scores: &scores }, 1e-6, None)
            .unwrap_or_else(|e| panic!("row {i}: {e}"));
        assert!(nn.scores[i * k..(i + 1) * k].iter().all(|s| (-1.0..=1.0).contains(s)), "row {i}");
    }
    // Groups from lists equal groups from the join when no group outgrows the lists.
    let g = Dedup::new(0.999_999).run(&x, d).unwrap();
    let from_pairs = Groups::from_pairs(
        300,
        (0..300).flat_map(|i| (0..k).map(move |t| (i, t))).filter_map(|(i, t)| {
            let j = nn.indices[i * k + t];
            (nn.scores[i * k + t] as f64 > 0.999_999).then_some((i as i64, j))
        }),
        &Keep::First,
    )
    .unwrap();
    assert_eq!(g.group, from_pairs.group);
}
