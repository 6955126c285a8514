// A small SIMT emulator, so that the kernels' logic (warp shuffles, ballots, block barriers,
// shared memory) can be tested on a CPU without a GPU. Each CUDA thread of a block is one
// std::thread; blocks run one after another, so a function-local `static` array behaves as the
// block's shared memory. Warp collectives go through a per-warp exchange slot and two barrier
// phases. Only full-warp collectives are supported; a divergent collective deadlocks here, as it
// would misbehave on a GPU — a useful check in itself.
//
// It is for tests only, slow by design (every collective is a barrier among OS threads).
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define FNN_DEVICE inline
#define FNN_FULL_MASK 0xffffffffu
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define FNN_INF INFINITY
#define FNN_DYNAMIC_SMEM(name) unsigned char* name = ::fnn_emu::dynamic_smem()

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct float4 {
  float x, y, z, w;
};

namespace fnn_emu {

struct Warp {
  std::barrier<> bar{32};
  uint64_t slot[32];
};

struct Block {
  explicit Block(unsigned threads) : bar(threads), warps(threads / 32) {
    for (auto& w : warps) w = std::make_unique<Warp>();
  }
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
};

struct Ctx {
  dim3 thread_idx, block_idx, block_dim, grid_dim;
  Block* block = nullptr;
};

inline Ctx& tls() {
  thread_local Ctx c;
  return c;
}

inline std::vector<unsigned char>& smem_buffer() {
  static std::vector<unsigned char> b;
  return b;
}
inline unsigned char* dynamic_smem() { return smem_buffer().data(); }

inline unsigned lane() { return tls().thread_idx.x & 31u; }
inline Warp& warp() { return *tls().block->warps[tls().thread_idx.x / 32]; }

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8);
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

template <class T>
T exchange(T v, unsigned src) {
  Warp& w = warp();
  w.slot[lane()] = to_bits(v);
  w.bar.arrive_and_wait();
  T r = from_bits<T>(w.slot[src & 31u]);
  w.bar.arrive_and_wait();
  return r;
}

inline unsigned ballot(bool p) {
  Warp& w = warp();
  w.slot[lane()] = p ? 1u : 0u;
  w.bar.arrive_and_wait();
  unsigned r = 0;
  for (unsigned i = 0; i < 32; ++i) r |= unsigned(w.slot[i] != 0) << i;
  w.bar.arrive_and_wait();
  return r;
}

// Runs `kernel` over `grid` blocks of `block` threads (block a multiple of 32), one block at a
// time, with `smem` bytes of dynamic shared memory.
inline void launch(unsigned grid, unsigned block, size_t smem, const std::function<void()>& kernel) {
  smem_buffer().assign(smem + 16, 0xCD);  // poisoned, as uninitialised shared memory
  for (unsigned b = 0; b < grid; ++b) {
    Block blk(block);
    std::vector<std::thread> ts;
    ts.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
      ts.emplace_back([&, t] {
        Ctx& c = tls();
        c.thread_idx = {t, 1, 1};
        c.block_idx = {b, 1, 1};
        c.block_dim = {block, 1, 1};
        c.grid_dim = {grid, 1, 1};
        c.block = &blk;
        kernel();
        // An exited thread no longer takes part in barriers (as on the GPU).
        blk.bar.arrive_and_drop();
        blk.warps[t / 32]->bar.arrive_and_drop();
      });
    }
    for (auto& th : ts) th.join();
  }
}

}  // namespace fnn_emu

#define threadIdx (::fnn_emu::tls().thread_idx)
#define blockIdx (::fnn_emu::tls().block_idx)
#define blockDim (::fnn_emu::tls().block_dim)
#define gridDim (::fnn_emu::tls().grid_dim)

inline void __syncthreads() { fnn_emu::tls().block->bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = FNN_FULL_MASK) { fnn_emu::warp().bar.arrive_and_wait(); }
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return fnn_emu::exchange(v, unsigned(src));
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return fnn_emu::exchange(v, fnn_emu::lane() ^ unsigned(mask));
}
inline unsigned __ballot_sync(unsigned, bool p) { return fnn_emu::ballot(p); }
inline bool __any_sync(unsigned, bool p) { return fnn_emu::ballot(p) != 0; }
inline bool __all_sync(unsigned, bool p) { return fnn_emu::ballot(p) == FNN_FULL_MASK; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(int(v)); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }
inline int atomicCAS(int* p, int expected, int desired) {
  std::atomic_ref<int>(*p).compare_exchange_strong(expected, desired);
  return expected;  // the old value, as CUDA returns it
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline float __int_as_float(int v) { return fnn_emu::from_bits<float>(uint64_t(uint32_t(v))); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
template <class T>
T __ldg(const T* p) {
  return *p;
}
