#include "common.cuh"

namespace kc::cuda {
namespace {
// 1 / rms of a row from each thread's partial sum of squares (double, like the CPU backend);
// every thread gets the result.
__device__ float block_inv_rms(double ss, int dim, float eps) {
  __shared__ double part[32];
  __shared__ float inv;
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int i = 0; i < (blockDim.x + 31) / 32; ++i) t += part[i];
    inv = static_cast<float>(1.0 / sqrt(t / dim + eps));
  }
  __syncthreads();
  return inv;
}

// One block per row; the sum of squares in double like the CPU backend.
__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int dim, float eps) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  const float inv = block_inv_rms(ss, dim, eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}
// x += y and out = rmsnorm(x) * w in one pass per row; out may alias y (y is fully read before
// the barrier that precedes the writes of out).
__global__ void add_rmsnorm_kernel(float* x, const float* y, float* out, const float* w, int dim, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  double ss = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = x[base + i] + y[base + i];
    x[base + i] = v;
    ss += static_cast<double>(v) * v;
  }
  const float inv = block_inv_rms(ss, dim, eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[base + i] = x[base + i] * inv * w[i];
}
}  // namespace

void add_rmsnorm(Ctx& c, float* x, const float* y, float* out, const float* w, int rows, int dim, float eps) {
  if (rows == 0) return;
  add_rmsnorm_kernel<<<rows, 256, 0, c.stream>>>(x, y, out, w, dim, eps);
  KC_LAUNCH();
}

void rmsnorm(Ctx& c, float* out, const float* x, const float* w, int rows, int dim, float eps) {
  if (rows == 0) return;
  rmsnorm_kernel<<<rows, 256, 0, c.stream>>>(out, x, w, dim, eps);
  KC_LAUNCH();
}
}  // namespace kc::cuda
