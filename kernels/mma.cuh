// Warp-level tensor-core products (mma.sync, sm_80 and later) on the fragment layouts of the PTX
// ISA ("Matrix Fragments for mma.m16n8k16 / mma.m16n8k8"), with g = lane / 4 and t = lane % 4:
//
//   m16n8k16, f16/bf16 (two elements per 32-bit register, the lower k in the low half):
//     A (16 × 16, row-major):  a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
//                              a[2] = A[g][2t+8..+9]    a[3] = A[g+8][2t+8..+9]
//     B (16 × 8, k × n):       b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..+9][g]
//   m16n8k8, tf32 (one element per register):
//     A (16 × 8):              a[0] = A[g][t]  a[1] = A[g+8][t]  a[2] = A[g][t+4]  a[3] = A[g+8][t+4]
//     B (8 × 8, k × n):        b[0] = B[t][g]  b[1] = B[t+4][g]
//   C/D (16 × 8, f32), both:   c[0..1] = C[g][2t..2t+1]  c[2..3] = C[g+8][2t..2t+1]
//
// Our B is a block of database rows, so B[k][n] = X[n][k]: each B register is two neighbouring
// elements of one stored row, one 32-bit load.
//
// Under a host compiler the same functions run on the CPU emulation (emu/simt.h): every lane
// publishes its fragments, then each lane rebuilds the 16 × k and k × 8 matrices from the layouts
// above and computes its own four outputs in f32 from the rounded inputs.
#pragma once

#include "compat.cuh"

namespace fnn {

enum MmaType { MMA_BF16 = 0, MMA_F16 = 1, MMA_TF32 = 2 };

#if defined(__CUDACC__)

template <int TYPE>
FNN_DEVICE void mma_16816(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]);

template <>
FNN_DEVICE void mma_16816<MMA_BF16>(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
FNN_DEVICE void mma_16816<MMA_F16>(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

FNN_DEVICE void mma_1688_tf32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// f32 → tf32, rounded to nearest (ties away), as cuBLAS's TF32 mode rounds its inputs.
FNN_DEVICE unsigned to_tf32(float v) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return r;
}

#else  // CPU emulation

namespace emu_mma {

inline float bf16_bits(unsigned short h) { return fnn_emu::from_bits<float>(uint64_t(h) << 16); }
inline float f16_bits(unsigned short h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return float(v);
}
// The hardware reads tf32 as the f32 bit pattern with the low 13 mantissa bits ignored.
inline float tf32_bits(unsigned u) { return fnn_emu::from_bits<float>(uint64_t(u & 0xffffe000u)); }

// A k-deep product of this warp's fragments: `a_at(lane_regs, row, k)` and `b_at(lane_regs, k, n)`
// read an element out of the published registers of all 32 lanes.
template <int KDEPTH, class AAt, class BAt>
inline void emulate(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2], AAt a_at, BAt b_at) {
  fnn_emu::Warp& w = fnn_emu::warp();
  const unsigned lane = fnn_emu::lane();
  // The exchange slots hold 64 bits: a lane's six registers go out in three rounds.
  unsigned mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  unsigned all[32][6];
  for (int round = 0; round < 3; ++round) {
    w.slot[lane] = uint64_t(mine[2 * round]) | (uint64_t(mine[2 * round + 1]) << 32);
    w.bar.arrive_and_wait();
    for (int l = 0; l < 32; ++l) {
      all[l][2 * round] = unsigned(w.slot[l]);
      all[l][2 * round + 1] = unsigned(w.slot[l] >> 32);
    }
    w.bar.arrive_and_wait();
  }
  const int g = int(lane) >> 2, t = int(lane) & 3;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float acc = c[e];
    for (int k = 0; k < KDEPTH; ++k) acc = std::fma(a_at(all, row, k), b_at(all, k, col), acc);
    c[e] = acc;
  }
}

// Element (row, k) of A / (k, n) of B for m16n8k16 with 16-bit elements, from the layout above.
template <class Conv>
inline float a16(const unsigned (&all)[32][6], int row, int k, Conv conv) {
  const int g = row & 7, hi_row = row >> 3, hi_k = k >> 3, t = (k & 7) >> 1, half = k & 1;
  const unsigned reg = all[g * 4 + t][hi_row + 2 * hi_k];
  return conv((unsigned short)(half ? reg >> 16 : reg & 0xffffu));
}
template <class Conv>
inline float b16(const unsigned (&all)[32][6], int k, int n, Conv conv) {
  const int hi_k = k >> 3, t = (k & 7) >> 1, half = k & 1;
  const unsigned reg = all[n * 4 + t][4 + hi_k];
  return conv((unsigned short)(half ? reg >> 16 : reg & 0xffffu));
}

}  // namespace emu_mma

template <int TYPE>
inline void mma_16816(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  using namespace emu_mma;
  auto conv = [](unsigned short h) { return TYPE == MMA_BF16 ? bf16_bits(h) : f16_bits(h); };
  emulate<16>(
      c, a, b, [&](const unsigned (&all)[32][6], int r, int k) { return a16(all, r, k, conv); },
      [&](const unsigned (&all)[32][6], int k, int n) { return b16(all, k, n, conv); });
}

inline void mma_1688_tf32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  using namespace emu_mma;
  emulate<8>(
      c, a, b,
      [](const unsigned (&all)[32][6], int r, int k) {
        return tf32_bits(all[(r & 7) * 4 + (k & 3)][(r >> 3) + 2 * (k >> 2)]);
      },
      [](const unsigned (&all)[32][6], int k, int n) { return tf32_bits(all[n * 4 + (k & 3)][4 + (k >> 2)]); });
}

// Round to nearest, ties away from zero, keeping 10 mantissa bits.
inline unsigned to_tf32(float v) {
  unsigned u = unsigned(fnn_emu::to_bits(v));
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
  return u & 0xffffe000u;
}

#endif

}  // namespace fnn
