// AVX2 + FMA (+ F16C) kernels. This file alone is compiled with -mavx2 -mfma -mf16c; it runs
// only after active_kernels() has checked the CPU supports them.
#include <immintrin.h>


#include "../kernels.h"
#include "kcache/types.h"

namespace kc {
namespace {

template <typename W>
inline __m256 load8(const W* p);
template <>
inline __m256 load8<float>(const float* p) {
  return _mm256_loadu_ps(p);
}
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};
template <>
inline __m256 load8<Bf16>(const Bf16* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
template <>
inline __m256 load8<F16>(const F16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float to_f32(float v) { return v; }
inline float to_f32(Bf16 v) { return bf16_to_f32(v.bits); }
inline float to_f32(F16 v) { return f16_to_f32(v.bits); }

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

// A register tile: OR weight rows against TR activation rows, 8 lanes of k at a time.
// 4 x 2 keeps 8 accumulators + 2 activations + 1 weight vector in the 16 ymm registers.
template <typename W, int OR, int TR>
inline void tile(float* out, int ldo, const float* x, const W* w, int k, int o, int t) {
  __m256 acc[OR][TR];
  const W* wr[OR];
  const float* xr[TR];
  for (int i = 0; i < OR; ++i) {
    wr[i] = w + static_cast<int64_t>(o + i) * k;
    for (int j = 0; j < TR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int j = 0; j < TR; ++j) xr[j] = x + static_cast<int64_t>(t + j) * k;
  int kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    __m256 xv[TR];
    for (int j = 0; j < TR; ++j) xv[j] = _mm256_loadu_ps(xr[j] + kk);
    for (int i = 0; i < OR; ++i) {
      __m256 wv = load8(wr[i] + kk);
      for (int j = 0; j < TR; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < OR; ++i) {
    for (int j = 0; j < TR; ++j) {
      float s = hsum(acc[i][j]);
      for (int q = kk; q < k; ++q) s += xr[j][q] * to_f32(wr[i][q]);
      out[static_cast<int64_t>(t + j) * ldo + o + i] = s;
    }
  }
}

template <typename W, int TR>
inline void rows_tile(float* out, int ldo, const float* x, const W* w, int k, int o0, int o1, int t) {
  int o = o0;
  for (; o + 4 <= o1; o += 4) tile<W, 4, TR>(out, ldo, x, w, k, o, t);
  for (; o < o1; ++o) tile<W, 1, TR>(out, ldo, x, w, k, o, t);
}

template <typename W>
void matmul(float* out, int ldo, const float* x, int rows, const W* w, int k, int o0, int o1) {
  int t = 0;
  for (; t + 2 <= rows; t += 2) rows_tile<W, 2>(out, ldo, x, w, k, o0, o1, t);
  if (t < rows) rows_tile<W, 1>(out, ldo, x, w, k, o0, o1, t);
}

void matmul_f32(float* out, int ldo, const float* x, int rows, const float* w, int k, int o0, int o1) {
  matmul<float>(out, ldo, x, rows, w, k, o0, o1);
}
void matmul_bf16(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1) {
  matmul<Bf16>(out, ldo, x, rows, reinterpret_cast<const Bf16*>(w), k, o0, o1);
}
void matmul_f16(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1) {
  matmul<F16>(out, ldo, x, rows, reinterpret_cast<const F16*>(w), k, o0, o1);
}

float dot(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float* y, float a, const float* x, int n) {
  __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

const Kernels* avx2_kernels() {
  static const Kernels k = {"avx2", matmul_f32, matmul_bf16, matmul_f16, dot, axpy};
  return &k;
}

}  // namespace kc
