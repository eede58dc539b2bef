// Kernel templates shared by the x86 SIMD variants. Each variant's .cpp defines a vector
// traits struct (width, load/convert, fma, horizontal sum) and includes this header; it is
// compiled with that variant's -m flags only, and everything here has internal linkage, so no
// instruction of one variant can leak into code that runs on a CPU without it.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../kernels.h"
#include "kcache/quant.h"
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

// TT activation rows against TO dequantized weight rows: each output one chain of vector FMAs
// over k, then a horizontal sum (matmul_rows' contract in kernels.h).
template <class V, int TT, int TO>
inline void rows_tile(float* out, int ldo, const float* x, int k, const float* w, int t0, int o0) {
  typename V::vec acc[TT][TO];
  for (int t = 0; t < TT; ++t)
    for (int o = 0; o < TO; ++o) acc[t][o] = V::zero();
  const float* xr = x + static_cast<int64_t>(t0) * k;
  const float* wr = w + static_cast<int64_t>(o0) * k;
  for (int kk = 0; kk < k; kk += V::N) {
    typename V::vec xv[TT];
    for (int t = 0; t < TT; ++t) xv[t] = V::load(xr + static_cast<int64_t>(t) * k + kk);
    for (int o = 0; o < TO; ++o) {
      const typename V::vec wv = V::load(wr + static_cast<int64_t>(o) * k + kk);
      for (int t = 0; t < TT; ++t) acc[t][o] = V::fma(wv, xv[t], acc[t][o]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int o = 0; o < TO; ++o) out[static_cast<int64_t>(t0 + t) * ldo + o0 + o] = V::hsum(acc[t][o]);
}

template <class V>
void matmul_rows(float* out, int ldo, const float* x, int rows, const float* w, int k, int n_out) {
  int t = 0;
  for (; t + 4 <= rows; t += 4) {
    int o = 0;
    for (; o + 4 <= n_out; o += 4) rows_tile<V, 4, 4>(out, ldo, x, k, w, t, o);
    for (; o < n_out; ++o) rows_tile<V, 4, 1>(out, ldo, x, k, w, t, o);
  }
  for (; t < rows; ++t) {
    int o = 0;
    for (; o + 8 <= n_out; o += 8) rows_tile<V, 1, 8>(out, ldo, x, k, w, t, o);
    for (; o < n_out; ++o) rows_tile<V, 1, 1>(out, ldo, x, k, w, t, o);
  }
}

// Dequantization: the bits are unpacked to int8 with SSE2 byte operations (common to both
// variants), then widened, converted and scaled a vector at a time: out = d * q - m, the
// reference's arithmetic.
template <class V>
inline void scale_i8(float* out, const int8_t* q, int n, float d, float m) {
  const typename V::vec dv = V::set1(d), mv = V::set1(m);
  for (int i = 0; i < n; i += V::N) V::store(out + i, V::sub(V::mul(dv, V::cvt_i8(q + i)), mv));
}

inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void store16(int8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
// (v >> s) & mask in every byte (a 16-bit shift, masked so no bit crosses between bytes)
inline __m128i bits(__m128i v, int s, int mask) { return _mm_and_si128(_mm_srli_epi16(v, s), _mm_set1_epi8(static_cast<char>(mask))); }
// (F16C, which every x86 variant has: the library f16_to_f32 is an out-of-line call a block)
inline float half_at(const uint8_t* p) { return _cvtsh_ss(static_cast<unsigned short>(p[0] | (p[1] << 8))); }

template <class V>
void dequant_row(DType t, const void* src, float* y, int k) {
  const auto* b = static_cast<const uint8_t*>(src);
  alignas(16) int8_t q[128];
  switch (t) {
    case DType::F16:
    case DType::BF16: {
      int i = 0;
      if (t == DType::F16)
        for (; i + V::N <= k; i += V::N) V::store(y + i, V::load(reinterpret_cast<const F16*>(src) + i));
      else
        for (; i + V::N <= k; i += V::N) V::store(y + i, V::load(reinterpret_cast<const Bf16*>(src) + i));
      if (i < k) dequantize_row(t, static_cast<const uint16_t*>(src) + i, y + i, k - i);
      return;
    }
    case DType::Q8_0:
      for (int i = 0; i < k; i += 32, b += 34, y += 32) scale_i8<V>(y, reinterpret_cast<const int8_t*>(b + 2), 32, half_at(b), 0.0f);
      return;
    case DType::Q4_0:
      for (int i = 0; i < k; i += 32, b += 18, y += 32) {
        const __m128i v = load16(b + 2), eight = _mm_set1_epi8(8);
        store16(q, _mm_sub_epi8(bits(v, 0, 0xF), eight));
        store16(q + 16, _mm_sub_epi8(bits(v, 4, 0xF), eight));
        scale_i8<V>(y, q, 32, half_at(b), 0.0f);
      }
      return;
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const int bb = five ? 176 : 144;
      for (int i = 0; i < k; i += 256, b += bb) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t* qs = b + (five ? 48 : 16);
        const uint8_t* qh = b + 16;
        for (int j = 0; j < 4; ++j, qs += 32, y += 64) {
          for (int h = 0; h < 2; ++h) {
            const __m128i v = load16(qs + 16 * h);
            __m128i lo = bits(v, 0, 0xF), hi = bits(v, 4, 0xF);
            if (five) {
              const __m128i hv = load16(qh + 16 * h);
              lo = _mm_or_si128(lo, _mm_slli_epi16(bits(hv, 2 * j, 1), 4));
              hi = _mm_or_si128(hi, _mm_slli_epi16(bits(hv, 2 * j + 1, 1), 4));
            }
            store16(q + 16 * h, lo);
            store16(q + 32 + 16 * h, hi);
          }
          uint8_t sc, m;
          k_scale_min(2 * j, b + 4, &sc, &m);
          scale_i8<V>(y, q, 32, d * sc, dmin * m);
          k_scale_min(2 * j + 1, b + 4, &sc, &m);
          scale_i8<V>(y + 32, q + 32, 32, d * sc, dmin * m);
        }
      }
      return;
    }
    case DType::Q6_K:
      for (int i = 0; i < k; i += 256, b += 210) {
        const float d = half_at(b + 208);
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
        for (int n = 0; n < 2; ++n, ql += 64, qh += 32, sc += 8, y += 128) {
          const __m128i off = _mm_set1_epi8(32);
          for (int h = 0; h < 2; ++h) {
            const __m128i l0 = load16(ql + 16 * h), l1 = load16(ql + 32 + 16 * h), hv = load16(qh + 16 * h);
            store16(q + 16 * h, _mm_sub_epi8(_mm_or_si128(bits(l0, 0, 0xF), _mm_slli_epi16(bits(hv, 0, 3), 4)), off));
            store16(q + 32 + 16 * h, _mm_sub_epi8(_mm_or_si128(bits(l1, 0, 0xF), _mm_slli_epi16(bits(hv, 2, 3), 4)), off));
            store16(q + 64 + 16 * h, _mm_sub_epi8(_mm_or_si128(bits(l0, 4, 0xF), _mm_slli_epi16(bits(hv, 4, 3), 4)), off));
            store16(q + 96 + 16 * h, _mm_sub_epi8(_mm_or_si128(bits(l1, 4, 0xF), _mm_slli_epi16(bits(hv, 6, 3), 4)), off));
          }
          // value e of the 128 has the scale of its group of 16: sc[e / 16]
          for (int g = 0; g < 8; ++g) scale_i8<V>(y + 16 * g, q + 16 * g, 16, d * sc[g], 0.0f);
        }
      }
      return;
    default:
      dequantize_row(t, src, y, k);
      return;
  }
}

// ---- The integer path (kernels.h's matmul_q8): AVX2 byte instructions, which both x86
// variants are compiled with. ----

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline float f16c(const uint8_t* p) { return _cvtsh_ss(static_cast<unsigned short>(p[0] | (p[1] << 8))); }
inline __m256i bytes8(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }
// (v >> s) & mask in every byte
inline __m256i bits32(__m256i v, int s, int mask) { return _mm256_and_si256(_mm256_srli_epi16(v, s), bytes8(mask)); }
// 16 bytes of nibbles: the low nibbles in bytes 0..15, the high ones in 16..31
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
// 0x10 in byte j where bit j of `bits` is set (Q5_0/Q5_1's fifth bits)
inline __m256i fifth_bits(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i sel = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                                           3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sel, bit), bit), bytes8(0x10));
}
// 32 signed weights · 32 activations: 8 int32 partial sums (each of 4 neighbours) as floats
inline __m256 dot_signed(__m256i w, __m256i x) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One block of 32 weights as the integer path uses it: value = scale * q + min, the scale s0 for
// values 0..15 and s1 for 16..31 (they differ only in Q6_K, whose scales cover 16 values).
struct QBlock {
  __m256i q;
  float s0, s1, min;
};

// What a type's stored integers are offset by: value = scale * (u - offset) [+ min], u in 0..255
// (Q8_0's signed bytes read as u = byte + 128).
constexpr int offset_of(DType t) {
  switch (t) {
    case DType::Q8_0:
      return 128;
    case DType::Q4_0:
      return 8;
    case DType::Q5_0:
      return 16;
    case DType::Q6_K:
      return 32;
    default:
      return 0;  // Q4_1, Q5_1, Q4_K, Q5_K: a minimum instead
  }
}
template <DType T>
constexpr int q_offset = offset_of(T);

// Block b of a row of type T with its integers unsigned (u above), from ggml-common.h's layouts
// (see quant.cpp's reference).
template <DType T>
inline QBlock u_block(const uint8_t* row, int b) {
  if constexpr (T == DType::Q8_0) {
    const uint8_t* w = row + 34 * b;
    const float d = f16c(w);
    return {_mm256_xor_si256(load32(w + 2), bytes8(0x80)), d, d, 0.0f};
  } else if constexpr (T == DType::Q4_0) {
    const uint8_t* w = row + 18 * b;
    const float d = f16c(w);
    return {nibbles32(w + 2), d, d, 0.0f};
  } else if constexpr (T == DType::Q4_1) {
    const uint8_t* w = row + 20 * b;
    const float d = f16c(w);
    return {nibbles32(w + 4), d, d, f16c(w + 2)};
  } else if constexpr (T == DType::Q5_0) {
    const uint8_t* w = row + 22 * b;
    const float d = f16c(w);
    return {_mm256_or_si256(nibbles32(w + 6), fifth_bits(w + 2)), d, d, 0.0f};
  } else if constexpr (T == DType::Q5_1) {
    const uint8_t* w = row + 24 * b;
    const float d = f16c(w);
    return {_mm256_or_si256(nibbles32(w + 8), fifth_bits(w + 4)), d, d, f16c(w + 2)};
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    // sub-block i of 8: nibbles of qs[32 (i/2) ..] (low for even i, high for odd), fifth bit i of qh
    constexpr bool five = T == DType::Q5_K;
    const uint8_t* w = row + (five ? 176 : 144) * (b / 8);
    const int i = b % 8;
    __m256i q = bits32(load32(w + (five ? 48 : 16) + 32 * (i / 2)), 4 * (i % 2), 0xF);
    if constexpr (five) q = _mm256_or_si256(q, _mm256_slli_epi16(bits32(load32(w + 16), i, 1), 4));
    uint8_t sc, m;
    k_scale_min(i, w + 4, &sc, &m);
    const float d = f16c(w) * sc;
    return {q, d, d, -(f16c(w + 2) * m)};
  } else {  // Q6_K: 32 values of half n: 4 low bits from ql (byte l or l+32, low or high nibble), 2 from qh[l]
    const uint8_t* w = row + 210 * (b / 8);
    const int n = (b % 8) / 4, i = b % 4;
    const __m256i lo = bits32(load32(w + 64 * n + 32 * (i % 2)), 4 * (i / 2), 0xF);
    const __m256i hi = _mm256_slli_epi16(bits32(load32(w + 128 + 32 * n), 2 * i, 3), 4);
    const auto* sc = reinterpret_cast<const int8_t*>(w + 192 + 8 * n);
    const float d = f16c(w + 208);
    return {_mm256_or_si256(lo, hi), d * sc[2 * i], d * sc[2 * i + 1], 0.0f};
  }
}

// The same block with signed integers (u - offset).
template <DType T>
inline QBlock q_block(const uint8_t* row, int b) {
  QBlock k = u_block<T>(row, b);
  if constexpr (T == DType::Q8_0) k.q = _mm256_xor_si256(k.q, bytes8(0x80));
  else if constexpr (q_offset<T> != 0) k.q = _mm256_sub_epi8(k.q, bytes8(q_offset<T>));
  return k;
}

// Weight bytes are prefetched this far ahead (rows are contiguous, so past a row's end is the next
// row): one core's demand misses alone leave most of the memory bandwidth unused.
constexpr int kQuantPrefetch = 1024;

template <DType T>
constexpr bool has_min = T == DType::Q4_1 || T == DType::Q5_1 || T == DType::Q4_K || T == DType::Q5_K;

// Adds block b's terms for one activation row: the scaled integer dot into acc, the minimum term
// into mins (explicit fma: no compiler contraction may make two callers differ).
template <DType T>
inline void add_block(const QBlock& k, const __m256i x, float xd, int32_t xs, __m256& acc, float& mins) {
  __m256 scale;
  if constexpr (T == DType::Q6_K)
    scale = _mm256_mul_ps(_mm256_setr_ps(k.s0, k.s0, k.s0, k.s0, k.s1, k.s1, k.s1, k.s1), _mm256_set1_ps(xd));
  else
    scale = _mm256_set1_ps(k.s0 * xd);
  acc = _mm256_fmadd_ps(scale, dot_signed(k.q, x), acc);
  if constexpr (has_min<T>) mins = std::fma(k.min * xd, static_cast<float>(xs), mins);
}

// One weight row (nb blocks) · one activation row, each block unpacked in registers.
template <DType T>
float dot_row(const uint8_t* w, const int8_t* xq, const float* xd, const int32_t* xs, int nb) {
  const size_t block_bytes = dtype_block_bytes(T) * 32 / dtype_block(T);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int b = 0; b < nb; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(w + b * block_bytes) + kQuantPrefetch, _MM_HINT_T0);
    add_block<T>(q_block<T>(w, b), load32(xq + 32 * b), xd[b], xs[b], acc, mins);
  }
  return hsum256(acc) + mins;
}

// A weight row unpacked once for many activation rows (the blocks q_block gives, stored).
struct Unpacked {
  std::vector<QBlock> blocks;
};

template <DType T>
void unpack_row(const uint8_t* w, int nb, Unpacked& u) {
  u.blocks.resize(static_cast<size_t>(nb));
  for (int b = 0; b < nb; ++b) u.blocks[b] = q_block<T>(w, b);
}

// TT activation rows against one unpacked weight row: each row's terms as dot_row adds them.
template <DType T, int TT>
inline void dot_unpacked(float* out, int64_t ldo, const Unpacked& u, const int8_t* xq, const float* xd, const int32_t* xs, int k,
                         int nb) {
  __m256 acc[TT];
  float mins[TT];
  for (int t = 0; t < TT; ++t) acc[t] = _mm256_setzero_ps(), mins[t] = 0.0f;
  for (int b = 0; b < nb; ++b) {
    const QBlock& blk = u.blocks[b];
    for (int t = 0; t < TT; ++t)
      add_block<T>(blk, load32(xq + static_cast<int64_t>(t) * k + 32 * b), xd[static_cast<int64_t>(t) * nb + b],
                xs[static_cast<int64_t>(t) * nb + b], acc[t], mins[t]);
  }
  for (int t = 0; t < TT; ++t) out[t * ldo] = hsum256(acc[t]) + mins[t];
}

// Few rows (decode): each block is unpacked in registers as it is used. Many rows: each weight
// row is unpacked once and reused by every row. Both add the same terms in the same order.
template <DType T>
void matmul_q8_typed(float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows, const uint8_t* w, int k,
                     int o0, int o1) {
  const size_t row_bytes = dtype_row_bytes(T, k);
  const int nb = k / 32;
  if (rows < 4) {
    for (int o = o0; o < o1; ++o)
      for (int r = 0; r < rows; ++r)
        out[static_cast<int64_t>(r) * ldo + o] = dot_row<T>(w + o * row_bytes, xq + static_cast<int64_t>(r) * k,
                                                            xd + static_cast<int64_t>(r) * nb, xs + static_cast<int64_t>(r) * nb, nb);
    return;
  }
  thread_local Unpacked u;
  for (int o = o0; o < o1; ++o) {
    unpack_row<T>(w + o * row_bytes, nb, u);
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      dot_unpacked<T, 4>(out + static_cast<int64_t>(r) * ldo + o, ldo, u, xq + static_cast<int64_t>(r) * k, xd + static_cast<int64_t>(r) * nb,
                      xs + static_cast<int64_t>(r) * nb, k, nb);
    for (; r < rows; ++r)
      dot_unpacked<T, 1>(out + static_cast<int64_t>(r) * ldo + o, ldo, u, xq + static_cast<int64_t>(r) * k, xd + static_cast<int64_t>(r) * nb,
                      xs + static_cast<int64_t>(r) * nb, k, nb);
  }
}

// Calls f(std::integral_constant<DType, T>{}) for t among the block-quantized types (the ones the
// integer paths take); nothing for any other (a matmul never asks for one).
template <typename F>
void with_quant_type(DType t, F&& f) {
  switch (t) {
#define KC_QUANT_CASE(T)                                 \
  case DType::T:                                         \
    f(std::integral_constant<DType, DType::T>{});        \
    return;
    KC_QUANT_CASE(Q8_0)
    KC_QUANT_CASE(Q4_0)
    KC_QUANT_CASE(Q4_1)
    KC_QUANT_CASE(Q5_0)
    KC_QUANT_CASE(Q5_1)
    KC_QUANT_CASE(Q4_K)
    KC_QUANT_CASE(Q5_K)
    KC_QUANT_CASE(Q6_K)
#undef KC_QUANT_CASE
    default:
      return;
  }
}

template <class V>
void matmul_q8(DType t, float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows, const uint8_t* w,
               int k, int o0, int o1, const uint8_t* /* prep: none */) {
  with_quant_type(t, [&](auto type) { matmul_q8_typed<decltype(type)::value>(out, ldo, xq, xd, xs, rows, w, k, o0, o1); });
}

// Eight horizontal sums at once: sums[i] = the lanes of a[i] added up (a 256-bit transpose-add;
// one hsum per row cost more than the row's FMAs).
// Its steps, for callers that reduce rows as they go (fewer live registers): rows 2j and 2j + 1
// (pair_sum), then pairs 0-1 and 2-3 (quad_sum), then the two quads (oct_sum).
template <class V>
inline __m256 pair_sum(typename V::vec a, typename V::vec b) {
  return _mm256_hadd_ps(V::fold256(a), V::fold256(b));
}
inline __m256 quad_sum(__m256 t0, __m256 t1) { return _mm256_hadd_ps(t0, t1); }
inline __m256 oct_sum(__m256 u0, __m256 u1) {
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
template <class V>
inline __m256 hsum8(const typename V::vec* a) {
  return oct_sum(quad_sum(pair_sum<V>(a[0], a[1]), pair_sum<V>(a[2], a[3])), quad_sum(pair_sum<V>(a[4], a[5]), pair_sum<V>(a[6], a[7])));
}

inline float scalar(float v) { return v; }
inline float scalar(F16 v) { return f16_to_f32(v.bits); }
inline float scalar(Bf16 v) { return bf16_to_f32(v.bits); }

// Row r of `ahead` (the tile the caller reads next: rows at the same stride, `values` read a row),
// prefetched as row r of this tile is read; nothing when ahead is null. See kernels.h.
// Every line of the row's bytes [p, p + bytes): one prefetch each 64 bytes from p, and one of the
// last byte (p need not start a line). The trip count is a constant where `values` is (the head
// sizes the kernels hold in registers), so it unrolls: a loop over aligned line addresses cost
// about ten instructions a row and head, a third of an f16 row's arithmetic.
template <typename W>
inline void prefetch_row(const W* ahead, int r, int stride, int values) {
  if (!ahead) return;
  const char* p = reinterpret_cast<const char*>(ahead + static_cast<int64_t>(r) * stride);
  const int bytes = values * static_cast<int>(sizeof(W));
  for (int i = 0; i < bytes; i += 64) __builtin_prefetch(p + i);
  __builtin_prefetch(p + bytes - 1);
}

#ifdef __AVX512F__
// AVX-512's sums of 16 rows' dot products, each a vector of 16 partial sums: rows are folded two
// at a time as they come (pair), then four (quad), eight (oct) and sixteen, 46 instructions for
// the 16 sums against ~80 for two rounds of hsum8 on 256-bit halves, a quarter of an f16 key
// row's work. Every row's sum is the same chain, ((x[j] + x[8+j]) + (x[4+j] + x[12+j])) for j < 4,
// then (j0 + j2) + (j1 + j3), whichever of the 16 it is, and one() computes it for a row alone.
struct Tree16 {
  // rows a, b -> a's 8 partials (lanes 0-7), b's (8-15)
  static __m512 pair(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  // two pairs -> 4 partials of each of their 4 rows, a row a 128-bit lane
  static __m512 quad(__m512 p0, __m512 p1) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(p0, p1, 0x88), _mm512_shuffle_f32x4(p0, p1, 0xDD));
  }
  // two quads -> lane k: 2 partials of row k of each
  static __m512 oct(__m512 q0, __m512 q1) { return _mm512_add_ps(_mm512_shuffle_ps(q0, q1, 0x44), _mm512_shuffle_ps(q0, q1, 0xEE)); }
  // two octs -> the 16 sums, in row order
  static __m512 sixteen(__m512 o0, __m512 o1) {
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(o0, o1, 0x88), _mm512_shuffle_ps(o0, o1, 0xDD));  // lane k: rows k, 4+k, 8+k, 12+k
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), s);
  }
  static float one(__m512 x) {
    const __m256 u = _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    const __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    const __m128 w = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(w, _mm_movehdup_ps(w)));
  }
};
template <class V>
constexpr bool kTree16 = V::N == 16;
#else
template <class V>
constexpr bool kTree16 = false;
#endif

// scores[r] = scale * q · k[r * stride ..], for the n keys of one cache block (K as f32 or, in a
// 16-bit KV cache, widened in registers); for the usual
// head sizes q stays in C registers across the block, and rows go eight at a time.
template <class V, int C, typename W>
inline void dot_rows_regs(float* scores, const float* q, const W* k, int n, int stride, float scale, const W* ahead) {
  typename V::vec qv[C];
  for (int c = 0; c < C; ++c) qv[c] = V::load(q + c * V::N);
  int r = 0;
  for (; r + 8 <= n; r += 8) {
    typename V::vec acc[8];
    for (int i = 0; i < 8; ++i) {
      const W* kr = k + static_cast<int64_t>(r + i) * stride;
      prefetch_row(ahead, r + i, stride, C * V::N);
      acc[i] = V::mul(qv[0], V::load(kr));
      for (int c = 1; c < C; ++c) acc[i] = V::fma(qv[c], V::load(kr + c * V::N), acc[i]);
    }
    _mm256_storeu_ps(scores + r, _mm256_mul_ps(hsum8<V>(acc), _mm256_set1_ps(scale)));
  }
  for (; r < n; ++r) {
    const W* kr = k + static_cast<int64_t>(r) * stride;
    prefetch_row(ahead, r, stride, C * V::N);
    typename V::vec acc = V::mul(qv[0], V::load(kr));
    for (int c = 1; c < C; ++c) acc = V::fma(qv[c], V::load(kr + c * V::N), acc);
    scores[r] = V::hsum(acc) * scale;
  }
}

template <class V, int C, int G, typename W>
inline void dot_rows_group_regs(float* scores, int64_t lds, const float* q, const W* k, int n, int stride, float scale, const W* ahead);

template <class V, typename W = float>
void dot_rows_one(float* scores, const float* q, const W* k, int n, int stride, int hd, float scale, const W* ahead) {
  if constexpr (kTree16<V>) {  // (the grouped kernel's sums, so that both give the same bits)
    if (hd == V::N) return dot_rows_group_regs<V, 1, 1, W>(scores, 0, q, k, n, stride, scale, ahead);
    if (hd == 2 * V::N) return dot_rows_group_regs<V, 2, 1, W>(scores, 0, q, k, n, stride, scale, ahead);
    if (hd == 4 * V::N) return dot_rows_group_regs<V, 4, 1, W>(scores, 0, q, k, n, stride, scale, ahead);
    if (hd == 8 * V::N) return dot_rows_group_regs<V, 8, 1, W>(scores, 0, q, k, n, stride, scale, ahead);
  }
  if (hd == V::N) return dot_rows_regs<V, 1, W>(scores, q, k, n, stride, scale, ahead);
  if (hd == 2 * V::N) return dot_rows_regs<V, 2, W>(scores, q, k, n, stride, scale, ahead);
  if (hd == 4 * V::N) return dot_rows_regs<V, 4, W>(scores, q, k, n, stride, scale, ahead);
  if (hd == 8 * V::N) return dot_rows_regs<V, 8, W>(scores, q, k, n, stride, scale, ahead);
  for (int r = 0; r < n; ++r) {
    const W* kr = k + static_cast<int64_t>(r) * stride;
    prefetch_row(ahead, r, stride, hd);
    typename V::vec acc = V::zero();
    int i = 0;
    for (; i + V::N <= hd; i += V::N) acc = V::fma(V::load(q + i), V::load(kr + i), acc);
    float s = V::hsum(acc);
    for (; i < hd; ++i) s += q[i] * scalar(kr[i]);
    scores[r] = s * scale;
  }
}

// The G query heads of one KV head (GQA) against its n keys: each key row is loaded (and, in a
// 16-bit cache, widened) once for all G heads instead of once per head. Every score is the same
// chain of operations as dot_rows_regs computes for one head, so the results are identical (on
// AVX-512 the one-head path is this kernel with G = 1, its sums Tree16's).
template <class V, int C, int G, typename W>
inline void dot_rows_group_regs(float* scores, int64_t lds, const float* q, const W* k, int n, int stride, float scale, const W* ahead) {
  typename V::vec qv[G][C];
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) qv[g][c] = V::load(q + g * C * V::N + c * V::N);
  const __m256 sc = _mm256_set1_ps(scale);
  const auto row_dot = [&](int row, typename V::vec* acc) {
    const W* kr = k + static_cast<int64_t>(row) * stride;
    prefetch_row(ahead, row, stride, C * V::N);
    typename V::vec kv[C];
    for (int c = 0; c < C; ++c) kv[c] = V::load(kr + c * V::N);
    for (int g = 0; g < G; ++g) {
      acc[g] = V::mul(qv[g][0], kv[0]);
      for (int c = 1; c < C; ++c) acc[g] = V::fma(qv[g][c], kv[c], acc[g]);
    }
  };
  int r = 0;
#ifdef __AVX512F__
  if constexpr (kTree16<V>) {
    // Tree16's steps as the rows come: per head one pending pair, quad and oct
    const __m512 sc16 = _mm512_set1_ps(scale);
    for (; r + 16 <= n; r += 16) {
      __m512 pend[G][3];
      for (int j = 0; j < 8; ++j) {
        typename V::vec a[G], b[G];
        row_dot(r + 2 * j, a);
        row_dot(r + 2 * j + 1, b);
        for (int g = 0; g < G; ++g) {
          __m512 x = Tree16::pair(a[g], b[g]);
          if (j % 2 == 0) {
            pend[g][0] = x;
            continue;
          }
          x = Tree16::quad(pend[g][0], x);
          if (j % 4 == 1) {
            pend[g][1] = x;
            continue;
          }
          x = Tree16::oct(pend[g][1], x);
          if (j == 3) {
            pend[g][2] = x;
            continue;
          }
          _mm512_storeu_ps(scores + g * lds + r, _mm512_mul_ps(Tree16::sixteen(pend[g][2], x), sc16));
        }
      }
    }
    for (; r < n; ++r) {
      typename V::vec acc[G];
      row_dot(r, acc);
      for (int g = 0; g < G; ++g) scores[g * lds + r] = Tree16::one(acc[g]) * scale;
    }
    return;
  }
#endif
  for (; r + 8 <= n; r += 8) {
    // hsum8's steps as the rows come (8 rows' partial sums for G heads would not fit in registers
    // with the queries: 24 + 12 of 32 for G = 3 and 64-value heads)
    __m256 quad[G][2];
    for (int j = 0; j < 4; ++j) {
      typename V::vec a[G], b[G];
      row_dot(r + 2 * j, a);
      row_dot(r + 2 * j + 1, b);
      for (int g = 0; g < G; ++g) {
        const __m256 pair = pair_sum<V>(a[g], b[g]);
        if (j % 2 == 0) quad[g][j / 2] = pair;
        else quad[g][j / 2] = quad_sum(quad[g][j / 2], pair);
      }
    }
    for (int g = 0; g < G; ++g) _mm256_storeu_ps(scores + g * lds + r, _mm256_mul_ps(oct_sum(quad[g][0], quad[g][1]), sc));
  }
  for (; r < n; ++r) {
    typename V::vec acc[G];
    row_dot(r, acc);
    for (int g = 0; g < G; ++g) scores[g * lds + r] = V::hsum(acc[g]) * scale;
  }
}

// out[g * out_stride ..] += sum_r weights[g * lds + r] * v_r for the G heads of one KV head, each
// value row loaded (and widened) once; per head the same FMA chains as axpy_rows_regs.
template <class V, int C, int G, typename W>
inline void axpy_rows_group_regs(float* out, int64_t out_stride, const float* weights, int64_t lds, const W* v, int n, int stride,
                                 const W* ahead) {
  typename V::vec acc[G][C];
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) acc[g][c] = V::load(out + g * out_stride + c * V::N);
  for (int r = 0; r < n; ++r) {
    const W* vr = v + static_cast<int64_t>(r) * stride;
    prefetch_row(ahead, r, stride, C * V::N);
    typename V::vec vv[C];
    for (int c = 0; c < C; ++c) vv[c] = V::load(vr + c * V::N);
    for (int g = 0; g < G; ++g) {
      const typename V::vec w = V::set1(weights[g * lds + r]);
      for (int c = 0; c < C; ++c) acc[g][c] = V::fma(w, vv[c], acc[g][c]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) V::store(out + g * out_stride + c * V::N, acc[g][c]);
}

// Calls f(std::integral_constant<int, C>, std::integral_constant<int, G>) when the G heads' query
// (or accumulator) registers plus one row fit the register file (G * C <= 16 vectors: AVX-512's
// 32 registers; AVX2's 16 hold G * C <= 8); false otherwise (the caller goes head by head).
template <class V, typename F>
bool with_group(int hd, int G, F&& f) {
  constexpr int kMax = V::N == 16 ? 16 : 8;
  auto g = [&](auto c) {
    constexpr int C = decltype(c)::value;
    switch (G) {
#define KC_GROUP_CASE(GG)                                             \
  case GG:                                                            \
    if constexpr (GG * C <= kMax) {                                   \
      f(c, std::integral_constant<int, GG>{});                        \
      return true;                                                    \
    }                                                                 \
    return false;
      KC_GROUP_CASE(2)
      KC_GROUP_CASE(3)
      KC_GROUP_CASE(4)
      KC_GROUP_CASE(8)
#undef KC_GROUP_CASE
      default: return false;
    }
  };
  if (hd == V::N) return g(std::integral_constant<int, 1>{});
  if (hd == 2 * V::N) return g(std::integral_constant<int, 2>{});
  if (hd == 4 * V::N) return g(std::integral_constant<int, 4>{});
  if (hd == 8 * V::N) return g(std::integral_constant<int, 8>{});
  return false;
}

template <class V, typename W = float>
void dot_rows(float* scores, int64_t lds, const float* q, int G, const W* k, int n, int stride, int hd, float scale, const void* ahead) {
  const W* next = static_cast<const W*>(ahead);
  const bool grouped = with_group<V>(hd, G, [&](auto c, auto g) {
    dot_rows_group_regs<V, decltype(c)::value, decltype(g)::value, W>(scores, lds, q, k, n, stride, scale, next);
  });
  if (!grouped)  // the first head's pass prefetches
    for (int g = 0; g < G; ++g) dot_rows_one<V, W>(scores + g * lds, q + g * hd, k, n, stride, hd, scale, g == 0 ? next : nullptr);
}

// out += sum_r weights[r] * v[r * stride ..], for the n values of one cache block. The head is
// held in C registers and each row adds into all of them: independent FMA chains, not one
// chain per register through all the rows.
template <class V, int C, typename W>
inline void axpy_rows_regs(float* out, const float* weights, const W* v, int n, int stride, const W* ahead) {
  typename V::vec acc[C];
  for (int c = 0; c < C; ++c) acc[c] = V::load(out + c * V::N);
  for (int r = 0; r < n; ++r) {
    const typename V::vec w = V::set1(weights[r]);
    const W* vr = v + static_cast<int64_t>(r) * stride;
    prefetch_row(ahead, r, stride, C * V::N);
    for (int c = 0; c < C; ++c) acc[c] = V::fma(w, V::load(vr + c * V::N), acc[c]);
  }
  for (int c = 0; c < C; ++c) V::store(out + c * V::N, acc[c]);
}

template <class V, typename W = float>
void axpy_rows_one(float* out, const float* weights, const W* v, int n, int stride, int hd, const W* ahead) {
  if (hd == V::N) return axpy_rows_regs<V, 1, W>(out, weights, v, n, stride, ahead);
  if (hd == 2 * V::N) return axpy_rows_regs<V, 2, W>(out, weights, v, n, stride, ahead);
  if (hd == 4 * V::N) return axpy_rows_regs<V, 4, W>(out, weights, v, n, stride, ahead);
  if (hd == 8 * V::N) return axpy_rows_regs<V, 8, W>(out, weights, v, n, stride, ahead);
  for (int r = 0; r < n; ++r) {
    const W* vr = v + static_cast<int64_t>(r) * stride;
    prefetch_row(ahead, r, stride, hd);
    int i = 0;
    for (; i + V::N <= hd; i += V::N) V::store(out + i, V::fma(V::set1(weights[r]), V::load(vr + i), V::load(out + i)));
    for (; i < hd; ++i) out[i] += weights[r] * scalar(vr[i]);
  }
}

template <class V, typename W = float>
void axpy_rows(float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const W* v, int n, int stride, int hd,
               const void* ahead) {
  const W* next = static_cast<const W*>(ahead);
  const bool grouped = with_group<V>(hd, G, [&](auto c, auto g) {
    axpy_rows_group_regs<V, decltype(c)::value, decltype(g)::value, W>(out, out_stride, weights, lds, v, n, stride, next);
  });
  if (!grouped)  // the first head's pass prefetches
    for (int g = 0; g < G; ++g)
      axpy_rows_one<V, W>(out + g * out_stride, weights + g * lds, v, n, stride, hd, g == 0 ? next : nullptr);
}

// The 16-bit KV cache's rows, read as they are (t: F16 or BF16).
template <class V>
void dot_rows_16(DType t, float* scores, int64_t lds, const float* q, int G, const uint16_t* k, int n, int stride, int hd, float scale,
                 const void* ahead) {
  if (t == DType::F16) dot_rows<V, F16>(scores, lds, q, G, reinterpret_cast<const F16*>(k), n, stride, hd, scale, ahead);
  else dot_rows<V, Bf16>(scores, lds, q, G, reinterpret_cast<const Bf16*>(k), n, stride, hd, scale, ahead);
}
template <class V>
void axpy_rows_16(DType t, float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const uint16_t* v, int n, int stride,
                  int hd, const void* ahead) {
  if (t == DType::F16) axpy_rows<V, F16>(out, out_stride, weights, lds, G, reinterpret_cast<const F16*>(v), n, stride, hd, ahead);
  else axpy_rows<V, Bf16>(out, out_stride, weights, lds, G, reinterpret_cast<const Bf16*>(v), n, stride, hd, ahead);
}

template <class V, int C, typename W>
inline void weighted_sum_rows_regs(float* out, const float* weights, const W* const* rows, int n) {
  constexpr int kAhead = 8;
  constexpr int kLine = 64 / static_cast<int>(sizeof(W));  // values a cache line
  typename V::vec acc[C];
  for (int c = 0; c < C; ++c) acc[c] = V::zero();
  for (int r = 0; r < kAhead && r < n; ++r)  // the first rows too: each is a likely miss
    for (int c = 0; c < C * V::N; c += kLine) _mm_prefetch(reinterpret_cast<const char*>(rows[r] + c), _MM_HINT_T0);
  for (int r = 0; r < n; ++r) {
    if (r + kAhead < n)
      for (int c = 0; c < C * V::N; c += kLine) _mm_prefetch(reinterpret_cast<const char*>(rows[r + kAhead] + c), _MM_HINT_T0);
    const typename V::vec w = V::set1(weights[r]);
    for (int c = 0; c < C; ++c) acc[c] = V::fma(w, V::load(rows[r] + c * V::N), acc[c]);
  }
  for (int c = 0; c < C; ++c) V::store(out + c * V::N, acc[c]);
}

template <class V, typename W = float>
void weighted_sum_rows(float* out, const float* weights, const W* const* rows, int n, int hd) {
  if (hd == V::N) return weighted_sum_rows_regs<V, 1, W>(out, weights, rows, n);
  if (hd == 2 * V::N) return weighted_sum_rows_regs<V, 2, W>(out, weights, rows, n);
  if (hd == 4 * V::N) return weighted_sum_rows_regs<V, 4, W>(out, weights, rows, n);
  if (hd == 8 * V::N) return weighted_sum_rows_regs<V, 8, W>(out, weights, rows, n);
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r) axpy_rows_one<V, W>(out, weights + r, rows[r], 1, hd, hd, static_cast<const W*>(nullptr));
}

// The same over rows of a 16-bit cache, widened as they are read (the same FMA chains as on the
// rows widened first, so the same bits).
template <class V>
void weighted_sum_rows_16(DType t, float* out, const float* weights, const uint16_t* const* rows, int n, int hd) {
  if (t == DType::F16) weighted_sum_rows<V, F16>(out, weights, reinterpret_cast<const F16* const*>(rows), n, hd);
  else weighted_sum_rows<V, Bf16>(out, weights, reinterpret_cast<const Bf16* const*>(rows), n, hd);
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

// argmax_scalar's index (kernels.h): the largest value over NaN-free vectors (max(a, b) is b when a
// is NaN, and b starts as x[0], not NaN), then the first position holding it.
template <class V>
int argmax(const float* x, int n) {
  if (n <= 0 || std::isnan(x[0])) return 0;
  typename V::vec m = V::set1(x[0]);
  int i = 0;
  for (; i + V::N <= n; i += V::N) m = V::max(V::load(x + i), m);
  float r = V::hmax(m);
  for (; i < n; ++i) r = x[i] > r ? x[i] : r;
  for (i = 0; !(x[i] == r); ++i) {
  }
  return i;
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

// out = silu(gate) * up = gate * up / (1 + e^-gate), e^-gate by exp_nonpositive's polynomial (valid
// up to e^87: -gate is clamped there, where the product is 0 to f32 anyway). The last partial
// vector goes through the same polynomial, so an element's result does not depend on where the
// range it is in starts (the batch).
template <class V>
void swiglu(float* out, const float* gate, const float* up, size_t n) {
  using vec = typename V::vec;
  const auto one = [](vec g, vec u) {
    const vec e = exp_nonpositive<V>(V::sub(V::zero(), V::max(g, V::set1(-87.0f))));
    return V::div(V::mul(g, u), V::add(V::set1(1.0f), e));
  };
  size_t i = 0;
  for (; i + V::N <= n; i += V::N) V::store(out + i, one(V::load(gate + i), V::load(up + i)));
  if (i < n) {
    alignas(64) float g[V::N] = {}, u[V::N] = {};
    for (size_t j = 0; i + j < n; ++j) {
      g[j] = gate[i + j];
      u[j] = up[i + j];
    }
    V::store(g, one(V::load(g), V::load(u)));
    for (size_t j = 0; i + j < n; ++j) out[i + j] = g[j];
  }
}

// dst = src rounded to f16 (F16C's conversion, to nearest even) or bf16 (the same rounding done on
// the bits), 8 values at a time: the same bits as encode_row, whose scalar f16 rounding made storing
// one decode row's K and V into an f16 cache cost more than a layer's attention on short contexts.
// A NaN becomes the reference's quiet NaN (the hardware would keep the payload's top bits).
inline void encode_16(DType t, const float* src, uint16_t* dst, int n) {
  const bool f16 = t == DType::F16;
  const auto eight = [&](__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i sign16 = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    __m256i h;
    if (f16) {
      h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      h = _mm256_blendv_epi8(h, _mm256_or_si256(sign16, _mm256_set1_epi32(0x7e00)), nan);
    } else {
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
      h = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
      h = _mm256_blendv_epi8(h, _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40)), nan);
    }
    // 8 x 32-bit lanes (values < 2^16) to 8 x 16 bits, in order
    return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  };
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), eight(_mm256_loadu_ps(src + i)));
  if (i < n) {
    alignas(32) float in[8] = {};
    alignas(16) uint16_t out[8];
    for (int j = 0; i + j < n; ++j) in[j] = src[i + j];
    _mm_store_si128(reinterpret_cast<__m128i*>(out), eight(_mm256_load_ps(in)));
    for (int j = 0; i + j < n; ++j) dst[i + j] = out[j];
  }
}

template <class V>
Kernels make_kernels(const char* name) {
  Kernels k{name,           2 * V::N,       matmul_f32<V>, matmul_bf16<V>,       matmul_f16<V>,
            dequant_row<V>, matmul_rows<V>, matmul_q8<V>,  dot_rows<V>,   axpy_rows<V>,  dot_rows_16<V>, axpy_rows_16<V>,         weighted_sum_rows<V>, weighted_sum_rows_16<V>,
            indices_at_least<V>, max<V>,    exp_sum<V>};
  k.swiglu = swiglu<V>;
  k.encode_16 = encode_16;
  k.argmax = argmax<V>;
  return k;
}

}  // namespace
}  // namespace kc
