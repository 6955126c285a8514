// The few CUDA spellings the kernels use, mapped to the real thing under nvcc/NVRTC and to the
// CPU emulation in emu/simt.h under a host compiler (the kernel tests run the very same source
// on the CPU, since CI has no GPU).
#pragma once

#if defined(__CUDACC__)

#define FNN_DEVICE __device__ __forceinline__
#define FNN_FULL_MASK 0xffffffffu
// Dynamic shared memory, 16-byte aligned so 8-byte ids and float4 fit anywhere we place them.
#define FNN_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
// A static shared array (the CPU emulation gives each block its own, so blocks can run at once).
#define FNN_SHARED(type, name, count) __shared__ type name[count]
// Nothing on a GPU; the CPU emulation sleeps here to let concurrent blocks interleave.
#define FNN_EMU_RACE_WINDOW()
// +inf without <math.h> (NVRTC has no INFINITY macro).
#define FNN_INF __int_as_float(0x7f800000)

#else

#include "emu/simt.h"

#endif

namespace fnn {

// Bit of the lanes below this one, for compacting a ballot.
FNN_DEVICE unsigned lanemask_lt(int lane) { return (1u << lane) - 1u; }

}  // namespace fnn
