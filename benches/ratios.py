#!/usr/bin/env python3
"""Prints the ratio table for BENCHMARKS.md from criterion's estimates (median times).

Run after `cargo bench --bench self_knn`. Ratio = faiss time / our time (> 1: we are faster).
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
rows = []
seen = set()
for est in sorted(root.glob("**/ours/*/new/estimates.json")):
    case = est.parent.parent  # .../<group>/ours/<metric>
    metric = case.name
    group = case.parent.parent
    if (group, metric) in seen:
        continue
    seen.add((group, metric))
    theirs = group / "faiss" / metric / "new" / "estimates.json"
    if not theirs.exists():
        continue
    ours_s = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    faiss_s = json.loads(theirs.read_text())["median"]["point_estimate"] / 1e9
    kern = group / "kernel" / metric / "new" / "estimates.json"
    kernel_s = json.loads(kern.read_text())["median"]["point_estimate"] / 1e9 if kern.exists() else None
    rows.append((group.relative_to(root).as_posix(), metric, ours_s, faiss_s, kernel_s))

print("| benchmark | metric | ours (median) | our kernel alone | faiss IndexFlat (median) | faiss / ours | faiss / our kernel |")
print("|---|---|---|---|---|---|---|")
for g, m, o, f, k in rows:
    kt = f"{k*1e3:.1f} ms" if k else "–"
    kr = f"**{f/k:.2f}×**" if k else "–"
    print(f"| {g} | {m} | {o*1e3:.1f} ms | {kt} | {f*1e3:.1f} ms | **{f/o:.2f}×** | {kr} |")
