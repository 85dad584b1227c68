// Launch constants and host-side launch arithmetic for the paged-attention kernels.
//
// This header is the single source of these numbers. reference_engine/kernels/launch.py parses the constants
// below (the `constexpr int k...` lines and the BENCHCTL_FOR_EACH_* lists) and mirrors the functions; the tests
// compile this header into a small host program and check that both agree. Keep it plain C++17 (no CUDA types):
// it is included by the .cu launchers and by that host-only test program.
#pragma once

// Head sizes and KV-cache block sizes the kernels are instantiated for. The launchers' dispatch switches are
// generated from these lists, so adding a size here is the only change needed.
#define BENCHCTL_FOR_EACH_HEAD_SIZE(X) X(64) X(80) X(96) X(128) X(256)
#define BENCHCTL_FOR_EACH_BLOCK_SIZE(X) X(8) X(16) X(32)

// The arithmetic below is used by host launchers and by kernels alike.
#if defined(__CUDACC__)
#define BENCHCTL_HOST_DEVICE __host__ __device__
#else
#define BENCHCTL_HOST_DEVICE
#endif

namespace benchctl {

constexpr int kWarpSize = 32;
// Threads per thread block of the attention kernels (v1, v2 and the v2 reduce).
constexpr int kAttentionThreads = 128;
// Tokens per partition of the v2 (partitioned) kernel; a multiple of every block size.
constexpr int kPartitionSize = 512;
// v1 keeps every logit of the sequence in shared memory; beyond this context it always uses v2.
constexpr int kV1MaxContextLen = 8192;
// With more than one partition, v1 is still preferred when num_seqs * num_heads thread blocks already fill the GPU.
constexpr int kV1MinParallelism = 512;
// Threads per thread block of reshape_and_cache, silu_and_mul and rms_norm.
constexpr int kElementwiseThreads = 256;
// Dynamic shared memory a kernel may use without cudaFuncSetAttribute opt-in.
constexpr int kDefaultMaxDynamicSmemBytes = 48 * 1024;

BENCHCTL_HOST_DEVICE constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Threads that cooperate on one key: a warp covers exactly one KV-cache block per iteration.
BENCHCTL_HOST_DEVICE constexpr int thread_group_size(int block_size) {
  return block_size >= kWarpSize ? 1 : kWarpSize / block_size;
}

BENCHCTL_HOST_DEVICE constexpr int num_partitions(int context_len) { return ceil_div(context_len, kPartitionSize); }

// 1 or 2: which kernel handles a batch whose longest context is max_context_len.
BENCHCTL_HOST_DEVICE constexpr int choose_paged_attention_version(int num_seqs, int num_heads, int max_context_len) {
  return (max_context_len <= kV1MaxContextLen &&
          (num_partitions(max_context_len) == 1 || num_seqs * num_heads > kV1MinParallelism))
             ? 1
             : 2;
}

// Dynamic shared memory of the v1/v2 kernel: fp32 logits for the tokens one thread block covers, reused afterwards
// for the cross-warp sum of the output (one fp32 row of head_size per warp).
BENCHCTL_HOST_DEVICE constexpr int paged_attention_smem_bytes(int version, int head_size, int block_size,
                                                              int max_context_len) {
  const int logits_tokens =
      version == 1 ? ceil_div(max_context_len, block_size) * block_size : kPartitionSize;
  const int outputs = (kAttentionThreads / kWarpSize) * head_size;
  return 4 * (logits_tokens > outputs ? logits_tokens : outputs);
}

// Dynamic shared memory of the v2 reduce kernel: each partition's max logit and rescaled exp-sum.
BENCHCTL_HOST_DEVICE constexpr int paged_attention_reduce_smem_bytes(int max_context_len) {
  return 2 * 4 * num_partitions(max_context_len);
}

struct Dim3 {
  int x, y, z;
};

// v1: (heads, seqs, 1); v2: (heads, seqs, partitions); the reduce kernel: (heads, seqs, 1).
BENCHCTL_HOST_DEVICE constexpr Dim3 paged_attention_grid(int version, int num_seqs, int num_heads,
                                                        int max_context_len) {
  return Dim3{num_heads, num_seqs, version == 1 ? 1 : num_partitions(max_context_len)};
}

#define BENCHCTL_IS_SIZE(N) || value == (N)
BENCHCTL_HOST_DEVICE constexpr bool is_instantiated_head_size(int value) {
  return false BENCHCTL_FOR_EACH_HEAD_SIZE(BENCHCTL_IS_SIZE);
}
BENCHCTL_HOST_DEVICE constexpr bool is_instantiated_block_size(int value) {
  return false BENCHCTL_FOR_EACH_BLOCK_SIZE(BENCHCTL_IS_SIZE);
}
#undef BENCHCTL_IS_SIZE

static_assert(kAttentionThreads % kWarpSize == 0, "whole warps");
static_assert(kPartitionSize % 32 == 0, "partitions hold whole blocks of every block size");

}  // namespace benchctl
