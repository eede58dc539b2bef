// Inner loops that have an architecture-specific variant (cpu/arch/). The variant is chosen
// once at run time from the CPU's features; KCACHE_SIMD=generic forces the portable one.
#pragma once
#include <cstdint>

namespace kc {

struct Kernels {
  const char* name;
  // out[t * ldo + o] = sum_k x[t * k + kk] * w[o * k + kk], for o in [o0, o1) and t in [0, rows).
  void (*matmul_f32)(float* out, int ldo, const float* x, int rows, const float* w, int k, int o0, int o1);
  void (*matmul_bf16)(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1);
  void (*matmul_f16)(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1);
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float* y, float a, const float* x, int n);  // y += a * x
};

const Kernels& generic_kernels();
const Kernels* avx2_kernels();  // nullptr when not compiled in
const Kernels& active_kernels();

}  // namespace kc
