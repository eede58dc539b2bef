// The engine's op interface. Every backend (cpu/, cuda/) implements this closed list of ops
// over buffers it allocated itself; the forward pass (engine/forward.cpp) calls only these, so a
// new backend changes no caller. Pointers passed to ops are backend memory (host memory on the
// CPU backend, device memory on CUDA). A backend runs every op for every weight dtype; what it
// cannot run is a whole model's shape or a weight type, which supports_model() and
// supports_weights() say before any weight is placed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kcache/types.h"

namespace kc {

#define KC_OPS(X) \
  X(embedding)    \
  X(rmsnorm)      \
  X(matmul)       \
  X(rope)         \
  X(swiglu)       \
  X(add)          \
  X(get_rows)     \
  X(kv_store)     \
  X(attention)    \
  X(kcache_attention)

enum class Op : int {
#define KC_OP_ENUM(name) name,
  KC_OPS(KC_OP_ENUM)
#undef KC_OP_ENUM
};

// Describes one batched attention call: `rows` query rows, each belonging to a sequence whose
// keys/values live in the paged cache at the blocks its block table names. Row r attends to
// positions [0, pos[r]] of its sequence (causal). All arrays are backend memory.
struct AttentionBatch {
  int rows = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  float scale = 1.0f;
  const int32_t* row_pos = nullptr;       // [rows]
  const int32_t* row_seq = nullptr;       // [rows]
  const int32_t* block_tables = nullptr;  // all sequences' tables, concatenated
  const int32_t* table_offset = nullptr;  // [n_seqs] start of each table in block_tables
  // How the K and V caches store each row of kv_dim values (the KV cache dtype).
  DType kv_dtype = DType::F32;
  // Host-side bounds for sizing launches and scratch (a device backend cannot read row_pos):
  int max_context = 0;  // max over rows of row_pos + 1
  int max_topn = 0;     // max over rows of row_topn
  // kcache_attention only: row r keeps the row_topn[r] largest attention weights of each query
  // head and reads only those value rows; 0 (or >= the row's context) means full attention.
  const int32_t* row_topn = nullptr;  // [rows]
  // Whether the kept weights are renormalised to sum to 1 (softmax over the top-N scores) or keep
  // their share of the full softmax (which needs exp() over every score).
  bool topn_renormalize = true;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Whether every op can run this model's shapes; `why` says what cannot.
  virtual bool supports_model(const ModelConfig&, std::string* why) const { return true; }
  virtual bool supports_weights(DType, std::string* why) const { return true; }
  // Whether the KV cache can store rows as this dtype (kv_store, attention, kcache_attention).
  virtual bool supports_kv(DType t, std::string* why) const {
    if (t == DType::F32) return true;
    if (why) *why = std::string(name()) + " has no KV cache kernels for " + dtype_name(t);
    return false;
  }

  // Memory owned by the backend.
  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* p) = 0;
  // Host memory the backend's ops can read directly (pinned and mapped on a GPU backend): the
  // KCache value tier.
  virtual void* alloc_host(size_t bytes) = 0;
  virtual void release_host(void* p) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  // A copy between any two of this backend's memories (alloc and alloc_host), in the order of its
  // work and without waiting for it (an asynchronous copy on a GPU's stream; memcpy on the CPU).
  virtual void copy_async(void* dst, const void* src, size_t bytes) = 0;
  // Where a host-resident weight must live, and in what layout, to be used by this backend's
  // ops: as the right-hand side of matmul, or as a table read by rows (embedding). The CPU
  // backend repacks matmul weights into k-major panels; a device backend copies them.
  enum class WeightUse { Matmul, Rows };
  virtual Tensor place_weight(const Tensor& host, WeightUse use) = 0;
  virtual void synchronize() = 0;
  // Recording and replaying a step's forward pass (CUDA graphs on the CUDA backend; the CPU
  // backend records nothing). `key` identifies everything that shapes the launches.
  //   replay(key): true if a recording of `key` ran (the caller skips the forward pass);
  //   begin_record(key): true if recording started (run the forward pass, then end_record(key),
  //   which also runs it).
  virtual bool replay(uint64_t key) { return false; }
  virtual bool begin_record(uint64_t key) { return false; }
  virtual void end_record(uint64_t key) {}
  // Drops every recording (the buffers they use were freed).
  virtual void forget_records() {}
  // dst[i] = uniform in [lo, hi), a function of (seed, i) only: for benchmarks that need a filled
  // KV cache without computing one.
  virtual void fill_uniform(float* dst, size_t n, uint64_t seed, float lo, float hi) = 0;

  // out[n, dim] = table[tokens[n], :] (converted to f32)
  virtual void embedding(float* out, const Tensor& table, const int32_t* tokens, int n) = 0;
  // out[r, :] = x[r, :] / rms(x[r, :]) * w
  virtual void rmsnorm(float* out, const float* x, const float* w, int rows, int dim, float eps) = 0;
  // out[r, o] = sum_k x[r, k] * w[o, k] (+ bias[o]); fp32 accumulation for every weight dtype.
  // w was placed with WeightUse::Matmul. Each output is computed the same way whatever `rows` is,
  // so batching never changes a sequence's results.
  virtual void matmul(float* out, const float* x, int rows, const Tensor& w, const float* bias) = 0;
  // Several matmuls of the same x (q/k/v, gate/up), each computed exactly as matmul computes it;
  // a backend may run them as one launch.
  virtual void matmul_multi(float* const* outs, const float* x, int rows, const Tensor* ws, const float* const* biases, int count) {
    for (int i = 0; i < count; ++i) matmul(outs[i], x, rows, ws[i], biases[i]);
  }
  // Rotates each head of x[r, n_heads * head_dim] by position pos[r].
  virtual void rope(float* x, const int32_t* pos, int rows, int n_heads, int head_dim,
                    const RopeParams& p) = 0;
  // x += y, then out = rmsnorm(x) * w (the residual add and the next norm; out may be y).
  virtual void add_rmsnorm(float* x, const float* y, float* out, const float* w, int rows, int dim, float eps) {
    add(x, y, static_cast<size_t>(rows) * dim);
    rmsnorm(out, x, w, rows, dim, eps);
  }
  // out[i] = silu(gate[i]) * up[i]
  virtual void swiglu(float* out, const float* gate, const float* up, size_t n) = 0;
  // x[i] += y[i]
  virtual void add(float* x, const float* y, size_t n) = 0;
  // out[i, :] = x[idx[i], :]
  virtual void get_rows(float* out, const float* x, const int32_t* idx, int n, int dim) = 0;
  // Writes k[r], v[r] into cache slot slots[r] (slot = block * block_size + offset), each row
  // of kv_dim values stored as kv_dtype (dtype_row_bytes(kv_dtype, kv_dim) bytes a row).
  virtual void kv_store(void* k_cache, void* v_cache, const float* k, const float* v,
                        const int32_t* slots, int rows, int kv_dim, DType kv_dtype) = 0;
  // out[r, h * head_dim ..] = softmax(q·Kᵀ * scale) V over the row's cached context; the caches
  // hold rows of b.kv_dtype, and every product and sum is in f32.
  virtual void attention(float* out, const float* q, const void* k_cache, const void* v_cache,
                         const AttentionBatch& b) = 0;
  // KCache (He & Wu 2024): scores q·Kᵀ against every cached key (K in backend memory), softmax,
  // keeps the top b.row_topn[r] weights per query head and sums only those rows of V, which
  // lives in host memory (alloc_host). Rows with row_topn 0 or >= their context compute exactly
  // what attention() computes.
  virtual void kcache_attention(float* out, const float* q, const void* k_cache, const void* v_host,
                                const AttentionBatch& b) = 0;
};

}  // namespace kc
