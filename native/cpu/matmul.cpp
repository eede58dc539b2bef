#include "ops.h"

namespace kc::cpu {

// Parallel over output features in blocks of kRowsPerTask (whole packed panels): each task keeps
// its panels hot in cache while it walks every activation row, so weights are read from memory
// once per step whatever the batch size (the point of batching decode).
void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  constexpr size_t kRowsPerTask = 32;  // a multiple of every variant's panel width (16 or 32)
  const int k = static_cast<int>(w.cols);
  const int n_out = static_cast<int>(w.rows);
  parallel_ranges(c, static_cast<size_t>(n_out), kRowsPerTask, [&](size_t b, size_t e) {
    const int o0 = static_cast<int>(b), o1 = static_cast<int>(e);
    switch (w.dtype) {
      case DType::F32:
        c.k.matmul_f32(out, n_out, x, rows, static_cast<const float*>(w.data), k, o0, o1);
        break;
      case DType::BF16:
        c.k.matmul_bf16(out, n_out, x, rows, static_cast<const uint16_t*>(w.data), k, o0, o1);
        break;
      case DType::F16:
        c.k.matmul_f16(out, n_out, x, rows, static_cast<const uint16_t*>(w.data), k, o0, o1);
        break;
    }
    if (bias) {
      for (int t = 0; t < rows; ++t)
        for (int o = o0; o < o1; ++o) out[static_cast<int64_t>(t) * n_out + o] += bias[o];
    }
  });
}

}  // namespace kc::cpu
