// The ranking every kernel shares, and bitonic networks over it.
//
// Candidates are ranked by (key, index), smaller first, a strict total order: key is the L2
// distance or the negated inner product, and ties go to the lower index (src/topk/mod.rs). Empty
// slots hold (+inf, SENTINEL) and so lose to every real candidate, even one whose key overflowed
// to +inf.
#pragma once

#include "compat.cuh"

namespace fnn {

constexpr unsigned SENTINEL_U32 = 0xffffffffu;
constexpr long long SENTINEL_I64 = 0x7fffffffffffffffll;

template <class I>
FNN_DEVICE bool before(float ka, I ia, float kb, I ib) {
  return ka < kb || (ka == kb && ia < ib);
}

// The metric's key for a product p = q·x: L2 expands ‖q‖² + ‖x‖² − 2 q·x and clamps the
// cancellation error below 0; IP negates. A NaN (only from overflowing inputs) becomes +inf so
// that it ranks last instead of poisoning comparisons.
enum Metric { METRIC_L2 = 0, METRIC_IP = 1 };

template <int METRIC>
FNN_DEVICE float key_of(float p, float qn, float xn) {
  float k;
  if (METRIC == METRIC_L2) {
    k = qn + xn - 2.0f * p;
    k = k < 0.0f ? 0.0f : k;
  } else {
    k = -p;
  }
  return k != k ? FNN_INF : k;
}

// ---------------------------------------------------------------------------------------------
// Bitonic networks over a warp's registers, "register-major": element r of lane l sits at
// position p = 32·r + l of a sequence of N = 32·R. A compare-exchange at distance j < 32 is a
// shuffle between lanes; at j ≥ 32 it swaps two registers of one lane, and since r is a
// compile-time constant in every unrolled loop the arrays stay in registers (no local memory).
// ---------------------------------------------------------------------------------------------

// One stage: pairs at distance J inside blocks of size S; a block sorts ascending when its
// position has bit S clear (reversed when DESC), so the last level (S = N) goes one way.
template <int R, int S, int J, bool DESC>
FNN_DEVICE void warp_stage(float (&k)[R], unsigned (&ix)[R], int lane) {
  if constexpr (J >= 32) {
    constexpr int JR = J / 32;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if ((r & JR) == 0) {
        const int r2 = r | JR;
        bool asc = ((r * 32) & S) == 0;
        if (DESC) asc = !asc;
        const bool swap = asc ? before(k[r2], ix[r2], k[r], ix[r]) : before(k[r], ix[r], k[r2], ix[r2]);
        if (swap) {
          const float tk = k[r];
          const unsigned ti = ix[r];
          k[r] = k[r2];
          ix[r] = ix[r2];
          k[r2] = tk;
          ix[r2] = ti;
        }
      }
    }
  } else {
    const bool low = (lane & J) == 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float ok = __shfl_xor_sync(FNN_FULL_MASK, k[r], J);
      const unsigned oi = __shfl_xor_sync(FNN_FULL_MASK, ix[r], J);
      bool asc = ((r * 32 + lane) & S) == 0;
      if (DESC) asc = !asc;
      // The lower position of an ascending pair keeps the smaller element, and so on.
      const bool take_min = (low == asc);
      const bool other_first = before(ok, oi, k[r], ix[r]);
      if (take_min == other_first) {
        k[r] = ok;
        ix[r] = oi;
      }
    }
  }
}

template <int R, int S, int J, bool DESC>
struct WarpStages {
  static FNN_DEVICE void run(float (&k)[R], unsigned (&ix)[R], int lane) {
    warp_stage<R, S, J, DESC>(k, ix, lane);
    WarpStages<R, S, J / 2, DESC>::run(k, ix, lane);
  }
};
template <int R, int S, bool DESC>
struct WarpStages<R, S, 0, DESC> {
  static FNN_DEVICE void run(float (&)[R], unsigned (&)[R], int) {}
};

template <int R, int S, bool DESC>
struct WarpSortLevels {
  static FNN_DEVICE void run(float (&k)[R], unsigned (&ix)[R], int lane) {
    WarpSortLevels<R, S / 2, DESC>::run(k, ix, lane);
    WarpStages<R, S, S / 2, DESC>::run(k, ix, lane);
  }
};
template <int R, bool DESC>
struct WarpSortLevels<R, 1, DESC> {
  static FNN_DEVICE void run(float (&)[R], unsigned (&)[R], int) {}
};

// Sorts the warp's 32·R elements (DESC: best last).
template <int R, bool DESC>
FNN_DEVICE void warp_sort(float (&k)[R], unsigned (&ix)[R], int lane) {
  WarpSortLevels<R, 32 * R, DESC>::run(k, ix, lane);
}

// Sorts a bitonic sequence of 32·R elements ascending.
template <int R>
FNN_DEVICE void warp_merge_bitonic(float (&k)[R], unsigned (&ix)[R], int lane) {
  WarpStages<R, 32 * R, 16 * R, false>::run(k, ix, lane);
}

// ---------------------------------------------------------------------------------------------
// Bitonic networks over shared memory, for a whole block (N a power of two).
// ---------------------------------------------------------------------------------------------

// Pair t of a stage at distance j: positions lo and lo + j.
FNN_DEVICE int pair_low(int t, int j) { return ((t & ~(j - 1)) << 1) | (t & (j - 1)); }

template <class I>
FNN_DEVICE void smem_cas(float* k, I* ix, int lo, int hi, bool asc) {
  const float a = k[lo], b = k[hi];
  const I ia = ix[lo], ib = ix[hi];
  const bool swap = asc ? before(b, ib, a, ia) : before(a, ia, b, ib);
  if (swap) {
    k[lo] = b;
    ix[lo] = ib;
    k[hi] = a;
    ix[hi] = ia;
  }
}

// Full ascending sort of n elements. Enters and leaves with the block synchronised.
template <class I>
FNN_DEVICE void block_sort(float* k, I* ix, int n, int tid, int nt) {
  for (int s = 2; s <= n; s <<= 1) {
    for (int j = s >> 1; j > 0; j >>= 1) {
      for (int t = tid; t < n / 2; t += nt) {
        const int lo = pair_low(t, j);
        smem_cas(k, ix, lo, lo + j, (lo & s) == 0);
      }
      __syncthreads();
    }
  }
}

// Ascending sort of a bitonic sequence of n elements. Enters and leaves synchronised.
template <class I>
FNN_DEVICE void block_merge_bitonic(float* k, I* ix, int n, int tid, int nt) {
  for (int j = n >> 1; j > 0; j >>= 1) {
    for (int t = tid; t < n / 2; t += nt) {
      const int lo = pair_low(t, j);
      smem_cas(k, ix, lo, lo + j, true);
    }
    __syncthreads();
  }
}

}  // namespace fnn
