// AVX-512 with VNNI, BW and VL (Intel Ice Lake and later, AMD Zen 4 and later): the avx512
// variant with its own integer path for block-quantized weights, on vpdpbusd (u8 x s8, four
// products summed into each int32 lane). Compiled with those -m flags; used only after
// active_kernels() has checked the CPU has them.
//
// Weights are repacked once, at load (kernels.h's pack_quant), the way llama.cpp repacks Q4_0
// for its AVX-512 kernels: 16 weight rows interleaved, one per int32 lane. A block of 32 values
// of the 16 rows is 8 vectors; vector i holds values 4i..4i+3 of every row, so multiplying it by
// the activation row's 4 bytes 4i..4i+3 broadcast to all lanes gives each row's partial dot in its
// own lane. A block is then 8 vpdpbusd and one float step for 16 outputs, with no shuffles and no
// horizontal sums; in GGML's row-major blocks each block had to be unpacked, its scale spread over
// lanes and every output summed across lanes at the end, which bound a one-row matmul to a third
// of the memory bandwidth (docs/BENCHMARKS.md, issue #17).
//
// The layout of a group of 16 rows (group_bytes), for its nb blocks b:
// - quants[b]: the values as unsigned integers u (a type's bit fields as stored; Q8_0's bytes
//   + 128). 8-bit types: 8 vectors of 64 bytes, byte 4j + c of vector i = row j's u[4i + c].
//   Others: 4 vectors of nibbles, byte 4j + c of vector i = u[4i + c] & 15 | (u[16 + 4i + c] & 15)
//   << 4 (GGML's own nibble order), then one 64-byte plane per bit above the fourth (Q5: bit 4,
//   Q6_K: bits 4 and 5): bit i of byte 4j + c = that bit of u[4i + c].
// - meta[b]: plain types the 16 rows' f16 scales d (and minimums m: Q4_1, Q5_1); K types the
//   16 6-bit scales and minimums as bytes (Q6_K: its two signed scales, of values 0..15 and 16..31).
// - super[s] (K types, per 8 blocks): the 16 rows' f16 d (and dmin).
// The bytes are GGML's plus a few per cent for Q4_K and Q5_K (their scales one byte each instead of
// six bits), the same for the others.
//
// value = scale * (u - offset) [+ minimum], so with the activations x rounded to int8 per block
// (xd their scale): out = sum over blocks of scale * xd * (u . x - offset * sum(x)) [+ minimum *
// xd * sum(x)]. vpdpbusd starts from -offset * sum(x), laid out once per matmul with the
// activations (q8_prepare); Q6_K's two halves of a block (one scale each) are two chains. Every
// output goes through the same operations in the same order however many activation rows a call
// has, so results do not depend on the batch.
#include <immintrin.h>

#include "simd_kernels.h"

namespace kc {
namespace {

constexpr int kGroup = 16;  // weight rows a group: one per int32 lane
constexpr int kPackedPrefetch = 4096;  // bytes ahead (8-16 KiB, or L2-only hints, measured slower on this VM)

template <DType T>
struct Packed {
  static constexpr bool kBytes = T == DType::Q8_0;
  static constexpr int kPlanes = T == DType::Q5_0 || T == DType::Q5_1 || T == DType::Q5_K ? 1 : T == DType::Q6_K ? 2 : 0;
  static constexpr bool kSuper = T == DType::Q4_K || T == DType::Q5_K || T == DType::Q6_K;
  static constexpr bool kTwoScales = T == DType::Q6_K;
  static constexpr size_t kQuantBytes = kBytes ? 512 : 256 + 64 * kPlanes;  // per block of a group
  static constexpr size_t kMetaBytes = kSuper ? 32 : has_min<T> ? 64 : 32;  // per block of a group
  static constexpr size_t kSuperBytes = kSuper ? (has_min<T> ? 64 : 32) : 0;
  static size_t group_bytes(int k) {
    const size_t nb = static_cast<size_t>(k / 32);
    return (nb * (kQuantBytes + kMetaBytes) + nb / 8 * kSuperBytes + 63) / 64 * 64;
  }
};

size_t packed_bytes(DType t, int64_t rows, int k) {
  size_t n = 0;
  with_quant_type(t, [&](auto type) { n = static_cast<size_t>((rows + kGroup - 1) / kGroup) * Packed<decltype(type)::value>::group_bytes(k); });
  return n;
}

inline void put_f16(uint8_t* dst, const uint8_t* src) { std::memcpy(dst, src, 2); }

template <DType T>
void pack_typed(const uint8_t* src, int64_t rows, int k, int64_t g0, int64_t g1, uint8_t* dst) {
  using P = Packed<T>;
  const int nb = k / 32;
  const size_t row_bytes = dtype_row_bytes(T, k), gb = P::group_bytes(k);
  const size_t block_bytes = dtype_block_bytes(T) * 32 / dtype_block(T);  // (plain types)
  alignas(32) uint8_t u[32];
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* const out = dst + g * gb;
    std::memset(out, 0, gb);  // rows past the end: zero values and scales
    uint8_t* const meta = out + nb * P::kQuantBytes;
    uint8_t* const super = meta + nb * P::kMetaBytes;
    for (int j = 0; j < kGroup && g * kGroup + j < rows; ++j) {
      const uint8_t* row = src + (g * kGroup + j) * row_bytes;
      for (int b = 0; b < nb; ++b) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(u), u_block<T>(row, b).q);
        uint8_t* q = out + b * P::kQuantBytes;
        if constexpr (P::kBytes) {
          for (int i = 0; i < 8; ++i)
            for (int c = 0; c < 4; ++c) q[64 * i + 4 * j + c] = u[4 * i + c];
        } else {
          for (int i = 0; i < 4; ++i)
            for (int c = 0; c < 4; ++c) q[64 * i + 4 * j + c] = static_cast<uint8_t>((u[4 * i + c] & 15) | (u[16 + 4 * i + c] & 15) << 4);
          for (int p = 0; p < P::kPlanes; ++p)
            for (int i = 0; i < 8; ++i)
              for (int c = 0; c < 4; ++c) q[256 + 64 * p + 4 * j + c] |= static_cast<uint8_t>(((u[4 * i + c] >> (4 + p)) & 1) << i);
        }
        uint8_t* m = meta + b * P::kMetaBytes;
        if constexpr (T == DType::Q6_K) {
          const uint8_t* w = row + 210 * (b / 8);
          m[j] = w[192 + 2 * (b % 8)];
          m[16 + j] = w[192 + 2 * (b % 8) + 1];
          if (b % 8 == 0) put_f16(super + (b / 8) * P::kSuperBytes + 2 * j, w + 208);
        } else if constexpr (P::kSuper) {
          const uint8_t* w = row + (T == DType::Q5_K ? 176 : 144) * (b / 8);
          k_scale_min(b % 8, w + 4, &m[j], &m[16 + j]);
          if (b % 8 == 0) {
            put_f16(super + (b / 8) * P::kSuperBytes + 2 * j, w);
            put_f16(super + (b / 8) * P::kSuperBytes + 32 + 2 * j, w + 2);
          }
        } else {
          put_f16(m + 2 * j, row + b * block_bytes);
          if constexpr (has_min<T>) put_f16(m + 32 + 2 * j, row + b * block_bytes + 2);
        }
      }
    }
  }
}

void pack(DType t, const uint8_t* src, int64_t rows, int k, int64_t g0, int64_t g1, uint8_t* dst) {
  with_quant_type(t, [&](auto type) { pack_typed<decltype(type)::value>(src, rows, k, g0, g1, dst); });
}

// The activation side, per row and block (q8_prepare): the starts of the two vpdpbusd chains
// (values 0..15 and 16..31: -offset times their sums; Q6_K's halves have a scale each, the
// others put the whole block's in `lo`), and xd * sum(x) (minimum terms); the block's scale xd is
// the call's own.
struct XBlock {
  int32_t lo, hi;
  float xm;
};

size_t prep_bytes(DType, int rows, int k) { return static_cast<size_t>(rows) * (k / 32) * sizeof(XBlock); }

void prepare_x(DType t, int r0, int r1, const int8_t* xq, const float* xd, int k, uint8_t* prep) {
  const int nb = k / 32;
  const int off = offset_of(t);
  const __m256i ones = _mm256_set1_epi8(1);
  auto* out = reinterpret_cast<XBlock*>(prep);
  for (int r = r0; r < r1; ++r)
    for (int b = 0; b < nb; ++b) {
      const size_t i = static_cast<size_t>(r) * nb + b;
      // the two halves' sums: 4 int32 lanes each
      alignas(32) int32_t s[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(s), _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, load32(xq + 32 * i)));
      const int32_t lo = s[0] + s[1] + s[2] + s[3], hi = s[4] + s[5] + s[6] + s[7];
      XBlock& x = out[i];
      if (t == DType::Q6_K) {
        x.lo = -off * lo;
        x.hi = -off * hi;
      } else {
        x.lo = -off * (lo + hi);
        x.hi = 0;
      }
      x.xm = xd[i] * static_cast<float>(lo + hi);
    }
}

// Block b's 8 vectors of unsigned values (vector i: values 4i..4i+3 of the 16 rows).
template <DType T>
inline void unpack(const uint8_t* q, __m512i* v) {
  using P = Packed<T>;
  if constexpr (P::kBytes) {
    for (int i = 0; i < 8; ++i) v[i] = _mm512_load_si512(q + 64 * i);
  } else {
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int i = 0; i < 4; ++i) {
      const __m512i n = _mm512_load_si512(q + 64 * i);
      v[i] = _mm512_and_si512(n, low);
      v[4 + i] = _mm512_and_si512(_mm512_srli_epi16(n, 4), low);
    }
    for (int p = 0; p < P::kPlanes; ++p) {
      // bit i of each byte of the plane becomes bit 4 + p of vector i's byte (16-bit shifts: the
      // bit stays inside its byte; the mask drops the rest)
      const __m512i plane = _mm512_load_si512(q + 256 + 64 * p);
      const __m512i bit = _mm512_set1_epi8(static_cast<char>(1 << (4 + p)));
      for (int i = 0; i < 8; ++i) {
        const int s = 4 + p - i;
        const __m512i moved = s > 0 ? _mm512_slli_epi16(plane, static_cast<unsigned>(s))
                              : s < 0 ? _mm512_srli_epi16(plane, static_cast<unsigned>(-s))
                                      : plane;
        v[i] = _mm512_ternarylogic_epi32(v[i], moved, bit, 0xF8);  // v | (moved & bit)
      }
    }
  }
}

// R activation rows (their int8 values from xq, block scales from xd, XBlocks from xb; row t at
// t * k, t * nb and t * nb) against one group of 16 weight rows: out[t * ldo + j] for j < n (the
// group's rows that exist).
template <DType T, int R>
inline void group_dot(float* out, int64_t ldo, int n, const uint8_t* group, int nb, const int8_t* xq, const float* xd_rows,
                      const XBlock* xb, int k) {
  using P = Packed<T>;
  const uint8_t* meta = group + nb * P::kQuantBytes;
  const uint8_t* super = meta + nb * P::kMetaBytes;
  __m512 acc[R];
  for (int t = 0; t < R; ++t) acc[t] = _mm512_setzero_ps();
  __m512 d = _mm512_setzero_ps(), dmin = _mm512_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    // (one core's demand misses alone leave most of the memory bandwidth unused: the lines this
    // far ahead, which run on into the next group, are requested now)
    for (size_t line = 0; line < P::kQuantBytes; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(group + b * P::kQuantBytes + line) + kPackedPrefetch, _MM_HINT_T0);
    __m512i v[8];
    unpack<T>(group + b * P::kQuantBytes, v);
    const uint8_t* m = meta + b * P::kMetaBytes;
    // the 16 rows' scales s0 (values 0..15) and s1 (16..31: Q6_K), and minimums mn
    __m512 s0, s1 = _mm512_setzero_ps(), mn = _mm512_setzero_ps();
    if constexpr (P::kSuper) {
      if (b % 8 == 0) {
        const uint8_t* s = super + (b / 8) * P::kSuperBytes;
        d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(s)));
        if constexpr (has_min<T>) dmin = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(s + 32)));
      }
      const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
      const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m + 16));
      if constexpr (P::kTwoScales) {
        s0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b0)));
        s1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b1)));
      } else {
        s0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b0)));
        mn = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b1))));
      }
    } else {
      s0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m)));
      if constexpr (has_min<T>) mn = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 32)));
    }
    for (int t = 0; t < R; ++t) {
      const XBlock& x = xb[static_cast<size_t>(t) * nb + b];
      const int8_t* xv = xq + static_cast<size_t>(t) * k + 32 * b;
      const auto word = [xv](int i) {
        int32_t w;
        std::memcpy(&w, xv + 4 * i, 4);
        return _mm512_set1_epi32(w);
      };
      __m512i lo = _mm512_set1_epi32(x.lo);
      __m512i hi = P::kTwoScales ? _mm512_set1_epi32(x.hi) : _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) lo = _mm512_dpbusd_epi32(lo, v[i], word(i));
      for (int i = 4; i < 8; ++i) hi = _mm512_dpbusd_epi32(hi, v[i], word(i));
      const __m512 xd = _mm512_set1_ps(xd_rows[static_cast<size_t>(t) * nb + b]);
      if constexpr (P::kTwoScales) {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_mul_ps(s0, xd), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_mul_ps(s1, xd), acc[t]);
      } else {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(s0, xd), acc[t]);
      }
      if constexpr (has_min<T>) acc[t] = _mm512_fmadd_ps(mn, _mm512_set1_ps(x.xm), acc[t]);
    }
  }
  const __mmask16 keep = n >= kGroup ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << n) - 1);
  for (int t = 0; t < R; ++t) _mm512_mask_storeu_ps(out + t * ldo, keep, acc[t]);
}

// Up to this many activation rows go through a group together (their accumulators and the
// block's 8 vectors in registers); more rows, this many at a time.
constexpr int kTileRows = 8;

template <DType T>
void matmul_vnni_typed(float* out, int ldo, const int8_t* xq, const float* xd, int rows, const uint8_t* w, int k, int o0, int o1,
                       const uint8_t* prep) {
  const int nb = k / 32;
  const size_t gb = Packed<T>::group_bytes(k);
  const auto* xb = reinterpret_cast<const XBlock*>(prep);
  for (int o = o0; o < o1; o += kGroup) {
    const uint8_t* group = w + static_cast<size_t>(o / kGroup) * gb;
    const int n = o1 - o < kGroup ? o1 - o : kGroup;
    for (int t = 0; t < rows; t += kTileRows) {
      float* at = out + static_cast<int64_t>(t) * ldo + o;
      const int8_t* x = xq + static_cast<int64_t>(t) * k;
      const float* d = xd + static_cast<int64_t>(t) * nb;
      const XBlock* b = xb + static_cast<int64_t>(t) * nb;
      switch (rows - t < kTileRows ? rows - t : kTileRows) {
#define KC_ROWS(R)                                      \
  case R:                                               \
    group_dot<T, R>(at, ldo, n, group, nb, x, d, b, k); \
    break;
        KC_ROWS(1)
        KC_ROWS(2)
        KC_ROWS(3)
        KC_ROWS(4)
        KC_ROWS(5)
        KC_ROWS(6)
        KC_ROWS(7)
        KC_ROWS(8)
#undef KC_ROWS
        default:
          break;
      }
    }
  }
}

void matmul_q8_vnni(DType t, float* out, int ldo, const int8_t* xq, const float* xd, const int32_t*, int rows, const uint8_t* w, int k,
                    int o0, int o1, const uint8_t* prep) {
  with_quant_type(t, [&](auto type) { matmul_vnni_typed<decltype(type)::value>(out, ldo, xq, xd, rows, w, k, o0, o1, prep); });
}

}  // namespace

const Kernels* avx512vnni_kernels() {
  static const Kernels k = [] {
    Kernels v = *avx512_kernels();
    v.name = "avx512vnni";
    v.matmul_q8 = matmul_q8_vnni;
    v.q8_prep_bytes = prep_bytes;
    v.q8_prepare = prepare_x;
    v.quant_group = kGroup;
    v.quant_packed_bytes = packed_bytes;
    v.pack_quant = pack;
    return v;
  }();
  return &k;
}

}  // namespace kc
