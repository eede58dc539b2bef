// The 16-bit KV cache kernels of every variant the CPU runs, bit for bit against their references:
//  - encode_16 (the KV store's f16/bf16 rounding, x86 variants) against encode_row: every upper
//    half of a float's bits (all signs, exponents and leading mantissa bits) with lower halves on
//    and around both formats' rounding points, then random bit patterns; row lengths that leave a
//    tail;
//  - weighted_sum_rows_16 (KCache's sum over the kept value rows of an f16/bf16 cache, read as
//    stored) against the same variant's weighted_sum_rows over those rows widened to f32, for
//    every head size the kernels special-case and one they do not.
// Prints one line per variant and exits 0 when every value agrees (test/kv16-kernels.test.ts).
//   kcache_kv16_test [random values]
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

// Wrong values of one variant's encode_16 for type t over `x`, encoded in rows of `row` values.
long check_encode(const kc::Kernels& k, kc::DType t, const std::vector<float>& x, int row) {
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
      if (wrong < 5) std::printf("%s encode %s: 0x%08x -> 0x%04x, reference 0x%04x\n", k.name, kc::dtype_name(t), b, got[i], want[i]);
      ++wrong;
    }
  }
  return wrong;
}

// Wrong outputs of one variant's weighted_sum_rows_16 for type t: n scattered rows of hd values.
long check_weighted_sum(const kc::Kernels& k, kc::DType t, int hd, int n, std::mt19937& rng) {
  const int stride = 3 * hd + 8;  // rows of a wider cache row, not contiguous
  std::vector<float> wide(static_cast<size_t>(n) * stride);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (float& v : wide) v = u(rng);
  std::vector<uint16_t> half(wide.size());
  kc::encode_row(t, wide.data(), half.data(), static_cast<int64_t>(wide.size()));
  kc::dequantize_row(t, half.data(), wide.data(), static_cast<int64_t>(wide.size()));  // the widened values
  std::vector<float> weights(n);
  for (float& w : weights) w = u(rng) * 0.5f + 1.0f;
  std::vector<const uint16_t*> rows16(n);
  std::vector<const float*> rows(n);
  for (int r = 0; r < n; ++r) {  // kept rows in a scattered order
    const int at = static_cast<int>((static_cast<int64_t>(r) * 7919) % n);
    rows16[r] = half.data() + static_cast<int64_t>(at) * stride + hd;
    rows[r] = wide.data() + static_cast<int64_t>(at) * stride + hd;
  }
  std::vector<float> got(hd), want(hd);
  k.weighted_sum_rows_16(t, got.data(), weights.data(), rows16.data(), n, hd);
  k.weighted_sum_rows(want.data(), weights.data(), rows.data(), n, hd);
  long wrong = 0;
  for (int i = 0; i < hd; ++i) {
    if (std::memcmp(&got[i], &want[i], 4) == 0) continue;
    if (wrong < 5) std::printf("%s weighted sum %s hd %d n %d: [%d] %.9g, widened rows %.9g\n", k.name, kc::dtype_name(t), hd, n, i, got[i], want[i]);
    ++wrong;
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
      {&kc::generic_kernels(), true},
      {kc::avx2_kernels(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")},
      {kc::avx512_kernels(), __builtin_cpu_supports("avx512f") != 0},
      {kc::avx512vnni_kernels(), __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")},
  };
  long wrong = 0;
  int tested = 0;
  for (const Variant& v : variants) {
    if (!v.k || !v.runs) continue;
    long w = 0;
    for (kc::DType t : {kc::DType::F16, kc::DType::BF16}) {
      if (v.k->encode_16)
        for (int row : {192, 61}) w += check_encode(*v.k, t, x, row);
      for (int hd : {8, 16, 32, 64, 128, 256, 80})
        for (int n : {1, 7, 256}) w += check_weighted_sum(*v.k, t, hd, n, rng);
    }
    std::printf("%s: %s%ld wrong\n", v.k->name, v.k->encode_16 ? "encode_16 on 5M floats, weighted sums, " : "weighted sums, ", w);
    wrong += w;
    ++tested;
  }
  std::printf("%d variants, %ld wrong\n", tested, wrong);
  return wrong == 0 && tested > 0 ? 0 : 1;
}
