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
// A 16-bit cache is read as it is, widened to f32 in registers; a q8_0 cache a tile at a time,
// the tile's rows (every KV head) dequantized to f32 once in L1. Products and sums are f32.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kth_largest.h"
#include "ops.h"

namespace kc::cpu {

namespace {

constexpr int kChunk = 512;
constexpr int kMinChunk = 128;

// A row's chunk length: its context cut into a multiple of `threads` chunks of at most kChunk
// positions (in multiples of 16, at least kMinChunk), so that a lone decode row gives each thread
// the same share (1,262 positions in chunks of 512, 512 and 238 kept one of two threads waiting
// for a third of the time). It depends on the row and the pool only, never on the rest of the batch.
int chunk_length(int n_ctx, int threads) {
  const int chunks = threads * ((n_ctx + threads * kChunk - 1) / (threads * kChunk));
  const int len = (n_ctx + chunks - 1) / chunks;
  return std::max(kMinChunk, (len + 15) / 16 * 16);
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
  DType dtype;
  size_t row_bytes;
  explicit Shape(const AttentionBatch& b)
      : n_heads(b.n_heads),
        group(b.n_heads / b.n_kv_heads),
        hd(b.head_dim),
        bs(b.block_size),
        kv_dim(b.n_kv_heads * b.head_dim),
        q_dim(b.n_heads * b.head_dim),
        scale(b.scale),
        dtype(b.kv_dtype),
        row_bytes(dtype_row_bytes(b.kv_dtype, b.n_kv_heads * b.head_dim)) {}
  // Row t of a sequence's cache (K or V), as stored.
  const uint8_t* row(const void* cache, const int32_t* table, int t) const {
    return static_cast<const uint8_t*>(cache) + (static_cast<int64_t>(table[t / bs]) * bs + t % bs) * row_bytes;
  }
  // Row t for KV head kvh, of an f32 cache.
  const float* at(const void* cache, const int32_t* table, int t, int kvh) const {
    return reinterpret_cast<const float*>(row(cache, table, t)) + static_cast<int64_t>(kvh) * hd;
  }
  // A chunk's partial for one head: its weighted values, then its largest score and softmax sum,
  // padded to whole cache lines. The values are an accumulator the kernels load and store once per
  // tile; one that straddles two lines cannot be forwarded from one tile's stores to the next
  // tile's loads, and the V pass then ran at half the rate of the K pass.
  int partial_floats() const { return (hd + 2 + 15) / 16 * 16; }
};

// Calls f(t, n) for the tiles of positions [t, t + n) in [t0, t1): at most kTile rows, all in one
// cache block. Each tile is visited by every head before the next (a tile's rows for all KV heads
// are one contiguous run of memory), and the next tile is prefetched as this one is read: a 16-bit
// or f32 tile's kernels prefetch the next one's rows a row at a time (kernels.h says why not all
// at once); a q8_0 tile, dequantized whole, prefetches the next whole tile first. Without it, the
// three strided passes over a block (one a head) streamed keys from memory at about half the rate.
constexpr int kTile = 16;

// Rows of a tile as the kernels read them: f32 (the cache, or a q8_0 tile dequantized), or the
// 16-bit cache's own rows; rows kv_dim values apart, from KV head 0.
struct Tile {
  const void* rows;
  DType dtype;  // F32, F16 or BF16
  // The next tile's rows as stored (at least as many as this tile's) for the kernels to prefetch,
  // or null.
  const void* ahead;
  // KV head kvh of the tile's first row
  const void* head(const Shape& s, int kvh) const { return head_of(rows, s, kvh); }
  const void* ahead_head(const Shape& s, int kvh) const { return ahead ? head_of(ahead, s, kvh) : nullptr; }
  const void* head_of(const void* r, const Shape& s, int kvh) const {
    return static_cast<const uint8_t*>(r) + static_cast<size_t>(kvh) * s.hd * (dtype == DType::F32 ? 4 : 2);
  }
};

// For the `group` query heads of KV head kvh (scores and weights lds apart, queries hd apart,
// outputs out_stride apart): scores = scale * q · K rows, and out += weights · V rows, on a tile
// of either kind; each row of the tile is read once for the whole group. prefetch: whether this
// call prefetches the next tile (the first of the rows reading the tile does).
inline void tile_dot(Ctx& c, const Shape& s, const Tile& tile, int kvh, float* scores, int64_t lds, const float* q, int n, bool prefetch) {
  const void* ahead = prefetch ? tile.ahead_head(s, kvh) : nullptr;
  if (tile.dtype == DType::F32)
    c.k.dot_rows(scores, lds, q, s.group, static_cast<const float*>(tile.head(s, kvh)), n, s.kv_dim, s.hd, s.scale, ahead);
  else
    c.k.dot_rows_16(tile.dtype, scores, lds, q, s.group, static_cast<const uint16_t*>(tile.head(s, kvh)), n, s.kv_dim, s.hd, s.scale,
                    ahead);
}
inline void tile_axpy(Ctx& c, const Shape& s, const Tile& tile, int kvh, float* out, int64_t out_stride, const float* weights, int64_t lds,
                      int n, bool prefetch) {
  const void* ahead = prefetch ? tile.ahead_head(s, kvh) : nullptr;
  if (tile.dtype == DType::F32)
    c.k.axpy_rows(out, out_stride, weights, lds, s.group, static_cast<const float*>(tile.head(s, kvh)), n, s.kv_dim, s.hd, ahead);
  else
    c.k.axpy_rows_16(tile.dtype, out, out_stride, weights, lds, s.group, static_cast<const uint16_t*>(tile.head(s, kvh)), n, s.kv_dim,
                     s.hd, ahead);
}

// f(t, n, tile) for each tile of positions [t, t + n).
template <typename F>
void for_tiles(Ctx& c, const Shape& s, const void* cache, const int32_t* table, int t0, int t1, F&& f) {
  thread_local std::vector<float> converted;
  const bool dequantize = dtype_quantized(s.dtype);
  if (dequantize) converted.resize(static_cast<size_t>(kTile) * s.kv_dim);
  auto tile_rows = [&](int t) { return std::min({t1 - t, s.bs - t % s.bs, kTile}); };
  for (int t = t0; t < t1;) {
    const int n = tile_rows(t);
    // a tile lies in one cache block: its rows are consecutive
    const uint8_t* next = t + n < t1 ? s.row(cache, table, t + n) : nullptr;
    if (!dequantize) {
      f(t, n, Tile{s.row(cache, table, t), s.dtype, next && tile_rows(t + n) >= n ? next : nullptr});
    } else {
      if (next)
        for (size_t b = 0; b < tile_rows(t + n) * s.row_bytes; b += 64) __builtin_prefetch(next + b);
      const uint8_t* src = s.row(cache, table, t);
      for (int i = 0; i < n; ++i) c.k.dequant_row(s.dtype, src + i * s.row_bytes, converted.data() + i * s.kv_dim, s.kv_dim);
      f(t, n, Tile{converted.data(), DType::F32, nullptr});
    }
    t += n;
  }
}

// Prefill rows of one sequence go in groups of up to kQueryRows consecutive positions: each tile
// of keys and values is read once for the group while it is in L1, instead of once per row.
constexpr int kQueryRows = 4;

// Up to this many rows' chunk merges run on the calling thread (see run).
constexpr size_t kInlineMergeRows = 8;

// One task: rows [r0, r0 + nq) (one decode row, or consecutive prefill rows of one sequence with
// the same chunk length) over chunk `chunk` of their contexts, every query head, a tile at a time.
// Each row computes exactly what it would alone: its tiles are the group's cut at its own end.
void chunk_task(Ctx& c, const Shape& s, const Row* rows, int r0, int nq, int chunk, const float* q,
                const void* k_cache, const void* v_cache, float* out, float* scratch) {
  thread_local std::vector<float> local;
  thread_local std::vector<float> sums;
  const Row& last = rows[r0 + nq - 1];  // the group's longest context
  const int t0 = chunk * last.chunk_len;
  const int t_end = std::min(last.n_ctx, t0 + last.chunk_len);
  int first = 0;  // rows whose context reaches this chunk: positions ascend, so a suffix
  while (rows[r0 + first].chunks <= chunk) ++first;
  auto end_of = [&](int i) { return std::min(rows[r0 + i].n_ctx, t0 + last.chunk_len); };
  const bool topn = last.keep > 0;  // a top-N row is alone in its group
  int64_t lds = kChunk;
  if (topn) {
    lds = last.n_ctx;  // every score of the row, for the selection pass
  } else {
    local.resize(static_cast<size_t>(nq) * s.n_heads * kChunk);
  }
  auto scores_of = [&](int i) {
    return topn ? scratch + last.scratch + t0 : local.data() + static_cast<int64_t>(i) * s.n_heads * kChunk;
  };
  const int32_t* table = last.table;
  for_tiles(c, s, k_cache, table, t0, t_end, [&](int t, int n, const Tile& tile) {
    for (int i = first; i < nq; ++i) {
      const int ni = std::min(n, end_of(i) - t);
      if (ni <= 0) continue;
      const float* qr = q + static_cast<int64_t>(r0 + i) * s.q_dim;
      float* sc = scores_of(i);
      for (int kvh = 0; kvh * s.group < s.n_heads; ++kvh) {
        const int h = kvh * s.group;
        tile_dot(c, s, tile, kvh, sc + h * lds + (t - t0), lds, qr + h * s.hd, ni, i == first);
      }
    }
  });
  if (topn) return;

  // Full attention: softmax partials of this chunk; a row of one chunk writes its output here.
  auto acc_of = [&](int i, int h) {
    const Row& row = rows[r0 + i];
    return row.chunks == 1
               ? out + static_cast<int64_t>(r0 + i) * s.q_dim + static_cast<int64_t>(h) * s.hd
               : scratch + row.scratch + (static_cast<int64_t>(h) * row.chunks + chunk) * s.partial_floats();
  };
  sums.resize(static_cast<size_t>(nq) * s.n_heads);
  for (int i = first; i < nq; ++i) {
    const int len = end_of(i) - t0;
    for (int h = 0; h < s.n_heads; ++h) {
      float* sh = scores_of(i) + h * lds;
      const float m = c.k.max(sh, len);
      const float sum = c.k.exp_sum(sh, len, m);
      sums[i * s.n_heads + h] = sum;
      float* acc = acc_of(i, h);
      if (rows[r0 + i].chunks > 1) {
        acc[s.hd] = m;
        acc[s.hd + 1] = sum;
      }
      std::fill(acc, acc + s.hd, 0.0f);
    }
  }
  for_tiles(c, s, v_cache, table, t0, t_end, [&](int t, int n, const Tile& tile) {
    for (int i = first; i < nq; ++i) {
      const int ni = std::min(n, end_of(i) - t);
      if (ni <= 0) continue;
      const float* sc = scores_of(i);
      const int64_t out_stride = s.n_heads > 1 ? acc_of(i, 1) - acc_of(i, 0) : 0;  // one head to the next
      for (int kvh = 0; kvh * s.group < s.n_heads; ++kvh) {
        const int h = kvh * s.group;
        tile_axpy(c, s, tile, kvh, acc_of(i, h), out_stride, sc + h * lds + (t - t0), lds, ni, i == first);
      }
    }
  });
  for (int i = first; i < nq; ++i) {
    if (rows[r0 + i].chunks != 1) continue;
    for (int h = 0; h < s.n_heads; ++h) {
      float* o = acc_of(i, h);
      const float inv = 1.0f / sums[i * s.n_heads + h];
      for (int d = 0; d < s.hd; ++d) o[d] *= inv;
    }
  }
}

// out = the chunks' weighted values, each rescaled to the row's largest score, over the total sum.
void merge_head(const Shape& s, const Row& row, int h, const float* scratch, float* o) {
  const float* p = scratch + row.scratch + static_cast<int64_t>(h) * row.chunks * s.partial_floats();
  float m = -INFINITY;
  for (int ch = 0; ch < row.chunks; ++ch) m = std::max(m, p[ch * s.partial_floats() + s.hd]);
  float sum = 0.0f;
  std::fill(o, o + s.hd, 0.0f);
  for (int ch = 0; ch < row.chunks; ++ch) {
    const float* pc = p + ch * s.partial_floats();
    const float w = std::exp(pc[s.hd] - m);
    sum += w * pc[s.hd + 1];
    for (int i = 0; i < s.hd; ++i) o[i] += w * pc[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < s.hd; ++i) o[i] *= inv;
}

struct TopNScratch {
  std::vector<uint32_t> keys;
  std::vector<float> sample;
  std::vector<int> cand;
  std::vector<float> weights;
  std::vector<const float*> rows;
  std::vector<const uint16_t*> rows16;  // a 16-bit cache's kept rows, this head's values
  std::vector<float> converted;         // the kept value rows of a q8_0 cache, in f32
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
  const auto kth_of = c.k.kth_largest ? c.k.kth_largest : kth_largest;  // (the variant's, or the portable one)
  int count = 0;
  constexpr int kSample = 256;
  if (n >= 4 * keep && n >= 4 * kSample) {
    w.sample.resize(kSample);
    for (int j = 0; j < kSample; ++j) w.sample[j] = sc[static_cast<int64_t>(j) * n / kSample];
    const int rank = std::min(kSample, static_cast<int>(1.25 * keep * kSample / n) + 6);
    count = c.k.indices_at_least(cand.data(), sc, n, kth_of(w.sample.data(), kSample, rank, w.keys));
  }
  if (count < keep) {
    for (int i = 0; i < n; ++i) cand[i] = i;
    count = n;
  }
  w.sample.resize(count);
  for (int i = 0; i < count; ++i) w.sample[i] = sc[cand[i]];
  const float kth = kth_of(w.sample.data(), count, keep, w.keys);
  int above = 0;
  const float* v = w.sample.data();  // the candidates' scores, in order
  for (int i = 0; i < count; ++i) above += v[i] > kth;
  int equal = keep - above;  // how many scores equal to the keep-th largest to take, earliest first
  int kept = 0;
  for (int i = 0; i < count; ++i) {  // (without a branch on the scores)
    const bool take = v[i] > kth || (v[i] == kth && equal > 0);
    equal -= v[i] == kth;
    cand[kept] = cand[i];
    kept += take;
  }
  cand.resize(keep);
}

// Top-N attention for one (row, query head) whose scores the chunk tasks wrote.
void topn_head(Ctx& c, const Shape& s, const Row& row, int h, float* scratch, const void* v_host, bool renormalize,
               float* o) {
  thread_local TopNScratch w;
  float* sc = scratch + row.scratch + static_cast<int64_t>(h) * row.n_ctx;
  select_topn(c, sc, row.n_ctx, row.keep, w);
  float m = -INFINITY;
  for (int i : w.cand) m = std::max(m, sc[i]);  // the largest score overall
  // the kept scores' exponentials by the variant's exp_sum, as full attention's chunks take theirs
  // (std::exp a score cost about as much as the whole selection)
  w.weights.resize(row.keep);
  for (int k = 0; k < row.keep; ++k) w.weights[k] = sc[w.cand[k]];
  float sum = c.k.exp_sum(w.weights.data(), row.keep, m);
  if (!renormalize) sum = c.k.exp_sum(sc, row.n_ctx, m);  // the kept weights' share of the full softmax
  const float inv = 1.0f / sum;
  const int kvh = h / s.group;
  for (int k = 0; k < row.keep; ++k) w.weights[k] *= inv;
  if (s.dtype == DType::F16 || s.dtype == DType::BF16) {  // read as stored, widened in registers
    w.rows16.resize(row.keep);
    for (int k = 0; k < row.keep; ++k)
      w.rows16[k] = reinterpret_cast<const uint16_t*>(s.row(v_host, row.table, w.cand[k])) + static_cast<int64_t>(kvh) * s.hd;
    c.k.weighted_sum_rows_16(s.dtype, o, w.weights.data(), w.rows16.data(), row.keep, s.hd);
    return;
  }
  w.rows.resize(row.keep);
  // a q8_0 cache: each kept row's values of this head only, dequantized (a head starts on a block
  // boundary when the block divides the head size; else the whole row)
  const bool slice = s.hd % dtype_block(s.dtype) == 0;
  const int width = slice ? s.hd : s.kv_dim;
  const size_t from = slice ? dtype_row_bytes(s.dtype, static_cast<int64_t>(kvh) * s.hd) : 0;
  if (s.dtype != DType::F32) w.converted.resize(static_cast<size_t>(row.keep) * width);
  for (int k = 0; k < row.keep; ++k) {
    if (s.dtype == DType::F32) {
      w.rows[k] = s.at(v_host, row.table, w.cand[k], kvh);
    } else {
      float* dst = w.converted.data() + static_cast<int64_t>(k) * width;
      c.k.dequant_row(s.dtype, s.row(v_host, row.table, w.cand[k]) + from, dst, width);
      w.rows[k] = slice ? dst : dst + static_cast<int64_t>(kvh) * s.hd;
    }
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

void run(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionBatch& b) {
  const Shape s(b);
  // The calling thread's buffers, reused across calls; the tasks see them through these references
  // (a lambda names a thread_local of the thread it runs on, not of the caller).
  thread_local std::vector<Row> rows_tls;
  thread_local std::vector<int> first_tls, group_tls, second_tls;
  thread_local std::vector<float> scratch_tls;
  std::vector<Row>& rows = rows_tls;
  std::vector<int>& first_task = first_tls;  // tasks of query group i: [first_task[i], first_task[i + 1])
  std::vector<int>& group_row = group_tls;   // query group i: rows [group_row[i], group_row[i + 1])
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
  // (whole cache lines a row, so that every row's partials start on one)
  auto scratch_of = [&](const Row& row) -> int64_t {
    if (row.keep > 0) return (static_cast<int64_t>(s.n_heads) * row.n_ctx + 15) / 16 * 16;
    if (row.chunks > 1) return static_cast<int64_t>(s.n_heads) * row.chunks * s.partial_floats();
    return 0;
  };
  for (int g0 = 0; g0 < b.rows;) {
    // rows [g0, g1): as many as fit the scratch cap, at least one
    int g1 = g0;
    int64_t floats = 0;
    first_task.assign(1, 0);
    group_row.clear();
    second.clear();
    while (g1 < b.rows && (g1 == g0 || floats + scratch_of(rows[g1]) <= scratch_cap_floats())) {
      Row& row = rows[g1];
      row.scratch = floats;
      floats += scratch_of(row);
      if (row.keep > 0 || row.chunks > 1) second.push_back(g1);
      // a prefill row joins the previous row's query group when it is the next position of the
      // same sequence with the same chunk length
      const int prev = group_row.empty() ? -1 : group_row.back();
      const bool join = prev >= 0 && g1 - prev < kQueryRows && row.keep == 0 && rows[g1 - 1].keep == 0 &&
                        b.row_seq[g1] == b.row_seq[g1 - 1] && b.row_pos[g1] == b.row_pos[g1 - 1] + 1 &&
                        row.chunk_len == rows[g1 - 1].chunk_len;
      if (join) {
        first_task.back() = first_task[first_task.size() - 2] + row.chunks;  // the group's longest context
      } else {
        group_row.push_back(g1);
        first_task.push_back(first_task.back() + row.chunks);
      }
      ++g1;
    }
    group_row.push_back(g1);
    // 64-byte aligned, so that the partials' lines are the cache's
    if (static_cast<int64_t>(scratch.size()) < floats + 16) scratch.resize(floats + 16);
    float* sp = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
    c.pool.parallel_for(first_task.back(), [&](int task, int) {
      const int i = static_cast<int>(std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin()) - 1;
      chunk_task(c, s, rows.data(), group_row[i], group_row[i + 1] - group_row[i], task - first_task[i], q, k_cache,
                 v_cache, out, sp);
    });
    if (!second.empty()) {
      const auto second_task = [&](int task, int) {
        const int r = second[task / s.n_heads];
        const int h = task % s.n_heads;
        float* o = out + static_cast<int64_t>(r) * s.q_dim + static_cast<int64_t>(h) * s.hd;
        if (rows[r].keep > 0) topn_head(c, s, rows[r], h, sp, v_cache, b.topn_renormalize, o);
        else merge_head(s, rows[r], h, sp, o);
      };
      const int n_second = static_cast<int>(second.size()) * s.n_heads;
      // merging a few rows' chunks is less work than handing it to the pool (a hand-off is about a
      // microsecond, a merge a few dozen multiply-adds per head and chunk)
      const bool merges_only = std::none_of(second.begin(), second.end(), [&](int r) { return rows[r].keep > 0; });
      if (merges_only && second.size() <= kInlineMergeRows) {
        for (int task = 0; task < n_second; ++task) second_task(task, 0);
      } else {
        c.pool.parallel_for(n_second, second_task);
      }
    }
    g0 = g1;
  }
}

}  // namespace

void attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache,
               const AttentionBatch& b) {
  AttentionBatch full = b;
  full.row_topn = nullptr;
  run(c, out, q, k_cache, v_cache, full);
}

void kcache_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_host,
                      const AttentionBatch& b) {
  run(c, out, q, k_cache, v_host, b);
}

}  // namespace kc::cpu
