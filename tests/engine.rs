//! The engine: resident shards, several searchers (CPU searchers standing in for devices), the
//! merge, the bipartite pair join, and the one strategy every front shares.

use crate::common::data::{normal, tied};
use faiss_nn::engine::{Backend, Engine, EngineOptions};
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::shard::split_rows;
use faiss_nn::topk::TopKLists;
use faiss_nn::{Device, Error, ErrorKind, FaissNearestNeighbour, FlatIndex, FlatMetric, GpuPath, Metric, NoProgress, Precision, ShardMode};
use proptest::prelude::*;

fn cpu_engine() -> Engine {
    Engine::open(&Device::Cpu, EngineOptions::default()).unwrap()
}

fn shards_engine(n: usize, mode: ShardMode) -> Engine {
    let searchers: Vec<Box<dyn FlatSearcher>> = (0..n).map(|_| Box::new(CpuSearcher::new().threads(1)) as Box<dyn FlatSearcher>).collect();
    Engine::from_searchers(searchers, EngineOptions { shard_mode: mode, ..EngineOptions::default() }).unwrap()
}

fn metric_of(l2: bool) -> FlatMetric {
    if l2 {
        FlatMetric::L2
    } else {
        FlatMetric::InnerProduct
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// 1..8 searchers, uneven parts, parts smaller than k, both metrics, both modes, self-joins
    /// and foreign queries: exactly the one-searcher result (same candidates, order, scores).
    #[test]
    fn sharded_equals_unsharded(n in 2usize..150, d in 1usize..20, k in 1usize..30, shards in 1usize..=8,
                                l2 in any::<bool>(), replicated in any::<bool>(), seed in any::<u64>()) {
        let k = k.min(n - 1);
        let x = tied(n, d, seed);
        let metric = metric_of(l2);
        let one = cpu_engine().load_shard(&x, d, 0, metric).unwrap();
        let mode = if replicated { ShardMode::Replicated } else { ShardMode::Sharded };
        let engine = shards_engine(shards, mode);
        let many = engine.load_shard(&x, d, 0, metric).unwrap();
        prop_assert_eq!(many.self_join(k, &NoProgress).unwrap(), one.self_join(k, &NoProgress).unwrap());
        let q = tied(7, d, seed ^ 1);
        prop_assert_eq!(many.search(&q, None, k + 3, &NoProgress).unwrap(), one.search(&q, None, k + 3, &NoProgress).unwrap());
    }

    /// The distributed contract: cut the rows into blocks at any offsets; each block's
    /// self-join merged with its pair joins against every other block equals the self-join of
    /// all rows, exactly.
    #[test]
    fn blocks_and_pairs_equal_the_whole(n in 3usize..160, d in 1usize..12, k in 1usize..20, blocks in 1usize..5,
                                        l2 in any::<bool>(), ties in any::<bool>(), seed in any::<u64>()) {
        let k = k.min(n - 1);
        let x = if ties { tied(n, d, seed) } else { normal(n, d, seed) };
        let metric = metric_of(l2);
        let engine = cpu_engine();
        let whole = engine.load_shard(&x, d, 0, metric).unwrap().self_join(k, &NoProgress).unwrap();
        let ranges: Vec<_> = split_rows(n, blocks).into_iter().filter(|r| !r.is_empty()).collect();
        let shards: Vec<_> = ranges.iter().map(|r| engine.load_shard(&x[r.start * d..r.end * d], d, r.start as i64, metric).unwrap()).collect();
        let mut parts: Vec<Vec<TopKLists>> = vec![Vec::new(); shards.len()];
        for (i, s) in shards.iter().enumerate() {
            if s.n() > 1 {
                parts[i].push(s.self_join(k.min(s.n() - 1), &NoProgress).unwrap());
            }
            for (j, t) in shards.iter().enumerate().skip(i + 1) {
                let (a, b) = s.pair_join(t, k, &NoProgress).unwrap();
                parts[i].push(a);
                parts[j].push(b);
            }
        }
        let mut got = parts.into_iter().filter(|p| !p.is_empty()).map(|p| engine.merge(&p, k).unwrap());
        let mut joined = got.next().unwrap();
        for l in got {
            joined.extend(l);
        }
        prop_assert_eq!(joined, whole);
    }
}

#[test]
fn split_rows_is_even_and_complete() {
    assert_eq!(split_rows(10, 4), vec![0..2, 2..5, 5..7, 7..10]);
    assert_eq!(split_rows(2, 5).iter().map(|r| r.len()).sum::<usize>(), 2);
}

/// A searcher that always fails, like a device out of memory.
struct Failing;

impl FlatSearcher for Failing {
    fn name(&self) -> String {
        "failing:1".into()
    }
    fn search(&self, _: &FlatJob<'_>) -> faiss_nn::Result<TopKLists> {
        Err(Error::OutOfMemory { device: "failing:1".into(), context: "allocating a tile".into(), needed_bytes: 1 << 30 })
    }
}

#[test]
fn one_failing_shard_fails_the_whole_call() {
    let x = normal(100, 8, 1);
    for mode in [ShardMode::Sharded, ShardMode::Replicated] {
        let searchers: Vec<Box<dyn FlatSearcher>> = vec![Box::new(CpuSearcher::new()), Box::new(Failing), Box::new(CpuSearcher::new())];
        let engine = Engine::from_searchers(searchers, EngineOptions { shard_mode: mode, ..Default::default() }).unwrap();
        let e = engine.load_shard(&x, 8, 0, FlatMetric::L2).unwrap().self_join(3, &NoProgress).unwrap_err();
        assert!(matches!(&e, Error::Shard { shard: 1, .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert!(e.to_string().contains("out of memory"), "{e}");
    }
}

#[test]
fn shards_check_their_input() {
    let engine = cpu_engine();
    let x = normal(10, 4, 2);
    assert!(matches!(engine.load_shard(&x, 3, 0, FlatMetric::L2), Err(Error::Shape { .. })));
    assert!(matches!(engine.load_shard(&x, 4, -1, FlatMetric::L2), Err(Error::InvalidArgument { .. })));
    let s = engine.load_shard(&x, 4, 0, FlatMetric::L2).unwrap();
    assert!(matches!(s.search(&[1.0; 5], None, 1, &NoProgress), Err(Error::Shape { .. })));
    let other = engine.load_shard(&x, 4, 5, FlatMetric::L2).unwrap();
    let e = s.pair_join(&other, 1, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");
    let wide = normal(10, 5, 2);
    let w = engine.load_shard(&wide, 5, 100, FlatMetric::L2).unwrap();
    assert!(s.pair_join(&w, 1, &NoProgress).is_err());
    assert!(matches!(engine.merge(&[], 1), Err(Error::InvalidArgument { .. })));
}

/// A second search on the same index reuses the loaded rows and the engine; an add makes the next
/// search load once more.
#[test]
fn a_flat_index_loads_its_rows_once_per_change() {
    let mut idx = FlatIndex::new(8, Metric::L2).unwrap();
    idx.add(&normal(200, 8, 3)).unwrap();
    assert_eq!(idx.loads(), 0);
    let q = normal(5, 8, 4);
    let first = idx.search(&q, 3).unwrap();
    assert_eq!(idx.search(&q, 3).unwrap(), first);
    assert_eq!(idx.loads(), 1);
    assert_eq!(idx.uploads(), 0, "the CPU reads rows in place");
    idx.add(&normal(10, 8, 5)).unwrap();
    idx.search(&q, 3).unwrap();
    idx.search(&q, 3).unwrap();
    assert_eq!(idx.loads(), 2);
}

/// The step, a FlatIndex-like engine search and the strategy module agree on every choice.
#[test]
fn every_front_makes_the_same_choice() {
    let opts = EngineOptions::default();
    for (factory, metric, code) in [(None, Metric::L2, 1), (Some("Flat"), Metric::InnerProduct, 0), (Some("HNSW32"), Metric::L2, 1), (None, Metric::L1, 2)] {
        let step = FaissNearestNeighbour::new().string_factory(factory).metric_type(code).k(5);
        let from_step = step.strategy(100).unwrap();
        let direct = faiss_nn::engine::choose(&Device::Cpu, factory, metric, 5, &opts).unwrap();
        assert_eq!(from_step, direct, "{factory:?} {metric:?}");
        let flat = factory.is_none_or(|f| f == "Flat") && metric.flat().is_some();
        assert_eq!(direct.backend == Backend::Cpu, flat);
    }
}

/// Where the GPU path's k limit cuts bf16's proof margin below half (and f32's fits), the step
/// opens its engine in f32 and plans f32 products; approximate lists and the CPU stay bf16.
#[test]
fn the_step_plans_f32_where_a_gpus_bf16_proof_is_cut_short() {
    let gpu = Device::Cuda(vec![0]);
    let step = |k: usize| FaissNearestNeighbour::new().device(gpu.clone()).precision(Precision::Bf16).gpu_path(GpuPath::Fused).k(k);
    for (k, want) in [(85, Precision::Bf16), (110, Precision::F32), (128, Precision::Bf16)] {
        assert_eq!(step(k).engine_options().precision, want, "k = {k}");
        let s = step(k).strategy(1000).unwrap();
        assert_eq!((s.precision, s.proven), (want, true), "k = {k}");
    }
    assert_eq!(step(110).approximate(true).engine_options().precision, Precision::Bf16);
    assert_eq!(step(110).approximate(true).strategy(1000).unwrap().precision, Precision::Bf16);
    let on_cpu = FaissNearestNeighbour::new().precision(Precision::Bf16).k(100).strategy(1000).unwrap();
    assert_eq!(on_cpu.precision, Precision::Bf16);
}
