// Inner loops that have an architecture-specific variant (cpu/arch/). The variant is chosen
// once at run time from the CPU's features; KCACHE_SIMD=generic|avx2|avx512 caps the choice.
#pragma once
#include <cstdint>

namespace kc {

struct Kernels {
  const char* name;
  // out[t * ldo + o] = sum_k x[t * k + kk] * w[o * k + kk], for o in [o0, o1) and t in [0, rows).
  void (*matmul_f32)(float* out, int ldo, const float* x, int rows, const float* w, int k, int o0, int o1);
  void (*matmul_bf16)(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1);
  void (*matmul_f16)(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1);
  // Attention over one cache block of n rows (row r at r * stride):
  // scores[r] = scale * q · k_r, and out += sum_r weights[r] * v_r, over hd elements.
  void (*dot_rows)(float* scores, const float* q, const float* k, int n, int stride, int hd, float scale);
  void (*axpy_rows)(float* out, const float* weights, const float* v, int n, int stride, int hd);
};

const Kernels& generic_kernels();
const Kernels* avx2_kernels();    // nullptr when not compiled in
const Kernels* avx512_kernels();  // nullptr when not compiled in
const Kernels& active_kernels();

}  // namespace kc
