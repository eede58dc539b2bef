#include <cmath>
#include <vector>

#include "ops.h"

namespace kc::cpu {

// One task per (query row, KV head): the query heads of a GQA group share the key/value rows
// they read. Scores live in a per-thread scratch buffer sized to the row's context.
void attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_cache,
               const AttentionBatch& b) {
  const int group = b.n_heads / b.n_kv_heads;
  const int hd = b.head_dim;
  const int kv_dim = b.n_kv_heads * hd;
  const int q_dim = b.n_heads * hd;
  c.pool.parallel_for(b.rows * b.n_kv_heads, [&](int task, int) {
    thread_local std::vector<float> scores;
    const int r = task / b.n_kv_heads;
    const int kvh = task % b.n_kv_heads;
    const int n_ctx = b.row_pos[r] + 1;
    const int32_t* table = b.block_tables + b.table_offset[b.row_seq[r]];
    if (static_cast<int>(scores.size()) < n_ctx) scores.resize(n_ctx);
    for (int g = 0; g < group; ++g) {
      const int h = kvh * group + g;
      const float* qh = q + static_cast<int64_t>(r) * q_dim + h * hd;
      float* oh = out + static_cast<int64_t>(r) * q_dim + h * hd;
      float mx = -INFINITY;
      for (int t = 0; t < n_ctx; ++t) {
        const int64_t slot = static_cast<int64_t>(table[t / b.block_size]) * b.block_size + t % b.block_size;
        const float s = c.k.dot(qh, k_cache + slot * kv_dim + kvh * hd, hd) * b.scale;
        scores[t] = s;
        if (s > mx) mx = s;
      }
      float sum = 0.0f;
      for (int t = 0; t < n_ctx; ++t) {
        scores[t] = std::exp(scores[t] - mx);
        sum += scores[t];
      }
      const float inv = 1.0f / sum;
      for (int i = 0; i < hd; ++i) oh[i] = 0.0f;
      for (int t = 0; t < n_ctx; ++t) {
        const int64_t slot = static_cast<int64_t>(table[t / b.block_size]) * b.block_size + t % b.block_size;
        c.k.axpy(oh, scores[t] * inv, v_cache + slot * kv_dim + kvh * hd, hd);
      }
    }
  });
}

}  // namespace kc::cpu
