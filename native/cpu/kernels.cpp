#include "kernels.h"

#include <cstdlib>
#include <cstring>

namespace kc {

#ifndef KC_HAVE_AVX2
const Kernels* avx2_kernels() { return nullptr; }
#endif

namespace {
bool cpu_has_avx2_fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}
}  // namespace

const Kernels& active_kernels() {
  static const Kernels* chosen = [] {
    const char* force = std::getenv("KCACHE_SIMD");
    if (force && std::strcmp(force, "generic") == 0) return &generic_kernels();
    const Kernels* avx2 = avx2_kernels();
    if (avx2 && cpu_has_avx2_fma()) return avx2;
    return &generic_kernels();
  }();
  return *chosen;
}

}  // namespace kc
