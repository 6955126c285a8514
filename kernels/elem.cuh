// The element types the GPU stores rows in (f32, or f16/bf16 for half-precision products) and
// their conversions: CUDA's own types on the GPU, bit-exact stand-ins on the CPU emulation.
#pragma once

#include "compat.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#include "emu/halfs.h"
#endif

namespace fnn {

FNN_DEVICE float to_f32(float v) { return v; }
FNN_DEVICE float to_f32(__half v) { return __half2float(v); }
FNN_DEVICE float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
FNN_DEVICE T from_f32(float v);
template <>
FNN_DEVICE float from_f32<float>(float v) { return v; }
template <>
FNN_DEVICE __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
FNN_DEVICE __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace fnn
