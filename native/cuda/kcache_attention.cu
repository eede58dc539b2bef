// KCache attention on the GPU: K blocks in device memory, V blocks in pinned, mapped host memory
// (the kernel reads them over the host link through their device address).
//   1. full paged attention for every row that is not a top-N row (prefill rows, N >= context);
//   2. kc_scores: for top-N rows, q·k * scale against every cached key (one block per row, KV
//      head and 256-position tile; all query heads of the KV head share each K row);
//   3. kc_select_gather: one block per (row, query head): radix select of the N largest scores
//      (11/11/10-bit passes over the order-preserving keys, ties to the earlier position, the
//      same selection as the CPU backend), softmax over the kept scores (or their share of the
//      full softmax), and the weighted sum of only those N value rows, read from host memory.
#include "attention.cuh"
#include "kv_rows.cuh"

namespace kc::cuda {
namespace {

constexpr int kTile = 256;
constexpr int kSelThreads = 256;

__device__ __forceinline__ bool is_topn_row(const AttnArgs& a, int r, int* n_ctx, int* topn) {
  *n_ctx = a.row_pos[r] + 1;
  *topn = a.row_topn[r];
  return *topn > 0 && *topn < *n_ctx;
}

// scores[(r * n_heads + h) * stride + t]. Lanes in groups of L = head_dim / 4 share one K row
// (one float4 each, coalesced); a warp covers 32 / L positions per load, each block kTile positions.
template <typename KV>
__global__ void kc_scores(const float* q, const uint8_t* k_cache, AttnArgs a, float* scores, int stride) {
  const int tile = blockIdx.x, kvh = blockIdx.y, r = blockIdx.z;
  int n_ctx, topn;
  if (!is_topn_row(a, r, &n_ctx, &topn)) return;
  const int hd = a.head_dim, G = a.group;
  const int L = hd / 4, P = 32 / L;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gi = lane / L, li = lane % L;
  const int32_t* table = a.block_tables + a.table_offset[a.row_seq[r]];
  float4 qr[kMaxGroup];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
    qr[g] = g < G ? *reinterpret_cast<const float4*>(q + (static_cast<int64_t>(r) * a.n_heads + kvh * G + g) * hd + li * 4)
                  : make_float4(0, 0, 0, 0);
  const int t_end = min(n_ctx, (tile + 1) * kTile);
  for (int t0 = tile * kTile + warp * P; t0 < t_end; t0 += (blockDim.x / 32) * P) {
    const int t = t0 + gi;
    float4 k4 = make_float4(0, 0, 0, 0);
    if (t < t_end)
      k4 = KV::load4_ro(k_cache + (static_cast<int64_t>(table[t / a.block_size]) * a.block_size + t % a.block_size) * a.row_bytes,
                        kvh * hd + li * 4);
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= G) break;
      float s = qr[g].x * k4.x + qr[g].y * k4.y + qr[g].z * k4.z + qr[g].w * k4.w;
      for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (li == 0 && t < t_end) scores[(static_cast<int64_t>(r) * a.n_heads + kvh * G + g) * stride + t] = s * a.scale;
    }
  }
}

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Thread 0 walks the histogram from the top: the bucket holding the topn-th largest key.
__device__ int find_bucket(const uint32_t* hist, int bins, int topn, int* above) {
  int b = bins - 1;
  while (*above + static_cast<int>(hist[b]) < topn) *above += hist[b--];
  return b;
}

__device__ float block_reduce(float v, bool is_max, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = is_max ? warp_max(v) : warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = red[0];
    for (int w = 1; w < kSelThreads / 32; ++w) t = is_max ? fmaxf(t, red[w]) : t + red[w];
    red[32] = t;
  }
  __syncthreads();
  const float out = red[32];
  __syncthreads();
  return out;
}

template <typename KV>
__global__ void __launch_bounds__(kSelThreads) kc_select_gather(float* out, const uint8_t* v_host, AttnArgs a, const float* scores, int stride,
                                                              int* kept_all, float* w_all, int max_topn, int renormalize) {
  const int r = blockIdx.x, h = blockIdx.y;
  int n_ctx, topn;
  if (!is_topn_row(a, r, &n_ctx, &topn)) return;
  const float* s = scores + (static_cast<int64_t>(r) * a.n_heads + h) * stride;
  int* kept = kept_all + (static_cast<int64_t>(r) * a.n_heads + h) * max_topn;
  float* wts = w_all + (static_cast<int64_t>(r) * a.n_heads + h) * max_topn;
  __shared__ uint32_t hist[2048];
  __shared__ int sh_b, sh_above;
  __shared__ float red[33];
  __shared__ int warp_cnt[kSelThreads / 32], sh_base, sh_eq_seen;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // level 1: top 11 bits
  for (int i = tid; i < 2048; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int t = tid; t < n_ctx; t += kSelThreads) atomicAdd(&hist[order_key(s[t]) >> 21], 1u);
  __syncthreads();
  if (tid == 0) {
    sh_above = 0;
    sh_b = find_bucket(hist, 2048, topn, &sh_above);
  }
  __syncthreads();
  const uint32_t b1 = sh_b;
  // level 2: next 11 bits among keys in b1
  for (int i = tid; i < 2048; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int t = tid; t < n_ctx; t += kSelThreads) {
    const uint32_t k = order_key(s[t]);
    if ((k >> 21) == b1) atomicAdd(&hist[(k >> 10) & 0x7FF], 1u);
  }
  __syncthreads();
  if (tid == 0) sh_b = find_bucket(hist, 2048, topn, &sh_above);
  __syncthreads();
  const uint32_t b2 = sh_b;
  // level 3: last 10 bits
  for (int i = tid; i < 1024; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int t = tid; t < n_ctx; t += kSelThreads) {
    const uint32_t k = order_key(s[t]);
    if ((k >> 10) == ((b1 << 11) | b2)) atomicAdd(&hist[k & 0x3FF], 1u);
  }
  __syncthreads();
  if (tid == 0) sh_b = find_bucket(hist, 1024, topn, &sh_above);
  __syncthreads();
  const uint32_t threshold = (b1 << 21) | (b2 << 10) | static_cast<uint32_t>(sh_b);
  const int take_equal = topn - sh_above;

  // ordered collection: kept positions in ascending order; the first take_equal ties are kept
  if (tid == 0) {
    sh_base = 0;
    sh_eq_seen = 0;
  }
  __syncthreads();
  for (int base = 0; base < n_ctx; base += kSelThreads) {
    const int t = base + tid;
    const uint32_t k = t < n_ctx ? order_key(s[t]) : 0u;
    const bool eq = t < n_ctx && k == threshold;
    // rank of this tie among all ties so far
    const unsigned eq_mask = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_cnt[warp] = __popc(eq_mask);
    __syncthreads();
    int eq_before = sh_eq_seen;
    for (int w = 0; w < warp; ++w) eq_before += warp_cnt[w];
    eq_before += __popc(eq_mask & ((1u << lane) - 1));
    const bool keep = t < n_ctx && (k > threshold || (eq && eq_before < take_equal));
    __syncthreads();
    if (tid == 0) {
      int tot = 0;
      for (int w = 0; w < kSelThreads / 32; ++w) tot += warp_cnt[w];
      sh_eq_seen += tot;
    }
    const unsigned keep_mask = __ballot_sync(0xffffffffu, keep);
    __syncthreads();
    if (lane == 0) warp_cnt[warp] = __popc(keep_mask);
    __syncthreads();
    int pos = sh_base;
    for (int w = 0; w < warp; ++w) pos += warp_cnt[w];
    pos += __popc(keep_mask & ((1u << lane) - 1));
    if (keep) kept[pos] = t;
    __syncthreads();
    if (tid == 0)
      for (int w = 0; w < kSelThreads / 32; ++w) sh_base += warp_cnt[w];
    __syncthreads();
  }

  // softmax over the kept scores (the largest score is always kept)
  float mx = -INFINITY;
  for (int i = tid; i < topn; i += kSelThreads) mx = fmaxf(mx, s[kept[i]]);
  mx = block_reduce(mx, true, red);
  float sum = 0.0f;
  if (renormalize) {
    for (int i = tid; i < topn; i += kSelThreads) sum += expf(s[kept[i]] - mx);
  } else {
    for (int t = tid; t < n_ctx; t += kSelThreads) sum += expf(s[t] - mx);
  }
  sum = block_reduce(sum, false, red);
  const float inv = 1.0f / sum;
  for (int i = tid; i < topn; i += kSelThreads) wts[i] = expf(s[kept[i]] - mx) * inv;
  __syncthreads();

  // gather: thread groups of hd lanes each take every (threads/hd)-th kept row; V from host memory
  const int hd = a.head_dim, kvh = h / a.group;
  const int32_t* table = a.block_tables + a.table_offset[a.row_seq[r]];
  __shared__ float part[kSelThreads];
  const int groups = kSelThreads / hd > 0 ? kSelThreads / hd : 1;
  for (int d0 = 0; d0 < hd; d0 += kSelThreads) {  // hd > 256 never happens (checked)
    const int d = tid % hd, g = tid / hd;
    float accv = 0.0f;
    if (g < groups) {
      for (int i = g; i < topn; i += groups) {
        const int t = kept[i];
        const uint8_t* v = v_host + (static_cast<int64_t>(table[t / a.block_size]) * a.block_size + t % a.block_size) * a.row_bytes;
        accv += wts[i] * KV::load1(v, kvh * hd + d);
      }
    }
    part[tid] = g < groups ? accv : 0.0f;
    __syncthreads();
    if (tid < hd) {
      float o = 0.0f;
      for (int gg = 0; gg < groups; ++gg) o += part[gg * hd + tid];
      out[(static_cast<int64_t>(r) * a.n_heads + h) * hd + tid] = o;
    }
    __syncthreads();
  }
}
}  // namespace

void kcache_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_host, const AttentionBatch& b) {
  if (b.rows == 0) return;
  AttnArgs a = attn_args(b);
  a.row_topn = b.row_topn;
  check_attention_shape(a.head_dim, a.group);
  // rows that attend to everything (prefill, N >= context): the paged kernel, V read from host memory
  paged_attention(c, out, q, k_cache, v_host, a, b.max_context);
  if (b.max_topn <= 0) return;
  const int stride = b.max_context;
  const size_t score_bytes = static_cast<size_t>(a.rows) * a.n_heads * stride * sizeof(float);
  const size_t kept_bytes = static_cast<size_t>(a.rows) * a.n_heads * b.max_topn * sizeof(int);
  const size_t w_bytes = static_cast<size_t>(a.rows) * a.n_heads * b.max_topn * sizeof(float);
  // the paged kernel's partials live at the start of the workspace until it finishes: use a second region
  char* base = static_cast<char*>(c.ws->get_second(score_bytes + kept_bytes + w_bytes));
  auto* scores = reinterpret_cast<float*>(base);
  auto* kept = reinterpret_cast<int*>(base + score_bytes);
  auto* wts = reinterpret_cast<float*>(base + score_bytes + kept_bytes);
  dispatch_kv(a.kv_dtype, [&](auto kv_tag) {
    using KV = decltype(kv_tag);
    kc_scores<KV><<<dim3((b.max_context + kTile - 1) / kTile, a.n_kv_heads, a.rows), kTile, 0, c.stream>>>(
        q, static_cast<const uint8_t*>(k_cache), a, scores, stride);
    KC_LAUNCH();
    kc_select_gather<KV><<<dim3(a.rows, a.n_heads), kSelThreads, 0, c.stream>>>(
        out, static_cast<const uint8_t*>(v_host), a, scores, stride, kept, wts, b.max_topn, b.topn_renormalize ? 1 : 0);
    KC_LAUNCH();
  });
}
}  // namespace kc::cuda
