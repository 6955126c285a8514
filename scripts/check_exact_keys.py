#!/usr/bin/env python3
"""Checks the CLI's reported scores against exact rational arithmetic.

Every L2 and inner-product score must be the exact value (Python fractions over the float32
inputs) correctly rounded to float32 (to nearest, ties to even), and every list ordered by
(score, index). Three row sets of 400 rows, k = 20, every third row checked: rows aimed at
float32 rounding boundaries (8 components on a 2^-12 grid, whose sums land on midpoints, plus a
tiny ninth that an f64 sum drops), rows far from the origin on a grid, and random normal rows.

    cargo build --release && python3 scripts/check_exact_keys.py [path/to/faiss-nn]

Needs numpy and pyarrow. Exits non-zero when any score or order is wrong.
"""
import subprocess
import sys
import tempfile
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq


def round_f32(t: Fraction) -> np.float32:
    if t == 0: return np.float32(0.0)
    sign = -1 if t < 0 else 1
    t = abs(t)
    e = t.numerator.bit_length() - t.denominator.bit_length()
    # The exponent of t's leading bit: 2^e <= t < 2^(e+1).
    while Fraction(2)**e > t: e -= 1
    while Fraction(2)**(e+1) <= t: e += 1
    lsb = max(e - 23, -149)
    scaled = t / Fraction(2)**lsb
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q % 2 == 1): q += 1
    v = float(q) * 2.0**lsb
    return np.float32(sign * v)

def exact(metric, a, b):
    fa = [Fraction(float(x)) for x in a]; fb = [Fraction(float(x)) for x in b]
    if metric == 'l2': return sum((x - y) ** 2 for x, y in zip(fa, fb))
    return sum(x * y for x, y in zip(fa, fb))

def run(bin, path, metric, k, rows):
    X = np.load(path)
    out = f'{tmp}/out-{metric}.parquet'
    subprocess.run([bin, '--input', path, '--metric', metric, '--k', str(k), '--output', out, '--quiet'], check=True)
    t = pq.read_table(out)
    ids = t.column('nn_indices').to_pylist(); sc = t.column('nn_scores').to_pylist()
    bad = 0; checked = 0
    for i in rows:
        want = []
        for j, s in zip(ids[i], sc[i]):
            v = round_f32(exact(metric, X[i], X[j]))
            checked += 1
            if np.float32(s) != v:
                bad += 1
                if bad <= 5: print(f'  row {i} nb {j}: got {np.float32(s)!r} want {v!r}')
        # order: by score (desc for ip, asc for l2) then index
        key = [((-s if metric == 'ip' else s), j) for j, s in zip(ids[i], sc[i])]
        if key != sorted(key):
            bad += 1; print(f'  row {i}: not ordered by (score, index): {list(zip(ids[i], sc[i]))[:6]}')
    print(f'{path} {metric} k={k}: {checked} scores checked, {bad} wrong')
    return bad

tmp = tempfile.mkdtemp()
bin = sys.argv[1] if len(sys.argv) > 1 else "target/release/faiss-nn"
rng = np.random.default_rng(5)
# grid rows far from the origin (sums land exactly on f32 midpoints), and rows aimed at midpoints
G = (1000 + np.round(rng.standard_normal((400, 24)) * 64) / 2**14).astype(np.float32)
np.save(f'{tmp}/grid.npy', G)
R = rng.standard_normal((400, 48)).astype(np.float32) * np.float32(3.0)
np.save(f'{tmp}/rand.npy', R)
A = np.round(rng.standard_normal((400, 8)) * 2**10) / 2**12
T = rng.standard_normal((400, 1)) * 2.0**-30
np.save(f'{tmp}/adv.npy', np.hstack([A, T]).astype(np.float32))
bad = 0
for p in [f'{tmp}/adv.npy', f'{tmp}/grid.npy', f'{tmp}/rand.npy']:
    for m in ['l2', 'ip']:
        bad += run(bin, p, m, 20, range(0, 400, 3))
print('TOTAL WRONG', bad)
sys.exit(1 if bad else 0)
