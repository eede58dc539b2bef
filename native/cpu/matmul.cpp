#include <algorithm>
#include <array>
#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

// Output rows a task: whole packed panels for float weights (a multiple of every variant's panel
// width, 16 or 32); for block-quantized weights whole groups of a variant's own layout (kernels.h's
// quant_group, 16), and for GGML's row-major blocks few enough rows that the generic variant's
// per-thread f32 copy of them stays in L2.
constexpr int kRowsPerTask = 32;
constexpr int kQuantRows = 16;

// On the integer path a task of 16 rows of a 4-bit weight is ~5 KB, a fraction of a microsecond,
// and handing it out cost about a tenth of a microsecond: smol135's q4_0 decode step spent ~15% of
// its time there. Such a weight goes in tasks of up to kQuantMaxRows rows, as many groups as still
// leave each thread kTasksPerThread of them to balance with. Which task computes a row changes no
// result.
constexpr int kQuantMaxRows = 128;
constexpr int kTasksPerThread = 4;

int rows_per_task(const Ctx& c, const Tensor& w, bool integer) {
  if (!dtype_quantized(w.dtype)) return kRowsPerTask;
  if (!integer) return kQuantRows;
  const int64_t even = w.rows / (static_cast<int64_t>(kTasksPerThread) * c.pool.size()) / kQuantRows * kQuantRows;
  return static_cast<int>(std::clamp<int64_t>(even, kQuantRows, kQuantMaxRows));
}

// The x86 variants' integer path for block-quantized weights: activations rounded to int8 once
// per call, and laid out once per weight type the variant wants a layout for, shared by every task.
struct Q8Activations {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const int32_t* sums = nullptr;
  // per weight type with a layout (at most one per block-quantized type: no allocation per call)
  std::array<std::pair<DType, uint8_t*>, 8> prep;
  int n_prep = 0;
  bool has_prep(DType t) const {
    return std::any_of(prep.begin(), prep.begin() + n_prep, [t](const auto& p) { return p.first == t; });
  }
  const uint8_t* prep_of(DType t) const {
    for (int i = 0; i < n_prep; ++i)
      if (prep[i].first == t) return prep[i].second;
    return nullptr;
  }
};

bool integer_path(const Ctx& c, const Tensor& w) { return dtype_quantized(w.dtype) && c.k.matmul_q8 && w.cols % 32 == 0; }

Q8Activations round_activations(Ctx& c, const float* x, int rows, int k, const Tensor* ws, int count) {
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xd;
  thread_local std::vector<int32_t> xs;
  thread_local std::vector<uint8_t> xp;
  xq.resize(static_cast<size_t>(rows) * k);
  xd.resize(static_cast<size_t>(rows) * k / 32);
  xs.resize(xd.size());
  // (the pool's threads have thread_locals of their own: they get these buffers by pointer)
  Q8Activations a;
  a.q = xq.data();
  a.d = xd.data();
  a.sums = xs.data();
  std::array<size_t, 8> at{};  // each layout's offset in xp
  size_t bytes = 0;
  for (int i = 0; i < count; ++i) {
    const DType t = ws[i].dtype;
    if (!integer_path(c, ws[i]) || !c.k.q8_prepare || a.has_prep(t)) continue;
    const size_t n = c.k.q8_prep_bytes(t, rows, k);
    if (n == 0) continue;
    a.prep[a.n_prep] = {t, nullptr};  // (its pointer once xp has its size)
    at[a.n_prep++] = bytes;
    bytes += n;
  }
  xp.resize(bytes);
  for (int i = 0; i < a.n_prep; ++i) a.prep[i].second = xp.data() + at[i];
  int8_t* q = xq.data();
  float* d = xd.data();
  int32_t* sums = xs.data();
  parallel_ranges(c, static_cast<size_t>(rows), 8, [&](size_t b, size_t e) {
    const int n = static_cast<int>(e - b);
    (c.k.quantize_q8 ? c.k.quantize_q8 : quantize_activations)(x + b * k, n, k, q + b * k, d + b * (k / 32), sums + b * (k / 32));
    for (int i = 0; i < a.n_prep; ++i) c.k.q8_prepare(a.prep[i].first, static_cast<int>(b), static_cast<int>(e), q, d, k, a.prep[i].second);
  });
  return a;
}

// Output rows [o0, o1) of one weight.
void rows_of(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias, const Q8Activations& a, int o0, int o1) {
  const int k = static_cast<int>(w.cols);
  const int n_out = static_cast<int>(w.rows);
  switch (w.dtype) {
    case DType::F32:
      c.k.matmul_f32(out, n_out, x, rows, static_cast<const float*>(w.data), k, o0, o1);
      break;
    case DType::BF16:
      c.k.matmul_bf16(out, n_out, x, rows, static_cast<const uint16_t*>(w.data), k, o0, o1);
      break;
    case DType::F16:
      c.k.matmul_f16(out, n_out, x, rows, static_cast<const uint16_t*>(w.data), k, o0, o1);
      break;
    default: {
      const auto* base = static_cast<const uint8_t*>(w.data);
      if (integer_path(c, w)) {
        c.k.matmul_q8(w.dtype, out, n_out, a.q, a.d, a.sums, rows, base, k, o0, o1, a.prep_of(w.dtype));
        break;
      }
      // the generic variant: the task's weight rows dequantized once into a per-thread f32 buffer
      // reused by every activation row
      thread_local std::vector<float> buf;
      buf.resize(static_cast<size_t>(kQuantRows) * k);
      const size_t row_bytes = dtype_row_bytes(w.dtype, k);
      for (int o = o0; o < o1; ++o) c.k.dequant_row(w.dtype, base + o * row_bytes, buf.data() + static_cast<size_t>(o - o0) * k, k);
      c.k.matmul_rows(out + o0, n_out, x, rows, buf.data(), k, o1 - o0);
    }
  }
  if (bias)
    for (int t = 0; t < rows; ++t)
      for (int o = o0; o < o1; ++o) out[static_cast<int64_t>(t) * n_out + o] += bias[o];
}

}  // namespace

// Parallel over output rows, a few dozen a task (whole packed panels, or whole groups of blocks):
// each task keeps its weights hot in cache while it walks every activation row, so weights are
// read from memory once per step whatever the batch size (the point of batching decode). The
// weights of one call (a layer's q, k and v, or its gate and up) share one parallel loop, its tasks
// in order: each thread's share (thread_pool.h) is one run over consecutive rows, across the
// weights, and a decode step makes one hand-off to the pool per call instead of one per weight.
void matmul_multi(Ctx& c, float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) {
  const int k = static_cast<int>(ws[0].cols);
  const bool any_q8 = std::any_of(ws, ws + count, [&](const Tensor& w) { return integer_path(c, w); });
  const Q8Activations a = any_q8 ? round_activations(c, x, rows, k, ws, count) : Q8Activations{};
  thread_local std::vector<int> first_tls;
  std::vector<int>& first = first_tls;  // weight i: tasks [first[i], first[i + 1])
  first.assign(count + 1, 0);
  thread_local std::vector<int> per_tls;
  std::vector<int>& per = per_tls;  // weight i: rows a task
  per.resize(count);
  for (int i = 0; i < count; ++i) {
    per[i] = rows_per_task(c, ws[i], integer_path(c, ws[i]));
    first[i + 1] = first[i] + static_cast<int>((ws[i].rows + per[i] - 1) / per[i]);
  }
  c.pool.parallel_for(first[count], [&](int task, int) {
    const int i = static_cast<int>(std::upper_bound(first.begin(), first.end(), task) - first.begin()) - 1;
    const int o0 = (task - first[i]) * per[i];
    const int o1 = std::min(static_cast<int>(ws[i].rows), o0 + per[i]);
    rows_of(c, outs[i], x, rows, ws[i], biases[i], a, o0, o1);
  });
}

void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  matmul_multi(c, &out, x, rows, &w, &bias, 1);
}

}  // namespace kc::cpu
