// Shared helpers for the CUDA ops: error checks, dtype loads, launch geometry.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kcache/backend.h"

namespace kc::cuda {

// Every CUDA call is checked: a failure becomes std::runtime_error naming the call and place.
#define KC_CUDA(call)                                                                                  \
  do {                                                                                                 \
    cudaError_t kc_err_ = (call);                                                                      \
    if (kc_err_ != cudaSuccess)                                                                        \
      throw std::runtime_error(std::string("CUDA: ") + #call + " failed at " + __FILE__ + ":" +       \
                               std::to_string(__LINE__) + ": " + cudaGetErrorString(kc_err_));         \
  } while (0)

// After a kernel launch: launch-configuration errors surface here (execution errors at the next
// synchronizing call, which is checked too).
#define KC_LAUNCH() KC_CUDA(cudaGetLastError())

__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float load_f32(const __half* p, int64_t i) { return __half2float(p[i]); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline unsigned blocks_for(size_t n, unsigned threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// Dispatches on a weight dtype: F is called with a typed null pointer selecting the element type.
template <typename F>
void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(static_cast<const float*>(nullptr)); break;
    case DType::BF16: f(static_cast<const __nv_bfloat16*>(nullptr)); break;
    case DType::F16: f(static_cast<const __half*>(nullptr)); break;
    default: throw std::runtime_error(std::string("the CUDA backend has no kernels for ") + dtype_name(t));  // supports_weights() refuses these
  }
}

// Per-backend scratch the ops may use: two independent device regions, grown on demand (a
// grown region's old buffer is freed after the stream has finished with it).
struct Workspace {
  cudaStream_t stream = nullptr;
  int generation = 0;  // bumped when a region is reallocated (recordings using it are stale)
  void* ptr[2] = {nullptr, nullptr};
  size_t bytes[2] = {0, 0};
  void* get(size_t need) { return region(0, need); }
  void* get_second(size_t need) { return region(1, need); }
  void* region(int i, size_t need);
  ~Workspace();
};

struct Ctx {
  cudaStream_t stream;
  Workspace* ws;
  bool tensor_cores;  // KCACHE_CUDA_TC=0 turns the WMMA GEMM off (the SIMT GEMM runs instead)
};

void embedding(Ctx& c, float* out, const Tensor& table, const int32_t* tokens, int n);
void rmsnorm(Ctx& c, float* out, const float* x, const float* w, int rows, int dim, float eps);
void add_rmsnorm(Ctx& c, float* x, const float* y, float* out, const float* w, int rows, int dim, float eps);
void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias);
void matmul_multi(Ctx& c, float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count);
void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p);
void swiglu(Ctx& c, float* out, const float* gate, const float* up, size_t n);
void add(Ctx& c, float* x, const float* y, size_t n);
void get_rows(Ctx& c, float* out, const float* x, const int32_t* idx, int n, int dim);
// The KV cache ops take rows stored as kv_dtype (kv_rows.cuh).
void kv_store(Ctx& c, void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots, int rows, int kv_dim,
              DType kv_dtype);
void attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionBatch& b);
void kcache_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_host, const AttentionBatch& b);
void fill_uniform(Ctx& c, float* dst, size_t n, uint64_t seed, float lo, float hi);

}  // namespace kc::cuda
