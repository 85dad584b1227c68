// reshape_and_cache: scatter each new token's K and V rows into the paged cache at its slot.
//
// The cache is contiguous NHD (N, B, Hkv, D), so slot = block * B + offset addresses one contiguous row of Hkv * D
// elements at slot * Hkv * D. Slot -1 marks padding tokens, which are not written.
#include <cstdint>

#include "dtype_utils.cuh"
#include "kernels.h"
#include "launch_config.h"

namespace benchctl {
namespace {

// One thread block per token.
template <typename scalar_t>
__global__ void __launch_bounds__(kElementwiseThreads) reshape_and_cache_kernel(
    const scalar_t* __restrict__ key,         // (T, Hkv, D), rows key_stride apart
    const scalar_t* __restrict__ value,       // (T, Hkv, D), rows value_stride apart
    scalar_t* __restrict__ k_cache,           // (N, B, Hkv, D)
    scalar_t* __restrict__ v_cache,           // (N, B, Hkv, D)
    const int64_t* __restrict__ slot_mapping, // (T,)
    const int64_t key_stride, const int64_t value_stride, const int row_elems) {
  const int64_t token = blockIdx.x;
  const int64_t slot = slot_mapping[token];
  if (slot < 0) return;
  const scalar_t* k = key + token * key_stride;
  const scalar_t* v = value + token * value_stride;
  scalar_t* k_dst = k_cache + slot * row_elems;
  scalar_t* v_dst = v_cache + slot * row_elems;
  for (int i = threadIdx.x; i < row_elems; i += kElementwiseThreads) {
    k_dst[i] = k[i];
    v_dst[i] = v[i];
  }
}

}  // namespace

const char* launch_reshape_and_cache(KernelDtype dtype, const void* key, const void* value, void* k_cache,
                                     void* v_cache, const int64_t* slot_mapping, int num_tokens, int64_t key_stride,
                                     int64_t value_stride, int num_kv_heads, int head_size, cudaStream_t stream) {
  if (num_tokens == 0) return nullptr;
  return dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = typename std::remove_pointer<decltype(tag)>::type;
    reshape_and_cache_kernel<scalar_t><<<num_tokens, kElementwiseThreads, 0, stream>>>(
        static_cast<const scalar_t*>(key), static_cast<const scalar_t*>(value), static_cast<scalar_t*>(k_cache),
        static_cast<scalar_t*>(v_cache), slot_mapping, key_stride, value_stride, num_kv_heads * head_size);
    return last_launch_error();
  });
}

}  // namespace benchctl
