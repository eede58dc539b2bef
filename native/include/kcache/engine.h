// The engine: model weights, a paged KV cache, and one batched forward step.
// The caller (packages/engine, driven by the worker's scheduler) owns block allocation: every
// step names, for each sequence, the cache blocks that hold its tokens.
#pragma once
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kcache/backend.h"
#include "kcache/types.h"

namespace kc {

// Where one weight tensor comes from: a region of a file (memory-mapped), or deterministic
// random values (dummy models).
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;  // as stored in the file (or generated)
  int64_t rows = 0, cols = 0;
  std::string file;      // non-empty: mapped from file at `offset`
  uint64_t offset = 0;
  uint64_t seed = 0;     // random: uniform in [shift - scale, shift + scale]
  float scale = 0.0f;
  float shift = 0.0f;
  // Quantize on load: a float tensor is converted to this block-quantized type (F32: kept).
  DType quantize = DType::F32;

  DType placed_dtype() const { return quantize != DType::F32 ? quantize : dtype; }
  uint64_t stored_bytes() const { return static_cast<uint64_t>(rows) * dtype_row_bytes(dtype, cols); }
};

enum class AttentionMode : int { Full = 0, KCache = 1 };

// KCache: layers from full_layers on keep K in the backend's memory (the device tier) and V in
// host memory; a decode row (a sequence's only row in a step) attends to its top-N keys per
// query head. Prefill chunks compute full attention.
struct KCacheOptions {
  int topn = 256;            // N, when topn_frac is 0 (defaults: docs/KCACHE.md)
  float topn_frac = 0.0f;    // > 0: N = ceil(topn_frac * context)
  int full_layers = 1;       // the first L layers keep full attention with V in the device tier
  bool renormalize = true;   // softmax over the kept scores (see docs/KCACHE.md)
};

struct EngineOptions {
  ModelConfig config;
  AttentionMode attention = AttentionMode::Full;
  KCacheOptions kcache;
  std::vector<TensorSpec> tensors;
  int num_blocks = 0;
  int block_size = 16;
  // How the KV cache stores each row: f32, f16, bf16 or q8_0 (the CPU backend; CUDA: f32).
  DType kv_dtype = DType::F32;
  // kv_dtype is a default, not a demand: a backend without kernels for it stores f32 rows; with
  // kv_fallback_keeps_bytes (a pool sized in bytes) in fewer blocks, else in as many.
  bool kv_dtype_is_default = false;
  bool kv_fallback_keeps_bytes = false;
  // The offload host tier: bytes of memory the backend copies to and from without waiting
  // (alloc_host: pinned on a GPU), in slots of kv_bytes_per_block(); 0: none.
  size_t host_tier_bytes = 0;
  int threads = 0;  // 0: all hardware threads (CPU backend)
  // "auto" (CUDA when this build has it and a device is visible, else CPU; KCACHE_BACKEND
  // overrides), "cpu" or "cuda" (an error when unavailable).
  std::string backend = "auto";
  // Called on the loading thread after each weight is in place: bytes of weights read so far and
  // in all (as stored in the model's files), for a progress line.
  std::function<void(uint64_t loaded, uint64_t total)> on_progress;
};

// One batched step. Rows are the new tokens of every sequence, concatenated.
struct StepInput {
  std::vector<int32_t> tokens;        // [rows]
  std::vector<int32_t> positions;     // [rows] absolute position of each token in its sequence
  std::vector<int32_t> row_seq;       // [rows] which sequence each row belongs to
  std::vector<int32_t> block_tables;  // concatenated block tables
  std::vector<int32_t> table_offset;  // [n_seqs]
  std::vector<int32_t> table_length;  // [n_seqs]
  std::vector<int32_t> output_rows;   // rows whose logits are returned, in order
  std::vector<int32_t> seq_topn;      // optional [n_seqs]: KCache N for the sequence (0: default)
};

class InvalidInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Engine {
 public:
  static std::unique_ptr<Engine> create(const EngineOptions& opts);  // throws std::runtime_error
  virtual ~Engine() = default;
  // Writes the logits of in.output_rows, in order, to logits ([output_rows, vocab] floats, every one
  // written): the caller's memory, so that a step allocates and copies nothing per token (the
  // addon passes a JavaScript Float32Array). Throws InvalidInput on bad input.
  virtual void step(const StepInput& in, float* logits) = 0;
  virtual std::vector<float> read_weight(const std::string& name) const = 0;  // converted to f32
  virtual Tensor host_weight(const std::string& name) const = 0;              // as stored
  virtual const ModelConfig& config() const = 0;
  virtual const char* backend_name() const = 0;
  // Why this backend: e.g. "cuda: no CUDA device" when auto fell back to the CPU.
  virtual const std::string& backend_note() const = 0;
  // Fills every KV block of every layer with uniform random values (benchmarks of long contexts
  // that cannot afford to compute them).
  virtual void fill_kv_random(uint64_t seed) = 0;
  // One KV block as stored, every layer's K rows then V rows (kv_bytes_per_block() bytes, in the
  // cache's dtype): copied out to an offload tier or a peer, and written back into any block of an
  // engine of the same model, dtype and block size. Not while a step runs.
  virtual void read_block(int block, void* dst) = 0;
  virtual void write_block(int block, const void* src) = 0;
  // The offload host tier (EngineOptions::host_tier_bytes): host_tier_slots() slots of one block
  // each. offload_to_host and reload_from_host copy between pool blocks and slots in the order of
  // the backend's work, without waiting: a copy out of a block is done before any later step
  // writes the block, a copy in before any later step reads it. read/write_host_slots wait for
  // the copies issued before them (the slots' bytes, for a disk tier or a peer). Not while a step
  // runs.
  virtual int host_tier_slots() const = 0;
  virtual void offload_to_host(const int32_t* blocks, const int32_t* slots, int n) = 0;
  virtual void reload_from_host(const int32_t* slots, const int32_t* blocks, int n) = 0;
  virtual void read_host_slots(const int32_t* slots, int n, void* dst) = 0;
  virtual void write_host_slots(const int32_t* slots, int n, const void* src) = 0;
  virtual int threads() const = 0;
  virtual int num_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual size_t kv_bytes_per_block() const = 0;       // both tiers
  virtual size_t kv_device_bytes_per_block() const = 0;  // K of every layer, V of full layers
  virtual size_t kv_host_bytes_per_block() const = 0;    // V of KCache layers
  virtual AttentionMode attention_mode() const = 0;
  virtual const KCacheOptions& kcache_options() const = 0;
  virtual size_t weight_bytes() const = 0;
  virtual DType kv_dtype() const = 0;
};

}  // namespace kc
