#include "kcache/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace kc {

namespace {

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Each function dequantizes `nb` consecutive blocks.
void deq_q8_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 34, y += 32) {
    const float d = half_at(b);
    const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = qs[j] * d;
  }
}

void deq_q4_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 18, y += 32) {
    const float d = half_at(b);
    for (int j = 0; j < 16; ++j) {
      y[j] = ((b[2 + j] & 0xF) - 8) * d;
      y[j + 16] = ((b[2 + j] >> 4) - 8) * d;
    }
  }
}

void deq_q4_1(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 20, y += 32) {
    const float d = half_at(b), m = half_at(b + 2);
    for (int j = 0; j < 16; ++j) {
      y[j] = (b[4 + j] & 0xF) * d + m;
      y[j + 16] = (b[4 + j] >> 4) * d + m;
    }
  }
}

// Q5_0/Q5_1: a 32-bit mask holds the fifth bit of each value (bit j for value j).
void deq_q5_0(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 22, y += 32) {
    const float d = half_at(b);
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (b[6 + j] & 0xF) | (((qh >> j) & 1) << 4);
      const int x1 = (b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = (x0 - 16) * d;
      y[j + 16] = (x1 - 16) * d;
    }
  }
}

void deq_q5_1(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 24, y += 32) {
    const float d = half_at(b), m = half_at(b + 2);
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (b[8 + j] & 0xF) | (((qh >> j) & 1) << 4);
      const int x1 = (b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = x0 * d + m;
      y[j + 16] = x1 * d + m;
    }
  }
}

// Q4_K: { f16 d, dmin; u8 scales[12]; u8 qs[128] }; each 64 values share 32 bytes of qs, the
// first 32 in the low nibbles, the next 32 in the high ones; value = d*sc*q - dmin*m.
void deq_q4_k(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 144) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t sc, m;
      k_scale_min(2 * j, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * j + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// Q5_K: { f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K plus a fifth bit, bit 2j
// (first 32) and 2j+1 (next 32) of qh[l] for the j-th group of 64.
void deq_q5_k(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 176) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    for (int j = 0; j < 4; ++j, ql += 32) {
      uint8_t sc, m;
      k_scale_min(2 * j, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      k_scale_min(2 * j + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      const uint8_t u1 = static_cast<uint8_t>(1u << (2 * j)), u2 = static_cast<uint8_t>(2u << (2 * j));
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// Q6_K: { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }; per 128 values, value l + 32i takes
// its low 4 bits from ql and 2 high bits from qh[l], minus 32, times d * scales[16-value group].
void deq_q6_k(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 210) {
    const float d = half_at(b + 208);
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

int nearest(float v) { return static_cast<int>(std::lround(v)); }

void quant_q8_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, b += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
  }
}

// Q4_0/Q5_0: the scale maps the value of largest magnitude to -8 / -16 (ggml's choice, which
// uses the whole range on that side).
void quant_q4_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, b += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    for (int j = 0; j < 16; ++j) {
      const int x0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int x1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      b[2 + j] = static_cast<uint8_t>(x0 | (x1 << 4));
    }
  }
}

void quant_q5_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, b += 22) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_half(b, d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int x0 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f)));
      const int x1 = std::min(31, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 16.5f)));
      b[6 + j] = static_cast<uint8_t>((x0 & 0xF) | ((x1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((x0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((x1 >> 4) & 1) << (j + 16);
    }
    std::memcpy(b + 2, &qh, 4);
  }
}

// Q4_K: each sub-block of 32 gets scale (max - min) / 15 and minimum -min (min clamped to <= 0,
// as stored minimums are subtracted); both are stored as 6-bit multiples of the super-block's
// d = max scale / 63 and dmin = max minimum / 63, and the values are then rounded against the
// stored (quantized) scale and minimum.
void quant_q4_k(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 256, b += 144) {
    float scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
      float lo = 0.0f, hi = x[32 * j];
      for (int l = 0; l < 32; ++l) lo = std::min(lo, x[32 * j + l]), hi = std::max(hi, x[32 * j + l]);
      scales[j] = (hi - lo) / 15.0f;
      mins[j] = -lo;
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t* sc = b + 4;
    std::memset(sc, 0, 12);
    for (int j = 0; j < 8; ++j) {
      const uint8_t ls = static_cast<uint8_t>(std::min(63, nearest(inv_scale * scales[j])));
      const uint8_t lm = static_cast<uint8_t>(std::min(63, nearest(inv_min * mins[j])));
      if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
      } else {
        sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    put_half(b, max_scale / 63.0f);
    put_half(b + 2, max_min / 63.0f);
    const float d = half_at(b), dmin = half_at(b + 2);
    uint8_t L[256];
    for (int j = 0; j < 8; ++j) {
      uint8_t s, m;
      k_scale_min(j, sc, &s, &m);
      const float dj = d * s, mj = dmin * m;
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = dj != 0.0f ? static_cast<uint8_t>(std::clamp(nearest((x[32 * j + l] + mj) / dj), 0, 15)) : 0;
    }
    uint8_t* q = b + 16;
    for (int j = 0; j < 256; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t k) {
  const auto* b = static_cast<const uint8_t*>(src);
  const int64_t nb = k / dtype_block(t);
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(k) * 4); break;
    case DType::BF16:
      for (int64_t i = 0; i < k; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      break;
    case DType::F16:
      for (int64_t i = 0; i < k; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      break;
    case DType::Q8_0: deq_q8_0(b, dst, nb); break;
    case DType::Q4_0: deq_q4_0(b, dst, nb); break;
    case DType::Q4_1: deq_q4_1(b, dst, nb); break;
    case DType::Q5_0: deq_q5_0(b, dst, nb); break;
    case DType::Q5_1: deq_q5_1(b, dst, nb); break;
    case DType::Q4_K: deq_q4_k(b, dst, nb); break;
    case DType::Q5_K: deq_q5_k(b, dst, nb); break;
    case DType::Q6_K: deq_q6_k(b, dst, nb); break;
  }
}

void encode_row(DType t, const float* src, void* dst, int64_t k) {
  switch (t) {
    case DType::F32: std::memcpy(dst, src, static_cast<size_t>(k) * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < k; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_f16(src[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < k; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
      return;
    default: quantize_row(t, src, dst, k); return;
  }
}

bool can_quantize(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q5_0 || t == DType::Q4_K; }

void quantize_row(DType t, const float* src, void* dst, int64_t k) {
  auto* b = static_cast<uint8_t*>(dst);
  const int64_t nb = k / dtype_block(t);
  switch (t) {
    case DType::Q8_0: quant_q8_0(src, b, nb); break;
    case DType::Q4_0: quant_q4_0(src, b, nb); break;
    case DType::Q5_0: quant_q5_0(src, b, nb); break;
    case DType::Q4_K: quant_q4_k(src, b, nb); break;
    default: throw std::runtime_error(std::string("cannot quantize to ") + dtype_name(t));
  }
}

}  // namespace kc
