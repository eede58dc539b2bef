#include <cmath>

#include "ops.h"

namespace kc::cpu {

void rmsnorm(Ctx& c, float* out, const float* x, const float* w, int rows, int dim, float eps) {
  parallel_ranges(c, static_cast<size_t>(rows), 4, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      double ss = 0.0;  // accumulate in double: dims reach thousands and this is cheap
      for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      for (int i = 0; i < dim; ++i) o[i] = xr[i] * inv * w[i];
    }
  });
}

}  // namespace kc::cpu
