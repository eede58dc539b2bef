// The forward pass, written once against the Backend op interface. It reads top to bottom like
// llama2.c's: embed -> per layer [rmsnorm -> qkv -> rope -> cache -> attention -> wo -> residual
// -> rmsnorm -> swiglu ffn -> residual] -> final norm -> logits, over all rows of the batch.
#include <cmath>
#include <initializer_list>

#include "engine_impl.h"

namespace kc {

namespace {

uint64_t shape_hash(std::initializer_list<int64_t> v) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t x : v) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
  return h;
}

}  // namespace

void EngineImpl::step(const StepInput& in, float* logits) {
  const int rows = static_cast<int>(in.tokens.size());
  const int n_seqs = static_cast<int>(in.table_offset.size());
  const int n_out = static_cast<int>(in.output_rows.size());
  std::vector<int32_t> slots = step_slots(in, cfg_, block_size_, num_blocks_);
  const std::vector<int32_t> row_topn = topn_per_row(in, mode_, kc_);
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
  ab.kv_dtype = kv_dtype_;

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
      B.kv_store(L.k_cache, L.v_cache, s.k, s.v, s.slots, rows, kv_dim, kv_dtype_);
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
  B.download(logits, s.logits, static_cast<size_t>(n_out) * cfg_.vocab_size * sizeof(float));
  B.synchronize();
}

void EngineImpl::free_scratch() {
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

void EngineImpl::ensure_scratch(int rows, int out_rows, int table_len, int seqs) {
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

}  // namespace kc
