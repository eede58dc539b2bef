#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "ops.h"

namespace kc::cpu {

namespace {

// A unit of work: whole packed panels for float weights (a multiple of every variant's panel
// width, 16 or 32); for block-quantized weights whole groups of a variant's own layout (kernels.h's
// quant_group, 16), and for GGML's row-major blocks few enough rows that the generic variant's
// per-thread f32 copy of them stays in L2.
constexpr int kRowsPerTask = 32;
constexpr int kQuantRows = 16;

// On the integer path a unit of a 4-bit weight is ~5 KB, a fraction of a microsecond, and handing
// out a task cost about a tenth of a microsecond: smol135's q4_0 decode step spent ~15% of its
// time there when every task was one unit. Such a task takes up to kQuantMaxRows rows.
constexpr int kQuantMaxRows = 128;

struct Unit {
  int rows;       // a unit's output rows
  int max_units;  // the most units a task takes
};

Unit unit_of(const Tensor& w, bool integer) {
  if (!dtype_quantized(w.dtype)) return {kRowsPerTask, 1};
  return {kQuantRows, integer ? kQuantMaxRows / kQuantRows : 1};
}

// A task: output rows [o0, o1) of weight w.
struct Task {
  int w, o0, o1;
};

// The tasks of one call, in order over the weights, and each thread's share of them (the pool's
// share_begin). Shares are equal in bytes of weights, not in tasks (a call's weights may differ in
// type: a Q4_K_M file's v is Q6_K). Within a share tasks shrink toward its end, from max_units to
// one unit (guided scheduling): a thread that runs out of work takes the other's next task, and
// the one the caller waits for at the end is a unit, not 128 rows. With equal tasks of up to 128
// rows the caller waited on average half of one (~5 us of q8_0 from memory on a 2-vCPU VM) in each
// of a decode step's ~150 matmuls. Which task computes a row changes no result.
void plan_tasks(int threads, const Tensor* ws, const uint8_t* integer, int count, std::vector<Task>& tasks, std::vector<int>& share_begin) {
  thread_local std::vector<int> first_tls;  // weight i: units [first[i], first[i + 1]), over the call
  thread_local std::vector<double> at_tls;  // weight i: bytes before its first unit
  std::vector<int>& first = first_tls;
  std::vector<double>& at = at_tls;
  first.assign(count + 1, 0);
  at.assign(count + 1, 0.0);
  for (int i = 0; i < count; ++i) {
    const Unit u = unit_of(ws[i], integer[i]);
    const int n = static_cast<int>((ws[i].rows + u.rows - 1) / u.rows);
    first[i + 1] = first[i] + n;
    at[i + 1] = at[i] + static_cast<double>(n) * u.rows * dtype_row_bytes(ws[i].dtype, ws[i].cols);
  }
  // Unit g goes to the thread whose byte range holds its middle: thread t's first unit is the
  // first whose middle is at or past t / threads of the bytes.
  thread_local std::vector<int> bound_tls;
  std::vector<int>& bound = bound_tls;
  bound.assign(threads + 1, first[count]);
  bound[0] = 0;
  for (int t = 1, i = 0; t < threads; ++t) {
    const double x = at[count] * t / threads;
    while (i + 1 < count && x >= at[i + 1]) ++i;
    const double unit_bytes = (at[i + 1] - at[i]) / std::max(1, first[i + 1] - first[i]);
    const double g = unit_bytes > 0 ? std::ceil((x - at[i]) / unit_bytes - 0.5) : 0.0;
    bound[t] = first[i] + static_cast<int>(std::clamp(g, 0.0, static_cast<double>(first[i + 1] - first[i])));
  }
  tasks.clear();
  share_begin.assign(threads + 1, 0);
  for (int t = 0, i = 0; t < threads; ++t) {
    share_begin[t] = static_cast<int>(tasks.size());
    for (int g = bound[t], end = bound[t + 1]; g < end;) {
      while (g >= first[i + 1]) ++i;
      const Unit u = unit_of(ws[i], integer[i]);
      const int take = std::min({u.max_units, first[i + 1] - g, std::max(1, (end - g) / 2)});
      const int o0 = (g - first[i]) * u.rows;
      tasks.push_back({i, o0, static_cast<int>(std::min<int64_t>(ws[i].rows, o0 + static_cast<int64_t>(take) * u.rows))});
      g += take;
    }
  }
  share_begin[threads] = static_cast<int>(tasks.size());
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

// Parallel over output rows, tasks of whole units (plan_tasks): each task keeps its weights hot in
// cache while it walks every activation row, so weights are read from memory once per step
// whatever the batch size (the point of batching decode). The weights of one call (a layer's q, k
// and v, or its gate and up) share one parallel loop, its tasks in order: each thread's share is
// one run over consecutive rows, across the weights, and a decode step makes one hand-off to the
// pool per call instead of one per weight.
void matmul_multi(Ctx& c, float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) {
  const int k = static_cast<int>(ws[0].cols);
  thread_local std::vector<uint8_t> integer_tls;
  std::vector<uint8_t>& integer = integer_tls;
  integer.resize(count);
  for (int i = 0; i < count; ++i) integer[i] = integer_path(c, ws[i]);
  const bool any_q8 = std::find(integer.begin(), integer.end(), 1) != integer.end();
  const Q8Activations a = any_q8 ? round_activations(c, x, rows, k, ws, count) : Q8Activations{};
  thread_local std::vector<Task> tasks_tls;
  thread_local std::vector<int> share_tls;
  std::vector<Task>& tasks = tasks_tls;
  std::vector<int>& share_begin = share_tls;
  plan_tasks(c.pool.size(), ws, integer.data(), count, tasks, share_begin);
  c.pool.parallel_for(
      static_cast<int>(tasks.size()),
      [&](int task, int) {
        const Task& t = tasks[task];
        rows_of(c, outs[t.w], x, rows, ws[t.w], biases[t.w], a, t.o0, t.o1);
      },
      share_begin.data());
}

void matmul(Ctx& c, float* out, const float* x, int rows, const Tensor& w, const float* bias) {
  matmul_multi(c, &out, x, rows, &w, &bias, 1);
}

}  // namespace kc::cpu
