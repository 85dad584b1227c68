// Fused elementwise ops of the Llama MLP and norms: silu_and_mul (one kernel instead of silu, then mul) and
// rms_norm. One thread block per row; fp32 arithmetic, one rounding on store.
#include <cstdint>

#include "dtype_utils.cuh"
#include "kernels.h"
#include "launch_config.h"

namespace benchctl {
namespace {

// y[r, i] = silu(x[r, i]) * x[r, d + i]: the gate is the first half of the merged gate_up projection.
template <typename scalar_t>
__global__ void __launch_bounds__(kElementwiseThreads) silu_and_mul_kernel(
    scalar_t* __restrict__ y,        // (rows, d)
    const scalar_t* __restrict__ x,  // (rows, 2*d), rows x_stride apart
    const int d, const int64_t x_stride) {
  const int64_t r = blockIdx.x;
  const scalar_t* gate = x + r * x_stride;
  const scalar_t* up = gate + d;
  for (int i = threadIdx.x; i < d; i += kElementwiseThreads) {
    const float g = to_float(gate[i]);
    y[r * d + i] = from_float<scalar_t>(g / (1.f + __expf(-g)) * to_float(up[i]));
  }
}

// y = round(x * rsqrt(mean(x^2) + eps)) * weight, rounding to scalar_t before the weight as HF LlamaRMSNorm does.
template <typename scalar_t>
__global__ void __launch_bounds__(kElementwiseThreads) rms_norm_kernel(
    scalar_t* __restrict__ y,             // (rows, hidden)
    const scalar_t* __restrict__ x,       // (rows, hidden), rows x_stride apart
    const scalar_t* __restrict__ weight,  // (hidden,)
    const int hidden, const int64_t x_stride, const float eps) {
  __shared__ float red_smem[kElementwiseThreads / kWarpSize];
  const int64_t r = blockIdx.x;
  const scalar_t* row = x + r * x_stride;
  float sum_sq = 0.f;
  for (int i = threadIdx.x; i < hidden; i += kElementwiseThreads) {
    const float v = to_float(row[i]);
    sum_sq += v * v;
  }
  sum_sq = block_reduce<kElementwiseThreads, false>(sum_sq, red_smem);
  const float inv_rms = rsqrtf(sum_sq / hidden + eps);
  for (int i = threadIdx.x; i < hidden; i += kElementwiseThreads) {
    const float normed = to_float(from_float<scalar_t>(to_float(row[i]) * inv_rms));
    y[r * hidden + i] = from_float<scalar_t>(normed * to_float(weight[i]));
  }
}

}  // namespace

const char* launch_silu_and_mul(KernelDtype dtype, void* y, const void* x, int num_rows, int d, int64_t x_stride,
                                cudaStream_t stream) {
  if (num_rows == 0 || d == 0) return nullptr;
  return dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = typename std::remove_pointer<decltype(tag)>::type;
    silu_and_mul_kernel<scalar_t><<<num_rows, kElementwiseThreads, 0, stream>>>(
        static_cast<scalar_t*>(y), static_cast<const scalar_t*>(x), d, x_stride);
    return last_launch_error();
  });
}

const char* launch_rms_norm(KernelDtype dtype, void* y, const void* x, const void* weight, int num_rows, int hidden,
                            int64_t x_stride, float eps, cudaStream_t stream) {
  if (num_rows == 0 || hidden == 0) return nullptr;
  return dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = typename std::remove_pointer<decltype(tag)>::type;
    rms_norm_kernel<scalar_t><<<num_rows, kElementwiseThreads, 0, stream>>>(
        static_cast<scalar_t*>(y), static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(weight), hidden,
        x_stride, eps);
    return last_launch_error();
  });
}

}  // namespace benchctl
