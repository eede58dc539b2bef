#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

// Block-quantized weights (GGML's row-major blocks, as mapped from the file), kQuantRows output
// rows a task, so the quantized bytes are read from memory once per step: the x86 variants'
// integer path on activations rounded to int8 once per call, or (the generic variant) each task
// dequantizing its weight rows into a per-thread f32 buffer reused by every activation row.
void matmul_quantized(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  constexpr size_t kQuantRows = 16;
  const int k = static_cast<int>(w.cols);
  const int n_out = static_cast<int>(w.rows);
  const size_t row_bytes = dtype_row_bytes(w.dtype, k);
  const auto* base = static_cast<const uint8_t*>(w.data);
  if (c.k.matmul_q8 && k % 32 == 0) {
    // the variant's integer path: activations rounded to int8 once, shared by every task
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xd;
    thread_local std::vector<int32_t> xs;
    xq.resize(static_cast<size_t>(rows) * k);
    xd.resize(static_cast<size_t>(rows) * k / 32);
    xs.resize(xd.size());
    // (the pool's threads have thread_locals of their own: they get these buffers by pointer)
    int8_t* q = xq.data();
    float* d = xd.data();
    int32_t* sums = xs.data();
    thread_local std::vector<uint8_t> xp;
    uint8_t* prep = nullptr;
    if (c.k.q8_prepare && c.k.q8_prep_bytes(w.dtype, rows, k) > 0) {
      xp.resize(c.k.q8_prep_bytes(w.dtype, rows, k));
      prep = xp.data();
    }
    parallel_ranges(c, static_cast<size_t>(rows), 8, [&](size_t b, size_t e) {
      const int n = static_cast<int>(e - b);
      (c.k.quantize_q8 ? c.k.quantize_q8 : quantize_activations)(x + b * k, n, k, q + b * k, d + b * (k / 32), sums + b * (k / 32));
      if (prep) c.k.q8_prepare(w.dtype, rows, static_cast<int>(b), static_cast<int>(e), q, d, k, prep);
    });
    parallel_ranges(c, static_cast<size_t>(n_out), kQuantRows, [&](size_t b, size_t e) {
      c.k.matmul_q8(w.dtype, out, n_out, q, d, sums, rows, base, k, static_cast<int>(b), static_cast<int>(e), prep);
      if (bias)
        for (int t = 0; t < rows; ++t)
          for (size_t o = b; o < e; ++o) out[static_cast<int64_t>(t) * n_out + o] += bias[o];
    });
    return;
  }
  parallel_ranges(c, static_cast<size_t>(n_out), kQuantRows, [&](size_t b, size_t e) {
    thread_local std::vector<float> buf;
    buf.resize(kQuantRows * static_cast<size_t>(k));
    for (size_t o = b; o < e; ++o) c.k.dequant_row(w.dtype, base + o * row_bytes, buf.data() + (o - b) * k, k);
    const int o0 = static_cast<int>(b), n = static_cast<int>(e - b);
    c.k.matmul_rows(out + o0, n_out, x, rows, buf.data(), k, n);
    if (bias) {
      for (int t = 0; t < rows; ++t)
        for (int o = o0; o < o0 + n; ++o) out[static_cast<int64_t>(t) * n_out + o] += bias[o];
    }
  });
}

}  // namespace

// Parallel over output features in blocks of kRowsPerTask (whole packed panels): each task keeps
// its panels hot in cache while it walks every activation row, so weights are read from memory
// once per step whatever the batch size (the point of batching decode).
void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  if (dtype_quantized(w.dtype)) return matmul_quantized(c, out, x, rows, w, bias);
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
      default:
        break;  // quantized: above
    }
    if (bias) {
      for (int t = 0; t < rows; ++t)
        for (int o = o0; o < o1; ++o) out[static_cast<int64_t>(t) * n_out + o] += bias[o];
    }
  });
}

}  // namespace kc::cpu
