/* AVX-512 attention tile kernels (contracts in backend.h), reading the KV
 * cache in place, f16 or f32:
 *
 * scores: the keys are stored transposed (value d of 16 positions side by
 * side), so a vector holds one value of 16 positions and each query value is
 * broadcast: the scores of up to 8 query heads x 32 positions stay in 16
 * registers while d runs over the head, one fused multiply-add each per d; no
 * horizontal sums, and each key value is loaded (and converted) once for all
 * the heads;
 * values: the output columns [i, i + 32) of up to 8 query heads stay in
 * registers while the tile's rows stream past, each element updated by one
 * fused multiply-add per row in row order; each value is loaded (and
 * converted) once for all the heads.
 *
 * The AVX2 kernels below do the same operations in the same order, 8 lanes
 * at a time, so every x86 set gives the same bits. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/qkernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* 16 cache values (those of mask m, the rest 0) from p as f32. */
INLINE AVX512 __m512 ld_kv(const uint8_t *p, const bool f16, __mmask16 m) {
  if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_maskz_loadu_ps(m, p);
}

INLINE __mmask16 mask_of(int left) {
  return left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
}

/* ---- scores --------------------------------------------------------------- */

/* G query heads x positions [0, n) of a tile, 32 positions at a time. */
INLINE AVX512 void scores_g(const uint8_t *kt, const bool f16, int64_t ldk, int n, const float *q,
                            int hd, float scale, float *s, int64_t lds, float *smax, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)ldk * es;
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 mv[8]; /* running maxima; max(x, m) is m where x is NaN */
  _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) mv[g] = _mm512_set1_ps(-INFINITY);
  for (int r0 = 0; r0 < n; r0 += 32) {
    const __mmask16 m0 = mask_of(n - r0), m1 = mask_of(n - r0 - 16);
    __m512 a0[8], a1[8];
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) a0[g] = a1[g] = _mm512_setzero_ps();
    const uint8_t *kp = kt + (size_t)r0 * es;
    if (m1) {
      for (int d = 0; d < hd; d++, kp += row) {
        const __m512 k0 = ld_kv(kp, f16, m0), k1 = ld_kv(kp + 16 * es, f16, m1);
        _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) {
          const __m512 qb = _mm512_set1_ps(q[(size_t)g * hd + d]);
          a0[g] = _mm512_fmadd_ps(qb, k0, a0[g]);
          a1[g] = _mm512_fmadd_ps(qb, k1, a1[g]);
        }
      }
    } else { /* 16 positions or fewer */
      for (int d = 0; d < hd; d++, kp += row) {
        const __m512 k0 = ld_kv(kp, f16, m0);
        _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) a0[g] =
            _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)g * hd + d]), k0, a0[g]);
      }
    }
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) {
      const __m512 s0 = _mm512_mul_ps(a0[g], vs), s1 = _mm512_mul_ps(a1[g], vs);
      _mm512_mask_storeu_ps(s + g * lds + r0, m0, s0);
      mv[g] = _mm512_mask_max_ps(mv[g], m0, s0, mv[g]);
      if (m1) {
        _mm512_mask_storeu_ps(s + g * lds + r0 + 16, m1, s1);
        mv[g] = _mm512_mask_max_ps(mv[g], m1, s1, mv[g]);
      }
    }
  }
  if (smax) {
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) smax[g] = _mm512_reduce_max_ps(mv[g]);
  }
}

AVX512 static void avx512_att_scores(const void *kt, bool f16, int64_t ldk, int n, const float *q,
                                     int nq, int hd, float scale, float *s, int64_t lds,
                                     float *smax) {
  for (int g0 = 0; g0 < nq; g0 += 8) {
    const int ng = nq - g0 < 8 ? nq - g0 : 8;
    const float *qg = q + (size_t)g0 * hd;
    float *sg = s + g0 * lds, *mg = smax ? smax + g0 : NULL;
    if (f16)
      TL_SWITCH_G8(scores_g, ng, (const uint8_t *)kt, true, ldk, n, qg, hd, scale, sg, lds, mg)
    else
      TL_SWITCH_G8(scores_g, ng, (const uint8_t *)kt, false, ldk, n, qg, hd, scale, sg, lds, mg)
  }
}

/* ---- values --------------------------------------------------------------- */

/* G query heads' output columns, 32 at a time, over the tile's n rows. */
INLINE AVX512 void accum_g(const uint8_t *v, const bool f16, int n, const float *p, int64_t ldp,
                           int hd, float *o, float *sum, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)hd * es;
  float l[8];
  _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) l[g] = sum ? sum[g] : 0;
  for (int i0 = 0; i0 < hd; i0 += 32) {
    const bool with_sum = sum && i0 == 0; /* the sums, with the first columns */
    const __mmask16 m0 = mask_of(hd - i0), m1 = mask_of(hd - i0 - 16);
    __m512 a0[8], a1[8];
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) {
      a0[g] = _mm512_maskz_loadu_ps(m0, o + (size_t)g * hd + i0);
      a1[g] = _mm512_maskz_loadu_ps(m1, o + (size_t)g * hd + i0 + 16);
    }
    const uint8_t *vp = v + (size_t)i0 * es;
    for (int r = 0; r < n; r++, vp += row) {
      const __m512 v0 = ld_kv(vp, f16, m0), v1 = ld_kv(vp + 16 * es, f16, m1);
      _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) {
        const __m512 pb = _mm512_set1_ps(p[g * ldp + r]);
        a0[g] = _mm512_fmadd_ps(pb, v0, a0[g]);
        a1[g] = _mm512_fmadd_ps(pb, v1, a1[g]);
        if (with_sum) l[g] += p[g * ldp + r];
      }
    }
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) {
      _mm512_mask_storeu_ps(o + (size_t)g * hd + i0, m0, a0[g]);
      _mm512_mask_storeu_ps(o + (size_t)g * hd + i0 + 16, m1, a1[g]);
    }
  }
  if (sum) {
    _Pragma("GCC unroll 8") for (int g = 0; g < G; g++) sum[g] = l[g];
  }
}

AVX512 static void avx512_att_accum(const void *v, bool f16, int n, const float *p, int64_t ldp,
                                    int nq, int hd, float *o, float *sum) {
  for (int g0 = 0; g0 < nq; g0 += 8) {
    const int ng = nq - g0 < 8 ? nq - g0 : 8;
    const float *pg = p + g0 * ldp;
    float *og = o + (size_t)g0 * hd, *lg = sum ? sum + g0 : NULL;
    if (f16)
      TL_SWITCH_G8(accum_g, ng, (const uint8_t *)v, true, n, pg, ldp, hd, og, lg)
    else
      TL_SWITCH_G8(accum_g, ng, (const uint8_t *)v, false, n, pg, ldp, hd, og, lg)
  }
}

/* ---- the same with AVX2 (8 lanes, 4 query heads x 16 positions or columns) ---- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* The first cnt (0..8) of 8 cache values from p as f32, the rest 0. */
INLINE AVX2 __m256 ld8(const uint8_t *p, const bool f16, int cnt) {
  if (cnt >= 8)
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p))
               : _mm256_loadu_ps((const float *)(const void *)p);
  if (f16) {
    uint16_t b[8] = {0};
    if (cnt > 0) memcpy(b, p, (size_t)cnt * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)b));
  }
  float b[8] = {0};
  if (cnt > 0) memcpy(b, p, (size_t)cnt * 4);
  return _mm256_loadu_ps(b);
}

/* The first cnt (0..8) lanes of v to y. */
INLINE AVX2 void st8(float *y, __m256 v, int cnt) {
  if (cnt >= 8) {
    _mm256_storeu_ps(y, v);
  } else if (cnt > 0) {
    float b[8];
    _mm256_storeu_ps(b, v);
    memcpy(y, b, (size_t)cnt * 4);
  }
}

INLINE int clamp8(int left) {
  return left >= 8 ? 8 : left > 0 ? left : 0;
}

/* The first cnt (0..8) lanes of v, the others -inf. */
INLINE AVX2 __m256 first_lanes(__m256 v, int cnt) {
  const __m256i in =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(in));
}

INLINE AVX2 float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

INLINE AVX2 void scores_g4(const uint8_t *kt, const bool f16, int64_t ldk, int n, const float *q,
                           int hd, float scale, float *s, int64_t lds, float *smax, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)ldk * es;
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 mv[4]; /* running maxima; max(x, m) is m where x is NaN */
  _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) mv[g] = _mm256_set1_ps(-INFINITY);
  for (int r0 = 0; r0 < n; r0 += 16) {
    const int c0 = clamp8(n - r0), c1 = clamp8(n - r0 - 8);
    __m256 a0[4], a1[4];
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) a0[g] = a1[g] = _mm256_setzero_ps();
    const uint8_t *kp = kt + (size_t)r0 * es;
    for (int d = 0; d < hd; d++, kp += row) {
      const __m256 k0 = ld8(kp, f16, c0), k1 = ld8(kp + 8 * es, f16, c1);
      _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
        const __m256 qb = _mm256_broadcast_ss(q + (size_t)g * hd + d);
        a0[g] = _mm256_fmadd_ps(qb, k0, a0[g]);
        a1[g] = _mm256_fmadd_ps(qb, k1, a1[g]);
      }
    }
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
      const __m256 s0 = _mm256_mul_ps(a0[g], vs), s1 = _mm256_mul_ps(a1[g], vs);
      st8(s + g * lds + r0, s0, c0);
      st8(s + g * lds + r0 + 8, s1, c1);
      mv[g] = _mm256_max_ps(first_lanes(s0, c0), mv[g]);
      mv[g] = _mm256_max_ps(first_lanes(s1, c1), mv[g]);
    }
  }
  if (smax) {
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) smax[g] = hmax8(mv[g]);
  }
}

// clang-format off
#define SWITCH_G4(fn, g, ...) \
  switch (g) { \
    case 1: fn(__VA_ARGS__, 1); break; \
    case 2: fn(__VA_ARGS__, 2); break; \
    case 3: fn(__VA_ARGS__, 3); break; \
    default: fn(__VA_ARGS__, 4); break; \
  }
// clang-format on

AVX2 static void avx2_att_scores(const void *kt, bool f16, int64_t ldk, int n, const float *q,
                                 int nq, int hd, float scale, float *s, int64_t lds, float *smax) {
  for (int g0 = 0; g0 < nq; g0 += 4) {
    const int ng = nq - g0 < 4 ? nq - g0 : 4;
    const float *qg = q + (size_t)g0 * hd;
    float *sg = s + g0 * lds, *mg = smax ? smax + g0 : NULL;
    if (f16)
      SWITCH_G4(scores_g4, ng, (const uint8_t *)kt, true, ldk, n, qg, hd, scale, sg, lds, mg)
    else
      SWITCH_G4(scores_g4, ng, (const uint8_t *)kt, false, ldk, n, qg, hd, scale, sg, lds, mg)
  }
}

INLINE AVX2 void accum_g4(const uint8_t *v, const bool f16, int n, const float *p, int64_t ldp,
                          int hd, float *o, float *sum, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)hd * es;
  float l[4];
  _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) l[g] = sum ? sum[g] : 0;
  for (int i0 = 0; i0 < hd; i0 += 16) {
    const bool with_sum = sum && i0 == 0; /* the sums, with the first columns */
    const int c0 = clamp8(hd - i0), c1 = clamp8(hd - i0 - 8);
    __m256 a0[4], a1[4];
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
      a0[g] = ld8((const uint8_t *)(o + (size_t)g * hd + i0), false, c0);
      a1[g] = ld8((const uint8_t *)(o + (size_t)g * hd + i0 + 8), false, c1);
    }
    const uint8_t *vp = v + (size_t)i0 * es;
    for (int r = 0; r < n; r++, vp += row) {
      const __m256 v0 = ld8(vp, f16, c0), v1 = ld8(vp + 8 * es, f16, c1);
      _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
        const __m256 pb = _mm256_broadcast_ss(p + g * ldp + r);
        a0[g] = _mm256_fmadd_ps(pb, v0, a0[g]);
        a1[g] = _mm256_fmadd_ps(pb, v1, a1[g]);
        if (with_sum) l[g] += p[g * ldp + r];
      }
    }
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
      st8(o + (size_t)g * hd + i0, a0[g], c0);
      st8(o + (size_t)g * hd + i0 + 8, a1[g], c1);
    }
  }
  if (sum) {
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) sum[g] = l[g];
  }
}

AVX2 static void avx2_att_accum(const void *v, bool f16, int n, const float *p, int64_t ldp, int nq,
                                int hd, float *o, float *sum) {
  for (int g0 = 0; g0 < nq; g0 += 4) {
    const int ng = nq - g0 < 4 ? nq - g0 : 4;
    const float *pg = p + g0 * ldp;
    float *og = o + (size_t)g0 * hd, *lg = sum ? sum + g0 : NULL;
    if (f16)
      SWITCH_G4(accum_g4, ng, (const uint8_t *)v, true, n, pg, ldp, hd, og, lg)
    else
      SWITCH_G4(accum_g4, ng, (const uint8_t *)v, false, n, pg, ldp, hd, og, lg)
  }
}

void tl_cpu_fill_avx2_attn(tl_cpu_kernels *k) {
  k->att_scores = avx2_att_scores;
  k->att_accum = avx2_att_accum;
}

/* ---- exp ------------------------------------------------------------------ */

/* expf(x - m), by the algorithm of the C library's expf: glibc (2.28 and
 * later) uses the one from Arm's optimized-routines, and on a machine with FMA
 * its x86-64 build runs the variant compiled with fused multiply-adds. With
 * y = x - m (a float subtraction, as the scalar loop makes it), in double
 * precision: k = round(32 y / ln 2) by adding and removing 1.5 * 2^52 to the
 * fused product, r = 32 y / ln 2 - k (fused), 2^(k/32) from the table of the
 * 32 values 2^(i/32) with k div 32 added to the exponent bits, 2^(r/32) from
 * the library's cubic in r (its published coefficients), and the double
 * result rounded to float. The same double operations in the same order give
 * the same float in every lane. Lanes with |y| >= 88 or NaN, which the library
 * handles apart (overflow, underflow), are given to expf itself. Before the
 * kernel is used, exp_sub_agrees() checks it against the C library the program
 * runs with; where they differ (another library, or one without the FMA
 * variant) the scalar loop of expf stays. */
static double g_exp2_32[32]; /* the bits of 2^(i/32) less i << 47 */

/* The double results of 8 lanes y (before rounding to float). */
INLINE AVX512 __m512d exp_lanes(__m256 y, const __m512d tab[4]) {
  const __m512d n_ln2 = _mm512_set1_pd(0x1.71547652b82fep+5); /* 32 / ln 2 */
  const __m512d shift = _mm512_set1_pd(0x1.8p52);
  const __m512d c0 = _mm512_set1_pd(0x1.c6af84b912394p-20);
  const __m512d c1 = _mm512_set1_pd(0x1.ebfce50fac4f3p-13);
  const __m512d c2 = _mm512_set1_pd(0x1.62e42ff0c52d6p-6);
  const __m512d yd = _mm512_cvtps_pd(y);
  const __m512d ks = _mm512_fmadd_pd(n_ln2, yd, shift); /* k + 1.5 * 2^52 */
  const __m512i ki = _mm512_castpd_si512(ks);
  const __m512d r = _mm512_fmsub_pd(n_ln2, yd, _mm512_sub_pd(ks, shift));
  /* entry k mod 32: bits 0..3 pick it in a pair of registers, bit 4 the pair */
  const __m512d tl = _mm512_permutex2var_pd(tab[0], ki, tab[1]);
  const __m512d th = _mm512_permutex2var_pd(tab[2], ki, tab[3]);
  const __m512d t = _mm512_mask_blend_pd(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), tl, th);
  const __m512d s =
      _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(t), _mm512_slli_epi64(ki, 47)));
  const __m512d z = _mm512_fmadd_pd(r, c0, c1);
  const __m512d p = _mm512_fmadd_pd(r, c2, _mm512_set1_pd(1.0));
  return _mm512_mul_pd(_mm512_fmadd_pd(z, _mm512_mul_pd(r, r), p), s);
}

/* expf of the lanes lm of yf; the other lanes are left undefined. */
INLINE AVX512 __m512 exp16(__m512 yf, __mmask16 lm, const __m512d tab[4]) {
  const __m256 f0 = _mm512_cvtpd_ps(exp_lanes(_mm512_castps512_ps256(yf), tab));
  const __m256 f1 = _mm512_cvtpd_ps(
      exp_lanes(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(yf), 1)), tab));
  __m512 e = _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(f0)), _mm256_castps_pd(f1), 1));
  const __m512i ab = _mm512_and_si512(_mm512_castps_si512(yf), _mm512_set1_epi32(0x7fffffff));
  /* |y| >= 88 or NaN */
  __mmask16 redo = _mm512_cmpge_epi32_mask(ab, _mm512_set1_epi32(0x42b00000)) & lm;
  if (redo) {
    float v[16], r[16];
    _mm512_storeu_ps(v, yf);
    _mm512_storeu_ps(r, e);
    while (redo) {
      const int j = __builtin_ctz(redo);
      redo &= (__mmask16)(redo - 1);
      r[j] = expf(v[j]);
    }
    e = _mm512_loadu_ps(r);
  }
  return e;
}

INLINE AVX512 void load_tab(__m512d tab[4]) {
  for (int i = 0; i < 4; i++) tab[i] = _mm512_loadu_pd(g_exp2_32 + 8 * i);
}

AVX512 static void avx512_exp_sub(const float *x, float m, float *y, int64_t n) {
  __m512d tab[4];
  load_tab(tab);
  const __m512 vm = _mm512_set1_ps(m);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lm = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 yf = _mm512_sub_ps(_mm512_maskz_loadu_ps(lm, x + i), vm);
    _mm512_mask_storeu_ps(y + i, lm, exp16(yf, lm, tab));
  }
}

/* SiLU with exp16: the same float operations as the scalar kernel's. */
AVX512 static void avx512_silu(const float *x, const float *g, float *y, int64_t n) {
  __m512d tab[4];
  load_tab(tab);
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lm = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(lm, x + i);
    const __m512 nx = _mm512_castsi512_ps(/* -x */
                                          _mm512_xor_si512(_mm512_castps_si512(xv),
                                                           _mm512_set1_epi32((int)0x80000000u)));
    const __m512 e = exp16(nx, lm, tab);
    /* masked-off lanes divide 0 by whatever e holds there: no traps, as
     * exceptions are masked */
    __m512 s = _mm512_div_ps(xv, _mm512_add_ps(one, e));
    if (g) s = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(lm, g + i));
    _mm512_mask_storeu_ps(y + i, lm, s);
  }
}

/* Whether avx512_exp_sub gives this C library's expf on a spread of inputs:
 * 2^16 steps over every float from -104 to 89 (the range where neither
 * function returns 0 or infinity), plus the edges and specials. */
static bool exp_sub_agrees(void) {
  enum { N = 1024 };
  float x[N], y[N];
  const uint32_t lo = 0x80000000u, hi = 0xc2d00000u; /* -0 .. -104 */
  const uint32_t step = (hi - lo) / 32768 + 1;
  uint32_t u = lo, v = 0;
  for (int done = 0; done < 65536; done += N) {
    for (int i = 0; i < N; i++) {
      const uint32_t bits = (i & 1) ? v : u; /* negatives and positives alternate */
      memcpy(&x[i], &bits, sizeof bits);
      if (i & 1)
        v += 0x42b20000u / 32768; /* 0 .. 89 */
      else
        u += step;
    }
    avx512_exp_sub(x, 0.0f, y, N);
    for (int i = 0; i < N; i++) {
      const float e = expf(x[i]);
      if (memcmp(&e, &y[i], sizeof e) != 0) return false;
    }
  }
  const float special[] = {0.0f,      -0.0f,    1.0f,     -1.0f,      88.0f,
                           88.72283f, 88.7229f, -87.0f,   -87.33655f, -103.97208f,
                           -104.0f,   -150.0f,  INFINITY, -INFINITY,  NAN};
  const int ns = (int)(sizeof special / sizeof special[0]);
  avx512_exp_sub(special, 0.0f, y, ns);
  for (int i = 0; i < ns; i++) {
    const float e = expf(special[i]);
    if (memcmp(&e, &y[i], sizeof e) != 0 && !(isnan(e) && isnan(y[i]))) return false;
  }
  return true;
}

/* Called for each AVX-512 set, once, from the kernel selection's one-time
 * initialization: the table and the check are made by the first call. */
void tl_cpu_fill_avx512_attn(tl_cpu_kernels *k) {
  static int agrees = -1;
  k->att_scores = avx512_att_scores;
  k->att_accum = avx512_att_accum;
  if (agrees < 0) {
    for (int i = 0; i < 32; i++) { /* 2^(i/32), correctly rounded from long double */
      const double e = (double)exp2l((long double)i / 32);
      uint64_t u;
      memcpy(&u, &e, sizeof u);
      u -= (uint64_t)i << 47;
      memcpy(&g_exp2_32[i], &u, sizeof u);
    }
    agrees = exp_sub_agrees();
  }
  if (agrees) {
    k->exp_sub = avx512_exp_sub;
    k->silu = avx512_silu;
  }
}
#endif
