#include <cmath>
#include <vector>

#include "kcache/rope.h"
#include "ops.h"

namespace kc::cpu {

void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) {
  const int half = head_dim / 2;
  std::vector<double> freqs(half);
  for (int i = 0; i < half; ++i) freqs[i] = rope_inv_freq(p, i, head_dim);
  parallel_ranges(c, static_cast<size_t>(rows), 4, [&](size_t b, size_t e) {
    std::vector<float> cs(half), sn(half);
    for (size_t r = b; r < e; ++r) {
      for (int i = 0; i < half; ++i) {
        const double a = static_cast<double>(pos[r]) * freqs[i];
        cs[i] = static_cast<float>(std::cos(a));
        sn[i] = static_cast<float>(std::sin(a));
      }
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (static_cast<int64_t>(r) * n_heads + h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const int a = p.style == RopeStyle::Interleaved ? 2 * i : i;
          const int bb = p.style == RopeStyle::Interleaved ? 2 * i + 1 : i + half;
          const float x0 = v[a], x1 = v[bb];
          v[a] = x0 * cs[i] - x1 * sn[i];
          v[bb] = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  });
}

}  // namespace kc::cpu
