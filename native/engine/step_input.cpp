// What a model and a step may ask of the engine: the configuration checked at load, each step's
// input checked before any work is done (InvalidInput names the field), and the top-N per row.
#include <algorithm>
#include <cmath>
#include <string>

#include "engine_impl.h"

namespace kc {

void validate_config(const ModelConfig& c, int block_size, int num_blocks, AttentionMode mode, const KCacheOptions& kc) {
  auto req = [](bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error("invalid model config: " + what);
  };
  req(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.vocab_size > 0, "dim, hidden_dim, n_layers and vocab_size must be positive");
  req(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, "n_heads must be a positive multiple of n_kv_heads");
  req(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim must be positive and even");
  req(c.max_seq_len > 0, "max_seq_len must be positive");
  req(block_size > 0 && block_size <= 1024, "block_size must be in 1..1024");
  req(num_blocks > 0, "num_blocks must be positive");
  if (mode == AttentionMode::KCache) {
    req(kc.topn >= 1, "kcache topn must be at least 1");
    req(kc.topn_frac >= 0 && kc.topn_frac <= 1, "kcache topn fraction must be in [0, 1]");
    req(kc.full_layers >= 0 && kc.full_layers <= c.n_layers, "kcache full layers must be in 0..n_layers");
  }
}

std::vector<int32_t> step_slots(const StepInput& in, const ModelConfig& cfg, int block_size, int num_blocks) {
  const int rows = static_cast<int>(in.tokens.size());
  const int n_seqs = static_cast<int>(in.table_offset.size());
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
      if (in.block_tables[i] < 0 || in.block_tables[i] >= num_blocks)
        fail("sequence " + std::to_string(s) + ": block id " + std::to_string(in.block_tables[i]) +
             " outside the pool of " + std::to_string(num_blocks) + " blocks");
    }
  }
  std::vector<int32_t> slots(rows);
  for (int r = 0; r < rows; ++r) {
    const int32_t tok = in.tokens[r], pos = in.positions[r], seq = in.row_seq[r];
    if (tok < 0 || tok >= cfg.vocab_size)
      fail("tokens[" + std::to_string(r) + "] = " + std::to_string(tok) + " is outside the vocabulary (size " +
           std::to_string(cfg.vocab_size) + ")");
    if (seq < 0 || seq >= n_seqs) fail("row_seq[" + std::to_string(r) + "] names no sequence");
    if (pos < 0 || pos >= cfg.max_seq_len)
      fail("positions[" + std::to_string(r) + "] = " + std::to_string(pos) + " is outside the context (max_seq_len " +
           std::to_string(cfg.max_seq_len) + ")");
    const int blk = pos / block_size;
    if (blk >= in.table_length[seq])
      fail("positions[" + std::to_string(r) + "] = " + std::to_string(pos) + " needs block " + std::to_string(blk) +
           " but sequence " + std::to_string(seq) + " has a block table of " + std::to_string(in.table_length[seq]));
    slots[r] = in.block_tables[in.table_offset[seq] + blk] * block_size + pos % block_size;
  }
  for (int i = 0; i < static_cast<int>(in.output_rows.size()); ++i) {
    if (in.output_rows[i] < 0 || in.output_rows[i] >= rows)
      fail("output_rows[" + std::to_string(i) + "] names no row of this step");
  }
  return slots;
}

std::vector<int32_t> topn_per_row(const StepInput& in, AttentionMode mode, const KCacheOptions& kc) {
  const int rows = static_cast<int>(in.tokens.size());
  const int n_seqs = static_cast<int>(in.table_offset.size());
  std::vector<int32_t> out(rows, 0);
  if (mode != AttentionMode::KCache) return out;
  std::vector<int> count(n_seqs, 0);
  for (int r = 0; r < rows; ++r) count[in.row_seq[r]]++;
  for (int r = 0; r < rows; ++r) {
    const int seq = in.row_seq[r];
    if (count[seq] != 1) continue;
    const int requested = in.seq_topn.empty() ? 0 : in.seq_topn[seq];
    if (requested > 0) out[r] = requested;
    else if (kc.topn_frac > 0) out[r] = std::max(1, static_cast<int>(std::ceil(kc.topn_frac * (in.positions[r] + 1))));
    else out[r] = kc.topn;
  }
  return out;
}

}  // namespace kc
