// CPU kernels of the reference engine: paged decode attention read in place from the block table, the fused
// elementwise ops (RMSNorm, SiLU-and-mul, RoPE), the projection GEMM of every step (packed_linear, and
// block_packed_linear over GGUF blocks for small ones) and greedy sampling's argmax. Built on first use by
// reference_engine/kernels/cpu_ops.py with torch.utils.cpp_extension (-O3 -march=native, narrowed to one ISA path,
// -fopenmp); threads come from torch's intra-op pool (at::parallel_for, OpenMP in torch's CPU builds: without
// -fopenmp it would silently run on one thread).
//
// Vector code is written once against vec.h (16 lanes on AVX-512, 8 on AVX2 + FMA); where CPU_OPS_SIMD is 0 each
// kernel runs its plain loops, which are also the readable statement of what the vector code computes.
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
#include <atomic>
#include <numeric>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "vec.h"

namespace {

// exp(x) for float, written so that a `#pragma omp simd` loop vectorizes it (std::exp does not without
// -ffast-math): Cephes' expf, x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, 2^n from the bits.
// Within 2 ulp of std::exp over the clamped range; -inf/-large give 0 (smallest normal * ~0), +large saturate.
// vec::exp is the same steps on every lane (GCC vectorizes neither the floor nor the bit cast of this one).
inline float vexp(float x) {
  x = std::min(std::max(x, -87.33654f), 88.72283f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// sc[t] = vexp(sc[t] - m) for t < len; returns their sum.
inline float exp_shifted_sum(float* sc, int64_t len, float m) {
  float sum = 0.f;
  int64_t t = 0;
#if CPU_OPS_SIMD
  vec::F vsum = vec::zero();
  const vec::F vm = vec::set1(m);
  for (; t + vec::kLanes <= len; t += vec::kLanes) {
    const vec::F e = vec::exp(vec::sub(vec::load(sc + t), vm));
    vec::store(sc + t, e);
    vsum = vec::add(vsum, e);
  }
  sum = vec::reduce_add(vsum);
#endif
  for (; t < len; ++t) {
    sc[t] = vexp(sc[t] - m);
    sum += sc[t];
  }
  return sum;
}

// The attention's tasks (unit u, KV-head range) in the order threads take them: the costliest first, each thread
// taking the next when it finishes one. at::parallel_for's equal counts left threads waiting at the barrier, the
// sequences of a decode batch differing in length (W: 32 to 512 tokens).
std::vector<int64_t> costliest_first(const std::vector<int64_t>& cost, int64_t tasks_per_unit) {
  std::vector<int64_t> order(cost.size() * tasks_per_unit);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cost[a / tasks_per_unit] > cost[b / tasks_per_unit]; });
  return order;
}

// worker(take) on each of torch's threads; take() returns the next task index (>= total: none left).
template <typename Worker>
void parallel_dynamic(int64_t total, const Worker& worker) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), total));
  // one index per thread; called inline (one call, all indices) inside another parallel region
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) { worker([&] { return next.fetch_add(1); }); });
}

// kD = head_dim and kG = query heads per KV head when known at compile time (the loops then unroll); 0 = read at
// run time.
template <typename T, int64_t kD, int64_t kG>
void paged_attention_impl(const torch::Tensor& query, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                          const torch::Tensor& block_tables, const torch::Tensor& context_lens, float scale,
                          torch::Tensor& out) {
  const int64_t S = query.size(0), H = query.size(1);
  const int64_t B = k_cache.size(1), Hkv = k_cache.size(2), M = block_tables.size(1);
  const int64_t D = kD > 0 ? kD : query.size(2);
  const int64_t G = kG > 0 ? kG : H / Hkv;
  const T* q_ptr = query.data_ptr<T>();
  const T* k_ptr = k_cache.data_ptr<T>();
  const T* v_ptr = v_cache.data_ptr<T>();
  const int32_t* tables = block_tables.data_ptr<int32_t>();
  const int32_t* lens = context_lens.data_ptr<int32_t>();
  T* o_ptr = out.data_ptr<T>();
  const int64_t token_stride = Hkv * D;  // between consecutive slots of the cache
  const int64_t block_stride = B * token_stride;
  // A task is one sequence and a range of its KV heads. All heads when there are enough sequences to keep every
  // thread busy: a token's K (or V) row is then one contiguous read of Hkv*D values, which is what memory
  // bandwidth rewards (one head per task strides through the cache and runs ~1.5x slower). Few sequences are
  // split by head so that every thread still gets work.
  const int64_t heads_per_task = S >= 2 * at::get_num_threads() ? Hkv : 1;
  const int64_t tasks_per_seq = Hkv / heads_per_task;

  const std::vector<int64_t> order = costliest_first(std::vector<int64_t>(lens, lens + S), tasks_per_seq);
  const int64_t total = S * tasks_per_seq;
  parallel_dynamic(total, [&](const auto& take) {
    const int64_t rows = heads_per_task * G;  // query rows of a task
    std::vector<float> q(rows * D), acc(rows * D), scores, row_sum(rows);
    for (int64_t taken = take(); taken < total; taken = take()) {
      const int64_t task = order[taken];
      const int64_t s = task / tasks_per_seq, kv0 = (task % tasks_per_seq) * heads_per_task;
      const int64_t len = lens[s];
      const int32_t* table = tables + s * M;
      const int64_t num_blocks = (len + B - 1) / B;
      const T* q_rows = q_ptr + (s * H + kv0 * G) * D;  // the task's query heads are consecutive
      for (int64_t i = 0; i < rows * D; ++i) q[i] = static_cast<float>(q_rows[i]) * scale;
      scores.resize(rows * len);
      // pass 1: scores[r][t] = q_r . k_t, r = (kv head - kv0) * G + g
      for (int64_t b = 0, t = 0; b < num_blocks; ++b) {
        const T* k_block = k_ptr + table[b] * block_stride + kv0 * D;
        const int64_t n = std::min(B, len - b * B);
        for (int64_t j = 0; j < n; ++j, ++t) {
          const T* k_row = k_block + j * token_stride;
          for (int64_t h = 0; h < heads_per_task; ++h) {
            const T* k = k_row + h * D;
            for (int64_t g = 0; g < G; ++g) {
              const int64_t r = h * G + g;
              const float* qr = q.data() + r * D;
              float dot = 0.f;
#pragma omp simd reduction(+ : dot)
              for (int64_t i = 0; i < D; ++i) dot = std::fma(qr[i], static_cast<float>(k[i]), dot);
              scores[r * len + t] = dot;
            }
          }
        }
      }
      // softmax numerators exp(score - max) and their sums, per query row
      for (int64_t r = 0; r < rows; ++r) {
        float* sc = scores.data() + r * len;
        float m = sc[0];
#pragma omp simd reduction(max : m)
        for (int64_t t = 0; t < len; ++t) m = std::max(m, sc[t]);
        row_sum[r] = exp_shifted_sum(sc, len, m);
      }
      // pass 2: acc_r = sum_t p[r][t] * v_t
      float* a = acc.data();
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t b = 0, t = 0; b < num_blocks; ++b) {
        const T* v_block = v_ptr + table[b] * block_stride + kv0 * D;
        const int64_t n = std::min(B, len - b * B);
        for (int64_t j = 0; j < n; ++j, ++t) {
          const T* v_row = v_block + j * token_stride;
          for (int64_t h = 0; h < heads_per_task; ++h) {
            const T* v = v_row + h * D;
            for (int64_t g = 0; g < G; ++g) {
              const int64_t r = h * G + g;
              const float p = scores[r * len + t];
              float* ar = a + r * D;
#pragma omp simd
              for (int64_t i = 0; i < D; ++i) ar[i] = std::fma(p, static_cast<float>(v[i]), ar[i]);
            }
          }
        }
      }
      T* o_rows = o_ptr + (s * H + kv0 * G) * D;
      for (int64_t r = 0; r < rows; ++r) {
        const float inv = 1.f / row_sum[r];
        for (int64_t i = 0; i < D; ++i) o_rows[r * D + i] = static_cast<T>(a[r * D + i] * inv);
      }
    }
  });
}

#if CPU_OPS_SIMD
// Each token's K and V rows are prefetched into L1 this many tokens ahead of their use (out of cache the kernel
// waits on the reads; 8 was the best of 4-32 on the Xeon, and no distance mattered on Zen 4: docs/performance.md).
constexpr int64_t kPrefetchTokens = 8;

// Query rows that read the same blocks: a sequence's decode token and its draft tokens, or the tokens of its prefill
// chunk (model_runner gives each its own row, block table and context length). Consecutive rows whose block tables
// agree over the blocks the longest of them reads are answered together, so their K and V come from memory once
// (without it, n-gram drafts re-read every sequence's cache once per draft row).
constexpr int64_t kMaxGroupRows = 16;
// A context longer than this is scored in parts of this many tokens, merged after (the partial maxima, exp-sums and
// outputs, as flash-decoding does): the parts are tasks of their own, so a few long sequences still give every thread
// work with all KV heads read per task (contiguous rows) instead of one head each (strided). Fixed, not chosen per
// batch, so that a sequence's result never depends on the rest of the batch; contexts up to it are computed whole.
constexpr int64_t kPartitionTokens = 1024;
struct RowGroup {
  int64_t first, count, len;  // rows first..first+count-1; len: the longest context among them
};

std::vector<RowGroup> group_rows(const int32_t* tables, const int32_t* lens, int64_t S, int64_t M, int64_t B) {
  std::vector<RowGroup> groups;
  for (int64_t s = 0; s < S;) {
    RowGroup g{s, 1, lens[s]};
    for (int64_t r = s + 1; r < S && g.count < kMaxGroupRows; ++r, ++g.count) {
      const int64_t len = std::max<int64_t>(g.len, lens[r]);
      // row s's table is the group's: it must hold every block any member reads (a longer member's blocks too)
      if (std::memcmp(tables + s * M, tables + r * M, (len + B - 1) / B * sizeof(int32_t)) != 0) break;
      g.len = len;
    }
    groups.push_back(g);
    s += g.count;
  }
  return groups;
}

// Vectors of a head's output pass 2 keeps in registers at once: all kV when rows * kV accumulators fit beside a
// broadcast and a V vector, else the largest part of the head that does (AVX2 at D=64, G=3: 4 of 8).
constexpr int64_t output_slice(int64_t vectors, int64_t rows) {
  int64_t s = vectors;
  while (s > 1 && (rows * s + 2 > vec::kRegisters || vectors % s != 0)) --s;
  return s;
}

// paged_attention_impl for float32, the same two passes restructured so nothing waits on a horizontal sum: pass 1
// scores kLanes tokens at a time (one partial-product vector per token, folded by vec::lane_sums), pass 2 keeps
// each query row's output in registers across a chunk of tokens. A chunk's K (or V) rows are read from memory
// once, for the task's first head, and from L1 for the others.
template <int64_t kD, int64_t kG>
void paged_attention_f32(const torch::Tensor& query, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                         const torch::Tensor& block_tables, const torch::Tensor& context_lens, float scale,
                         torch::Tensor& out) {
  constexpr int64_t L = vec::kLanes;
  constexpr int64_t kV = kD / L;  // vectors per head
  constexpr int64_t kChunk = L;  // tokens scored together
  constexpr int64_t kSlice = output_slice(kV, kG);
  const int64_t S = query.size(0), H = query.size(1);
  const int64_t B = k_cache.size(1), Hkv = k_cache.size(2), M = block_tables.size(1);
  const float* q_ptr = query.data_ptr<float>();
  const float* k_ptr = k_cache.data_ptr<float>();
  const float* v_ptr = v_cache.data_ptr<float>();
  const int32_t* tables = block_tables.data_ptr<int32_t>();
  const int32_t* lens = context_lens.data_ptr<int32_t>();
  float* o_ptr = out.data_ptr<float>();
  const int64_t token_stride = Hkv * kD, block_stride = B * token_stride;
  const std::vector<RowGroup> groups = group_rows(tables, lens, S, M, B);
  // A unit of work is a group's tokens [begin, end): the whole context, or one kPartitionTokens part of a longer one.
  struct Unit {
    int64_t group, begin, end, scratch;  // scratch: where a part leaves its partial sums (-1: a whole context)
  };
  std::vector<Unit> units;
  int64_t scratch_rows = 0;
  for (int64_t u = 0; u < static_cast<int64_t>(groups.size()); ++u) {
    const int64_t len = groups[u].len;
    if (len <= kPartitionTokens) {
      units.push_back({u, 0, len, -1});
      continue;
    }
    for (int64_t b = 0; b < len; b += kPartitionTokens) {
      units.push_back({u, b, std::min(len, b + kPartitionTokens), scratch_rows});
      scratch_rows += groups[u].count * H;
    }
  }
  // per part and query row: the scores' max, the sum of exp(score - max), and the unnormalized output (D)
  std::vector<float> scratch(scratch_rows * (kD + 2));
  const int64_t U = static_cast<int64_t>(units.size());
  const int64_t heads_per_task = U >= 2 * at::get_num_threads() ? Hkv : 1;  // as in paged_attention_impl
  const int64_t tasks_per_unit = Hkv / heads_per_task;
  std::vector<int64_t> cost(U);  // reads (tokens) plus each member's arithmetic (~ tokens / 4 by the kernel's timings)
  for (int64_t u = 0; u < U; ++u) cost[u] = (units[u].end - units[u].begin) * (4 + groups[units[u].group].count);

  const std::vector<int64_t> order = costliest_first(cost, tasks_per_unit);
  const int64_t total = U * tasks_per_unit;
  parallel_dynamic(total, [&](const auto& take) {
    std::vector<float> q, acc, scores, row_sum, row_max;
    std::vector<int64_t> offsets;  // of each token's row in the caches
    for (int64_t taken = take(); taken < total; taken = take()) {
      const int64_t task = order[taken];
      const Unit& unit = units[task / tasks_per_unit];
      const RowGroup& grp = groups[unit.group];
      const int64_t kv0 = (task % tasks_per_unit) * heads_per_task;
      const int64_t begin = unit.begin, len = unit.end - unit.begin, members = grp.count;
      const int64_t per_member = heads_per_task * kG;  // query rows of one member
      const int64_t rows = members * per_member;  // row r = m * per_member + h * kG + g
      const int32_t* table = tables + grp.first * M;
      // member m's tokens in this unit: [0, own(m)) relative to begin (none when its context ends before)
      const auto own = [&](int64_t m) {
        return std::max<int64_t>(0, std::min<int64_t>(lens[grp.first + m] - begin, len));
      };
      q.resize(rows * kD);
      acc.assign(rows * kD, 0.f);
      row_sum.assign(rows, 0.f);
      row_max.assign(rows, -std::numeric_limits<float>::infinity());
      for (int64_t m = 0; m < members; ++m) {  // the member's query heads of this task are consecutive
        const float* q_rows = q_ptr + ((grp.first + m) * H + kv0 * kG) * kD;
        for (int64_t i = 0; i < per_member * kD; ++i) q[m * per_member * kD + i] = q_rows[i] * scale;
      }
      const int64_t padded = (len + kChunk - 1) / kChunk * kChunk;
      scores.resize(rows * padded);
      offsets.resize(padded);
      for (int64_t t = 0, b = begin / B, j = begin % B; t < len; ++b, j = 0)
        for (const int64_t base = table[b] * block_stride + kv0 * kD; j < B && t < len; ++j, ++t)
          offsets[t] = base + j * token_stride;
      std::fill(offsets.begin() + len, offsets.end(), offsets[len - 1]);  // the last token again: read, never used
      // the task's rows of token t, kPrefetchTokens ahead of their use, into L1 (16 floats: one cache line)
      const auto prefetch_rows = [&](const float* cache, int64_t t) {
        if (t < len)
          for (int64_t line = 0; line < heads_per_task * kD; line += 16) vec::prefetch_l1(cache + offsets[t] + line);
      };
      // pass 1: scores[r][t] = q_r . k_t for kChunk tokens at a time; a chunk's K rows come from memory for the
      // first query row and from L1 for the others
      for (int64_t t0 = 0; t0 < padded; t0 += kChunk) {
        for (int64_t j = 0; j < kChunk; ++j) prefetch_rows(k_ptr, t0 + j + kPrefetchTokens);
        for (int64_t h = 0; h < heads_per_task; ++h) {
          for (int64_t m = 0; m < members; ++m) {
            if (t0 >= own(m)) continue;  // past this member's context
            for (int64_t g = 0; g < kG; ++g) {
              const int64_t r = m * per_member + h * kG + g;
              vec::F qv[kV], part[kChunk];
              for (int64_t i = 0; i < kV; ++i) qv[i] = vec::load(q.data() + r * kD + L * i);
              for (int64_t j = 0; j < kChunk; ++j) {
                const float* k = k_ptr + offsets[t0 + j] + h * kD;
                vec::F p = vec::mul(qv[0], vec::load(k));
                for (int64_t i = 1; i < kV; ++i) p = vec::fmadd(qv[i], vec::load(k + L * i), p);
                part[j] = p;
              }
              vec::store(scores.data() + r * padded + t0, vec::lane_sums(part));
            }
          }
        }
      }
      // softmax numerators and their sums over each member's own tokens
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = own(r / per_member);
        if (n == 0) continue;  // row_max -inf, row_sum 0: this part adds nothing to the row
        float* sc = scores.data() + r * padded;
        const int64_t full = n / kChunk * kChunk;
        vec::F vmax = vec::set1(sc[0]);
        for (int64_t t = 0; t < full; t += kChunk) vmax = vec::max(vmax, vec::load(sc + t));
        float mx = vec::reduce_max(vmax);
        for (int64_t t = full; t < n; ++t) mx = std::max(mx, sc[t]);
        row_max[r] = mx;
        row_sum[r] = exp_shifted_sum(sc, n, mx);
      }
      // pass 2: acc_r = sum_t p[r][t] * v_t over the member's own tokens, a chunk of tokens per head with (a slice
      // of) the rows' outputs in registers; the chunk's V rows come from memory once
      for (int64_t t = 0; t < kPrefetchTokens; ++t) prefetch_rows(v_ptr, t);
      for (int64_t t0 = 0; t0 < len; t0 += kChunk) {
        for (int64_t j = 0; j < kChunk; ++j) prefetch_rows(v_ptr, t0 + j + kPrefetchTokens);
        for (int64_t h = 0; h < heads_per_task; ++h) {
          for (int64_t m = 0; m < members; ++m) {
            const int64_t n = std::min(kChunk, own(m) - t0);
            if (n <= 0) continue;
            float* acc_h = acc.data() + (m * per_member + h * kG) * kD;
            const float* p_h = scores.data() + (m * per_member + h * kG) * padded + t0;
            for (int64_t s0 = 0; s0 < kV; s0 += kSlice) {
              vec::F a[kG][kSlice];
              for (int64_t g = 0; g < kG; ++g)
                for (int64_t i = 0; i < kSlice; ++i) a[g][i] = vec::load(acc_h + g * kD + L * (s0 + i));
              for (int64_t j = 0; j < n; ++j) {
                const float* v = v_ptr + offsets[t0 + j] + h * kD + L * s0;
                vec::F vv[kSlice];
                for (int64_t i = 0; i < kSlice; ++i) vv[i] = vec::load(v + L * i);
                for (int64_t g = 0; g < kG; ++g) {
                  const vec::F p = vec::set1(p_h[g * padded + j]);
                  for (int64_t i = 0; i < kSlice; ++i) a[g][i] = vec::fmadd(p, vv[i], a[g][i]);
                }
              }
              for (int64_t g = 0; g < kG; ++g)
                for (int64_t i = 0; i < kSlice; ++i) vec::store(acc_h + g * kD + L * (s0 + i), a[g][i]);
            }
          }
        }
      }
      for (int64_t m = 0; m < members; ++m) {
        for (int64_t i = 0; i < per_member; ++i) {
          const int64_t r = m * per_member + i;
          if (unit.scratch >= 0) {  // a part: its partial sums, merged below
            float* part_out = scratch.data() + (unit.scratch + m * H + kv0 * kG + i) * (kD + 2);
            part_out[0] = row_max[r];
            part_out[1] = row_sum[r];
            std::memcpy(part_out + 2, acc.data() + r * kD, kD * sizeof(float));
            continue;
          }
          float* o_row = o_ptr + ((grp.first + m) * H + kv0 * kG + i) * kD;
          const vec::F inv = vec::set1(1.f / row_sum[r]);
          for (int64_t l = 0; l < kV; ++l)
            vec::store(o_row + L * l, vec::mul(vec::load(acc.data() + r * kD + L * l), inv));
        }
      }
    }
  });
  // The parts of a long context: out = sum_p acc_p e^(max_p - max) / sum_p sum_p e^(max_p - max), per query row.
  std::vector<int64_t> first_parts;  // the units that begin a partitioned group
  for (int64_t u = 0; u < U; ++u)
    if (units[u].scratch >= 0 && units[u].begin == 0) first_parts.push_back(u);
  at::parallel_for(0, static_cast<int64_t>(first_parts.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t f = lo; f < hi; ++f) {
      const int64_t u0 = first_parts[f];
      const RowGroup& grp = groups[units[u0].group];
      const int64_t parts = (grp.len + kPartitionTokens - 1) / kPartitionTokens;
      for (int64_t row = 0; row < grp.count * H; ++row) {
        float mx = -std::numeric_limits<float>::infinity(), sum = 0.f;
        for (int64_t p = 0; p < parts; ++p) mx = std::max(mx, scratch[(units[u0 + p].scratch + row) * (kD + 2)]);
        vec::F a[kV];
        for (int64_t i = 0; i < kV; ++i) a[i] = vec::zero();
        for (int64_t p = 0; p < parts; ++p) {
          const float* part = scratch.data() + (units[u0 + p].scratch + row) * (kD + 2);
          if (part[1] == 0.f) continue;  // the row's context ended before this part
          const float w = std::exp(part[0] - mx);
          sum += part[1] * w;
          for (int64_t i = 0; i < kV; ++i) a[i] = vec::fmadd(vec::set1(w), vec::load(part + 2 + L * i), a[i]);
        }
        const vec::F inv = vec::set1(1.f / sum);
        float* o_row = o_ptr + (grp.first * H + row) * kD;
        for (int64_t i = 0; i < kV; ++i) vec::store(o_row + L * i, vec::mul(a[i], inv));
      }
    }
  });
}
#endif

template <typename T, int64_t kD>
void dispatch_group(int64_t group, const torch::Tensor& query, const torch::Tensor& k_cache,
                    const torch::Tensor& v_cache, const torch::Tensor& block_tables, const torch::Tensor& context_lens,
                    float scale, torch::Tensor& out) {
  switch (group) {
#if CPU_OPS_SIMD
#define GROUP_CASE(g)                                                                                            \
  case g:                                                                                                        \
    if constexpr (std::is_same_v<T, float>)                                                                      \
      return paged_attention_f32<kD, g>(query, k_cache, v_cache, block_tables, context_lens, scale, out);        \
    return paged_attention_impl<T, kD, g>(query, k_cache, v_cache, block_tables, context_lens, scale, out);
#else
#define GROUP_CASE(g) \
  case g: return paged_attention_impl<T, kD, g>(query, k_cache, v_cache, block_tables, context_lens, scale, out);
#endif
    GROUP_CASE(1) GROUP_CASE(2) GROUP_CASE(3) GROUP_CASE(4) GROUP_CASE(6) GROUP_CASE(8)
#undef GROUP_CASE
    default: return paged_attention_impl<T, kD, 0>(query, k_cache, v_cache, block_tables, context_lens, scale, out);
  }
}

void check_cpu(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

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
  const float fscale = static_cast<float>(scale);
  const int64_t group = query.size(1) / k_cache.size(2);
  if (query.scalar_type() == torch::kFloat32 && (query.size(2) == 64 || query.size(2) == 128)) {
    const auto run = query.size(2) == 64 ? dispatch_group<float, 64> : dispatch_group<float, 128>;
    run(group, query, k_cache, v_cache, block_tables, context_lens, fscale, out);
  } else {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, query.scalar_type(), "paged_attention", [&] {
      paged_attention_impl<scalar_t, 0, 0>(query, k_cache, v_cache, block_tables, context_lens, fscale, out);
    });
  }
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
      float* orow = op + r * hidden;
      int64_t i = 0;
      float ss = 0.f;
#if CPU_OPS_SIMD
      vec::F vss = vec::zero();
      for (; i + vec::kLanes <= hidden; i += vec::kLanes) {
        const vec::F v = vec::load(xr + i);
        vss = vec::fmadd(v, v, vss);
      }
      ss = vec::reduce_add(vss);
#endif
      for (int64_t t = i; t < hidden; ++t) ss += xr[t] * xr[t];
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(hidden) + static_cast<float>(eps));
      i = 0;
#if CPU_OPS_SIMD
      const vec::F vinv = vec::set1(inv);
      for (; i + vec::kLanes <= hidden; i += vec::kLanes)
        vec::store(orow + i, vec::mul(vec::load(w + i), vec::mul(vec::load(xr + i), vinv)));
#endif
      for (; i < hidden; ++i) orow[i] = w[i] * (xr[i] * inv);
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
      int64_t i = 0;
#if CPU_OPS_SIMD
      const vec::F one = vec::set1(1.f);
      for (; i + vec::kLanes <= d; i += vec::kLanes) {
        const vec::F g = vec::load(gate + i);
        const vec::F e = vec::exp(vec::sub(vec::zero(), g));
        vec::store(o + i, vec::mul(vec::div(g, vec::add(one, e)), vec::load(up + i)));
      }
#endif
      for (; i < d; ++i) o[i] = gate[i] / (1.f + vexp(-gate[i])) * up[i];
    }
  });
  return out;
}

// Rotate-half RoPE in place on the first `num_heads` heads of qkv (T, heads, D), with cos_sin (T, 2, D) float32:
// x' = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[D/2:], x[:D/2]); within an ulp of the torch expression
// (a product and the sum are fused into one FMA).
void rotary_embedding(torch::Tensor qkv, torch::Tensor cos_sin, int64_t num_heads) {
  TORCH_CHECK(qkv.device().is_cpu() && qkv.scalar_type() == torch::kFloat32 && qkv.is_contiguous() && qkv.dim() == 3,
              "qkv must be a contiguous float32 CPU tensor (T, heads, D)");
  cos_sin = cos_sin.contiguous();
  TORCH_CHECK(cos_sin.scalar_type() == torch::kFloat32 && cos_sin.dim() == 3 && cos_sin.size(0) == qkv.size(0) &&
                  cos_sin.size(1) == 2 && cos_sin.size(2) == qkv.size(2),
              "cos_sin must be float32 (T, 2, D)");
  TORCH_CHECK(num_heads <= qkv.size(1) && qkv.size(2) % 2 == 0, "bad num_heads or odd head_dim");
  const int64_t T = qkv.size(0), heads = qkv.size(1), D = qkv.size(2), half = D / 2;
  float* x_ptr = qkv.data_ptr<float>();
  const float* cs = cos_sin.data_ptr<float>();
  at::parallel_for(0, T, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* c = cs + t * 2 * D;
      const float* sn = c + D;
      for (int64_t h = 0; h < num_heads; ++h) {
        float* x = x_ptr + (t * heads + h) * D;
        // the two halves are read before either is written, and x never overlaps cos_sin
        int64_t i = 0;
#if CPU_OPS_SIMD
        for (; i + vec::kLanes <= half; i += vec::kLanes) {
          const vec::F x0 = vec::load(x + i), x1 = vec::load(x + i + half);
          vec::store(x + i, vec::fnmadd(x1, vec::load(sn + i), vec::mul(x0, vec::load(c + i))));
          vec::store(x + i + half, vec::fmadd(x0, vec::load(sn + i + half), vec::mul(x1, vec::load(c + i + half))));
        }
#endif
        for (; i < half; ++i) {
          const float x0 = x[i], x1 = x[i + half];
          x[i] = x0 * c[i] - x1 * sn[i];
          x[i + half] = x1 * c[i + half] + x0 * sn[i + half];
        }
      }
    }
  });
}

// key/value (T, Hkv, D), each token's heads contiguous (a slice of the qkv projection is fine); caches
// (N, B, Hkv, D) contiguous; slot = block * B + offset, -1 = not written.
void reshape_and_cache(torch::Tensor key, torch::Tensor value, torch::Tensor k_cache, torch::Tensor v_cache,
                       torch::Tensor slot_mapping) {
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  TORCH_CHECK(key.scalar_type() == k_cache.scalar_type() && value.scalar_type() == v_cache.scalar_type(),
              "key/value and cache dtypes differ");
  const int64_t row = k_cache.size(2) * k_cache.size(3);  // Hkv * D values per slot
  for (auto* t : {&key, &value})
    if (t->stride(2) != 1 || t->stride(1) != t->size(2)) *t = t->contiguous();
  TORCH_CHECK(key.size(1) * key.size(2) == row && value.size(1) * value.size(2) == row, "head shapes differ");
  slot_mapping = slot_mapping.to(torch::kInt64).contiguous();
  const int64_t* slots = slot_mapping.data_ptr<int64_t>();
  const int64_t T = key.size(0), num_slots = k_cache.size(0) * k_cache.size(1);
  const int64_t item = key.element_size();
  char* kc = static_cast<char*>(k_cache.data_ptr());
  char* vc = static_cast<char*>(v_cache.data_ptr());
  const char* kp = static_cast<const char*>(key.data_ptr());
  const char* vp = static_cast<const char*>(value.data_ptr());
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = slots[t];
    if (slot < 0) continue;
    TORCH_CHECK(slot < num_slots, "slot ", slot, " is outside the cache");
    std::memcpy(kc + slot * row * item, kp + t * key.stride(0) * item, row * item);
    std::memcpy(vc + slot * row * item, vp + t * value.stride(0) * item, row * item);
  }
}

// y = x @ w.T with w packed into column panels: packed (P, K, 32), packed[p][k][j] = w[32p + j][k], zero past N
// (pack_panels in cpu_ops.py). At a decode step's few rows a projection is one pass over its weights and a GEMM
// library's per-call packing and blocking only get in the way; at a prefill's hundreds the FMAs take over. Each
// panel is one sequential stream; each k step loads a tile's weight vectors and multiplies them by one broadcast
// element of each of its rows of x (no horizontal sums). More rows run in near-equal blocks over the same panel,
// by then in L2. Threads split the panels.
constexpr int64_t kPanel = 32;
constexpr int64_t kPrefetch = 32;  // k steps (of 128 bytes) ahead: the hardware prefetcher alone kept too few in flight

// Register blocking per ISA: a tile is kTileRows rows x kTileVectors vectors of columns, its accumulators, weight
// vectors and the broadcast within the ISA's registers. AVX-512: 12 x 32 (24 + 2 + 1 of 32 zmm), the whole panel.
// AVX2: 6 x 16 (12 + 2 + 1 of 16 ymm; 4 or 5 rows ran 10-30% slower), the panel's two halves one after the other;
// up to kWideRows rows the tile spans the whole panel, so that a decode step streams each panel once.
#if CPU_OPS_SIMD == 512
constexpr int64_t kTileRows = 12, kTileVectors = 2, kWideRows = 12;
#elif CPU_OPS_SIMD == 256
constexpr int64_t kTileRows = 6, kTileVectors = 2, kWideRows = 3;
#else
constexpr int64_t kTileRows = 4;  // the plain loop's accumulators, 4 x 32 floats
#endif
constexpr int64_t kPanelRows = kTileRows;

#if CPU_OPS_SIMD
// A tile of kM rows and kV vectors of columns starting at `panel`'s first column (row stride kPanel); `cols` of
// them are real outputs (the last panel may have fewer than 32). `next`: this tile's share of the next panel
// (next_rows rows of 128 bytes), fetched into L2 one row every `every` k steps, so that with several row blocks the
// next panel arrives from memory spread over all of them instead of stalling the first block of every panel.
// `ldx`: x's row stride (K when x is whole; wider when K is a slice of its columns). `accumulate`: start from the
// sums already in y (a previous slice of k) instead of zero; the sums pass through memory unrounded (float32 both
// ways), so slicing k changes nothing in the result.
template <int64_t kM, int64_t kV>
void panel_tile(const float* __restrict x, int64_t ldx, int64_t K, const float* __restrict panel,
                float* __restrict y, int64_t N, int64_t cols, const float* next, int64_t next_rows, int64_t every,
                bool accumulate) {
  constexpr int64_t L = vec::kLanes;
  vec::F acc[kM][kV];
  for (int64_t m = 0; m < kM; ++m)
    for (int64_t i = 0; i < kV; ++i)
      acc[m][i] = accumulate ? vec::load_first(y + m * N + i * L, cols - i * L) : vec::zero();
  int64_t tick = 0, row = 0;
  for (int64_t k = 0; k < K; ++k) {
    if (next != nullptr && ++tick == every) {
      tick = 0;
      if (row < next_rows) {
        vec::prefetch_l2(next + row * kPanel);
        vec::prefetch_l2(next + row * kPanel + 16);
        ++row;
      }
    }
    // prefetching past the panel's end is harmless (prefetches never fault)
    for (int64_t c = 0; c < kV * L; c += 16) vec::prefetch_l1(panel + (k + kPrefetch) * kPanel + c);
    vec::F w[kV];
    for (int64_t i = 0; i < kV; ++i) w[i] = vec::load(panel + k * kPanel + i * L);
    for (int64_t m = 0; m < kM; ++m) {
      const vec::F xb = vec::set1(x[m * ldx + k]);
      for (int64_t i = 0; i < kV; ++i) acc[m][i] = vec::fmadd(w[i], xb, acc[m][i]);
    }
  }
  for (int64_t m = 0; m < kM; ++m)
    for (int64_t i = 0; i < kV; ++i) vec::store_first(y + m * N + i * L, acc[m][i], cols - i * L);
}

#else
// The same loop order in plain C++ (the compiler vectorizes j; no prefetching), the whole panel at once.
template <int64_t kM>
void panel_tile(const float* __restrict x, int64_t ldx, int64_t K, const float* __restrict panel,
                float* __restrict y, int64_t N, int64_t cols, bool accumulate) {
  float acc[kM][kPanel] = {};
  if (accumulate)
    for (int64_t m = 0; m < kM; ++m) std::memcpy(acc[m], y + m * N, cols * sizeof(float));
  for (int64_t k = 0; k < K; ++k) {
    const float* w = panel + k * kPanel;
    for (int64_t m = 0; m < kM; ++m) {
      const float xv = x[m * ldx + k];
#pragma omp simd
      for (int64_t j = 0; j < kPanel; ++j) acc[m][j] += w[j] * xv;
    }
  }
  for (int64_t m = 0; m < kM; ++m) std::memcpy(y + m * N, acc[m], cols * sizeof(float));
}
#endif

// `rows` (1..kPanelRows) rows of x over one panel: the tile of that height, over the whole panel or its slices.
template <int64_t kM = 1>
void panel_rows(int64_t rows, const float* x, int64_t ldx, int64_t K, const float* panel, float* y, int64_t N,
                int64_t cols, const float* next, int64_t next_rows, int64_t every, bool accumulate) {
  if constexpr (kM < kPanelRows) {
    if (rows != kM)
      return panel_rows<kM + 1>(rows, x, ldx, K, panel, y, N, cols, next, next_rows, every, accumulate);
  }
#if CPU_OPS_SIMD
  constexpr int64_t kWhole = kPanel / vec::kLanes;  // vectors across a panel
  if constexpr (kM <= kWideRows || kTileVectors == kWhole) {
    panel_tile<kM, kWhole>(x, ldx, K, panel, y, N, cols, next, next_rows, every, accumulate);
  } else {
    constexpr int64_t kSlices = kWhole / kTileVectors, kWidth = kTileVectors * vec::kLanes;
    for (int64_t s = 0; s < kSlices && s * kWidth < cols; ++s) {
      const int64_t r0 = next_rows * s / kSlices, r1 = next_rows * (s + 1) / kSlices;  // its share of `next`
      panel_tile<kM, kTileVectors>(x, ldx, K, panel + s * kWidth, y + s * kWidth, N, cols - s * kWidth,
                                   next ? next + r0 * kPanel : nullptr, r1 - r0, every * kSlices, accumulate);
    }
  }
#else
  panel_tile<kM>(x, ldx, K, panel, y, N, cols, accumulate);
#endif
}

// Rows go in chunks of at most kChunkRows, each chunk over every panel: a panel is then reused from L2 by the
// chunk's row blocks, and the chunk's rows stay in L2 across panels (one pass over all rows re-read each row from
// L3 for every panel once x outgrew L2). 128, 160 and 192 rows measured alike.
constexpr int64_t kChunkRows = 128;

torch::Tensor packed_linear(torch::Tensor x, torch::Tensor packed, int64_t N) {
  x = x.contiguous();
  TORCH_CHECK(packed.is_contiguous() && packed.dim() == 3 && packed.size(2) == kPanel,
              "packed must be a contiguous (panels, K, 32) tensor");
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && packed.scalar_type() == torch::kFloat32,
              "the CPU packed_linear takes float32 tensors");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(packed.data_ptr()) % 64 == 0, "packed must be 64-byte aligned");
  const int64_t M = x.size(0), K = x.size(1), P = packed.size(0);
  TORCH_CHECK(x.dim() == 2 && packed.size(1) == K, "x (M, K) and packed (P, K, 32) disagree on K");
  TORCH_CHECK(N > (P - 1) * kPanel && N <= P * kPanel, "N=", N, " does not match ", P, " panels");
  auto y = torch::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* wp = packed.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t c0 = 0; c0 < M; c0 += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, M - c0);
    const int64_t blocks = (rows + kPanelRows - 1) / kPanelRows;  // row blocks of near-equal size
    const float* xc = xp + c0 * K;
    float* yc = yp + c0 * N;
    at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t cols = std::min(kPanel, N - p * kPanel);
        // with one row block the panel is streamed at memory speed already (its own prefetch, 4 KiB ahead)
        const float* next = blocks > 1 && p + 1 < end ? wp + (p + 1) * K * kPanel : nullptr;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t m0 = rows * b / blocks, m1 = rows * (b + 1) / blocks;
          const int64_t r0 = K * b / blocks, r1 = K * (b + 1) / blocks;  // this block's share of the next panel
          panel_rows(m1 - m0, xc + m0 * K, K, K, wp + p * K * kPanel, yc + m0 * N + p * kPanel, N, cols,
                     next ? next + r0 * kPanel : nullptr, r1 - r0, blocks, false);
        }
      }
    });
  }
  return y;
}


// packed_linear over weights kept in their GGUF block formats, expanded to float32 a slice of a panel at a time. A GGUF
// checkpoint dequantized to float32 (what HF and the engine's safetensors hold) has every weight equal to a block
// formula in float32: Q4_1 w = d * q + m (q in 0..15; d, m float16), Q8_0 w = q * d (q int8). Computed here with the
// same two roundings (mul, then add: never an FMA, which rounds once), the panel holds exactly the float32 weights,
// and panel_tile multiplies them exactly as packed_linear does: the result is bit for bit packed_linear's. What
// changes is what a step streams from memory: 5 (Q4_1) or 8.5 (Q8_0) bits per weight instead of 32.
//
// Packed layout (pack_block_panels in cpu_ops.py): (P, K/32, bytes) uint8, one record per panel of 32 outputs and
// block of 32 inputs. Q4_1: d[32] and m[32] float16 (one per output), then 32 rows (k) of 16 bytes, byte j holding
// output j's q in its low nibble and output j+16's in its high nibble (640 bytes). Q8_0: d[32] float16, then 32 rows
// of 32 int8 (1088 bytes).
constexpr int64_t kQ4_1 = 0, kQ8_0 = 1;
constexpr int64_t kBlockK = 32;

int64_t block_record_bytes(int64_t format) { return format == kQ4_1 ? 640 : 1088; }

#if CPU_OPS_SIMD
constexpr int64_t kPrefetchRecords = 8;  // records ahead: the hardware prefetcher alone left the stream at ~9 GB/s

// The weights of outputs [c, c + kLanes) of a record's row k (0..31), given those outputs' d and m (Q4_1).
template <int64_t kFormat>
inline vec::F record_weights(const uint8_t* __restrict rec, int64_t k, int64_t c, vec::F d, vec::F m) {
  if constexpr (kFormat == kQ4_1) {  // byte j of a row: output j in its low nibble, output j + 16 in its high one
    const vec::I b = vec::load_u8(rec + 128 + k * 16 + c % 16);
    const vec::F q = vec::to_float(c < 16 ? vec::andi(b, vec::set1i(0x0F)) : vec::shift_right(b, 4));
    return vec::add_rounded(vec::mul_rounded(d, q), m);
  } else {
    return vec::mul_rounded(vec::to_float(vec::load_i8(reinterpret_cast<const int8_t*>(rec + 64) + k * 32 + c)), d);
  }
}

// The d (and m) vectors of outputs [c, c + kV * kLanes) of a record, and the prefetch of a later record.
template <int64_t kFormat, int64_t kV>
inline void record_scales(const uint8_t* __restrict rec, int64_t c, vec::F* d, vec::F* m) {
  constexpr int64_t bytes = kFormat == kQ4_1 ? 640 : 1088;
  for (int64_t line = 0; line < bytes; line += 64) vec::prefetch_l1(rec + kPrefetchRecords * bytes + line);
  for (int64_t i = 0; i < kV; ++i) {
    d[i] = vec::load_half(rec + 2 * (c + vec::kLanes * i));
    m[i] = kFormat == kQ4_1 ? vec::load_half(rec + 64 + 2 * (c + vec::kLanes * i)) : vec::zero();
  }
}

// One panel (K/32 records) -> out[k][32] float32.
template <int64_t kFormat>
void expand_panel(const uint8_t* __restrict rec, int64_t K, float* __restrict out) {
  constexpr int64_t L = vec::kLanes, kV = kPanel / L;  // vectors across a panel row
  constexpr int64_t bytes = kFormat == kQ4_1 ? 640 : 1088;
  for (int64_t kb = 0; kb < K / kBlockK; ++kb, rec += bytes) {
    vec::F d[kV], m[kV];
    record_scales<kFormat, kV>(rec, 0, d, m);
    float* o = out + kb * kBlockK * kPanel;
    for (int64_t k = 0; k < kBlockK; ++k)
      for (int64_t i = 0; i < kV; ++i)
        vec::store(o + k * kPanel + i * L, record_weights<kFormat>(rec, k, i * L, d[i], m[i]));
  }
}

void expand_panel(const uint8_t* rec, int64_t K, int64_t format, float* out) {
  return format == kQ4_1 ? expand_panel<kQ4_1>(rec, K, out) : expand_panel<kQ8_0>(rec, K, out);
}

// panel_tile with the weights taken from the panel's records (outputs [c, c + kV * kLanes), all K) instead of a
// float32 panel: each record row is expanded into registers and multiplied at once, never stored. The same weights
// and the same k-ordered FMAs, so the same bits; for one row block (more would each expand the records again).
template <int64_t kFormat, int64_t kM, int64_t kV>
void block_tile(const float* __restrict x, int64_t K, const uint8_t* __restrict rec, int64_t c, float* __restrict y,
                int64_t N, int64_t cols) {
  constexpr int64_t L = vec::kLanes;
  constexpr int64_t bytes = kFormat == kQ4_1 ? 640 : 1088;
  vec::F acc[kM][kV];
  for (int64_t r = 0; r < kM; ++r)
    for (int64_t i = 0; i < kV; ++i) acc[r][i] = vec::zero();
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK, rec += bytes) {
    vec::F d[kV], m[kV];
    record_scales<kFormat, kV>(rec, c, d, m);
    for (int64_t k = 0; k < kBlockK; ++k) {
      vec::F w[kV];
      for (int64_t i = 0; i < kV; ++i) w[i] = record_weights<kFormat>(rec, k, c + i * L, d[i], m[i]);
      for (int64_t r = 0; r < kM; ++r) {
        const vec::F xb = vec::set1(x[r * K + k0 + k]);
        for (int64_t i = 0; i < kV; ++i) acc[r][i] = vec::fmadd(w[i], xb, acc[r][i]);
      }
    }
  }
  for (int64_t r = 0; r < kM; ++r)
    for (int64_t i = 0; i < kV; ++i) vec::store_first(y + r * N + i * L, acc[r][i], cols - i * L);
}

// `rows` (1..kPanelRows) rows of x over one panel's records, tiled as panel_rows tiles them.
template <int64_t kFormat, int64_t kM = 1>
void block_rows(int64_t rows, const float* x, int64_t K, const uint8_t* rec, float* y, int64_t N, int64_t cols) {
  if constexpr (kM < kPanelRows) {
    if (rows != kM) return block_rows<kFormat, kM + 1>(rows, x, K, rec, y, N, cols);
  }
  constexpr int64_t kWhole = kPanel / vec::kLanes;
  if constexpr (kM <= kWideRows || kTileVectors == kWhole) {
    block_tile<kFormat, kM, kWhole>(x, K, rec, 0, y, N, cols);
  } else {
    constexpr int64_t kWidth = kTileVectors * vec::kLanes;
    for (int64_t c = 0; c < kPanel && c < cols; c += kWidth)
      block_tile<kFormat, kM, kTileVectors>(x, K, rec, c, y + c, N, cols - c);
  }
}
#else
float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

// The same formulas one weight at a time; fp-contract=off keeps d * q + m two roundings.
__attribute__((optimize("fp-contract=off"))) void expand_panel(const uint8_t* rec, int64_t K, int64_t format,
                                                                  float* out) {
  const int64_t bytes = block_record_bytes(format);
  for (int64_t kb = 0; kb < K / kBlockK; ++kb, rec += bytes) {
    float* o = out + kb * kBlockK * kPanel;
    for (int64_t j = 0; j < kPanel; ++j) {
      const float d = half_to_float(rec + 2 * j);
      for (int64_t k = 0; k < kBlockK; ++k) {
        if (format == kQ4_1) {
          const uint8_t b = rec[128 + k * 16 + j % 16];
          const float q = static_cast<float>(j < 16 ? b & 0x0F : b >> 4);
          const float dq = d * q;
          o[k * kPanel + j] = dq + half_to_float(rec + 64 + 2 * j);
        } else {
          o[k * kPanel + j] = static_cast<float>(reinterpret_cast<const int8_t*>(rec + 64)[k * 32 + j]) * d;
        }
      }
    }
  }
}
#endif

void check_block_panels(const torch::Tensor& packed, int64_t format, int64_t K) {
  TORCH_CHECK(format == kQ4_1 || format == kQ8_0, "format must be 0 (Q4_1) or 1 (Q8_0), got ", format);
  TORCH_CHECK(packed.is_contiguous() && packed.dim() == 3 && packed.scalar_type() == torch::kUInt8 &&
                  packed.size(2) == block_record_bytes(format),
              "packed must be a contiguous (panels, K/32, ", block_record_bytes(format), ") uint8 tensor");
  TORCH_CHECK(packed.size(1) * kBlockK == K, "x has K=", K, " inputs, packed has ", packed.size(1), " blocks of 32");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(packed.data_ptr()) % 64 == 0, "packed must be 64-byte aligned");
}

// A thread's float32 panel slice (K x 32), 64-byte aligned, kept between calls.
float* panel_buffer(int64_t K) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < K * kPanel + 16) buffer.resize(K * kPanel + 16);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(float);
}

// x (M, K) float32 @ w.T with w as pack_block_panels(w) in `format`; N outputs. Threads split the panels; each
// expands kExpandK rows of a panel at a time into its buffer and runs every row block over them while they are in
// L1 (a whole panel, 72-192 KiB, went through L2 twice: the expansion cost about what the smaller reads saved).
constexpr int64_t kExpandK = 128;  // 16 KiB of float32
torch::Tensor block_packed_linear(torch::Tensor x, torch::Tensor packed, int64_t N, int64_t format) {
  x = x.contiguous();
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 2,
              "block_packed_linear takes x as an (M, K) float32 CPU tensor");
  const int64_t M = x.size(0), K = x.size(1), P = packed.size(0);
  check_block_panels(packed, format, K);
  TORCH_CHECK(N > (P - 1) * kPanel && N <= P * kPanel, "N=", N, " does not match ", P, " panels");
  auto y = torch::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t blocks = (M + kPanelRows - 1) / kPanelRows, record = packed.size(2);
#if CPU_OPS_SIMD
  if (blocks == 1) {  // one row block: the tiles read the records themselves
    at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t cols = std::min(kPanel, N - p * kPanel);
        const uint8_t* rec = wp + p * K / kBlockK * record;
        if (format == kQ4_1) block_rows<kQ4_1>(M, xp, K, rec, yp + p * kPanel, N, cols);
        else block_rows<kQ8_0>(M, xp, K, rec, yp + p * kPanel, N, cols);
      }
    });
    return y;
  }
#endif
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    float* panel = panel_buffer(kExpandK);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t cols = std::min(kPanel, N - p * kPanel);
      for (int64_t k0 = 0; k0 < K; k0 += kExpandK) {
        const int64_t kc = std::min(kExpandK, K - k0);
        expand_panel(wp + (p * K + k0) / kBlockK * record, kc, format, panel);
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t m0 = M * b / blocks, m1 = M * (b + 1) / blocks;
          panel_rows(m1 - m0, xp + m0 * K + k0, K, kc, panel, yp + m0 * N + p * kPanel, N, cols, nullptr, 0, 1,
                     k0 > 0);
        }
      }
    }
  });
  return y;
}

// The float32 panels (P, K, 32) that block_packed_linear multiplies by: for checking them against pack_panels(w).
torch::Tensor expand_block_panels(torch::Tensor packed, int64_t format) {
  TORCH_CHECK(packed.dim() == 3, "packed must be (panels, K/32, bytes)");
  const int64_t P = packed.size(0), K = packed.size(1) * kBlockK;
  check_block_panels(packed, format, K);
  auto out = torch::empty({P, K, kPanel}, torch::kFloat32);
  TORCH_CHECK(reinterpret_cast<uintptr_t>(out.data_ptr()) % 64 == 0, "expected a 64-byte aligned allocation");
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  float* op = out.data_ptr<float>();
  const int64_t panel_bytes = packed.size(1) * packed.size(2);
  at::parallel_for(0, P, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) expand_panel(wp + p * panel_bytes, K, format, op + p * K * kPanel);
  });
  return out;
}

// Greedy sampling's argmax over each row of the logits (rows, vocab) float32: the first index of the row's maximum,
// a NaN counting as the maximum (torch.argmax's answer in every case), read once at memory speed (torch's CPU argmax
// was ~2.5% of a decode step). Each lane keeps its maximum and the first index that reached it (strictly greater
// replaces), then the lowest index among the lanes holding the row's maximum wins; a row with a NaN is answered by a
// scalar pass for its first NaN.
torch::Tensor argmax_rows(torch::Tensor logits) {
  TORCH_CHECK(logits.device().is_cpu() && logits.scalar_type() == torch::kFloat32 && logits.dim() == 2,
              "argmax_rows takes a (rows, vocab) float32 CPU tensor");
  TORCH_CHECK(logits.size(1) > 0, "argmax_rows: rows must not be empty");
  logits = logits.contiguous();
  const int64_t R = logits.size(0), V = logits.size(1);
  auto out = torch::empty({R}, logits.options().dtype(torch::kInt64));
  const float* xp = logits.data_ptr<float>();
  int64_t* op = out.data_ptr<int64_t>();
  at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = xp + r * V;
      int64_t best = 0, i = 1;
      bool nan = std::isnan(x[0]);
#if CPU_OPS_SIMD
      constexpr int64_t L = vec::kLanes;
      if (V >= 2 * L && V < (int64_t{1} << 31)) {
        vec::F vmax = vec::load(x);
        vec::I index = vec::iota(), at = index;
        const vec::I step = vec::set1i(L);
        vec::Mask nans = vec::is_nan(vmax);
        for (i = L; i + L <= V; i += L) {
          const vec::F v = vec::load(x + i);
          at = vec::addi(at, step);
          const vec::Mask greater = vec::greater(v, vmax);
          vmax = vec::select(greater, v, vmax);
          index = vec::select(greater, at, index);
          nans = vec::either(nans, vec::is_nan(v));
        }
        nan = vec::any(nans);
        if (!nan) {  // (with a NaN the lanes' maximum means nothing: the NaN pass below answers)
          const vec::Mask holders = vec::equal(vmax, vec::set1(vec::reduce_max(vmax)));
          int32_t lanes[L];
          vec::storei(lanes, index);
          best = std::numeric_limits<int32_t>::max();
          for (int j = 0; j < L; ++j)
            if (vec::lane(holders, j)) best = std::min<int64_t>(best, lanes[j]);
        }
      }
#endif
      for (; i < V; ++i) {
        nan = nan || std::isnan(x[i]);
        if (x[i] > x[best]) best = i;
      }
      if (nan) {
        best = 0;
        while (!std::isnan(x[best])) ++best;
      }
      op[r] = best;
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("isa", [] { return std::string(CPU_OPS_ISA); }, "the ISA path these kernels were compiled for");
  m.def("packed_linear", &packed_linear, "x @ w.T with w packed as (panels, K, 32) float32 (CPU)");
  m.def("block_packed_linear", &block_packed_linear,
        "x @ w.T with w packed as (panels, K/32, bytes) GGUF blocks, expanded to float32 per panel (CPU)");
  m.def("expand_block_panels", &expand_block_panels, "the float32 panels of block-packed weights (CPU)");
  m.def("rotary_embedding", &rotary_embedding, "rotate-half RoPE in place on the first heads of qkv (CPU)");
  m.def("reshape_and_cache", &reshape_and_cache, "write K/V rows into paged cache slots (CPU)");
  m.def("paged_attention", &paged_attention, "paged decode attention over a block table (CPU)");
  m.def("rms_norm", &rms_norm, "RMSNorm in float32 (CPU)");
  m.def("silu_and_mul", &silu_and_mul, "silu(gate) * up (CPU)");
  m.def("argmax_rows", &argmax_rows, "first index of each row's maximum, NaN counting as the maximum (CPU)");
}
