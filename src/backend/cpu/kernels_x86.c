/* x86 SIMD kernels: AVX2+FMA+F16C and AVX-512 (F, BW). Compiled with
 * per-function target attributes so the rest of the build stays generic;
 * selected at run time by CPUID (dispatch.c). Each is tested against the
 * scalar reference (tests/unit/test_kernels.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <cpuid.h>

#include "backend/cpu/qkernels.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

/* ---- AVX2 --------------------------------------------------------------- */

AVX2 float tl_avx2_dot_f32(const void *row, const float *x, int64_t n) {
  const float *w = row;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; i++) s += w[i] * x[i];
  return s;
}

AVX2 static inline __m256 ld_f16x8(const uint8_t *p) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AVX2 float tl_avx2_dot_f16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(ld_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(ld_f16x8(w + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), a1);
    a2 = _mm256_fmadd_ps(ld_f16x8(w + 2 * (i + 16)), _mm256_loadu_ps(x + i + 16), a2);
    a3 = _mm256_fmadd_ps(ld_f16x8(w + 2 * (i + 24)), _mm256_loadu_ps(x + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld_f16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; i++) s += tl_f16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return s;
}

AVX2 static inline __m256 ld_bf16x8(const uint8_t *p) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 float tl_avx2_dot_bf16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(ld_bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(ld_bf16x8(w + 2 * (i + 8)), _mm256_loadu_ps(x + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(ld_bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), a0);
  float s = hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; i++) s += tl_bf16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return s;
}

AVX2 static inline __m256 ld_i8x8(const int8_t *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

AVX2 static float avx2_dot_q8_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    const int8_t *qs = (const int8_t *)(b + 2);
    const float *xb = x + i * TL_QK8_0;
    __m256 s = _mm256_mul_ps(ld_i8x8(qs), _mm256_loadu_ps(xb));
    s = _mm256_fmadd_ps(ld_i8x8(qs + 8), _mm256_loadu_ps(xb + 8), s);
    s = _mm256_fmadd_ps(ld_i8x8(qs + 16), _mm256_loadu_ps(xb + 16), s);
    s = _mm256_fmadd_ps(ld_i8x8(qs + 24), _mm256_loadu_ps(xb + 24), s);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(tl_f16_to_f32(tl_rd_u16(b))), s, acc);
  }
  return hsum256(acc);
}

AVX2 static float avx2_dot_i8s(const int8_t *q, const float *scales, const float *x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t g = 0; g < n / TL_I8S_GROUP; g++, q += TL_I8S_GROUP, x += TL_I8S_GROUP) {
    __m256 s0 = _mm256_mul_ps(ld_i8x8(q), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(ld_i8x8(q + 8), _mm256_loadu_ps(x + 8));
    for (int j = 16; j < TL_I8S_GROUP; j += 16) {
      s0 = _mm256_fmadd_ps(ld_i8x8(q + j), _mm256_loadu_ps(x + j), s0);
      s1 = _mm256_fmadd_ps(ld_i8x8(q + j + 8), _mm256_loadu_ps(x + j + 8), s1);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / scales[g]), _mm256_add_ps(s0, s1), acc);
  }
  return hsum256(acc);
}

AVX2 static void avx2_axpy_f32(float a, const void *xv, float *y, int64_t n) {
  const float *x = xv;
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static void avx2_axpy_f16(float a, const void *xv, float *y, int64_t n) {
  const uint8_t *x = xv;
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, ld_f16x8(x + 2 * i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * tl_f16_to_f32(tl_rd_u16(x + 2 * i));
}

/* ---- AVX-512 -------------------------------------------------------------- */

/* The sum of v's lanes in a fixed order: the 256-bit halves, the 128-bit
 * halves, lanes (0, 2) and (1, 3), then those two (the order of GCC's
 * _mm512_reduce_add_ps, written out so that it does not depend on the
 * compiler: attn_x86.c makes the same additions for 8 vectors at once). */
AVX512 static inline float hsum512(__m512 v) {
  const __m256 t3 = _mm256_add_ps(_mm512_castps512_ps256(v),
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 t6 = _mm_add_ps(_mm256_castps256_ps128(t3), _mm256_extractf128_ps(t3, 1));
  const __m128 t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
  return _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)));
}

AVX512 static float avx512_dot_f32(const void *row, const float *x, int64_t n) {
  const float *w = row;
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
  }
  if (i < n) { /* masked tail */
    for (; i < n; i += 16) {
      __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a0);
    }
  }
  return hsum512(_mm512_add_ps(a0, a1));
}

AVX512 static float avx512_dot_f16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * i))),
                         _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * i + 32))),
                         _mm512_loadu_ps(x + i + 16), a1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * i));
    a0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + i), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

AVX512 static float avx512_dot_bf16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  __m512 a0 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w + 2 * i));
    __m512 wv = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    a0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + i), a0);
  }
  return _mm512_reduce_add_ps(a0);
}

AVX512 static float avx512_dot_i8s(const int8_t *q, const float *scales, const float *x,
                                   int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < n / TL_I8S_GROUP; g++, q += TL_I8S_GROUP, x += TL_I8S_GROUP) {
    __m512 s = _mm512_setzero_ps();
    for (int j = 0; j < TL_I8S_GROUP; j += 16) {
      __m512 qv =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + j))));
      s = _mm512_fmadd_ps(qv, _mm512_loadu_ps(x + j), s);
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / scales[g]), s, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

AVX512 static float avx512_dot_q8_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    const int8_t *qs = (const int8_t *)(b + 2);
    const float *xb = x + i * TL_QK8_0;
    __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)qs)));
    __m512 q1 =
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qs + 16))));
    __m512 s = _mm512_mul_ps(q0, _mm512_loadu_ps(xb));
    s = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xb + 16), s);
    acc = _mm512_fmadd_ps(_mm512_set1_ps(tl_f16_to_f32(tl_rd_u16(b))), s, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void tl_cpu_fill_avx2(tl_cpu_kernels *k) {
  k->name = "avx2";
  k->vec_dot[TL_TYPE_F32] = tl_avx2_dot_f32;
  k->vec_dot[TL_TYPE_F16] = tl_avx2_dot_f16;
  k->vec_dot[TL_TYPE_BF16] = tl_avx2_dot_bf16;
  k->vec_dot[TL_TYPE_Q8_0] = avx2_dot_q8_0;
  k->axpy[TL_TYPE_F32] = avx2_axpy_f32;
  k->axpy[TL_TYPE_F16] = avx2_axpy_f16;
  k->vec_dot_i8s = avx2_dot_i8s;
  tl_cpu_fill_avx2_gemm(k);
  tl_cpu_fill_avx2_attn(k);
}

void tl_cpu_fill_avx512(tl_cpu_kernels *k) {
  tl_cpu_fill_avx2(k);
  k->name = "avx512";
  k->vec_dot[TL_TYPE_F32] = avx512_dot_f32;
  k->vec_dot[TL_TYPE_F16] = avx512_dot_f16;
  k->vec_dot[TL_TYPE_BF16] = avx512_dot_bf16;
  k->vec_dot[TL_TYPE_Q8_0] = avx512_dot_q8_0;
  k->vec_dot_i8s = avx512_dot_i8s;
  /* float weights: the AVX-512 dots above, row by row, rather than the
   * AVX2 gemm (whose decode uses the AVX2 dots); avx512vnni has its own */
  k->gemm[TL_TYPE_F32] = k->gemm[TL_TYPE_F16] = k->gemm[TL_TYPE_BF16] = NULL;
  tl_cpu_fill_avx512_attn(k);
}

bool tl_cpu_has_avx2(void) {
  __builtin_cpu_init();
#if defined(__clang__) /* clang's __builtin_cpu_supports does not know "f16c" */
  unsigned a, b, c, d;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#endif
}

bool tl_cpu_has_avx512(void) {
  __builtin_cpu_init();
  return tl_cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
#endif
