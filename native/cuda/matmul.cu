// out[r, o] = sum_k x[r, k] * w[o, k] (+ bias[o]), fp32 accumulation; w row-major [N, K] in
// f32, bf16 or f16. Three kernels:
//  - GEMV (rows <= 8: decode): one warp per output, 16-byte weight loads unrolled 4 deep so each
//    warp keeps 2 KiB in flight; every row of x is applied to each weight element loaded, so a
//    batch of up to 8 decode rows reads the weights once.
//  - WMMA GEMM (bf16/f16 weights, more rows): 64x64 tiles, tensor cores, x rounded to the
//    weight dtype in shared memory, fp32 accumulators.
//  - SIMT GEMM (f32 weights, or KCACHE_CUDA_TC=0): 64x64 tiles, 4x4 outputs per thread, fp32.
#include <mma.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "common.cuh"

namespace kc::cuda {
namespace {

constexpr int kGemvMaxRows = 8;
constexpr int kGemvWarps = 4;
constexpr int kMaxSegments = 3;

// Up to three weight matrices sharing one input x (q/k/v, gate/up): one GEMV launch over all of
// their output rows. Segment i covers global output rows [start[i], start[i+1]).
template <typename T>
struct Segments {
  const T* w[kMaxSegments];
  float* out[kMaxSegments];
  const float* bias[kMaxSegments];
  int start[kMaxSegments + 1];
  int count;
};

template <typename T>
struct Vec;  // 16 bytes of T
template <>
struct Vec<float> {
  static constexpr int n = 4;
};
template <>
struct Vec<__nv_bfloat16> {
  static constexpr int n = 8;
};
template <>
struct Vec<__half> {
  static constexpr int n = 8;
};

template <typename T>
__device__ __forceinline__ void unpack(const uint4& u, float* f) {
  if constexpr (sizeof(T) == 4) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
  } else {
    const T* h = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = load_f32(h, i);
  }
}

// VEC: weights and x are read 16 bytes at a time (K a multiple of the vector, rows aligned).
// kUnroll 16-byte loads per lane are issued before any math. MAXR: a compile-time bound on rows
// (1, 2, 4 or 8), so the per-row accumulators stay in registers.
template <typename T, bool VEC, int kUnroll, int MAXR>
__global__ void gemv_kernel(Segments<T> sg, const float* x, int rows, int K) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // grid-stride over output rows: warps stay resident and keep loads in flight across rows
  for (int og = blockIdx.x * kGemvWarps + warp; og < sg.start[kMaxSegments]; og += gridDim.x * kGemvWarps) {
  // the segment by comparisons, not by indexing the parameter struct (which would copy it to the stack)
  const bool s0 = og < sg.start[1], s1 = !s0 && og < sg.start[2];
  const int begin = s0 ? 0 : s1 ? sg.start[1] : sg.start[2];
  const int N = (s0 ? sg.start[1] : s1 ? sg.start[2] : sg.start[3]) - begin;
  const int o = og - begin;
  float* out = s0 ? sg.out[0] : s1 ? sg.out[1] : sg.out[2];
  const float* bias = s0 ? sg.bias[0] : s1 ? sg.bias[1] : sg.bias[2];
  const T* wr = (s0 ? sg.w[0] : s1 ? sg.w[1] : sg.w[2]) + static_cast<int64_t>(o) * K;
  float acc[MAXR];
#pragma unroll
  for (int r = 0; r < MAXR; ++r) acc[r] = 0.0f;
  if constexpr (VEC) {
    constexpr int V = Vec<T>::n;
    const uint4* wv = reinterpret_cast<const uint4*>(wr);
    const int nv = K / V;
    for (int base = lane; base < nv; base += 32 * kUnroll) {
      uint4 u[kUnroll];
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) {
        const int idx = base + 32 * j;
        u[j] = idx < nv ? __ldg(wv + idx) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) {
        const int idx = base + 32 * j;
        if (idx >= nv) break;
        float wf[V];
        unpack<T>(u[j], wf);
#pragma unroll
        for (int r = 0; r < MAXR; ++r) {
          if (r >= rows) continue;
          const float4* xv = reinterpret_cast<const float4*>(x + static_cast<int64_t>(r) * K + idx * V);
#pragma unroll
          for (int q = 0; q < V / 4; ++q) {
            const float4 xx = __ldg(xv + q);
            acc[r] += wf[4 * q] * xx.x + wf[4 * q + 1] * xx.y + wf[4 * q + 2] * xx.z + wf[4 * q + 3] * xx.w;
          }
        }
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float wk = load_f32(wr, k);
#pragma unroll
      for (int r = 0; r < MAXR; ++r) {
        if (r >= rows) continue;
        acc[r] += wk * x[static_cast<int64_t>(r) * K + k];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < MAXR; ++r) {
    if (r >= rows) continue;
    const float s = warp_sum(acc[r]);
    if (lane == 0) out[static_cast<int64_t>(r) * N + o] = s + (bias ? bias[o] : 0.0f);
  }
  }
}

constexpr int BM = 64, BN = 64;

// SIMT GEMM: 256 threads, each a 4x4 block of outputs; BK = 16.
template <typename T>
__global__ void __launch_bounds__(256) gemm_simt_kernel(float* out, const float* x, int M, const T* w, const float* bias, int N, int K) {
  constexpr int BK = 16;
  __shared__ float As[BK][BM + 4];  // x tile, k-major
  __shared__ float Bs[BK][BN + 4];  // w tile, k-major
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int i = threadIdx.x; i < BM * BK; i += 256) {
      const int mm = i / BK, kk = i % BK;
      const int gm = m0 + mm, gk = k0 + kk;
      As[kk][mm] = (gm < M && gk < K) ? x[static_cast<int64_t>(gm) * K + gk] : 0.0f;
      const int gn = n0 + mm;
      Bs[kk][mm] = (gn < N && gk < K) ? load_f32(w, static_cast<int64_t>(gn) * K + gk) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        a[i] = As[kk][ty * 4 + i];
        b[i] = Bs[kk][tx * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + ty * 4 + i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gn = n0 + tx * 4 + j;
      if (gn < N) out[static_cast<int64_t>(gm) * N + gn] = acc[i][j] + (bias ? bias[gn] : 0.0f);
    }
  }
}

template <typename T>
__device__ __forceinline__ T from_f32(float f);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float f) {
  return __float2bfloat16(f);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float f) {
  return __float2half(f);
}

// WMMA GEMM: 128 threads (4 warps in 2x2), each warp a 32x32 block of 2x2 16x16 fragments; BK = 32.
template <typename T>
__global__ void __launch_bounds__(128) gemm_wmma_kernel(float* out, const float* x, int M, const T* w, const float* bias, int N, int K) {
  using namespace nvcuda;
  constexpr int BK = 32, LD = BK + 8;
  __shared__ __align__(32) T As[BM][LD];  // x tile [m][k]
  __shared__ __align__(32) T Bs[BN][LD];  // w tile [n][k]: B as column-major K x N
  __shared__ __align__(32) float Cs[4][16 * 16];
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int i = threadIdx.x; i < BM * BK; i += 128) {
      const int mm = i / BK, kk = i % BK;
      const int gk = k0 + kk;
      const int gm = m0 + mm, gn = n0 + mm;
      As[mm][kk] = from_f32<T>((gm < M && gk < K) ? x[static_cast<int64_t>(gm) * K + gk] : 0.0f);
      Bs[mm][kk] = (gn < N && gk < K) ? w[static_cast<int64_t>(gn) * K + gk] : from_f32<T>(0.0f);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm + 16 * i][kk], LD);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[wn + 16 * j][kk], LD);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(Cs[warp], acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int gm = m0 + wm + 16 * i + e / 16, gn = n0 + wn + 16 * j + e % 16;
        if (gm < M && gn < N) out[static_cast<int64_t>(gm) * N + gn] = Cs[warp][e] + (bias ? bias[gn] : 0.0f);
      }
      __syncwarp();
    }
}

template <typename T>
void launch_gemv(Ctx& c, const Segments<T>& sg, const float* x, int rows, int K) {
  static const int sms = [] {
    int dev = 0, n = 0;
    KC_CUDA(cudaGetDevice(&dev));
    KC_CUDA(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  const dim3 grid(std::min((sg.start[sg.count] + kGemvWarps - 1) / kGemvWarps, sms * 16));
  bool vec = K % Vec<T>::n == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  for (int i = 0; i < sg.count; ++i) vec = vec && reinterpret_cast<uintptr_t>(sg.w[i]) % 16 == 0;
  // KCACHE_GEMV_UNROLL=8 keeps 8 loads per lane in flight (default 4)
  const char* u = std::getenv("KCACHE_GEMV_UNROLL");
  const bool u8 = u && std::atoi(u) == 8;
  auto go = [&](auto r_tag) {
    constexpr int R = decltype(r_tag)::value;
    if (!vec) gemv_kernel<T, false, 1, R><<<grid, 32 * kGemvWarps, 0, c.stream>>>(sg, x, rows, K);
    else if (u8) gemv_kernel<T, true, 8, R><<<grid, 32 * kGemvWarps, 0, c.stream>>>(sg, x, rows, K);
    else gemv_kernel<T, true, 4, R><<<grid, 32 * kGemvWarps, 0, c.stream>>>(sg, x, rows, K);
  };
  if (rows == 1) go(std::integral_constant<int, 1>{});
  else if (rows == 2) go(std::integral_constant<int, 2>{});
  else if (rows <= 4) go(std::integral_constant<int, 4>{});
  else go(std::integral_constant<int, 8>{});
}

template <typename T>
void launch(Ctx& c, float* out, const float* x, int rows, const T* w, const float* bias, int N, int K) {
  if (rows <= kGemvMaxRows) {
    Segments<T> sg{};
    sg.w[0] = w, sg.out[0] = out, sg.bias[0] = bias, sg.start[0] = 0, sg.count = 1;
    sg.start[1] = sg.start[2] = sg.start[3] = N;
    launch_gemv(c, sg, x, rows, K);
    return;
  }
  const dim3 grid((N + BN - 1) / BN, (rows + BM - 1) / BM);
  if constexpr (sizeof(T) == 2) {
    if (c.tensor_cores) {
      gemm_wmma_kernel<T><<<grid, 128, 0, c.stream>>>(out, x, rows, w, bias, N, K);
      return;
    }
  }
  gemm_simt_kernel<T><<<grid, 256, 0, c.stream>>>(out, x, rows, w, bias, N, K);
}
}  // namespace

void matmul_multi(Ctx& c, float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) {
  bool same = count <= kMaxSegments && rows <= kGemvMaxRows;
  for (int i = 1; i < count && same; ++i) same = ws[i].dtype == ws[0].dtype && ws[i].cols == ws[0].cols;
  if (!same) {
    for (int i = 0; i < count; ++i) matmul(c, outs[i], x, rows, ws[i], biases[i]);
    return;
  }
  if (rows == 0) return;
  dispatch_dtype(ws[0].dtype, [&](auto* tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    Segments<T> sg{};
    sg.count = count;
    sg.start[0] = 0;
    for (int i = 0; i < count; ++i) {
      sg.w[i] = static_cast<const T*>(ws[i].data);
      sg.out[i] = outs[i];
      sg.bias[i] = biases[i];
      sg.start[i + 1] = sg.start[i] + static_cast<int>(ws[i].rows);
    }
    for (int i = count + 1; i <= kMaxSegments; ++i) sg.start[i] = sg.start[count];
    launch_gemv(c, sg, x, rows, static_cast<int>(ws[0].cols));
  });
  KC_LAUNCH();
}

void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  if (rows == 0) return;
  const int N = static_cast<int>(w.rows), K = static_cast<int>(w.cols);
  dispatch_dtype(w.dtype, [&](auto* tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    launch<T>(c, out, x, rows, static_cast<const T*>(w.data), bias, N, K);
  });
  KC_LAUNCH();
}
}  // namespace kc::cuda
