// CPU stand-ins for CUDA's __half and __nv_bfloat16 (emu/simt.h's world): storage as 16 bits,
// conversions rounding to nearest even as __float2half_rn / __float2bfloat16_rn do, so that
// norms.cu and convert.cu run on the emulation.
#pragma once

#include <cstdint>
#include <cstring>

struct __half {
  unsigned short x;
};
struct __nv_bfloat16 {
  unsigned short x;
};

inline float __half2float(__half h) {
  _Float16 v;
  std::memcpy(&v, &h.x, 2);
  return float(v);
}
inline __half __float2half_rn(float f) {
  const _Float16 v = (_Float16)f;  // IEEE conversion: round to nearest even
  __half h;
  std::memcpy(&h.x, &v, 2);
  return h;
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = uint32_t(b.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(unsigned short)((u >> 16) | 0x40u)};  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return __nv_bfloat16{(unsigned short)(u >> 16)};
}
