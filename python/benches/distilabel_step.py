"""faiss_nn.distilabel.FaissNearestNeighbour against distilabel's own FaissNearestNeighbour
(faiss-cpu), on the same rows with the same k, in one run.

    python3 benches/distilabel_step.py [--data PATH] [--rows 20000] [--k 10] [--repeats 3]

Data: the 384-d MiniLM rows of --data (else $FAISS_NN_MINILM_10K, else data/demo.parquet),
followed by noisy copies of them (Gaussian noise, sigma 0.05 per component, seeded) up to
--rows rows, every row normalised to unit length. The rows reach each step as distilabel hands
them to a global step: a list of dicts whose "embedding" is a Python list of floats (plus an
"id" column).

Every measurement is a fresh Python process per side (sides alternate, --repeats each). In it:
the step is built and load()ed, the rows are built, gc runs, the kernel's RSS high-water mark is
reset (writing 5 to /proc/self/clear_refs), then `next(step.process(rows))` is timed with
time.perf_counter. Peak memory = VmHWM after process() minus VmRSS just before it: the most
memory process() added on top of its input rows, as the operating system counted it (native
allocations of faiss, numpy, Arrow and Rust included). The outputs of the two sides are
compared (neighbour sets and scores, tie-aware) before any number is printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(side: str, rows_path: str, k: int, out_path: str) -> None:
    """One measurement, in its own process."""
    x = np.load(rows_path)
    if side == "faiss_nn":
        from faiss_nn.distilabel import FaissNearestNeighbour
    else:
        import faiss  # noqa: F401  (imported before timing, as a loaded step would have it)
        from distilabel.steps.embeddings.nearest_neighbour import FaissNearestNeighbour
    step = FaissNearestNeighbour(k=k)
    step.load()
    rows = [{"id": i, "embedding": e} for i, e in enumerate(x.tolist())]
    del x
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    rss0 = status_kb("VmRSS")
    t0 = time.perf_counter()
    out = next(step.process(rows))
    seconds = time.perf_counter() - t0
    hwm = status_kb("VmHWM")
    idx = np.array([r["nn_indices"] for r in out], dtype=np.int64)
    sc = np.array([r["nn_scores"] for r in out], dtype=np.float32)
    np.savez(out_path, indices=idx, scores=sc)
    print(json.dumps({"side": side, "seconds": seconds, "rss_before_kb": rss0, "hwm_kb": hwm, "peak_extra_kb": hwm - rss0}))


def build_rows(path: Path, n: int) -> np.ndarray:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["embedding"])
    base = t.column("embedding").combine_chunks().flatten().to_numpy().astype(np.float32).reshape(t.num_rows, -1)
    rng = np.random.default_rng(20000)
    parts, have = [base], len(base)
    while have < n:
        noisy = base + rng.normal(0.0, 0.05, base.shape).astype(np.float32)
        parts.append(noisy)
        have += len(noisy)
    x = np.concatenate(parts)[:n]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def compare(a: dict, b: dict, tol: float = 1e-5) -> str:
    ai, as_, bi, bs = a["indices"], a["scores"], b["indices"], b["scores"]
    diff = float(np.abs(as_.astype(np.float64) - bs).max())
    if diff > tol:
        raise SystemExit(f"the two steps' scores differ by {diff:g} > {tol:g}")
    same = float((ai == bi).mean())
    sets = float(np.mean([set(p) == set(q) for p, q in zip(ai.tolist(), bi.tolist())]))
    return f"scores within {diff:.2g}; identical lists {same:.4%} of positions, same sets {sets:.4%} of rows"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", nargs=4, metavar=("SIDE", "ROWS", "K", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        side, rows_path, k, out = args.worker
        return worker(side, rows_path, int(k), out)

    path = args.data or Path(os.environ.get("FAISS_NN_MINILM_10K") or REPO / "data" / "demo.parquet")
    x = build_rows(path, args.rows)
    results = {"faiss_nn": [], "distilabel": []}
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = str(Path(tmp) / "rows.npy")
        np.save(rows_path, x)
        for rep in range(args.repeats):
            for side in ("distilabel", "faiss_nn") if rep % 2 else ("faiss_nn", "distilabel"):
                out = str(Path(tmp) / f"{side}.npz")
                proc = subprocess.run(
                    [sys.executable, str(HERE), "--worker", side, rows_path, str(args.k), out],
                    capture_output=True, text=True,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{side} worker failed:\n{proc.stderr[-4000:]}")
                results[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                with np.load(out) as z:
                    outputs[side] = {"indices": z["indices"], "scores": z["scores"]}
        agreement = compare(outputs["faiss_nn"], outputs["distilabel"])

    print(f"data: {path.name} -> {len(x)} x {x.shape[1]} unit rows, k = {args.k}, {args.repeats} fresh processes per side")
    print(f"outputs: {agreement}")
    med = {}
    for side, runs in results.items():
        t = statistics.median(r["seconds"] for r in runs)
        m = statistics.median(r["peak_extra_kb"] for r in runs) / 1024
        base = statistics.median(r["rss_before_kb"] for r in runs) / 1024
        med[side] = (t, m)
        times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(f"{side:10s} process(): median {t:7.3f} s [{times}]  peak extra RSS {m:7.1f} MiB (RSS before {base:.0f} MiB)")
    (tf, mf), (td, md) = med["faiss_nn"], med["distilabel"]
    print(f"faiss_nn is {td / tf:.1f}x faster and uses {mf / md:.3f} of distilabel's peak extra memory")


if __name__ == "__main__":
    sys.exit(main())
