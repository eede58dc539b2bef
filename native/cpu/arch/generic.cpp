// Portable kernels: plain loops, the fallback on CPUs without AVX2/FMA and the baseline the
// SIMD variants are tested against.
#include "../kernels.h"
#include "kcache/types.h"

namespace kc {
namespace {

template <typename W, float (*Load)(W)>
void matmul_generic(float* out, int ldo, const float* x, int rows, const W* w, int k, int o0, int o1) {
  for (int o = o0; o < o1; ++o) {
    const W* wr = w + static_cast<int64_t>(o) * k;
    for (int t = 0; t < rows; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * k;
      float acc = 0.0f;
      for (int i = 0; i < k; ++i) acc += xr[i] * Load(wr[i]);
      out[static_cast<int64_t>(t) * ldo + o] = acc;
    }
  }
}

float load_f32(float v) { return v; }

float dot_generic(const float* a, const float* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void axpy_generic(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

const Kernels& generic_kernels() {
  static const Kernels k = {
      "generic",
      matmul_generic<float, load_f32>,
      matmul_generic<uint16_t, bf16_to_f32>,
      matmul_generic<uint16_t, f16_to_f32>,
      dot_generic,
      axpy_generic,
  };
  return k;
}

}  // namespace kc
