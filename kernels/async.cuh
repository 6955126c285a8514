// Asynchronous global → shared copies (cp.async, sm_80+) and warp-wide matrix loads from shared
// memory (ldmatrix, sm_75+): the building blocks of a multi-stage shared-memory pipeline.
//
//   cp_async_16(dst, src)   one thread starts a 16-byte copy (both addresses 16-byte aligned);
//   cp_async_commit()       closes the thread's open group of copies;
//   cp_async_wait<N>()      waits until at most N of the thread's committed groups are pending;
//                           the data is then visible to this thread — to others only after a
//                           barrier (__syncthreads);
//   ldmatrix_x4(r, row)     every lane passes the address of one 16-byte row: lanes 8m .. 8m+7
//                           the rows 0..7 of 8 × 8 matrix m (16-bit elements); lane l receives in
//                           r[m] the elements (l/4, 2(l%4)) and (l/4, 2(l%4)+1) of matrix m, the
//                           lower column in the low half — the A/B fragment layout of mma.sync;
//   ldmatrix_x4_trans(r, row) the same for the transposed matrices: r[m] holds (2(l%4), l/4) and
//                           (2(l%4)+1, l/4).
//
// Under a host compiler the CPU emulation (emu/simt.h) runs them: a copy's destination is
// poisoned when it starts and filled only by the cp_async_wait that covers its group (the
// latest moment the hardware may deliver it), so a kernel that reads a stage before waiting for
// it reads poison and fails its test; ldmatrix exchanges the lanes' row addresses through the
// warp and reads the rows as the hardware distributes them.
#pragma once

#include "compat.cuh"

namespace fnn {

#if defined(__CUDACC__)

FNN_DEVICE unsigned smem_addr(const void* p) { return unsigned(__cvta_generic_to_shared(p)); }

FNN_DEVICE void cp_async_16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
}

FNN_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
FNN_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

FNN_DEVICE void ldmatrix_x4(unsigned (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}

FNN_DEVICE void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}

#else  // CPU emulation

namespace emu_async {

// The byte a started copy's destination holds until its wait (distinct from 0xCD, the poison of
// uninitialised shared memory, so a test can tell the two apart).
constexpr unsigned char POISON = 0xA5;

struct Copy {
  unsigned char* dst;
  unsigned char data[16];
};

// This thread's copies: the open group (not yet committed) and the committed groups, oldest
// first.
struct Groups {
  std::vector<Copy> open;
  std::vector<std::vector<Copy>> committed;
};

inline Groups& groups() {
  thread_local Groups g;
  return g;
}

// Each lane's row address, exchanged through the warp (as the hardware gathers them).
inline void rows_of_warp(const void* row, const unsigned char* (&rows)[32]) {
  fnn_emu::Warp& w = fnn_emu::warp();
  w.slot[fnn_emu::lane()] = uint64_t(reinterpret_cast<uintptr_t>(row));
  w.bar.arrive_and_wait();
  for (int l = 0; l < 32; ++l) rows[l] = reinterpret_cast<const unsigned char*>(uintptr_t(w.slot[l]));
  w.bar.arrive_and_wait();
}

inline unsigned short element(const unsigned char* row, int col) {
  unsigned short v;
  std::memcpy(&v, row + 2 * col, 2);
  return v;
}

}  // namespace emu_async

inline void cp_async_16(void* dst, const void* src) {
  emu_async::Copy c;
  c.dst = static_cast<unsigned char*>(dst);
  std::memcpy(c.data, src, 16);  // the source is read when the copy starts
  std::memset(dst, emu_async::POISON, 16);
  emu_async::groups().open.push_back(c);
}

inline void cp_async_commit() {
  auto& g = emu_async::groups();
  g.committed.push_back(std::move(g.open));
  g.open.clear();
}

template <int N>
inline void cp_async_wait() {
  auto& g = emu_async::groups();
  while (g.committed.size() > size_t(N)) {
    for (const auto& c : g.committed.front()) std::memcpy(c.dst, c.data, 16);
    g.committed.erase(g.committed.begin());
  }
}

inline void ldmatrix_x4(unsigned (&r)[4], const void* row) {
  const unsigned char* rows[32];
  emu_async::rows_of_warp(row, rows);
  const int l = int(fnn_emu::lane()), g = l >> 2, t = l & 3;
  for (int m = 0; m < 4; ++m) {
    const unsigned char* p = rows[8 * m + g];
    r[m] = unsigned(emu_async::element(p, 2 * t)) | (unsigned(emu_async::element(p, 2 * t + 1)) << 16);
  }
}

inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
  const unsigned char* rows[32];
  emu_async::rows_of_warp(row, rows);
  const int l = int(fnn_emu::lane()), g = l >> 2, t = l & 3;
  for (int m = 0; m < 4; ++m) {
    const unsigned lo = emu_async::element(rows[8 * m + 2 * t], g);
    const unsigned hi = emu_async::element(rows[8 * m + 2 * t + 1], g);
    r[m] = lo | (hi << 16);
  }
}

#endif

}  // namespace fnn
