#pragma once
#include <string>
#include <vector>

#include "kcache/types.h"

namespace kc {

// Decode attention of one token through a model's layers, on random keys and values in a paged
// cache (blocks in shuffled order), as `kcache bench kcache` measures it. Each layer has its own
// cache, so the whole context of every layer is streamed as in a real decode step.
struct AttentionBenchOptions {
  int n_layers = 30, n_heads = 9, n_kv_heads = 3, head_dim = 64, block_size = 16;
  int context = 1024;
  int threads = 0;
  int iters = 5;
  bool renormalize = true;
  std::string backend = "cpu";  // or "cuda"
  int batch = 1;                // decode rows (sequences of `context` tokens each, own blocks)
  std::vector<int> topns;  // 0: full attention (V in backend memory); > 0: KCache top-N
  DType kv_dtype = DType::F32;  // how the caches store rows (f32, f16, bf16 or q8_0)
};

// Best-of-iters seconds per token for each entry of `topns`.
std::vector<double> bench_decode_attention(const AttentionBenchOptions& o);

}  // namespace kc
