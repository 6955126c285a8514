// Every kernel's parameter struct, passed by value, in one place. Each is mirrored field for
// field by a #[repr(C)] struct in src/gpu/cuda/launch.rs, and both sides assert the same sizes and
// offsets (launch.rs tests, kernels/emu/*_tests.cpp static_asserts).
#pragma once

namespace fnn {

// ---- select.cuh: the epilogue + k-selection of one product tile.
struct SelectArgs {
  const float* prods;      // rows × ld products, row-major
  long long ld;            // row stride of prods, a multiple of 4
  const float* qnorms;     // squared norms of the rows (L2; unused for IP)
  const float* xnorms;     // squared norms of the columns (L2; unused for IP)
  const float* thr_keys;   // running lists (row stride thr_ld), or null: no threshold
  const long long* thr_ids;
  long long thr_ld;
  float* out_keys;         // output lists of k, row stride out_ld
  long long* out_ids;
  long long out_ld;
  long long col_base;      // global index of column 0
  long long qid_base;      // global index of row 0, when has_self
  int rows;
  int cols;
  int k;                   // 1 ≤ k ≤ the kernel's bucket
  int has_self;            // skip the column whose global index is the row's own
};

// ---- merge.cu: merging m sorted lists per row.
struct MergeArgs {
  const float* in_keys;     // row r's list s starts at r·in_ld + s·list_stride
  const long long* in_ids;
  long long in_ld;
  long long list_stride;
  float* out_keys;          // may alias list 0 (in place): every read precedes the write
  long long* out_ids;
  long long out_ld;
  int rows;
  int m;                    // lists per row (≥ 1)
  int k;                    // entries per list and in the output
  int p;                    // power of two ≥ k; dynamic shared memory = p·12 bytes
};

// ---- fused.cuh: the fused self-join or search.
struct FusedArgs {
  const void* q;          // query rows, m × ld stored elements
  const float* qnorms;    // m squared norms (L2)
  const void* x;          // database rows, n × ld (the same pointer as q in a self-join)
  const float* xnorms;    // n squared norms (L2)
  float* keys;            // m × k running lists (+inf where empty), row stride k
  unsigned* ids;          // m × k database-row indices (SENTINEL_U32 where empty)
  int* locks;             // one per 64-row list block, zero before the launch
  long long ld;           // row stride of q and x, a multiple of 8 elements
  long long self_offset;  // query row r is database row r + self_offset (when has_self)
  int m;                  // query rows
  int n;                  // database rows
  int k;                  // 1 ≤ k ≤ the kernel's bucket
  int symmetric;          // 1: self-join over tiles J ≥ I, both sides; 0: every J, row side only
  int has_self;           // skip each query's own database row
  int pad_;
};

}  // namespace fnn
