// Entry points of the fused self-join (see fused.cuh), one per element type, metric and k bucket
// (k ≤ 32, k ≤ 128). Launch with one block of 128 threads per 64 query rows, no dynamic shared
// memory, after `fused_clear_lists` has emptied the lists and the locks are zeroed.
#include "fused.cuh"

#define FNN_FUSED(NAME, PREC, K)                                                                   \
  extern "C" __global__ void __launch_bounds__(fnn::FT, 1) fused_knn_##NAME##_l2_k##K(const fnn::FusedArgs a) { \
    fnn::fused_knn<PREC, fnn::METRIC_L2, K>(a);                                                    \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(fnn::FT, 1) fused_knn_##NAME##_ip_k##K(const fnn::FusedArgs a) { \
    fnn::fused_knn<PREC, fnn::METRIC_IP, K>(a);                                                    \
  }

FNN_FUSED(bf16, fnn::FUSED_BF16, 32)
FNN_FUSED(bf16, fnn::FUSED_BF16, 128)
FNN_FUSED(f16, fnn::FUSED_F16, 32)
FNN_FUSED(f16, fnn::FUSED_F16, 128)
FNN_FUSED(tf32, fnn::FUSED_TF32, 32)
FNN_FUSED(tf32, fnn::FUSED_TF32, 128)
FNN_FUSED(f32, fnn::FUSED_F32, 32)
FNN_FUSED(f32, fnn::FUSED_F32, 128)

// Any grid of any block size.
extern "C" __global__ void fused_clear_lists(float* keys, unsigned* ids, long long count) {
  fnn::fused_clear(keys, ids, count);
}
