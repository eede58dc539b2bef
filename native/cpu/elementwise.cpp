// Small data-movement ops: residual add, row gather, KV-cache store.
#include <cstring>

#include "kcache/quant.h"
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

void kv_store(Ctx& c, void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots,
              int rows, int kv_dim, DType kv_dtype) {
  const size_t row_bytes = dtype_row_bytes(kv_dtype, kv_dim);
  parallel_ranges(c, static_cast<size_t>(rows), 16, [&](size_t b, size_t e) {
    const bool simd = c.k.encode_16 && (kv_dtype == DType::F16 || kv_dtype == DType::BF16);
    const auto store = [&](const float* src, void* cache, size_t at) {
      uint8_t* dst = static_cast<uint8_t*>(cache) + at;
      if (simd) c.k.encode_16(kv_dtype, src, reinterpret_cast<uint16_t*>(dst), kv_dim);
      else encode_row(kv_dtype, src, dst, kv_dim);
    };
    for (size_t r = b; r < e; ++r) {
      const size_t at = static_cast<size_t>(slots[r]) * row_bytes;
      store(k + r * kv_dim, k_cache, at);
      store(v + r * kv_dim, v_cache, at);
    }
  });
}

}  // namespace kc::cpu
