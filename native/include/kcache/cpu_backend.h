#pragma once
#include <memory>

#include "kcache/backend.h"

namespace kc {
std::unique_ptr<Backend> make_cpu_backend(int threads);
// The index of the first largest of x[0, n) by the CPU kernels in use, as sampling's greedy path
// defines it (cpu/kernels.h: argmax_scalar).
int cpu_argmax(const float* x, int n);
}
