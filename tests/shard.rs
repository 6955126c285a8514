//! The sharded and replicated multi-device logic on CPU shards: identical to one device.

use crate::common::data::{normal, tied};
use faiss_nn::flat::cpu::CpuSearcher;
use faiss_nn::flat::{FlatJob, FlatSearcher};
use faiss_nn::shard::{host_merge, search, split_rows};
use faiss_nn::topk::TopKLists;
use faiss_nn::{Error, FlatMetric, NoProgress, ShardMode, Vectors};
use proptest::prelude::*;

fn cpu_shards(n: usize) -> Vec<CpuSearcher> {
    (0..n).map(|_| CpuSearcher::new().threads(1)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// 1..8 shards, uneven sizes, shards smaller than k, both metrics, both modes: the result is
    /// exactly the one-device result (same candidates, same order, same tie rule).
    #[test]
    fn sharded_equals_unsharded(n in 2usize..150, d in 1usize..20, k in 1usize..30, shards in 1usize..=8,
                                l2 in any::<bool>(), replicated in any::<bool>(), seed in any::<u64>()) {
        let k = k.min(n - 1);
        let x = tied(n, d, seed);
        let v = Vectors::new(&x, d, "x").unwrap();
        let metric = if l2 { FlatMetric::L2 } else { FlatMetric::InnerProduct };
        let job = FlatJob::self_join(v, metric, k, &NoProgress);
        let one = CpuSearcher::new().search(&job).unwrap();
        let s = cpu_shards(shards);
        let refs: Vec<&dyn FlatSearcher> = s.iter().map(|c| c as &dyn FlatSearcher).collect();
        let mode = if replicated { ShardMode::Replicated } else { ShardMode::Sharded };
        let many = search(&refs, &job, mode, &host_merge).unwrap();
        prop_assert_eq!(many, one);
    }
}

#[test]
fn split_rows_is_even_and_complete() {
    let r = split_rows(10, 4);
    assert_eq!(r, vec![0..2, 2..5, 5..7, 7..10]);
    assert_eq!(split_rows(2, 5).iter().map(|r| r.len()).sum::<usize>(), 2);
}

/// A shard that always fails, like a device out of memory.
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
    let v = Vectors::new(&x, 8, "x").unwrap();
    let job = FlatJob::self_join(v, FlatMetric::L2, 3, &NoProgress);
    let ok = CpuSearcher::new();
    for mode in [ShardMode::Sharded, ShardMode::Replicated] {
        let shards: Vec<&dyn FlatSearcher> = vec![&ok, &Failing, &ok];
        let e = search(&shards, &job, mode, &host_merge).unwrap_err();
        assert!(matches!(&e, Error::Shard { shard: 1, .. }), "{e}");
        assert!(e.to_string().contains("out of memory"), "{e}");
    }
}
