// Small data-movement ops: residual add, row gather, KV-cache store.
#include <cstring>

#include "ops.h"

namespace kc::cpu {

void add(Ctx& c, float* x, const float* y, size_t n) {
  parallel_ranges(c, n, 8192, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) x[i] += y[i];
  });
}

void get_rows(Ctx&, float* out, const float* x, const int32_t* idx, int n, int dim) {
  for (int i = 0; i < n; ++i)
    std::memcpy(out + static_cast<int64_t>(i) * dim, x + static_cast<int64_t>(idx[i]) * dim, sizeof(float) * dim);
}

void kv_store(Ctx&, float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slots,
              int rows, int kv_dim) {
  for (int r = 0; r < rows; ++r) {
    const int64_t dst = static_cast<int64_t>(slots[r]) * kv_dim;
    std::memcpy(k_cache + dst, k + static_cast<int64_t>(r) * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(v_cache + dst, v + static_cast<int64_t>(r) * kv_dim, sizeof(float) * kv_dim);
  }
}

}  // namespace kc::cpu
