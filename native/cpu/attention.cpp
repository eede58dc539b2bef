#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

// One (query row, query head) of a batched attention call, with its view of the paged cache.
struct HeadTask {
  int n_ctx;
  int kv_off;
  int kv_dim;
  int bs;
  int hd;
  const int32_t* table;
  const float* qh;
  float* oh;

  int block_rows(int t0) const { return std::min(bs, n_ctx - t0); }
  const float* block_base(const float* cache, int t0) const {
    return cache + static_cast<int64_t>(table[t0 / bs]) * bs * kv_dim + kv_off;
  }
  const float* row(const float* cache, int t) const { return block_base(cache, t - t % bs) + (t % bs) * kv_dim; }
};

HeadTask head_task(const AttentionBatch& b, float* out, const float* q, int task) {
  const int group = b.n_heads / b.n_kv_heads;
  const int r = task / b.n_heads;
  const int h = task % b.n_heads;
  const int q_dim = b.n_heads * b.head_dim;
  HeadTask t;
  t.n_ctx = b.row_pos[r] + 1;
  t.kv_off = (h / group) * b.head_dim;
  t.kv_dim = b.n_kv_heads * b.head_dim;
  t.bs = b.block_size;
  t.hd = b.head_dim;
  t.table = b.block_tables + b.table_offset[b.row_seq[r]];
  t.qh = q + static_cast<int64_t>(r) * q_dim + h * b.head_dim;
  t.oh = out + static_cast<int64_t>(r) * q_dim + h * b.head_dim;
  return t;
}

// scores[t] = q·k_t * scale for every cached position, a cache block at a time.
void score_all(Ctx& c, const HeadTask& t, const float* k_cache, float scale, float* scores) {
  for (int t0 = 0; t0 < t.n_ctx; t0 += t.bs)
    c.k.dot_rows(scores + t0, t.qh, t.block_base(k_cache, t0), t.block_rows(t0), t.kv_dim, t.hd, scale);
}

// Full attention for one head: softmax over every score, then sum every value row.
void full_head(Ctx& c, const HeadTask& t, const float* k_cache, const float* v_cache, float scale,
               std::vector<float>& scores) {
  if (static_cast<int>(scores.size()) < t.n_ctx) scores.resize(t.n_ctx);
  score_all(c, t, k_cache, scale, scores.data());
  float mx = -INFINITY;
  for (int i = 0; i < t.n_ctx; ++i) mx = std::max(mx, scores[i]);
  float sum = 0.0f;
  for (int i = 0; i < t.n_ctx; ++i) {
    scores[i] = std::exp(scores[i] - mx);
    sum += scores[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < t.n_ctx; ++i) scores[i] *= inv;
  for (int i = 0; i < t.hd; ++i) t.oh[i] = 0.0f;
  for (int t0 = 0; t0 < t.n_ctx; t0 += t.bs)
    c.k.axpy_rows(t.oh, scores.data() + t0, t.block_base(v_cache, t0), t.block_rows(t0), t.kv_dim, t.hd);
}

// Top-N attention for one head. Selection runs on the raw scores (softmax is monotonic) with a
// size-N min-heap: one comparison per score in the common case. Ties keep the earlier position.
// Kept rows are summed in position order.
void topn_head(Ctx& c, const HeadTask& t, const float* k_cache, const float* v_host, float scale, int topn,
               bool renormalize, std::vector<float>& scores, std::vector<std::pair<float, int>>& heap) {
  if (static_cast<int>(scores.size()) < t.n_ctx) scores.resize(t.n_ctx);
  score_all(c, t, k_cache, scale, scores.data());
  auto greater = [](const std::pair<float, int>& a, const std::pair<float, int>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  heap.clear();
  for (int i = 0; i < topn; ++i) heap.emplace_back(scores[i], i);
  std::make_heap(heap.begin(), heap.end(), greater);  // front: the smallest kept score
  for (int i = topn; i < t.n_ctx; ++i) {
    if (scores[i] > heap.front().first) {
      std::pop_heap(heap.begin(), heap.end(), greater);
      heap.back() = {scores[i], i};
      std::push_heap(heap.begin(), heap.end(), greater);
    }
  }
  std::sort(heap.begin(), heap.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  float mx = -INFINITY;
  for (const auto& e : heap) mx = std::max(mx, e.first);
  float sum = 0.0f;
  if (renormalize) {
    for (const auto& e : heap) sum += std::exp(e.first - mx);
  } else {
    for (int i = 0; i < t.n_ctx; ++i) sum += std::exp(scores[i] - mx);
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < t.hd; ++i) t.oh[i] = 0.0f;
  for (const auto& e : heap) {
    const float w = std::exp(e.first - mx) * inv;
    c.k.axpy_rows(t.oh, &w, t.row(v_host, e.second), 1, t.kv_dim, t.hd);
  }
}

}  // namespace

// One task per (query row, query head), so a single decode row still spreads over all
// threads. Keys and values are visited a cache block at a time (rows of one block are
// contiguous); scores live in a per-thread scratch buffer sized to the row's context.
void attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_cache,
               const AttentionBatch& b) {
  c.pool.parallel_for(b.rows * b.n_heads, [&](int task, int) {
    thread_local std::vector<float> scores;
    full_head(c, head_task(b, out, q, task), k_cache, v_cache, b.scale, scores);
  });
}

void kcache_attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_host,
                      const AttentionBatch& b) {
  c.pool.parallel_for(b.rows * b.n_heads, [&](int task, int) {
    thread_local std::vector<float> scores;
    thread_local std::vector<std::pair<float, int>> heap;
    const HeadTask t = head_task(b, out, q, task);
    const int topn = b.row_topn ? b.row_topn[task / b.n_heads] : 0;
    if (topn <= 0 || topn >= t.n_ctx) full_head(c, t, k_cache, v_host, b.scale, scores);
    else topn_head(c, t, k_cache, v_host, b.scale, topn, b.topn_renormalize, scores, heap);
  });
}

}  // namespace kc::cpu
