// kth_largest (native/cpu/kth_largest.h), and every variant's kernel of it this CPU runs (kernels.h:
// kth_largest), against std::nth_element on random arrays of 1 to 400 floats: spread values, many
// ties, signed zeros and subnormals, wide exponents. Prints one line and exits 0 when every case
// agrees (test/kth-largest.test.ts runs it).
//   kcache_select_test [cases] [--time]   (--time: also times both on KCache's two selections)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels.h"
#include "kth_largest.h"

int main(int argc, char** argv) {
  const long cases = argc > 1 ? std::atol(argv[1]) : 100000;
  std::mt19937 rng(7);
  std::vector<uint32_t> keys;
  // kth_largest.h's, then each variant's kernel where it has one
  std::vector<std::pair<std::string, float (*)(const float*, int, int, std::vector<uint32_t>&)>> selects = {{"kth_largest.h", kc::cpu::kth_largest}};
  const std::pair<const kc::Kernels*, bool> variants[] = {
      {&kc::generic_kernels(), true},
      {kc::avx2_kernels(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")},
      {kc::avx512_kernels(), __builtin_cpu_supports("avx512f") != 0},
      {kc::avx512vnni_kernels(), __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")},
  };
  for (const auto& [k, runs] : variants)
    if (k && runs && k->kth_largest) selects.emplace_back(k->name, k->kth_largest);
  long wrong = 0;
  for (long c = 0; c < cases; ++c) {
    const int n = 1 + static_cast<int>(rng() % 400);
    const int k = 1 + static_cast<int>(rng() % n);
    std::vector<float> x(n);
    for (float& v : x) {
      switch (c % 4) {
        case 0: v = std::uniform_real_distribution<float>(-5.0f, 5.0f)(rng); break;
        case 1: v = static_cast<float>(static_cast<int>(rng() % 7) - 3); break;  // ties
        case 2: v = rng() % 3 == 0 ? -0.0f : rng() % 2 ? 0.0f : 1e-40f * static_cast<float>(static_cast<int>(rng() % 5) - 2); break;
        default: v = std::ldexp(static_cast<float>(rng() % 1000) / 1000.0f, static_cast<int>(rng() % 60) - 30) * (rng() % 2 ? 1.0f : -1.0f);
      }
    }
    std::vector<float> y = x;
    std::nth_element(y.begin(), y.begin() + (k - 1), y.end(), std::greater<float>());
    for (const auto& [name, select] : selects) {
      const float got = select(x.data(), n, k, keys);
      if (!(got == y[k - 1])) {
        if (wrong < 5) std::printf("%s, case %ld: n %d k %d: %g, nth_element %g\n", name.c_str(), c, n, k, got, y[k - 1]);
        ++wrong;
      }
    }
  }
  std::printf("%ld cases, %zu selections (", cases, selects.size());
  for (size_t i = 0; i < selects.size(); ++i) std::printf("%s%s", i ? ", " : "", selects[i].first.c_str());
  std::printf("), %ld wrong\n", wrong);
  if (argc > 2 && std::string(argv[2]) == "--time") {
    // the two selections of a KCache row and head at 8k positions and N = 256 (attention.cpp):
    // the 16th of 256 sampled scores, the 256th of ~320 candidates
    for (const auto& [n, k] : {std::pair{256, 16}, std::pair{320, 256}}) {
      std::vector<std::vector<float>> xs(1000, std::vector<float>(n));
      for (auto& x : xs)
        for (float& v : x) v = std::normal_distribution<float>(0.0f, 3.0f)(rng);
      double sink = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 20; ++rep)
        for (const auto& x : xs) {
          std::vector<float> y = x;
          std::nth_element(y.begin(), y.begin() + (k - 1), y.end(), std::greater<float>());
          sink += y[k - 1];
        }
      const auto t1 = std::chrono::steady_clock::now();
      const auto us = [](auto d) { return std::chrono::duration<double, std::micro>(d).count() / 20000; };
      std::printf("the %dth of %d: std::nth_element %.2f us", k, n, us(t1 - t0));
      for (const auto& [name, select] : selects) {
        const auto t2 = std::chrono::steady_clock::now();
        for (int rep = 0; rep < 20; ++rep)
          for (const auto& x : xs) sink += select(x.data(), n, k, keys);
        std::printf(", %s %.2f us", name.c_str(), us(std::chrono::steady_clock::now() - t2));
      }
      // (the sum of the results is printed, so the loops cannot be optimized away)
      std::printf(" (checksum %.0f)\n", sink);
    }
  }
  return wrong == 0 ? 0 : 1;
}
