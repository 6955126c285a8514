//! Handing out block pairs to workers so that no two pairs in flight share a block: a worker owns
//! the top-k state of both blocks of its pair while it computes, so the state exists once (not
//! once per worker) and needs no merge.
//!
//! Pairs are queued in rounds of a round-robin tournament (the circle method): within a round no
//! two pairs share a block, so workers taking pairs in queue order almost never wait. A worker
//! takes the first queued pair whose blocks are both free, and waits only when every queued pair
//! touches a block in flight.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A pair of blocks: `a` of the first row set, `b` of the second (the same set in a self-join).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    pub a: usize,
    pub b: usize,
}

struct Queue {
    pending: VecDeque<Pair>,
    /// Blocks in flight; the second set's blocks follow the first's (bipartite joins).
    busy: Vec<bool>,
}

/// The pairs of a join, handed out under the rule above.
pub(crate) struct Schedule {
    queue: Mutex<Queue>,
    freed: Condvar,
    /// Offset of the second set's blocks in `busy` (0 in a self-join: one set).
    second: usize,
}

impl Schedule {
    /// Every pair `(i, j ≥ i)` of `blocks` blocks: the self-join. Diagonal pairs come first (no
    /// two share a block), then the tournament's rounds.
    pub(crate) fn self_join(blocks: usize) -> Self {
        let mut pending: VecDeque<Pair> = (0..blocks).map(|i| Pair { a: i, b: i }).collect();
        pending.extend(round_robin(blocks));
        Schedule::new(pending, blocks, 0)
    }

    /// Every pair `(i, j)` of `a_blocks` × `b_blocks`: a join of two disjoint row sets. Round r
    /// pairs block i with block (i + r) mod b, so a round's pairs are disjoint on both sides.
    pub(crate) fn bipartite(a_blocks: usize, b_blocks: usize) -> Self {
        let rounds = a_blocks.max(b_blocks);
        let mut pending = VecDeque::with_capacity(a_blocks * b_blocks);
        for r in 0..rounds {
            for i in 0..a_blocks {
                let j = (i + r) % rounds;
                if j < b_blocks {
                    pending.push_back(Pair { a: i, b: j });
                }
            }
        }
        // rounds ≥ both counts, so every (i, j) appears exactly once.
        Schedule::new(pending, a_blocks + b_blocks, a_blocks)
    }

    fn new(pending: VecDeque<Pair>, blocks: usize, second: usize) -> Self {
        Schedule { queue: Mutex::new(Queue { pending, busy: vec![false; blocks] }), freed: Condvar::new(), second }
    }

    /// Number of pairs still queued.
    pub(crate) fn remaining(&self) -> usize {
        self.lock().pending.len()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker that panicked released its blocks through `Taken`'s drop; the queue itself is
        // never left half-updated, so a poisoned lock is still a consistent queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next pair whose blocks are free, marked busy until the returned guard drops; `None`
    /// once every pair has been handed out.
    pub(crate) fn take(&self) -> Option<Taken<'_>> {
        let mut q = self.lock();
        loop {
            if q.pending.is_empty() {
                return None;
            }
            let free = |q: &Queue, p: &Pair| !q.busy[p.a] && !q.busy[self.second + p.b];
            if let Some(pos) = q.pending.iter().position(|p| free(&q, p)) {
                let pair = q.pending.remove(pos).expect("position is in range");
                q.busy[pair.a] = true;
                q.busy[self.second + pair.b] = true;
                return Some(Taken { schedule: self, pair });
            }
            q = self.freed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A pair being worked on; dropping it (also while unwinding) frees its blocks.
pub(crate) struct Taken<'a> {
    schedule: &'a Schedule,
    pub pair: Pair,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut q = self.schedule.lock();
        q.busy[self.pair.a] = false;
        q.busy[self.schedule.second + self.pair.b] = false;
        drop(q);
        self.schedule.freed.notify_all();
    }
}

/// The off-diagonal pairs `(i, j)`, `i < j < blocks`, in the rounds of a round-robin tournament
/// (circle method, with a bye when `blocks` is odd).
fn round_robin(blocks: usize) -> Vec<Pair> {
    if blocks < 2 {
        return Vec::new();
    }
    let m = blocks + blocks % 2; // players, with a bye
    let mut out = Vec::with_capacity(blocks * (blocks - 1) / 2);
    let mut ring: Vec<usize> = (0..m).collect();
    for _ in 0..m - 1 {
        for t in 0..m / 2 {
            let (x, y) = (ring[t], ring[m - 1 - t]);
            if x < blocks && y < blocks {
                out.push(Pair { a: x.min(y), b: x.max(y) });
            }
        }
        // Keep player 0 fixed, rotate the rest.
        ring[1..].rotate_right(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_tournament_covers_every_pair_once_in_disjoint_rounds() {
        for blocks in 0..12usize {
            let pairs = round_robin(blocks);
            let set: HashSet<(usize, usize)> = pairs.iter().map(|p| (p.a, p.b)).collect();
            assert_eq!(set.len(), pairs.len(), "{blocks}: a pair repeats");
            assert_eq!(pairs.len(), blocks * blocks.saturating_sub(1) / 2, "{blocks}");
            assert!(pairs.iter().all(|p| p.a < p.b && p.b < blocks));
            // Every run of ⌊blocks/2⌋ consecutive pairs from the start of a round is disjoint.
            let per_round = blocks / 2;
            if per_round > 0 {
                for round in pairs.chunks(per_round) {
                    let mut seen = HashSet::new();
                    for p in round {
                        assert!(seen.insert(p.a) && seen.insert(p.b), "{blocks}: {round:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bipartite_covers_the_product() {
        for (a, b) in [(1, 1), (3, 5), (5, 3), (4, 4)] {
            let s = Schedule::bipartite(a, b);
            let mut got = HashSet::new();
            while let Some(t) = s.take() {
                assert!(got.insert((t.pair.a, t.pair.b)));
            }
            assert_eq!(got.len(), a * b);
        }
    }

    #[test]
    fn pairs_in_flight_never_share_a_block() {
        let s = Schedule::self_join(7);
        let first = s.take().unwrap();
        let second = s.take().unwrap();
        let blocks = |p: Pair| [p.a, p.b];
        assert!(blocks(first.pair).iter().all(|x| !blocks(second.pair).contains(x)));
        drop((first, second));
        let mut n = 2;
        while s.take().is_some() {
            n += 1;
        }
        assert_eq!(n, 7 * 8 / 2);
        assert_eq!(s.remaining(), 0);
    }
}
