// kth_largest (native/cpu/kth_largest.h) against std::nth_element on random arrays of 1 to 400
// floats: spread values, many ties, signed zeros and subnormals, wide exponents. Prints one line
// and exits 0 when every case agrees (test/kth-largest.test.ts runs it).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "kth_largest.h"

int main(int argc, char** argv) {
  const long cases = argc > 1 ? std::atol(argv[1]) : 100000;
  std::mt19937 rng(7);
  std::vector<uint32_t> keys;
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
    const float got = kc::cpu::kth_largest(x.data(), n, k, keys);
    if (!(got == y[k - 1])) {
      if (wrong < 5) std::printf("case %ld: n %d k %d: %g, nth_element %g\n", c, n, k, got, y[k - 1]);
      ++wrong;
    }
  }
  std::printf("%ld cases, %ld wrong\n", cases, wrong);
  return wrong == 0 ? 0 : 1;
}
