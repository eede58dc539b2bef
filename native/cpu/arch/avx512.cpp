// AVX-512F. Compiled with -mavx512f -mfma -mf16c; used only after active_kernels() has
// checked the CPU has it.
#include <immintrin.h>

#include "simd_kernels.h"

namespace kc {
namespace {

struct Avx512 {
  using vec = __m512;
  static constexpr int N = 16;
  static constexpr int TR = 8;  // 8 rows x 2 vectors: 16 accumulators + 2 weights + 1 broadcast of 32 zmm registers
  static vec zero() { return _mm512_setzero_ps(); }
  static vec set1(float v) { return _mm512_set1_ps(v); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
  static vec round(vec a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static vec ldexp(vec a, vec k) { return _mm512_scalef_ps(a, k); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec load(const Bf16* p) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static vec load(const F16* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  // (-Wno-uninitialized on this file: GCC 12 warns inside its own _mm512_reduce_add_ps)
  static __m256 fold256(vec v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))); }
  static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
  static float hmax(vec v) { return _mm512_reduce_max_ps(v); }
};

}  // namespace

const Kernels* avx512_kernels() {
  static const Kernels k = make_kernels<Avx512>("avx512");
  return &k;
}

}  // namespace kc
