// The engine's internals, shared by the files that implement it: load.cpp (weights, KV cache and
// the backend's memory), forward.cpp (one step's forward pass and its buffers), step_input.cpp
// (what a step may ask for) and backend_choice.cpp (which backend runs it).
#pragma once
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kcache/backend.h"
#include "kcache/engine.h"
#include "weights.h"

namespace kc {

struct LayerWeights {
  float* attn_norm = nullptr;  // (dim)
  Tensor wq, wk, wv, wo;       // (q_dim, dim), (kv_dim, dim), (kv_dim, dim), (dim, q_dim)
  float* bq = nullptr;         // (q_dim) Qwen2 only
  float* bk = nullptr;         // (kv_dim)
  float* bv = nullptr;         // (kv_dim)
  float* ffn_norm = nullptr;   // (dim)
  Tensor w1, w2, w3;           // gate (hidden, dim), down (dim, hidden), up (hidden, dim)
  void* k_cache = nullptr;     // (num_blocks, block_size) rows of kv_dim values, as kv_dtype
  void* v_cache = nullptr;     // the same; host tier when kcache
  bool kcache = false;         // V in host memory, top-N attention at decode
};

// Backend buffers for one step, grown when a step has more rows than any before.
struct Scratch {
  int rows = 0, out_rows = 0, table_len = 0, seqs = 0;
  float *x = nullptr, *xb = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr;
  float *hb = nullptr, *hb2 = nullptr, *xsel = nullptr, *logits = nullptr;
  int32_t *tokens = nullptr, *pos = nullptr, *row_seq = nullptr, *slots = nullptr, *out_rows_idx = nullptr, *row_topn = nullptr;
  int32_t *tables = nullptr, *table_offset = nullptr;
};

// Throws std::runtime_error naming what is wrong with the model or the engine's settings.
void validate_config(const ModelConfig& c, int block_size, int num_blocks, AttentionMode mode, const KCacheOptions& kc);

// The cache slot each row writes (block * block_size + offset); throws InvalidInput naming the
// field of the first thing out of range.
std::vector<int32_t> step_slots(const StepInput& in, const ModelConfig& cfg, int block_size, int num_blocks);

// N per row: a row gets top-N attention when it is its sequence's only row in the step (a decode
// token); prefill chunks attend to everything (0). All 0 in full-attention mode.
std::vector<int32_t> topn_per_row(const StepInput& in, AttentionMode mode, const KCacheOptions& kc);

// `want` is auto, cpu or cuda (auto: KCACHE_BACKEND, then CUDA when built with it, a GPU is
// visible and it can run the model, else the CPU); `note` says which and why.
std::unique_ptr<Backend> choose_backend(std::string want, const ModelConfig& cfg, const std::vector<DType>& weight_types, DType kv_dtype,
                                        int threads, std::string* note);

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineOptions& o);
  ~EngineImpl() override;

  void step(const StepInput& in, float* logits) override;
  Tensor host_weight(const std::string& name) const override;
  std::vector<float> read_weight(const std::string& name) const override;
  void fill_kv_random(uint64_t seed) override;
  void read_block(int block, void* dst) override;
  void write_block(int block, const void* src) override;
  int host_tier_slots() const override { return host_tier_slots_; }
  void offload_to_host(const int32_t* blocks, const int32_t* slots, int n) override;
  void reload_from_host(const int32_t* slots, const int32_t* blocks, int n) override;
  void read_host_slots(const int32_t* slots, int n, void* dst) override;
  void write_host_slots(const int32_t* slots, int n, const void* src) override;

  const ModelConfig& config() const override { return cfg_; }
  const char* backend_name() const override { return backend_->name(); }
  const std::string& backend_note() const override { return note_; }
  int threads() const override { return threads_; }
  int num_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  size_t kv_bytes_per_block() const override { return kv_device_bytes_per_block() + kv_host_bytes_per_block(); }
  size_t kv_device_bytes_per_block() const override {
    return layer_block_bytes() * (2 * cfg_.n_layers - kcache_layers());
  }
  size_t kv_host_bytes_per_block() const override { return layer_block_bytes() * kcache_layers(); }
  AttentionMode attention_mode() const override { return mode_; }
  const KCacheOptions& kcache_options() const override { return kc_; }
  size_t weight_bytes() const override { return weight_bytes_; }
  DType kv_dtype() const override { return kv_dtype_; }

 private:
  size_t layer_block_bytes() const { return static_cast<size_t>(block_size_) * dtype_row_bytes(kv_dtype_, cfg_.kv_dim()); }
  // f(where a part of `block` lives, its offset in the block's layout): each layer's K rows, then
  // its V rows, layer_block_bytes() each.
  template <typename F>
  void for_block_parts(int block, F&& f) {
    const size_t lbb = layer_block_bytes(), at = static_cast<size_t>(block) * lbb;
    size_t off = 0;
    for (const LayerWeights& L : layers_) {
      f(static_cast<uint8_t*>(L.k_cache) + at, off);
      f(static_cast<uint8_t*>(L.v_cache) + at, off + lbb);
      off += 2 * lbb;
    }
  }
  int kcache_layers() const { return mode_ == AttentionMode::KCache ? cfg_.n_layers - kc_.full_layers : 0; }

  // load.cpp
  void* track(void* p);
  Tensor matrix(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t rows, int64_t cols,
                Backend::WeightUse use = Backend::WeightUse::Matmul);
  float* vector(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t n, bool required);

  // forward.cpp
  void free_scratch();
  void ensure_scratch(int rows, int out_rows, int table_len, int seqs);

  ModelConfig cfg_;
  int block_size_, num_blocks_, threads_ = 1;
  std::unique_ptr<Backend> backend_;
  WeightStore store_;
  std::map<std::string, Tensor> host_tensors_;
  std::map<std::string, bool> known_;
  AttentionMode mode_;
  KCacheOptions kc_;
  DType kv_dtype_;
  std::string note_;
  std::vector<void*> allocations_;
  std::vector<void*> host_allocations_;
  uint8_t* host_tier_ = nullptr;  // host_tier_slots_ slots of kv_bytes_per_block() (alloc_host)
  int host_tier_slots_ = 0;
  size_t weight_bytes_ = 0;
  std::function<void(uint64_t, uint64_t)> on_progress_;
  uint64_t load_total_ = 0;   // bytes of every tensor spec, as stored
  uint64_t load_done_ = 0;
  Tensor tok_embeddings_, output_;
  float* final_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  Scratch scratch_;
  int64_t scratch_generation_ = 0;
};

}  // namespace kc
