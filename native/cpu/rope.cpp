#include <algorithm>
#include <cmath>
#include <vector>

#include "kcache/rope.h"
#include "ops.h"

namespace kc::cpu {

namespace {

bool same_params(const RopeParams& a, const RopeParams& b) {
  return a.style == b.style && a.theta == b.theta && a.llama3_factor == b.llama3_factor &&
         a.llama3_low_freq_factor == b.llama3_low_freq_factor && a.llama3_high_freq_factor == b.llama3_high_freq_factor &&
         a.llama3_original_max_pos == b.llama3_original_max_pos;
}

// c.rope covering positions [0, n) of (p, head_dim): rebuilt for another configuration, grown (at
// least doubling) past its end.
const RopeTable& table(Ctx& c, const RopeParams& p, int head_dim, int n) {
  RopeTable& t = c.rope;
  if (t.head_dim != head_dim || !same_params(t.params, p)) {
    t = RopeTable{};
    t.params = p;
    t.head_dim = head_dim;
  }
  if (n <= t.positions) return t;
  const int half = head_dim / 2;
  const int from = t.positions;
  const int to = std::max(n, 2 * from);
  std::vector<double> freqs(half);
  for (int i = 0; i < half; ++i) freqs[i] = rope_inv_freq(p, i, head_dim);
  t.cs.resize(static_cast<size_t>(to) * half);
  t.sn.resize(static_cast<size_t>(to) * half);
  parallel_ranges(c, static_cast<size_t>(to - from), 256, [&](size_t b, size_t e) {
    for (size_t pos = from + b; pos < from + e; ++pos)
      for (int i = 0; i < half; ++i) {
        const double a = static_cast<double>(pos) * freqs[i];
        t.cs[pos * half + i] = static_cast<float>(std::cos(a));
        t.sn[pos * half + i] = static_cast<float>(std::sin(a));
      }
  });
  t.positions = to;
  return t;
}

}  // namespace

void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) {
  if (rows <= 0) return;
  const int half = head_dim / 2;
  const RopeTable& t = table(c, p, head_dim, *std::max_element(pos, pos + rows) + 1);
  parallel_ranges(c, static_cast<size_t>(rows), 4, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) {
      const float* cs = t.cs.data() + static_cast<size_t>(pos[r]) * half;
      const float* sn = t.sn.data() + static_cast<size_t>(pos[r]) * half;
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
