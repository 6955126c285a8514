#!/usr/bin/env python3
"""Ours against the faiss-cpu wheel, interleaved in one process: every round times our case and
then the wheel's on the same rows, so that both see the same machine state. On a shared machine
whose speed drifts by 10-30 % within minutes, separate runs (criterion, then the wheel script)
can move a ratio by that much; interleaved rounds cannot.

    bash scripts/python-wheel.sh                # builds and installs faiss_nn from this tree
    python3 -m pip install faiss-cpu pyarrow numpy
    python3 benches/paired.py                   # the k = 10 cases of benches/self_knn.rs
    python3 benches/paired.py --cases k         # self-kNN at k = 10, 100, 1000, 4096 (10k rows)
    python3 benches/paired.py --rounds 9

What each side runs:
- self-kNN: ours is `faiss_nn.self_knn(x, k)` (the whole step: checks, the symmetric join, the
  exact re-scoring); the wheel's is the original distilabel step's method, `IndexFlat.search(x,
  k + 1)` on an index filled before the timing.
- search: 2,000 foreign queries (the first 2,000 rows plus noise) against all rows; ours is
  `faiss_nn.FlatIndex.search`, the wheel's `IndexFlat.search`, both on indexes filled untimed.

Prints one Markdown row per case: both medians over the rounds and the median of the per-round
ratios (wheel / ours; above 1, ours is faster), with the lowest per-round ratio.
"""
import argparse
import pathlib
import statistics
import time

import faiss
import faiss_nn
import numpy as np
import pyarrow.parquet as pq

root = pathlib.Path(__file__).resolve().parent.parent


def minilm():
    full = root.parent / "shared" / "data" / "pypi-minilm-10k.parquet"
    path, name = (full, "MiniLM 10k × 384") if full.exists() else (root / "data" / "demo.parquet", "MiniLM demo 3k × 384")
    col = pq.read_table(path, columns=["embedding"]).column("embedding").to_pylist()
    return np.asarray(col, dtype=np.float32), name


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def wheel_index(metric, x):
    idx = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
    idx.add(x)
    return idx


def cases(which):
    x, name = minilm()
    if which == "k":
        for k in (10, 100, 1000, 4096):
            if k < len(x):
                yield f"self-kNN, {name}, k = {k}", "l2", ("self", x, None, k)
        return
    for metric in ("l2", "ip"):
        yield f"self-kNN, {name}", metric, ("self", x, None, 10)
    big = np.random.default_rng(42).standard_normal((20_000, 1024), dtype=np.float32)
    for metric in ("l2", "ip"):
        yield "self-kNN, normal 20k × 1024", metric, ("self", big, None, 10)
    rng = np.random.default_rng(3)
    q = (x[:2000] + 0.01 * rng.standard_normal((2000, x.shape[1]), dtype=np.float32)).astype(np.float32)
    for metric in ("l2", "ip"):
        yield f"search 2k vs {name}", metric, ("search", x, q, 10)


def run_case(metric, spec, rounds):
    kind, x, q, k = spec
    wi = wheel_index(metric, x)
    if kind == "self":
        ours = lambda: faiss_nn.self_knn(x, k=k, metric=metric)  # noqa: E731
        theirs = lambda: wi.search(x, k + 1)  # noqa: E731
    else:
        fi = faiss_nn.FlatIndex(x.shape[1], metric)
        fi.add(x)
        ours = lambda: fi.search(q, k)  # noqa: E731
        theirs = lambda: wi.search(q, k)  # noqa: E731
    ours(), theirs()  # warm-up: threads, caches, first-touch pages
    o, t = [], []
    for _ in range(rounds):
        o.append(timed(ours))
        t.append(timed(theirs))
    ratios = [b / a for a, b in zip(o, t)]
    return statistics.median(o), statistics.median(t), statistics.median(ratios), min(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", choices=["k10", "k"], default="k10")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    print(f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads), faiss_nn {faiss_nn.__version__}, {a.rounds} rounds")
    print("| case | metric | ours (median) | faiss-cpu wheel (median) | wheel / ours, median of rounds (lowest) |")
    print("|---|---|---|---|---|")
    for label, metric, spec in cases(a.cases):
        o, t, r, lo = run_case(metric, spec, a.rounds)
        print(f"| {label} | {metric.upper()} | {o * 1e3:.1f} ms | {t * 1e3:.1f} ms | **{r:.2f}×** ({lo:.2f}×) |", flush=True)


if __name__ == "__main__":
    main()
