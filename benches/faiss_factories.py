#!/usr/bin/env python3
"""The faiss backend against the faiss-cpu wheel, factory by factory, with recall.

For each factory string: ours is the whole step from Python (`faiss_nn.self_knn(x, k=10,
string_factory=..., search_params=...)`: checks, train on every row, add, search every row for
k + 1 in batches of 50, the row removed by index); the wheel does the same with its own faiss
(index_factory, train, add, the same batched search, the row dropped by index). The two run
alternately, round by round, in one process. recall@10 of each against our exact search.

    bash scripts/python-wheel.sh && python3 -m pip install faiss-cpu pyarrow numpy
    python3 benches/faiss_factories.py                       # MiniLM 10k × 384, 3 rounds
    python3 benches/faiss_factories.py --rows 100000 --rounds 3
    python3 benches/faiss_factories.py --factories "IVF256,Flat" "HNSW32"

With --rows above 10,000, rows are MiniLM-like: real row i mod 10,000 plus Gaussian noise of
norm about 0.1, normalised to unit length (seeded).
"""
import argparse
import pathlib
import statistics
import time

import faiss
import faiss_nn
import numpy as np
import pyarrow.parquet as pq

K = 10
BATCH = 50
root = pathlib.Path(__file__).resolve().parent.parent
CASES = [
    ("IVF256,Flat", ""),
    ("IVF1024,Flat", "nprobe=16"),
    ("HNSW32", ""),
    ("IVF256,PQ32", ""),
    ("PQ16", ""),
    ("SQ8", ""),
]


def rows(n):
    full = root.parent / "shared" / "data" / "pypi-minilm-10k.parquet"
    path = full if full.exists() else root / "data" / "demo.parquet"
    real = np.asarray(pq.read_table(path, columns=["embedding"]).column("embedding").to_pylist(), dtype=np.float32)
    if n <= len(real):
        return real[:n].copy()
    rng = np.random.default_rng(n)
    x = real[np.arange(n) % len(real)].astype(np.float64)
    x[len(real):] += rng.standard_normal((n - len(real), x.shape[1])) * (0.1 / np.sqrt(x.shape[1]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def wheel(x, factory, params):
    idx = faiss.index_factory(x.shape[1], factory, faiss.METRIC_L2)
    if not idx.is_trained:
        idx.train(x)
    idx.add(x)
    if params:
        faiss.ParameterSpace().set_index_parameters(idx, params)
    out = np.empty((len(x), K), dtype=np.int64)
    for q0 in range(0, len(x), BATCH):
        _, lab = idx.search(x[q0:q0 + BATCH], K + 1)
        for r, row in enumerate(lab):
            own = q0 + r
            keep = [j for j in row if j != own and j >= 0][:K]
            out[q0 + r] = keep + [-1] * (K - len(keep))
    return out


def ours(x, factory, params):
    ids, _ = faiss_nn.self_knn(x, k=K, string_factory=factory, search_params=params or None, search_batch_size=BATCH)
    return ids


def recall(got, exact):
    hits = sum(len(set(g[g >= 0]) & set(e)) for g, e in zip(got, exact))
    return hits / exact.size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--factories", nargs="*", help="only these factory strings (of the list)")
    a = ap.parse_args()
    x = rows(a.rows)
    exact, _ = faiss_nn.self_knn(x, k=K)
    print(f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), faiss_nn {faiss_nn.__version__}, "
          f"{len(x)} × {x.shape[1]}, k = {K}, {a.rounds} rounds")
    print("| factory | search params | ours (median) | wheel (median) | wheel / ours, median of rounds (lowest) | recall@10 ours | recall@10 wheel |")
    print("|---|---|---|---|---|---|---|")
    for factory, params in CASES:
        if a.factories and factory not in a.factories:
            continue
        to, tw, ratios = [], [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            got_o = ours(x, factory, params)
            to.append(time.perf_counter() - t)
            t = time.perf_counter()
            got_w = wheel(x, factory, params)
            tw.append(time.perf_counter() - t)
            ratios.append(tw[-1] / to[-1])
        print(f"| {factory} | {params or '–'} | {statistics.median(to):.2f} s | {statistics.median(tw):.2f} s | "
              f"**{statistics.median(ratios):.2f}×** ({min(ratios):.2f}×) | {recall(got_o, exact):.4f} | {recall(got_w, exact):.4f} |", flush=True)


if __name__ == "__main__":
    main()
