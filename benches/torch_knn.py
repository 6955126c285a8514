#!/usr/bin/env python3
"""The torch baseline of the GPU benchmarks: self-kNN by matmul + topk in row chunks.

For each case (n × d random-normal rows, k = 10, f32, tf32, bf16 or f16) every chunk of query rows is
multiplied by the whole dataset on the GPU, the L2 keys (‖q‖² + ‖x‖² − 2·q·x) formed, the row
itself masked out by index, and torch.topk keeps the best k. Times are CUDA-event medians after
a warm-up, the same method as benches/gpu_knn.rs, so the two tables can be read side by side:

    python3 benches/torch_knn.py [--cases 200000x384,1000000x1024] [--precisions f32,bf16]

Prints one line per case: `torch <n>x<d> <precision> k=10: <median ms> ms (<runs> runs)`.
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
        return out_d, out_i

    once()  # warm-up: kernels chosen, caches and allocator primed
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        once()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


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
            x = x32.to(dtype)
            xn = (x.float() ** 2).sum(dim=1)
            del x32
            # Chunk rows so that one chunk's f32 products take at most 4 GiB.
            chunk = max(1, min(n, (4 << 30) // (4 * n)))
            ms = knn_time(x, xn, chunk, args.reps, prec == "f32")
            print(f"torch {n}x{d} {prec} k={K}: {ms:.1f} ms ({args.reps} runs)", flush=True)
            del x, xn
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
