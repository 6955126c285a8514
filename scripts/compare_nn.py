#!/usr/bin/env python3
"""Checks that two faiss-nn outputs of the same input agree, tie-aware, and both are exact.

    python3 scripts/compare_nn.py INPUT.parquet A.nn.parquet B.nn.parquet [--metric l2|ip] [--column embedding]

For every row of both outputs (e.g. a CPU run and a `--device 0` run): k entries, no row in its
own list, no index twice, each reported score within `rtol` of its float64 recomputation, and
the list is a true top-k: every listed score is at least as good as the float64 k-th best score
(within the tolerance), so lists may differ only by swaps inside groups of equal distance. Prints
how many rows are identical between A and B and exits 1 on any violation.
Needs numpy and pyarrow.
"""
import argparse
import sys

import numpy as np
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--metric", default="l2", choices=["l2", "ip"])
    ap.add_argument("--column", default="embedding")
    ap.add_argument("--rtol", type=float, default=1e-5)
    args = ap.parse_args()
    x = np.array(pq.read_table(args.input, columns=[args.column]).column(0).to_pylist(), dtype=np.float64)
    n = x.shape[0]
    # float64 scores of every pair: squared L2 (ascending) or inner product (descending).
    g = x @ x.T
    if args.metric == "l2":
        sq = np.einsum("ij,ij->i", x, x)
        s = np.maximum(sq[:, None] + sq[None, :] - 2.0 * g, 0.0)
        sign = 1.0
    else:
        s = g
        sign = -1.0
    np.fill_diagonal(s, np.inf * sign)
    scale = np.abs(s[np.isfinite(s)]).max()
    tol = args.rtol * scale
    bad = 0
    lists = {}
    for name in (args.a, args.b):
        t = pq.read_table(name, columns=["nn_indices", "nn_scores"])
        idx = t.column("nn_indices").to_pylist()
        sc = t.column("nn_scores").to_pylist()
        if len(idx) != n:
            print(f"{name}: {len(idx)} rows, input has {n}")
            return 1
        k = len(idx[0])
        kth = np.sort(sign * s, axis=1)[:, k - 1] * sign  # the float64 k-th best score per row
        for i in range(n):
            ids, scores = idx[i], sc[i]
            problems = []
            if len(ids) != k or len(scores) != k:
                problems.append(f"{len(ids)} entries")
            if i in ids:
                problems.append("holds itself")
            if len(set(ids)) != len(ids):
                problems.append("an index twice")
            for j, r in zip(ids, scores):
                if not 0 <= j < n:
                    problems.append(f"index {j} out of range")
                    continue
                if abs(r - s[i, j]) > tol:
                    problems.append(f"score of {j}: {r} vs exact {s[i, j]}")
                if sign * (s[i, j] - kth[i]) > tol:
                    problems.append(f"{j} ({s[i, j]}) is worse than the exact k-th ({kth[i]})")
            if problems:
                bad += 1
                if bad <= 10:
                    print(f"{name}: row {i}: " + "; ".join(problems))
        lists[name] = idx
    same = sum(a == b for a, b in zip(lists[args.a], lists[args.b]))
    print(f"{n} rows, k = {k}: {same} lists identical between the two outputs; {bad} rows with violations (tolerance {tol:.3g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
