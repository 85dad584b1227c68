// CPU kernels of the reference engine: paged decode attention read in place from the block table, and the fused
// elementwise ops (RMSNorm, SiLU-and-mul). Built on first use by reference_engine/kernels/cpu_ops.py with
// torch.utils.cpp_extension (-O3 -march=native); threads come from torch's intra-op pool (at::parallel_for).
//
// Shapes as in reference_engine/kernels/reference.py: S seqs, T tokens, H heads, Hkv KV heads, D head_dim,
// N blocks, B block size, M blocks per sequence. The KV cache is NHD: k_cache[block][offset][kv_head][dim].
//
// Why a kernel: the torch path gathers every sequence's blocks into a padded (S, Hkv, M*B, D) copy per layer
// (index_select), then runs SDPA with a mask. Here each (sequence, KV head) task walks its own blocks once,
// computes the scores of the G = H / Hkv query heads that share the KV head (GQA: K and V are read once per group),
// and never touches padding.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

template <typename T>
inline float dot(const float* q, const T* k, int64_t d) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < d; ++i) acc += q[i] * static_cast<float>(k[i]);
  return acc;
}

template <typename T>
inline void axpy(float a, const T* v, float* out, int64_t d) {
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) out[i] += a * static_cast<float>(v[i]);
}

template <typename T>
void paged_attention_impl(const torch::Tensor& query, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                          const torch::Tensor& block_tables, const torch::Tensor& context_lens, float scale,
                          torch::Tensor& out) {
  const int64_t S = query.size(0), H = query.size(1), D = query.size(2);
  const int64_t B = k_cache.size(1), Hkv = k_cache.size(2), M = block_tables.size(1);
  const int64_t G = H / Hkv;
  const T* q_ptr = query.data_ptr<T>();
  const T* k_ptr = k_cache.data_ptr<T>();
  const T* v_ptr = v_cache.data_ptr<T>();
  const int32_t* tables = block_tables.data_ptr<int32_t>();
  const int32_t* lens = context_lens.data_ptr<int32_t>();
  T* o_ptr = out.data_ptr<T>();
  const int64_t token_stride = Hkv * D;  // between consecutive slots of the cache
  const int64_t block_stride = B * token_stride;

  // One task per (sequence, KV head); a task is a few microseconds, so tasks are grouped by at::parallel_for.
  at::parallel_for(0, S * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> q(G * D), acc(G * D), scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / Hkv, kvh = task % Hkv;
      const int64_t len = lens[s];
      const int32_t* table = tables + s * M;
      for (int64_t g = 0; g < G; ++g)  // the query rows of this group, scaled once, in fp32
        for (int64_t i = 0; i < D; ++i)
          q[g * D + i] = static_cast<float>(q_ptr[(s * H + kvh * G + g) * D + i]) * scale;
      scores.resize(G * len);
      // pass 1: scores[g][t] = q_g . k_t, and the running max per query row
      std::vector<float> row_max(G, -std::numeric_limits<float>::infinity());
      for (int64_t t = 0; t < len; ++t) {
        const T* k = k_ptr + table[t / B] * block_stride + (t % B) * token_stride + kvh * D;
        for (int64_t g = 0; g < G; ++g) {
          const float x = dot(q.data() + g * D, k, D);
          scores[g * len + t] = x;
          row_max[g] = std::max(row_max[g], x);
        }
      }
      // softmax weights (unnormalized) and their sums
      std::vector<float> row_sum(G, 0.f);
      for (int64_t g = 0; g < G; ++g) {
        float* sc = scores.data() + g * len;
        float sum = 0.f;
        for (int64_t t = 0; t < len; ++t) {
          sc[t] = std::exp(sc[t] - row_max[g]);
          sum += sc[t];
        }
        row_sum[g] = sum;
      }
      // pass 2: acc_g = sum_t p[g][t] * v_t
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < len; ++t) {
        const T* v = v_ptr + table[t / B] * block_stride + (t % B) * token_stride + kvh * D;
        for (int64_t g = 0; g < G; ++g) axpy(scores[g * len + t], v, acc.data() + g * D, D);
      }
      for (int64_t g = 0; g < G; ++g) {
        const float inv = 1.f / row_sum[g];
        T* o = o_ptr + (s * H + kvh * G + g) * D;
        for (int64_t i = 0; i < D; ++i) o[i] = static_cast<T>(acc[g * D + i] * inv);
      }
    }
  });
}

void check_cpu(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace

torch::Tensor paged_attention(torch::Tensor query, torch::Tensor k_cache, torch::Tensor v_cache,
                              torch::Tensor block_tables, torch::Tensor context_lens, double scale) {
  query = query.contiguous();
  for (auto* pair : {&k_cache, &v_cache}) check_cpu(*pair, "k_cache/v_cache");
  check_cpu(block_tables, "block_tables");
  check_cpu(context_lens, "context_lens");
  TORCH_CHECK(query.dim() == 3 && k_cache.dim() == 4, "query (S, H, D) and caches (N, B, Hkv, D) expected");
  TORCH_CHECK(block_tables.scalar_type() == torch::kInt32 && context_lens.scalar_type() == torch::kInt32,
              "block_tables and context_lens must be int32");
  TORCH_CHECK(query.scalar_type() == k_cache.scalar_type(), "query and cache dtypes differ");
  TORCH_CHECK(query.size(1) % k_cache.size(2) == 0, "num_heads must be a multiple of num_kv_heads");
  TORCH_CHECK(query.size(2) == k_cache.size(3), "head_dim of query and cache differ");
  auto out = torch::empty_like(query);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, query.scalar_type(), "paged_attention", [&] {
    paged_attention_impl<scalar_t>(query, k_cache, v_cache, block_tables, context_lens, static_cast<float>(scale),
                                   out);
  });
  return out;
}

torch::Tensor rms_norm(torch::Tensor x, torch::Tensor weight, double eps) {
  x = x.contiguous();
  weight = weight.contiguous();
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32,
              "the CPU rms_norm takes float32 tensors");
  const int64_t hidden = x.size(-1), rows = x.numel() / hidden;
  TORCH_CHECK(weight.numel() == hidden, "weight must have hidden elements");
  auto out = torch::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * hidden;
      float ss = 0.f;
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < hidden; ++i) ss += xr[i] * xr[i];
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(hidden) + static_cast<float>(eps));
      float* orow = op + r * hidden;
#pragma omp simd
      for (int64_t i = 0; i < hidden; ++i) orow[i] = w[i] * (xr[i] * inv);
    }
  });
  return out;
}

torch::Tensor silu_and_mul(torch::Tensor x) {
  x = x.contiguous();
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32, "the CPU silu_and_mul takes float32");
  const int64_t d = x.size(-1) / 2, rows = x.numel() / (2 * d);
  auto sizes = x.sizes().vec();
  sizes.back() = d;
  auto out = torch::empty(sizes, x.options());
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* gate = xp + r * 2 * d;
      const float* up = gate + d;
      float* o = op + r * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) o[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_attention", &paged_attention, "paged decode attention over a block table (CPU)");
  m.def("rms_norm", &rms_norm, "RMSNorm in float32 (CPU)");
  m.def("silu_and_mul", &silu_and_mul, "silu(gate) * up (CPU)");
}
