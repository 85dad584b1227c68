// fp32 conversions of the storage types and warp / thread-block reductions shared by the kernels.
#pragma once

#include <cfloat>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels.h"
#include "launch_config.h"

namespace benchctl {

// Every kernel loads its storage type, computes in fp32, and rounds once when storing.
template <typename T>
struct Fp32;
template <>
struct Fp32<float> {
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <>
struct Fp32<__half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Fp32<__nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return Fp32<T>::load(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v) {
  return Fp32<T>::store(v);
}

constexpr unsigned kFullWarpMask = 0xffffffffu;

// Butterfly reduction over aligned groups of WIDTH lanes (a power of two <= 32); every lane gets its group's result.
template <int WIDTH>
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int mask = WIDTH / 2; mask >= 1; mask /= 2) v += __shfl_xor_sync(kFullWarpMask, v, mask);
  return v;
}
template <int WIDTH>
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int mask = WIDTH / 2; mask >= 1; mask /= 2) v = fmaxf(v, __shfl_xor_sync(kFullWarpMask, v, mask));
  return v;
}

// Reduction over a thread block of NUM_THREADS threads; every thread gets the result. scratch holds
// NUM_THREADS / 32 floats. The barrier inside also publishes all earlier shared-memory writes. Two calls in a row
// must use different scratch (a fast warp could overwrite it while a slow one still reads).
template <int NUM_THREADS, bool IS_MAX>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  constexpr int kWarps = NUM_THREADS / kWarpSize;
  static_assert(NUM_THREADS % kWarpSize == 0 && kWarps <= kWarpSize, "whole warps, at most 32 of them");
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  v = IS_MAX ? warp_max<kWarpSize>(v) : warp_sum<kWarpSize>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : (IS_MAX ? -FLT_MAX : 0.f);
  v = IS_MAX ? warp_max<kWarps>(v) : warp_sum<kWarps>(v);
  return __shfl_sync(kFullWarpMask, v, 0);
}

inline const char* last_launch_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// Calls fn with a typed null pointer selecting the storage type (fn is a generic lambda).
template <typename Fn>
const char* dispatch_dtype(KernelDtype dtype, Fn&& fn) {
  switch (dtype) {
    case KernelDtype::kFloat32:
      return fn(static_cast<float*>(nullptr));
    case KernelDtype::kFloat16:
      return fn(static_cast<__half*>(nullptr));
    case KernelDtype::kBFloat16:
      return fn(static_cast<__nv_bfloat16*>(nullptr));
  }
  return "unsupported dtype (float32, float16 and bfloat16 are instantiated)";
}

}  // namespace benchctl
