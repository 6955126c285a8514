// A small SIMT emulator, so that the kernels' logic (warp shuffles, ballots, block barriers,
// shared memory) can be tested on a CPU without a GPU. Each CUDA thread of a block is one
// std::thread. `launch` runs blocks one after another, so a function-local `static` array
// (`__shared__`) behaves as the block's shared memory; `launch_concurrent` runs every block at
// once, in a seeded random start order, for kernels whose blocks communicate through global
// memory (the fused self-join's locked list merges): their shared arrays are declared with
// FNN_SHARED, which gives each block its own. Warp collectives go through a per-warp exchange
// slot and two barrier phases. Only full-warp collectives are supported; a divergent collective
// deadlocks here, as it would misbehave on a GPU — a useful check in itself.
//
// It is for tests only, slow by design (every collective is a barrier among OS threads).
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
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
#define FNN_SHARED(type, name, count) type* name = ::fnn_emu::block_shared<type>(__LINE__, (count))
// Between reading a shared structure and writing it back: under launch_concurrent, a short sleep
// that lets other blocks run, so that an unprotected read-modify-write loses updates visibly.
#define FNN_EMU_RACE_WINDOW() ::fnn_emu::race_window()

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct float4 {
  float x, y, z, w;
};
struct uint4 {
  unsigned x, y, z, w;
};

namespace fnn_emu {

struct Warp {
  std::barrier<> bar{32};
  uint64_t slot[32];
};

struct Block {
  explicit Block(unsigned threads) : bar(threads), warps(threads / 32), or_slot(threads, 0) {
    for (auto& w : warps) w = std::make_unique<Warp>();
  }
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<int> or_slot;  // __syncthreads_or
  std::mutex shared_lock;
  std::map<int, std::vector<unsigned char>> shared;  // FNN_SHARED arrays, by declaration line
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

inline std::atomic<bool>& concurrent_blocks() {
  static std::atomic<bool> on{false};
  return on;
}
inline void race_window() {
  if (concurrent_blocks().load(std::memory_order_relaxed)) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

// The calling block's own copy of the shared array declared on line `id`, poisoned like
// uninitialised shared memory; every thread of the block gets the same one.
template <class T>
T* block_shared(int id, size_t count) {
  Block& b = *tls().block;
  std::lock_guard<std::mutex> g(b.shared_lock);
  auto& v = b.shared[id];
  if (v.empty()) v.assign(count * sizeof(T) + 16, 0xCD);
  return reinterpret_cast<T*>(v.data());
}
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

// Starts the `block` threads of block `b` into `ts`, after `delay` (to vary interleavings).
inline void start_block(std::vector<std::thread>& ts, Block& blk, unsigned b, unsigned grid, unsigned block,
                        const std::function<void()>& kernel, std::chrono::microseconds delay) {
  for (unsigned t = 0; t < block; ++t) {
    ts.emplace_back([&, b, t, grid, block, delay] {
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      Ctx& c = tls();
      c.thread_idx = {t, 1, 1};
      c.block_idx = {b, 1, 1};
      c.block_dim = {block, 1, 1};
      c.grid_dim = {grid, 1, 1};
      c.block = &blk;
      kernel();
      // An exited thread no longer takes part in barriers (as on the GPU).
      blk.or_slot[t] = 0;
      blk.bar.arrive_and_drop();
      blk.warps[t / 32]->bar.arrive_and_drop();
    });
  }
}

// Runs `kernel` over `grid` blocks of `block` threads (block a multiple of 32), one block at a
// time, with `smem` bytes of dynamic shared memory.
inline void launch(unsigned grid, unsigned block, size_t smem, const std::function<void()>& kernel) {
  smem_buffer().assign(smem + 16, 0xCD);  // poisoned, as uninitialised shared memory
  for (unsigned b = 0; b < grid; ++b) {
    Block blk(block);
    std::vector<std::thread> ts;
    ts.reserve(block);
    start_block(ts, blk, b, grid, block, kernel, std::chrono::microseconds(0));
    for (auto& th : ts) th.join();
  }
}

// Runs every block of the grid at the same time, started in an order and with delays drawn from
// `seed`, so that blocks race for the same global memory as on a GPU. No dynamic shared memory
// (one buffer cannot serve concurrent blocks); static shared arrays must be FNN_SHARED.
inline void launch_concurrent(unsigned grid, unsigned block, uint64_t seed, const std::function<void()>& kernel) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned> order(grid);
  for (unsigned b = 0; b < grid; ++b) order[b] = b;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::unique_ptr<Block>> blocks;
  for (unsigned b = 0; b < grid; ++b) blocks.push_back(std::make_unique<Block>(block));
  std::vector<std::thread> ts;
  ts.reserve(size_t(grid) * block);
  concurrent_blocks() = true;
  for (unsigned i = 0; i < grid; ++i) {
    const unsigned b = order[i];
    start_block(ts, *blocks[b], b, grid, block, kernel, std::chrono::microseconds(rng() % 200));
  }
  for (auto& th : ts) th.join();
  concurrent_blocks() = false;
}

}  // namespace fnn_emu

#define threadIdx (::fnn_emu::tls().thread_idx)
#define blockIdx (::fnn_emu::tls().block_idx)
#define blockDim (::fnn_emu::tls().block_dim)
#define gridDim (::fnn_emu::tls().grid_dim)

inline void __syncthreads() { fnn_emu::tls().block->bar.arrive_and_wait(); }
// A block barrier that returns whether any thread's predicate was non-zero.
inline int __syncthreads_or(int p) {
  fnn_emu::Block& b = *fnn_emu::tls().block;
  b.or_slot[threadIdx.x] = p != 0;
  b.bar.arrive_and_wait();
  int r = 0;
  for (int v : b.or_slot) r |= v;
  b.bar.arrive_and_wait();
  return r;
}
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
// A spinning thread gives its core away (on a GPU it sleeps ~ns; here the lock holder's block
// needs the core to reach its barriers).
inline void __nanosleep(unsigned) { std::this_thread::yield(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline float __int_as_float(int v) { return fnn_emu::from_bits<float>(uint64_t(uint32_t(v))); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
template <class T>
T __ldg(const T* p) {
  return *p;
}
