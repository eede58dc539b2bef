// The forward pass, written once against the Backend op interface. It reads top to bottom like
// llama2.c's: embed -> per layer [rmsnorm -> qkv -> rope -> cache -> attention -> wo -> residual
// -> rmsnorm -> swiglu ffn -> residual] -> final norm -> logits, over all rows of the batch.
#include "kcache/engine.h"

#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <thread>

#include "kcache/cpu_backend.h"
#ifdef KC_HAVE_CUDA
#include "kcache/cuda_backend.h"
#endif
#include "weights.h"

namespace kc {

namespace {

struct LayerWeights {
  float* attn_norm = nullptr;  // (dim)
  Tensor wq, wk, wv, wo;       // (q_dim, dim), (kv_dim, dim), (kv_dim, dim), (dim, q_dim)
  float* bq = nullptr;         // (q_dim) Qwen2 only
  float* bk = nullptr;         // (kv_dim)
  float* bv = nullptr;         // (kv_dim)
  float* ffn_norm = nullptr;   // (dim)
  Tensor w1, w2, w3;           // gate (hidden, dim), down (dim, hidden), up (hidden, dim)
  float* k_cache = nullptr;    // (num_blocks, block_size, kv_dim)
  float* v_cache = nullptr;    // (num_blocks, block_size, kv_dim); host tier when kcache
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

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineOptions& o)
      : cfg_(o.config), block_size_(o.block_size), num_blocks_(o.num_blocks), mode_(o.attention), kc_(o.kcache) {
    validate_config();
    threads_ = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    backend_ = choose_backend(o.backend);
    std::map<std::string, const TensorSpec*> specs;
    for (const auto& s : o.tensors) specs[s.name] = &s;

    tok_embeddings_ = matrix(specs, "tok_embeddings", cfg_.vocab_size, cfg_.dim, Backend::WeightUse::Rows);
    // a tied classifier reads the embedding table, placed a second time for matmul
    output_ = specs.count("output") ? matrix(specs, "output", cfg_.vocab_size, cfg_.dim)
                                    : backend_->place_weight(host_tensors_.at("tok_embeddings"), Backend::WeightUse::Matmul);
    final_norm_ = vector(specs, "norm", cfg_.dim, true);
    layers_.resize(cfg_.n_layers);
    for (int l = 0; l < cfg_.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      LayerWeights& L = layers_[l];
      L.attn_norm = vector(specs, p + "attention_norm", cfg_.dim, true);
      L.wq = matrix(specs, p + "wq", cfg_.q_dim(), cfg_.dim);
      L.wk = matrix(specs, p + "wk", cfg_.kv_dim(), cfg_.dim);
      L.wv = matrix(specs, p + "wv", cfg_.kv_dim(), cfg_.dim);
      L.wo = matrix(specs, p + "wo", cfg_.dim, cfg_.q_dim());
      L.bq = vector(specs, p + "bq", cfg_.q_dim(), cfg_.qkv_bias);
      L.bk = vector(specs, p + "bk", cfg_.kv_dim(), cfg_.qkv_bias);
      L.bv = vector(specs, p + "bv", cfg_.kv_dim(), cfg_.qkv_bias);
      L.ffn_norm = vector(specs, p + "ffn_norm", cfg_.dim, true);
      L.w1 = matrix(specs, p + "w1", cfg_.hidden_dim, cfg_.dim);
      L.w2 = matrix(specs, p + "w2", cfg_.dim, cfg_.hidden_dim);
      L.w3 = matrix(specs, p + "w3", cfg_.hidden_dim, cfg_.dim);
      const size_t cache_bytes = static_cast<size_t>(num_blocks_) * block_size_ * cfg_.kv_dim() * sizeof(float);
      L.kcache = mode_ == AttentionMode::KCache && l >= kc_.full_layers;
      L.k_cache = static_cast<float*>(track(backend_->alloc(cache_bytes)));
      if (L.kcache) {
        L.v_cache = static_cast<float*>(backend_->alloc_host(cache_bytes));
        host_allocations_.push_back(L.v_cache);
      } else {
        L.v_cache = static_cast<float*>(track(backend_->alloc(cache_bytes)));
      }
    }
    for (const auto& s : o.tensors) {
      if (!known_.count(s.name)) throw std::runtime_error("unexpected tensor " + s.name + " for this configuration");
    }
  }

  ~EngineImpl() override {
    for (void* p : allocations_) backend_->release(p);
    for (void* p : host_allocations_) backend_->release_host(p);
    free_scratch();
  }

  StepOutput step(const StepInput& in) override {
    const int rows = static_cast<int>(in.tokens.size());
    const int n_seqs = static_cast<int>(in.table_offset.size());
    const int n_out = static_cast<int>(in.output_rows.size());
    std::vector<int32_t> slots = validate(in, rows, n_seqs);
    const std::vector<int32_t> row_topn = topn_per_row(in, rows, n_seqs);
    ensure_scratch(rows, n_out, static_cast<int>(in.block_tables.size()), n_seqs);
    Backend& B = *backend_;
    Scratch& s = scratch_;
    const int dim = cfg_.dim, kv_dim = cfg_.kv_dim(), hidden = cfg_.hidden_dim;

    B.upload(s.tokens, in.tokens.data(), rows * sizeof(int32_t));
    B.upload(s.pos, in.positions.data(), rows * sizeof(int32_t));
    B.upload(s.row_seq, in.row_seq.data(), rows * sizeof(int32_t));
    B.upload(s.slots, slots.data(), rows * sizeof(int32_t));
    B.upload(s.tables, in.block_tables.data(), in.block_tables.size() * sizeof(int32_t));
    B.upload(s.table_offset, in.table_offset.data(), n_seqs * sizeof(int32_t));
    B.upload(s.out_rows_idx, in.output_rows.data(), n_out * sizeof(int32_t));
    B.upload(s.row_topn, row_topn.data(), rows * sizeof(int32_t));

    AttentionBatch ab;
    ab.rows = rows;
    ab.n_heads = cfg_.n_heads;
    ab.n_kv_heads = cfg_.n_kv_heads;
    ab.head_dim = cfg_.head_dim;
    ab.block_size = block_size_;
    ab.scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
    ab.row_pos = s.pos;
    ab.row_seq = s.row_seq;
    ab.block_tables = s.tables;
    ab.table_offset = s.table_offset;
    ab.row_topn = s.row_topn;
    for (int r = 0; r < rows; ++r) {
      ab.max_context = std::max(ab.max_context, in.positions[r] + 1);
      ab.max_topn = std::max(ab.max_topn, row_topn[r]);
    }
    // a bound, not the exact maximum: rounded up so that consecutive decode steps share a shape
    ab.max_context = (ab.max_context + 255) / 256 * 256;
    ab.topn_renormalize = kc_.renormalize;

    // A backend may record the forward pass of one step shape and replay it (CUDA graphs): the
    // shape is everything that sizes a launch; the data (tokens, positions, block tables) lives
    // in the scratch buffers uploaded above.
    const uint64_t shape_key = shape_hash({rows, n_out, n_seqs, static_cast<int64_t>(in.block_tables.size()), ab.max_context,
                                           ab.max_topn, scratch_generation_});
    if (!B.replay(shape_key)) {
      const bool recording = B.begin_record(shape_key);
      B.embedding(s.x, tok_embeddings_, s.tokens, rows);  // x (rows, dim)
      B.rmsnorm(s.xb, s.x, layers_[0].attn_norm, rows, dim, cfg_.norm_eps);
      for (size_t li = 0; li < layers_.size(); ++li) {
        const LayerWeights& L = layers_[li];
        // attention block (its input norm was applied by the previous residual add)
        {  // q (rows, q_dim), k and v (rows, kv_dim)
          float* outs[3] = {s.q, s.k, s.v};
          const Tensor ws[3] = {L.wq, L.wk, L.wv};
          const float* bs[3] = {L.bq, L.bk, L.bv};
          B.matmul_multi(outs, s.xb, rows, ws, bs, 3);
        }
        B.rope(s.q, s.pos, rows, cfg_.n_heads, cfg_.head_dim, cfg_.rope);
        B.rope(s.k, s.pos, rows, cfg_.n_kv_heads, cfg_.head_dim, cfg_.rope);
        B.kv_store(L.k_cache, L.v_cache, s.k, s.v, s.slots, rows, kv_dim);
        if (L.kcache) B.kcache_attention(s.att, s.q, L.k_cache, L.v_cache, ab);  // (rows, q_dim)
        else B.attention(s.att, s.q, L.k_cache, L.v_cache, ab);
        B.matmul(s.xb, s.att, rows, L.wo, nullptr);
        // residual, then the feed-forward block's norm
        B.add_rmsnorm(s.x, s.xb, s.xb, L.ffn_norm, rows, dim, cfg_.norm_eps);
        {  // gate and up (rows, hidden)
          float* outs[2] = {s.hb, s.hb2};
          const Tensor ws[2] = {L.w1, L.w3};
          const float* bs[2] = {nullptr, nullptr};
          B.matmul_multi(outs, s.xb, rows, ws, bs, 2);
        }
        B.swiglu(s.hb, s.hb, s.hb2, static_cast<size_t>(rows) * hidden);
        B.matmul(s.xb, s.hb, rows, L.w2, nullptr);   // down (rows, dim)
        // residual, then the next layer's attention norm
        if (li + 1 < layers_.size()) B.add_rmsnorm(s.x, s.xb, s.xb, layers_[li + 1].attn_norm, rows, dim, cfg_.norm_eps);
        else B.add(s.x, s.xb, static_cast<size_t>(rows) * dim);
      }
      // logits only for the rows the caller asked for
      B.get_rows(s.xsel, s.x, s.out_rows_idx, n_out, dim);
      B.rmsnorm(s.xsel, s.xsel, final_norm_, n_out, dim, cfg_.norm_eps);
      B.matmul(s.logits, s.xsel, n_out, output_, nullptr);  // (n_out, vocab)
      if (recording) B.end_record(shape_key);
    }
    StepOutput out;
    out.logits.resize(static_cast<size_t>(n_out) * cfg_.vocab_size);
    B.download(out.logits.data(), s.logits, out.logits.size() * sizeof(float));
    B.synchronize();
    return out;
  }

  Tensor host_weight(const std::string& name) const override {
    auto it = host_tensors_.find(name);
    if (it == host_tensors_.end()) throw std::runtime_error("no tensor named " + name);
    return it->second;
  }

  std::vector<float> read_weight(const std::string& name) const override {
    const Tensor t = host_weight(name);
    const size_t n = static_cast<size_t>(t.rows * t.cols);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
      switch (t.dtype) {
        case DType::F32: out[i] = static_cast<const float*>(t.data)[i]; break;
        case DType::BF16: out[i] = bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
        case DType::F16: out[i] = f16_to_f32(static_cast<const uint16_t*>(t.data)[i]); break;
      }
    }
    return out;
  }

  const ModelConfig& config() const override { return cfg_; }
  const char* backend_name() const override { return backend_->name(); }
  const std::string& backend_note() const override { return note_; }
  void fill_kv_random(uint64_t seed) override {
    const size_t n = static_cast<size_t>(num_blocks_) * block_size_ * cfg_.kv_dim();
    for (size_t l = 0; l < layers_.size(); ++l) {
      backend_->fill_uniform(layers_[l].k_cache, n, seed + 2 * l, -1.0f, 1.0f);
      backend_->fill_uniform(layers_[l].v_cache, n, seed + 2 * l + 1, -1.0f, 1.0f);
    }
    backend_->synchronize();
  }
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

 private:
  void validate_config() const {
    const ModelConfig& c = cfg_;
    auto req = [](bool ok, const std::string& what) {
      if (!ok) throw std::runtime_error("invalid model config: " + what);
    };
    req(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.vocab_size > 0, "dim, hidden_dim, n_layers and vocab_size must be positive");
    req(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "n_heads must be a positive multiple of n_kv_heads");
    req(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim must be positive and even");
    req(c.max_seq_len > 0, "max_seq_len must be positive");
    req(block_size_ > 0 && block_size_ <= 1024, "block_size must be in 1..1024");
    req(num_blocks_ > 0, "num_blocks must be positive");
    if (mode_ == AttentionMode::KCache) {
      req(kc_.topn >= 1, "kcache topn must be at least 1");
      req(kc_.topn_frac >= 0 && kc_.topn_frac <= 1, "kcache topn fraction must be in [0, 1]");
      req(kc_.full_layers >= 0 && kc_.full_layers <= c.n_layers, "kcache full layers must be in 0..n_layers");
    }
  }

  size_t layer_block_bytes() const { return static_cast<size_t>(block_size_) * cfg_.kv_dim() * sizeof(float); }
  int kcache_layers() const { return mode_ == AttentionMode::KCache ? cfg_.n_layers - kc_.full_layers : 0; }

  // A row gets top-N attention when it is its sequence's only row in the step (a decode token);
  // prefill chunks attend to everything.
  std::vector<int32_t> topn_per_row(const StepInput& in, int rows, int n_seqs) const {
    std::vector<int32_t> out(rows, 0);
    if (mode_ != AttentionMode::KCache) return out;
    std::vector<int> count(n_seqs, 0);
    for (int r = 0; r < rows; ++r) count[in.row_seq[r]]++;
    for (int r = 0; r < rows; ++r) {
      const int seq = in.row_seq[r];
      if (count[seq] != 1) continue;
      const int requested = in.seq_topn.empty() ? 0 : in.seq_topn[seq];
      if (requested > 0) out[r] = requested;
      else if (kc_.topn_frac > 0) out[r] = std::max(1, static_cast<int>(std::ceil(kc_.topn_frac * (in.positions[r] + 1))));
      else out[r] = kc_.topn;
    }
    return out;
  }

  std::unique_ptr<Backend> choose_backend(std::string want) {
    const char* env = std::getenv("KCACHE_BACKEND");
    if (want == "auto" && env && *env) want = env;
    if (want != "auto" && want != "cpu" && want != "cuda") throw std::runtime_error("backend must be auto, cpu or cuda, got '" + want + "'");
    if (want == "cpu") {
      note_ = "cpu: requested";
      return make_cpu_backend(threads_);
    }
#ifdef KC_HAVE_CUDA
    std::string device;
    if (cuda_device_available(&device)) {
      std::unique_ptr<Backend> b = make_cuda_backend(0);
      std::string why;
      if (b->supports_model(cfg_, &why)) {
        note_ = "cuda: " + device;
        return b;
      }
      if (want == "cuda") throw std::runtime_error(why);
      note_ = "cpu: the CUDA backend cannot run this model (" + why + ")";
      return make_cpu_backend(threads_);
    }
    if (want == "cuda") throw std::runtime_error("backend cuda: " + device);
    note_ = "cpu: " + device;
#else
    if (want == "cuda") throw std::runtime_error("backend cuda: this build has no CUDA backend (nvcc was not found at build time)");
    note_ = "cpu: built without CUDA";
#endif
    return make_cpu_backend(threads_);
  }

  void* track(void* p) {
    allocations_.push_back(p);
    return p;
  }

  Tensor matrix(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t rows, int64_t cols,
                Backend::WeightUse use = Backend::WeightUse::Matmul) {
    auto it = specs.find(name);
    if (it == specs.end()) throw std::runtime_error("missing tensor " + name);
    const TensorSpec& s = *it->second;
    if (s.rows != rows || s.cols != cols) {
      throw std::runtime_error("tensor " + name + ": expected shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                               "], got [" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]");
    }
    known_[name] = true;
    Tensor host = store_.load(s);
    host_tensors_[name] = host;
    weight_bytes_ += host.bytes();
    return backend_->place_weight(host, use);
  }

  // 1-D weights (norms, biases) are kept in f32 whatever their stored dtype.
  float* vector(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t n, bool required) {
    if (!required) {
      if (specs.count(name)) throw std::runtime_error("unexpected tensor " + name + " (the config has no q/k/v bias)");
      return nullptr;
    }
    Tensor host = matrix(specs, name, 1, n, Backend::WeightUse::Rows);
    weight_bytes_ -= host.bytes();
    std::vector<float> f = read_weight(name);
    weight_bytes_ += f.size() * sizeof(float);
    float* dev = static_cast<float*>(track(backend_->alloc(f.size() * sizeof(float))));
    backend_->upload(dev, f.data(), f.size() * sizeof(float));
    return dev;
  }

  std::vector<int32_t> validate(const StepInput& in, int rows, int n_seqs) const {
    auto fail = [](const std::string& m) { throw InvalidInput(m); };
    if (rows == 0) fail("tokens: a step needs at least one token");
    if (!in.seq_topn.empty()) {
      if (static_cast<int>(in.seq_topn.size()) != n_seqs) fail("seq_topn must have one entry per sequence");
      for (int s = 0; s < n_seqs; ++s)
        if (in.seq_topn[s] < 0) fail("seq_topn[" + std::to_string(s) + "] must not be negative");
    }
    if (n_seqs == 0) fail("table_offset: a step needs at least one sequence");
    if (static_cast<int>(in.positions.size()) != rows || static_cast<int>(in.row_seq.size()) != rows)
      fail("positions and row_seq must have one entry per token");
    if (static_cast<int>(in.table_length.size()) != n_seqs) fail("table_length must have one entry per sequence");
    for (int s = 0; s < n_seqs; ++s) {
      const int64_t off = in.table_offset[s], len = in.table_length[s];
      if (off < 0 || len < 0 || off + len > static_cast<int64_t>(in.block_tables.size()))
        fail("sequence " + std::to_string(s) + ": block table out of range of block_tables");
      for (int64_t i = off; i < off + len; ++i) {
        if (in.block_tables[i] < 0 || in.block_tables[i] >= num_blocks_)
          fail("sequence " + std::to_string(s) + ": block id " + std::to_string(in.block_tables[i]) +
               " outside the pool of " + std::to_string(num_blocks_) + " blocks");
      }
    }
    std::vector<int32_t> slots(rows);
    for (int r = 0; r < rows; ++r) {
      const int32_t tok = in.tokens[r], pos = in.positions[r], seq = in.row_seq[r];
      if (tok < 0 || tok >= cfg_.vocab_size)
        fail("tokens[" + std::to_string(r) + "] = " + std::to_string(tok) + " is outside the vocabulary (size " +
             std::to_string(cfg_.vocab_size) + ")");
      if (seq < 0 || seq >= n_seqs) fail("row_seq[" + std::to_string(r) + "] names no sequence");
      if (pos < 0 || pos >= cfg_.max_seq_len)
        fail("positions[" + std::to_string(r) + "] = " + std::to_string(pos) + " is outside the context (max_seq_len " +
             std::to_string(cfg_.max_seq_len) + ")");
      const int blk = pos / block_size_;
      if (blk >= in.table_length[seq])
        fail("positions[" + std::to_string(r) + "] = " + std::to_string(pos) + " needs block " + std::to_string(blk) +
             " but sequence " + std::to_string(seq) + " has a block table of " + std::to_string(in.table_length[seq]));
      slots[r] = in.block_tables[in.table_offset[seq] + blk] * block_size_ + pos % block_size_;
    }
    for (int i = 0; i < static_cast<int>(in.output_rows.size()); ++i) {
      if (in.output_rows[i] < 0 || in.output_rows[i] >= rows)
        fail("output_rows[" + std::to_string(i) + "] names no row of this step");
    }
    return slots;
  }

  static uint64_t shape_hash(std::initializer_list<int64_t> v) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t x : v) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
    return h;
  }

  void free_scratch() {
    Scratch& s = scratch_;
    for (void* p : {static_cast<void*>(s.x), static_cast<void*>(s.xb), static_cast<void*>(s.q), static_cast<void*>(s.k),
                    static_cast<void*>(s.v), static_cast<void*>(s.att), static_cast<void*>(s.hb), static_cast<void*>(s.hb2),
                    static_cast<void*>(s.xsel), static_cast<void*>(s.logits), static_cast<void*>(s.tokens),
                    static_cast<void*>(s.pos), static_cast<void*>(s.row_seq), static_cast<void*>(s.slots),
                    static_cast<void*>(s.out_rows_idx), static_cast<void*>(s.row_topn), static_cast<void*>(s.tables), static_cast<void*>(s.table_offset)}) {
      if (p) backend_->release(p);
    }
    s = Scratch{};
  }

  void ensure_scratch(int rows, int out_rows, int table_len, int seqs) {
    Scratch& s = scratch_;
    if (rows <= s.rows && out_rows <= s.out_rows && table_len <= s.table_len && seqs <= s.seqs) return;
    const int R = std::max(rows, s.rows), O = std::max(out_rows, s.out_rows);
    const int TL = std::max(std::max(table_len, s.table_len), 1), S = std::max(seqs, s.seqs);
    free_scratch();
    ++scratch_generation_;
    backend_->forget_records();  // recorded steps point at the old buffers
    auto f = [&](size_t n) { return static_cast<float*>(backend_->alloc(n * sizeof(float))); };
    auto i = [&](size_t n) { return static_cast<int32_t*>(backend_->alloc(n * sizeof(int32_t))); };
    const size_t r = static_cast<size_t>(R);
    s.x = f(r * cfg_.dim);
    s.xb = f(r * cfg_.dim);
    s.q = f(r * cfg_.q_dim());
    s.k = f(r * cfg_.kv_dim());
    s.v = f(r * cfg_.kv_dim());
    s.att = f(r * cfg_.q_dim());
    s.hb = f(r * cfg_.hidden_dim);
    s.hb2 = f(r * cfg_.hidden_dim);
    s.xsel = f(static_cast<size_t>(O) * cfg_.dim);
    s.logits = f(static_cast<size_t>(O) * cfg_.vocab_size);
    s.tokens = i(r);
    s.pos = i(r);
    s.row_seq = i(r);
    s.slots = i(r);
    s.row_topn = i(r);
    s.out_rows_idx = i(O);
    s.tables = i(TL);
    s.table_offset = i(S);
    s.rows = R;
    s.out_rows = O;
    s.table_len = TL;
    s.seqs = S;
  }

  ModelConfig cfg_;
  int block_size_, num_blocks_, threads_ = 1;
  std::unique_ptr<Backend> backend_;
  WeightStore store_;
  std::map<std::string, Tensor> host_tensors_;
  std::map<std::string, bool> known_;
  AttentionMode mode_;
  KCacheOptions kc_;
  std::string note_;
  std::vector<void*> allocations_;
  std::vector<void*> host_allocations_;
  size_t weight_bytes_ = 0;
  Tensor tok_embeddings_, output_;
  float* final_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  Scratch scratch_;
  int64_t scratch_generation_ = 0;
};

}  // namespace

std::unique_ptr<Engine> Engine::create(const EngineOptions& opts) { return std::make_unique<EngineImpl>(opts); }

}  // namespace kc
