// Squared L2 norms of stored rows (f32, f16 or bf16), accumulated in f32: the ‖x‖² terms of the
// L2 expansion, taken from the same (possibly rounded) values the products see. The norm (lane
// partial sums and a shuffle tree) and the product (cuBLAS, an FMA chain or tensor cores) round
// differently, so a row's key against an identical row is small but not necessarily 0; the
// engine's exact re-scoring on the host reports it as 0. One warp per row, 16-byte loads when the
// row stride allows, a shuffle reduction.
#include "elem.cuh"

namespace fnn {

template <class T>
FNN_DEVICE void row_norms(const T* __restrict__ x, long long ld, long long n, int d, float* __restrict__ out) {
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < n; row += warps) {
    const T* r = x + row * ld;
    float acc = 0.0f;
    int c0 = 0;
    if ((ld % VEC) == 0 && ((unsigned long long)x & 15ull) == 0) {
      const int dv = d / VEC;
      for (int v = lane; v < dv; v += 32) {
        const uint4 raw = reinterpret_cast<const uint4*>(r)[v];
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          const float f = to_f32(e[i]);
          acc = fmaf(f, f, acc);
        }
      }
      c0 = dv * VEC;
    }
    for (int c = c0 + lane; c < d; c += 32) {
      const float f = to_f32(r[c]);
      acc = fmaf(f, f, acc);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(FNN_FULL_MASK, acc, o);
    if (lane == 0) out[row] = acc;
  }
}

}  // namespace fnn

// x: n rows of d values at row stride ld; out: n floats. Any grid of 32-multiple blocks.
extern "C" __global__ void row_norms_f32(const float* x, long long ld, long long n, int d, float* out) {
  fnn::row_norms(x, ld, n, d, out);
}
extern "C" __global__ void row_norms_f16(const __half* x, long long ld, long long n, int d, float* out) {
  fnn::row_norms(x, ld, n, d, out);
}
extern "C" __global__ void row_norms_bf16(const __nv_bfloat16* x, long long ld, long long n, int d, float* out) {
  fnn::row_norms(x, ld, n, d, out);
}
