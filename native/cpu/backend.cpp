// The CPU backend: host memory, the thread pool, and the op table chosen at run time.
#include "kcache/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "ops.h"

namespace kc {

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads), ctx_{pool_, active_kernels()} {
    name_ = std::string("cpu/") + ctx_.k.name;
  }

  const char* name() const override { return name_.c_str(); }

  void* alloc(size_t bytes) override {
    // 64-byte alignment for vector loads; pages are touched only when written. Large buffers (the
    // KV cache's pools) in transparent huge pages where the kernel offers them (see huge_pages).
    if (bytes >= kHugeMin) return huge_pages((bytes + kHugePage - 1) / kHugePage * kHugePage);
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p) override { std::free(p); }
  // On the CPU the host tier is ordinary memory: the split only changes the accounting.
  void* alloc_host(size_t bytes) override { return alloc(bytes); }
  void release_host(void* p) override { release(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_async(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  // Memory for placed weights, which live as long as the backend: carved from 2 MiB-aligned arenas
  // in huge pages, so that a decode step's stream over every weight is not also a stream of TLB
  // misses (one per 4 KiB page, each a two-level page walk in a VM). Most matrices are smaller
  // than a huge page, hence arenas rather than one allocation each.
  void* weight_alloc(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (arena_left_ < bytes) {
      const size_t size = std::max(kArena, (bytes + kHugePage - 1) / kHugePage * kHugePage);
      arena_ = static_cast<uint8_t*>(huge_pages(size));
      packed_.push_back(arena_);
      arena_left_ = size;
    }
    void* p = arena_;
    arena_ += bytes;
    arena_left_ -= bytes;
    return p;
  }

  // Matmul weights are repacked into the kernels' k-major panels (see kernels.h), block-quantized
  // ones into the variant's own layout where it has one (pack_quant); tables read by rows
  // (embeddings) and the other block-quantized weights stay where they are (mapped file or
  // generated buffer).
  Tensor place_weight(const Tensor& host, WeightUse use) override {
    if (use == WeightUse::Rows) return host;
    if (dtype_quantized(host.dtype)) return pack_quantized(host);
    const int pw = ctx_.k.panel_width;
    const int64_t rows = host.rows, k = host.cols;
    const int64_t panels = (rows + pw - 1) / pw;
    const size_t es = dtype_row_bytes(host.dtype, 1);
    auto* dst = static_cast<uint8_t*>(weight_alloc(static_cast<size_t>(panels * k * pw) * es));
    const auto* src = static_cast<const uint8_t*>(host.data);
    pool_.parallel_for(static_cast<int>(panels), [&](int p, int) {
      for (int i = 0; i < pw; ++i) {
        const int64_t row = static_cast<int64_t>(p) * pw + i;
        for (int64_t kk = 0; kk < k; ++kk) {
          uint8_t* d = dst + ((static_cast<int64_t>(p) * k + kk) * pw + i) * es;
          if (row < rows) std::memcpy(d, src + (row * k + kk) * es, es);
          else std::memset(d, 0, es);
        }
      }
    });
    Tensor t = host;
    t.data = dst;
    return t;
  }

  Tensor pack_quantized(const Tensor& host) {
    const Kernels& k = ctx_.k;
    if (!k.pack_quant || host.cols % 32 != 0) return host;
    const int cols = static_cast<int>(host.cols);
    auto* dst = static_cast<uint8_t*>(weight_alloc(k.quant_packed_bytes(host.dtype, host.rows, cols)));
    const int64_t groups = (host.rows + k.quant_group - 1) / k.quant_group;
    pool_.parallel_for(static_cast<int>((groups + 63) / 64), [&](int task, int) {
      const int64_t g0 = static_cast<int64_t>(task) * 64;
      k.pack_quant(host.dtype, static_cast<const uint8_t*>(host.data), host.rows, cols, g0, std::min<int64_t>(groups, g0 + 64), dst);
    });
    Tensor t = host;
    t.data = dst;
    return t;
  }

  ~CpuBackend() override {
    for (void* p : packed_) release(p);
  }
  void synchronize() override {}
  void fill_uniform(float* dst, size_t n, uint64_t seed, float lo, float hi) override {
    cpu::parallel_ranges(ctx_, n, 1 << 16, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) dst[i] = uniform_at(seed, i, lo, hi);
    });
  }

  void embedding(float* out, const Tensor& table, const int32_t* tokens, int n) override {
    cpu::embedding(ctx_, out, table, tokens, n);
  }
  void rmsnorm(float* out, const float* x, const float* w, int rows, int dim, float eps) override {
    cpu::rmsnorm(ctx_, out, x, w, rows, dim, eps);
  }
  void matmul(float* out, const float* x, int rows, const Tensor& w, const float* bias) override {
    cpu::matmul(ctx_, out, x, rows, w, bias);
  }
  void matmul_multi(float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) override {
    cpu::matmul_multi(ctx_, outs, x, rows, ws, biases, count);
  }
  void rope(float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) override {
    cpu::rope(ctx_, x, pos, rows, n_heads, head_dim, p);
  }
  void swiglu(float* out, const float* gate, const float* up, size_t n) override {
    cpu::swiglu(ctx_, out, gate, up, n);
  }
  void add(float* x, const float* y, size_t n) override { cpu::add(ctx_, x, y, n); }
  void get_rows(float* out, const float* x, const int32_t* idx, int n, int dim) override {
    cpu::get_rows(ctx_, out, x, idx, n, dim);
  }
  bool supports_kv(DType t, std::string* why) const override {
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0) return true;
    if (why) *why = std::string("the KV cache stores f32, f16, bf16 or q8_0, not ") + dtype_name(t);
    return false;
  }
  void kv_store(void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots, int rows,
                int kv_dim, DType kv_dtype) override {
    cpu::kv_store(ctx_, k_cache, v_cache, k, v, slots, rows, kv_dim, kv_dtype);
  }
  void attention(float* out, const float* q, const void* k_cache, const void* v_cache,
                 const AttentionBatch& b) override {
    cpu::attention(ctx_, out, q, k_cache, v_cache, b);
  }
  void kcache_attention(float* out, const float* q, const void* k_cache, const void* v_host,
                        const AttentionBatch& b) override {
    cpu::kcache_attention(ctx_, out, q, k_cache, v_host, b);
  }

  ThreadPool& pool() { return pool_; }

 private:
  ThreadPool pool_;
  cpu::Ctx ctx_;
  std::string name_;
  std::vector<void*> packed_;  // the weight arenas
  uint8_t* arena_ = nullptr;
  size_t arena_left_ = 0;

  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kHugeMin = size_t{4} << 20;  // smaller buffers: ordinary pages
  static constexpr size_t kArena = size_t{64} << 20;

  // `bytes` (a multiple of kHugePage), 2 MiB-aligned, advised as huge pages: Linux backs them with
  // 2 MiB pages when transparent huge pages are "always" or "madvise" (a no-op elsewhere).
  static void* huge_pages(size_t bytes) {
    void* p = std::aligned_alloc(kHugePage, bytes);
    if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace kc
