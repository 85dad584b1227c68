// Paged decode attention: one query token per sequence against its KV cache, read through the block table.
//
// v1: one thread block per (head, sequence) covers the whole context. v2: one thread block per (head, sequence,
// partition of kPartitionSize tokens), each writing its partition's softmax-normalised output, max logit and
// exp-sum; a reduce kernel then rescales the partitions' exp-sums to a common max and combines them. Both keep the
// query in shared memory (loaded once, read by every thread), fp32 logits in shared memory, and reduce with warp
// shuffles. Grid, partition count and shared-memory sizes come from launch_config.h.
#include <cstdint>

#include "dtype_utils.cuh"
#include "kernels.h"
#include "launch_config.h"

namespace benchctl {
namespace {

constexpr int kNumWarps = kAttentionThreads / kWarpSize;

// PARTITION_SIZE == 0 is v1. Thread blocks of kAttentionThreads threads.
template <typename scalar_t, int HEAD_SIZE, int BLOCK_SIZE, int PARTITION_SIZE>
__global__ void __launch_bounds__(kAttentionThreads) paged_attention_kernel(
    scalar_t* __restrict__ out,             // v1: (S, H, D)
    float* __restrict__ partial_out,        // v2: (S, H, P, D)
    float* __restrict__ max_logits,         // v2: (S, H, P)
    float* __restrict__ exp_sums,           // v2: (S, H, P)
    const scalar_t* __restrict__ query,     // (S, H, D), rows q_stride apart
    const scalar_t* __restrict__ k_cache,   // (N, B, Hkv, D)
    const scalar_t* __restrict__ v_cache,   // (N, B, Hkv, D)
    const int* __restrict__ block_tables,   // (S, M)
    const int* __restrict__ context_lens,   // (S,)
    const int num_kv_heads, const float scale, const int max_blocks_per_seq, const int64_t q_stride) {
  constexpr bool kPartitioned = PARTITION_SIZE > 0;
  constexpr int kGroup = thread_group_size(BLOCK_SIZE);  // threads sharing one key's dot product
  constexpr int kDimsPerThread = HEAD_SIZE / kGroup;
  constexpr int kDimsPerLane = ceil_div(HEAD_SIZE, kWarpSize);  // value phase: lane owns dims lane + 32 * i
  static_assert(BLOCK_SIZE * kGroup == kWarpSize, "one warp covers exactly one cache block per iteration");
  static_assert(HEAD_SIZE % kGroup == 0, "the dot product splits evenly over a thread group");
  static_assert(!kPartitioned || PARTITION_SIZE % BLOCK_SIZE == 0, "partitions hold whole blocks");

  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int partition = blockIdx.z;
  const int num_heads = gridDim.x;
  const int context_len = context_lens[seq];
  if (kPartitioned && partition * PARTITION_SIZE >= context_len) return;  // the whole thread block leaves

  const int num_context_blocks = ceil_div(context_len, BLOCK_SIZE);
  const int first_block = kPartitioned ? partition * (PARTITION_SIZE / BLOCK_SIZE) : 0;
  const int last_block =
      kPartitioned ? min(first_block + PARTITION_SIZE / BLOCK_SIZE, num_context_blocks) : num_context_blocks;
  const int first_token = first_block * BLOCK_SIZE;
  const int num_tokens = min(last_block * BLOCK_SIZE, context_len) - first_token;

  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int64_t kv_token_stride = static_cast<int64_t>(num_kv_heads) * HEAD_SIZE;
  const int64_t kv_block_stride = kv_token_stride * BLOCK_SIZE;
  const int* block_table = block_tables + static_cast<int64_t>(seq) * max_blocks_per_seq;

  __shared__ float q_smem[HEAD_SIZE];
  __shared__ float red_smem[2][kNumWarps];
  // (this thread block's tokens, padded to whole blocks) fp32 logits; afterwards (kNumWarps, D) partial outputs.
  extern __shared__ float smem[];
  float* logits = smem;

  const scalar_t* q = query + seq * q_stride + static_cast<int64_t>(head) * HEAD_SIZE;
  for (int d = threadIdx.x; d < HEAD_SIZE; d += kAttentionThreads) q_smem[d] = to_float(q[d]);
  __syncthreads();

  // Logits. Warp w takes blocks first_block + w, first_block + w + kNumWarps, ...; within a block thread group g
  // takes token g, and its kGroup threads split the dot product over interleaved dims, so adjacent threads read
  // adjacent addresses of the key row.
  const int token_in_block = lane / kGroup;
  const int lane_in_group = lane % kGroup;
  float qk_max = -FLT_MAX;
  for (int block = first_block + warp; block < last_block; block += kNumWarps) {
    const int64_t physical_block = block_table[block];
    const scalar_t* k = k_cache + physical_block * kv_block_stride + token_in_block * kv_token_stride +
                        static_cast<int64_t>(kv_head) * HEAD_SIZE;
    float dot = 0.f;
#pragma unroll 8
    for (int i = 0; i < kDimsPerThread; ++i) {
      const int d = i * kGroup + lane_in_group;
      dot += q_smem[d] * to_float(k[d]);
    }
    dot = warp_sum<kGroup>(dot);
    const int token = block * BLOCK_SIZE + token_in_block;
    if (lane_in_group == 0) {
      // Rows past the context in the last block hold stale data: their logit is never used.
      const bool valid = token < context_len;
      const float logit = dot * scale;
      logits[token - first_token] = valid ? logit : 0.f;
      if (valid) qk_max = fmaxf(qk_max, logit);
    }
  }
  qk_max = block_reduce<kAttentionThreads, true>(qk_max, red_smem[0]);

  float exp_sum = 0.f;
  for (int i = threadIdx.x; i < num_tokens; i += kAttentionThreads) {
    const float e = __expf(logits[i] - qk_max);
    logits[i] = e;
    exp_sum += e;
  }
  exp_sum = block_reduce<kAttentionThreads, false>(exp_sum, red_smem[1]);  // >= 1: the max token gives exp(0)

  // Values. Same block-to-warp assignment; lane owns dims lane, lane + 32, ... (coalesced rows). Only rows inside
  // the context are read, so a NaN in stale cache memory cannot reach the output through 0 * NaN.
  float acc[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) acc[i] = 0.f;
  for (int block = first_block + warp; block < last_block; block += kNumWarps) {
    const int64_t physical_block = block_table[block];
    const scalar_t* v_block = v_cache + physical_block * kv_block_stride + static_cast<int64_t>(kv_head) * HEAD_SIZE;
    const int block_first_token = block * BLOCK_SIZE;
    const int valid_tokens = min(BLOCK_SIZE, context_len - block_first_token);
    for (int t = 0; t < valid_tokens; ++t) {
      const float p = logits[block_first_token + t - first_token];
      const scalar_t* v = v_block + t * kv_token_stride;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarpSize;
        if (HEAD_SIZE % kWarpSize == 0 || d < HEAD_SIZE) acc[i] += p * to_float(v[d]);
      }
    }
  }
  __syncthreads();  // all warps are done with the logits before the region is reused
  float* warp_out = smem;  // (kNumWarps, D)
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + i * kWarpSize;
    if (HEAD_SIZE % kWarpSize == 0 || d < HEAD_SIZE) warp_out[warp * HEAD_SIZE + d] = acc[i];
  }
  __syncthreads();

  const float inv_sum = 1.f / exp_sum;
  const int64_t row = static_cast<int64_t>(seq) * num_heads + head;
  for (int d = threadIdx.x; d < HEAD_SIZE; d += kAttentionThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kNumWarps; ++w) sum += warp_out[w * HEAD_SIZE + d];
    if constexpr (kPartitioned) {
      partial_out[(row * gridDim.z + partition) * HEAD_SIZE + d] = sum * inv_sum;
    } else {
      out[row * HEAD_SIZE + d] = from_float<scalar_t>(sum * inv_sum);
    }
  }
  if constexpr (kPartitioned) {
    if (threadIdx.x == 0) {
      max_logits[row * gridDim.z + partition] = qk_max;
      exp_sums[row * gridDim.z + partition] = exp_sum;
    }
  }
}

// One thread block per (head, sequence): combines the sequence's partitions, weighting partition p's normalised
// output by exp_sum_p * exp(max_p - max) / sum over p of the same.
template <typename scalar_t>
__global__ void __launch_bounds__(kAttentionThreads) paged_attention_reduce_kernel(
    scalar_t* __restrict__ out,               // (S, H, D)
    const float* __restrict__ partial_out,    // (S, H, P, D)
    const float* __restrict__ max_logits,     // (S, H, P)
    const float* __restrict__ exp_sums,       // (S, H, P)
    const int* __restrict__ context_lens,     // (S,)
    const int head_size, const int max_num_partitions) {
  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int64_t row = static_cast<int64_t>(seq) * gridDim.x + head;
  const int parts = num_partitions(context_lens[seq]);

  __shared__ float red_smem[2][kNumWarps];
  extern __shared__ float smem[];  // (2, P): max logits, then rescaled exp-sums
  float* part_max = smem;
  float* part_weight = smem + max_num_partitions;

  float global_max = -FLT_MAX;
  for (int p = threadIdx.x; p < parts; p += kAttentionThreads) {
    part_max[p] = max_logits[row * max_num_partitions + p];
    global_max = fmaxf(global_max, part_max[p]);
  }
  global_max = block_reduce<kAttentionThreads, true>(global_max, red_smem[0]);

  float weight_sum = 0.f;
  for (int p = threadIdx.x; p < parts; p += kAttentionThreads) {
    part_weight[p] = exp_sums[row * max_num_partitions + p] * __expf(part_max[p] - global_max);
    weight_sum += part_weight[p];
  }
  weight_sum = block_reduce<kAttentionThreads, false>(weight_sum, red_smem[1]);  // publishes part_weight too

  const float inv_sum = 1.f / weight_sum;
  const float* partial = partial_out + row * max_num_partitions * head_size;
  for (int d = threadIdx.x; d < head_size; d += kAttentionThreads) {
    float acc = 0.f;
    for (int p = 0; p < parts; ++p) acc += partial[p * head_size + d] * part_weight[p];
    out[row * head_size + d] = from_float<scalar_t>(acc * inv_sum);
  }
}

// Lets kernel use smem_bytes of dynamic shared memory (above 48 KiB needs an explicit opt-in).
template <typename Kernel>
const char* allow_dynamic_smem(Kernel kernel, int smem_bytes) {
  if (smem_bytes <= kDefaultMaxDynamicSmemBytes) return nullptr;
  int device = 0;
  int max_optin_bytes = 0;
  cudaFuncAttributes attributes{};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&max_optin_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess ||
      cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
    return last_launch_error();
  }
  if (static_cast<size_t>(smem_bytes) + attributes.sharedSizeBytes > static_cast<size_t>(max_optin_bytes)) {
    return "paged attention v1: the context's logits do not fit in shared memory; use version 2";
  }
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes) != cudaSuccess) {
    return last_launch_error();
  }
  return nullptr;
}

template <typename scalar_t, int HEAD_SIZE, int BLOCK_SIZE>
const char* launch_sized(const PagedAttentionArgs& a, cudaStream_t stream) {
  const Dim3 g = paged_attention_grid(a.version, a.num_seqs, a.num_heads, a.max_context_len);
  const dim3 grid(g.x, g.y, g.z);
  const int smem_bytes = paged_attention_smem_bytes(a.version, HEAD_SIZE, BLOCK_SIZE, a.max_context_len);
  auto* out = static_cast<scalar_t*>(a.out);
  const auto* query = static_cast<const scalar_t*>(a.query);
  const auto* k_cache = static_cast<const scalar_t*>(a.k_cache);
  const auto* v_cache = static_cast<const scalar_t*>(a.v_cache);
  if (a.version == 1) {
    auto* kernel = paged_attention_kernel<scalar_t, HEAD_SIZE, BLOCK_SIZE, 0>;
    if (const char* err = allow_dynamic_smem(kernel, smem_bytes)) return err;
    kernel<<<grid, kAttentionThreads, smem_bytes, stream>>>(out, nullptr, nullptr, nullptr, query, k_cache, v_cache,
                                                            a.block_tables, a.context_lens, a.num_kv_heads, a.scale,
                                                            a.max_blocks_per_seq, a.q_stride);
    return last_launch_error();
  }
  auto* kernel = paged_attention_kernel<scalar_t, HEAD_SIZE, BLOCK_SIZE, kPartitionSize>;
  kernel<<<grid, kAttentionThreads, smem_bytes, stream>>>(nullptr, a.partial_out, a.max_logits, a.exp_sums, query,
                                                          k_cache, v_cache, a.block_tables, a.context_lens,
                                                          a.num_kv_heads, a.scale, a.max_blocks_per_seq, a.q_stride);
  if (const char* err = last_launch_error()) return err;
  const Dim3 rg = paged_attention_grid(1, a.num_seqs, a.num_heads, a.max_context_len);
  paged_attention_reduce_kernel<scalar_t>
      <<<dim3(rg.x, rg.y, rg.z), kAttentionThreads, paged_attention_reduce_smem_bytes(a.max_context_len), stream>>>(
          out, a.partial_out, a.max_logits, a.exp_sums, a.context_lens, HEAD_SIZE, g.z);
  return last_launch_error();
}

template <typename scalar_t, int HEAD_SIZE>
const char* dispatch_block_size(const PagedAttentionArgs& a, cudaStream_t stream) {
  switch (a.block_size) {
#define BENCHCTL_BLOCK_CASE(B) \
  case B:                      \
    return launch_sized<scalar_t, HEAD_SIZE, B>(a, stream);
    BENCHCTL_FOR_EACH_BLOCK_SIZE(BENCHCTL_BLOCK_CASE)
#undef BENCHCTL_BLOCK_CASE
    default:
      return "paged attention: block size not instantiated (see BENCHCTL_FOR_EACH_BLOCK_SIZE)";
  }
}

template <typename scalar_t>
const char* dispatch_head_size(const PagedAttentionArgs& a, cudaStream_t stream) {
  switch (a.head_size) {
#define BENCHCTL_HEAD_CASE(D) \
  case D:                     \
    return dispatch_block_size<scalar_t, D>(a, stream);
    BENCHCTL_FOR_EACH_HEAD_SIZE(BENCHCTL_HEAD_CASE)
#undef BENCHCTL_HEAD_CASE
    default:
      return "paged attention: head size not instantiated (see BENCHCTL_FOR_EACH_HEAD_SIZE)";
  }
}

}  // namespace

const char* launch_paged_attention(const PagedAttentionArgs& args, cudaStream_t stream) {
  if (args.version != 1 && args.version != 2) return "paged attention: version must be 1 or 2";
  if (args.num_seqs == 0) return nullptr;
  if (args.num_kv_heads <= 0 || args.num_heads % args.num_kv_heads != 0) {
    return "paged attention: num_heads must be a multiple of num_kv_heads";
  }
  return dispatch_dtype(args.dtype, [&](auto* tag) {
    using scalar_t = typename std::remove_pointer<decltype(tag)>::type;
    return dispatch_head_size<scalar_t>(args, stream);
  });
}

}  // namespace benchctl
