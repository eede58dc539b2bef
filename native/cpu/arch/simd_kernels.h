// Kernel templates shared by the x86 SIMD variants. Each variant's .cpp defines a vector
// traits struct (width, load/convert, fma, horizontal sum) and includes this header; it is
// compiled with that variant's -m flags only, and everything here has internal linkage, so no
// instruction of one variant can leak into code that runs on a CPU without it.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../kernels.h"
#include "kcache/types.h"

namespace kc {
namespace {

struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};
inline float to_f32(float v) { return v; }
inline float to_f32(Bf16 v) { return bf16_to_f32(v.bits); }
inline float to_f32(F16 v) { return f16_to_f32(v.bits); }

// A register tile: OR weight rows against TR activation rows, V::N lanes of k at a time.
template <class V, typename W, int OR, int TR>
inline void tile(float* out, int ldo, const float* x, const W* w, int k, int o, int t) {
  typename V::vec acc[OR][TR];
  const W* wr[OR];
  const float* xr[TR];
  for (int i = 0; i < OR; ++i) {
    wr[i] = w + static_cast<int64_t>(o + i) * k;
    for (int j = 0; j < TR; ++j) acc[i][j] = V::zero();
  }
  for (int j = 0; j < TR; ++j) xr[j] = x + static_cast<int64_t>(t + j) * k;
  int kk = 0;
  for (; kk + V::N <= k; kk += V::N) {
    typename V::vec xv[TR];
    for (int j = 0; j < TR; ++j) xv[j] = V::load(xr[j] + kk);
    // Weight rows are consumed in order, so the next tile's rows are fetched while this one
    // computes: the hardware prefetchers alone lose pace on rows only a few KB long.
    for (int i = 0; i < OR; ++i) _mm_prefetch(reinterpret_cast<const char*>(wr[i] + OR * static_cast<int64_t>(k) + kk), _MM_HINT_T0);
    for (int i = 0; i < OR; ++i) {
      const typename V::vec wv = V::load(wr[i] + kk);
      for (int j = 0; j < TR; ++j) acc[i][j] = V::fma(wv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < OR; ++i) {
    for (int j = 0; j < TR; ++j) {
      float s = V::hsum(acc[i][j]);
      for (int q = kk; q < k; ++q) s += xr[j][q] * to_f32(wr[i][q]);
      out[static_cast<int64_t>(t + j) * ldo + o + i] = s;
    }
  }
}

template <class V, typename W, int OR, int TR>
inline void rows_tile(float* out, int ldo, const float* x, const W* w, int k, int o0, int o1, int t) {
  int o = o0;
  for (; o + OR <= o1; o += OR) tile<V, W, OR, TR>(out, ldo, x, w, k, o, t);
  for (; o < o1; ++o) tile<V, W, 1, TR>(out, ldo, x, w, k, o, t);
}

// Row tiles: V::WIDE_TR activation rows against 2 weight rows while that many remain (each
// weight vector loaded and widened once feeds WIDE_TR FMAs), then V::TR rows against 4 weight
// rows, then the remainder.
template <class V, typename W>
void matmul_tiles(float* out, int ldo, const float* x, int rows, const W* w, int k, int o0, int o1) {
  constexpr int TR = V::TR;
  int t = 0;
  if constexpr (V::WIDE_TR > 0) {
    for (; t + V::WIDE_TR <= rows; t += V::WIDE_TR) rows_tile<V, W, 2, V::WIDE_TR>(out, ldo, x, w, k, o0, o1, t);
  }
  for (; t + TR <= rows; t += TR) rows_tile<V, W, 4, TR>(out, ldo, x, w, k, o0, o1, t);
  switch (rows - t) {
    case 3: if constexpr (TR > 3) rows_tile<V, W, 4, 3>(out, ldo, x, w, k, o0, o1, t); break;
    case 2: if constexpr (TR > 2) rows_tile<V, W, 4, 2>(out, ldo, x, w, k, o0, o1, t); break;
    case 1: rows_tile<V, W, 4, 1>(out, ldo, x, w, k, o0, o1, t); break;
    default: break;
  }
}

// For long row counts (prefill), half-precision weights are widened once per task into a
// per-thread f32 copy of the task's rows instead of once per row tile; for a few rows (batched
// decode) widening in registers costs less than the extra pass over memory.
constexpr int kWidenOnceRows = 32;

template <class V, typename W>
void matmul(float* out, int ldo, const float* x, int rows, const W* w, int k, int o0, int o1) {
  if constexpr (!std::is_same_v<W, float>) {
    if (rows >= kWidenOnceRows) {
      thread_local std::vector<float> wide;
      const int n = o1 - o0;
      wide.resize(static_cast<size_t>(n) * k);
      const W* src = w + static_cast<int64_t>(o0) * k;
      const int64_t total = static_cast<int64_t>(n) * k;
      int64_t i = 0;
      for (; i + V::N <= total; i += V::N) V::store(wide.data() + i, V::load(src + i));
      for (; i < total; ++i) wide[i] = to_f32(src[i]);
      matmul_tiles<V, float>(out + o0, ldo, x, rows, wide.data(), k, 0, n);
      return;
    }
  }
  matmul_tiles<V, W>(out, ldo, x, rows, w, k, o0, o1);
}

template <class V>
void matmul_f32(float* out, int ldo, const float* x, int rows, const float* w, int k, int o0, int o1) {
  matmul<V, float>(out, ldo, x, rows, w, k, o0, o1);
}
template <class V>
void matmul_bf16(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1) {
  matmul<V, Bf16>(out, ldo, x, rows, reinterpret_cast<const Bf16*>(w), k, o0, o1);
}
template <class V>
void matmul_f16(float* out, int ldo, const float* x, int rows, const uint16_t* w, int k, int o0, int o1) {
  matmul<V, F16>(out, ldo, x, rows, reinterpret_cast<const F16*>(w), k, o0, o1);
}

template <class V>
inline float dot(const float* a, const float* b, int n) {
  typename V::vec acc0 = V::zero(), acc1 = V::zero();
  int i = 0;
  for (; i + 2 * V::N <= n; i += 2 * V::N) {
    acc0 = V::fma(V::load(a + i), V::load(b + i), acc0);
    acc1 = V::fma(V::load(a + i + V::N), V::load(b + i + V::N), acc1);
  }
  for (; i + V::N <= n; i += V::N) acc0 = V::fma(V::load(a + i), V::load(b + i), acc0);
  float s = V::hsum(V::add(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// scores[r] = scale * q · k[r * stride ..], for the n keys of one cache block
template <class V>
void dot_rows(float* scores, const float* q, const float* k, int n, int stride, int hd, float scale) {
  for (int r = 0; r < n; ++r) scores[r] = dot<V>(q, k + static_cast<int64_t>(r) * stride, hd) * scale;
}

// out += sum_r weights[r] * v[r * stride ..], for the n values of one cache block
template <class V>
void axpy_rows(float* out, const float* weights, const float* v, int n, int stride, int hd) {
  int i = 0;
  for (; i + V::N <= hd; i += V::N) {
    typename V::vec acc = V::load(out + i);
    for (int r = 0; r < n; ++r) acc = V::fma(V::set1(weights[r]), V::load(v + static_cast<int64_t>(r) * stride + i), acc);
    V::store(out + i, acc);
  }
  for (; i < hd; ++i) {
    float s = out[i];
    for (int r = 0; r < n; ++r) s += weights[r] * v[static_cast<int64_t>(r) * stride + i];
    out[i] = s;
  }
}

template <class V>
Kernels make_kernels(const char* name) {
  return Kernels{name, matmul_f32<V>, matmul_bf16<V>, matmul_f16<V>, dot_rows<V>, axpy_rows<V>};
}

}  // namespace
}  // namespace kc
