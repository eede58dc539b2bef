// RoPE inverse frequencies, shared by every backend so they rotate identically.
#pragma once
#include <cmath>

#include "kcache/types.h"

namespace kc {

// Inverse frequency of rotation pair i, with Llama-3 scaling when configured
// (transformers' _compute_llama3_parameters). Computed in double on the host.
inline double rope_inv_freq(const RopeParams& p, int i, int head_dim) {
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

}  // namespace kc
