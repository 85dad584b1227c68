// Launchers of the CUDA kernels, callable without torch: raw device pointers, sizes and a stream.
// Each returns nullptr on success, else a static message (an unsupported size, or the CUDA error string).
// torch_bindings.cpp turns tensors into these arguments; the .cu files implement them.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace benchctl {

enum class KernelDtype : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Shapes: S seqs, H heads, Hkv KV heads, D head size, N blocks, B block size, M blocks per sequence,
// P = num_partitions(max_context_len). Caches are contiguous NHD.
struct PagedAttentionArgs {
  void* out;                // (S, H, D), contiguous, dtype
  float* partial_out;       // v2 only: (S, H, P, D)
  float* max_logits;        // v2 only: (S, H, P)
  float* exp_sums;          // v2 only: (S, H, P)
  const void* query;        // (S, H, D), rows q_stride elements apart, dtype
  const void* k_cache;      // (N, B, Hkv, D), dtype
  const void* v_cache;      // (N, B, Hkv, D), dtype
  const int* block_tables;  // (S, M) int32, padded with -1
  const int* context_lens;  // (S,) int32, each in [1, max_context_len]
  int num_seqs;
  int num_heads;
  int num_kv_heads;
  int head_size;
  int block_size;
  int max_blocks_per_seq;
  int max_context_len;  // upper bound of context_lens: sizes the shared memory and the v2 grid
  int64_t q_stride;
  float scale;
  int version;  // 1 or 2 (resolve 0 = auto with choose_paged_attention_version before allocating v2 buffers)
  KernelDtype dtype;
};

const char* launch_paged_attention(const PagedAttentionArgs& args, cudaStream_t stream);

// key/value (T, Hkv, D) rows key_stride/value_stride elements apart; caches (N, B, Hkv, D); slot_mapping (T,) int64.
const char* launch_reshape_and_cache(KernelDtype dtype, const void* key, const void* value, void* k_cache,
                                     void* v_cache, const int64_t* slot_mapping, int num_tokens, int64_t key_stride,
                                     int64_t value_stride, int num_kv_heads, int head_size, cudaStream_t stream);

// x (rows, 2*d) with rows x_stride elements apart -> y (rows, d) contiguous.
const char* launch_silu_and_mul(KernelDtype dtype, void* y, const void* x, int num_rows, int d, int64_t x_stride,
                                cudaStream_t stream);

// x (rows, hidden) with rows x_stride elements apart, weight (hidden,) -> y (rows, hidden) contiguous.
const char* launch_rms_norm(KernelDtype dtype, void* y, const void* x, const void* weight, int num_rows, int hidden,
                            int64_t x_stride, float eps, cudaStream_t stream);

}  // namespace benchctl
