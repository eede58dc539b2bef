// The CUDA backend: device memory for weights, the K cache and activations; pinned, mapped host
// memory for KCache's V tier; every op a kernel on one stream (one .cu per op beside this file).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "attention.cuh"
#include "common.cuh"
#include "kv_rows.cuh"
#include "kcache/cuda_backend.h"

namespace kc {
namespace cuda {

void* Workspace::region(int i, size_t need) {
  if (need <= bytes[i]) return ptr[i];
  if (ptr[i]) {
    KC_CUDA(cudaStreamSynchronize(stream));
    KC_CUDA(cudaFree(ptr[i]));
    ptr[i] = nullptr;
  }
  const size_t sz = std::max(need, bytes[i] * 3 / 2);
  KC_CUDA(cudaMalloc(&ptr[i], sz));
  ++generation;
  bytes[i] = sz;
  return ptr[i];
}

Workspace::~Workspace() {
  for (void* p : ptr)
    if (p) cudaFree(p);
}

namespace {

std::mutex profile_mu;
std::map<std::string, std::pair<double, long>> profile_table;  // op -> (ms, calls)

void profile_add(const char* op, float ms) {
  std::lock_guard<std::mutex> lock(profile_mu);
  auto& e = profile_table[op];
  e.first += ms;
  e.second += 1;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    KC_CUDA(cudaSetDevice(device));
    cudaDeviceProp prop{};
    KC_CUDA(cudaGetDeviceProperties(&prop, device));
    name_ = std::string("cuda/") + prop.name;
    KC_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ws_.stream = stream_;
    const char* tc = std::getenv("KCACHE_CUDA_TC");
    tensor_cores_ = !(tc && std::strcmp(tc, "0") == 0);
    ctx_ = cuda::Ctx{stream_, &ws_, tensor_cores_};
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    forget_records();
    for (void* p : placed_) cudaFree(p);
    if (staging_) cudaFreeHost(staging_);
    for (auto& e : events_) {
      cudaEventDestroy(e.begin);
      cudaEventDestroy(e.end);
    }
    cudaStreamDestroy(stream_);
  }

  const char* name() const override { return name_.c_str(); }
  bool supports_model(const ModelConfig& c, std::string* why) const override {
    try {
      cuda::check_attention_shape(c.head_dim, c.n_heads / c.n_kv_heads);
      return true;
    } catch (const std::exception& e) {
      if (why) *why = e.what();
      return false;
    }
  }

  bool supports_weights(DType t, std::string* why) const override {
    if (!dtype_quantized(t)) return true;
    if (why) *why = std::string("the CUDA backend has no kernels for ") + dtype_name(t) + " weights yet";
    return false;
  }

  bool supports_kv(DType t, std::string* why) const override {
    if (cuda::kv_dtype_supported(t)) return true;
    if (why) *why = std::string("the CUDA backend has no KV cache kernels for ") + dtype_name(t);
    return false;
  }

  void* alloc(size_t bytes) override {
    void* p = nullptr;
    KC_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    return p;
  }
  void release(void* p) override {
    if (p) KC_CUDA(cudaFree(p));
  }
  // Pinned and mapped: kernels read it over the host link through the same (unified) address.
  void* alloc_host(size_t bytes) override {
    void* p = nullptr;
    KC_CUDA(cudaHostAlloc(&p, std::max<size_t>(bytes, 16), cudaHostAllocMapped | cudaHostAllocPortable));
    void* dev = nullptr;
    KC_CUDA(cudaHostGetDevicePointer(&dev, p, 0));
    if (dev != p) {
      cudaFreeHost(p);
      throw std::runtime_error("CUDA: mapped host memory has a different device address (no unified addressing)");
    }
    return p;
  }
  void release_host(void* p) override {
    if (p) KC_CUDA(cudaFreeHost(p));
  }
  // Small uploads (a step's tokens, positions, block tables) go through a pinned staging arena,
  // so each is a truly asynchronous copy instead of an implicit stream synchronisation; the arena
  // is reused once the stream has been synchronised (download, synchronize).
  void upload(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    if (bytes > kStagingBytes / 4) {
      KC_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
      KC_CUDA(cudaStreamSynchronize(stream_));  // the source may be freed on return
      staged_ = 0;
      return;
    }
    if (!staging_) KC_CUDA(cudaHostAlloc(&staging_, kStagingBytes, cudaHostAllocDefault));
    if (staged_ + bytes > kStagingBytes) synchronize();
    char* slot = static_cast<char*>(staging_) + staged_;
    std::memcpy(slot, src, bytes);
    KC_CUDA(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, stream_));
    staged_ += (bytes + 255) / 256 * 256;
  }
  // Stream-ordered: device <-> pinned host copies run asynchronously, after the work queued before
  // them and before the work queued after (unified addressing tells the directions apart).
  void copy_async(void* dst, const void* src, size_t bytes) override {
    if (bytes) KC_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) KC_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  Tensor place_weight(const Tensor& host, WeightUse) override {
    void* d = alloc(host.bytes());
    placed_.push_back(d);
    KC_CUDA(cudaMemcpy(d, host.data, host.bytes(), cudaMemcpyHostToDevice));
    Tensor t = host;
    t.data = d;
    return t;
  }
  // CUDA graphs: a step shape's forward pass is captured the second time it is seen (the first
  // run settles every allocation: workspace regions, RoPE tables) and replayed from the third
  // on, so a decode step costs one launch instead of a few hundred. KCACHE_CUDA_GRAPHS=0 or
  // KCACHE_CUDA_PROFILE turn it off.
  bool replay(uint64_t key) override {
    if (!graphs_) return false;
    if (ws_gen_ != ws_.generation) forget_records();
    auto it = execs_.find(key);
    if (it == execs_.end()) return false;
    KC_CUDA(cudaGraphLaunch(it->second, stream_));
    return true;
  }
  bool begin_record(uint64_t key) override {
    if (!graphs_) return false;
    if (seen_[key]++ == 0) return false;  // first sight: run it plainly
    if (execs_.size() >= 64) forget_records();
    ws_gen_ = ws_.generation;
    KC_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    return true;
  }
  void end_record(uint64_t key) override {
    cudaGraph_t g = nullptr;
    KC_CUDA(cudaStreamEndCapture(stream_, &g));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    KC_CUDA(e);
    if (ws_gen_ != ws_.generation) {  // the capture grew a workspace region: do not keep it
      cudaGraphExecDestroy(exec);
      throw std::runtime_error("CUDA: a workspace grew while a step was being recorded");
    }
    execs_[key] = exec;
    KC_CUDA(cudaGraphLaunch(exec, stream_));
  }
  void forget_records() override {
    for (auto& [k, e] : execs_) cudaGraphExecDestroy(e);
    execs_.clear();
    seen_.clear();
    ws_gen_ = ws_.generation;
  }

  void synchronize() override {
    KC_CUDA(cudaStreamSynchronize(stream_));
    staged_ = 0;
    collect_profile();
  }
  void fill_uniform(float* dst, size_t n, uint64_t seed, float lo, float hi) override { cuda::fill_uniform(ctx_, dst, n, seed, lo, hi); }

  void embedding(float* out, const Tensor& table, const int32_t* tokens, int n) override { timed("embedding", [&] { cuda::embedding(ctx_, out, table, tokens, n); }); }
  void rmsnorm(float* out, const float* x, const float* w, int rows, int dim, float eps) override {
    timed("rmsnorm", [&] { cuda::rmsnorm(ctx_, out, x, w, rows, dim, eps); });
  }
  void matmul(float* out, const float* x, int rows, const Tensor& w, const float* bias) override { timed("matmul", [&] { cuda::matmul(ctx_, out, x, rows, w, bias); }); }
  void add_rmsnorm(float* x, const float* y, float* out, const float* w, int rows, int dim, float eps) override {
    timed("add_rmsnorm", [&] { cuda::add_rmsnorm(ctx_, x, y, out, w, rows, dim, eps); });
  }
  void matmul_multi(float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) override {
    timed("matmul", [&] { cuda::matmul_multi(ctx_, outs, x, rows, ws, biases, count); });
  }
  void rope(float* x, const int32_t* pos, int rows, int n_heads, int head_dim, const RopeParams& p) override {
    timed("rope", [&] { cuda::rope(ctx_, x, pos, rows, n_heads, head_dim, p); });
  }
  void swiglu(float* out, const float* gate, const float* up, size_t n) override { timed("swiglu", [&] { cuda::swiglu(ctx_, out, gate, up, n); }); }
  void add(float* x, const float* y, size_t n) override { timed("add", [&] { cuda::add(ctx_, x, y, n); }); }
  void get_rows(float* out, const float* x, const int32_t* idx, int n, int dim) override { timed("get_rows", [&] { cuda::get_rows(ctx_, out, x, idx, n, dim); }); }
  void kv_store(void* k_cache, void* v_cache, const float* k, const float* v, const int32_t* slots, int rows, int kv_dim,
                DType kv_dtype) override {
    timed("kv_store", [&] { cuda::kv_store(ctx_, k_cache, v_cache, k, v, slots, rows, kv_dim, kv_dtype); });
  }
  void attention(float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionBatch& b) override {
    timed("attention", [&] { cuda::attention(ctx_, out, q, k_cache, v_cache, b); });
  }
  void kcache_attention(float* out, const float* q, const void* k_cache, const void* v_host, const AttentionBatch& b) override {
    timed("kcache_attention", [&] { cuda::kcache_attention(ctx_, out, q, k_cache, v_host, b); });
  }

 private:
  static constexpr size_t kStagingBytes = size_t(8) << 20;

  struct Timing {
    const char* op;
    cudaEvent_t begin, end;
  };
  // KCACHE_CUDA_PROFILE=1: GPU time per op, from events around each launch, summed into a
  // process-wide table (cuda_profile_report()).
  template <typename F>
  void timed(const char* op, F&& f) {
    if (!profile_) return f();
    if (next_event_ == events_.size()) {
      Timing t{op, nullptr, nullptr};
      KC_CUDA(cudaEventCreate(&t.begin));
      KC_CUDA(cudaEventCreate(&t.end));
      events_.push_back(t);
    }
    Timing& t = events_[next_event_++];
    t.op = op;
    KC_CUDA(cudaEventRecord(t.begin, stream_));
    f();
    KC_CUDA(cudaEventRecord(t.end, stream_));
  }
  void collect_profile() {
    if (!profile_) return;
    for (size_t i = 0; i < next_event_; ++i) {
      float ms = 0;
      KC_CUDA(cudaEventElapsedTime(&ms, events_[i].begin, events_[i].end));
      profile_add(events_[i].op, ms);
    }
    next_event_ = 0;
  }

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cuda::Workspace ws_;
  bool tensor_cores_ = true;
  cuda::Ctx ctx_{nullptr, nullptr, true};
  std::vector<void*> placed_;
  void* staging_ = nullptr;
  size_t staged_ = 0;
  bool profile_ = std::getenv("KCACHE_CUDA_PROFILE") != nullptr;
  std::vector<Timing> events_;
  size_t next_event_ = 0;
  bool graphs_ = !profile_ && !(std::getenv("KCACHE_CUDA_GRAPHS") && std::strcmp(std::getenv("KCACHE_CUDA_GRAPHS"), "0") == 0);
  std::map<uint64_t, cudaGraphExec_t> execs_;
  std::map<uint64_t, int> seen_;
  int ws_gen_ = 0;
};

}  // namespace
}  // namespace cuda

std::string cuda_profile_report(bool reset) {
  std::lock_guard<std::mutex> lock(cuda::profile_mu);
  std::string out;
  for (const auto& [op, v] : cuda::profile_table) {
    char line[160];
    std::snprintf(line, sizeof line, "%s%s: %.3f ms in %ld calls", out.empty() ? "" : ", ", op.c_str(), v.first, v.second);
    out += line;
  }
  if (reset) cuda::profile_table.clear();
  return out;
}

bool cuda_device_available(std::string* name) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (name) *name = std::string("no usable CUDA device (") + (e != cudaSuccess ? cudaGetErrorString(e) : "none found") + ")";
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess && name) *name = prop.name;
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  return std::make_unique<cuda::CudaBackend>(device);
}

}  // namespace kc
