// Building an engine: the backend, every weight placed where the backend's ops read it (checked
// against the config's shapes), the paged KV cache of each layer (V in host memory for KCache
// layers), and reading weights back.
#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "engine_impl.h"
#include "kcache/quant.h"

namespace kc {

EngineImpl::EngineImpl(const EngineOptions& o)
    : cfg_(o.config), block_size_(o.block_size), num_blocks_(o.num_blocks), mode_(o.attention), kc_(o.kcache), kv_dtype_(o.kv_dtype) {
  validate_config(cfg_, block_size_, num_blocks_, mode_, kc_);
  threads_ = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<DType> weight_types;
  std::map<std::string, const TensorSpec*> specs;
  for (const auto& s : o.tensors) {
    specs[s.name] = &s;
    load_total_ += s.stored_bytes();
    weight_types.push_back(s.placed_dtype());
  }
  backend_ = choose_backend(o.backend, cfg_, weight_types, o.kv_dtype_is_default ? DType::F32 : kv_dtype_, threads_, &note_);
  std::string why;
  if (!backend_->supports_kv(kv_dtype_, &why)) {
    if (!o.kv_dtype_is_default) throw std::runtime_error(why);
    if (o.kv_fallback_keeps_bytes)
      num_blocks_ = std::max<int>(1, static_cast<int>(static_cast<int64_t>(num_blocks_) * dtype_row_bytes(kv_dtype_, cfg_.kv_dim()) /
                                                       dtype_row_bytes(DType::F32, cfg_.kv_dim())));
    note_ += std::string("; KV cache f32 (") + why + ")";
    kv_dtype_ = DType::F32;
  }
  if (cfg_.kv_dim() % dtype_block(kv_dtype_) != 0)
    throw std::runtime_error(std::string("kv cache dtype ") + dtype_name(kv_dtype_) + ": rows of " + std::to_string(cfg_.kv_dim()) +
                             " values are not whole blocks of " + std::to_string(dtype_block(kv_dtype_)));
  on_progress_ = o.on_progress;

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
    L.kcache = mode_ == AttentionMode::KCache && l >= kc_.full_layers;
  }
  // Every layer's K and V caches are slices of one device region (and KCache's host-tier V of one
  // host region), not an allocation each: the CPU backend backs only buffers of 4 MiB or more with
  // huge pages, and a layer's pool is often smaller (smol135 at 8,000 tokens: 3 MiB of f16 K a
  // layer, while f32's 6 MiB got huge pages, so the two KV dtypes were compared on different pages).
  const size_t cache_bytes = (static_cast<size_t>(num_blocks_) * layer_block_bytes() + 63) / 64 * 64;
  const size_t host_layers = std::count_if(layers_.begin(), layers_.end(), [](const LayerWeights& L) { return L.kcache; });
  auto* device = static_cast<uint8_t*>(track(backend_->alloc(cache_bytes * (2 * layers_.size() - host_layers))));
  uint8_t* host = nullptr;
  if (host_layers > 0) {
    host = static_cast<uint8_t*>(backend_->alloc_host(cache_bytes * host_layers));
    host_allocations_.push_back(host);
  }
  for (LayerWeights& L : layers_) {
    L.k_cache = device;
    device += cache_bytes;
    if (L.kcache) {
      L.v_cache = host;
      host += cache_bytes;
    } else {
      L.v_cache = device;
      device += cache_bytes;
    }
  }
  for (const auto& s : o.tensors) {
    if (!known_.count(s.name)) throw std::runtime_error("unexpected tensor " + s.name + " for this configuration");
  }
  host_tier_slots_ = static_cast<int>(std::min<size_t>(o.host_tier_bytes / kv_bytes_per_block(), INT32_MAX));
  if (host_tier_slots_ > 0) {
    host_tier_ = static_cast<uint8_t*>(backend_->alloc_host(static_cast<size_t>(host_tier_slots_) * kv_bytes_per_block()));
    host_allocations_.push_back(host_tier_);
  }
}

EngineImpl::~EngineImpl() {
  for (void* p : allocations_) backend_->release(p);
  for (void* p : host_allocations_) backend_->release_host(p);
  free_scratch();
}

Tensor EngineImpl::host_weight(const std::string& name) const {
  auto it = host_tensors_.find(name);
  if (it == host_tensors_.end()) throw std::runtime_error("no tensor named " + name);
  return it->second;
}

std::vector<float> EngineImpl::read_weight(const std::string& name) const {
  const Tensor t = host_weight(name);
  std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
  const size_t row_bytes = dtype_row_bytes(t.dtype, t.cols);
  for (int64_t r = 0; r < t.rows; ++r)
    dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + r * row_bytes, out.data() + r * t.cols, t.cols);
  return out;
}

void EngineImpl::fill_kv_random(uint64_t seed) {
  const size_t n = static_cast<size_t>(num_blocks_) * block_size_ * cfg_.kv_dim();
  if (kv_dtype_ == DType::F32) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      backend_->fill_uniform(static_cast<float*>(layers_[l].k_cache), n, seed + 2 * l, -1.0f, 1.0f);
      backend_->fill_uniform(static_cast<float*>(layers_[l].v_cache), n, seed + 2 * l + 1, -1.0f, 1.0f);
    }
    backend_->synchronize();
    return;
  }
  // other dtypes: the same values, encoded as the cache's rows on the host and uploaded a chunk
  // of rows at a time (the V tier of KCache is host memory: written in place)
  const int kv_dim = cfg_.kv_dim();
  const size_t row_bytes = dtype_row_bytes(kv_dtype_, kv_dim), rows = n / kv_dim, chunk = 4096;
  std::vector<float> f(chunk * kv_dim);
  std::vector<uint8_t> enc(chunk * row_bytes);
  for (size_t l = 0; l < layers_.size(); ++l) {
    for (int which = 0; which < 2; ++which) {
      auto* dst = static_cast<uint8_t*>(which == 0 ? layers_[l].k_cache : layers_[l].v_cache);
      const bool host = which == 1 && layers_[l].kcache;
      for (size_t r0 = 0; r0 < rows; r0 += chunk) {
        const size_t nr = std::min(chunk, rows - r0);
        for (size_t i = 0; i < nr * kv_dim; ++i) f[i] = uniform_at(seed + 2 * l + which, r0 * kv_dim + i, -1.0f, 1.0f);
        uint8_t* out = host ? dst + r0 * row_bytes : enc.data();
        for (size_t r = 0; r < nr; ++r) encode_row(kv_dtype_, f.data() + r * kv_dim, out + r * row_bytes, kv_dim);
        if (!host) backend_->upload(dst + r0 * row_bytes, enc.data(), nr * row_bytes);
      }
    }
  }
  backend_->synchronize();
}

namespace {
void check_ids(const int32_t* ids, int n, int limit, const char* what) {
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= limit)
      throw InvalidInput(std::string(what) + " " + std::to_string(ids[i]) + " is outside 0.." + std::to_string(limit - 1));
}
}  // namespace

// A block's bytes in one layout everywhere (read_block, write_block, a host tier slot): each
// layer's K rows, then its V rows. copy_async moves them between any of the backend's memories
// (the pool, KCache's host-resident V, the host tier) and plain host memory alike.
void EngineImpl::read_block(int block, void* dst) {
  check_ids(&block, 1, num_blocks_, "block");
  for_block_parts(block, [&](uint8_t* part, size_t at) { backend_->copy_async(static_cast<uint8_t*>(dst) + at, part, layer_block_bytes()); });
  backend_->synchronize();
}

void EngineImpl::write_block(int block, const void* src) {
  check_ids(&block, 1, num_blocks_, "block");
  backend_->synchronize();  // a queued copy out of this block (offload_to_host) reads it first
  for_block_parts(block, [&](uint8_t* part, size_t at) { backend_->copy_async(part, static_cast<const uint8_t*>(src) + at, layer_block_bytes()); });
  backend_->synchronize();  // the source may be freed on return
}

void EngineImpl::offload_to_host(const int32_t* blocks, const int32_t* slots, int n) {
  check_ids(blocks, n, num_blocks_, "block");
  check_ids(slots, n, host_tier_slots_, "host tier slot");
  for (int i = 0; i < n; ++i) {
    uint8_t* slot = host_tier_ + static_cast<size_t>(slots[i]) * kv_bytes_per_block();
    for_block_parts(blocks[i], [&](uint8_t* part, size_t at) { backend_->copy_async(slot + at, part, layer_block_bytes()); });
  }
}

void EngineImpl::reload_from_host(const int32_t* slots, const int32_t* blocks, int n) {
  check_ids(blocks, n, num_blocks_, "block");
  check_ids(slots, n, host_tier_slots_, "host tier slot");
  for (int i = 0; i < n; ++i) {
    const uint8_t* slot = host_tier_ + static_cast<size_t>(slots[i]) * kv_bytes_per_block();
    for_block_parts(blocks[i], [&](uint8_t* part, size_t at) { backend_->copy_async(part, slot + at, layer_block_bytes()); });
  }
}

void EngineImpl::read_host_slots(const int32_t* slots, int n, void* dst) {
  check_ids(slots, n, host_tier_slots_, "host tier slot");
  backend_->synchronize();  // the copies into these slots are done
  const size_t bpb = kv_bytes_per_block();
  for (int i = 0; i < n; ++i) std::memcpy(static_cast<uint8_t*>(dst) + i * bpb, host_tier_ + static_cast<size_t>(slots[i]) * bpb, bpb);
}

void EngineImpl::write_host_slots(const int32_t* slots, int n, const void* src) {
  check_ids(slots, n, host_tier_slots_, "host tier slot");
  backend_->synchronize();  // no queued copy still reads these slots
  const size_t bpb = kv_bytes_per_block();
  for (int i = 0; i < n; ++i) std::memcpy(host_tier_ + static_cast<size_t>(slots[i]) * bpb, static_cast<const uint8_t*>(src) + i * bpb, bpb);
}

void* EngineImpl::track(void* p) {
  allocations_.push_back(p);
  return p;
}

Tensor EngineImpl::matrix(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t rows, int64_t cols,
                         Backend::WeightUse use) {
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
  load_done_ += s.stored_bytes();
  if (on_progress_) on_progress_(load_done_, load_total_);
  return backend_->place_weight(host, use);
}

// 1-D weights (norms, biases) are kept in f32 whatever their stored dtype.
float* EngineImpl::vector(const std::map<std::string, const TensorSpec*>& specs, const std::string& name, int64_t n, bool required) {
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

std::unique_ptr<Engine> Engine::create(const EngineOptions& opts) { return std::make_unique<EngineImpl>(opts); }

}  // namespace kc
