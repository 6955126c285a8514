//! Duplicate groups: the connected components of the threshold graph (rows joined by every
//! pair whose exact score passes the threshold), each keeping exactly one row.
//!
//! ```
//! use faiss_nn::dedup::{Dedup, Keep};
//! # fn main() -> faiss_nn::Result<()> {
//! // Rows 0, 1 and 3 point the same way (cosine ≈ 1), row 2 elsewhere.
//! let rows = [1.0, 0.0, 2.0, 0.01, 0.0, 1.0, 3.0, 0.0];
//! let g = Dedup::new(0.99).run(&rows, 2)?;
//! assert_eq!(g.group, vec![0, 0, 2, 0]); // every row's group is named by the row it keeps
//! assert_eq!(g.keep, vec![true, false, true, false]);
//! # Ok(()) }
//! ```
//!
//! Groups are computed with a union-find while the pairs stream out of the join (the pairs are
//! never held), so they are complete whatever the group's size — unlike lists of k neighbours,
//! which cut a group larger than k. Which row a group keeps is decided by a stated,
//! deterministic [`Keep`] policy: the lowest row index by default, or the row with the largest
//! or smallest value of a column (ties to the lowest index), so the result never depends on
//! threads, shards or the order in which pairs were found.

use crate::data::Element;
use crate::engine::range::Pair;
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::progress::{NoProgress, Progress};
use crate::range::RangeJoin;

/// A union-find (disjoint sets) over rows `0..n`, by size with path halving.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` rows, each its own set.
    pub fn new(n: usize) -> Self {
        UnionFind { parent: (0..n).collect(), size: vec![1; n] }
    }

    /// Rows covered.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// True when it covers no rows.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The representative of `x`'s set.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of `a` and `b`.
    pub fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.size[ra] >= self.size[rb] { (ra, rb) } else { (rb, ra) };
        self.parent[small] = big;
        self.size[big] += self.size[small];
    }

    /// Joins the rows of every pair, checking that both are rows of this set (`what` names the
    /// pairs' source in the error).
    pub fn union_pairs(&mut self, pairs: impl IntoIterator<Item = (i64, i64)>, what: &str) -> Result<()> {
        let n = self.len();
        for (t, (i, j)) in pairs.into_iter().enumerate() {
            let ok = |x: i64| usize::try_from(x).ok().filter(|&x| x < n);
            match (ok(i), ok(j)) {
                (Some(a), Some(b)) => self.union(a, b),
                _ => return Err(Error::invalid(what, format!("pair {t} is ({i}, {j}), but rows are numbered 0 to {}", n as i64 - 1))),
            }
        }
        Ok(())
    }
}

/// Values of a column that ranks rows for [`Keep::Largest`] / [`Keep::Smallest`]. `None` (a null,
/// or a float NaN) never wins over a value; equal values go to the lower row index.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RankValues {
    /// Signed integers (also dates, times, timestamps, durations, booleans as 0/1, lengths).
    Int(Vec<Option<i64>>),
    /// Unsigned integers.
    UInt(Vec<Option<u64>>),
    /// Floats.
    Float(Vec<Option<f64>>),
}

impl RankValues {
    fn len(&self) -> usize {
        match self {
            RankValues::Int(v) => v.len(),
            RankValues::UInt(v) => v.len(),
            RankValues::Float(v) => v.len(),
        }
    }

    /// `a` ranks strictly above `b` when looking for the largest value (`largest`) or the
    /// smallest: a value beats no value; ties do not.
    fn beats(&self, a: usize, b: usize, largest: bool) -> bool {
        fn cmp<T: PartialOrd + Copy>(x: Option<T>, y: Option<T>, largest: bool) -> bool {
            match (x, y) {
                (Some(x), Some(y)) => {
                    if largest {
                        x > y
                    } else {
                        x < y
                    }
                }
                (Some(_), None) => true,
                _ => false,
            }
        }
        match self {
            RankValues::Int(v) => cmp(v[a], v[b], largest),
            RankValues::UInt(v) => cmp(v[a], v[b], largest),
            RankValues::Float(v) => cmp(v[a].filter(|x| !x.is_nan()), v[b].filter(|x| !x.is_nan()), largest),
        }
    }
}

/// Which row of a duplicate group is kept.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Keep {
    /// The row with the lowest index (the first in the data).
    #[default]
    First,
    /// The row with the largest value (e.g. the longest text: its length), ties to the lowest index.
    Largest(RankValues),
    /// The row with the smallest value, ties to the lowest index.
    Smallest(RankValues),
}

impl Keep {
    fn check(&self, n: usize) -> Result<()> {
        match self {
            Keep::First => Ok(()),
            Keep::Largest(v) | Keep::Smallest(v) if v.len() == n => Ok(()),
            Keep::Largest(v) | Keep::Smallest(v) => Err(Error::invalid("keep", format!("{} ranking values for {n} rows; give one per row", v.len()))),
        }
    }

    /// Row `a` is a better keeper than row `b`.
    fn better(&self, a: usize, b: usize) -> bool {
        let by_value = match self {
            Keep::First => None,
            Keep::Largest(v) => Some((v, true)),
            Keep::Smallest(v) => Some((v, false)),
        };
        match by_value {
            None => a < b,
            Some((v, largest)) => v.beats(a, b, largest) || (!v.beats(b, a, largest) && a < b),
        }
    }
}

/// The duplicate groups of `n` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// For every row, the index of the row its group keeps (itself for a kept or unique row).
    pub group: Vec<i64>,
    /// For every row, whether it is kept (exactly one per group).
    pub keep: Vec<bool>,
    /// Pairs that passed the threshold (the edges of the graph).
    pub pairs: usize,
}

impl Groups {
    /// The groups of the sets of `uf`, each keeping the row `keep` prefers.
    pub fn from_union_find(uf: &mut UnionFind, keep: &Keep, pairs: usize) -> Result<Groups> {
        let n = uf.len();
        keep.check(n)?;
        // The keeper of each set, found in one pass over the rows in order.
        let mut best: Vec<usize> = vec![usize::MAX; n];
        for r in 0..n {
            let root = uf.find(r);
            let b = best[root];
            if b == usize::MAX || keep.better(r, b) {
                best[root] = r;
            }
        }
        let group: Vec<i64> = (0..n).map(|r| best[uf.find(r)] as i64).collect();
        let keep = group.iter().enumerate().map(|(r, &g)| g == r as i64).collect();
        Ok(Groups { group, keep, pairs })
    }

    /// The groups of `n` rows joined by `pairs` (row indices in `0..n`).
    pub fn from_pairs(n: usize, pairs: impl IntoIterator<Item = (i64, i64)>, keep: &Keep) -> Result<Groups> {
        let mut uf = UnionFind::new(n);
        let mut count = 0usize;
        uf.union_pairs(pairs.into_iter().inspect(|_| count += 1), "pairs")?;
        Groups::from_union_find(&mut uf, keep, count)
    }

    /// Rows kept.
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|k| **k).count()
    }

    /// Rows removed (duplicates of a kept row).
    pub fn removed(&self) -> usize {
        self.keep.len() - self.kept()
    }

    /// Groups of more than one row.
    pub fn duplicate_groups(&self) -> usize {
        let mut has_dup = vec![false; self.group.len()];
        for (r, &g) in self.group.iter().enumerate() {
            if g != r as i64 {
                has_dup[g as usize] = true;
            }
        }
        has_dup.iter().filter(|h| **h).count()
    }
}

/// Dedup by the exact threshold join: the groups of every pair whose score passes the
/// threshold, one row kept per group. Defaults: cosine, [`Keep::First`], the join's defaults.
#[derive(Debug, Clone)]
pub struct Dedup {
    join: RangeJoin,
    keep: Keep,
}

impl Dedup {
    /// Rows whose score passes `threshold` (a cosine similarity unless [`Dedup::metric`] says
    /// otherwise) are duplicates of each other, transitively.
    pub fn new(threshold: f64) -> Self {
        Dedup { join: RangeJoin::new(threshold), keep: Keep::First }
    }

    /// The metric: [`Metric::Cosine`] (default), [`Metric::InnerProduct`] or [`Metric::L2`].
    pub fn metric(mut self, metric: Metric) -> Self {
        self.join = self.join.metric(metric);
        self
    }

    /// Which row a group keeps.
    pub fn keep(mut self, keep: Keep) -> Self {
        self.keep = keep;
        self
    }

    /// Stop with an error once more than this many pairs pass.
    pub fn max_pairs(mut self, n: usize) -> Self {
        self.join = self.join.max_pairs(n);
        self
    }

    /// CPU worker threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.join = self.join.threads(n);
        self
    }

    /// Working memory in bytes (see [`RangeJoin::memory_budget`]).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.join = self.join.memory_budget(bytes);
        self
    }

    /// The join it runs.
    pub fn join(&self) -> &RangeJoin {
        &self.join
    }

    /// The groups of the `n × d` row-major `data`.
    pub fn run<T: Element>(&self, data: &[T], d: usize) -> Result<Groups> {
        self.run_with_progress(data, d, &NoProgress)
    }

    /// [`Dedup::run`], reporting the join's progress to `progress`, which may stop it.
    pub fn run_with_progress<T: Element>(&self, data: &[T], d: usize, progress: &dyn Progress) -> Result<Groups> {
        let n = data.len().checked_div(d).unwrap_or(0);
        // Checked before the search, so that a bad policy fails fast.
        self.keep.check(n)?;
        let mut uf = UnionFind::new(n);
        let mut count = 0usize;
        self.join.stream(data, d, progress, &mut |batch: &[Pair]| {
            count += batch.len();
            for p in batch {
                uf.union(p.i as usize, p.j as usize);
            }
            Ok(())
        })?;
        Groups::from_union_find(&mut uf, &self.keep, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_components_keeping_one_row_each() {
        // 0-3, 3-5 chain into one group; 2-4 another; 1 and 6 alone.
        let g = Groups::from_pairs(7, [(3, 5), (0, 3), (2, 4)], &Keep::First).unwrap();
        assert_eq!(g.group, vec![0, 1, 2, 0, 2, 0, 6]);
        assert_eq!(g.keep, vec![true, true, true, false, false, false, true]);
        assert_eq!((g.kept(), g.removed(), g.duplicate_groups(), g.pairs), (4, 3, 2, 3));
        // The same pairs in any order, either way round: the same groups.
        let h = Groups::from_pairs(7, [(4, 2), (5, 3), (3, 0)], &Keep::First).unwrap();
        assert_eq!(g.group, h.group);
    }

    #[test]
    fn keep_by_value_breaks_ties_by_index_and_never_prefers_nulls() {
        let pairs = [(0, 1), (1, 2), (2, 3)];
        let lengths = RankValues::Int(vec![Some(5), Some(9), Some(9), None]);
        let g = Groups::from_pairs(4, pairs, &Keep::Largest(lengths.clone())).unwrap();
        assert_eq!(g.group, vec![1; 4], "the largest value, ties to the lower index");
        let g = Groups::from_pairs(4, pairs, &Keep::Smallest(lengths)).unwrap();
        assert_eq!(g.group, vec![0; 4], "a null never wins");
        let all_null = RankValues::Float(vec![None, Some(f64::NAN), None, None]);
        assert_eq!(Groups::from_pairs(4, pairs, &Keep::Largest(all_null)).unwrap().group, vec![0; 4]);
        let big = RankValues::UInt(vec![Some(u64::MAX), Some(u64::MAX - 1), Some(0), Some(7)]);
        assert_eq!(Groups::from_pairs(4, pairs, &Keep::Smallest(big)).unwrap().group, vec![2; 4]);
        // Timestamps one nanosecond apart beyond 2^53 are told apart (not rounded to f64).
        let ts = RankValues::Int(vec![Some((1 << 60) + 1), Some(1 << 60), None, None]);
        assert_eq!(Groups::from_pairs(4, [(0, 1)], &Keep::Smallest(ts)).unwrap().group[..2], [1, 1]);
    }

    #[test]
    fn bad_pairs_and_policies_are_errors() {
        assert!(matches!(Groups::from_pairs(3, [(0, 3)], &Keep::First), Err(Error::InvalidArgument { .. })));
        assert!(matches!(Groups::from_pairs(3, [(-1, 2)], &Keep::First), Err(Error::InvalidArgument { .. })));
        let short = Keep::Largest(RankValues::Int(vec![Some(1)]));
        let e = Groups::from_pairs(3, [(0, 1)], &short).unwrap_err().to_string();
        assert!(e.contains("1 ranking values for 3 rows"), "{e}");
    }
}
