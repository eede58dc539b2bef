// AVX-512 with VNNI, BW and VL (Intel Ice Lake and later, AMD Zen 4 and later): the avx512
// variant with its own integer path for block-quantized weights, on vpdpbusd (u8 x s8, four
// products summed into each int32 lane). Compiled with those -m flags; used only after
// active_kernels() has checked the CPU has them.
//
// The AVX2 path (simd_kernels.h) spends about ten instructions per block of 32 weights on one
// activation row: sign tricks for signed x signed bytes, maddubs + madd, a conversion, and a
// scalar scale product broadcast per block. Here two blocks go through one 512-bit step: one
// vpdpbusd, one conversion, one multiply of the two blocks' weight scales by the activation scales,
// one FMA. vpdpbusd multiplies unsigned by signed bytes, so one side goes in offset:
// - up to kDecodeRows (4) activation rows (decode): the weights as unsigned bytes u = q + offset
//   (a type's nibbles as they are stored; Q8_0's bytes + 128), the activations as they are; the
//   offset adds offset * (sum of the activations) to each lane's dot, and the vpdpbusd starts from
//   minus that, computed once per activation pair when the rows are laid out. Unpacking a weight
//   pair is then only its bit fields.
// - more rows: the activations as unsigned bytes (xq + 128), the weights signed, the start
//   -128 * (sum of the weights) computed once per weight pair: up to 8 rows in registers as each
//   pair is used (the start's one load per activation pair and row above costs more than the
//   unpacking it saves, from 5 rows on), more rows in 4 x 4 tiles of weight rows unpacked once.
// Both give each lane the same exact int32 (the sum of q * xq over its 4 bytes) and go on through
// the same float operations, so every output is the same whichever path computes it. Types with a
// minimum add their minimum terms as one short vector dot product over the row's blocks at the
// end; Q6_K's two scales per block (one per 16 values) each cover 4 of the block's 8 lanes.
#include <immintrin.h>

#include "simd_kernels.h"

namespace kc {
namespace {

inline __m512 spread(float a, float b) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(a)), _mm256_castps_pd(_mm256_set1_ps(b)), 1));
}

// Lanes 0-3: a0, 4-7: a1, 8-11: b0, 12-15: b1 (a block's products land in 8 lanes, its values
// 0..15 in the first 4: Q6_K's two scales a block).
inline __m512 spread4(float a0, float a1, float b0, float b1) {
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(_mm_setr_ps(a0, a1, b0, b1)));
}

// Blocks 2p and 2p + 1 of a row as a pair step uses them: 64 weights (signed: q_block's, or
// unsigned: u_block's) and the two scales spread over the 8 lanes each block's products land in
// (lanes 0-7: block 2p, 8-15: block 2p + 1; Q6_K's four as spread4 says). An odd last block pairs with a zero block (q = 0,
// s = 0: adds exactly 0). Minimums go to m[b].
template <DType T, bool Unsigned>
inline void block_pair(const uint8_t* row, int nb, int p, float* m, __m512i& q, __m512& s) {
  if constexpr (T == DType::Q6_K) {
    // (u_block's fields for both at once: blocks 2p and 2p + 1 are sub-blocks i and i + 1 (i even)
    // of half n of a super-block: the same nibble of ql's 64 bytes, bits 2i and 2i + 2 of qh's 32;
    // rows are whole super-blocks, so no block is left alone)
    const uint8_t* w = row + 210 * (2 * p / 8);
    const int n = (2 * p % 8) / 4, i = 2 * p % 4;
    const __m512i lo = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(w + 64 * n), 4 * (i / 2)), _mm512_set1_epi8(0x0F));
    const __m512i qh = _mm512_broadcast_i64x4(load32(w + 128 + 32 * n));
    const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * i)), _mm256_set1_epi16(static_cast<short>(2 * i + 2)), 1);
    const __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(qh, shifts), _mm512_set1_epi8(3));
    q = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
    if constexpr (!Unsigned) q = _mm512_sub_epi8(q, _mm512_set1_epi8(q_offset<T>));
    const auto* sc = reinterpret_cast<const int8_t*>(w + 192 + 8 * n);
    const float d = f16c(w + 208);
    s = spread4(d * sc[2 * i], d * sc[2 * i + 1], d * sc[2 * i + 2], d * sc[2 * i + 3]);
    return;
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    // (u_block's fields for both at once: blocks 2p and 2p + 1 are sub-blocks i and i + 1 (i even)
    // of a super-block, the low and high nibbles of the same 32 bytes of qs (Q5_K: bits i and i + 1
    // of qh's 32); their 6-bit scales and minimums (k_scale_min) two at a time from 16-bit loads)
    constexpr bool five = T == DType::Q5_K;
    const uint8_t* w = row + (five ? 176 : 144) * (2 * p / 8);
    const int i = 2 * p % 8;
    const __m512i halves = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);  // shift 0, then 4
    q = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(load32(w + (five ? 48 : 16) + 32 * (i / 2))), halves),
                         _mm512_set1_epi8(0x0F));
    if constexpr (five) {
      const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(i)), _mm256_set1_epi16(static_cast<short>(i + 1)), 1);
      const __m512i fifth = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(load32(w + 16)), bit), _mm512_set1_epi8(1));
      q = _mm512_or_si512(q, _mm512_slli_epi16(fifth, 4));
    }
    const uint8_t* k = w + 4;  // the 12 bytes of scales and minimums
    const auto u16 = [k](int at) {
      uint16_t v;
      std::memcpy(&v, k + at, 2);
      return v;
    };
    uint16_t sc2, m2;  // sub-block i's in the low byte, i + 1's in the high one
    if (i < 4) {
      sc2 = u16(i) & 0x3F3F;
      m2 = u16(i + 4) & 0x3F3F;
    } else {
      sc2 = static_cast<uint16_t>((u16(i + 4) & 0x0F0F) | ((u16(i - 4) >> 2) & 0x3030));
      m2 = static_cast<uint16_t>(((u16(i + 4) >> 4) & 0x0F0F) | ((u16(i) >> 2) & 0x3030));
    }
    const float d = f16c(w), dmin = f16c(w + 2);
    s = spread(d * static_cast<uint8_t>(sc2), d * static_cast<uint8_t>(sc2 >> 8));
    m[2 * p] = -(dmin * static_cast<uint8_t>(m2));
    m[2 * p + 1] = -(dmin * static_cast<uint8_t>(m2 >> 8));
    return;
  }
  const auto block = [row](int b) { return Unsigned ? u_block<T>(row, b) : q_block<T>(row, b); };
  const QBlock a = block(2 * p);
  if constexpr (has_min<T>) m[2 * p] = a.min;
  if (2 * p + 1 < nb) {
    const QBlock b = block(2 * p + 1);
    if constexpr (has_min<T>) m[2 * p + 1] = b.min;
    q = _mm512_inserti64x4(_mm512_castsi256_si512(a.q), b.q, 1);
    s = spread(a.s0, b.s0);
  } else {
    q = _mm512_zextsi256_si512(a.q);
    s = spread(a.s0, 0.0f);
  }
}

// The pair of the paths for more rows: signed weights, and the vpdpbusd's start (each lane -128
// times the sum of the 4 weights it multiplies).
struct WPair {
  __m512i q;
  __m512i start;
  __m512 s;
};

template <DType T>
inline WPair w_pair(const uint8_t* row, int nb, int p, float* m) {
  WPair w;
  block_pair<T, false>(row, nb, p, m, w.q, w.s);
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), w.q);
  w.start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7));
  return w;
}

// The decode path's pair: unsigned weights (the start comes with the activations).
struct UPair {
  __m512i q;
  __m512 s;
};

template <DType T>
inline UPair u_pair(const uint8_t* row, int nb, int p, float* m) {
  UPair w;
  block_pair<T, true>(row, nb, p, m, w.q, w.s);
  return w;
}

// Up to this many activation rows, the decode path (above); more, the paths on signed weights.
constexpr int kDecodeRows = 4;

// The activation rows as the pair steps read them, laid out once per matmul (kernels.h's
// q8_prepare), per row and pair:
// - decode path: the 64 values as signed bytes, the vpdpbusd's start (each lane -offset times the
//   sum of its 4 values) and the two block scales spread like the weights' (block_pair);
// - more rows: the 64 values as unsigned bytes (xq + 128) and the spread scales.
// Past an odd end the values are 0 (decode; start 0 too) or 128 (they meet zero weights, whose
// start is 0), the scales 0.
constexpr size_t kDecodePairBytes = 64 + 16 * sizeof(int32_t) + 16 * sizeof(float);
constexpr size_t kPairBytes = 64 + 16 * sizeof(float);

size_t pair_bytes(int rows) { return rows <= kDecodeRows ? kDecodePairBytes : kPairBytes; }

size_t prep_bytes(DType t, int rows, int k) {
  static_cast<void>(t);  // every type has the same layouts
  return static_cast<size_t>(rows) * ((k / 32 + 1) / 2) * pair_bytes(rows);
}

void prepare_x(DType t, int rows, int r0, int r1, const int8_t* xq, const float* xd, int k, uint8_t* prep) {
  const int nb = k / 32;
  const int np = (nb + 1) / 2;
  const bool decode = rows <= kDecodeRows;
  const size_t step = pair_bytes(rows);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i minus_offset = _mm512_set1_epi32(-offset_of(t));
  for (int r = r0; r < r1; ++r) {
    const int8_t* q = xq + static_cast<int64_t>(r) * k;
    const float* d = xd + static_cast<int64_t>(r) * nb;
    for (int p = 0; p < np; ++p) {
      uint8_t* at = prep + (static_cast<size_t>(r) * np + p) * step;
      const bool two = 2 * p + 1 < nb;
      const __m512i v = two ? _mm512_loadu_si512(q + 64 * p) : _mm512_zextsi256_si512(load32(q + 64 * p));
      if (decode) {
        _mm512_storeu_si512(at, v);
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), v);
        _mm512_storeu_si512(at + 64, _mm512_mullo_epi32(sums, minus_offset));
        at += 64;
      } else {
        _mm512_storeu_si512(at, _mm512_xor_si512(v, bias));
      }
      _mm512_storeu_ps(reinterpret_cast<float*>(at + 64), spread(d[2 * p], two ? d[2 * p + 1] : 0.0f));
    }
  }
}

// One prepared activation row against pair p of one weight row: acc += s * xd * (q . xq), the one
// chain of operations every output goes through (the layout for more rows, then the decode layout).
inline __m512 add_pair(const WPair& w, const uint8_t* x, __m512 acc) {
  const __m512i dot = _mm512_dpbusd_epi32(w.start, _mm512_loadu_si512(x), w.q);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.s, _mm512_loadu_ps(reinterpret_cast<const float*>(x + 64))), acc);
}

template <DType T>
inline __m512 add_pair(const UPair& w, const uint8_t* x, __m512 acc) {
  const __m512i start = q_offset<T> != 0 ? _mm512_loadu_si512(x + 64) : _mm512_setzero_si512();
  const __m512i dot = _mm512_dpbusd_epi32(start, w.q, _mm512_loadu_si512(x));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.s, _mm512_loadu_ps(reinterpret_cast<const float*>(x + 128))), acc);
}

// sum over blocks of m_b * (xd_b * xs_b), 16 blocks a step.
inline float mins_dot(const float* m, const float* xd, const int32_t* xs, int nb) {
  __m512 acc = _mm512_setzero_ps();
  for (int b = 0; b < nb; b += 16) {
    const __mmask16 mask = nb - b >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (nb - b)) - 1);
    const __m512 xm = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, xd + b), _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(mask, xs + b)));
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, m + b), xm, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// An output: its accumulator's lanes added up, then (types with a minimum) its minimum terms.
template <DType T>
inline float finish(__m512 acc, const float* m, const float* xd, const int32_t* xs, int64_t row, int nb) {
  float v = _mm512_reduce_add_ps(acc);
  if constexpr (has_min<T>) v += mins_dot(m, xd + row * nb, xs + row * nb, nb);
  return v;
}

// R activation rows (from prepared row r0 of x, the layout for more rows) against one weight row
// whose pairs `pair(p)` gives (unpacked in registers as they are used, or read back from an
// unpacked row), then its minimums m: out[t * ldo] for t < R. Accumulators stay in registers.
template <DType T, int R, typename Pair>
inline void rows_dot(float* out, int64_t ldo, Pair&& pair, const float* m, const uint8_t* prep, int r0, const float* xd, const int32_t* xs,
                     int nb) {
  const int np = (nb + 1) / 2;
  const uint8_t* x = prep + static_cast<size_t>(r0) * np * kPairBytes;
  __m512 acc[R];
  for (int t = 0; t < R; ++t) acc[t] = _mm512_setzero_ps();
  for (int p = 0; p < np; ++p) {
    const WPair w = pair(p);
    for (int t = 0; t < R; ++t) acc[t] = add_pair(w, x + (static_cast<size_t>(t) * np + p) * kPairBytes, acc[t]);
  }
  for (int t = 0; t < R; ++t) out[t * ldo] = finish<T>(acc[t], m, xd, xs, r0 + t, nb);
}

// The decode path: R activation rows (decode layout) against W consecutive weight rows (from w0),
// each pair of blocks of the W rows unpacked (unsigned) in registers as it is used and multiplied
// with every row, so each activation pair is loaded once for W weight rows; then their minimums
// (row j's at m + j * m_stride): out[t * ldo + j]. Every output is add_pair's chain, as in rows_dot.
template <DType T, int R, int W>
inline void decode_dot(float* out, int64_t ldo, const uint8_t* w0, size_t row_bytes, size_t block_bytes, float* m, int m_stride,
                       const uint8_t* prep, const float* xd, const int32_t* xs, int nb) {
  const int np = (nb + 1) / 2;
  __m512 acc[W][R];
  for (int j = 0; j < W; ++j)
    for (int t = 0; t < R; ++t) acc[j][t] = _mm512_setzero_ps();
  for (int p = 0; p < np; ++p) {
    UPair wp[W];
    for (int j = 0; j < W; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(w0 + j * row_bytes + 2 * p * block_bytes) + kQuantPrefetch, _MM_HINT_T0);
      wp[j] = u_pair<T>(w0 + j * row_bytes, nb, p, m + j * m_stride);
    }
    for (int t = 0; t < R; ++t) {
      const uint8_t* at = prep + (static_cast<size_t>(t) * np + p) * kDecodePairBytes;
      for (int j = 0; j < W; ++j) acc[j][t] = add_pair<T>(wp[j], at, acc[j][t]);
    }
  }
  for (int j = 0; j < W; ++j)
    for (int t = 0; t < R; ++t) out[t * ldo + j] = finish<T>(acc[j][t], m + j * m_stride, xd, xs, t, nb);
}

// Weight rows [o0, o1) against R decode-layout rows: W rows at a time, the last few one at a time.
template <DType T, int R>
inline void decode_rows(float* out, int64_t ldo, const uint8_t* w, size_t row_bytes, size_t block_bytes, int o0, int o1, float* m, int m_stride,
                        const uint8_t* prep, const float* xd, const int32_t* xs, int nb) {
  // W * R accumulators and W pairs in 32 registers; one row alone goes one weight row at a time (its
  // single stream over the weights was the fastest from memory)
  constexpr int W = R == 1 ? 1 : 4;
  int o = o0;
  for (; o + W <= o1; o += W) decode_dot<T, R, W>(out + o, ldo, w + o * row_bytes, row_bytes, block_bytes, m, m_stride, prep, xd, xs, nb);
  for (; o < o1; ++o) decode_dot<T, R, 1>(out + o, ldo, w + o * row_bytes, row_bytes, block_bytes, m, m_stride, prep, xd, xs, nb);
}

// rows_dot for n (1..8) rows at once.
template <DType T, typename Pair>
inline void rows_dot_n(int n, float* out, int64_t ldo, Pair&& pair, const float* m, const uint8_t* prep, int r0, const float* xd,
                       const int32_t* xs, int nb) {
  switch (n) {
#define KC_ROWS(R)                                                  \
  case R:                                                           \
    rows_dot<T, R>(out, ldo, pair, m, prep, r0, xd, xs, nb);        \
    return;
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
      return;
  }
}

// Weight rows unpacked once for many activation rows: per row and pair, q (64 bytes), start (64),
// s (64); each row's minimums.
constexpr size_t kUnpackedPairBytes = 3 * 64;

struct UnpackedRows {
  std::vector<uint8_t> bytes;
  std::vector<float> m;
};

inline WPair unpacked_pair(const uint8_t* row, int p) {
  const uint8_t* at = row + kUnpackedPairBytes * p;
  return WPair{_mm512_loadu_si512(at), _mm512_loadu_si512(at + 64), _mm512_loadu_ps(reinterpret_cast<const float*>(at + 128))};
}

// TO unpacked weight rows x TT prepared activation rows (from r0), every output by rows_dot's
// chain: each activation pair is loaded once for the TO weight rows (the prepared rows of a
// prefill live in L2, and reading them is what limits a one-row tile).
template <DType T, int TO, int TT>
inline void tile_dot(float* out, int64_t ldo, const uint8_t* rows, size_t row_stride, const float* m, int m_stride, const uint8_t* prep,
                     int r0, const float* xd, const int32_t* xs, int nb) {
  const int np = (nb + 1) / 2;
  const uint8_t* x = prep + static_cast<size_t>(r0) * np * kPairBytes;
  __m512 acc[TO][TT];
  for (int o = 0; o < TO; ++o)
    for (int t = 0; t < TT; ++t) acc[o][t] = _mm512_setzero_ps();
  for (int p = 0; p < np; ++p) {
    __m512i xv[TT];
    __m512 dv[TT];
    for (int t = 0; t < TT; ++t) {
      const uint8_t* at = x + (static_cast<size_t>(t) * np + p) * kPairBytes;
      xv[t] = _mm512_loadu_si512(at);
      dv[t] = _mm512_loadu_ps(reinterpret_cast<const float*>(at + 64));
    }
    for (int o = 0; o < TO; ++o) {
      const WPair w = unpacked_pair(rows + o * row_stride, p);
      for (int t = 0; t < TT; ++t) {
        const __m512i dot = _mm512_dpbusd_epi32(w.start, xv[t], w.q);
        acc[o][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.s, dv[t]), acc[o][t]);
      }
    }
  }
  for (int o = 0; o < TO; ++o)
    for (int t = 0; t < TT; ++t) out[t * ldo + o] = finish<T>(acc[o][t], m + o * m_stride, xd, xs, r0 + t, nb);
}

// Up to kDecodeRows rows (decode, batched decode): each pair of blocks is unpacked (unsigned) in
// registers as it is used, for every row at once (its minimums kept for the end). More rows: weight rows are
// unpacked 4 at a time and multiplied with 4 activation rows at a time (what is left, by
// rows_dot from the unpacked rows). Every output goes through the same operations in the same
// order whichever path computes it.
template <DType T>
void matmul_vnni_typed(float* out, int ldo, const float* xd, const int32_t* xs, int rows, const uint8_t* w, int k, int o0, int o1,
                       const uint8_t* prep) {
  constexpr int kTile = 8, TO = 4, TT = 4;  // kTile: the most rows one rows_dot takes
  const size_t row_bytes = dtype_row_bytes(T, k);
  const size_t block_bytes = dtype_block_bytes(T) * 32 / dtype_block(T);
  const int nb = k / 32;
  const int np = (nb + 1) / 2;
  thread_local UnpackedRows unpacked;
  UnpackedRows& ur = unpacked;  // (once: a thread_local used in the loops costs a TLS lookup per use)
  const int m_stride = 2 * np;
  ur.m.resize(static_cast<size_t>(TO > 8 ? TO : 8) * m_stride);
  float* const m = ur.m.data();
  if (rows <= kTile) {
    if (rows > kDecodeRows) {
      for (int o = o0; o < o1; ++o) {
        const uint8_t* wr = w + o * row_bytes;
        const auto pair = [wr, nb, m, block_bytes](int p) {
          _mm_prefetch(reinterpret_cast<const char*>(wr + 2 * p * block_bytes) + kQuantPrefetch, _MM_HINT_T0);
          return w_pair<T>(wr, nb, p, m);
        };
        rows_dot_n<T>(rows, out + o, ldo, pair, m, prep, 0, xd, xs, nb);
      }
      return;
    }
    switch (rows) {
#define KC_DECODE(R)                                                                                     \
  case R:                                                                                                \
    decode_rows<T, R>(out, ldo, w, row_bytes, block_bytes, o0, o1, m, m_stride, prep, xd, xs, nb); \
    return;
      KC_DECODE(1)
      KC_DECODE(2)
      KC_DECODE(3)
      KC_DECODE(4)
#undef KC_DECODE
      default:
        return;
    }
  }
  const size_t row_stride = np * kUnpackedPairBytes;
  ur.bytes.resize(TO * row_stride);
  uint8_t* const ub = ur.bytes.data();
  for (int o = o0; o < o1; o += TO) {
    const int n_o = o1 - o < TO ? o1 - o : TO;
    for (int j = 0; j < n_o; ++j)
      for (int p = 0; p < np; ++p) {
        const WPair wp = w_pair<T>(w + (o + j) * row_bytes, nb, p, m + j * m_stride);
        uint8_t* at = ub + j * row_stride + kUnpackedPairBytes * p;
        _mm512_storeu_si512(at, wp.q);
        _mm512_storeu_si512(at + 64, wp.start);
        _mm512_storeu_ps(reinterpret_cast<float*>(at + 128), wp.s);
      }
    int r = 0;
    if (n_o == TO)
      for (; r + TT <= rows; r += TT) tile_dot<T, TO, TT>(out + static_cast<int64_t>(r) * ldo + o, ldo, ub, row_stride, m, m_stride, prep, r, xd, xs, nb);
    // what is left (the last rows, or the last weight rows of the range): one weight row at a time
    for (int j = 0; j < n_o; ++j) {
      const uint8_t* row = ub + j * row_stride;
      const auto pair = [row](int p) { return unpacked_pair(row, p); };
      for (int rr = r; rr < rows; rr += kTile)
        rows_dot_n<T>(rows - rr < kTile ? rows - rr : kTile, out + static_cast<int64_t>(rr) * ldo + o + j, ldo, pair, m + j * m_stride, prep,
                      rr, xd, xs, nb);
    }
  }
}

void matmul_q8_vnni(DType t, float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows, const uint8_t* w, int k,
                    int o0, int o1, const uint8_t* prep) {
  with_quant_type(t, [&](auto type) { matmul_vnni_typed<decltype(type)::value>(out, ldo, xd, xs, rows, w, k, o0, o1, prep); });
}

}  // namespace

const Kernels* avx512vnni_kernels() {
  static const Kernels k = [] {
    Kernels v = *avx512_kernels();
    v.name = "avx512vnni";
    v.matmul_q8 = matmul_q8_vnni;
    v.q8_prep_bytes = prep_bytes;
    v.q8_prepare = prepare_x;
    return v;
  }();
  return &k;
}

}  // namespace kc
