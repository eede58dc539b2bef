#pragma once
#include <cstddef>

namespace kc {
// Measured memory read bandwidth (bytes/s): `threads` threads each stream their share of a
// `bytes`-sized buffer; the best of several passes. The roofline the benchmark compares to.
double measure_read_bandwidth(size_t bytes, int threads);
}
