#!/usr/bin/env python3
"""The foreign-query search of an earlier commit against this tree's, and both against the
faiss-cpu wheel, interleaved in one run: did a ratio move because of our code or because of the
machine? (BENCHMARKS.md, "search 2k vs 10k": 1.24-1.30x the wheel when first measured.)

    bash scripts/python-wheel.sh && python3 -m pip install faiss-cpu pyarrow numpy
    python3 benches/search_then_now.py                      # commit c918a51, 11 rounds
    python3 benches/search_then_now.py --commit HASH --rounds 5

The earlier commit is checked out as a git worktree under target/then-HASH and a small timing
program is written into it and built there (`--no-default-features`: no faiss; its own target
directory), using the `FlatIndex` API of that commit (`new(d, Metric::L2)`, `add`, `search`).
Each round runs, back to back and in an order that rotates from round to round: the earlier
tree's `FlatIndex::search` (a child process: one untimed search, then the median of 5), this
tree's `faiss_nn.FlatIndex.search` and the wheel's `IndexFlatL2.search` (each one untimed, then
the median of 5). Same 2,000 queries (the first 2,000 MiniLM rows plus seeded uniform noise of
width 0.01), same 10,000 rows, k = 10.
Prints each round and the medians of the per-round ratios (wheel / ours).
"""
import argparse
import pathlib
import statistics
import subprocess
import time

import faiss
import faiss_nn
import numpy as np
import pyarrow.parquet as pq

root = pathlib.Path(__file__).resolve().parent.parent

PROGRAM = r"""
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let read = |p: &str| faiss_nn::io::read_embeddings(std::path::Path::new(p), "embedding").unwrap();
    let (x, q) = (read(&args[1]), read(&args[2]));
    let d = x.d;
    let mut idx = faiss_nn::FlatIndex::new(d, faiss_nn::metric::Metric::L2).unwrap();
    idx.add(&x.embeddings.to_vec()).unwrap();
    let q = q.embeddings.to_vec();
    let mut t = Vec::new();
    for _ in 0..6 {
        let s = Instant::now();
        std::hint::black_box(idx.search(&q, 10).unwrap());
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.remove(0);
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("{}", t[t.len() / 2]);
}
"""


def build(commit):
    tree = root / "target" / f"then-{commit}"
    if not tree.exists():
        # A worktree whose folder was deleted (e.g. by `cargo clean`) is still registered.
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], check=True)
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), commit], check=True)
    (tree / "examples" / "then_search.rs").write_text(PROGRAM)
    target = root / "target" / "then-target"
    subprocess.run(
        ["cargo", "build", "--release", "--no-default-features", "--example", "then_search", "--target-dir", str(target)],
        cwd=tree,
        check=True,
    )
    return target / "release" / "examples" / "then_search"


def median_ms(fn, reps=5):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", default="c918a51")
    ap.add_argument("--rounds", type=int, default=11)
    a = ap.parse_args()
    program = build(a.commit)

    full = root.parent / "shared" / "data" / "pypi-minilm-10k.parquet"
    path = full if full.exists() else root / "data" / "demo.parquet"
    x = np.asarray(pq.read_table(path, columns=["embedding"]).column("embedding").to_pylist(), dtype=np.float32)
    nq = min(2000, len(x))
    q = x[:nq] + np.random.default_rng(12345).uniform(-0.005, 0.005, (nq, x.shape[1])).astype(np.float32)
    data = root / "target" / "then-data"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "x.npy", x)
    np.save(data / "q.npy", q)

    d = x.shape[1]
    ours = faiss_nn.FlatIndex(d)
    ours.add(x)
    wheel = faiss.IndexFlatL2(d)
    wheel.add(x)
    print(f"rows {path.name} {x.shape}, queries {q.shape}, k = 10, then = {a.commit}")
    rounds = []
    sides = {
        "then": lambda: float(subprocess.check_output([str(program), str(data / "x.npy"), str(data / "q.npy")])),
        "now": lambda: median_ms(lambda: ours.search(q, 10)),
        "wheel": lambda: median_ms(lambda: wheel.search(q, 10)),
    }
    names = list(sides)
    for r in range(a.rounds):
        # The order rotates from round to round, so that no side always runs first.
        times = {}
        for name in names[r % 3 :] + names[: r % 3]:
            times[name] = sides[name]()
        then, now, w = times["then"], times["now"], times["wheel"]
        rounds.append((then, now, w))
        print(f"round {r + 1}: then {then:.1f} ms, now {now:.1f} ms, wheel {w:.1f} ms; wheel/then {w / then:.2f}, wheel/now {w / now:.2f}", flush=True)
    med = [statistics.median(c) for c in zip(*rounds)]
    print(
        f"medians: then {med[0]:.1f} ms, now {med[1]:.1f} ms, wheel {med[2]:.1f} ms; "
        f"per-round ratio medians: wheel/then {statistics.median(w / t for t, _, w in rounds):.2f}, "
        f"wheel/now {statistics.median(w / n for _, n, w in rounds):.2f}, then/now {statistics.median(t / n for t, n, _ in rounds):.2f}"
    )


if __name__ == "__main__":
    main()
