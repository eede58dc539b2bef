// Plain data types shared by every backend: weight dtypes, tensor views, model hyperparameters.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kc {

// Float types, and GGML's block-quantized types (the layouts of llama.cpp's ggml-common.h, so a
// GGUF file's tensors are used as stored): Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 hold blocks of 32 values
// with an f16 scale; the K-quants hold super-blocks of 256 with 6- or 8-bit sub-block scales.
enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4, Q4_1 = 5, Q5_0 = 6, Q5_1 = 7, Q4_K = 8, Q5_K = 9, Q6_K = 10 };

// Values per block (1 for float types) and bytes per block.
int dtype_block(DType t);
size_t dtype_block_bytes(DType t);
inline bool dtype_quantized(DType t) { return dtype_block(t) > 1; }
// Bytes of a row of `cols` values; cols must be a multiple of dtype_block(t).
inline size_t dtype_row_bytes(DType t, int64_t cols) { return static_cast<size_t>(cols / dtype_block(t)) * dtype_block_bytes(t); }
const char* dtype_name(DType t);
bool parse_dtype(const std::string& s, DType* out);

// A read-only 2-D weight, row-major: rows = output features, cols = input features.
// `data` points into memory owned by the backend (a mapped file, a host buffer, device memory).
struct Tensor {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t bytes() const { return static_cast<size_t>(rows) * dtype_row_bytes(dtype, cols); }
};

enum class RopeStyle : int {
  Interleaved = 0,  // llama2.c / Meta: elements (2i, 2i+1) rotate together
  HalfSplit = 1,    // Hugging Face rotate_half: elements (i, i + head_dim/2) rotate together
};

struct RopeParams {
  RopeStyle style = RopeStyle::Interleaved;
  double theta = 10000.0;
  // Llama-3 frequency scaling ("rope_type": "llama3"); off when factor <= 0.
  double llama3_factor = 0.0;
  double llama3_low_freq_factor = 1.0;
  double llama3_high_freq_factor = 4.0;
  double llama3_original_max_pos = 8192.0;
};

struct ModelConfig {
  int dim = 0;          // residual stream width
  int hidden_dim = 0;   // FFN width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;   // grouped-query attention: n_heads % n_kv_heads == 0
  int head_dim = 0;
  int vocab_size = 0;
  int max_seq_len = 0;
  float norm_eps = 1e-5f;
  bool qkv_bias = false;  // Qwen2
  RopeParams rope;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// Scalar dtype conversions (round-to-nearest-even), used by the portable paths and loaders.
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// The value Backend::fill_uniform writes at index i: uniform in [lo, hi), a function of
// (seed, i) only (splitmix64; the CUDA kernel computes the same).
inline float uniform_at(uint64_t seed, size_t i, float lo, float hi) {
  uint64_t z = (seed ^ (i * 0x2545f4914f6cdd1dull)) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return lo + (hi - lo) * (static_cast<float>(z >> 40) * (1.0f / 16777216.0f));
}

}  // namespace kc
