#include <cmath>
#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

// Inverse frequency of rotation pair i, with Llama-3 scaling when configured
// (transformers' _compute_llama3_parameters).
double inv_freq(const RopeParams& p, int i, int head_dim) {
  double f = 1.0 / std::pow(p.theta, (2.0 * i) / head_dim);
  if (p.llama3_factor <= 0.0) return f;
  const double low_wavelen = p.llama3_original_max_pos / p.llama3_low_freq_factor;
  const double high_wavelen = p.llama3_original_max_pos / p.llama3_high_freq_factor;
  const double wavelen = 2.0 * M_PI / f;
  if (wavelen < high_wavelen) return f;
  if (wavelen > low_wavelen) return f / p.llama3_factor;
  const double smooth = (p.llama3_original_max_pos / wavelen - p.llama3_low_freq_factor) /
                        (p.llama3_high_freq_factor - p.llama3_low_freq_factor);
  return (1.0 - smooth) * f / p.llama3_factor + smooth * f;
}

}  // namespace

void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) {
  const int half = head_dim / 2;
  std::vector<double> freqs(half);
  for (int i = 0; i < half; ++i) freqs[i] = inv_freq(p, i, head_dim);
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
