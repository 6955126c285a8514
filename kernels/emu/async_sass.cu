// One kernel that uses every primitive of async.cuh, compiled by tests/gpu.rs
// (`pipeline_primitives_assemble_to_ldgsts_and_ldsm`) for sm_80 and sm_90 to check that they
// become the instructions meant (LDGSTS with its LDGDEPBAR / DEPBAR, LDSM and LDSM.MT). It is
// not part of the library's kernels (build.rs compiles kernels/*.cu only).
#include "async.cuh"

extern "C" __global__ void async_primitives(const float* src, unsigned* out) {
  __shared__ __align__(16) unsigned char buf[64 * 16];
  const int t = threadIdx.x;
  fnn::cp_async_16(buf + t * 16, src + t * 4);
  fnn::cp_async_commit();
  fnn::cp_async_wait<0>();
  __syncthreads();
  unsigned r[4], s[4];
  fnn::ldmatrix_x4(r, buf + (t % 32) * 16);
  fnn::ldmatrix_x4_trans(s, buf + (t % 32) * 16);
  out[t] = r[0] ^ r[1] ^ r[2] ^ r[3] ^ s[0] ^ s[1] ^ s[2] ^ s[3];
}
