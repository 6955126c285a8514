// The fused self-join: products on tensor cores (or exact f32 FMAs), the L2/IP epilogue and the
// running top-k in one kernel, so that no distance tile ever reaches device memory.
//
// Work: one block per 64-row block I of the queries. It walks the 64-row blocks J of the database
// (J ≥ I in the symmetric self-join, every J otherwise); for each tile (I, J) it
// 1. computes the 64 × 64 products into shared memory (4 warps, each a 32 × 32 quarter: 2 × 4
//    mma.m16n8k16 per 16-deep step for f16/bf16, m16n8k8 for tf32, or 4 × 8 FMAs per thread for
//    exact f32), staging 64-row slices of both operands in shared memory;
// 2. turns them into keys in place (‖q‖² + ‖x‖² − 2 q·x clamped at 0, or −q·x), marking pairs
//    outside the data and the row itself as invalid;
// 3. offers each tile row's 64 keys to that query's running list (the row side) and, in the
//    symmetric join off the diagonal, each tile column's 64 keys to that database row's list (the
//    column side): each pair is computed once and serves both rows.
//
// The running lists live in device memory (k ≤ 128 entries per row, (key, row index) sorted),
// because a column side updates rows another block owns. A block first tests its candidates
// against each list's current k-th entry (read without a lock: lists only improve, so a stale
// read admits more, never fewer); only if some pass does it lock the 64-row list block (one spin
// lock per block, never two held at once), merge with one warp per row (WarpQueue's sort, min-step
// and bitonic merge), and release. After the first tiles almost nothing passes, so the common cost
// per tile is 64 loads and a compare per candidate.
#pragma once

#include "mma.cuh"
#include "params.cuh"
#include "select.cuh"

namespace fnn {

// Element types the products read: 16-bit floats (as raw bits), tf32 from f32, or exact f32.
enum FusedPrec { FUSED_BF16 = 0, FUSED_F16 = 1, FUSED_TF32 = 2, FUSED_F32 = 3 };

constexpr int FB = 64;         // rows of a block, both sides
constexpr int FT = 128;        // threads per block
constexpr int TILE_LD = FB + 1;  // shared tile row stride: rows and columns both conflict-free

// ------------------------------------------------------------------ products

// Shared memory of the product stage: two operand slices (16-bit: 64 × 32 elements; 32-bit:
// 64 × 16), each row padded by 16 bytes so that fragment loads hit 32 different banks.
constexpr int SLICE_WORDS = FB * 20;  // 32-bit words per operand slice (both element sizes)

// Copies rows r0.. (of `rows` valid) of a row-major matrix, 16 bytes per thread and step, from
// depth word w0 (32-bit words) into a slice of 64 rows × 16 words (+4 padding). Rows past the end
// and depths past the stride read as zeros, which add nothing to a product.
FNN_DEVICE void load_slice(const unsigned* src, long long ld_words, int r0, int rows, long long w0, unsigned* slice, int tid) {
  for (int c = tid; c < FB * 4; c += FT) {
    const int row = c >> 2, part = c & 3;
    const long long w = w0 + part * 4;
    unsigned v[4] = {0u, 0u, 0u, 0u};
    if (r0 + row < rows && w < ld_words) {
      const unsigned* p = src + (long long)(r0 + row) * ld_words + w;
#if defined(__CUDACC__)
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      v[0] = u.x; v[1] = u.y; v[2] = u.z; v[3] = u.w;
#else
      for (int e = 0; e < 4; ++e) v[e] = p[e];
#endif
    }
    unsigned* o = slice + row * 20 + part * 4;
    o[0] = v[0]; o[1] = v[1]; o[2] = v[2]; o[3] = v[3];
  }
}

// Word `i` of an operand slice as an mma register. The fragment layouts put the same word in the
// same register for both shapes: a word is two 16-bit elements (m16n8k16) or one f32, which tf32
// rounds first (m16n8k8).
template <int PREC>
FNN_DEVICE unsigned frag_word(const unsigned* slice, int i) {
  if constexpr (PREC == FUSED_TF32) {
    return to_tf32(reinterpret_cast<const float*>(slice)[i]);
  } else {
    return slice[i];
  }
}

// Tile products P[i][j] = q_{i0+i} · x_{j0+j} into `tile` (row stride TILE_LD).
template <int PREC>
FNN_DEVICE void tile_products(const FusedArgs& a, int i0, int j0, float* tile, unsigned* as, unsigned* bs) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  // Depth is walked in 16 words: 32 half-precision elements or 16 f32.
  const long long ld_words = PREC <= FUSED_F16 ? a.ld / 2 : a.ld;
  const unsigned* q = static_cast<const unsigned*>(a.q);
  const unsigned* x = static_cast<const unsigned*>(a.x);

  if constexpr (PREC == FUSED_F32) {
    // Exact f32: thread (tr, tc) owns rows tr + 16·i and columns tc + 8·j (interleaved so that
    // the 8 column readers of a warp hit different banks).
    const int tr = tid >> 3, tc = tid & 7;
    float acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    for (long long w0 = 0; w0 < ld_words; w0 += 16) {
      load_slice(q, ld_words, i0, a.m, w0, as, tid);
      load_slice(x, ld_words, j0, a.n, w0, bs, tid);
      __syncthreads();
      const float* af = reinterpret_cast<const float*>(as);
      const float* bf = reinterpret_cast<const float*>(bs);
#pragma unroll 4
      for (int kk = 0; kk < 16; ++kk) {
        float av[4], bv[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = af[(tr + 16 * i) * 20 + kk];
#pragma unroll
        for (int j = 0; j < 8; ++j) bv[j] = bf[(tc + 8 * j) * 20 + kk];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) tile[(tr + 16 * i) * TILE_LD + tc + 8 * j] = acc[i][j];
  } else {
    // Tensor cores: warp (wm, wn) owns rows 32·wm.. and columns 32·wn.., as 2 × 4 mma tiles.
    const int wm = warp >> 1, wn = warp & 1;
    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
    for (long long w0 = 0; w0 < ld_words; w0 += 16) {
      load_slice(q, ld_words, i0, a.m, w0, as, tid);
      load_slice(x, ld_words, j0, a.n, w0, bs, tid);
      __syncthreads();
      // One mma step covers 8 words of depth (16 half elements, or 8 tf32).
#pragma unroll
      for (int kw = 0; kw < 16; kw += 8) {
        unsigned af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          const int r = wm * 32 + mi * 16 + g;
          af[mi][0] = frag_word<PREC>(as, r * 20 + kw + t);
          af[mi][1] = frag_word<PREC>(as, (r + 8) * 20 + kw + t);
          af[mi][2] = frag_word<PREC>(as, r * 20 + kw + t + 4);
          af[mi][3] = frag_word<PREC>(as, (r + 8) * 20 + kw + t + 4);
        }
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const int c = wn * 32 + ni * 8 + g;
          bf[ni][0] = frag_word<PREC>(bs, c * 20 + kw + t);
          bf[ni][1] = frag_word<PREC>(bs, c * 20 + kw + t + 4);
        }
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
          for (int ni = 0; ni < 4; ++ni) {
            if constexpr (PREC == FUSED_TF32) {
              mma_1688_tf32(acc[mi][ni], af[mi], bf[ni]);
            } else {
              mma_16816<PREC == FUSED_BF16 ? MMA_BF16 : MMA_F16>(acc[mi][ni], af[mi], bf[ni]);
            }
          }
      }
      __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int r = wm * 32 + mi * 16 + g, c = wn * 32 + ni * 8 + 2 * t;
        tile[r * TILE_LD + c] = acc[mi][ni][0];
        tile[r * TILE_LD + c + 1] = acc[mi][ni][1];
        tile[(r + 8) * TILE_LD + c] = acc[mi][ni][2];
        tile[(r + 8) * TILE_LD + c + 1] = acc[mi][ni][3];
      }
  }
}

// ------------------------------------------------------------------ running lists

#if defined(__CUDACC__)
// List entries are read and written at L2 (other blocks update them), never from a stale L1.
FNN_DEVICE float list_load(const float* p) { return __ldcg(p); }
FNN_DEVICE unsigned list_load(const unsigned* p) { return __ldcg(p); }
FNN_DEVICE void list_store(float* p, float v) { __stcg(p, v); }
FNN_DEVICE void list_store(unsigned* p, unsigned v) { __stcg(p, v); }
// The unlocked read of step 1 (another block may be writing the entry).
FNN_DEVICE float list_peek(const float* p) { return __ldcg(p); }
#else
// CPU emulation with blocks possibly concurrent: relaxed atomics keep the unlocked reads of step 1
// defined behaviour, as the GPU's L2 accesses are.
template <class T>
inline T list_load(const T* p) { return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_relaxed); }
template <class T>
inline void list_store(T* p, T v) { std::atomic_ref<T>(*p).store(v, std::memory_order_relaxed); }
inline float list_peek(const float* p) { return list_load(p); }
#endif

// Offers the 64 × 64 keys of `tile` to the running lists of list block `blk` (rows 64·blk..):
// list row 64·blk + r takes tile row r (or, `transposed`, tile column r), candidate c being
// database/query row id0 + c. Invalid pairs hold NaN. `locked`: other blocks may update these
// lists concurrently. All threads call it; it leaves the block synchronised.
template <int K>
FNN_DEVICE void offer_tile(const FusedArgs& a, int blk, const float* tile, bool transposed, unsigned id0, bool locked, int* flags) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int rows = (a.symmetric ? a.n : a.m) - blk * FB;  // list rows in this block
  auto cand = [&](int r, int c) { return transposed ? tile[c * TILE_LD + r] : tile[r * TILE_LD + c]; };

  // 1. Which rows have a candidate that beats their current k-th entry? Only the k-th *key* is
  // read, without the lock: another block's column side may be rewriting that entry, and a torn
  // (key, id) pair could be stricter than the true one and drop a tied candidate for good. A
  // key-only test (key <= k-th key) is conservative, since lists only improve; the locked merge
  // below ranks exactly, ties included.
  int any = 0;
  for (int r = warp; r < FB; r += FT / 32) {
    bool pass = false;
    if (r < rows) {
      const long long at = (long long)(blk * FB + r) * a.k + (a.k - 1);
      const float tk = list_peek(a.keys + at);
      for (int h = 0; h < 2; ++h) {
        const float key = cand(r, lane + 32 * h);
        pass |= key <= tk;  // false for NaN (invalid pairs)
      }
    }
    const bool row_pass = __any_sync(FNN_FULL_MASK, pass);
    if (lane == 0) flags[r] = row_pass;
    any |= row_pass;
  }
  // One barrier that also ORs the warps' answers: it orders the flag writes before step 3 reads
  // them, and no shared slot is cleared while a slower warp of the previous call could read it.
  if (!__syncthreads_or(any)) return;  // block-uniform: nothing to merge, no lock taken

  // 2. Lock the list block (symmetric joins only: there, other blocks' column sides write here).
  if (locked) {
    if (tid == 0) {
      while (atomicCAS(&a.locks[blk], 0, 1) != 0) {
        __nanosleep(64);
      }
      __threadfence();
    }
    __syncthreads();
  }

  // 3. One warp per flagged row: list + candidates through a warp queue, written back sorted.
  for (int r = warp; r < FB; r += FT / 32) {
    if (!flags[r]) continue;  // warp-uniform
    float* lk = a.keys + (long long)(blk * FB + r) * a.k;
    unsigned* li = a.ids + (long long)(blk * FB + r) * a.k;
    WarpQueue<K, 2> wq;
    wq.init(lane, a.k, FNN_INF, SENTINEL_U32);
#pragma unroll
    for (int s = 0; s < WarpQueue<K, 2>::RW; ++s) {
      const int pos = s * 32 + lane;
      wq.wk[s] = pos < a.k ? list_load(lk + pos) : FNN_INF;
      wq.wi[s] = pos < a.k ? list_load(li + pos) : SENTINEL_U32;
    }
    // No admission threshold: this row is here because a candidate beat its k-th entry, and a
    // warp queue of two per lane takes all 64 candidates in at most two merges.
    for (int h = 0; h < 2; ++h) {
      const int c = lane + 32 * h;
      const float key = cand(r, c);
      wq.offer(key, id0 + (unsigned)c, key == key);
    }
    wq.flush();
    FNN_EMU_RACE_WINDOW();  // the CPU emulation widens the read-merge-write window here
#pragma unroll
    for (int s = 0; s < WarpQueue<K, 2>::RW; ++s) {
      const int pos = s * 32 + lane;
      if (pos < a.k) {
        list_store(lk + pos, wq.wk[s]);
        list_store(li + pos, wq.wi[s]);
      }
    }
  }

  // 4. Publish and unlock.
  if (locked) {
    __threadfence();
    __syncthreads();
    if (tid == 0) atomicExch(&a.locks[blk], 0);
  }
  __syncthreads();
}

// ------------------------------------------------------------------ the kernel

template <int PREC, int METRIC, int K>
FNN_DEVICE void fused_knn(const FusedArgs& a) {
  FNN_SHARED(float, tile, FB * TILE_LD);
  FNN_SHARED(unsigned, as, SLICE_WORDS);
  FNN_SHARED(unsigned, bs, SLICE_WORDS);
  FNN_SHARED(int, flags, FB);
  const int tid = threadIdx.x;
  const int I = blockIdx.x, i0 = I * FB;
  // In 64 bits: n + 63 overflows an int near 2³¹ rows (the host refuses n > 2³¹ − 65 anyway).
  const int blocks = (int)(((long long)a.n + FB - 1) / FB);
  for (int J = a.symmetric ? I : 0; J < blocks; ++J) {
    const int j0 = J * FB;
    tile_products<PREC>(a, i0, j0, tile, as, bs);
    __syncthreads();
    for (int e = tid; e < FB * FB; e += FT) {
      const int i = e / FB, j = e % FB;
      const long long qi = i0 + i, xj = j0 + j;
      const bool valid = qi < a.m && xj < a.n && !(a.has_self && qi + a.self_offset == xj);
      const float qn = METRIC == METRIC_L2 && qi < a.m ? a.qnorms[qi] : 0.0f;
      const float xn = METRIC == METRIC_L2 && xj < a.n ? a.xnorms[xj] : 0.0f;
      tile[i * TILE_LD + j] = valid ? key_of<METRIC>(tile[i * TILE_LD + j], qn, xn) : __int_as_float(0x7fffffff);
    }
    __syncthreads();
    offer_tile<K>(a, I, tile, false, (unsigned)j0, a.symmetric != 0, flags);
    // Off the diagonal, the same pairs serve the database rows of block J. (On it, both orders
    // of every pair are already in the tile's rows.)
    if (a.symmetric && J != I) offer_tile<K>(a, J, tile, true, (unsigned)i0, true, flags);
  }
}

// Sets every list entry empty: (+inf, SENTINEL).
FNN_DEVICE void fused_clear(float* keys, unsigned* ids, long long count) {
  for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < count; e += (long long)gridDim.x * blockDim.x) {
    keys[e] = FNN_INF;
    ids[e] = SENTINEL_U32;
  }
}

}  // namespace fnn
