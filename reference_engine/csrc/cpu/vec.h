// The SIMD layer the CPU kernels are written against once: F is kLanes floats (16 on AVX-512, 8 on AVX2 + FMA +
// F16C), I the same lanes as int32, Mask a per-lane condition. The ISA is whatever the compiler targets
// (-march=native, narrowed by the loader's flags); without AVX2 + FMA + F16C CPU_OPS_SIMD is 0 and the kernels take
// their plain C++ loops, the readable reference of every vector path.
//
// Own header rather than ATen's at::vec::Vectorized: the kernels need masked tails, a multiply and an add that are
// never fused into an FMA (the GGUF expansion's contract), and an exp whose every lane is the scalar vexp's formula;
// Vectorized gives none of these directly and its exp is Sleef's (another formula, another library to link).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#define CPU_OPS_SIMD 512
#define CPU_OPS_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_OPS_SIMD 256
#define CPU_OPS_ISA "avx2"
#else
#define CPU_OPS_SIMD 0
#define CPU_OPS_ISA "scalar"
#endif

#if CPU_OPS_SIMD
#include <immintrin.h>

namespace vec {

#if CPU_OPS_SIMD == 512
constexpr int kLanes = 16;
constexpr int kRegisters = 32;  // zmm0-31
using F = __m512;
using I = __m512i;
using Mask = __mmask16;

inline F load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, F v) { _mm512_storeu_ps(p, v); }
inline F set1(float x) { return _mm512_set1_ps(x); }
inline F zero() { return _mm512_setzero_ps(); }
inline F add(F a, F b) { return _mm512_add_ps(a, b); }
inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
inline F div(F a, F b) { return _mm512_div_ps(a, b); }
inline F max(F a, F b) { return _mm512_max_ps(a, b); }
inline F min(F a, F b) { return _mm512_min_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c, one rounding
inline F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a * b, one rounding
inline F floor(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
// a * b and a + b rounded each on its own: the rounding-mode forms are never contracted into an FMA
inline F mul_rounded(F a, F b) { return _mm512_mul_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline F add_rounded(F a, F b) { return _mm512_add_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline float reduce_add(F v) { return _mm512_reduce_add_ps(v); }
inline float reduce_max(F v) { return _mm512_reduce_max_ps(v); }

inline Mask first(int64_t n) {  // lanes [0, n), n clamped to [0, kLanes]
  return n <= 0 ? 0 : (n >= kLanes ? static_cast<Mask>(0xFFFF) : static_cast<Mask>((1u << n) - 1));
}
inline F load_first(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(first(n), p); }  // 0 past n
inline void store_first(float* p, F v, int64_t n) { _mm512_mask_storeu_ps(p, first(n), v); }

inline Mask greater(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline Mask equal(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
inline Mask is_nan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
inline Mask either(Mask a, Mask b) { return a | b; }
inline bool any(Mask m) { return m != 0; }
inline bool lane(Mask m, int j) { return (m >> j) & 1; }
inline F select(Mask m, F if_true, F if_false) { return _mm512_mask_mov_ps(if_false, m, if_true); }
inline I select(Mask m, I if_true, I if_false) { return _mm512_mask_mov_epi32(if_false, m, if_true); }

inline I iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
inline I set1i(int32_t x) { return _mm512_set1_epi32(x); }
inline I addi(I a, I b) { return _mm512_add_epi32(a, b); }
inline I andi(I a, I b) { return _mm512_and_si512(a, b); }
inline I shift_right(I a, int n) { return _mm512_srli_epi32(a, n); }
inline I shift_left(I a, int n) { return _mm512_slli_epi32(a, n); }
inline I to_int(F a) { return _mm512_cvtps_epi32(a); }  // round to nearest
inline F to_float(I a) { return _mm512_cvtepi32_ps(a); }
inline F bits_to_float(I a) { return _mm512_castsi512_ps(a); }
inline void storei(int32_t* p, I v) { _mm512_storeu_si512(p, v); }
// kLanes float16 (raw bits), uint8 or int8 values from p, widened
inline F load_half(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline I load_u8(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline I load_i8(const int8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// lane j of the result = the sum of v[j]'s lanes: 16 horizontal sums in 45 shuffles and adds (one each would take
// ~8 instructions and a serial chain); halves, then quarters, then pairs are folded across the vectors
inline F lane_sums(const F* v) {
  F a[8], b[4];
  for (int i = 0; i < 8; ++i)  // quarters of a[i]: v[2i] (x2), v[2i+1] (x2)
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 4; ++i)  // quarter k of b[i]: four partial sums of v[4i+k]
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  const F c0 = _mm512_add_ps(_mm512_unpacklo_ps(b[0], b[1]), _mm512_unpackhi_ps(b[0], b[1]));
  const F c1 = _mm512_add_ps(_mm512_unpacklo_ps(b[2], b[3]), _mm512_unpackhi_ps(b[2], b[3]));
  const F d = _mm512_add_ps(  // lane 4k+i: the sum of v[4i+k]
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(c0), _mm512_castps_pd(c1))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(c0), _mm512_castps_pd(c1))));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), d);
}

#else  // AVX2 + FMA + F16C
constexpr int kLanes = 8;
constexpr int kRegisters = 16;  // ymm0-15
using F = __m256;
using I = __m256i;
using Mask = __m256;  // all ones in a lane where true

inline F load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, F v) { _mm256_storeu_ps(p, v); }
inline F set1(float x) { return _mm256_set1_ps(x); }
inline F zero() { return _mm256_setzero_ps(); }
inline F add(F a, F b) { return _mm256_add_ps(a, b); }
inline F sub(F a, F b) { return _mm256_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
inline F div(F a, F b) { return _mm256_div_ps(a, b); }
inline F max(F a, F b) { return _mm256_max_ps(a, b); }
inline F min(F a, F b) { return _mm256_min_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
inline F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
inline F floor(F a) { return _mm256_floor_ps(a); }
// GCC writes _mm256_mul_ps and _mm256_add_ps as plain vector arithmetic, which it may fuse into an FMA: the empty
// asm makes the product opaque, so it is rounded on its own before the add
inline F mul_rounded(F a, F b) {
  F p = _mm256_mul_ps(a, b);
  asm("" : "+x"(p));
  return p;
}
inline F add_rounded(F a, F b) {
  asm("" : "+x"(a), "+x"(b));
  return _mm256_add_ps(a, b);
}
inline float reduce_add(F v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
inline float reduce_max(F v) {
  const __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(q, _mm_movehdup_ps(q)));
}

inline I iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
inline I first(int64_t n) {  // lanes [0, n) all ones, n clamped to [0, kLanes]
  const int32_t c = static_cast<int32_t>(n < 0 ? 0 : (n > kLanes ? kLanes : n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), iota());
}
inline F load_first(const float* p, int64_t n) { return _mm256_maskload_ps(p, first(n)); }
inline void store_first(float* p, F v, int64_t n) { _mm256_maskstore_ps(p, first(n), v); }

inline Mask greater(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline Mask equal(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
inline Mask is_nan(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
inline Mask either(Mask a, Mask b) { return _mm256_or_ps(a, b); }
inline bool any(Mask m) { return _mm256_movemask_ps(m) != 0; }
inline bool lane(Mask m, int j) { return (_mm256_movemask_ps(m) >> j) & 1; }
inline F select(Mask m, F if_true, F if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
inline I select(Mask m, I if_true, I if_false) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(if_false), _mm256_castsi256_ps(if_true), m));
}

inline I set1i(int32_t x) { return _mm256_set1_epi32(x); }
inline I addi(I a, I b) { return _mm256_add_epi32(a, b); }
inline I andi(I a, I b) { return _mm256_and_si256(a, b); }
inline I shift_right(I a, int n) { return _mm256_srli_epi32(a, n); }
inline I shift_left(I a, int n) { return _mm256_slli_epi32(a, n); }
inline I to_int(F a) { return _mm256_cvtps_epi32(a); }
inline F to_float(I a) { return _mm256_cvtepi32_ps(a); }
inline F bits_to_float(I a) { return _mm256_castsi256_ps(a); }
inline void storei(int32_t* p, I v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
inline F load_half(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline I load_u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline I load_i8(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// lane j of the result = the sum of v[j]'s 8 lanes: pairs, then quads within each 128-bit half, then the halves
inline F lane_sums(const F* v) {
  const F a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));  // v0..v3 per half
  const F b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));  // v4..v7 per half
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}
#endif

inline void prefetch_l1(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
inline void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

// The scalar vexp's steps (cpu_ops.cpp) on every lane: x = n ln2 + r, a degree-6 polynomial for e^r, 2^n from bits.
inline F exp(F x) {
  x = min(max(x, set1(-87.33654f)), set1(88.72283f));
  const F n = floor(fmadd(x, set1(1.44269504088896341f), set1(0.5f)));
  const F r = fmadd(n, set1(2.12194440e-4f), fnmadd(n, set1(0.693359375f), x));
  F p = set1(1.9875691500e-4f);
  p = fmadd(p, r, set1(1.3981999507e-3f));
  p = fmadd(p, r, set1(8.3334519073e-3f));
  p = fmadd(p, r, set1(4.1665795894e-2f));
  p = fmadd(p, r, set1(1.6666665459e-1f));
  p = fmadd(p, r, set1(5.0000001201e-1f));
  p = fmadd(mul(p, r), r, add(r, set1(1.0f)));
  return mul(p, bits_to_float(shift_left(addi(to_int(n), set1i(127)), 23)));
}

}  // namespace vec
#endif  // CPU_OPS_SIMD
