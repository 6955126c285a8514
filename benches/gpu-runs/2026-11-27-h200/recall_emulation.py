"""Recall@10 that exact arithmetic (float64) reaches on the demo rows rounded to bf16 / f16, with
the L2 norms taken from the original or the rounded rows, against the exact lists of the
original rows: the floor the GPU half-precision tests compare with (tests/gpu.rs recall_floor).

    python3 benches/gpu-runs/2026-11-27-h200/recall_emulation.py [data/demo.parquet]
"""
import sys
import numpy as np, pyarrow.parquet as pq
x = np.array(pq.read_table(sys.argv[1] if len(sys.argv) > 1 else 'data/demo.parquet', columns=['embedding']).column(0).to_pylist(), dtype=np.float32)
def bf16(a):
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)
def f16(a): return a.astype(np.float16).astype(np.float32)
k=10; n=len(x)
xd=x.astype(np.float64)
def topk(s, largest):
    s=s.copy(); np.fill_diagonal(s, -np.inf if largest else np.inf)
    o = np.argsort(-s if largest else s, axis=1, kind='stable')[:, :k]
    return o
def lists(xr, metric, norms_from):
    g = xr.astype(np.float64) @ xr.astype(np.float64).T
    if metric=='ip': return topk(g, True)
    sq = np.einsum('ij,ij->i', norms_from, norms_from).astype(np.float64)
    return topk(sq[:,None]+sq[None,:]-2*g, False)
for metric in ['l2','ip']:
    want = lists(x, metric, xd)
    for name, f in [('bf16', bf16), ('f16', f16)]:
        xr = f(x)
        for nf in ['orig','rounded']:
            got = lists(xr, metric, xd if nf=='orig' else xr.astype(np.float64))
            rec = np.mean([len(set(a)&set(b)) for a,b in zip(got,want)])/k
            print(metric, name, 'norms', nf, round(rec,5))
