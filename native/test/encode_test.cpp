// Each x86 variant's encode_16 (the KV cache's f16/bf16 store, cpu/arch/simd_kernels.h) against the
// reference encode_row, bit for bit: every upper half of a float's bits (all signs, exponents and
// leading mantissa bits) with lower halves that sit on and around both formats' rounding points,
// then random bit patterns; row lengths that leave a tail. Prints one line per variant and exits 0
// when every value agrees (test/encode-16.test.ts runs it).
//   kcache_encode_test [random values]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kcache/quant.h"
#include "kernels.h"

namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Wrong values of one variant and type over `x`, encoded in rows of `row` values.
long check(const kc::Kernels& k, kc::DType t, const std::vector<float>& x, int row) {
  std::vector<uint16_t> got(row), want(row);
  long wrong = 0;
  for (size_t at = 0; at < x.size(); at += row) {
    const int n = static_cast<int>(std::min<size_t>(row, x.size() - at));
    k.encode_16(t, x.data() + at, got.data(), n);
    kc::encode_row(t, x.data() + at, want.data(), n);
    for (int i = 0; i < n; ++i) {
      if (got[i] == want[i]) continue;
      uint32_t b;
      std::memcpy(&b, &x[at + i], 4);
      if (wrong < 5) std::printf("%s %s: 0x%08x -> 0x%04x, reference 0x%04x\n", k.name, kc::dtype_name(t), b, got[i], want[i]);
      ++wrong;
    }
  }
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  const long randoms = argc > 1 ? std::atol(argv[1]) : 4000000;
  std::vector<float> x;
  // lower halves around f16's rounding bit (bit 12 of a normal's mantissa; others for subnormals)
  // and bf16's (bit 15)
  const uint32_t lows[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x5000, 0x7fff,
                           0x8000, 0x8001, 0x9000, 0xbfff, 0xc000, 0xefff, 0xf000, 0xffff};
  for (uint32_t hi = 0; hi < 0x10000; ++hi)
    for (uint32_t lo : lows) x.push_back(from_bits(hi << 16 | lo));
  std::mt19937 rng(11);
  for (long i = 0; i < randoms; ++i) x.push_back(from_bits(static_cast<uint32_t>(rng())));

  struct Variant {
    const kc::Kernels* k;
    bool runs;
  };
  const Variant variants[] = {
      {kc::avx2_kernels(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")},
      {kc::avx512_kernels(), __builtin_cpu_supports("avx512f") != 0},
      {kc::avx512vnni_kernels(), __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")},
  };
  long wrong = 0;
  int tested = 0;
  for (const Variant& v : variants) {
    if (!v.k || !v.runs || !v.k->encode_16) continue;
    long w = 0;
    for (kc::DType t : {kc::DType::F16, kc::DType::BF16})
      for (int row : {192, 61}) w += check(*v.k, t, x, row);
    std::printf("%s: %zu values, f16 and bf16, %ld wrong\n", v.k->name, x.size(), w);
    wrong += w;
    ++tested;
  }
  std::printf("%d variants, %ld wrong\n", tested, wrong);
  return wrong == 0 && tested > 0 ? 0 : 1;
}
