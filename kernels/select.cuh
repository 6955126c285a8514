// k-selection fused with the distance epilogue, over one tile of products P = Q·Xᵀ (rows =
// queries, columns = database rows) that cuBLAS wrote. For every row it keeps the k best
// (key, column) pairs of the tile, skipping the query itself, and only admits candidates that
// beat the row's running k-th best from earlier tiles: after the first tile almost every candidate
// is rejected by one comparison.
//
// Two strategies, both exact under the (key, index) order:
// * warp_select (k ≤ 512): one warp per row. Each lane keeps a small unsorted thread queue of T
//   admitted candidates in registers; the warp keeps the best K (the bucket) sorted across its
//   registers. When any lane's queue is full the warp sorts all queues (bitonic, 32·T elements),
//   folds them into the warp queue with one min-step and a bitonic merge, and tightens the
//   admission threshold to the k-th best. (The scheme of Johnson, Douze and Jégou, "Billion-scale
//   similarity search with GPUs", written anew here.)
// * block_select (k ≤ 4096): one block per row, state in shared memory. Admitted candidates are
//   appended to a buffer (warp-aggregated atomics); when the buffer is half full it is sorted and
//   folded into the sorted best-K with the same min-step and merge. Registers cannot hold K = 4096
//   per warp, and admissions are rare once the threshold is tight, so the buffer is the cheap part.
#pragma once

#include "params.cuh"
#include "topk.cuh"

namespace fnn {

// Per-row constants: the query's norm, the column to skip, and the running threshold translated
// into this tile's local column numbers.
struct RowSetup {
  float qn;
  long long self_col;
  float ext_k;
  unsigned ext_i;
};

template <int METRIC>
FNN_DEVICE RowSetup row_setup(const SelectArgs& a, int row) {
  RowSetup s;
  s.qn = METRIC == METRIC_L2 ? a.qnorms[row] : 0.0f;
  s.self_col = a.has_self ? a.qid_base + row - a.col_base : -1;
  s.ext_k = FNN_INF;
  s.ext_i = SENTINEL_U32;
  if (a.thr_keys != nullptr) {
    const long long at = (long long)row * a.thr_ld + (a.k - 1);
    const long long id = a.thr_ids[at];
    if (id >= 0) {
      // The running entry lies in an earlier tile, so it is never one of our columns: mapping
      // indices below the tile to 0 and above it to the sentinel keeps every comparison exact.
      const long long local = id - a.col_base;
      s.ext_k = a.thr_keys[at];
      s.ext_i = local < 0 ? 0u : (local >= (long long)SENTINEL_U32 ? SENTINEL_U32 : (unsigned)local);
    }
  }
  return s;
}

// Loads the 4 products and column norms at j0..j0+3 (zeros past the end).
template <int METRIC>
FNN_DEVICE void load4(const SelectArgs& a, const float* prow, bool vec, int j0, float (&p)[4], float (&xn)[4]) {
  if (vec && j0 + 3 < a.cols) {
    const float4 v = *reinterpret_cast<const float4*>(prow + j0);
    p[0] = v.x; p[1] = v.y; p[2] = v.z; p[3] = v.w;
    if (METRIC == METRIC_L2) {
      const float4 n = *reinterpret_cast<const float4*>(a.xnorms + j0);
      xn[0] = n.x; xn[1] = n.y; xn[2] = n.z; xn[3] = n.w;
    } else {
      xn[0] = xn[1] = xn[2] = xn[3] = 0.0f;
    }
  } else {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = j0 + e;
      p[e] = j < a.cols ? prow[j] : 0.0f;
      xn[e] = (METRIC == METRIC_L2 && j < a.cols) ? a.xnorms[j] : 0.0f;
    }
  }
}

FNN_DEVICE bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

FNN_DEVICE long long out_id(unsigned local, long long col_base) {
  return local == SENTINEL_U32 ? -1ll : col_base + (long long)local;
}

// ------------------------------------ warp_select ----------------------------------------------

template <int K, int T>
struct WarpQueue {
  static constexpr int RW = K / 32;                  // warp-queue registers per lane
  static constexpr int L = K > 32 * T ? K : 32 * T;  // merge width
  static constexpr int RL = L / 32;
  static_assert(K % 32 == 0 && T >= 1, "bucket must be a multiple of 32");

  float wk[RW];
  unsigned wi[RW];
  float tk[T];
  unsigned ti[T];
  int count;
  float thr_k, ext_k;
  unsigned thr_i, ext_i;
  int lane, kpos;

  FNN_DEVICE void init(int lane_, int k, float ek, unsigned ei) {
    lane = lane_;
    kpos = k - 1;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      wk[r] = FNN_INF;
      wi[r] = SENTINEL_U32;
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      tk[t] = FNN_INF;
      ti[t] = SENTINEL_U32;
    }
    count = 0;
    ext_k = thr_k = ek;
    ext_i = thr_i = ei;
  }

  // Every lane of the warp calls this together (valid = false for a lane without a candidate).
  FNN_DEVICE void offer(float key, unsigned j, bool valid) {
    if (valid && before(key, j, thr_k, thr_i)) {
      // Shift in at the front: constant register indices only.
#pragma unroll
      for (int t = T - 1; t > 0; --t) {
        tk[t] = tk[t - 1];
        ti[t] = ti[t - 1];
      }
      tk[0] = key;
      ti[0] = j;
      ++count;
    }
    if (__any_sync(FNN_FULL_MASK, count == T)) merge();
  }

  FNN_DEVICE void flush() {
    if (__any_sync(FNN_FULL_MASK, count > 0)) merge();
  }

  FNN_DEVICE void merge() {
    warp_sort<T, true>(tk, ti, lane);  // all thread queues, best last
    // Min-step: min(W ascending, queues reversed) holds the L best of both, as a bitonic sequence.
    float mk[RL];
    unsigned mi[RL];
#pragma unroll
    for (int r = 0; r < RL; ++r) {
      float ak = FNN_INF;
      unsigned ai = SENTINEL_U32;
      if (r < RW) {
        ak = wk[r < RW ? r : 0];
        ai = wi[r < RW ? r : 0];
      }
      const int q = r - (RL - T);
      if (q >= 0) {
        const float bk = tk[q < 0 ? 0 : q];
        const unsigned bi = ti[q < 0 ? 0 : q];
        if (before(bk, bi, ak, ai)) {
          ak = bk;
          ai = bi;
        }
      }
      mk[r] = ak;
      mi[r] = ai;
    }
    warp_merge_bitonic<RL>(mk, mi, lane);
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      wk[r] = mk[r];
      wi[r] = mi[r];
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      tk[t] = FNN_INF;
      ti[t] = SENTINEL_U32;
    }
    count = 0;
    // New threshold: the better of the running k-th and our own k-th.
    float vk = FNN_INF;
    unsigned vi = SENTINEL_U32;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      if (r == (kpos >> 5)) {
        vk = wk[r];
        vi = wi[r];
      }
    }
    vk = __shfl_sync(FNN_FULL_MASK, vk, kpos & 31);
    vi = __shfl_sync(FNN_FULL_MASK, vi, kpos & 31);
    if (before(vk, vi, ext_k, ext_i)) {
      thr_k = vk;
      thr_i = vi;
    } else {
      thr_k = ext_k;
      thr_i = ext_i;
    }
  }
};

template <int K, int T, int WARPS, int METRIC>
FNN_DEVICE void warp_select(const SelectArgs& a) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (row >= a.rows) return;  // whole warps leave together
  const RowSetup s = row_setup<METRIC>(a, row);
  WarpQueue<K, T> q;
  q.init(lane, a.k, s.ext_k, s.ext_i);

  const float* prow = a.prods + (long long)row * a.ld;
  const bool vec = aligned16(prow) && (METRIC != METRIC_L2 || aligned16(a.xnorms));
  for (int base = 0; base < a.cols; base += 128) {  // same trip count on every lane
    const int j0 = base + lane * 4;
    float p[4], xn[4];
    load4<METRIC>(a, prow, vec, j0, p, xn);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = j0 + e;
      const bool valid = j < a.cols && (long long)j != s.self_col;
      q.offer(key_of<METRIC>(p[e], s.qn, xn[e]), (unsigned)j, valid);
    }
  }
  q.flush();

  float* ok = a.out_keys + (long long)row * a.out_ld;
  long long* oi = a.out_ids + (long long)row * a.out_ld;
#pragma unroll
  for (int r = 0; r < WarpQueue<K, T>::RW; ++r) {
    const int pos = r * 32 + lane;
    if (pos < a.k) {
      ok[pos] = q.wk[r];
      oi[pos] = out_id(q.wi[r], a.col_base);
    }
  }
}

// ------------------------------------ block_select ---------------------------------------------

// Dynamic shared memory of block_select: 2K keys then 2K indices.
template <int K>
constexpr int block_select_smem() {
  return 2 * K * (int)(sizeof(float) + sizeof(unsigned));
}

// Folds buf[0, c) into the sorted best-K list S (both in shared memory). Enters and leaves with
// the block synchronised.
template <int K>
FNN_DEVICE void block_fold(float* sk, unsigned* si, float* bk, unsigned* bi, int c, int tid, int nt) {
  int n2 = 2;
  while (n2 < c) n2 <<= 1;  // sort only the filled part, rounded up to a power of two
  for (int i = c + tid; i < n2; i += nt) {
    bk[i] = FNN_INF;
    bi[i] = SENTINEL_U32;
  }
  __syncthreads();
  block_sort(bk, bi, n2, tid, nt);
  // Min-step against the buffer reversed (conceptually padded with sentinels up to K).
  for (int i = K - n2 + tid; i < K; i += nt) {
    const int b = K - 1 - i;
    if (before(bk[b], bi[b], sk[i], si[i])) {
      sk[i] = bk[b];
      si[i] = bi[b];
    }
  }
  __syncthreads();
  block_merge_bitonic(sk, si, K, tid, nt);
}

template <int K, int NT, int METRIC>
FNN_DEVICE void block_select(const SelectArgs& a) {
  constexpr int CH = NT * 4;     // candidates per block step
  constexpr int SUPER = K / 2;   // candidates between fill checks: the buffer never overflows
  static_assert(SUPER % CH == 0, "K/2 must be a multiple of 4·NT");
  FNN_DYNAMIC_SMEM(smem);
  float* sk = reinterpret_cast<float*>(smem);           // [0, K): best K, sorted
  float* bk = sk + K;                                   // [K, 2K): admitted, unsorted
  unsigned* si = reinterpret_cast<unsigned*>(sk + 2 * K);
  unsigned* bi = si + K;
  __shared__ int count;

  const int tid = threadIdx.x, lane = tid & 31;
  const int row = blockIdx.x;
  if (row >= a.rows) return;  // whole block
  const RowSetup s = row_setup<METRIC>(a, row);
  for (int i = tid; i < K; i += NT) {
    sk[i] = FNN_INF;
    si[i] = SENTINEL_U32;
  }
  if (tid == 0) count = 0;
  __syncthreads();
  float thr_k = s.ext_k;
  unsigned thr_i = s.ext_i;

  const float* prow = a.prods + (long long)row * a.ld;
  const bool vec = aligned16(prow) && (METRIC != METRIC_L2 || aligned16(a.xnorms));
  for (int base = 0; base < a.cols; base += SUPER) {
    // Here count ≤ K/2, and this super-step appends at most K/2.
    for (int sub = base; sub < base + SUPER && sub < a.cols; sub += CH) {
      const int j0 = sub + tid * 4;
      float p[4], xn[4];
      load4<METRIC>(a, prow, vec, j0, p, xn);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + e;
        const float key = key_of<METRIC>(p[e], s.qn, xn[e]);
        const bool pass = j < a.cols && (long long)j != s.self_col && before(key, (unsigned)j, thr_k, thr_i);
        const unsigned ballot = __ballot_sync(FNN_FULL_MASK, pass);
        if (ballot != 0) {  // warp-uniform
          const int leader = __ffs(ballot) - 1;
          int first = 0;
          if (lane == leader) first = atomicAdd(&count, __popc(ballot));
          first = __shfl_sync(FNN_FULL_MASK, first, leader);
          if (pass) {
            const int at = first + __popc(ballot & lanemask_lt(lane));
            bk[at] = key;
            bi[at] = (unsigned)j;
          }
        }
      }
    }
    __syncthreads();
    const int c = count;
    __syncthreads();  // every thread has read count before anyone resets it
    const bool last = base + SUPER >= a.cols;
    if (c > SUPER || (last && c > 0)) {
      block_fold<K>(sk, si, bk, bi, c, tid, NT);
      if (tid == 0) count = 0;
      const float vk = sk[a.k - 1];
      const unsigned vi = si[a.k - 1];
      if (before(vk, vi, s.ext_k, s.ext_i)) {
        thr_k = vk;
        thr_i = vi;
      } else {
        thr_k = s.ext_k;
        thr_i = s.ext_i;
      }
      __syncthreads();  // count reset visible before the next appends
    }
  }

  float* ok = a.out_keys + (long long)row * a.out_ld;
  long long* oi = a.out_ids + (long long)row * a.out_ld;
  for (int i = tid; i < a.k; i += NT) {
    ok[i] = sk[i];
    oi[i] = out_id(si[i], a.col_base);
  }
}

}  // namespace fnn
