#include "ops.h"

namespace kc::cpu {

void embedding(Ctx& c, float* out, const Tensor& table, const int32_t* tokens, int n) {
  const int64_t dim = table.cols;
  parallel_ranges(c, static_cast<size_t>(n), 1, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) {
      float* o = out + r * dim;
      const int64_t row = tokens[r];
      switch (table.dtype) {
        case DType::F32: {
          const float* src = static_cast<const float*>(table.data) + row * dim;
          for (int64_t i = 0; i < dim; ++i) o[i] = src[i];
          break;
        }
        case DType::BF16: {
          const uint16_t* src = static_cast<const uint16_t*>(table.data) + row * dim;
          for (int64_t i = 0; i < dim; ++i) o[i] = bf16_to_f32(src[i]);
          break;
        }
        case DType::F16: {
          const uint16_t* src = static_cast<const uint16_t*>(table.data) + row * dim;
          for (int64_t i = 0; i < dim; ++i) o[i] = f16_to_f32(src[i]);
          break;
        }
        default:  // block-quantized
          c.k.dequant_row(table.dtype, static_cast<const uint8_t*>(table.data) + row * dtype_row_bytes(table.dtype, dim), o,
                          static_cast<int>(dim));
          break;
      }
    }
  });
}

}  // namespace kc::cpu
