#include "kcache/attention_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "kcache/cpu_backend.h"

namespace kc {

std::vector<double> bench_decode_attention(const AttentionBenchOptions& o) {
  if (o.context < 1 || o.n_layers < 1 || o.n_heads < 1 || o.n_kv_heads < 1 || o.n_heads % o.n_kv_heads != 0 ||
      o.head_dim < 1 || o.block_size < 1 || o.iters < 1)
    throw std::invalid_argument("bench_decode_attention: bad shape");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<Backend> B = make_cpu_backend(threads);
  const int kv_dim = o.n_kv_heads * o.head_dim, q_dim = o.n_heads * o.head_dim;
  const int blocks = (o.context + o.block_size - 1) / o.block_size;
  const size_t cache_floats = static_cast<size_t>(blocks) * o.block_size * kv_dim;

  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float*> k(o.n_layers), v(o.n_layers);
  std::vector<float> host(cache_floats);
  for (int l = 0; l < o.n_layers; ++l) {
    for (float& x : host) x = uni(rng);
    k[l] = static_cast<float*>(B->alloc(cache_floats * sizeof(float)));
    B->upload(k[l], host.data(), cache_floats * sizeof(float));
    for (float& x : host) x = uni(rng);
    v[l] = static_cast<float*>(B->alloc_host(cache_floats * sizeof(float)));
    B->upload(v[l], host.data(), cache_floats * sizeof(float));
  }
  std::vector<float> qh(q_dim);
  for (float& x : qh) x = uni(rng) * 4.0f;  // a peaked distribution, as trained models have
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  const int32_t pos = o.context - 1, seq = 0, off = 0;
  auto* q = static_cast<float*>(B->alloc(q_dim * sizeof(float)));
  auto* out = static_cast<float*>(B->alloc(q_dim * sizeof(float)));
  auto* d_pos = static_cast<int32_t*>(B->alloc(sizeof(int32_t)));
  auto* d_seq = static_cast<int32_t*>(B->alloc(sizeof(int32_t)));
  auto* d_off = static_cast<int32_t*>(B->alloc(sizeof(int32_t)));
  auto* d_topn = static_cast<int32_t*>(B->alloc(sizeof(int32_t)));
  auto* d_table = static_cast<int32_t*>(B->alloc(blocks * sizeof(int32_t)));
  B->upload(q, qh.data(), q_dim * sizeof(float));
  B->upload(d_pos, &pos, sizeof(int32_t));
  B->upload(d_seq, &seq, sizeof(int32_t));
  B->upload(d_off, &off, sizeof(int32_t));
  B->upload(d_table, table.data(), blocks * sizeof(int32_t));

  AttentionBatch ab;
  ab.rows = 1;
  ab.n_heads = o.n_heads;
  ab.n_kv_heads = o.n_kv_heads;
  ab.head_dim = o.head_dim;
  ab.block_size = o.block_size;
  ab.scale = 1.0f / std::sqrt(static_cast<float>(o.head_dim));
  ab.row_pos = d_pos;
  ab.row_seq = d_seq;
  ab.block_tables = d_table;
  ab.table_offset = d_off;
  ab.row_topn = d_topn;
  ab.topn_renormalize = o.renormalize;

  std::vector<double> best(o.topns.size(), 1e30);
  for (int it = 0; it <= o.iters; ++it) {  // iteration 0 warms up
    for (size_t i = 0; i < o.topns.size(); ++i) {
      const int32_t n = o.topns[i];
      B->upload(d_topn, &n, sizeof(int32_t));
      B->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int l = 0; l < o.n_layers; ++l) {
        if (n == 0) B->attention(out, q, k[l], v[l], ab);
        else B->kcache_attention(out, q, k[l], v[l], ab);
      }
      B->synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (it > 0) best[i] = std::min(best[i], s);
    }
  }
  for (int l = 0; l < o.n_layers; ++l) {
    B->release(k[l]);
    B->release_host(v[l]);
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(d_pos), static_cast<void*>(d_seq),
                  static_cast<void*>(d_off), static_cast<void*>(d_topn), static_cast<void*>(d_table)})
    B->release(p);
  return best;
}

}  // namespace kc
