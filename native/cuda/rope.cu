#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "common.cuh"
#include "kcache/rope.h"

namespace kc::cuda {
namespace {
// Inverse frequencies are computed on the host in double exactly as the CPU backend does
// (Llama-3 scaling included) and passed in; angles are formed in double on the device.
__global__ void rope_kernel(float* x, const int32_t* pos, const double* freqs, int n_heads, int head_dim, int interleaved) {
  const int r = blockIdx.x;
  const int half = head_dim / 2;
  const double p = pos[r];
  for (int t = blockIdx.y * blockDim.x + threadIdx.x; t < n_heads * half; t += gridDim.y * blockDim.x) {
    const int h = t / half, i = t % half;
    double s, co;
    sincos(p * freqs[i], &s, &co);
    const float cs = static_cast<float>(co), sn = static_cast<float>(s);
    float* v = x + (static_cast<int64_t>(r) * n_heads + h) * head_dim;
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
  }
}

// The device copy of a frequency table, made once per distinct RoPE configuration and kept for
// the life of the process (a few hundred bytes each).
const double* freq_table(const RopeParams& p, int head_dim) {
  static std::mutex mu;
  static std::map<std::tuple<int, double, double, double, double, double>, double*> tables;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(head_dim, p.theta, p.llama3_factor, p.llama3_low_freq_factor, p.llama3_high_freq_factor,
                                   p.llama3_original_max_pos);
  auto it = tables.find(key);
  if (it != tables.end()) return it->second;
  const int half = head_dim / 2;
  std::vector<double> f(half);
  for (int i = 0; i < half; ++i) f[i] = rope_inv_freq(p, i, head_dim);
  double* d = nullptr;
  KC_CUDA(cudaMalloc(&d, half * sizeof(double)));
  KC_CUDA(cudaMemcpy(d, f.data(), half * sizeof(double), cudaMemcpyHostToDevice));
  tables[key] = d;
  return d;
}
}  // namespace

void rope(Ctx& c, float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) {
  if (rows == 0) return;
  const dim3 grid(rows, (n_heads * (head_dim / 2) + 127) / 128);
  rope_kernel<<<grid, 128, 0, c.stream>>>(x, pos, freq_table(p, head_dim), n_heads, head_dim,
                                          p.style == RopeStyle::Interleaved ? 1 : 0);
  KC_LAUNCH();
}
}  // namespace kc::cuda
