#include "kernels.h"

#include <cstdlib>
#include <cstring>

namespace kc {

#ifndef KC_HAVE_X86_SIMD
const Kernels* avx2_kernels() { return nullptr; }
const Kernels* avx512_kernels() { return nullptr; }
#endif

namespace {

bool cpu_has(const char* what) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (std::strcmp(what, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (std::strcmp(what, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#endif
  (void)what;
  return false;
}

}  // namespace

// The widest variant the CPU supports, capped by KCACHE_SIMD (generic < avx2 < avx512).
const Kernels& active_kernels() {
  static const Kernels* chosen = [] {
    const char* cap = std::getenv("KCACHE_SIMD");
    const bool allow512 = !cap || std::strcmp(cap, "avx512") == 0;
    const bool allow2 = allow512 || std::strcmp(cap, "avx2") == 0;
    // The CPU check comes first: building a variant's table runs code compiled for that variant.
    if (allow512 && cpu_has("avx512") && avx512_kernels()) return avx512_kernels();
    if (allow2 && cpu_has("avx2") && avx2_kernels()) return avx2_kernels();
    return &generic_kernels();
  }();
  return *chosen;
}

}  // namespace kc
