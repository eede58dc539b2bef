// The GPU benchmark (one command, a few minutes): kcache_gpu_bench [--quick]
//  1. device memory bandwidth: a device-to-device copy (counted read + write) and a read-only kernel;
//  2. decode tokens/s on dummy:llama1b bf16 at batch 1, 8 and 64 (context 512), against the
//     roofline = read bandwidth / bytes read per step (weights + the batch's K/V);
//  3. paged attention alone (llama1b shape, 32k context, batch 8): achieved read bandwidth
//     against the copy bandwidth;
//  4. KCache vs full attention at 8,000, 16,000 and 32,000-token contexts for the same device-tier budget: the
//     largest batch each fits, and decode tokens/s at that batch (KV filled with random values).
// Prints one JSON object per result line (prefix "RESULT ") plus readable lines.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../test/models.h"
#include "kcache/attention_bench.h"
#include "kcache/cuda_backend.h"
#include "kcache/engine.h"

using namespace kc;
using Clock = std::chrono::steady_clock;

namespace {

#define CK(x)                                                                                      \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_));                         \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

__global__ void read_kernel(const float4* p, size_t n, float* sink) {
  float4 acc = make_float4(0, 0, 0, 0);
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 v = p[i];
    acc.x += v.x, acc.y += v.y, acc.z += v.z, acc.w += v.w;
  }
  if (acc.x + acc.y + acc.z + acc.w == 12345.678f) *sink = acc.x;  // keeps the loads
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Bandwidth {
  double copy, read;
};

Bandwidth measure_bandwidth() {
  const size_t bytes = size_t(4) << 30;
  void *a, *b;
  float* sink;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMalloc(&sink, 4));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  double best_copy = 1e30, best_read = 1e30;
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  for (int i = 0; i < 6; ++i) {
    CK(cudaEventRecord(e0));
    CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best_copy = std::min(best_copy, ms / 1e3);
    CK(cudaEventRecord(e0));
    read_kernel<<<sms * 8, 512>>>(static_cast<const float4*>(a), bytes / 16, sink);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best_read = std::min(best_read, ms / 1e3);
  }
  CK(cudaFree(a));
  CK(cudaFree(b));
  CK(cudaFree(sink));
  return {2.0 * bytes / best_copy, bytes / best_read};
}

StepInput decode_input(int batch, int context, int blocks_per_seq, int step) {
  StepInput in;
  for (int s = 0; s < batch; ++s) {
    in.tokens.push_back(100 + s);
    in.positions.push_back(context - 1 + step);
    in.row_seq.push_back(s);
    in.output_rows.push_back(s);
    in.table_offset.push_back(static_cast<int32_t>(in.block_tables.size()));
    in.table_length.push_back(blocks_per_seq);
    for (int b = 0; b < blocks_per_seq; ++b) in.block_tables.push_back(s * blocks_per_seq + b);
  }
  return in;
}

// Seconds per decode step, best of `steps` after one warm-up.
double time_decode(Engine& e, int batch, int context, int blocks_per_seq, int steps, int topn = 0) {
  double best = 1e30;
  std::vector<float> logits(static_cast<size_t>(batch) * e.config().vocab_size);
  for (int i = 0; i <= steps; ++i) {
    StepInput in = decode_input(batch, context, blocks_per_seq, i % 8);
    if (topn > 0) in.seq_topn.assign(batch, topn);
    const auto t = Clock::now();
    e.step(in, logits.data());
    if (i > 0) best = std::min(best, seconds_since(t));
  }
  return best;
}

size_t matmul_weight_bytes(const EngineOptions& o) {
  size_t n = 0;
  for (const auto& t : o.tensors)
    if (t.name != "tok_embeddings" && t.rows > 1) n += t.stored_bytes();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  // --profile: only the decode runs, with per-op GPU time (set KCACHE_CUDA_PROFILE=1 too)
  const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
  // --variants: decode and paged attention with each alternative unroll (KCACHE_GEMV_UNROLL, KCACHE_ATTN_UNROLL)
  const bool variants = argc > 1 && std::strcmp(argv[1], "--variants") == 0;
  std::string device;
  if (!cuda_device_available(&device)) {
    std::printf("no CUDA device: %s\n", device.c_str());
    return 2;
  }
  std::printf("device: %s\n", device.c_str());
  const Bandwidth bw = measure_bandwidth();
  std::printf("RESULT {\"what\":\"bandwidth\",\"device\":\"%s\",\"copy_GBps\":%.1f,\"read_GBps\":%.1f}\n", device.c_str(), bw.copy / 1e9,
              bw.read / 1e9);
  std::fflush(stdout);

  // 2. decode on dummy:llama1b bf16
  {
    EngineOptions o = testing::dummy_model("llama1b", DType::BF16);
    const int context = 512, bs = 16, per_seq = context / bs + 1, max_batch = 64;
    o.num_blocks = per_seq * max_batch;
    o.block_size = bs;
    o.backend = "cuda";
    const auto t0 = Clock::now();
    auto e = Engine::create(o);
    e->fill_kv_random(7);
    std::printf("llama1b bf16 loaded in %.1f s (%s)\n", seconds_since(t0), e->backend_name());
    const size_t wbytes = matmul_weight_bytes(o);
    const size_t kv_per_seq = static_cast<size_t>(context) * o.config.kv_dim() * 4 * 2 * o.config.n_layers;
    for (const char* gu : variants ? std::vector<const char*>{"4", "8"} : std::vector<const char*>{"4"})
    for (int batch : {1, 8, 64}) {
      setenv("KCACHE_GEMV_UNROLL", gu, 1);
      cuda_profile_report(true);
      const double s = time_decode(*e, batch, context, per_seq, quick || profile ? 5 : 20);
      if (profile) std::printf("PROFILE batch %d (6 steps): %s\n", batch, cuda_profile_report(true).c_str());
      const double bytes = static_cast<double>(wbytes) + static_cast<double>(kv_per_seq) * batch;
      const double roof = bw.read / bytes;  // steps/s the read bandwidth allows
      std::printf("RESULT {\"what\":\"decode\",\"model\":\"dummy:llama1b:bf16\",\"gemv_unroll\":%s,\"context\":%d,\"batch\":%d,\"step_ms\":%.3f,"
                  "\"tokens_per_s\":%.1f,\"bytes_per_step\":%.0f,\"roofline_fraction\":%.3f}\n",
                  gu, context, batch, s * 1e3, batch / s, bytes, (1.0 / s) / roof);
      std::fflush(stdout);
    }
  }

  unsetenv("KCACHE_GEMV_UNROLL");
  if (profile) return 0;
  if (variants) {
    for (const char* u : {"4", "8"}) {
      setenv("KCACHE_ATTN_UNROLL", u, 1);
      AttentionBenchOptions a;
      a.n_layers = 16, a.n_heads = 32, a.n_kv_heads = 8, a.head_dim = 64, a.block_size = 16;
      a.context = 32768, a.batch = 8, a.iters = 5, a.backend = "cuda", a.topns = {0};
      const double s = bench_decode_attention(a)[0];
      const double bytes = static_cast<double>(a.batch) * a.context * a.n_kv_heads * a.head_dim * 4 * 2 * a.n_layers;
      std::printf("RESULT {\"what\":\"paged_attention_variant\",\"attn_unroll\":%s,\"ms\":%.3f,\"copy_fraction\":%.3f}\n", u, s * 1e3,
                  (bytes / s) / bw.copy);
      std::fflush(stdout);
    }
    return 0;
  }
  // 3. paged attention alone, llama1b shape, 32k context, batch 8
  {
    AttentionBenchOptions a;
    a.n_layers = 16, a.n_heads = 32, a.n_kv_heads = 8, a.head_dim = 64, a.block_size = 16;
    a.context = 32768;
    a.batch = 8;
    a.iters = 5;
    a.backend = "cuda";
    a.topns = {0};
    const double s = bench_decode_attention(a)[0];
    const double bytes = static_cast<double>(a.batch) * a.context * a.n_kv_heads * a.head_dim * 4 * 2 * a.n_layers;
    std::printf("RESULT {\"what\":\"paged_attention\",\"context\":%d,\"batch\":%d,\"ms\":%.3f,\"read_GBps\":%.1f,\"copy_fraction\":%.3f,"
                "\"read_fraction\":%.3f}\n",
                a.context, a.batch, s * 1e3, bytes / s / 1e9, (bytes / s) / bw.copy, (bytes / s) / bw.read);
    std::fflush(stdout);
  }

  // 4. KCache vs full at a fixed device-tier KV budget
  {
    const size_t budget = size_t(quick ? 8 : 24) << 30;
    for (int context : {8000, 16000, 32000}) {
      for (int mode = 0; mode < 2; ++mode) {
        EngineOptions o = testing::dummy_model("llama1b", DType::BF16);
        o.block_size = 16;
        o.backend = "cuda";
        const size_t layer_block = static_cast<size_t>(o.block_size) * o.config.kv_dim() * 4;
        const size_t dev_per_block = layer_block * (mode == 0 ? 2 * o.config.n_layers : o.config.n_layers);
        const int per_seq = context / o.block_size + 1;
        const int batch = static_cast<int>(budget / dev_per_block / per_seq);
        if (batch < 1) continue;
        o.num_blocks = batch * per_seq;
        if (mode == 1) {
          o.attention = AttentionMode::KCache;
          o.kcache.full_layers = 0;
        }
        auto e = Engine::create(o);
        e->fill_kv_random(11);
        const std::vector<int> ns = mode == 0 ? std::vector<int>{0} : std::vector<int>{32, 64, 256};
        for (int n : ns) {
          const double s = time_decode(*e, batch, context, per_seq, quick ? 3 : 6, n);
          std::printf("RESULT {\"what\":\"kcache_vs_full\",\"budget_GiB\":%zu,\"context\":%d,\"mode\":\"%s\",\"topn\":%d,\"batch\":%d,"
                      "\"step_ms\":%.2f,\"tokens_per_s\":%.1f}\n",
                      budget >> 30, context, mode == 0 ? "full" : "kcache", n, batch, s * 1e3, batch / s);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
