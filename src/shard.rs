//! Several devices sharing one search, with our own merge.
//!
//! *Sharded* (default): the database rows are split into contiguous, near-equal shards, one per
//! device; each device searches every query against its shard (global indices kept by the
//! shard's `db_offset`) and the per-shard top-k lists are merged into the global top-k with the
//! same `(key, index)` order as everywhere else. *Replicated*: every device holds the whole
//! database and takes a contiguous share of the queries; the shares are concatenated.
//!
//! The same planner and merge serve CPU shards ([`crate::flat::cpu::CpuSearcher`]), which is how
//! CI tests this logic without a GPU, and GPU shards. A failing shard fails the whole call.

use crate::error::{Error, Result};
use crate::flat::{FlatJob, FlatSearcher};
use crate::topk::{merge_lists, TopKLists};

/// How several devices share a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardMode {
    /// Database rows split across devices; per-device top-k merged.
    #[default]
    Sharded,
    /// Every device holds the whole database and takes a share of the queries.
    Replicated,
}

/// Splits `n` rows into `parts` contiguous ranges whose sizes differ by at most one.
pub fn split_rows(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    (0..parts).map(|p| (p * n / parts)..((p + 1) * n / parts)).collect()
}

/// A merge of per-shard lists: [`merge_lists`] on the host, or a device merge kernel.
pub type MergeFn<'a> = dyn Fn(&[TopKLists], usize) -> Result<TopKLists> + Sync + 'a;

/// Runs `job` over `shards` in `mode`, one thread per shard, merging with `merge`.
pub fn search(shards: &[&dyn FlatSearcher], job: &FlatJob<'_>, mode: ShardMode, merge: &MergeFn<'_>) -> Result<TopKLists> {
    match shards {
        [] => Err(Error::invalid("device", "no devices to search on")),
        [one] => one.search(job).map_err(|e| shard_error(0, *one, e)),
        _ => match mode {
            ShardMode::Sharded => sharded(shards, job, merge),
            ShardMode::Replicated => replicated(shards, job),
        },
    }
}

/// Runs one job per shard on its own thread; the first failure (in shard order) fails all.
fn run_all(shards: &[&dyn FlatSearcher], jobs: &[FlatJob<'_>]) -> Result<Vec<TopKLists>> {
    let results: Vec<Result<TopKLists>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards.iter().zip(jobs).map(|(s, j)| scope.spawn(move || s.search(j))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::invalid("shard", "a shard's thread panicked")))).collect()
    });
    results.into_iter().enumerate().map(|(i, r)| r.map_err(|e| shard_error(i, shards[i], e))).collect()
}

fn shard_error(shard: usize, s: &dyn FlatSearcher, e: Error) -> Error {
    Error::Shard { shard, device: s.name(), source: Box::new(e) }
}

fn sharded(shards: &[&dyn FlatSearcher], job: &FlatJob<'_>, merge: &MergeFn<'_>) -> Result<TopKLists> {
    let ranges = split_rows(job.database.n(), shards.len());
    let jobs: Vec<FlatJob<'_>> = ranges
        .iter()
        .map(|r| FlatJob { database: job.database.rows(r.start, r.end), db_offset: job.db_offset + r.start as i64, ..*job })
        .filter(|j| j.database.n() > 0)
        .collect();
    let parts = run_all(&shards[..jobs.len()], &jobs)?;
    merge(&parts, job.k)
}

fn replicated(shards: &[&dyn FlatSearcher], job: &FlatJob<'_>) -> Result<TopKLists> {
    let ranges = split_rows(job.queries.n(), shards.len());
    let jobs: Vec<FlatJob<'_>> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| FlatJob {
            queries: job.queries.rows(r.start, r.end),
            query_offset: job.query_offset.map(|o| o + r.start as i64),
            ..*job
        })
        .collect();
    let mut parts = run_all(&shards[..jobs.len()], &jobs)?.into_iter();
    let mut out = parts.next().expect("at least one query share");
    for p in parts {
        out.extend(p);
    }
    Ok(out)
}

/// The host merge as a [`MergeFn`].
pub fn host_merge(parts: &[TopKLists], k: usize) -> Result<TopKLists> {
    Ok(merge_lists(parts, k))
}
