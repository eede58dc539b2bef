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

// TR activation rows against one panel (2 vectors of output rows): each k step loads two weight
// vectors (widened to f32 in registers) and broadcasts one activation per row, 2*TR FMAs. The
// panel is contiguous, so weights stream sequentially; rows ahead are prefetched into L1 and,
// four times farther, into L2 (the distances were tuned on smol135 decode: the hardware
// prefetchers alone leave a third of the bandwidth unused while the FMAs run).
template <class V, typename W, int TR>
inline void panel_tile(float* out, int ldo, const float* x, int k, const W* panel, int t, int o, int n) {
  constexpr int PW = 2 * V::N;
  constexpr int kPrefetchSteps = 16;
  typename V::vec a0[TR], a1[TR];
  const float* xr[TR];
  for (int j = 0; j < TR; ++j) {
    a0[j] = V::zero();
    a1[j] = V::zero();
    xr[j] = x + static_cast<int64_t>(t + j) * k;
  }
  for (int kk = 0; kk < k; ++kk) {
    const W* p = panel + static_cast<int64_t>(kk) * PW;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchSteps * PW), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + 4 * kPrefetchSteps * PW), _MM_HINT_T1);
    const typename V::vec w0 = V::load(p);
    const typename V::vec w1 = V::load(p + V::N);
    for (int j = 0; j < TR; ++j) {
      const typename V::vec xb = V::set1(xr[j][kk]);
      a0[j] = V::fma(w0, xb, a0[j]);
      a1[j] = V::fma(w1, xb, a1[j]);
    }
  }
  for (int j = 0; j < TR; ++j) {
    float* dst = out + static_cast<int64_t>(t + j) * ldo + o;
    if (n == PW) {
      V::store(dst, a0[j]);
      V::store(dst + V::N, a1[j]);
    } else {
      alignas(64) float tmp[PW];
      V::store(tmp, a0[j]);
      V::store(tmp + V::N, a1[j]);
      for (int i = 0; i < n; ++i) dst[i] = tmp[i];
    }
  }
}

// With many activation rows (prefill), a half-precision panel is widened to f32 once into a
// per-thread buffer instead of in registers at every row tile. The sums are the same either way
// (exact conversion, same FMA order), so results stay independent of the batch.
constexpr int kWidenPanelRows = 32;

template <class V, typename W>
void matmul(float* out, int ldo, const float* x, int rows, const W* panels, int k, int o0, int o1) {
  constexpr int PW = 2 * V::N;
  constexpr int TR = V::TR;
  if constexpr (!std::is_same_v<W, float>) {
    if (rows >= kWidenPanelRows) {
      thread_local std::vector<float> wide;
      wide.resize(static_cast<size_t>(k) * PW);
      for (int o = o0; o < o1; o += PW) {
        const W* panel = panels + static_cast<int64_t>(o / PW) * k * PW;
        for (int64_t i = 0; i < static_cast<int64_t>(k) * PW; i += V::N) V::store(wide.data() + i, V::load(panel + i));
        matmul<V, float>(out + o, ldo, x, rows, wide.data(), k, 0, o1 - o < PW ? o1 - o : PW);
      }
      return;
    }
  }
  for (int o = o0; o < o1; o += PW) {
    const W* panel = panels + static_cast<int64_t>(o / PW) * k * PW;
    const int n = o1 - o < PW ? o1 - o : PW;
    int t = 0;
    for (; t + TR <= rows; t += TR) panel_tile<V, W, TR>(out, ldo, x, k, panel, t, o, n);
    switch (rows - t) {
      case 7: if constexpr (TR > 7) panel_tile<V, W, 7>(out, ldo, x, k, panel, t, o, n); break;
      case 6: if constexpr (TR > 6) panel_tile<V, W, 6>(out, ldo, x, k, panel, t, o, n); break;
      case 5: if constexpr (TR > 5) panel_tile<V, W, 5>(out, ldo, x, k, panel, t, o, n); break;
      case 4: if constexpr (TR > 4) panel_tile<V, W, 4>(out, ldo, x, k, panel, t, o, n); break;
      case 3: if constexpr (TR > 3) panel_tile<V, W, 3>(out, ldo, x, k, panel, t, o, n); break;
      case 2: if constexpr (TR > 2) panel_tile<V, W, 2>(out, ldo, x, k, panel, t, o, n); break;
      case 1: panel_tile<V, W, 1>(out, ldo, x, k, panel, t, o, n); break;
      default: break;
    }
  }
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

// scores[r] = scale * q · k[r * stride ..], for the n keys of one cache block; for the usual
// head sizes q stays in C registers across the block.
template <class V, int C>
inline void dot_rows_regs(float* scores, const float* q, const float* k, int n, int stride, float scale) {
  typename V::vec qv[C];
  for (int c = 0; c < C; ++c) qv[c] = V::load(q + c * V::N);
  for (int r = 0; r < n; ++r) {
    const float* kr = k + static_cast<int64_t>(r) * stride;
    typename V::vec acc = V::zero();
    for (int c = 0; c < C; ++c) acc = V::fma(qv[c], V::load(kr + c * V::N), acc);
    scores[r] = V::hsum(acc) * scale;
  }
}

template <class V>
void dot_rows(float* scores, const float* q, const float* k, int n, int stride, int hd, float scale) {
  if (hd == V::N) return dot_rows_regs<V, 1>(scores, q, k, n, stride, scale);
  if (hd == 2 * V::N) return dot_rows_regs<V, 2>(scores, q, k, n, stride, scale);
  if (hd == 4 * V::N) return dot_rows_regs<V, 4>(scores, q, k, n, stride, scale);
  if (hd == 8 * V::N) return dot_rows_regs<V, 8>(scores, q, k, n, stride, scale);
  for (int r = 0; r < n; ++r) {
    const float* kr = k + static_cast<int64_t>(r) * stride;
    typename V::vec acc = V::zero();
    int i = 0;
    for (; i + V::N <= hd; i += V::N) acc = V::fma(V::load(q + i), V::load(kr + i), acc);
    float s = V::hsum(acc);
    for (; i < hd; ++i) s += q[i] * kr[i];
    scores[r] = s * scale;
  }
}

// out += sum_r weights[r] * v[r * stride ..], for the n values of one cache block. The head is
// held in C registers and each row adds into all of them: independent FMA chains, not one
// chain per register through all the rows.
template <class V, int C>
inline void axpy_rows_regs(float* out, const float* weights, const float* v, int n, int stride) {
  typename V::vec acc[C];
  for (int c = 0; c < C; ++c) acc[c] = V::load(out + c * V::N);
  for (int r = 0; r < n; ++r) {
    const typename V::vec w = V::set1(weights[r]);
    const float* vr = v + static_cast<int64_t>(r) * stride;
    for (int c = 0; c < C; ++c) acc[c] = V::fma(w, V::load(vr + c * V::N), acc[c]);
  }
  for (int c = 0; c < C; ++c) V::store(out + c * V::N, acc[c]);
}

template <class V>
void axpy_rows(float* out, const float* weights, const float* v, int n, int stride, int hd) {
  if (hd == V::N) return axpy_rows_regs<V, 1>(out, weights, v, n, stride);
  if (hd == 2 * V::N) return axpy_rows_regs<V, 2>(out, weights, v, n, stride);
  if (hd == 4 * V::N) return axpy_rows_regs<V, 4>(out, weights, v, n, stride);
  if (hd == 8 * V::N) return axpy_rows_regs<V, 8>(out, weights, v, n, stride);
  for (int r = 0; r < n; ++r) {
    const float* vr = v + static_cast<int64_t>(r) * stride;
    int i = 0;
    for (; i + V::N <= hd; i += V::N) V::store(out + i, V::fma(V::set1(weights[r]), V::load(vr + i), V::load(out + i)));
    for (; i < hd; ++i) out[i] += weights[r] * vr[i];
  }
}

template <class V>
Kernels make_kernels(const char* name) {
  return Kernels{name, 2 * V::N, matmul_f32<V>, matmul_bf16<V>, matmul_f16<V>, dot_rows<V>, axpy_rows<V>};
}

}  // namespace
}  // namespace kc
