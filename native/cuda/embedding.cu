#include "common.cuh"

namespace kc::cuda {
namespace {
template <typename T>
__global__ void embedding_kernel(float* out, const T* table, const int32_t* tokens, int64_t dim) {
  const int64_t r = blockIdx.x;
  const int64_t row = tokens[r];
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[r * dim + i] = load_f32(table, row * dim + i);
}
}  // namespace

void embedding(Ctx& c, float* out, const Tensor& table, const int32_t* tokens, int n) {
  if (n == 0) return;
  dispatch_dtype(table.dtype, [&](auto* tag) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    embedding_kernel<T><<<n, 256, 0, c.stream>>>(out, static_cast<const T*>(table.data), tokens, table.cols);
  });
  KC_LAUNCH();
}
}  // namespace kc::cuda
