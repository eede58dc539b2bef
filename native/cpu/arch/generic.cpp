// Portable kernels: plain loops, the fallback on CPUs without AVX2/FMA and the baseline the
// SIMD variants are tested against.
#include <cmath>

#include "../kernels.h"
#include "kcache/quant.h"
#include "kcache/types.h"

namespace kc {
namespace {

constexpr int kPanelWidth = 16;

// Same layout and summation order (one sequential sum over k per output) as the SIMD kernels.
template <typename W, float (*Load)(W)>
void matmul_generic(float* out, int ldo, const float* x, int rows, const W* panels, int k, int o0, int o1) {
  for (int o = o0; o < o1; o += kPanelWidth) {
    const W* panel = panels + static_cast<int64_t>(o / kPanelWidth) * k * kPanelWidth;
    const int n = o1 - o < kPanelWidth ? o1 - o : kPanelWidth;
    for (int t = 0; t < rows; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * k;
      float acc[kPanelWidth] = {};
      for (int kk = 0; kk < k; ++kk) {
        const W* p = panel + static_cast<int64_t>(kk) * kPanelWidth;
        for (int i = 0; i < kPanelWidth; ++i) acc[i] += Load(p[i]) * xr[kk];
      }
      for (int i = 0; i < n; ++i) out[static_cast<int64_t>(t) * ldo + o + i] = acc[i];
    }
  }
}

float load_f32(float v) { return v; }

void dequant_row_generic(DType t, const void* src, float* dst, int k) { dequantize_row(t, src, dst, k); }

void matmul_rows_generic(float* out, int ldo, const float* x, int rows, const float* w, int k, int n_out) {
  for (int t = 0; t < rows; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * k;
    for (int o = 0; o < n_out; ++o) {
      const float* wr = w + static_cast<int64_t>(o) * k;
      float acc = 0.0f;
      for (int kk = 0; kk < k; ++kk) acc += xr[kk] * wr[kk];
      out[static_cast<int64_t>(t) * ldo + o] = acc;
    }
  }
}

// The reference variant reads rows plainly: `ahead` (a prefetch hint) is not used.
void dot_rows_generic(float* scores, int64_t lds, const float* q, int G, const float* k, int n, int stride, int hd, float scale,
                      const void*) {
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < n; ++r) {
      const float* kr = k + static_cast<int64_t>(r) * stride;
      float acc = 0.0f;
      for (int i = 0; i < hd; ++i) acc += q[g * hd + i] * kr[i];
      scores[g * lds + r] = acc * scale;
    }
}

void axpy_rows_generic(float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const float* v, int n, int stride, int hd,
                       const void*) {
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < n; ++r) {
      const float* vr = v + static_cast<int64_t>(r) * stride;
      for (int i = 0; i < hd; ++i) out[g * out_stride + i] += weights[g * lds + r] * vr[i];
    }
}

inline float half_value(DType t, uint16_t h) { return t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h); }

void dot_rows_16_generic(DType t, float* scores, int64_t lds, const float* q, int G, const uint16_t* k, int n, int stride, int hd,
                         float scale, const void*) {
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < n; ++r) {
      const uint16_t* kr = k + static_cast<int64_t>(r) * stride;
      float acc = 0.0f;
      for (int i = 0; i < hd; ++i) acc += q[g * hd + i] * half_value(t, kr[i]);
      scores[g * lds + r] = acc * scale;
    }
}

void axpy_rows_16_generic(DType t, float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const uint16_t* v, int n,
                          int stride, int hd, const void*) {
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < n; ++r) {
      const uint16_t* vr = v + static_cast<int64_t>(r) * stride;
      for (int i = 0; i < hd; ++i) out[g * out_stride + i] += weights[g * lds + r] * half_value(t, vr[i]);
    }
}

void weighted_sum_rows_generic(float* out, const float* weights, const float* const* rows, int n, int hd) {
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hd; ++i) out[i] += weights[r] * rows[r][i];
}

void weighted_sum_rows_16_generic(DType t, float* out, const float* weights, const uint16_t* const* rows, int n, int hd) {
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hd; ++i) out[i] += weights[r] * half_value(t, rows[r][i]);
}

int indices_at_least_generic(int* idx, const float* x, int n, float t) {
  int count = 0;
  for (int i = 0; i < n; ++i) {
    idx[count] = i;
    count += x[i] >= t;
  }
  return count;
}

float max_generic(const float* x, int n) {
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

float exp_sum_generic(float* x, int n, float m) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  return sum;
}

}  // namespace

const Kernels& generic_kernels() {
  static const Kernels k = {
      "generic",
      kPanelWidth,
      matmul_generic<float, load_f32>,
      matmul_generic<uint16_t, bf16_to_f32>,
      matmul_generic<uint16_t, f16_to_f32>,
      dequant_row_generic,
      matmul_rows_generic,
      nullptr,
      dot_rows_generic,
      axpy_rows_generic,
      dot_rows_16_generic,
      axpy_rows_16_generic,
      weighted_sum_rows_generic,
      weighted_sum_rows_16_generic,
      indices_at_least_generic,
      max_generic,
      exp_sum_generic,
  };
  return k;
}

}  // namespace kc
