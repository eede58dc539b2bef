// GGML's block-quantized formats: the reference (plain, scalar) dequantization that defines what
// each block means, and quantizers for the types kcache can write (quantize-on-load, test files).
// The layouts are llama.cpp's ggml-common.h; the arithmetic of each dequantization follows
// ggml-quants.c's dequantize_row_* so that kcache and llama.cpp read the same numbers from a file.
#pragma once
#include <cstdint>

#include "kcache/types.h"

namespace kc {

// dst[0, k) = the values of one row of `k` elements stored as `t` (k a multiple of its block).
// Works for every DType, float types included.
void dequantize_row(DType t, const void* src, float* dst, int64_t k);

// Whether quantize_row can write `t`: Q8_0, Q4_0, Q5_0 and Q4_K.
bool can_quantize(DType t);
// Writes one row of `k` floats as `t` (k a multiple of its block). Q8_0/Q4_0/Q5_0 follow
// ggml's reference quantizers (round to nearest on a scale set by the block's largest
// magnitude); Q4_K sets each sub-block's scale and minimum from its range.
void quantize_row(DType t, const float* src, void* dst, int64_t k);

// Writes one row of `k` floats as `t`: f32 copied, f16/bf16 rounded to nearest even, block types
// by quantize_row (the KV cache's rows).
void encode_row(DType t, const float* src, void* dst, int64_t k);

// Q4_K/Q5_K: the 6-bit scale and minimum of sub-block j (0..7) from the 12 packed bytes.
inline void k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace kc
