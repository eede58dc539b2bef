#include <cmath>
#include <vector>

#include "ops.h"

namespace kc::cpu {

// One task per (query row, query head), so a single decode row still spreads over all
// threads. Keys and values are visited a cache block at a time (rows of one block are
// contiguous); scores live in a per-thread scratch buffer sized to the row's context.
void attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_cache,
               const AttentionBatch& b) {
  const int group = b.n_heads / b.n_kv_heads;
  const int hd = b.head_dim;
  const int bs = b.block_size;
  const int kv_dim = b.n_kv_heads * hd;
  const int q_dim = b.n_heads * hd;
  c.pool.parallel_for(b.rows * b.n_heads, [&](int task, int) {
    thread_local std::vector<float> scores;
    const int r = task / b.n_heads;
    const int h = task % b.n_heads;
    const int kv_off = (h / group) * hd;
    const int n_ctx = b.row_pos[r] + 1;
    const int32_t* table = b.block_tables + b.table_offset[b.row_seq[r]];
    if (static_cast<int>(scores.size()) < n_ctx) scores.resize(n_ctx);
    const float* qh = q + static_cast<int64_t>(r) * q_dim + h * hd;
    float* oh = out + static_cast<int64_t>(r) * q_dim + h * hd;
    auto block_rows = [&](int t0) { return std::min(bs, n_ctx - t0); };
    auto block_base = [&](const float* cache, int t0) {
      return cache + static_cast<int64_t>(table[t0 / bs]) * bs * kv_dim + kv_off;
    };
    for (int t0 = 0; t0 < n_ctx; t0 += bs) c.k.dot_rows(scores.data() + t0, qh, block_base(k_cache, t0), block_rows(t0), kv_dim, hd, b.scale);
    float mx = -INFINITY;
    for (int t = 0; t < n_ctx; ++t) mx = std::max(mx, scores[t]);
    float sum = 0.0f;
    for (int t = 0; t < n_ctx; ++t) {
      scores[t] = std::exp(scores[t] - mx);
      sum += scores[t];
    }
    const float inv = 1.0f / sum;
    for (int t = 0; t < n_ctx; ++t) scores[t] *= inv;
    for (int i = 0; i < hd; ++i) oh[i] = 0.0f;
    for (int t0 = 0; t0 < n_ctx; t0 += bs) c.k.axpy_rows(oh, scores.data() + t0, block_base(v_cache, t0), block_rows(t0), kv_dim, hd);
  });
}

}  // namespace kc::cpu
