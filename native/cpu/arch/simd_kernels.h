// Kernel templates shared by the x86 SIMD variants. Each variant's .cpp defines a vector
// traits struct (width, load/convert, fma, horizontal sum) and includes this header; it is
// compiled with that variant's -m flags only, and everything here has internal linkage, so no
// instruction of one variant can leak into code that runs on a CPU without it.
#pragma once
#include <immintrin.h>

#include <cmath>
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

// Eight horizontal sums at once: sums[i] = the lanes of a[i] added up (a 256-bit transpose-add;
// one hsum per row cost more than the row's FMAs).
template <class V>
inline __m256 hsum8(const typename V::vec* a) {
  __m256 f[8];
  for (int i = 0; i < 8; ++i) f[i] = V::fold256(a[i]);
  const __m256 t0 = _mm256_hadd_ps(f[0], f[1]);
  const __m256 t1 = _mm256_hadd_ps(f[2], f[3]);
  const __m256 t2 = _mm256_hadd_ps(f[4], f[5]);
  const __m256 t3 = _mm256_hadd_ps(f[6], f[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// scores[r] = scale * q · k[r * stride ..], for the n keys of one cache block; for the usual
// head sizes q stays in C registers across the block, and rows go eight at a time.
template <class V, int C>
inline void dot_rows_regs(float* scores, const float* q, const float* k, int n, int stride, float scale) {
  typename V::vec qv[C];
  for (int c = 0; c < C; ++c) qv[c] = V::load(q + c * V::N);
  int r = 0;
  for (; r + 8 <= n; r += 8) {
    typename V::vec acc[8];
    for (int i = 0; i < 8; ++i) {
      const float* kr = k + static_cast<int64_t>(r + i) * stride;
      acc[i] = V::mul(qv[0], V::load(kr));
      for (int c = 1; c < C; ++c) acc[i] = V::fma(qv[c], V::load(kr + c * V::N), acc[i]);
    }
    _mm256_storeu_ps(scores + r, _mm256_mul_ps(hsum8<V>(acc), _mm256_set1_ps(scale)));
  }
  for (; r < n; ++r) {
    const float* kr = k + static_cast<int64_t>(r) * stride;
    typename V::vec acc = V::mul(qv[0], V::load(kr));
    for (int c = 1; c < C; ++c) acc = V::fma(qv[c], V::load(kr + c * V::N), acc);
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

template <class V, int C>
inline void weighted_sum_rows_regs(float* out, const float* weights, const float* const* rows, int n) {
  constexpr int kAhead = 8;
  typename V::vec acc[C];
  for (int c = 0; c < C; ++c) acc[c] = V::zero();
  for (int r = 0; r < n; ++r) {
    if (r + kAhead < n)
      for (int c = 0; c < C * V::N; c += 16) _mm_prefetch(reinterpret_cast<const char*>(rows[r + kAhead] + c), _MM_HINT_T0);
    const typename V::vec w = V::set1(weights[r]);
    for (int c = 0; c < C; ++c) acc[c] = V::fma(w, V::load(rows[r] + c * V::N), acc[c]);
  }
  for (int c = 0; c < C; ++c) V::store(out + c * V::N, acc[c]);
}

template <class V>
void weighted_sum_rows(float* out, const float* weights, const float* const* rows, int n, int hd) {
  if (hd == V::N) return weighted_sum_rows_regs<V, 1>(out, weights, rows, n);
  if (hd == 2 * V::N) return weighted_sum_rows_regs<V, 2>(out, weights, rows, n);
  if (hd == 4 * V::N) return weighted_sum_rows_regs<V, 4>(out, weights, rows, n);
  if (hd == 8 * V::N) return weighted_sum_rows_regs<V, 8>(out, weights, rows, n);
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r) axpy_rows<V>(out, weights + r, rows[r], 1, hd, hd);
}

template <class V>
int indices_at_least(int* idx, const float* x, int n, float t) {
  int count = 0;
  int i = 0;
  if constexpr (V::kCompress) count = V::compress_at_least(idx, x, n, t, i);
  for (; i < n; ++i) {
    idx[count] = i;
    count += x[i] >= t;
  }
  return count;
}

template <class V>
float max(const float* x, int n) {
  typename V::vec m = V::set1(-INFINITY);
  int i = 0;
  for (; i + V::N <= n; i += V::N) m = V::max(m, V::load(x + i));
  float r = V::hmax(m);
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  return r;
}

// e^x for x <= 0 (scores minus their maximum), Cephes' expf: x = k ln2 + r with |r| <= ln2 / 2,
// e^r by a degree-6 polynomial, times 2^k. Below -87 the result is clamped to about 1e-38
// instead of 0, which no softmax sum can tell apart.
template <class V>
inline typename V::vec exp_nonpositive(typename V::vec x) {
  using vec = typename V::vec;
  x = V::max(V::set1(-87.0f), x);  // this operand order lets a NaN through
  const vec k = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  vec r = V::fma(k, V::set1(-0.693359375f), x);
  r = V::fma(k, V::set1(2.12194440e-4f), r);
  vec p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  p = V::fma(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::ldexp(p, k);
}

template <class V>
float exp_sum(float* x, int n, float m) {
  const typename V::vec mv = V::set1(m);
  typename V::vec acc = V::zero();
  int i = 0;
  for (; i + V::N <= n; i += V::N) {
    const typename V::vec e = exp_nonpositive<V>(V::sub(V::load(x + i), mv));
    V::store(x + i, e);
    acc = V::add(acc, e);
  }
  float sum = V::hsum(acc);
  if (i < n) {
    alignas(64) float tail[V::N];
    for (int j = 0; j < V::N; ++j) tail[j] = i + j < n ? x[i + j] - m : -INFINITY;
    V::store(tail, exp_nonpositive<V>(V::load(tail)));
    for (int j = 0; i + j < n; ++j) {
      x[i + j] = tail[j];
      sum += tail[j];
    }
  }
  return sum;
}

template <class V>
Kernels make_kernels(const char* name) {
  return Kernels{name,         2 * V::N,     matmul_f32<V>, matmul_bf16<V>, matmul_f16<V>,
                 dot_rows<V>,  axpy_rows<V>, weighted_sum_rows<V>, indices_at_least<V>, max<V>, exp_sum<V>};
}

}  // namespace
}  // namespace kc
