// Entry points of the fused distance epilogue + k-selection (see select.cuh), one per k bucket
// and metric. The host picks the smallest bucket ≥ k and launches:
//   k ≤ 512:  128 threads (4 warps, one row each), grid ⌈rows/4⌉, no dynamic shared memory;
//   k ≤ 4096: 256 threads, one block per row, 2·K·8 bytes of dynamic shared memory.
#include "select.cuh"

#define FNN_WARP_SELECT(K, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(128) topk_select_k##K##_l2(const fnn::SelectArgs a) { \
    fnn::warp_select<K, T, 4, fnn::METRIC_L2>(a);                                              \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(128) topk_select_k##K##_ip(const fnn::SelectArgs a) { \
    fnn::warp_select<K, T, 4, fnn::METRIC_IP>(a);                                              \
  }

#define FNN_BLOCK_SELECT(K)                                                                    \
  extern "C" __global__ void __launch_bounds__(256) topk_select_k##K##_l2(const fnn::SelectArgs a) { \
    fnn::block_select<K, 256, fnn::METRIC_L2>(a);                                              \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(256) topk_select_k##K##_ip(const fnn::SelectArgs a) { \
    fnn::block_select<K, 256, fnn::METRIC_IP>(a);                                              \
  }

// Thread-queue lengths: longer queues mean fewer warp merges but more registers.
FNN_WARP_SELECT(32, 2)
FNN_WARP_SELECT(128, 4)
FNN_WARP_SELECT(512, 8)
FNN_BLOCK_SELECT(2048)
FNN_BLOCK_SELECT(4096)
