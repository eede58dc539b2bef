// Paged attention on the CPU: full attention, and KCache's top-N attention for decode rows.
//
// Work is split into (row, chunk of at most kChunk positions) tasks, so one decode row spreads
// over every thread, and the query heads that share a KV head (GQA) read the cache from
// memory once: a tile of rows stays in L1 while every head scores (and sums) it.
//  - Full attention: a task keeps, per query head, its chunk's largest score, softmax sum and
//    weighted sum of values (flash-decoding's partials); a second pass merges a row's chunks.
//  - Top-N (KCache decode rows): the tasks write every score; the second pass selects each
//    head's N largest and reads only those value rows, which live in the host tier.
// Chunks are cut at fixed positions, so a row's result does not depend on what else is in the
// batch, and a top-N row whose N covers its context takes the full path bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

constexpr int kChunk = 512;
constexpr int kMinChunk = 128;

// A row's chunk length: kChunk, or for a context shorter than kChunk per thread, the context split
// evenly over the threads (in multiples of 16, at least kMinChunk). It depends on the row and the
// pool only, never on the rest of the batch.
int chunk_length(int n_ctx, int threads) {
  if (n_ctx >= threads * kChunk) return kChunk;
  const int even = (n_ctx + threads - 1) / threads;
  return std::max(kMinChunk, (even + 15) / 16 * 16);
}

struct Row {
  int n_ctx;
  int chunk_len;
  int chunks;
  int keep;  // > 0: a top-N row keeping this many values per head
  const int32_t* table;
  int64_t scratch;  // where the row's partials (full) or scores (top-N) start in the call's scratch
};

struct Shape {
  int n_heads, group, hd, bs, kv_dim, q_dim;
  float scale;
  explicit Shape(const AttentionBatch& b)
      : n_heads(b.n_heads),
        group(b.n_heads / b.n_kv_heads),
        hd(b.head_dim),
        bs(b.block_size),
        kv_dim(b.n_kv_heads * b.head_dim),
        q_dim(b.n_heads * b.head_dim),
        scale(b.scale) {}
  // Row t of a sequence's cache (K or V) for KV head kvh.
  const float* at(const float* cache, const int32_t* table, int t, int kvh) const {
    return cache + (static_cast<int64_t>(table[t / bs]) * bs + t % bs) * kv_dim + static_cast<int64_t>(kvh) * hd;
  }
  int partial_floats() const { return hd + 2; }  // max score, softmax sum, weighted values
};

// Calls f(t, n) for the tiles of positions [t, t + n) in [t0, t1): at most kTile rows, all in one
// cache block. Each tile is visited by every head before the next (a tile's rows for all KV heads
// are one contiguous run of memory), and the rows kAhead positions on are prefetched. Against
// whole blocks head by head and no prefetch, this doubled the rate keys stream from memory
// (21 against 10 GB/s on one core of the 2-vCPU EPYC VM).
constexpr int kTile = 8;
constexpr int kAhead = 16;

template <typename F>
void for_tiles(const Shape& s, const float* cache, const int32_t* table, int t0, int t1, F&& f) {
  for (int t = t0; t < t1;) {
    const int n = std::min({t1 - t, s.bs - t % s.bs, kTile});
    for (int p = t + kAhead; p < std::min(t1, t + kAhead + n); ++p) {
      const char* row = reinterpret_cast<const char*>(s.at(cache, table, p, 0));
      for (int64_t b = 0; b < static_cast<int64_t>(s.kv_dim) * 4; b += 64) __builtin_prefetch(row + b);
    }
    f(t, n);
    t += n;
  }
}

// One (row, chunk) task: every query head over the chunk's positions, a tile at a time.
void chunk_task(Ctx& c, const Shape& s, const Row& row, int r, int chunk, const float* q, const float* k_cache,
                const float* v_cache, float* out, float* scratch) {
  thread_local std::vector<float> local;
  const int t0 = chunk * row.chunk_len;
  const int t1 = std::min(row.n_ctx, t0 + row.chunk_len);
  const int len = t1 - t0;
  const float* qr = q + static_cast<int64_t>(r) * s.q_dim;
  float* sc;
  int64_t lds;
  if (row.keep > 0) {  // every score of the row, for the selection pass
    sc = scratch + row.scratch + t0;
    lds = row.n_ctx;
  } else {
    local.resize(static_cast<size_t>(s.n_heads) * kChunk);
    sc = local.data();
    lds = kChunk;
  }
  for_tiles(s, k_cache, row.table, t0, t1, [&](int t, int n) {
    for (int h = 0; h < s.n_heads; ++h)
      c.k.dot_rows(sc + h * lds + (t - t0), qr + h * s.hd, s.at(k_cache, row.table, t, h / s.group), n, s.kv_dim, s.hd,
                   s.scale);
  });
  if (row.keep > 0) return;

  // Full attention: softmax partials of this chunk; a row of one chunk writes its output here.
  const bool whole = row.chunks == 1;
  auto acc_of = [&](int h) {
    return whole ? out + static_cast<int64_t>(r) * s.q_dim + static_cast<int64_t>(h) * s.hd
                 : scratch + row.scratch + (static_cast<int64_t>(h) * row.chunks + chunk) * s.partial_floats() + 2;
  };
  thread_local std::vector<float> sums;
  sums.resize(s.n_heads);
  for (int h = 0; h < s.n_heads; ++h) {
    float* sh = sc + h * lds;
    const float m = c.k.max(sh, len);
    sums[h] = c.k.exp_sum(sh, len, m);
    float* acc = acc_of(h);
    if (!whole) {
      acc[-2] = m;
      acc[-1] = sums[h];
    }
    std::fill(acc, acc + s.hd, 0.0f);
  }
  for_tiles(s, v_cache, row.table, t0, t1, [&](int t, int n) {
    for (int h = 0; h < s.n_heads; ++h)
      c.k.axpy_rows(acc_of(h), sc + h * lds + (t - t0), s.at(v_cache, row.table, t, h / s.group), n, s.kv_dim, s.hd);
  });
  if (whole) {
    for (int h = 0; h < s.n_heads; ++h) {
      float* o = acc_of(h);
      const float inv = 1.0f / sums[h];
      for (int i = 0; i < s.hd; ++i) o[i] *= inv;
    }
  }
}

// out = the chunks' weighted values, each rescaled to the row's largest score, over the total sum.
void merge_head(const Shape& s, const Row& row, int h, const float* scratch, float* o) {
  const float* p = scratch + row.scratch + static_cast<int64_t>(h) * row.chunks * s.partial_floats();
  float m = -INFINITY;
  for (int ch = 0; ch < row.chunks; ++ch) m = std::max(m, p[ch * s.partial_floats()]);
  float sum = 0.0f;
  std::fill(o, o + s.hd, 0.0f);
  for (int ch = 0; ch < row.chunks; ++ch) {
    const float* pc = p + ch * s.partial_floats();
    const float w = std::exp(pc[0] - m);
    sum += w * pc[1];
    for (int i = 0; i < s.hd; ++i) o[i] += w * pc[2 + i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < s.hd; ++i) o[i] *= inv;
}

struct TopNScratch {
  std::vector<float> sample;
  std::vector<int> cand;
  std::vector<float> weights;
  std::vector<const float*> rows;
};

// The indices of the `keep` largest of n scores (ties: the earlier position), in position order.
// A threshold is read off a fixed sample of the scores, at a rank that leaves about 1.25 x keep
// scores above it; one pass (compress-stores on AVX-512) collects those candidates, and the exact
// keep-th largest among them finishes. Every score equal to the keep-th is a candidate, so taking
// the earliest of them is the global tie rule. Should the sample mislead (fewer than `keep`
// candidates), every index is a candidate. This replaced a three-pass radix select: at 8k
// positions and N = 256 it reads the scores once where that read them three times.
void select_topn(Ctx& c, const float* sc, int n, int keep, TopNScratch& w) {
  std::vector<int>& cand = w.cand;
  cand.resize(n);
  int count = 0;
  constexpr int kSample = 256;
  if (n >= 4 * keep && n >= 4 * kSample) {
    w.sample.resize(kSample);
    for (int j = 0; j < kSample; ++j) w.sample[j] = sc[static_cast<int64_t>(j) * n / kSample];
    const int rank = std::min(kSample, static_cast<int>(1.25 * keep * kSample / n) + 6);
    std::nth_element(w.sample.begin(), w.sample.begin() + (rank - 1), w.sample.end(), std::greater<float>());
    count = c.k.indices_at_least(cand.data(), sc, n, w.sample[rank - 1]);
  }
  if (count < keep) {
    for (int i = 0; i < n; ++i) cand[i] = i;
    count = n;
  }
  w.sample.resize(count);
  for (int i = 0; i < count; ++i) w.sample[i] = sc[cand[i]];
  std::nth_element(w.sample.begin(), w.sample.begin() + (keep - 1), w.sample.end(), std::greater<float>());
  const float kth = w.sample[keep - 1];
  int above = 0;
  for (int i = 0; i < count; ++i) above += sc[cand[i]] > kth;
  int equal = keep - above;  // how many scores equal to the keep-th largest to take, earliest first
  int kept = 0;
  for (int i = 0; i < count; ++i) {
    const float v = sc[cand[i]];
    if (v > kth || (v == kth && equal-- > 0)) cand[kept++] = cand[i];
  }
  cand.resize(keep);
}

// Top-N attention for one (row, query head) whose scores the chunk tasks wrote.
void topn_head(Ctx& c, const Shape& s, const Row& row, int h, float* scratch, const float* v_host, bool renormalize,
               float* o) {
  thread_local TopNScratch w;
  float* sc = scratch + row.scratch + static_cast<int64_t>(h) * row.n_ctx;
  select_topn(c, sc, row.n_ctx, row.keep, w);
  float m = -INFINITY;
  for (int i : w.cand) m = std::max(m, sc[i]);  // the largest score overall
  w.weights.resize(row.keep);
  float sum = 0.0f;
  for (int k = 0; k < row.keep; ++k) {
    w.weights[k] = std::exp(sc[w.cand[k]] - m);
    sum += w.weights[k];
  }
  if (!renormalize) sum = c.k.exp_sum(sc, row.n_ctx, m);  // the kept weights' share of the full softmax
  const float inv = 1.0f / sum;
  const int kvh = h / s.group;
  w.rows.resize(row.keep);
  for (int k = 0; k < row.keep; ++k) {
    w.weights[k] *= inv;
    w.rows[k] = s.at(v_host, row.table, w.cand[k], kvh);
  }
  c.k.weighted_sum_rows(o, w.weights.data(), w.rows.data(), row.keep, s.hd);
}

// The scratch (top-N scores, chunk partials) one pass over a group of rows may use: a long prefill
// chunk at a long context would otherwise want gigabytes of partials at once (2,048 rows x 32 heads
// x 60 chunks); its rows are then done a group at a time, which changes no row's result.
// KCACHE_ATTENTION_SCRATCH_MB overrides the 64 MiB (0: one row at a time; the tests use it).
int64_t scratch_cap_floats() {
  static const int64_t cap = [] {
    const char* e = std::getenv("KCACHE_ATTENTION_SCRATCH_MB");
    return e ? std::max<int64_t>(0, std::atoll(e)) << 18 : int64_t{64} << 18;
  }();
  return cap;
}

void run(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_cache, const AttentionBatch& b) {
  const Shape s(b);
  // The calling thread's buffers, reused across calls; the tasks see them through these references
  // (a lambda names a thread_local of the thread it runs on, not of the caller).
  thread_local std::vector<Row> rows_tls;
  thread_local std::vector<int> first_tls, second_tls;
  thread_local std::vector<float> scratch_tls;
  std::vector<Row>& rows = rows_tls;
  std::vector<int>& first_task = first_tls;  // chunk tasks of row g0 + i: [first_task[i], first_task[i + 1])
  std::vector<int>& second = second_tls;     // rows with a second pass (top-N, or full over several chunks)
  std::vector<float>& scratch = scratch_tls;
  rows.resize(b.rows);
  for (int r = 0; r < b.rows; ++r) {
    Row& row = rows[r];
    row.n_ctx = b.row_pos[r] + 1;
    row.chunk_len = chunk_length(row.n_ctx, c.pool.size());
    row.chunks = (row.n_ctx + row.chunk_len - 1) / row.chunk_len;
    const int topn = b.row_topn ? b.row_topn[r] : 0;
    row.keep = topn > 0 && topn < row.n_ctx ? topn : 0;
    row.table = b.block_tables + b.table_offset[b.row_seq[r]];
  }
  auto scratch_of = [&](const Row& row) -> int64_t {
    if (row.keep > 0) return static_cast<int64_t>(s.n_heads) * row.n_ctx;
    if (row.chunks > 1) return static_cast<int64_t>(s.n_heads) * row.chunks * s.partial_floats();
    return 0;
  };
  for (int g0 = 0; g0 < b.rows;) {
    // rows [g0, g1): as many as fit the scratch cap, at least one
    int g1 = g0;
    int64_t floats = 0;
    first_task.assign(1, 0);
    second.clear();
    while (g1 < b.rows && (g1 == g0 || floats + scratch_of(rows[g1]) <= scratch_cap_floats())) {
      Row& row = rows[g1];
      row.scratch = floats;
      floats += scratch_of(row);
      if (row.keep > 0 || row.chunks > 1) second.push_back(g1);
      first_task.push_back(first_task.back() + row.chunks);
      ++g1;
    }
    if (static_cast<int64_t>(scratch.size()) < floats) scratch.resize(floats);
    float* sp = scratch.data();
    c.pool.parallel_for(first_task.back(), [&](int task, int) {
      const int i = static_cast<int>(std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin()) - 1;
      chunk_task(c, s, rows[g0 + i], g0 + i, task - first_task[i], q, k_cache, v_cache, out, sp);
    });
    if (!second.empty()) {
      c.pool.parallel_for(static_cast<int>(second.size()) * s.n_heads, [&](int task, int) {
        const int r = second[task / s.n_heads];
        const int h = task % s.n_heads;
        float* o = out + static_cast<int64_t>(r) * s.q_dim + static_cast<int64_t>(h) * s.hd;
        if (rows[r].keep > 0) topn_head(c, s, rows[r], h, sp, v_cache, b.topn_renormalize, o);
        else merge_head(s, rows[r], h, sp, o);
      });
    }
    g0 = g1;
  }
}

}  // namespace

void attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_cache,
               const AttentionBatch& b) {
  AttentionBatch full = b;
  full.row_topn = nullptr;
  run(c, out, q, k_cache, v_cache, full);
}

void kcache_attention(Ctx& c, float* out, const float* q, const float* k_cache, const float* v_host,
                      const AttentionBatch& b) {
  run(c, out, q, k_cache, v_host, b);
}

}  // namespace kc::cpu
