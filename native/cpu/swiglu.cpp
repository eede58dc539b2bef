#include <cmath>

#include "ops.h"

namespace kc::cpu {

void swiglu(Ctx& c, float* out, const float* gate, const float* up, size_t n) {
  parallel_ranges(c, n, 4096, [&](size_t b, size_t e) {
    if (c.k.swiglu) return c.k.swiglu(out + b, gate + b, up + b, e - b);
    for (size_t i = b; i < e; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

}  // namespace kc::cpu
