// Runs the select, merge, norms and pack kernels' own source on the CPU, and the pipeline
// primitives of async.cuh (cp.async, ldmatrix), through emu/simt.h and
// compares every output entry with a reference written independently of the kernels (a plain
// sort; keys, norms and roundings computed here). Built and run by tests/gpu.rs
// (`kernels_match_reference_on_cpu_emulation`):
//   g++ -std=c++20 -O2 -pthread -I kernels kernels/emu/kernel_tests.cpp && ./a.out [quick]
// Exit status 0 and a final "N passed, 0 failed" line on success.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "check.h"

#include "../async.cuh"
#include "../convert.cu"
#include "../merge.cu"
#include "../norms.cu"
#include "../select.cu"

// The Rust mirrors (src/gpu/cuda/launch.rs) assert the same layout.
static_assert(sizeof(fnn::SelectArgs) == 112 && offsetof(fnn::SelectArgs, col_base) == 80 &&
              offsetof(fnn::SelectArgs, rows) == 96 && offsetof(fnn::SelectArgs, has_self) == 108);
static_assert(sizeof(fnn::MergeArgs) == 72 && offsetof(fnn::MergeArgs, out_ld) == 48 && offsetof(fnn::MergeArgs, p) == 68);

namespace {

using SelectFn = void (*)(const fnn::SelectArgs);

struct Bucket {
  int k_max;
  SelectFn l2, ip;
  bool block;  // block_select: 256 threads per row; else 4 warps (rows) per 128-thread block
};

const Bucket BUCKETS[] = {
    {32, topk_select_k32_l2, topk_select_k32_ip, false},
    {128, topk_select_k128_l2, topk_select_k128_ip, false},
    {512, topk_select_k512_l2, topk_select_k512_ip, false},
    {2048, topk_select_k2048_l2, topk_select_k2048_ip, true},
    {4096, topk_select_k4096_l2, topk_select_k4096_ip, true},
};

using emu_check::check;

// Element conversions for the references, written here (not the kernels' elem.cuh): f16 through
// the compiler's IEEE _Float16, bf16 by rounding the f32 bits to nearest even.
float f32_back(float v) { return v; }
float f16_back(__half h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return float(v);
}
float bf16_back(__nv_bfloat16 b) {
  unsigned short bits;
  std::memcpy(&bits, &b, 2);
  const uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <class T>
float ref_round(float v) {
  if constexpr (sizeof(T) == 4) {
    return v;
  } else if constexpr (std::is_same_v<T, __half>) {
    return float(_Float16(v));
  } else {
    double scaled = double(v);
    int e;
    std::frexp(scaled, &e);
    const double ulp = std::ldexp(1.0, e - 8);  // bf16 keeps 8 significant bits
    return float(std::nearbyint(scaled / ulp) * ulp);  // nearest, ties to even (default rounding mode)
  }
}
template <class T>
T to_elem(float v) {
  T out;
  if constexpr (sizeof(T) == 4) {
    out = v;
  } else if constexpr (std::is_same_v<T, __half>) {
    const _Float16 h = _Float16(v);
    std::memcpy(&out, &h, 2);
  } else {
    const float r = ref_round<T>(v);
    uint32_t u;
    std::memcpy(&u, &r, 4);
    const unsigned short bits = (unsigned short)(u >> 16);
    std::memcpy(&out, &bits, 2);
  }
  return out;
}

struct Entry {
  float key;
  long long id;
};
bool ranks_before(const Entry& a, const Entry& b) {
  auto ra = a.id < 0 ? fnn::SENTINEL_I64 : a.id, rb = b.id < 0 ? fnn::SENTINEL_I64 : b.id;
  return a.key < b.key || (a.key == b.key && ra < rb);
}

struct Case {
  int rows, cols, k, metric, has_self, with_thr, misalign;
  long long col_base, qid_base;
  bool ties;
};

std::string describe(const Case& c, int bucket) {
  char b[256];
  std::snprintf(b, sizeof b, "bucket %d rows %d cols %d k %d metric %s self %d thr %d misalign %d ties %d", bucket, c.rows, c.cols,
                c.k, c.metric == 0 ? "l2" : "ip", c.has_self, c.with_thr, c.misalign, int(c.ties));
  return b;
}

void run_select(const Bucket& bk, const Case& c, std::mt19937_64& rng) {
  const long long ld = ((c.cols + 3) / 4) * 4 + 4;
  std::vector<float> prods_buf(size_t(c.rows) * ld + 8, 0.0f), xn_buf(size_t(c.cols) + 8), qn(c.rows);
  // Misaligned views force the scalar load path.
  float* prods = prods_buf.data() + (c.misalign ? 1 : 0);
  float* xn = xn_buf.data() + (c.misalign ? 1 : 0);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::uniform_int_distribution<int> small(-2, 2);
  for (int r = 0; r < c.rows; ++r) {
    qn[r] = c.ties ? float(small(rng) + 3) : std::abs(u(rng)) * 4;
    for (int j = 0; j < c.cols; ++j) prods[size_t(r) * ld + j] = c.ties ? float(small(rng)) : u(rng);
  }
  for (int j = 0; j < c.cols; ++j) xn[j] = c.ties ? float(small(rng) + 3) : std::abs(u(rng)) * 4;

  // A running list per row: entries from columns outside this tile, sorted, some empty.
  const int k = c.k;
  std::vector<float> thr_k(size_t(c.rows) * k);
  std::vector<long long> thr_i(size_t(c.rows) * k);
  for (int r = 0; r < c.rows; ++r) {
    std::vector<Entry> e;
    const int filled = std::uniform_int_distribution<int>(0, k)(rng);
    for (int t = 0; t < filled; ++t) {
      const long long id = (rng() & 1) ? c.col_base - 1 - t : c.col_base + c.cols + t;
      const float key = c.ties ? float(small(rng) * 2) : u(rng) * 3;
      e.push_back({c.metric == 0 ? std::abs(key) : key, id});
    }
    std::sort(e.begin(), e.end(), ranks_before);
    for (int t = 0; t < k; ++t) {
      thr_k[size_t(r) * k + t] = t < filled ? e[t].key : INFINITY;
      thr_i[size_t(r) * k + t] = t < filled ? e[t].id : -1;
    }
  }

  const long long out_ld = k + 3;
  std::vector<float> ok(size_t(c.rows) * out_ld, -12345.0f);  // poisoned: unwritten entries fail
  std::vector<long long> oi(size_t(c.rows) * out_ld, -777);

  fnn::SelectArgs a{};
  a.prods = prods;
  a.ld = ld;
  a.qnorms = qn.data();
  a.xnorms = xn;
  a.thr_keys = c.with_thr ? thr_k.data() : nullptr;
  a.thr_ids = c.with_thr ? thr_i.data() : nullptr;
  a.thr_ld = k;
  a.out_keys = ok.data();
  a.out_ids = oi.data();
  a.out_ld = out_ld;
  a.col_base = c.col_base;
  a.qid_base = c.qid_base;
  a.rows = c.rows;
  a.cols = c.cols;
  a.k = k;
  a.has_self = c.has_self;
  const SelectFn f = c.metric == 0 ? bk.l2 : bk.ip;
  if (bk.block) {
    const size_t smem = size_t(2) * bk.k_max * 8;
    fnn_emu::launch(unsigned(c.rows), 256, smem, [&] { f(a); });
  } else {
    fnn_emu::launch(unsigned((c.rows + 3) / 4), 128, 0, [&] { f(a); });
  }

  bool all = true;
  std::string first;
  for (int r = 0; r < c.rows && all; ++r) {
    std::vector<Entry> e;
    for (int j = 0; j < c.cols; ++j) {
      const long long g = c.col_base + j;
      if (c.has_self && g == c.qid_base + r) continue;
      // The key, written out here rather than taken from topk.cuh: ‖q‖² + ‖x‖² − 2·q·x clamped
      // at 0 (in the kernel's f32 order of operations), or −q·x.
      const float p = prods[size_t(r) * ld + j];
      float key;
      if (c.metric == 0) {
        const float sum = qn[r] + xn[j];
        const float twice = 2.0f * p;
        key = sum - twice;
        if (key < 0.0f) key = 0.0f;
      } else {
        key = -p;
      }
      e.push_back({key, g});
    }
    std::sort(e.begin(), e.end(), ranks_before);
    // Candidates that do not beat the running k-th are not admitted: they cannot reach the final
    // top-k, and the kernel may drop them. Compare the tile's list cut at that threshold.
    Entry thr{INFINITY, -1};
    if (c.with_thr) thr = {thr_k[size_t(r) * k + k - 1], thr_i[size_t(r) * k + k - 1]};
    for (int t = 0; t < k; ++t) {
      Entry want{INFINITY, -1};
      if (t < int(e.size()) && ranks_before(e[t], thr)) want = e[t];
      const Entry got{ok[size_t(r) * out_ld + t], oi[size_t(r) * out_ld + t]};
      if (got.id != want.id || !(got.key == want.key)) {
        all = false;
        char b[200];
        std::snprintf(b, sizeof b, " row %d pos %d: got (%g, %lld) want (%g, %lld)", r, t, got.key, got.id, want.key, want.id);
        first = b;
        break;
      }
    }
    for (int t = k; t < out_ld && all; ++t) {
      if (ok[size_t(r) * out_ld + t] != -12345.0f || oi[size_t(r) * out_ld + t] != -777) {
        all = false;
        first = " wrote past k";
      }
    }
  }
  check(all, describe(c, bk.k_max) + first);
}

void run_merge(int rows, int m, int k, bool in_place, std::mt19937_64& rng) {
  int p = 1;
  while (p < k) p <<= 1;
  const long long list_stride = k, in_ld = (long long)m * k;
  std::vector<float> keys(size_t(rows) * in_ld);
  std::vector<long long> ids(size_t(rows) * in_ld);
  std::vector<std::vector<Entry>> want(rows);
  std::uniform_int_distribution<int> small(0, 6);
  long long next_id = 0;
  for (int r = 0; r < rows; ++r) {
    std::vector<Entry> all;
    for (int s = 0; s < m; ++s) {
      std::vector<Entry> l;
      const int filled = std::uniform_int_distribution<int>(0, k)(rng);
      for (int t = 0; t < filled; ++t) l.push_back({float(small(rng)), next_id++ % 1000003});
      std::sort(l.begin(), l.end(), ranks_before);
      for (int t = 0; t < k; ++t) {
        keys[size_t(r) * in_ld + s * list_stride + t] = t < filled ? l[t].key : INFINITY;
        ids[size_t(r) * in_ld + s * list_stride + t] = t < filled ? l[t].id : -1;
      }
      all.insert(all.end(), l.begin(), l.end());
    }
    std::sort(all.begin(), all.end(), ranks_before);
    all.resize(k, Entry{INFINITY, -1});
    want[r] = all;
  }
  std::vector<float> ok(size_t(rows) * k, -5.0f);
  std::vector<long long> oi(size_t(rows) * k, -9);
  fnn::MergeArgs a{};
  a.in_keys = keys.data();
  a.in_ids = ids.data();
  a.in_ld = in_ld;
  a.list_stride = list_stride;
  a.out_keys = in_place ? keys.data() : ok.data();
  a.out_ids = in_place ? ids.data() : oi.data();
  a.out_ld = in_place ? in_ld : k;
  a.rows = rows;
  a.m = m;
  a.k = k;
  a.p = p;
  const unsigned nt = unsigned(std::min(512, std::max(32, p / 2)));
  fnn_emu::launch(unsigned(rows), nt, size_t(p) * 12, [&] { topk_merge(a); });
  bool good = true;
  for (int r = 0; r < rows && good; ++r) {
    for (int t = 0; t < k; ++t) {
      const size_t at = in_place ? size_t(r) * in_ld + t : size_t(r) * k + t;
      const float gk = in_place ? keys[at] : ok[at];
      const long long gi = in_place ? ids[at] : oi[at];
      if (gi != want[r][t].id || !(gk == want[r][t].key)) {
        good = false;
        break;
      }
    }
  }
  char b[128];
  std::snprintf(b, sizeof b, "merge rows %d m %d k %d in_place %d", rows, m, k, int(in_place));
  check(good, b);
}

// pack_rows_{f32,f16,bf16}: rows to stride ld, rounded to the element type, zero padding.
template <class T>
void run_pack(int n, int d, int ld, const char* name, void (*kernel)(const float*, long long, int, T*, long long), float (*back)(T),
              std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> src(size_t(n) * d);
  for (auto& v : src) v = normal(rng);
  std::vector<T> dst(size_t(n) * ld);
  std::memset(dst.data(), 0xAB, dst.size() * sizeof(T));  // poisoned
  fnn_emu::launch(3, 32, 0, [&] { kernel(src.data(), n, d, dst.data(), ld); });
  bool good = true;
  for (int r = 0; r < n && good; ++r)
    for (int c = 0; c < ld && good; ++c) {
      const float got = back(dst[size_t(r) * ld + c]);
      const float want = c < d ? ref_round<T>(src[size_t(r) * d + c]) : 0.0f;
      good = got == want;
    }
  char b[128];
  std::snprintf(b, sizeof b, "pack_rows_%s n %d d %d ld %d", name, n, d, ld);
  check(good, b);
}

// row_norms_{f32,f16,bf16}: each row's Σx² within f32 summation error of a float64 sum.
template <class T>
void run_norms(int n, int d, int ld, const char* name, void (*kernel)(const T*, long long, long long, int, float*), float (*back)(T),
               std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<T> x(size_t(n) * ld);
  std::vector<double> seen(size_t(n) * d);
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < ld; ++c) {
      const T v = to_elem<T>(c < d ? normal(rng) : 0.0f);
      x[size_t(r) * ld + c] = v;
      if (c < d) seen[size_t(r) * d + c] = back(v);
    }
  std::vector<float> out(n, -1.0f);
  fnn_emu::launch(2, 64, 0, [&] { kernel(x.data(), ld, n, d, out.data()); });
  bool good = true;
  for (int r = 0; r < n && good; ++r) {
    double want = 0;
    for (int c = 0; c < d; ++c) want += seen[size_t(r) * d + c] * seen[size_t(r) * d + c];
    good = std::abs(out[r] - want) <= 1e-6 * d * want + 1e-30;
  }
  char b[128];
  std::snprintf(b, sizeof b, "row_norms_%s n %d d %d ld %d", name, n, d, ld);
  check(good, b);
}

// A three-stage cp.async pipeline over `tiles` tiles of 64 × 16 bytes: each thread copies its
// 16-byte chunk of tile i + 2 while tile i is read, and after the wait and a barrier sums the
// chunk of its neighbour (another thread's copy). With `wait` false the kernel omits
// cp_async_wait: the emulation must then make it read poison, so that a missing wait fails.
long long pipeline_sum(const std::vector<unsigned char>& src, int tiles, bool wait) {
  constexpr int T = 64, CHUNK = 16, STAGES = 3;
  long long total = 0;
  fnn_emu::launch(1, T, STAGES * T * CHUNK, [&] {
    FNN_DYNAMIC_SMEM(smem);
    const int t = int(threadIdx.x);
    auto issue = [&](int tile) {
      if (tile < tiles) fnn::cp_async_16(smem + ((tile % STAGES) * T + t) * CHUNK, src.data() + (size_t(tile) * T + t) * CHUNK);
      fnn::cp_async_commit();  // an empty group past the end keeps the count uniform
    };
    issue(0);
    issue(1);
    long long sum = 0;
    for (int i = 0; i < tiles; ++i) {
      issue(i + 2);
      if (wait) fnn::cp_async_wait<2>();  // tile i's group is complete; i + 1 and i + 2 may fly
      __syncthreads();
      const unsigned char* chunk = smem + ((i % STAGES) * T + (t + 1) % T) * CHUNK;
      for (int b = 0; b < CHUNK; ++b) sum += chunk[b];
      __syncthreads();  // the stage is overwritten by the next issue
    }
    atomicAdd(reinterpret_cast<int*>(&total), int(sum));
  });
  return total;
}

void run_cp_async(std::mt19937_64& rng) {
  // Stages: a copy reads as poison until the wait that covers its group, wait<1> delivers all
  // but the newest group, wait<0> everything.
  constexpr int T = 64;
  std::vector<unsigned char> src(2 * T * 16);
  for (auto& v : src) v = (unsigned char)(rng() % 251);
  int bad[3] = {0, 0, 0};
  fnn_emu::launch(1, T, 2 * T * 16, [&] {
    FNN_DYNAMIC_SMEM(smem);
    const int t = int(threadIdx.x);
    auto holds = [&](int s, bool data) {
      for (int b = 0; b < 16; ++b) {
        const size_t at = (size_t(s) * T + t) * 16 + b;
        if (smem[at] != (data ? src[at] : fnn::emu_async::POISON)) return false;
      }
      return true;
    };
    for (int s = 0; s < 2; ++s) {
      fnn::cp_async_16(smem + (s * T + t) * 16, src.data() + (s * T + t) * 16);
      fnn::cp_async_commit();
    }
    if (!(holds(0, false) && holds(1, false))) atomicAdd(&bad[0], 1);
    fnn::cp_async_wait<1>();
    if (!(holds(0, true) && holds(1, false))) atomicAdd(&bad[1], 1);
    fnn::cp_async_wait<0>();
    if (!(holds(0, true) && holds(1, true))) atomicAdd(&bad[2], 1);
  });
  check(bad[0] == 0, "cp.async: a started copy reads as poison before its wait");
  check(bad[1] == 0, "cp.async: wait_group 1 delivers the older group only");
  check(bad[2] == 0, "cp.async: wait_group 0 delivers every group");
  // The pipeline: with its waits it sums the data; without them the emulation catches it.
  for (int tiles : {1, 2, 3, 7}) {
    std::vector<unsigned char> data(size_t(tiles) * T * 16);
    long long want = 0;
    for (auto& v : data) {
      v = (unsigned char)(rng() % 200);
      want += v;
    }
    check(pipeline_sum(data, tiles, true) == want, "cp.async pipeline of " + std::to_string(tiles) + " tiles sums its data");
    check(pipeline_sum(data, tiles, false) != want, "cp.async pipeline of " + std::to_string(tiles) + " tiles without waits reads poison");
  }
}

// ldmatrix: four 8 × 8 matrices of 16-bit elements whose rows lie scattered in shared memory;
// every lane must receive the elements of the mma.sync fragment layout (and its transpose).
void run_ldmatrix() {
  constexpr int ROWS = 32;
  // Element (m, i, j) = 1 + 64 m + 8 i + j; row (m, i) stored at slot (5 (8m + i) + 3) mod 32.
  auto slot = [](int m, int i) { return (5 * (8 * m + i) + 3) % ROWS; };
  for (int trans = 0; trans < 2; ++trans) {
    int bad = 0;
    fnn_emu::launch(1, 32, ROWS * 16, [&] {
      FNN_DYNAMIC_SMEM(smem);
      const int l = int(threadIdx.x);
      if (l == 0)
        for (int m = 0; m < 4; ++m)
          for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j) {
              const unsigned short v = (unsigned short)(1 + 64 * m + 8 * i + j);
              std::memcpy(smem + slot(m, i) * 16 + 2 * j, &v, 2);
            }
      __syncthreads();
      unsigned r[4];
      const void* row = smem + slot(l / 8, l % 8) * 16;
      if (trans) fnn::ldmatrix_x4_trans(r, row);
      else fnn::ldmatrix_x4(r, row);
      const int g = l / 4, t = l % 4;
      for (int m = 0; m < 4; ++m) {
        const unsigned lo = trans ? 1 + 64 * m + 8 * (2 * t) + g : 1 + 64 * m + 8 * g + 2 * t;
        const unsigned hi = trans ? lo + 8 : lo + 1;
        if (r[m] != (lo | (hi << 16))) atomicAdd(&bad, 1);
      }
    });
    check(bad == 0, trans ? "ldmatrix.x4.trans gives the transposed fragment layout" : "ldmatrix.x4 gives the mma fragment layout");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  std::mt19937_64 rng(20240611);
  const int col_choices[] = {0, 1, 3, 31, 127, 128, 129, 515, 1000, 2100, 4500};
  for (const Bucket& bk : BUCKETS) {
    const int lower = bk.k_max == 32 ? 1 : (&bk)[-1].k_max + 1;
    // Every combination of the k choice (bucket's lower edge, its maximum, in between, 1), the
    // metric, self-exclusion and ties, each drawn from its own loop; rows, columns, a running
    // threshold and misaligned views are random per case.
    for (int kc = 0; kc < 4; ++kc)
      for (int metric = 0; metric < 2; ++metric)
        for (int self = 0; self < 2; ++self)
          for (int ties = 0; ties < 2; ++ties) {
            if (quick && (kc + metric + self + ties) % 2 == 1) continue;
            Case c{};
            c.rows = std::uniform_int_distribution<int>(1, bk.block ? 3 : 6)(rng);
            c.cols = col_choices[std::uniform_int_distribution<int>(0, 10)(rng)];
            const int ks[] = {lower, bk.k_max, std::uniform_int_distribution<int>(lower, bk.k_max)(rng), 1};
            c.k = ks[kc];
            c.metric = metric;
            c.has_self = self;
            c.with_thr = rng() % 2;
            c.misalign = rng() % 4 == 0;
            c.ties = ties;
            c.col_base = std::uniform_int_distribution<long long>(0, 5000)(rng);
            c.qid_base = c.col_base + std::uniform_int_distribution<int>(-2, c.cols > 0 ? c.cols - 1 : 0)(rng);
            run_select(bk, c, rng);
          }
  }
  for (auto [n, d, ld] : {std::tuple{5, 3, 8}, std::tuple{9, 64, 64}, std::tuple{4, 385, 392}}) {
    run_pack<float>(n, d, ld, "f32", pack_rows_f32, f32_back, rng);
    run_pack<__half>(n, d, ld, "f16", pack_rows_f16, f16_back, rng);
    run_pack<__nv_bfloat16>(n, d, ld, "bf16", pack_rows_bf16, bf16_back, rng);
    run_norms<float>(n, d, ld, "f32", row_norms_f32, f32_back, rng);
    run_norms<__half>(n, d, ld, "f16", row_norms_f16, f16_back, rng);
    run_norms<__nv_bfloat16>(n, d, ld, "bf16", row_norms_bf16, bf16_back, rng);
  }
  for (int it = 0; it < (quick ? 6 : 14); ++it) {
    const int ks[] = {1, 5, 32, 100, 512, 1000, 4096};
    const int k = ks[it % 7];
    run_merge(std::uniform_int_distribution<int>(1, 3)(rng), std::uniform_int_distribution<int>(1, 5)(rng), k, it & 1, rng);
  }
  run_cp_async(rng);
  run_ldmatrix();
  return emu_check::finish();
}
