// The CPU backend's matmul on its own: microseconds per call of rows activation rows against an
// n_out x k weight, the weights in cache (one matrix, many calls) or streamed from memory (enough
// matrices, called in turn, to overflow the caches), with the kernel variant KCACHE_SIMD and the
// CPU select. A diagnostic for the kernels and the thread pool (docs/BENCHMARKS.md quotes it);
// end-to-end figures come from `kcache bench engine`.
//
//   kcache_matmul_bench [--threads 2] [--rows 1,8] [--shape 1536x576] [--dtypes q4_0,q8_0]
//
// Weights are made by quantize-on-load's quantizers (q8_0, q4_0, q5_0, q4_k); f32 is copied, bf16 and f16 rounded; q6_k
// (which has no quantizer here) is filled with arbitrary bytes and a fixed block scale, which times
// the same as real blocks.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kcache/cpu_backend.h"
#include "kcache/quant.h"

using namespace kc;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "kcache_matmul_bench: %s\nusage: kcache_matmul_bench [--threads N] [--rows 1,8] [--shape NxK] [--dtypes bf16,q4_0,q8_0]\n", why);
  std::exit(2);
}

std::vector<uint8_t> make_weight(DType t, int n_out, int k, int seed) {
  const size_t rb = dtype_row_bytes(t, k);
  std::vector<uint8_t> w(rb * n_out);
  std::vector<float> src(k);
  for (int o = 0; o < n_out; ++o) {
    uint8_t* row = w.data() + o * rb;
    for (int i = 0; i < k; ++i) src[i] = static_cast<float>((o * 31 + i * 17 + seed) % 101) / 50.0f - 1.0f;
    if (t == DType::F32) {
      std::memcpy(row, src.data(), rb);
    } else if (t == DType::BF16 || t == DType::F16) {
      auto* h = reinterpret_cast<uint16_t*>(row);
      for (int i = 0; i < k; ++i) h[i] = t == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
    } else if (t == DType::Q6_K) {
      for (size_t i = 0; i < rb; ++i) row[i] = static_cast<uint8_t>((o * 131 + i * 29 + seed) % 251);
      for (size_t b = 0; b < rb; b += 210) {  // d = 1.0 (f16)
        row[b + 208] = 0x00;
        row[b + 209] = 0x3c;
      }
    } else {
      quantize_row(t, src.data(), row, k);
    }
  }
  return w;
}

// Best microseconds per call over passes of calls to the matrices in turn.
double time_calls(Backend& b, const std::vector<Tensor>& ws, const float* x, int rows, float* out, int calls) {
  double best = 1e30;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) b.matmul(out, x, rows, ws[i % ws.size()], nullptr);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
    if (pass > 0 && us < best) best = us;  // the first pass warms up
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::vector<int> rows_list = {1, 8};
  int n_out = 1536, k = 576;
  std::vector<std::string> dtypes = {"q4_0", "q8_0"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const std::string v = argv[++i];
    if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--rows") {
      rows_list.clear();
      for (const auto& r : split(v)) rows_list.push_back(std::atoi(r.c_str()));
    } else if (a == "--shape") {
      if (std::sscanf(v.c_str(), "%dx%d", &n_out, &k) != 2) usage("--shape must be NxK");
    } else if (a == "--dtypes") dtypes = split(v);
    else usage(("unknown option " + a).c_str());
  }
  if (threads < 1 || n_out < 1 || k < 1) usage("--threads and --shape must be positive");
  for (int rows : rows_list)
    if (rows < 1) usage("--rows must be positive");
  std::vector<DType> types;
  for (const auto& name : dtypes) {
    DType t;
    if (!parse_dtype(name, &t) || !(t == DType::F32 || t == DType::BF16 || t == DType::F16 || dtype_quantized(t)))
      usage(("not f32, bf16, f16 or a quantized type: " + name).c_str());
    if (k % dtype_block(t) != 0) usage((name + " needs k to be a multiple of its block").c_str());
    types.push_back(t);
  }
  const std::unique_ptr<Backend> cpu = make_cpu_backend(threads);
  std::printf("backend %s, %d threads, %dx%d weights\n\n| dtype | rows | in cache (us) | from memory (us) | from memory (GB/s) |\n|---|---:|---:|---:|---:|\n",
              cpu->name(), threads, n_out, k);
  for (size_t ti = 0; ti < types.size(); ++ti) {
    const DType t = types[ti];
    const std::string& name = dtypes[ti];
    const size_t bytes = dtype_row_bytes(t, k) * n_out;
    const int n_mats = static_cast<int>(std::max<size_t>(1, (256u << 20) / bytes));  // 256 MB: past any cache
    std::vector<std::vector<uint8_t>> store;
    std::vector<Tensor> ws;
    for (int m = 0; m < n_mats; ++m) {
      store.push_back(make_weight(t, n_out, k, m));
      ws.push_back(cpu->place_weight(Tensor{store.back().data(), t, n_out, k}, Backend::WeightUse::Matmul));
    }
    for (int rows : rows_list) {
      std::vector<float> x(static_cast<size_t>(rows) * k), out(static_cast<size_t>(rows) * n_out);
      for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 13) / 6.0f - 1.0f;
      const double hot = time_calls(*cpu, {ws[0]}, x.data(), rows, out.data(), 200);
      const double cold = time_calls(*cpu, ws, x.data(), rows, out.data(), n_mats);
      std::printf("| %s | %d | %.2f | %.2f | %.1f |\n", name.c_str(), rows, hot, cold, bytes / cold / 1e3);
    }
  }
  return 0;
}
