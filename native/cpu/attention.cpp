#include <algorithm>
#include <cmath>
#include <cstring>
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

// An order-preserving map from float to uint32 (larger float, larger key).
inline uint32_t order_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The indices of the `topn` largest scores, in position order; ties keep the earlier position.
// Radix select on the order keys (11, 11 and 10 bits): one histogram pass over every score, the
// later levels only over the boundary bucket's candidates, then one pass that collects. A heap
// of N was measurably slower at N = 256 (each of its ~N·ln(n/N) replacements costs log N).
void select_topn(const float* scores, int n, int topn, std::vector<uint32_t>& keys, std::vector<int>& cand,
                 std::vector<int>& out) {
  keys.resize(n);
  uint32_t hist[2048] = {};
  for (int i = 0; i < n; ++i) {
    keys[i] = order_key(scores[i]);
    hist[keys[i] >> 21]++;
  }
  int above = 0, b1 = 2047;
  while (above + static_cast<int>(hist[b1]) < topn) above += hist[b1--];
  cand.clear();
  for (int i = 0; i < n; ++i)
    if ((keys[i] >> 21) == static_cast<uint32_t>(b1)) cand.push_back(i);
  std::fill(hist, hist + 2048, 0u);
  for (int i : cand) hist[(keys[i] >> 10) & 0x7FF]++;
  int b2 = 2047;
  while (above + static_cast<int>(hist[b2]) < topn) above += hist[b2--];
  std::fill(hist, hist + 1024, 0u);
  for (int i : cand)
    if (((keys[i] >> 10) & 0x7FF) == static_cast<uint32_t>(b2)) hist[keys[i] & 0x3FF]++;
  int b3 = 1023;
  while (above + static_cast<int>(hist[b3]) < topn) above += hist[b3--];
  const uint32_t threshold = (static_cast<uint32_t>(b1) << 21) | (static_cast<uint32_t>(b2) << 10) | static_cast<uint32_t>(b3);
  int take_equal = topn - above;
  out.clear();
  for (int i = 0; i < n; ++i) {
    if (keys[i] > threshold || (keys[i] == threshold && take_equal-- > 0)) out.push_back(i);
  }
}

struct TopNScratch {
  std::vector<float> scores;
  std::vector<uint32_t> keys;
  std::vector<int> cand, kept;
};

// Top-N attention for one head: score every key, keep the N largest, and sum only their values.
void topn_head(Ctx& c, const HeadTask& t, const float* k_cache, const float* v_host, float scale, int topn,
               bool renormalize, TopNScratch& w) {
  if (static_cast<int>(w.scores.size()) < t.n_ctx) w.scores.resize(t.n_ctx);
  const float* scores = w.scores.data();
  score_all(c, t, k_cache, scale, w.scores.data());
  select_topn(scores, t.n_ctx, topn, w.keys, w.cand, w.kept);
  float mx = -INFINITY;
  for (int i : w.kept) mx = std::max(mx, scores[i]);
  float sum = 0.0f;
  if (renormalize) {
    for (int i : w.kept) sum += std::exp(scores[i] - mx);
  } else {
    for (int i = 0; i < t.n_ctx; ++i) sum += std::exp(scores[i] - mx);
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < t.hd; ++i) t.oh[i] = 0.0f;
  for (int i : w.kept) {
    const float wt = std::exp(scores[i] - mx) * inv;
    c.k.axpy_rows(t.oh, &wt, t.row(v_host, i), 1, t.kv_dim, t.hd);
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
    thread_local TopNScratch w;
    const HeadTask t = head_task(b, out, q, task);
    const int topn = b.row_topn ? b.row_topn[task / b.n_heads] : 0;
    if (topn <= 0 || topn >= t.n_ctx) full_head(c, t, k_cache, v_host, b.scale, w.scores);
    else topn_head(c, t, k_cache, v_host, b.scale, topn, b.topn_renormalize, w);
  });
}

}  // namespace kc::cpu
