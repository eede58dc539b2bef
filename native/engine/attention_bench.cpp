#include "kcache/attention_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "kcache/cpu_backend.h"
#include "kcache/quant.h"
#ifdef KC_HAVE_CUDA
#include "kcache/cuda_backend.h"
#endif

namespace kc {

std::vector<double> bench_decode_attention(const AttentionBenchOptions& o) {
  if (o.context < 1 || o.n_layers < 1 || o.n_heads < 1 || o.n_kv_heads < 1 || o.n_heads % o.n_kv_heads != 0 ||
      o.head_dim < 1 || o.block_size < 1 || o.iters < 1)
    throw std::invalid_argument("bench_decode_attention: bad shape");
  if (o.kv_dtype != DType::F32 && o.kv_dtype != DType::F16 && o.kv_dtype != DType::BF16 && o.kv_dtype != DType::Q8_0)
    throw std::invalid_argument(std::string("bench_decode_attention: not a KV cache dtype: ") + dtype_name(o.kv_dtype));
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<Backend> B;
  if (o.backend == "cuda") {
#ifdef KC_HAVE_CUDA
    B = make_cuda_backend(0);
#else
    throw std::invalid_argument("bench_decode_attention: this build has no CUDA backend");
#endif
  } else {
    B = make_cpu_backend(threads);
  }
  const int batch = std::max(1, o.batch);
  const int kv_dim = o.n_kv_heads * o.head_dim, q_dim = o.n_heads * o.head_dim;
  const int seq_blocks = (o.context + o.block_size - 1) / o.block_size;
  const int blocks = seq_blocks * batch;
  const size_t cache_rows = static_cast<size_t>(blocks) * o.block_size;
  const size_t cache_floats = cache_rows * kv_dim;
  const size_t row_bytes = dtype_row_bytes(o.kv_dtype, kv_dim);
  if (kv_dim % dtype_block(o.kv_dtype) != 0) throw std::invalid_argument("bench_decode_attention: kv_dim is not a multiple of the KV dtype's block");
  // uniform values in [-1, 1): f32 filled by the backend; other dtypes encoded on the host (as
  // Engine::fillKvRandom does) and copied in, `host` caches written in place
  const auto fill = [&](void* dst, uint64_t seed, bool host) {
    if (o.kv_dtype == DType::F32) return B->fill_uniform(static_cast<float*>(dst), cache_floats, seed, -1.0f, 1.0f);
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    constexpr size_t kChunk = 4096;  // rows encoded, then copied, at a time
    std::vector<float> row(kv_dim);
    std::vector<uint8_t> enc(kChunk * row_bytes);
    for (size_t r0 = 0; r0 < cache_rows; r0 += kChunk) {
      const size_t nr = std::min(kChunk, cache_rows - r0);
      uint8_t* at = static_cast<uint8_t*>(dst) + r0 * row_bytes;
      for (size_t r = 0; r < nr; ++r) {
        for (float& x : row) x = u(g);
        encode_row(o.kv_dtype, row.data(), (host ? at : enc.data()) + r * row_bytes, kv_dim);
      }
      if (!host) B->upload(at, enc.data(), nr * row_bytes);
    }
  };

  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<void*> k(o.n_layers), v(o.n_layers, nullptr);
  // full attention reads V from backend memory; KCache from the host tier (both filled alike)
  std::vector<void*> v_dev(o.n_layers, nullptr);
  const bool any_full = std::count(o.topns.begin(), o.topns.end(), 0) > 0;
  const bool any_topn = std::any_of(o.topns.begin(), o.topns.end(), [](int n) { return n > 0; });
  for (int l = 0; l < o.n_layers; ++l) {
    k[l] = B->alloc(cache_rows * row_bytes);
    fill(k[l], 1000 + 3 * l, false);
    if (any_topn) {
      v[l] = B->alloc_host(cache_rows * row_bytes);
      fill(v[l], 1001 + 3 * l, true);
    }
    if (any_full) {
      v_dev[l] = B->alloc(cache_rows * row_bytes);
      fill(v_dev[l], 1001 + 3 * l, false);
    }
  }
  std::vector<float> qh(static_cast<size_t>(q_dim) * batch);
  for (float& x : qh) x = uni(rng) * 4.0f;  // a peaked distribution, as trained models have
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<int32_t> pos(batch, o.context - 1), seq(batch), off(batch);
  for (int s = 0; s < batch; ++s) {
    seq[s] = s;
    off[s] = s * seq_blocks;
  }
  auto* q = static_cast<float*>(B->alloc(qh.size() * sizeof(float)));
  auto* out = static_cast<float*>(B->alloc(qh.size() * sizeof(float)));
  auto* d_pos = static_cast<int32_t*>(B->alloc(batch * sizeof(int32_t)));
  auto* d_seq = static_cast<int32_t*>(B->alloc(batch * sizeof(int32_t)));
  auto* d_off = static_cast<int32_t*>(B->alloc(batch * sizeof(int32_t)));
  auto* d_topn = static_cast<int32_t*>(B->alloc(batch * sizeof(int32_t)));
  auto* d_table = static_cast<int32_t*>(B->alloc(blocks * sizeof(int32_t)));
  B->upload(q, qh.data(), qh.size() * sizeof(float));
  B->upload(d_pos, pos.data(), batch * sizeof(int32_t));
  B->upload(d_seq, seq.data(), batch * sizeof(int32_t));
  B->upload(d_off, off.data(), batch * sizeof(int32_t));
  B->upload(d_table, table.data(), blocks * sizeof(int32_t));

  AttentionBatch ab;
  ab.rows = batch;
  ab.max_context = o.context;
  for (int n : o.topns) ab.max_topn = std::max(ab.max_topn, n);
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
  ab.kv_dtype = o.kv_dtype;

  std::vector<double> best(o.topns.size(), 1e30);
  for (int it = 0; it <= o.iters; ++it) {  // iteration 0 warms up
    for (size_t i = 0; i < o.topns.size(); ++i) {
      const std::vector<int32_t> n(batch, o.topns[i]);
      B->upload(d_topn, n.data(), batch * sizeof(int32_t));
      B->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int l = 0; l < o.n_layers; ++l) {
        if (o.topns[i] == 0) B->attention(out, q, k[l], v_dev[l], ab);
        else B->kcache_attention(out, q, k[l], v[l], ab);
      }
      B->synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (it > 0) best[i] = std::min(best[i], s);
    }
  }
  for (int l = 0; l < o.n_layers; ++l) {
    B->release(k[l]);
    if (v[l]) B->release_host(v[l]);
    if (v_dev[l]) B->release(v_dev[l]);
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(d_pos), static_cast<void*>(d_seq),
                  static_cast<void*>(d_off), static_cast<void*>(d_topn), static_cast<void*>(d_table)})
    B->release(p);
  return best;
}

}  // namespace kc
