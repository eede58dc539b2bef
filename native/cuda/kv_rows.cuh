// How the CUDA kernels read and write rows of the paged KV cache in each KV cache dtype. A row is
// kv_dim values at byte offset slot * row_bytes, laid out exactly as on the CPU backend
// (dtype_row_bytes): f32, f16 and bf16 element by element; q8_0 in blocks of 34 bytes (an f16
// scale, then 32 int8 values). Kernels are templated on one of the tag types below and widen
// every value to f32 in registers; all arithmetic stays f32.
#pragma once
#include "common.cuh"

namespace kc::cuda {

struct KvF32 {
  static constexpr DType dtype = DType::F32;
  // values j..j+3 of a row (j a multiple of 4); load4_ro through the read-only cache (device
  // memory the kernel never writes), load4 plainly (also for mapped host memory)
  __device__ __forceinline__ static float4 load4_ro(const uint8_t* row, int j) {
    return __ldg(reinterpret_cast<const float4*>(row) + j / 4);
  }
  __device__ __forceinline__ static float4 load4(const uint8_t* row, int j) { return reinterpret_cast<const float4*>(row)[j / 4]; }
  __device__ __forceinline__ static float load1(const uint8_t* row, int j) { return reinterpret_cast<const float*>(row)[j]; }
};

template <typename H, float (*Widen)(H)>
struct Kv16 {
  // 8-byte aligned: rows are kv_dim * 2 bytes with kv_dim a multiple of 4, j a multiple of 4
  __device__ __forceinline__ static float4 load4_ro(const uint8_t* row, int j) { return widen4(__ldg(reinterpret_cast<const uint2*>(row) + j / 4)); }
  __device__ __forceinline__ static float4 load4(const uint8_t* row, int j) { return widen4(reinterpret_cast<const uint2*>(row)[j / 4]); }
  __device__ __forceinline__ static float4 widen4(uint2 u) {
    H h[4];
    memcpy(h, &u, sizeof u);
    return make_float4(Widen(h[0]), Widen(h[1]), Widen(h[2]), Widen(h[3]));
  }
  __device__ __forceinline__ static float load1(const uint8_t* row, int j) { return Widen(reinterpret_cast<const H*>(row)[j]); }
};

__device__ __forceinline__ float widen_f16(__half h) { return __half2float(h); }
__device__ __forceinline__ float widen_bf16(__nv_bfloat16 h) { return __bfloat162float(h); }

struct KvF16 : Kv16<__half, widen_f16> {
  static constexpr DType dtype = DType::F16;
};
struct KvBF16 : Kv16<__nv_bfloat16, widen_bf16> {
  static constexpr DType dtype = DType::BF16;
};

struct KvQ8 {
  static constexpr DType dtype = DType::Q8_0;
  __device__ __forceinline__ static float scale(const uint8_t* blk) {
    __half d;
    memcpy(&d, blk, 2);  // 2-byte aligned only (34-byte blocks)
    return __half2float(d);
  }
  // four values never straddle a block (32 is a multiple of 4)
  __device__ __forceinline__ static float4 load4(const uint8_t* row, int j) {
    const uint8_t* blk = row + (j / 32) * 34;
    const float d = scale(blk);
    const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2 + j % 32);
    return make_float4(d * q[0], d * q[1], d * q[2], d * q[3]);
  }
  __device__ __forceinline__ static float4 load4_ro(const uint8_t* row, int j) { return load4(row, j); }
  __device__ __forceinline__ static float load1(const uint8_t* row, int j) {
    const uint8_t* blk = row + (j / 32) * 34;
    return scale(blk) * reinterpret_cast<const int8_t*>(blk + 2)[j % 32];
  }
};

// Calls f with a value of the tag type for dtype t (supports_kv refuses the others).
template <typename F>
void dispatch_kv(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(KvF32{}); break;
    case DType::F16: f(KvF16{}); break;
    case DType::BF16: f(KvBF16{}); break;
    case DType::Q8_0: f(KvQ8{}); break;
    default: throw std::runtime_error(std::string("the CUDA backend has no KV cache kernels for ") + dtype_name(t));
  }
}

inline bool kv_dtype_supported(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0; }

}  // namespace kc::cuda
