#include "common.cuh"

namespace kc::cuda {
namespace {
__global__ void swiglu_kernel(float* out, const float* gate, const float* up, size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}
}  // namespace

void swiglu(Ctx& c, float* out, const float* gate, const float* up, size_t n) {
  if (n == 0) return;
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, c.stream>>>(out, gate, up, n);
  KC_LAUNCH();
}
}  // namespace kc::cuda
