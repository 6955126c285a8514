// Packs uploaded f32 rows (n × d, dense) into the layout the products read: row stride ld ≥ d
// (a multiple of 8 elements, so every row starts 16-byte aligned for vector loads and tensor-core
// GEMMs), zero padding (which adds nothing to any product or norm), and the precision asked for
// (f32 kept, or rounded to nearest f16/bf16).
#include "elem.cuh"

namespace fnn {

template <class T>
FNN_DEVICE void pack_rows(const float* __restrict__ src, long long n, int d, T* __restrict__ dst, long long ld) {
  for (long long r = blockIdx.x; r < n; r += gridDim.x) {
    const float* s = src + r * d;
    T* o = dst + r * ld;
    for (long long c = threadIdx.x; c < ld; c += blockDim.x) {
      o[c] = from_f32<T>(c < d ? s[c] : 0.0f);
    }
  }
}

}  // namespace fnn

// One block per row (grid-stride over rows), any block size.
extern "C" __global__ void pack_rows_f32(const float* src, long long n, int d, float* dst, long long ld) {
  fnn::pack_rows(src, n, d, dst, ld);
}
extern "C" __global__ void pack_rows_f16(const float* src, long long n, int d, __half* dst, long long ld) {
  fnn::pack_rows(src, n, d, dst, ld);
}
extern "C" __global__ void pack_rows_bf16(const float* src, long long n, int d, __nv_bfloat16* dst, long long ld) {
  fnn::pack_rows(src, n, d, dst, ld);
}
