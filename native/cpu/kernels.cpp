#include "kernels.h"

#include "kcache/cpu_backend.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace kc {

#ifndef KC_HAVE_X86_SIMD
const Kernels* avx2_kernels() { return nullptr; }
const Kernels* avx512_kernels() { return nullptr; }
const Kernels* avx512vnni_kernels() { return nullptr; }
#endif

namespace {

bool cpu_has(const char* what) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (std::strcmp(what, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (std::strcmp(what, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (std::strcmp(what, "avx512vnni") == 0)
    return cpu_has("avx512") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#endif
  (void)what;
  return false;
}

}  // namespace

void quantize_activations(const float* x, int rows, int k, int8_t* xq, float* xd, int32_t* xs) {
  const int nb = k / 32;
  for (int64_t b = 0; b < static_cast<int64_t>(rows) * nb; ++b) {
    const float* v = x + b * 32;
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fabs(v[i]) > amax ? std::fabs(v[i]) : amax;
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) {
      // round half away from zero (lround's rule, without its library call): p - trunc(p) is exact
      const float p = v[i] * id;
      int q = static_cast<int>(p);
      const float frac = p - static_cast<float>(q);
      q += (frac >= 0.5f) - (frac <= -0.5f);
      xq[b * 32 + i] = static_cast<int8_t>(q);
      sum += q;
    }
    xd[b] = d;
    xs[b] = sum;
  }
}

int argmax_scalar(const float* x, int n) {
  if (n <= 0) return 0;
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

int cpu_argmax(const float* x, int n) {
  const Kernels& k = active_kernels();
  return (k.argmax ? k.argmax : argmax_scalar)(x, n);
}

void cpu_exp_weights(const float* x, int n, float max, float temperature, float* out) {
  const float inv = 1.0f / temperature;
  for (int i = 0; i < n; ++i) out[i] = (x[i] - max) * inv;
  active_kernels().exp_sum(out, n, 0.0f);
  // (exp_sum's vectors give about 1e-38 below -87, which a banned token must not get)
  for (int i = 0; i < n; ++i)
    if (x[i] == -INFINITY) out[i] = 0.0f;
}

// The widest variant the CPU supports, capped by KCACHE_SIMD (generic < avx2 < avx512 < avx512vnni).
const Kernels& active_kernels() {
  static const Kernels* chosen = [] {
    const char* cap = std::getenv("KCACHE_SIMD");
    const bool allowVnni = !cap || std::strcmp(cap, "avx512vnni") == 0;
    const bool allow512 = allowVnni || std::strcmp(cap, "avx512") == 0;
    const bool allow2 = allow512 || std::strcmp(cap, "avx2") == 0;
    // The CPU check comes first: building a variant's table runs code compiled for that variant.
    if (allowVnni && cpu_has("avx512vnni") && avx512vnni_kernels()) return avx512vnni_kernels();
    if (allow512 && cpu_has("avx512") && avx512_kernels()) return avx512_kernels();
    if (allow2 && cpu_has("avx2") && avx2_kernels()) return avx2_kernels();
    return &generic_kernels();
  }();
  return *chosen;
}

}  // namespace kc
