// Inner loops that have an architecture-specific variant (cpu/arch/). The variant is chosen
// once at run time from the CPU's features; KCACHE_SIMD=generic|avx2|avx512|avx512vnni caps the
// choice.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kcache/types.h"

namespace kc {

// Matmul weights are packed in k-major panels of `panel_width` output rows: panel p holds rows
// [p * PW, (p + 1) * PW) as k consecutive groups of PW values (zero rows pad the last panel).
// A kernel computes every output as one sequential fp32 sum over k, whatever the number of
// activation rows, so results are bitwise independent of batch composition.
struct Kernels {
  const char* name;
  int panel_width;
  // out[t * ldo + o] = sum_k x[t * k + kk] * w[o, kk], for o in [o0, o1) (o0 a multiple of
  // panel_width) and t in [0, rows); `panels` is the packed weight.
  void (*matmul_f32)(float* out, int ldo, const float* x, int rows, const float* panels, int k, int o0, int o1);
  void (*matmul_bf16)(float* out, int ldo, const float* x, int rows, const uint16_t* panels, int k, int o0, int o1);
  void (*matmul_f16)(float* out, int ldo, const float* x, int rows, const uint16_t* panels, int k, int o0, int o1);
  // Block-quantized weights stay in GGML's row-major blocks (unless the variant packs them: see
  // pack_quant): a matmul dequantizes a few weight rows at a time to f32 (dequant_row: the k
  // values of one row; types a variant has no unpacking of go through the reference) and
  // multiplies them with matmul_rows:
  // out[t * ldo + o] = x_t · w_o for t < rows and o < n_out, w being n_out f32 rows of k
  // (k a multiple of 32). Each output is one fixed chain of vector FMAs over k and one
  // horizontal sum, whatever the tile it was computed in, so results do not depend on the batch.
  void (*dequant_row)(DType t, const void* src, float* dst, int k);
  void (*matmul_rows)(float* out, int ldo, const float* x, int rows, const float* w, int k, int n_out);
  // The x86 variants' integer path, llama.cpp's: activations rounded to int8 per block of 32
  // (xq, with scale xd and sum xs per block; see quantize_activations), multiplied with the
  // weights' integers 32 at a time and scaled per block:
  // out[t * ldo + o] = sum over blocks of (w scale) * xd * (int dot) [+ (w min) * xd * xs], for o
  // in [o0, o1), every block-quantized type. Each output is the same chain of operations whatever
  // the batch. Null (the generic variant): the dequantizing path above is used.
  // `prep`: what q8_prepare wrote for this call (null for a variant without one). `w`: GGML's
  // blocks, or the variant's own layout when it has one (pack_quant below; o0 is then a multiple of
  // quant_group).
  void (*matmul_q8)(DType t, float* out, int ldo, const int8_t* xq, const float* xd, const int32_t* xs, int rows,
                    const uint8_t* w, int k, int o0, int o1, const uint8_t* prep);
  // Attention over n cache rows of one KV head (row r at r * stride, hd values) for the G query
  // heads that share it (GQA; head g's query at q + g * hd): scores[g * lds + r] = scale *
  // q_g · k_r, and out[g * out_stride ..] += sum_r weights[g * lds + r] * v_r. A variant may read
  // each row once for all G heads; every result is the same chain of operations as for G = 1.
  // ahead: the same head's rows of the tile the caller reads next (at least n rows, the same
  // stride and type), or null; a variant may prefetch its row r as it reads row r. A row at a time,
  // among the arithmetic: a whole tile's prefetches issued at once fill the core's miss buffers
  // and hold up everything behind them (decode attention over 8,000 positions read its cache at
  // 10-13 GB/s a thread that way, 16-20 with the prefetches spread; docs/BENCHMARKS.md).
  void (*dot_rows)(float* scores, int64_t lds, const float* q, int G, const float* k, int n, int stride, int hd, float scale,
                   const void* ahead);
  void (*axpy_rows)(float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const float* v, int n, int stride, int hd,
                    const void* ahead);
  // The same over a 16-bit KV cache's rows (t: F16 or BF16), widened to f32 as they are read.
  void (*dot_rows_16)(DType t, float* scores, int64_t lds, const float* q, int G, const uint16_t* k, int n, int stride, int hd,
                      float scale, const void* ahead);
  void (*axpy_rows_16)(DType t, float* out, int64_t out_stride, const float* weights, int64_t lds, int G, const uint16_t* v, int n,
                       int stride, int hd, const void* ahead);
  // out[0, hd) = sum_r weights[r] * rows[r][0, hd): the value rows top-N attention kept, wherever
  // they are (rows ahead are prefetched: each is a likely cache miss in the host tier).
  void (*weighted_sum_rows)(float* out, const float* weights, const float* const* rows, int n, int hd);
  // The same over kept rows of a 16-bit cache (t: F16 or BF16), widened as they are read.
  void (*weighted_sum_rows_16)(DType t, float* out, const float* weights, const uint16_t* const* rows, int n, int hd);
  // Writes the indices i < n with x[i] >= t to idx, in order; returns how many (top-N's candidates).
  int (*indices_at_least)(int* idx, const float* x, int n, float t);
  // Softmax pieces over n scores: the largest, and x[i] = exp(x[i] - m) in place returning their
  // sum (the SIMD variants use Cephes' polynomial expf, vectorised).
  float (*max)(const float* x, int n);
  float (*exp_sum)(float* x, int n, float m);
  // Optional (null: std::exp per element): out[i] = silu(gate[i]) * up[i].
  void (*swiglu)(float* out, const float* gate, const float* up, size_t n) = nullptr;
  // Optional (null: encode_row): a row of n values rounded to t (F16 or BF16), the same bits as
  // encode_row (the KV cache's store).
  void (*encode_16)(DType t, const float* src, uint16_t* dst, int n) = nullptr;
  // Optional (null: quantize_activations below): the same rounding of activation rows to int8,
  // with the same results bit for bit, in the variant's vectors.
  void (*quantize_q8)(const float* x, int rows, int k, int8_t* xq, float* xd, int32_t* xs) = nullptr;
  // Optional (null: none): lays the rounded activation rows of a call out once per matmul for this
  // variant's matmul_q8 (q8_prep_bytes(t, rows, k) bytes at `prep`, rows being the call's; 0: none
  // for weights of type t), instead of once per task. q8_prepare writes rows [r0, r1) of the call
  // (xq, xd and prep: the call's, from row 0); the layout may depend on t.
  size_t (*q8_prep_bytes)(DType t, int rows, int k) = nullptr;
  void (*q8_prepare)(DType t, int r0, int r1, const int8_t* xq, const float* xd, int k, uint8_t* prep) = nullptr;
  // Optional (null: matmul_q8 reads GGML's row-major blocks as mapped): the variant's own layout of
  // a block-quantized matmul weight, made once when the weight is placed: quant_packed_bytes(t,
  // rows, k) bytes, in groups of quant_group rows; pack_quant writes groups [g0, g1) from GGML's
  // rows (src) and may run for disjoint ranges at once.
  int quant_group = 0;
  size_t (*quant_packed_bytes)(DType t, int64_t rows, int k) = nullptr;
  void (*pack_quant)(DType t, const uint8_t* src, int64_t rows, int k, int64_t g0, int64_t g1, uint8_t* dst) = nullptr;
  // Optional (null: argmax_scalar): the same index as argmax_scalar, in the variant's vectors.
  int (*argmax)(const float* x, int n) = nullptr;
  // Optional (null: kth_largest.h's): the same value as kth_largest.h's kth_largest, in the
  // variant's vectors (KCache's top-N selection; keys: scratch).
  float (*kth_largest)(const float* x, int n, int k, std::vector<uint32_t>& keys) = nullptr;
};

// The index of the first largest of x[0, n) as sampling's greedy path defines it (sample.ts's
// argmax: x[0], then each later value that is larger): a NaN at x[0] wins, a later NaN never does,
// -0 and +0 are equal; 0 for n = 0.
int argmax_scalar(const float* x, int n);

// Rounds each row of x (rows × k, k a multiple of 32) to int8 per block of 32: d = max|x| / 127,
// q = round(x / d), and the block's sum of q (the terms of weight types with a minimum).
void quantize_activations(const float* x, int rows, int k, int8_t* xq, float* xd, int32_t* xs);

const Kernels& generic_kernels();
const Kernels* avx2_kernels();    // nullptr when not compiled in
const Kernels* avx512_kernels();  // nullptr when not compiled in
// avx512 with the integer path on VNNI (avx512vnni.cpp); nullptr when not compiled in
const Kernels* avx512vnni_kernels();
const Kernels& active_kernels();

}  // namespace kc
