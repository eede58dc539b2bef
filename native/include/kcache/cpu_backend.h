#pragma once
#include <memory>

#include "kcache/backend.h"

namespace kc {
std::unique_ptr<Backend> make_cpu_backend(int threads);
// The index of the first largest of x[0, n) by the CPU kernels in use, as sampling's greedy path
// defines it (cpu/kernels.h: argmax_scalar).
int cpu_argmax(const float* x, int n);
// Sampling's weights: out[i] = exp((x[i] - max) / temperature) by the CPU kernels in use (their
// exp_sum: float32, within ~1e-5 of the exact value), 0 where x[i] is -Infinity (a banned token).
void cpu_exp_weights(const float* x, int n, float max, float temperature, float* out);
}
