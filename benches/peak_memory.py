"""Peak resident memory of the `faiss-nn` command against the size of its input matrix.

For each case this writes a random float32 input (NPY or Parquet `list<float32>`), runs the
release binary on it (`target/release/faiss-nn`, built by `cargo build --release`), and reads
the child's peak RSS from the kernel (getrusage of the finished child). It prints a Markdown
table: matrix size, output size (k × n × 12 bytes: int64 index + float32 score), peak RSS, and
peak / matrix. The binary's baseline (the process with a tiny input) is measured too.

    python3 benches/peak_memory.py            # every case (needs ~6 GB free disk in /tmp)
    python3 benches/peak_memory.py small      # the cases under 1 GB only

Needs numpy and pyarrow.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "faiss-nn")

# (format, rows, dims, k, extra flags)
CASES = [
    ("npy", 1_000, 100_000, 10, []),
    ("npy", 200_000, 384, 10, []),
    ("parquet", 200_000, 384, 10, []),
    ("npy", 1_000_000, 384, 10, ["--string-factory", "IVF1024,Flat", "--search-params", "nprobe=1"]),
    ("parquet", 1_000_000, 384, 10, ["--string-factory", "IVF1024,Flat", "--search-params", "nprobe=1"]),
]


def write_input(path, fmt, n, d):
    rng = np.random.default_rng(n * 7 + d)
    if fmt == "npy":
        # Written in slices so that the generator itself stays small.
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        step = max(1, (64 << 20) // (4 * d))
        for r in range(0, n, step):
            out[r : r + step] = rng.standard_normal((min(step, n - r), d), dtype=np.float32)
        out.flush()
        del out
        return
    step = max(1, (64 << 20) // (4 * d))
    writer = None
    for r in range(0, n, step):
        rows = min(step, n - r)
        x = rng.standard_normal((rows, d), dtype=np.float32)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), d).cast(pa.list_(pa.float32()))
        table = pa.table({"id": pa.array(np.arange(r, r + rows, dtype=np.int64)), "embedding": emb})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


# A fresh interpreter whose only child is the command: its children's ru_maxrss is that
# command's peak RSS (in KiB on Linux).
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss(args):
    """Runs args; returns (seconds, peak RSS in bytes) of that command alone."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *args], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]) * 1024


def mb(b):
    return f"{b / 1e6:,.0f} MB"


def main():
    small = len(sys.argv) > 1 and sys.argv[1] == "small"
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: run `cargo build --release` first")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        tiny = os.path.join(tmp, "tiny.npy")
        np.save(tiny, np.random.default_rng(0).standard_normal((10, 4), dtype=np.float32))
        _, base = peak_rss([BIN, "--input", tiny, "--output", os.path.join(tmp, "tiny.parquet"), "-q"])
        print(f"baseline (10 × 4 input): {mb(base)}", flush=True)
        for fmt, n, d, k, extra in sorted(CASES, key=lambda c: c[1] * c[2]):
            matrix = 4 * n * d
            if small and matrix > 1e9:
                continue
            src = os.path.join(tmp, f"in_{n}x{d}.{fmt}")
            write_input(src, fmt, n, d)
            out = os.path.join(tmp, "out.parquet")
            dt, peak = peak_rss([BIN, "--input", src, "--output", out, "--k", str(k), "-q", *extra])
            output = 12 * n * k
            index = " ".join(extra) if extra else "exact (Flat)"
            ratio = (peak - base - output) / matrix
            rows.append(f"| {fmt} | {n:,} × {d:,} | {index} | {mb(matrix)} | {mb(output)} | {mb(peak)} | {peak / matrix:.2f} | **{ratio:.2f}** | {dt:.1f} s |")
            print(rows[-1], flush=True)
            os.remove(src)
            os.remove(out)
    print()
    print("| input | rows × dims | index | matrix | output (k·n·12 B) | peak RSS | peak / matrix | (peak − baseline − output) / matrix | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
