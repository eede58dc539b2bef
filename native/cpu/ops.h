// CPU implementations of the ops in kcache/backend.h, one file each.
#pragma once
#include <vector>

#include "kcache/backend.h"
#include "kernels.h"
#include "thread_pool.h"

namespace kc::cpu {

// cos and sin of each rotation pair's angle at positions [0, positions), for one RoPE
// configuration and head size, computed once (in double, from rope_inv_freq, as rope did for every
// call) and then read by every layer's q and k at every step: vLLM's cos_sin_cache, grown to the
// largest position asked for. 60 calls a smol135 decode step each took 32 sin/cos pairs and 32
// pow; a 512-token prefill spent ~6% of its time there.
struct RopeTable {
  RopeParams params;
  int head_dim = 0;
  int positions = 0;
  std::vector<float> cs, sn;  // [pos * (head_dim / 2) + i]
};

struct Ctx {
  ThreadPool& pool;
  const Kernels& k;
  RopeTable rope{};
};

void embedding(Ctx& c, float* out, const Tensor& table, const int32_t* tokens, int n);
void rmsnorm(Ctx& c, float* out, const float* x, const float* w, int rows, int dim, float eps);
void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias);
// outs[i] = x · ws[i]^T (+ biases[i]) for weights of the same input width, in one parallel loop.
void matmul_multi(Ctx& c, float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count);
void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p);
void swiglu(Ctx& c, float* out, const float* gate, const float* up, size_t n);
void add(Ctx& c, float* x, const float* y, size_t n);
void get_rows(Ctx& c, float* out, const float* x, const int32_t* idx, int n, int dim);
void kv_store(Ctx& c, void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots,
              int rows, int kv_dim, DType kv_dtype);
void attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache,
               const AttentionBatch& b);
void kcache_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_host,
                      const AttentionBatch& b);

// Splits [0, n) into chunks of `grain` and runs them on the pool.
template <typename F>
void parallel_ranges(Ctx& c, size_t n, size_t grain, F&& f) {
  if (n == 0) return;
  int tasks = static_cast<int>((n + grain - 1) / grain);
  c.pool.parallel_for(tasks, [&](int task, int) {
    size_t b = static_cast<size_t>(task) * grain;
    size_t e = b + grain < n ? b + grain : n;
    f(b, e);
  });
}

}  // namespace kc::cpu
