// AVX-512 with VNNI, BW and VL (Intel Ice Lake and later, AMD Zen 4 and later): the avx512
// variant with its own integer path for block-quantized weights, on vpdpbusd (u8 x s8, four
// products summed into each int32 lane). Compiled with those -m flags; used only after
// active_kernels() has checked the CPU has them.
//
// The AVX2 path (simd_kernels.h) spends about ten instructions per block of 32 weights on one
// activation row: sign tricks for signed x signed bytes, maddubs + madd, a conversion, and a
// scalar scale product broadcast per block. Here the activations go in as unsigned bytes
// (xq + 128, one xor) against the weights' signed integers, and two blocks go through one 512-bit
// step: one vpdpbusd, one conversion, one multiply of the two blocks' weight scales by the
// activation scales, one FMA. The + 128 adds 128 * (sum of the block's weights) to each block's
// dot: the vpdpbusd starts from minus that, computed once per weight block (exact in int32).
// Types with a minimum add their minimum terms as one short vector dot product over the row's
// blocks at the end. Q6_K (two scales per block) keeps the AVX2 path.
#include <immintrin.h>

#include "simd_kernels.h"

namespace kc {
namespace {

// Blocks 2p and 2p + 1 of a row as the pair step uses them: 64 signed weights, the vpdpbusd's
// start (each lane -128 times the sum of the 4 weights it multiplies), the two scales spread over
// the 8 lanes each block's products land in (lanes 0-7: block 2p, 8-15: block 2p + 1). An odd last
// block pairs with a zero block (q = 0, s = 0: adds exactly 0). Minimums go to m[b].
struct WPair {
  __m512i q;
  __m512i start;
  __m512 s;
};

inline __m512 spread(float a, float b) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(a)), _mm256_castps_pd(_mm256_set1_ps(b)), 1));
}

template <DType T>
inline WPair w_pair(const uint8_t* row, int nb, int p, float* m) {
  const QBlock a = q_block<T>(row, 2 * p);
  m[2 * p] = a.min;
  __m512i q;
  __m512 s;
  if (2 * p + 1 < nb) {
    const QBlock b = q_block<T>(row, 2 * p + 1);
    m[2 * p + 1] = b.min;
    q = _mm512_inserti64x4(_mm512_castsi256_si512(a.q), b.q, 1);
    s = spread(a.s0, b.s0);
  } else {
    q = _mm512_zextsi256_si512(a.q);
    s = spread(a.s0, 0.0f);
  }
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
  return {q, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7)), s};
}

// One activation row against pair p of one weight row: acc += s * xd * (q . xq), the one chain
// of operations every output goes through.
inline __m512 add_pair(const WPair& w, const int8_t* xq, const float* xd, int nb, int p, __m512 acc) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  __m512i x;
  __m512 d;
  if (2 * p + 1 < nb) {
    x = _mm512_loadu_si512(xq + 64 * p);
    d = _mm512_castpd_ps(_mm512_set1_pd(*reinterpret_cast<const double*>(xd + 2 * p)));
  } else {
    x = _mm512_zextsi256_si512(load32(xq + 64 * p));
    d = _mm512_set1_ps(xd[2 * p]);
  }
  const __m512i dot = _mm512_dpbusd_epi32(w.start, _mm512_xor_si512(x, _mm512_set1_epi8(static_cast<char>(0x80))), w.q);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.s, _mm512_permutexvar_ps(idx, d)), acc);
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

// R activation rows against one weight row whose pairs `pair(p)` gives (unpacked in registers as
// they are used, or read back from an unpacked row), then its minimums m: out[t * ldo] for t < R.
// Accumulators stay in registers (R fixed).
template <DType T, int R, typename Pair>
inline void rows_dot(float* out, int64_t ldo, Pair&& pair, const float* m, const int8_t* xq, const float* xd, const int32_t* xs, int k,
                     int nb) {
  const int np = (nb + 1) / 2;
  __m512 acc[R];
  for (int t = 0; t < R; ++t) acc[t] = _mm512_setzero_ps();
  for (int p = 0; p < np; ++p) {
    const WPair w = pair(p);
    for (int t = 0; t < R; ++t) acc[t] = add_pair(w, xq + static_cast<int64_t>(t) * k, xd + static_cast<int64_t>(t) * nb, nb, p, acc[t]);
  }
  for (int t = 0; t < R; ++t) {
    float v = _mm512_reduce_add_ps(acc[t]);
    if constexpr (has_min<T>) v += mins_dot(m, xd + static_cast<int64_t>(t) * nb, xs + static_cast<int64_t>(t) * nb, nb);
    out[t * ldo] = v;
  }
}

// A weight row unpacked once for many activation rows.
struct UnpackedRow {
  std::vector<uint8_t> bytes;  // per pair: q (64 bytes), start (64), s (64)
  std::vector<float> m;
};

// Few rows (decode): each pair of blocks is unpacked in registers as it is used (its minimums
// kept for the end). Many rows: each weight row is unpacked once and reused by 4 rows at a time.
// Both compute every output with the same operations in the same order.
template <DType T>
void matmul_vnni_typed(float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows, const uint8_t* w, int k,
                       int o0, int o1) {
  const size_t row_bytes = dtype_row_bytes(T, k);
  const size_t block_bytes = dtype_block_bytes(T) * 32 / dtype_block(T);
  const int nb = k / 32;
  const int np = (nb + 1) / 2;
  thread_local UnpackedRow unpacked;
  UnpackedRow& ur = unpacked;  // (once: a thread_local used in the loops costs a TLS lookup per use)
  ur.m.resize(static_cast<size_t>(np) * 2);
  float* const m = ur.m.data();
  if (rows < 4) {
    for (int o = o0; o < o1; ++o) {
      const uint8_t* wr = w + o * row_bytes;
      const auto pair = [wr, nb, m, block_bytes](int p) {
        _mm_prefetch(reinterpret_cast<const char*>(wr + 2 * p * block_bytes) + kQuantPrefetch, _MM_HINT_T0);
        return w_pair<T>(wr, nb, p, m);
      };
      if (rows == 1) rows_dot<T, 1>(out + o, ldo, pair, m, xq, xd, xs, k, nb);
      else if (rows == 2) rows_dot<T, 2>(out + o, ldo, pair, m, xq, xd, xs, k, nb);
      else rows_dot<T, 3>(out + o, ldo, pair, m, xq, xd, xs, k, nb);
    }
    return;
  }
  ur.bytes.resize(static_cast<size_t>(np) * 192);
  uint8_t* const ub = ur.bytes.data();
  const auto pair = [ub](int p) {
    const uint8_t* at = ub + 192 * p;
    return WPair{_mm512_loadu_si512(at), _mm512_loadu_si512(at + 64), _mm512_loadu_ps(reinterpret_cast<const float*>(at + 128))};
  };
  for (int o = o0; o < o1; ++o) {
    for (int p = 0; p < np; ++p) {
      const WPair wp = w_pair<T>(w + o * row_bytes, nb, p, m);
      _mm512_storeu_si512(ub + 192 * p, wp.q);
      _mm512_storeu_si512(ub + 192 * p + 64, wp.start);
      _mm512_storeu_ps(reinterpret_cast<float*>(ub + 192 * p + 128), wp.s);
    }
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
      const int64_t rr = r;
      rows_dot<T, 4>(out + rr * ldo + o, ldo, pair, m, xq + rr * k, xd + rr * nb, xs + rr * nb, k, nb);
    }
    for (; r < rows; ++r) {
      const int64_t rr = r;
      rows_dot<T, 1>(out + rr * ldo + o, ldo, pair, m, xq + rr * k, xd + rr * nb, xs + rr * nb, k, nb);
    }
  }
}

void matmul_q8_vnni(DType t, float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows, const uint8_t* w, int k,
                    int o0, int o1) {
  switch (t) {
#define KC_VNNI_CASE(T)                                                    \
  case DType::T:                                                           \
    matmul_vnni_typed<DType::T>(out, ldo, xq, xd, xs, rows, w, k, o0, o1); \
    return;
    KC_VNNI_CASE(Q8_0)
    KC_VNNI_CASE(Q4_0)
    KC_VNNI_CASE(Q4_1)
    KC_VNNI_CASE(Q5_0)
    KC_VNNI_CASE(Q5_1)
    KC_VNNI_CASE(Q4_K)
    KC_VNNI_CASE(Q5_K)
#undef KC_VNNI_CASE
    case DType::Q6_K:
      matmul_q8_typed<DType::Q6_K>(out, ldo, xq, xd, xs, rows, w, k, o0, o1);
      return;
    default:
      return;  // not block-quantized: matmul never calls this
  }
}

}  // namespace

const Kernels* avx512vnni_kernels() {
  static const Kernels k = [] {
    Kernels v = *avx512_kernels();
    v.name = "avx512vnni";
    v.matmul_q8 = matmul_q8_vnni;
    return v;
  }();
  return &k;
}

}  // namespace kc
