#include "models.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace kc::testing {
namespace {
std::string layer(int l, const char* name) { return "layers." + std::to_string(l) + "." + name; }
}  // namespace

EngineOptions llama2c_model(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error(path + ": cannot open");
  int32_t h[7];
  const size_t got = std::fread(h, sizeof(int32_t), 7, f);
  std::fclose(f);
  if (got != 7) throw std::runtime_error(path + ": truncated header");
  EngineOptions o;
  ModelConfig& c = o.config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab_size = std::abs(h[5]);
  c.max_seq_len = h[6];
  c.head_dim = c.dim / c.n_heads;
  c.rope.style = RopeStyle::Interleaved;
  const bool shared = h[5] > 0;
  uint64_t off = 28;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols) {
    TensorSpec s;
    s.name = name;
    s.dtype = DType::F32;
    s.rows = rows;
    s.cols = cols;
    s.file = path;
    s.offset = off;
    off += static_cast<uint64_t>(rows * cols) * 4;
    o.tensors.push_back(s);
  };
  auto stacked = [&](const char* name, int64_t rows, int64_t cols) {
    for (int l = 0; l < c.n_layers; ++l) add(layer(l, name), rows, cols);
  };
  add("tok_embeddings", c.vocab_size, c.dim);
  stacked("attention_norm", 1, c.dim);
  stacked("wq", c.q_dim(), c.dim);
  stacked("wk", c.kv_dim(), c.dim);
  stacked("wv", c.kv_dim(), c.dim);
  stacked("wo", c.dim, c.q_dim());
  stacked("ffn_norm", 1, c.dim);
  stacked("w1", c.hidden_dim, c.dim);
  stacked("w2", c.dim, c.hidden_dim);
  stacked("w3", c.hidden_dim, c.dim);
  add("norm", 1, c.dim);
  off += static_cast<uint64_t>(c.max_seq_len) * (c.head_dim / 2) * 4 * 2;
  if (!shared) add("output", c.vocab_size, c.dim);
  return o;
}

EngineOptions dummy_model(const std::string& preset, DType dtype, uint64_t seed) {
  EngineOptions o;
  ModelConfig& c = o.config;
  bool tied = true;
  if (preset == "tiny") {
    c.dim = 64, c.hidden_dim = 176, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 512, c.max_seq_len = 2048;
  } else if (preset == "smol135") {
    c.dim = 576, c.hidden_dim = 1536, c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.vocab_size = 49152, c.max_seq_len = 8192;
  } else if (preset == "llama1b") {
    c.dim = 2048, c.hidden_dim = 8192, c.n_layers = 16, c.n_heads = 32, c.n_kv_heads = 8, c.vocab_size = 32000;
    c.max_seq_len = 32768;  // the TypeScript preset stops at 8192; the GPU benchmark needs 32k contexts
    tied = false;
  } else {
    throw std::runtime_error("unknown dummy preset " + preset);
  }
  c.head_dim = c.dim / c.n_heads;
  c.rope.style = RopeStyle::HalfSplit;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    TensorSpec s;
    s.name = name, s.dtype = dtype, s.rows = rows, s.cols = cols, s.seed = seed, s.scale = 1.0f / std::sqrt(static_cast<float>(cols));
    o.tensors.push_back(s);
  };
  auto norm = [&](const std::string& name, int64_t n) {
    TensorSpec s;
    s.name = name, s.dtype = dtype, s.rows = 1, s.cols = n, s.seed = seed, s.scale = 0.1f, s.shift = 1.0f;
    o.tensors.push_back(s);
  };
  TensorSpec emb;
  emb.name = "tok_embeddings", emb.dtype = dtype, emb.rows = c.vocab_size, emb.cols = c.dim, emb.seed = seed, emb.scale = 1.0f;
  o.tensors.push_back(emb);
  for (int l = 0; l < c.n_layers; ++l) {
    norm(layer(l, "attention_norm"), c.dim);
    matrix(layer(l, "wq"), c.q_dim(), c.dim);
    matrix(layer(l, "wk"), c.kv_dim(), c.dim);
    matrix(layer(l, "wv"), c.kv_dim(), c.dim);
    matrix(layer(l, "wo"), c.dim, c.q_dim());
    norm(layer(l, "ffn_norm"), c.dim);
    matrix(layer(l, "w1"), c.hidden_dim, c.dim);
    matrix(layer(l, "w2"), c.dim, c.hidden_dim);
    matrix(layer(l, "w3"), c.hidden_dim, c.dim);
  }
  norm("norm", c.dim);
  if (!tied) matrix("output", c.vocab_size, c.dim);
  return o;
}
}  // namespace kc::testing
