// AVX-512F. Compiled with -mavx512f -mfma -mf16c; used only after active_kernels() has
// checked the CPU has it.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../kth_largest.h"
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
  static vec div(vec a, vec b) { return _mm512_div_ps(a, b); }
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
  static vec cvt_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  // (-Wno-uninitialized on this file: GCC 12 warns inside its own _mm512_reduce_add_ps)
  static __m256 fold256(vec v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))); }
  // idx gets the indices of x[0, n) at or above t, sixteen compared and compress-stored at once;
  // `i` is left where the scalar tail starts.
  static constexpr bool kCompress = true;
  static int compress_at_least(int* idx, const float* x, int n, float t, int& i) {
    const __m512 tv = _mm512_set1_ps(t);
    __m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    int count = 0;
    for (i = 0; i + 16 <= n; i += 16) {
      const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), tv, _CMP_GE_OQ);
      _mm512_mask_compressstoreu_epi32(idx + count, m, pos);
      count += __builtin_popcount(m);
      pos = _mm512_add_epi32(pos, step);
    }
    return count;
  }
  static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
  static float hmax(vec v) { return _mm512_reduce_max_ps(v); }
};

// kernels.h's quantize_activations, 32 values at a time, with the same operations per value: the
// block's max |x| (exact in any order), d = amax / 127, id = 1 / d, p = x * id, then p truncated
// and moved one away from zero where its fraction is at least one half: the scalar loop's bytes,
// scales and sums exactly (test/helpers/quant-variant.ts checks them through a one-hot matmul).
void quantize_rows(const float* x, int rows, int k, int8_t* xq, float* xd, int32_t* xs) {
  const __m512 half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t b = 0; b < static_cast<int64_t>(rows) * (k / 32); ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m512i q[2];
    const __m512 v[2] = {v0, v1};
    for (int h = 0; h < 2; ++h) {
      const __m512 p = _mm512_mul_ps(v[h], _mm512_set1_ps(id));
      __m512i t = _mm512_cvttps_epi32(p);
      const __m512 frac = _mm512_sub_ps(p, _mm512_cvtepi32_ps(t));
      t = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ), t, one);
      q[h] = _mm512_mask_sub_epi32(t, _mm512_cmp_ps_mask(frac, mhalf, _CMP_LE_OQ), t, one);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(xq + 32 * b + 16 * h), _mm512_cvtepi32_epi8(q[h]));
    }
    xd[b] = d;
    xs[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
  }
}

}  // namespace

// kth_largest.h's bit-by-bit selection on the same order-preserving keys, sixteen keys a step: a
// count by unsigned compares, and the undecided keys kept by compress-stores. The scalar loop kept
// a key per iteration through a store whose address depended on the last: in `perf`, that loop was
// a third of KCache's top-N time per head at 8,000 positions.
float kth_largest_avx512(const float* x, int n, int k, std::vector<uint32_t>& keys) {
  keys.resize(n);
  uint32_t* key = keys.data();
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i ones = _mm512_set1_epi32(-1);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(x + i);
    const __mmask16 neg = _mm512_test_epi32_mask(u, sign);
    // negative: ~u; otherwise u | sign (ascending with the float's value)
    _mm512_storeu_si512(key + i, _mm512_mask_xor_epi32(_mm512_or_si512(u, sign), neg, u, ones));
  }
  for (; i < n; ++i) key[i] = cpu::order_key(x + i);
  int m = n;
  uint32_t t = 0;
  for (uint32_t bit = 0x80000000u; bit != 0 && m > k; bit >>= 1) {
    const uint32_t trial = t | bit;
    const __m512i tv = _mm512_set1_epi32(static_cast<int>(trial));
    int count = 0;
    int j = 0;
    for (; j + 16 <= m; j += 16) count += __builtin_popcount(_mm512_cmpge_epu32_mask(_mm512_loadu_si512(key + j), tv));
    for (; j < m; ++j) count += key[j] >= trial;
    const bool above = count >= k;
    if (above) t = trial;
    else k -= count;
    // in place: a block's keys are loaded before any store reaches them (kept <= j)
    int kept = 0;
    for (j = 0; j + 16 <= m; j += 16) {
      const __m512i v = _mm512_loadu_si512(key + j);
      const __mmask16 ge = _mm512_cmpge_epu32_mask(v, tv);
      const __mmask16 keep = above ? ge : static_cast<__mmask16>(~ge);
      _mm512_mask_compressstoreu_epi32(key + kept, keep, v);
      kept += __builtin_popcount(keep);
    }
    m = cpu::keep_keys(key, j, m, kept, trial, above);
  }
  return cpu::kth_value(key, m, k, t);
}

const Kernels* avx512_kernels() {
  static const Kernels k = [] {
    Kernels v = make_kernels<Avx512>("avx512");
    v.quantize_q8 = quantize_rows;
    v.kth_largest = kth_largest_avx512;
    return v;
  }();
  return &k;
}

}  // namespace kc
