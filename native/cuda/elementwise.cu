// Small data-movement ops: residual add, row gather, KV-cache store, and a random fill for
// benchmarks.
#include "common.cuh"

namespace kc::cuda {
namespace {
__global__ void add_kernel(float* x, const float* y, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}
__global__ void get_rows_kernel(float* out, const float* x, const int32_t* idx, int dim) {
  const int64_t r = blockIdx.x;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[r * dim + i] = x[static_cast<int64_t>(idx[r]) * dim + i];
}
__global__ void kv_store_kernel(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slots, int kv_dim) {
  const int64_t r = blockIdx.x;
  const int64_t dst = static_cast<int64_t>(slots[r]) * kv_dim;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    k_cache[dst + i] = k[r * kv_dim + i];
    v_cache[dst + i] = v[r * kv_dim + i];
  }
}
__device__ __forceinline__ uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__global__ void fill_uniform_kernel(float* dst, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(splitmix(seed ^ (i * 0x2545f4914f6cdd1dull)) >> 40) * (1.0f / 16777216.0f);
    dst[i] = lo + (hi - lo) * u;
  }
}
}  // namespace

void add(Ctx& c, float* x, const float* y, size_t n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n, 256), 256, 0, c.stream>>>(x, y, n);
  KC_LAUNCH();
}
void get_rows(Ctx& c, float* out, const float* x, const int32_t* idx, int n, int dim) {
  if (n == 0) return;
  get_rows_kernel<<<n, 256, 0, c.stream>>>(out, x, idx, dim);
  KC_LAUNCH();
}
void kv_store(Ctx& c, float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slots, int rows,
              int kv_dim) {
  if (rows == 0) return;
  kv_store_kernel<<<rows, 256, 0, c.stream>>>(k_cache, v_cache, k, v, slots, kv_dim);
  KC_LAUNCH();
}
void fill_uniform(Ctx& c, float* dst, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  fill_uniform_kernel<<<4096, 256, 0, c.stream>>>(dst, n, seed, lo, hi);
  KC_LAUNCH();
}
}  // namespace kc::cuda
