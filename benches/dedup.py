#!/usr/bin/env python3
"""The threshold join and the dedup against what users run today, interleaved in one process
(every round times ours, then theirs, on the same rows).

    bash scripts/python-wheel.sh                   # builds and installs faiss_nn from this tree
    python3 benches/dedup.py --case join --rows 20000 100000 --threshold 0.95
    python3 benches/dedup.py --case step --rows 20000 --threshold 0.9 --k 10

Cases:
- join: `faiss_nn.range_pairs(x, t)` (cosine: the rows normalised inside, every pair computed
  once, candidates near t re-scored in float64) against the faiss-cpu wheel's
  `IndexFlatIP.range_search(xn, t)` over rows normalised beforehand (untimed), which computes
  every ordered pair. Also reports how many pairs (i < j) each lists, and how many differ (pairs
  whose float32 score sits at the threshold).
- step: our `ExactEmbeddingDedup` (embedding → dup_group / keep, no k) against distilabel's
  `FaissNearestNeighbour(k, metric_type=INNER_PRODUCT)` followed by its `EmbeddingDedup(t)`, both
  given the rows as distilabel hands them to a global step (lists of dicts). Reports the rows
  each keeps, and how many groups of true duplicates (the exact join's) distilabel keeps no row
  of ("drops twice").

Rows: the MiniLM 10k set (or the bundled 3k demo), and beyond it MiniLM-like rows: real row
i mod 10,000 plus Gaussian noise of norm about 0.1, normalised (as benches/faiss_factories.py).
Prints one Markdown row per case: medians over the rounds and the median per-round ratio
(theirs / ours), with the lowest.
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


def real_rows():
    full = root.parent / "shared" / "data" / "pypi-minilm-10k.parquet"
    path = full if full.exists() else root / "data" / "demo.parquet"
    table = pq.read_table(path)
    return np.asarray(table.column("embedding").to_pylist(), dtype=np.float32), table


def rows(n):
    real, table = real_rows()
    if n <= len(real):
        return real[:n].copy(), table.slice(0, n)
    rng = np.random.default_rng(n)
    x = real[np.arange(n) % len(real)].astype(np.float64)
    x[len(real):] += rng.standard_normal((n - len(real), x.shape[1])) * (0.1 / np.sqrt(x.shape[1]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), table.take(np.arange(n) % len(real))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def join_case(n, t, rounds):
    x, _ = rows(n)
    xn = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True).astype(np.float32)
    xn = np.ascontiguousarray(xn, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(xn)
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        a, (i, j, _) = timed(lambda: faiss_nn.range_pairs(x, t))
        b, (lims, _, labels) = timed(lambda: index.range_search(xn, t))
        ours_t.append(a)
        theirs_t.append(b)
    q = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    upper = q < labels
    theirs = set(zip(q[upper].tolist(), labels[upper].tolist()))
    ours = set(zip(i.tolist(), j.tolist()))
    report(f"threshold join, {n:,} rows, cosine > {t}", ours_t, theirs_t, f"pairs: ours {len(ours):,}, wheel {len(theirs):,}, differ {len(ours ^ theirs)}")


def step_case(n, t, k, rounds):
    from distilabel.steps import EmbeddingDedup as TheirDedup
    from distilabel.steps import FaissNearestNeighbour as TheirNN

    from faiss_nn.distilabel import ExactEmbeddingDedup

    x, table = rows(n)
    base = [{"text": s, "embedding": e} for s, e in zip(table.column("text").to_pylist(), x.tolist())]
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        ours_step = ExactEmbeddingDedup(threshold=t)
        ours_step.load()
        a, ours = timed(lambda: next(ours_step.process([dict(r) for r in base])))
        nn = TheirNN(k=k, metric_type=faiss.METRIC_INNER_PRODUCT)
        nn.load()
        dedup = TheirDedup(threshold=t)
        dedup.load()
        b, theirs = timed(lambda: next(dedup.process(next(nn.process([dict(r) for r in base])))))
        ours_t.append(a)
        theirs_t.append(b)
    keep_ours = np.array([r["keep_row_after_embedding_filtering"] for r in ours])
    keep_theirs = np.array([r["keep_row_after_embedding_filtering"] for r in theirs])
    group = np.array([r["dup_group"] for r in ours])
    dup_groups = np.unique(group[group != np.arange(n)])
    # A group of true duplicates of which distilabel keeps no row at all.
    kept_any = np.zeros(n, bool)
    np.logical_or.at(kept_any, group, keep_theirs)
    dropped_twice = int((~kept_any[dup_groups]).sum())
    rows_in = int(np.isin(group, dup_groups[~kept_any[dup_groups]]).sum())
    report(
        f"dedup step, {n:,} rows, cosine > {t} (distilabel: k = {k})",
        ours_t,
        theirs_t,
        f"kept: ours {int(keep_ours.sum()):,}, distilabel {int(keep_theirs.sum()):,}; "
        f"{len(dup_groups):,} duplicate groups, of which distilabel keeps no row of {dropped_twice:,} ({rows_in:,} rows)",
    )


def report(name, ours, theirs, extra):
    ratios = [b / a for a, b in zip(ours, theirs)]
    print(
        f"| {name} | {statistics.median(ours):.3f} s | {statistics.median(theirs):.3f} s | "
        f"**{statistics.median(ratios):.2f}×** (min {min(ratios):.2f}×) | {extra} |",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["join", "step"], default="join")
    p.add_argument("--rows", type=int, nargs="+", default=[20000])
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    print(f"faiss-cpu {faiss.__version__}, faiss_nn {faiss_nn.__version__}, {a.rounds} rounds")
    print("| case | ours (median) | theirs (median) | theirs / ours | notes |")
    print("|---|---|---|---|---|")
    for n in a.rows:
        if a.case == "join":
            join_case(n, a.threshold, a.rounds)
        else:
            step_case(n, a.threshold, a.k, a.rounds)


if __name__ == "__main__":
    main()
