#!/usr/bin/env python3
"""faiss-cpu (the PyPI wheel, its own OpenBLAS) on the benchmark cases of the Rust benches.

Without arguments: the cases of benches/self_knn.rs: faiss's self-kNN as the original step runs
it (search every row for k + 1) and the query-vs-database search, medians of 5 runs after a
warm-up. Run it right after `cargo bench --bench self_knn`, on the same idle machine:

    python3 -m pip install faiss-cpu pyarrow numpy
    python3 benches/faiss_python.py

With `--npy FILE --k K [--reps R]` (what benches/scale.rs runs): IndexFlatL2 over the rows of FILE
searched with every row for K + 1; prints `RESULT <median seconds> <peak RSS MB>`.
"""
import argparse
import pathlib
import resource
import statistics
import sys
import time

import faiss
import numpy as np
import pyarrow.parquet as pq

K = 10
root = pathlib.Path(__file__).resolve().parent.parent


def median_time(fn, runs=5):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def flat(metric, x):
    idx = faiss.IndexFlatL2(x.shape[1]) if metric == "l2" else faiss.IndexFlatIP(x.shape[1])
    idx.add(x)
    return idx


def normal(n, d, seed):
    # Not the same generator as the Rust bench; the timing depends only on the shape.
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def scale_case(path, k, reps):
    x = np.load(path)
    idx = faiss.IndexFlatL2(x.shape[1])
    idx.add(x)
    idx.search(x[: min(len(x), 2000)], k + 1)  # warm-up: threads, BLAS
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        idx.search(x, k + 1)
        times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads", file=sys.stderr)
    print(f"RESULT {statistics.median(times)} {peak_mb}")


parser = argparse.ArgumentParser()
parser.add_argument("--npy")
parser.add_argument("--k", type=int, default=K)
parser.add_argument("--reps", type=int, default=3)
args = parser.parse_args()
if args.npy:
    scale_case(args.npy, args.k, args.reps)
    sys.exit(0)

full = root.parent / "shared/data/pypi-minilm-10k.parquet"
path = full if full.exists() else root / "data/demo.parquet"
x = np.asarray(pq.read_table(path, columns=["embedding"]).column(0).to_pylist(), dtype=np.float32)
q = x[:2000] + 0.01 * normal(2000, x.shape[1], 3)
big = normal(20_000, 1024, 42)
print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads")
for name, data in [(f"self_knn_k10/{path.stem}", x), ("self_knn_k10/normal_20k_x1024", big)]:
    for metric in ["l2", "ip"]:
        idx = flat(metric, data)
        print(f"{name} faiss-python/{metric}: {median_time(lambda: idx.search(data, K + 1)) * 1e3:.1f} ms")
for metric in ["l2", "ip"]:
    idx = flat(metric, x)
    print(f"search_k10/{path.stem} faiss-python/{metric}: {median_time(lambda: idx.search(q, K)) * 1e3:.1f} ms")
