// Merging sorted top-k lists of the same rows: the running list with a tile's partial list
// (in place), and per-shard lists on one device. One block per row; the row's merged list lives
// in shared memory as P = next power of two ≥ k entries. Each further list is folded in with one
// min-step (elementwise min against the list read backwards) and a bitonic merge, so m lists cost
// m·log₂P block steps. Entries are (key f32, global index i64); an empty entry is (+inf, −1) and
// is ranked as (+inf, +∞) so that it loses every tie.
#include "params.cuh"
#include "topk.cuh"

namespace fnn {

FNN_DEVICE long long rank_id(long long id) { return id < 0 ? SENTINEL_I64 : id; }

FNN_DEVICE void merge_rows(const MergeArgs& a) {
  FNN_DYNAMIC_SMEM(smem);
  long long* si = reinterpret_cast<long long*>(smem);  // 8-byte entries first: aligned
  float* sk = reinterpret_cast<float*>(si + a.p);
  const int tid = threadIdx.x, nt = blockDim.x;
  const int row = blockIdx.x;
  if (row >= a.rows) return;
  const long long base = (long long)row * a.in_ld;
  for (int i = tid; i < a.p; i += nt) {
    if (i < a.k) {
      sk[i] = a.in_keys[base + i];
      si[i] = rank_id(a.in_ids[base + i]);
    } else {
      sk[i] = FNN_INF;
      si[i] = SENTINEL_I64;
    }
  }
  __syncthreads();
  for (int s = 1; s < a.m; ++s) {
    const long long lb = base + (long long)s * a.list_stride;
    for (int i = tid; i < a.p; i += nt) {
      const int j = a.p - 1 - i;  // list s read backwards, padded with sentinels
      if (j < a.k) {
        const float bk = a.in_keys[lb + j];
        const long long bi = rank_id(a.in_ids[lb + j]);
        if (before(bk, bi, sk[i], si[i])) {
          sk[i] = bk;
          si[i] = bi;
        }
      }
    }
    __syncthreads();
    block_merge_bitonic(sk, si, a.p, tid, nt);
  }
  float* ok = a.out_keys + (long long)row * a.out_ld;
  long long* oi = a.out_ids + (long long)row * a.out_ld;
  for (int i = tid; i < a.k; i += nt) {
    ok[i] = sk[i];
    oi[i] = si[i] == SENTINEL_I64 ? -1ll : si[i];
  }
}

}  // namespace fnn

// Launch with one block per row, blockDim a multiple of 32 (up to 512), p·12 bytes of dynamic
// shared memory.
extern "C" __global__ void __launch_bounds__(512) topk_merge(const fnn::MergeArgs a) { fnn::merge_rows(a); }

