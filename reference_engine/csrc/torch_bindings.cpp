// Torch bindings of the CUDA launchers in kernels.h. Built only on a machine with CUDA torch, by
// reference_engine/kernels/cuda_ops.py through torch.utils.cpp_extension.load; the .cu files themselves include
// no torch header, so they also compile standalone (tests/test_kernels_cuda.py).
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "kernels.h"
#include "launch_config.h"

namespace {

using benchctl::KernelDtype;

KernelDtype kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return KernelDtype::kFloat32;
    case at::kHalf:
      return KernelDtype::kFloat16;
    case at::kBFloat16:
      return KernelDtype::kBFloat16;
    default:
      break;
  }
  TORCH_CHECK(false, "benchctl kernels support float32, float16 and bfloat16, not ", t.scalar_type());
  return KernelDtype::kFloat32;  // not reached
}

void check(const char* error) { TORCH_CHECK(error == nullptr, "benchctl CUDA kernel: ", error); }

void check_cuda_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.is_cuda() && b.is_cuda(), what, ": tensors must be on a CUDA device");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), what, ": dtypes differ (", a.scalar_type(), " vs ",
              b.scalar_type(), ")");
}

// key/value (T, Hkv, D); caches (N, B, Hkv, D) contiguous; slot_mapping (T,) int64, -1 = skip.
void reshape_and_cache(const at::Tensor& key, const at::Tensor& value, at::Tensor& k_cache, at::Tensor& v_cache,
                       const at::Tensor& slot_mapping) {
  check_cuda_same_dtype(key, k_cache, "reshape_and_cache");
  check_cuda_same_dtype(value, v_cache, "reshape_and_cache");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "reshape_and_cache: caches must be contiguous");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong, "reshape_and_cache: slot_mapping must be int64");
  const at::Tensor k = key.stride(2) == 1 && key.stride(1) == key.size(2) ? key : key.contiguous();
  const at::Tensor v = value.stride(2) == 1 && value.stride(1) == value.size(2) ? value : value.contiguous();
  const at::Tensor slots = slot_mapping.contiguous();
  const c10::cuda::CUDAGuard guard(key.device());
  check(benchctl::launch_reshape_and_cache(kernel_dtype(k), k.data_ptr(), v.data_ptr(), k_cache.data_ptr(),
                                           v_cache.data_ptr(), slots.data_ptr<int64_t>(), static_cast<int>(k.size(0)),
                                           k.stride(0), v.stride(0), static_cast<int>(k.size(1)),
                                           static_cast<int>(k.size(2)), c10::cuda::getCurrentCUDAStream()));
}

// query (S, H, D); caches (N, B, Hkv, D); block_tables (S, M) int32; context_lens (S,) int32 -> (S, H, D).
// version 0 = choose with the heuristic of launch_config.h.
at::Tensor paged_attention(const at::Tensor& query, const at::Tensor& k_cache, const at::Tensor& v_cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens, double scale,
                           int64_t max_context_len, int64_t version) {
  check_cuda_same_dtype(query, k_cache, "paged_attention");
  check_cuda_same_dtype(query, v_cache, "paged_attention");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "paged_attention: caches must be contiguous");
  TORCH_CHECK(block_tables.scalar_type() == at::kInt && context_lens.scalar_type() == at::kInt,
              "paged_attention: block_tables and context_lens must be int32");
  const at::Tensor q = query.stride(2) == 1 && query.stride(1) == query.size(2) ? query : query.contiguous();
  const at::Tensor tables = block_tables.contiguous();
  const at::Tensor lens = context_lens.contiguous();
  const int num_seqs = static_cast<int>(q.size(0));
  const int num_heads = static_cast<int>(q.size(1));
  const int head_size = static_cast<int>(q.size(2));
  const int block_size = static_cast<int>(k_cache.size(1));
  TORCH_CHECK(benchctl::is_instantiated_head_size(head_size), "paged_attention: head size ", head_size,
              " is not instantiated (csrc/launch_config.h)");
  TORCH_CHECK(benchctl::is_instantiated_block_size(block_size), "paged_attention: block size ", block_size,
              " is not instantiated (csrc/launch_config.h)");
  const int max_len = static_cast<int>(max_context_len);
  const int resolved = version == 0 ? benchctl::choose_paged_attention_version(num_seqs, num_heads, max_len)
                                    : static_cast<int>(version);
  TORCH_CHECK(resolved == 1 || resolved == 2, "paged_attention: version must be 0 (auto), 1 or 2");

  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({num_seqs, num_heads, head_size}, q.options());
  at::Tensor partial_out, max_logits, exp_sums;
  if (resolved == 2) {
    const int parts = benchctl::num_partitions(max_len);
    const auto f32 = q.options().dtype(at::kFloat);
    partial_out = at::empty({num_seqs, num_heads, parts, head_size}, f32);
    max_logits = at::empty({num_seqs, num_heads, parts}, f32);
    exp_sums = at::empty({num_seqs, num_heads, parts}, f32);
  }
  benchctl::PagedAttentionArgs args{};
  args.out = out.data_ptr();
  args.partial_out = resolved == 2 ? partial_out.data_ptr<float>() : nullptr;
  args.max_logits = resolved == 2 ? max_logits.data_ptr<float>() : nullptr;
  args.exp_sums = resolved == 2 ? exp_sums.data_ptr<float>() : nullptr;
  args.query = q.data_ptr();
  args.k_cache = k_cache.data_ptr();
  args.v_cache = v_cache.data_ptr();
  args.block_tables = tables.data_ptr<int>();
  args.context_lens = lens.data_ptr<int>();
  args.num_seqs = num_seqs;
  args.num_heads = num_heads;
  args.num_kv_heads = static_cast<int>(k_cache.size(2));
  args.head_size = head_size;
  args.block_size = block_size;
  args.max_blocks_per_seq = static_cast<int>(tables.size(1));
  args.max_context_len = max_len;
  args.q_stride = q.stride(0);
  args.scale = static_cast<float>(scale);
  args.version = resolved;
  args.dtype = kernel_dtype(q);
  check(benchctl::launch_paged_attention(args, c10::cuda::getCurrentCUDAStream()));
  return out;
}

// x (..., 2*d) -> (..., d).
at::Tensor silu_and_mul(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), "silu_and_mul: x must be on a CUDA device");
  const int64_t d = x.size(-1) / 2;
  const at::Tensor x2 = x.reshape({-1, 2 * d});
  const at::Tensor rows = x2.stride(1) == 1 ? x2 : x2.contiguous();
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = d;
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty(out_shape, x.options());
  check(benchctl::launch_silu_and_mul(kernel_dtype(x), y.data_ptr(), rows.data_ptr(), static_cast<int>(rows.size(0)),
                                      static_cast<int>(d), rows.stride(0), c10::cuda::getCurrentCUDAStream()));
  return y;
}

// x (..., hidden), weight (hidden,) of x's dtype -> (..., hidden).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_cuda_same_dtype(x, weight, "rms_norm");
  const int64_t hidden = x.size(-1);
  TORCH_CHECK(weight.numel() == hidden, "rms_norm: weight has ", weight.numel(), " elements, x rows ", hidden);
  const at::Tensor x2 = x.reshape({-1, hidden});
  const at::Tensor rows = x2.stride(1) == 1 ? x2 : x2.contiguous();
  const at::Tensor w = weight.contiguous();
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());
  check(benchctl::launch_rms_norm(kernel_dtype(x), y.data_ptr(), rows.data_ptr(), w.data_ptr(),
                                  static_cast<int>(rows.size(0)), static_cast<int>(hidden), rows.stride(0),
                                  static_cast<float>(eps), c10::cuda::getCurrentCUDAStream()));
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "benchctl reference_engine CUDA kernels (see reference_engine/kernels/cuda_ops.py)";
  m.def("reshape_and_cache", &reshape_and_cache, "scatter K/V rows into the paged cache by slot");
  m.def("paged_attention", &paged_attention, "paged decode attention (version 0 = auto, 1, 2)");
  m.def("silu_and_mul", &silu_and_mul, "silu(x[..., :d]) * x[..., d:]");
  m.def("rms_norm", &rms_norm, "RMSNorm in fp32, HF rounding");
}
