// Paged attention for every row of a step (decode rows and prefill rows alike: row r attends to
// positions [0, row_pos[r]] of its sequence), split over the context ("flash decoding"):
//   1. attn_split: one block per (row, KV head, context split). Each of its 4 warps walks a
//      strided share of the split's positions; lanes are grouped L per position (E floats each,
//      16-byte loads), so one warp reads 32/L K and V rows at a time. All G query heads of the
//      KV head are scored against each K row while it is in registers (GQA: K/V read once).
//      Online softmax per lane group, merged across groups, then across warps.
//   2. attn_combine: one block per (row, query head) merges the splits' (max, sum, acc).
// KCache rows (row_topn in (0, context)) are skipped here and done by kcache_attention.cu.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "attention.cuh"
#include "kv_rows.cuh"

namespace kc::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxSplitBlocks = 512;  // block-table entries of one split staged in shared memory

// G (query heads per KV head) is a template parameter so the per-head arrays live in registers
// sized exactly (fewer registers, more resident warps).
template <typename KV, int E, int kUnrollPos, int G>
__global__ void __launch_bounds__(32 * kWarps) attn_split(const float* q, const uint8_t* k_cache, const uint8_t* v_cache, AttnArgs a,
                                                         float* part) {
  const int split = blockIdx.x, kvh = blockIdx.y, r = blockIdx.z;
  const int n_ctx = a.row_pos[r] + 1;
  if (a.row_topn && a.row_topn[r] > 0 && a.row_topn[r] < n_ctx) return;  // top-N row
  const int hd = a.head_dim, L = hd / E, P = 32 / L;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gi = lane / L, li = lane % L;
  const int t_begin = split * a.chunk, t_end = min(n_ctx, t_begin + a.chunk);
  const int32_t* table_g = a.block_tables + a.table_offset[a.row_seq[r]];
  // this split's block-table entries, read once into shared memory (no dependent global load per position)
  __shared__ int32_t s_table[kMaxSplitBlocks];
  const int first_blk = t_begin / a.block_size;
  const int n_blk = t_end > t_begin ? (t_end - 1) / a.block_size - first_blk + 1 : 0;
  const bool staged = n_blk <= kMaxSplitBlocks;
  if (staged)
    for (int i = threadIdx.x; i < n_blk; i += blockDim.x) s_table[i] = table_g[first_blk + i];
  __syncthreads();
  auto block_of = [&](int t) { return staged ? s_table[t / a.block_size - first_blk] : table_g[t / a.block_size]; };

  float qr[G][E], acc[G][E], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      acc[g][e] = 0.0f;
      qr[g][e] = q[(static_cast<int64_t>(r) * a.n_heads + kvh * G + g) * hd + li * E + e] * a.scale;
    }
  }
  // U positions per lane group per iteration, all loads issued before any math: each warp keeps
  // 32/L * U K and V rows in flight
  for (int t0 = t_begin + warp * P * kUnrollPos; t0 < t_end; t0 += kWarps * P * kUnrollPos) {
    float kv[kUnrollPos][E], vv[kUnrollPos][E];
#pragma unroll
    for (int u = 0; u < kUnrollPos; ++u) {
      const int t = t0 + u * P + gi;
      if (t < t_end) {
        const int64_t off = (static_cast<int64_t>(block_of(t)) * a.block_size + t % a.block_size) * a.row_bytes;
#pragma unroll
        for (int e = 0; e < E; e += 4) {
          const float4 k4 = KV::load4_ro(k_cache + off, kvh * hd + li * E + e);
          const float4 v4 = KV::load4(v_cache + off, kvh * hd + li * E + e);  // V may be mapped host memory (KCache)
          kv[u][e] = k4.x, kv[u][e + 1] = k4.y, kv[u][e + 2] = k4.z, kv[u][e + 3] = k4.w;
          vv[u][e] = v4.x, vv[u][e + 1] = v4.y, vv[u][e + 2] = v4.z, vv[u][e + 3] = v4.w;
        }
      } else {
#pragma unroll
        for (int e = 0; e < E; ++e) kv[u][e] = vv[u][e] = 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnrollPos; ++u) {
      const bool valid = t0 + u * P + gi < t_end;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) s += qr[g][e] * kv[u][e];
        for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (valid) {
          const float mn = fmaxf(m[g], s);
          const float c = expf(m[g] - mn), p = expf(s - mn);
          l[g] = l[g] * c + p;
#pragma unroll
          for (int e = 0; e < E; ++e) acc[g][e] = acc[g][e] * c + p * vv[u][e];
          m[g] = mn;
        }
      }
    }
  }
  // merge the lane groups of this warp (xor across groups keeps li)
  for (int o = L; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[g], o), lo = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float mn = fmaxf(m[g], mo);
      const float c1 = mn == -INFINITY ? 0.0f : expf(m[g] - mn), c2 = mn == -INFINITY ? 0.0f : expf(mo - mn);
      l[g] = l[g] * c1 + lo * c2;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const float ao = __shfl_xor_sync(0xffffffffu, acc[g][e], o);
        acc[g][e] = acc[g][e] * c1 + ao * c2;
      }
      m[g] = mn;
    }
  }
  // merge the warps through shared memory; warp 0's first lane group writes the split's partial
  __shared__ float sm[kWarps][kMaxGroup], sl[kWarps][kMaxGroup];
  __shared__ float sacc[kWarps][kMaxGroup][kMaxHeadDim];
  if (gi == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (li == 0) {
        sm[warp][g] = m[g];
        sl[warp][g] = l[g];
      }
#pragma unroll
      for (int e = 0; e < E; ++e) sacc[warp][g][li * E + e] = acc[g][e];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * hd; i += blockDim.x) {
    const int g = i / hd, d = i % hd;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm[w][g]);
    float lsum = 0.0f, asum = 0.0f;
    if (mx != -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        const float c = expf(sm[w][g] - mx);
        lsum += sl[w][g] * c;
        asum += sacc[w][g][d] * c;
      }
    }
    const int64_t idx = (static_cast<int64_t>(r) * a.n_heads + kvh * G + g) * a.n_splits + split;
    float* p = part + idx * (hd + 2);
    p[2 + d] = asum;
    if (d == 0) {
      p[0] = mx;
      p[1] = lsum;
    }
  }
}

__global__ void attn_combine(float* out, const float* part, AttnArgs a) {
  const int r = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
  const int n_ctx = a.row_pos[r] + 1;
  if (a.row_topn && a.row_topn[r] > 0 && a.row_topn[r] < n_ctx) return;
  const float* p = part + (static_cast<int64_t>(r) * a.n_heads + h) * a.n_splits * (hd + 2);
  float mx = -INFINITY;
  for (int s = 0; s < a.n_splits; ++s) mx = fmaxf(mx, p[s * (hd + 2)]);
  float den = 0.0f;
  for (int s = 0; s < a.n_splits; ++s) {
    const float ms = p[s * (hd + 2)];
    if (ms != -INFINITY) den += p[s * (hd + 2) + 1] * expf(ms - mx);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.0f;
    for (int s = 0; s < a.n_splits; ++s) {
      const float ms = p[s * (hd + 2)];
      if (ms != -INFINITY) num += p[s * (hd + 2) + 2 + d] * expf(ms - mx);
    }
    out[(static_cast<int64_t>(r) * a.n_heads + h) * hd + d] = num / den;
  }
}

int sm_count() {
  static int n = 0;
  if (n == 0) {
    int dev = 0;
    KC_CUDA(cudaGetDevice(&dev));
    KC_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  }
  return n;
}
}  // namespace

AttnArgs attn_args(const AttentionBatch& b) {
  AttnArgs a;
  a.rows = b.rows;
  a.n_heads = b.n_heads;
  a.n_kv_heads = b.n_kv_heads;
  a.group = b.n_heads / b.n_kv_heads;
  a.head_dim = b.head_dim;
  a.block_size = b.block_size;
  a.scale = b.scale;
  a.row_pos = b.row_pos;
  a.row_seq = b.row_seq;
  a.block_tables = b.block_tables;
  a.table_offset = b.table_offset;
  a.row_topn = nullptr;
  a.kv_dtype = b.kv_dtype;
  a.row_bytes = static_cast<int64_t>(dtype_row_bytes(b.kv_dtype, static_cast<int64_t>(b.n_kv_heads) * b.head_dim));
  return a;
}

void check_attention_shape(int head_dim, int group) {
  if (!(head_dim % 4 == 0 && head_dim <= 128 && 32 % (head_dim / 4) == 0))
    throw std::runtime_error("CUDA attention: head_dim " + std::to_string(head_dim) + " is not supported (4, 8, 16, 32, 64 or 128)");
  if (!(group == 1 || group == 2 || group == 3 || group == 4 || group == 8))
    throw std::runtime_error("CUDA attention: " + std::to_string(group) + " query heads per KV head is not supported (1, 2, 3, 4 or 8)");
}

void paged_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache, AttnArgs a, int max_context) {
  if (a.rows == 0) return;
  check_attention_shape(a.head_dim, a.group);
  // enough blocks to fill the GPU many times over, splits of at least 64 positions
  const int target = 16 * sm_count();
  const int want = (target + a.rows * a.n_kv_heads - 1) / (a.rows * a.n_kv_heads);
  a.n_splits = std::max(1, std::min(want, (max_context + 63) / 64));
  a.chunk = (max_context + a.n_splits - 1) / a.n_splits;
  auto* part = static_cast<float*>(c.ws->get(static_cast<size_t>(a.rows) * a.n_heads * a.n_splits * (a.head_dim + 2) * sizeof(float)));
  const dim3 grid(a.n_splits, a.n_kv_heads, a.rows);
  // KCACHE_ATTN_UNROLL=8 loads 8 positions per lane group before the math (default 4)
  const char* u = std::getenv("KCACHE_ATTN_UNROLL");
  const bool u8 = u && std::atoi(u) == 8;
  const auto* kc = static_cast<const uint8_t*>(k_cache);
  const auto* vc = static_cast<const uint8_t*>(v_cache);
  dispatch_kv(a.kv_dtype, [&](auto kv_tag) {
    using KV = decltype(kv_tag);
    auto launch = [&](auto g_tag) {
      constexpr int G = decltype(g_tag)::value;
      if (u8) attn_split<KV, 4, 8, G><<<grid, 32 * kWarps, 0, c.stream>>>(q, kc, vc, a, part);
      else attn_split<KV, 4, 4, G><<<grid, 32 * kWarps, 0, c.stream>>>(q, kc, vc, a, part);
    };
    switch (a.group) {
      case 1: launch(std::integral_constant<int, 1>{}); break;
      case 2: launch(std::integral_constant<int, 2>{}); break;
      case 3: launch(std::integral_constant<int, 3>{}); break;
      case 4: launch(std::integral_constant<int, 4>{}); break;
      case 8: launch(std::integral_constant<int, 8>{}); break;
      default: throw std::runtime_error("CUDA attention: unsupported group " + std::to_string(a.group));
    }
  });
  KC_LAUNCH();
  attn_combine<<<dim3(a.rows, a.n_heads), 64, 0, c.stream>>>(out, part, a);
  KC_LAUNCH();
}

void attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionBatch& b) {
  paged_attention(c, out, q, k_cache, v_cache, attn_args(b), b.max_context);
}
}  // namespace kc::cuda
