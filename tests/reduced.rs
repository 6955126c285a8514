//! Exact lists from reduced-precision candidates on the CPU: with `Precision::Bf16` (AVX-512
//! BF16, or the portable bf16 kernel) and `Precision::Int8` (AVX-512 VNNI, AVX2, or the portable
//! int8 kernel) every list equals the f32 path's, bit for bit, whatever the data — real rows,
//! duplicates and ties, rows far from the origin, one dominant component, random normal rows
//! where many proofs fail and the rows are searched again in f32 — for the self-join and foreign
//! queries, under L2, inner product and cosine. `Auto` takes reduced candidates only where the
//! proofs are predicted to hold.

use crate::common::data::{demo_embeddings, normal, tied};
use faiss_nn::engine::{Engine, EngineOptions};
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatSearcher, Operands};
use faiss_nn::{Device, FlatIndex, FlatMetric, Metric, NoProgress, Precision};

fn engine(precision: Precision) -> Engine {
    Engine::open(&Device::Cpu, EngineOptions { precision, ..EngineOptions::default() }).unwrap()
}

/// The self-join's lists under `precision`, with its stats.
fn join(e: &Engine, x: &[f32], d: usize, metric: FlatMetric, k: usize) -> (faiss_nn::topk::TopKLists, faiss_nn::engine::RefineStats) {
    e.load_shard(x, d, 0, metric).unwrap().self_join_with_stats(k, &NoProgress).unwrap()
}

/// Checks that `precision`'s lists equal the f32 path's; the rows searched again in f32.
fn check_equal_at(precision: Precision, x: &[f32], d: usize, what: &str, ks: &[usize]) -> usize {
    let (f32e, reduced) = (engine(Precision::F32), engine(precision));
    let mut fallback = 0;
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct, FlatMetric::Cosine] {
        for &k in ks {
            let (want, _) = join(&f32e, x, d, metric, k);
            let (got, stats) = join(&reduced, x, d, metric, k);
            assert_eq!(got, want, "{what}, {metric:?}, k = {k}: {precision:?} candidates gave other lists");
            fallback += stats.fallback_rows;
        }
    }
    fallback
}

/// `rows` random normal rows, then `copies` copies of the first one, each moved by 1e-4 of a
/// normal step per component: far below an int8 (or bf16) step of that row.
fn near_copies(rows: usize, copies: usize, d: usize) -> Vec<f32> {
    let mut x = normal(rows, d, 4);
    let base = x[..d].to_vec();
    for c in normal(copies, d, 5).chunks(d) {
        x.extend(base.iter().zip(c).map(|(b, e)| b + 1e-4 * e));
    }
    x
}

fn check_equal(x: &[f32], d: usize, what: &str, ks: &[usize]) -> usize {
    check_equal_at(Precision::Bf16, x, d, what, ks)
}

#[test]
fn bf16_lists_equal_the_f32_lists_on_real_rows() {
    let (x, d) = demo_embeddings();
    let x = &x[..1500 * d];
    check_equal(x, d, "MiniLM", &[1, 10, 100]);
}

#[test]
fn bf16_lists_equal_the_f32_lists_on_hard_rows() {
    // Random normal rows in 512 dimensions: all scores packed together.
    check_equal(&normal(800, 512, 3), 512, "normal", &[5, 40]);
    // Clusters of 40 near-copies: the proofs fail and the rows are searched again in f32.
    let (base, jitter) = (normal(20, 96, 12), normal(800, 96, 13));
    let clustered: Vec<f32> = (0..800 * 96).map(|t| base[(t / 96 % 20) * 96 + t % 96] + 1e-3 * jitter[t]).collect();
    let fallback = check_equal(&clustered, 96, "clustered", &[5]);
    // Without AVX-512 BF16 a bf16 search runs f32 (nothing to search again).
    if faiss_nn::flat::cpu::bf16::native() {
        assert!(fallback > 0, "the case must exercise the f32 search of unproven rows");
    }
    let d = 64;
    // Duplicates and exact ties (small integers).
    let mut t = tied(700, d, 4);
    for row in t.chunks_mut(d) {
        if row.iter().all(|v| *v == 0.0) {
            row[0] = 1.0; // cosine needs a direction
        }
    }
    check_equal(&t, d, "tied", &[3, 20]);
    // Far from the origin, where L2 products cancel in f32 (and bf16 keeps 8 bits of 1000).
    let far: Vec<f32> = normal(600, d, 5).into_iter().map(|v| 1000.0 + 0.01 * v).collect();
    check_equal(&far, d, "offset 1000", &[4]);
    // One dominant component, and norms from 1e-3 to 1e3.
    let mut dom = normal(600, d, 6);
    for (i, row) in dom.chunks_mut(d).enumerate() {
        row[i % d] += 1e3;
        let s = 10f32.powi((i % 7) as i32 - 3);
        row.iter_mut().for_each(|v| *v *= s);
    }
    check_equal(&dom, d, "dominant", &[6]);
}

#[test]
fn foreign_queries_and_the_portable_kernel_agree_too() {
    let (x, d) = demo_embeddings();
    let (db, q) = (&x[..2000 * d], &x[2000 * d..2300 * d]);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let mut a = FlatIndex::new(d, metric).unwrap().with_options(EngineOptions { precision: Precision::F32, ..EngineOptions::default() });
        let mut b = FlatIndex::new(d, metric).unwrap().with_options(EngineOptions { precision: Precision::Bf16, ..EngineOptions::default() });
        a.add(db).unwrap();
        b.add(db).unwrap();
        assert_eq!(a.search(q, 12).unwrap(), b.search(q, 12).unwrap(), "{metric:?}");
    }
    // The portable bf16 kernel (machines without AVX-512 BF16) through a CPU searcher of its own.
    let portable: Vec<Box<dyn FlatSearcher>> = vec![Box::new(CpuSearcher::new().portable())];
    let opts = EngineOptions { precision: Precision::Bf16, ..EngineOptions::default() };
    let e = Engine::from_searchers(portable, opts).unwrap();
    let (got, _) = join(&e, &x[..600 * d], d, FlatMetric::L2, 10);
    let (want, _) = join(&engine(Precision::F32), &x[..600 * d], d, FlatMetric::L2, 10);
    assert_eq!(got, want);
}

#[test]
fn auto_takes_reduced_candidates_only_where_the_proofs_hold() {
    use faiss_nn::flat::cpu::int8::Int8Kernel;
    let int8_runs = Int8Kernel::detect() != Int8Kernel::Portable;
    let bf16_runs = faiss_nn::flat::cpu::bf16::native();
    let e = engine(Precision::Auto);
    let (x, d) = demo_embeddings();
    // int8 asked for: int8 wherever an int8 kernel runs (AVX-512 VNNI or AVX2).
    let int8 = engine(Precision::Int8).load_shard(&x, d, 0, FlatMetric::Cosine).unwrap().planned_operands(10);
    assert_eq!(int8 == Operands::Int8, int8_runs);
    if !int8_runs && !bf16_runs {
        eprintln!("no reduced kernel runs here (CPU or FAISS_NN_CPU): Auto runs f32 everywhere, nothing more to check");
        return;
    }
    let real = e.load_shard(&x, d, 0, FlatMetric::Cosine).unwrap();
    // With AVX2 alone Auto never plans int8 (the narrow format's proofs fail too often to pay).
    let want = if faiss_nn::flat::cpu::int8::native() {
        Operands::Int8
    } else if bf16_runs {
        Operands::Bf16
    } else {
        Operands::F32
    };
    assert_eq!(real.planned_operands(10), want, "real rows: the planner's choice");
    // Random normal rows: bf16's sampled margin lets their proofs hold, int8's residuals are too
    // large (f32 where only the int8 kernel runs).
    let noise = normal(6000, 384, 9);
    let want = if bf16_runs { Operands::Bf16 } else { Operands::F32 };
    assert_eq!(e.load_shard(&noise, 384, 0, FlatMetric::L2).unwrap().planned_operands(10), want);
    // Clusters of 80 near-copies, more than the largest margin (bf16's 32, int8's 64): the 11th
    // to 80th neighbours of every row lie within its reduced bound of the 10th, no proof would hold.
    let base = normal(75, 384, 10);
    let jitter = normal(6000, 384, 11);
    let clustered: Vec<f32> =
        (0..6000).flat_map(|i| (0..384).map(move |j| (i, j))).map(|(i, j)| base[(i % 75) * 384 + j] + 1e-3 * jitter[i * 384 + j]).collect();
    let hard = e.load_shard(&clustered, 384, 0, FlatMetric::L2).unwrap();
    assert_eq!(hard.planned_operands(10), Operands::F32, "clustered rows: the proofs would fail");
    // Few rows, or f32 asked for: f32.
    assert_eq!(e.load_shard(&x[..100 * d], d, 0, FlatMetric::L2).unwrap().planned_operands(10), Operands::F32);
    assert_eq!(engine(Precision::F32).load_shard(&x, d, 0, FlatMetric::L2).unwrap().planned_operands(10), Operands::F32);
}

#[test]
fn int8_lists_equal_the_f32_lists_on_real_and_hard_rows() {
    let (x, d) = demo_embeddings();
    check_equal_at(Precision::Int8, &x[..1500 * d], d, "MiniLM", &[1, 10, 100]);
    check_equal_at(Precision::Int8, &normal(600, 256, 3), 256, "normal", &[5]);
    // Near-copies of one row, closer than an int8 step, defeat the proofs in either integer
    // format (random normal rows defeat only the narrow one's, at this size): wherever an int8
    // kernel runs, the unproven rows' f32 search must give the same lists.
    let d = 64;
    let fallback = check_equal_at(Precision::Int8, &near_copies(300, 150, d), d, "near copies", &[5]);
    use faiss_nn::flat::cpu::int8::Int8Kernel;
    assert_eq!(fallback > 0, Int8Kernel::detect() != Int8Kernel::Portable, "the f32 search of unproven rows");
    let mut t = tied(600, d, 4);
    for row in t.chunks_mut(d) {
        if row.iter().all(|v| *v == 0.0) {
            row[0] = 1.0;
        }
    }
    check_equal_at(Precision::Int8, &t, d, "tied", &[3, 20]);
    let far: Vec<f32> = normal(500, d, 5).into_iter().map(|v| 1000.0 + 0.01 * v).collect();
    check_equal_at(Precision::Int8, &far, d, "offset 1000", &[4]);
    // One dominant component (the rest quantise to few levels) and norms from 1e-3 to 1e3.
    let mut dom = normal(500, d, 6);
    for (i, row) in dom.chunks_mut(d).enumerate() {
        row[i % d] += 1e3;
        let s = 10f32.powi((i % 7) as i32 - 3);
        row.iter_mut().for_each(|v| *v *= s);
    }
    check_equal_at(Precision::Int8, &dom, d, "dominant", &[6]);
    // Odd dimensions (a partial quad of depths).
    check_equal_at(Precision::Int8, &normal(300, 37, 8), 37, "d = 37", &[7]);
}

#[test]
fn int8_foreign_queries_and_the_portable_int8_kernel_agree() {
    let (x, d) = demo_embeddings();
    let (db, q) = (&x[..2000 * d], &x[2000 * d..2300 * d]);
    for metric in [Metric::L2, Metric::Cosine] {
        let mut a = FlatIndex::new(d, metric).unwrap().with_options(EngineOptions { precision: Precision::F32, ..EngineOptions::default() });
        let mut b = FlatIndex::new(d, metric).unwrap().with_options(EngineOptions { precision: Precision::Int8, ..EngineOptions::default() });
        a.add(db).unwrap();
        b.add(db).unwrap();
        assert_eq!(a.search(q, 12).unwrap(), b.search(q, 12).unwrap(), "{metric:?}");
    }
    let portable: Vec<Box<dyn FlatSearcher>> = vec![Box::new(CpuSearcher::new().portable())];
    let e = Engine::from_searchers(portable, EngineOptions { precision: Precision::Int8, ..EngineOptions::default() }).unwrap();
    let (got, _) = join(&e, &x[..600 * d], d, FlatMetric::L2, 10);
    let (want, _) = join(&engine(Precision::F32), &x[..600 * d], d, FlatMetric::L2, 10);
    assert_eq!(got, want);
}

/// With `approximate`, a reduced search's lists come re-scored but unproven: no row is searched
/// again, and where the candidates miss a neighbour the list does too (150 near-copies of one
/// row, more than the int8 candidates a row keeps at k = 5, at most 69, and which int8 cannot
/// tell apart). f32 lists
/// stay exact, and so do int8 lists without the option.
#[test]
fn approximate_lists_skip_the_proof() {
    use faiss_nn::flat::cpu::int8::Int8Kernel;
    let d = 64;
    let x = near_copies(300, 150, d);
    let loose = |precision| Engine::open(&Device::Cpu, EngineOptions { precision, approximate: true, ..EngineOptions::default() }).unwrap();
    let runs = Int8Kernel::detect() != Int8Kernel::Portable;
    for metric in [FlatMetric::L2, FlatMetric::InnerProduct] {
        let (want, _) = join(&engine(Precision::F32), &x, d, metric, 5);
        assert_eq!(join(&engine(Precision::Int8), &x, d, metric, 5).0, want, "{metric:?}: exact int8");
        assert_eq!(join(&loose(Precision::F32), &x, d, metric, 5).0, want, "{metric:?}: f32 with approximate");
        let (got, stats) = join(&loose(Precision::Int8), &x, d, metric, 5);
        assert_eq!((stats.fallback_rows, stats.widened_rows, stats.brute_force_rows), (0, 0, 0), "{metric:?}");
        // Where an int8 kernel runs (else int8 is f32 and the lists are exact).
        assert_eq!(got != want, runs, "{metric:?}: approximate int8 lists should miss neighbours among the copies");
    }
}
