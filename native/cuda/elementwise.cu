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
// One block per row; f32/f16/bf16 element by element (round to nearest even, as the CPU's
// encode_row), q8_0 one warp per block of 32 values with the CPU quantizer's arithmetic
// (d = amax / 127 stored as f16, q = round(x / d) with the f32 d, IEEE division).
template <typename T>
__device__ __forceinline__ T narrow(float x);
template <>
__device__ __forceinline__ float narrow<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half narrow<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename T>
__global__ void kv_store_kernel(uint8_t* k_cache, uint8_t* v_cache, const float* k, const float* v, const int32_t* slots, int kv_dim) {
  const int64_t r = blockIdx.x;
  T* kd = reinterpret_cast<T*>(k_cache) + static_cast<int64_t>(slots[r]) * kv_dim;
  T* vd = reinterpret_cast<T*>(v_cache) + static_cast<int64_t>(slots[r]) * kv_dim;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    kd[i] = narrow<T>(k[r * kv_dim + i]);
    vd[i] = narrow<T>(v[r * kv_dim + i]);
  }
}

__device__ __forceinline__ void quantize_q8_0_block(const float* x, uint8_t* blk, int lane) {
  const float xv = x[lane];
  const float amax = warp_max(fabsf(xv));
  const float d = __fdiv_rn(amax, 127.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  if (lane == 0) {
    const __half h = __float2half_rn(d);
    memcpy(blk, &h, 2);
  }
  blk[2 + lane] = static_cast<uint8_t>(static_cast<int8_t>(roundf(__fmul_rn(xv, id))));
}

__global__ void kv_store_q8_0_kernel(uint8_t* k_cache, uint8_t* v_cache, const float* k, const float* v, const int32_t* slots, int kv_dim) {
  const int64_t r = blockIdx.x;
  const int64_t row_bytes = static_cast<int64_t>(kv_dim / 32) * 34;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int b = warp; b < kv_dim / 32; b += warps) {
    quantize_q8_0_block(k + r * kv_dim + b * 32, k_cache + slots[r] * row_bytes + b * 34, lane);
    quantize_q8_0_block(v + r * kv_dim + b * 32, v_cache + slots[r] * row_bytes + b * 34, lane);
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
void kv_store(Ctx& c, void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots, int rows, int kv_dim,
              DType kv_dtype) {
  if (rows == 0) return;
  auto* kc = static_cast<uint8_t*>(k_cache);
  auto* vc = static_cast<uint8_t*>(v_cache);
  switch (kv_dtype) {
    case DType::F32: kv_store_kernel<float><<<rows, 256, 0, c.stream>>>(kc, vc, k, v, slots, kv_dim); break;
    case DType::F16: kv_store_kernel<__half><<<rows, 256, 0, c.stream>>>(kc, vc, k, v, slots, kv_dim); break;
    case DType::BF16: kv_store_kernel<__nv_bfloat16><<<rows, 256, 0, c.stream>>>(kc, vc, k, v, slots, kv_dim); break;
    case DType::Q8_0: kv_store_q8_0_kernel<<<rows, 256, 0, c.stream>>>(kc, vc, k, v, slots, kv_dim); break;
    default: throw std::runtime_error(std::string("the CUDA backend has no KV cache kernels for ") + dtype_name(kv_dtype));
  }
  KC_LAUNCH();
}
void fill_uniform(Ctx& c, float* dst, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  fill_uniform_kernel<<<4096, 256, 0, c.stream>>>(dst, n, seed, lo, hi);
  KC_LAUNCH();
}
}  // namespace kc::cuda
