"""faiss_nn.ray at equal cores: the Ray path (2 actors × 1 thread) against the in-process call
(1 process × 2 threads), and the symmetric schedule against the broadcast one, in one run.

    python3 benches/ray_schedules.py [--data PATH] [--rows 20000] [--k 10] [--repeats 3]

Data as in benches/distilabel_step.py: the MiniLM rows of --data (else $FAISS_NN_MINILM_10K,
else data/demo.parquet) plus seeded noisy copies up to --rows, unit length. A local Ray cluster
with 2 CPUs is started once (not timed); each timed call includes the actors' start and their
fetch of the blocks from the object store, the joins, and the merge, with the result collected
on the driver (collect=True). Each side's result is checked equal to the in-process one before
any number is printed. Per-pair figures (rows, products, object-store bytes) are printed for the
cost model in docs/ray.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import ray

import faiss_nn
import faiss_nn.ray as fray

from distilabel_step import REPO, build_rows  # same data as the step benchmark


def timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    path = a.data or Path(os.environ.get("FAISS_NN_MINILM_10K") or REPO / "data" / "demo.parquet")
    x = build_rows(path, a.rows)
    n, d = x.shape
    ray.init(num_cpus=a.shards, include_dashboard=False, log_to_driver=False, configure_logging=False)
    want = faiss_nn.self_knn(x, k=a.k, threads=a.shards)
    sides = {
        "in-process (1 process x %d threads)" % a.shards: lambda: faiss_nn.self_knn(x, k=a.k, threads=a.shards),
        # keep_actors: the actors start once (about a second each), as in a long-lived service.
        "ray symmetric (%d actors x 1 thread)" % a.shards: lambda: fray.self_knn(
            x, k=a.k, shards=a.shards, collect=True, keep_actors=True
        ),
        "ray broadcast (%d actors x 1 thread)" % a.shards: lambda: fray.self_knn(
            x, k=a.k, shards=a.shards, schedule="broadcast", collect=True, keep_actors=True
        ),
    }
    times = {s: [] for s in sides}
    for name, f in sides.items():  # warm-up and equality check
        _, got = timed(f)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), name
    for _ in range(a.repeats):  # sides interleaved
        for name, f in sides.items():
            times[name].append(timed(f)[0])
    base = statistics.median(times[next(iter(sides))])
    print(f"rows {n} x {d}, k = {a.k}, {a.repeats} repeats, median seconds (ratio to in-process)")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:40s} {m:7.3f} s  ({m / base:.2f}x)  all: {', '.join(f'{t:.3f}' for t in ts)}")
    sym = statistics.median(times[list(sides)[1]])
    bro = statistics.median(times[list(sides)[2]])
    print(f"  symmetric vs broadcast: {bro / sym:.2f}x faster")
    blocks = len(fray.plan_blocks(n, a.shards))
    rows_per_block = -(-n // blocks)
    pairs = blocks * (blocks - 1) // 2
    print(
        f"  plan: {blocks} blocks of <= {rows_per_block} rows; symmetric: {blocks} self-joins + {pairs} pairs, "
        f"{pairs} block transfers ({pairs * rows_per_block * d * 4 / 2**20:.1f} MiB) + candidates "
        f"{2 * pairs * rows_per_block * a.k * 12 / 2**20:.1f} MiB; broadcast: {blocks * blocks} searches"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
