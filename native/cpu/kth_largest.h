// The k-th largest of a few hundred floats, for KCache's top-N selection (attention.cpp): each
// decode row and head picks a threshold from a sample of its scores, then the exact N-th largest
// among the candidates above it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace kc::cpu {

// The selection's pieces, shared with the variants' kernels of it (kernels.h: kth_largest).

// A float's key: ascending with the float's value.
inline uint32_t order_key(const float* x) {
  uint32_t u;
  std::memcpy(&u, x, 4);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

// Keys [from, m) kept or dropped by one step (those at or above `trial` kept when `above`, the
// others when not), moved down to `kept`; returns the new count kept.
inline int keep_keys(uint32_t* key, int from, int m, int kept, uint32_t trial, bool above) {
  for (int i = from; i < m; ++i) {  // (without a branch: which way a key goes is a coin toss)
    key[kept] = key[i];
    kept += (key[i] >= trial) == above;
  }
  return kept;
}

// The answer from its bits decided so far and the m keys still undecided: with m == k it is the
// smallest of them (or, every bit decided, t itself).
inline float kth_value(const uint32_t* key, int m, int k, uint32_t t) {
  if (m == k) t = *std::min_element(key, key + m);
  const uint32_t u = t & 0x80000000u ? t & 0x7fffffffu : ~t;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// The k-th largest of x[0, n) (1 <= k <= n), found bit by bit on order-preserving integer keys,
// each step dropping the keys it has settled (below the bound so far, or counted above it): a few
// branch-free passes over a shrinking set. std::nth_element, which this replaces, spent about a
// quarter of a KCache decode's attention here (2.4 us for the 16th of 256, 3.4 us for the 256th
// of 320 on the Zen 5 VM; this: 1.0 and 1.2 us; `native/build/kcache_select_test 1000 --time`).
// The same value as nth_element's for equal floats (-0 and +0 compare equal where the result is
// used); native/test/kth_largest_test.cpp checks it.
inline float kth_largest(const float* x, int n, int k, std::vector<uint32_t>& keys) {
  keys.resize(n);
  for (int i = 0; i < n; ++i) keys[i] = order_key(x + i);
  uint32_t* key = keys.data();
  int m = n;       // keys still undecided: [0, m)
  uint32_t t = 0;  // the answer's bits so far
  for (uint32_t bit = 0x80000000u; bit != 0 && m > k; bit >>= 1) {
    const uint32_t trial = t | bit;
    int count = 0;
    for (int i = 0; i < m; ++i) count += key[i] >= trial;
    const bool above = count >= k;  // the answer is >= trial: keys below it no longer matter
    if (above) t = trial;
    else k -= count;  // the answer is < trial: keys at or above it are all larger, counted now
    m = keep_keys(key, 0, m, 0, trial, above);
  }
  return kth_value(key, m, k, t);
}

}  // namespace kc::cpu
