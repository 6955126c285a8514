#!/usr/bin/env python3
"""The torch baseline of the GPU benchmarks: self-kNN by matmul + topk in row chunks.

For each case (n × d random-normal rows, k = 10, f32, tf32, bf16 or f16) every chunk of query rows is
multiplied by the whole dataset on the GPU, the L2 keys (‖q‖² + ‖x‖² − 2·q·x) formed, the row
itself masked out by index, and torch.topk keeps the best k. Timed as benches/gpu_knn.rs times
ours, so the two tables can be read side by side: the upload (pinned host rows to the GPU, the
conversion to the precision and the norms) once, apart; then the search of the resident rows
including the download of the lists to the host, CUDA events, median after a warm-up of the
same search. Recall is against exact float64 lists of 256 sampled rows (as gpu_knn.rs): bf16
and f16 products are rounded to bf16/f16 by the matmul itself, so the fast cases lose recall.

    python3 benches/torch_knn.py [--cases 200000x384,1000000x1024] [--precisions f32,bf16]

Prints one line per case: `torch <n>x<d> <precision> k=10: upload <ms> ms, search <median ms> ms
(<runs> runs), recall@10 <r>`.
"""
import argparse
import statistics

import torch

K = 10


def knn_time(x, xn, chunk, reps, exact_f32):
    """Median milliseconds of a full self-kNN over x (rows on the GPU)."""
    n = x.shape[0]
    torch.backends.cuda.matmul.allow_tf32 = not exact_f32

    def once():
        out_i = torch.empty((n, K), dtype=torch.int64, device=x.device)
        out_d = torch.empty((n, K), dtype=torch.float32, device=x.device)
        for q0 in range(0, n, chunk):
            q1 = min(n, q0 + chunk)
            prods = (x[q0:q1] @ x.T).float()
            keys = xn[q0:q1, None] + xn[None, :] - 2.0 * prods
            rows = torch.arange(q1 - q0, device=x.device)
            keys[rows, rows + q0] = float("inf")  # the row itself, by index
            d, i = torch.topk(keys, K, dim=1, largest=False)
            out_d[q0:q1] = d
            out_i[q0:q1] = i
        # The lists home, as our search returns them.
        return out_d.to("cpu"), out_i.to("cpu")

    once()  # warm-up: kernels chosen, caches and allocator primed
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        lists = once()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), lists


SAMPLE = 256


def exact_sample(x32, rows):
    """Exact L2 top-K (float64) of the sampled rows, the row itself excluded."""
    xd = x32.double()
    q = xd[rows]
    dist = (q * q).sum(1)[:, None] + (xd * xd).sum(1)[None, :] - 2.0 * (q @ xd.T)
    dist[torch.arange(len(rows), device=x32.device), rows] = float("inf")
    _, idx = torch.topk(dist, K, dim=1, largest=False)
    del xd, dist
    return idx.cpu()


def recall(got_i, rows, exact):
    hits = sum(len(set(got_i[r].tolist()) & set(e.tolist())) for r, e in zip(rows.tolist(), exact))
    return hits / (len(rows) * K)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="200000x384,1000000x1024")
    ap.add_argument("--precisions", default="f32,tf32,bf16")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    for case in args.cases.split(","):
        n, d = (int(v) for v in case.split("x"))
        for prec in args.precisions.split(","):
            dtype = {"f32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[prec]
            x32 = torch.randn((n, d), device="cuda", dtype=torch.float32)
            rows = torch.arange(SAMPLE, device="cuda") * n // SAMPLE
            exact = exact_sample(x32, rows)
            host = x32.cpu().pin_memory()
            del x32
            torch.cuda.empty_cache()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            x = host.to("cuda", non_blocking=True).to(dtype)
            xn = (x.float() ** 2).sum(dim=1)
            end.record()
            end.synchronize()
            upload = start.elapsed_time(end)
            del host
            # Chunk rows so that one chunk's f32 products take at most 4 GiB.
            chunk = max(1, min(n, (4 << 30) // (4 * n)))
            ms, (_, got_i) = knn_time(x, xn, chunk, args.reps, prec == "f32")
            r = recall(got_i, rows.cpu(), exact)
            print(f"torch {n}x{d} {prec} k={K}: upload {upload:.1f} ms, search {ms:.1f} ms ({args.reps} runs), recall@10 {r:.5f}", flush=True)
            del x, xn
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
