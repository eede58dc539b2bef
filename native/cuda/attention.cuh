// Shared between the paged-attention kernels (attention.cu) and KCache (kcache_attention.cu).
#pragma once
#include "common.cuh"

namespace kc::cuda {

constexpr int kMaxGroup = 8;      // query heads per KV head
constexpr int kMaxHeadDim = 128;

// AttentionBatch plus the launch's split geometry, passed to kernels by value.
struct AttnArgs {
  int rows, n_heads, n_kv_heads, group, head_dim, block_size;
  float scale;
  const int32_t* row_pos;
  const int32_t* row_seq;
  const int32_t* block_tables;
  const int32_t* table_offset;
  const int32_t* row_topn;  // non-null: rows with 0 < topn < context are skipped
  DType kv_dtype;           // how the caches store each row (kv_rows.cuh)
  int64_t row_bytes;        // bytes of one cached row of kv_dim values
  int n_splits = 1, chunk = 0;
};

AttnArgs attn_args(const AttentionBatch& b);
void check_attention_shape(int head_dim, int group);
// Full attention over every row not marked top-N in a.row_topn.
void paged_attention(Ctx& c, float* out, const float* q, const void* k_cache, const void* v_cache, AttnArgs a, int max_context);

}  // namespace kc::cuda
