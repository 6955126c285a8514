"""faiss_nn.self_knn from Python against FaissNearestNeighbour::run from Rust, same data, same k.

    python3 benches/python_vs_rust.py [--data PATH] [--k 10] [--rounds 5] [--reps 5]

Data: the parquet file named by --data, else $FAISS_NN_MINILM_10K, else the repository's
data/demo.parquet. The Rust side is examples/rust_self_knn.rs (built here with cargo, release
profile, the same faiss-nn features as the extension); it times `run` with std::time::Instant
after one warm-up call. The Python side times `faiss_nn.self_knn(x, k)` with time.perf_counter
on a float32 matrix already in memory, after one warm-up call. Rounds alternate between the two
so that drift on the machine hits both; each reports the median of all its repetitions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import faiss_nn

HERE = Path(__file__).resolve().parent
PY = HERE.parent
REPO = PY.parent


def load(path: Path) -> np.ndarray:
    t = pq.read_table(path, columns=["embedding"])
    col = t.column("embedding").combine_chunks()
    return np.ascontiguousarray(col.flatten().to_numpy().astype(np.float32).reshape(t.num_rows, -1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    path = args.data or Path(os.environ.get("FAISS_NN_MINILM_10K") or REPO / "data" / "demo.parquet")
    x = load(path)
    n, d = x.shape

    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(PY / "target"))
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--example", "rust_self_knn"], cwd=PY, env=env, check=True
    )
    exe = Path(env["CARGO_TARGET_DIR"]) / "release" / "examples" / "rust_self_knn"

    rust_ms, py_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "rows.f32"
        x.astype("<f4").tofile(raw)
        faiss_nn.self_knn(x, k=args.k)  # warm-up
        for _ in range(args.rounds):
            out = subprocess.run(
                [str(exe), str(raw), str(d), str(args.k), str(args.reps)], capture_output=True, text=True, check=True
            ).stdout
            rust_ms += [float(line.split()[1]) for line in out.splitlines() if line.startswith("run_ms")]
            for _ in range(args.reps):
                t0 = time.perf_counter()
                faiss_nn.self_knn(x, k=args.k)
                py_ms.append((time.perf_counter() - t0) * 1e3)

    r, p = statistics.median(rust_ms), statistics.median(py_ms)
    print(f"data: {path.name} ({n} x {d}), k = {args.k}, {len(rust_ms)} runs per side")
    print(f"rust  FaissNearestNeighbour::run  median {r:8.1f} ms  (min {min(rust_ms):.1f}, max {max(rust_ms):.1f})")
    print(f"python faiss_nn.self_knn          median {p:8.1f} ms  (min {min(py_ms):.1f}, max {max(py_ms):.1f})")
    print(f"python / rust = {p / r:.3f}  ({(p / r - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    sys.exit(main())
