/* AVX-512 attention tile kernels (contracts in backend.h). They do exactly
 * the float operations of the per-row loops they replace, in the same order,
 * so results are bit-identical to avx512_dot_f32 (scores) and avx2_axpy_f32
 * (values) on the same data; they only do them for many rows at once:
 *
 * scores: 8 rows against one query at a time, with the two accumulators per
 * row of avx512_dot_f32; their horizontal sums are computed for the 8 rows
 * together, by shuffles that pair lanes exactly as hsum512 (kernels_x86.c) does for one
 * vector (the float additions, and so the roundings, are the same);
 * values: the output slices of up to 4 query heads x 64 columns stay in
 * registers while the tile's rows stream past, each element updated by one
 * fused multiply-add per row in row order, as axpy does. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/qkernels.h"

#define AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* ---- scores --------------------------------------------------------------- */

/* The two accumulators of avx512_dot_f32 for 8 rows (r[j]) and one query. */
INLINE AVX512 void dot_acc8(const float *const r[8], const float *x, int64_t n, __m512 v[8]) {
  __m512 a0[8], a1[8];
  _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a0[j] = a1[j] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
      a0[j] = _mm512_fmadd_ps(_mm512_loadu_ps(r[j] + i), x0, a0[j]);
      a1[j] = _mm512_fmadd_ps(_mm512_loadu_ps(r[j] + i + 16), x1, a1[j]);
    }
  }
  for (; i < n; i += 16) { /* masked tail */
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a0[j] =
        _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r[j] + i), xv, a0[j]);
  }
  _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) v[j] = _mm512_add_ps(a0[j], a1[j]);
}

/* hsum512 of 8 vectors at once, in lanes 0..7 (lanes 8..15 repeat them).
 * hsum512 adds the 256-bit halves, then the 128-bit halves, then lanes
 * (0, 2) and (1, 3), then the two sums; each step below makes the same
 * additions for several vectors in one instruction. */
INLINE AVX512 __m512 hsum512x8(const __m512 v[8]) {
  __m512 a[4], b[2];
  _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++) /* [lo8 + hi8 of v2m, of v2m+1] */
      a[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0x44),
                           _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0xee));
  _Pragma("GCC unroll 2") for (int m = 0; m < 2; m++) /* 128-bit lane k: lo4 + hi4 of v4m+k */
      b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x88),
                           _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xdd));
  /* lane k: [e0 + e2, e1 + e3] of v_k, then of v_4+k */
  const __m512 c = _mm512_add_ps(_mm512_shuffle_ps(b[0], b[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 2, 3, 2)));
  /* lane k: [sum of v_k, sum of v_4+k, the same again] */
  const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c, c, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(c, c, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 4, 8, 12, 1, 5, 9, 13);
  return _mm512_permutexvar_ps(idx, d);
}

AVX512 static void avx512_att_scores(const float *k, int n, const float *q, int nq, int hd,
                                     float scale, float *s, int64_t lds) {
  const __m512 vs = _mm512_set1_ps(scale);
  for (int r0 = 0; r0 < n; r0 += 8) {
    const int nr = n - r0 < 8 ? n - r0 : 8; /* rows past the tile repeat its last one */
    const float *row[8];
    for (int j = 0; j < 8; j++) row[j] = k + (size_t)(r0 + (j < nr ? j : nr - 1)) * hd;
    for (int g = 0; g < nq; g++) {
      __m512 v[8];
      dot_acc8(row, q + (size_t)g * hd, hd, v);
      const __m512 sv = _mm512_mul_ps(hsum512x8(v), vs);
      _mm512_mask_storeu_ps(s + g * lds + r0, (__mmask16)((1u << nr) - 1), sv);
    }
  }
}

/* ---- values --------------------------------------------------------------- */

/* G query heads' columns [i, i + 16 CH) (masks m) over the tile's rows. */
INLINE AVX512 void accum_gc(const float *v, int n, const float *p, int64_t ldp, int hd, float *o,
                            int i, const __mmask16 *m, const int G, const int CH) {
  __m512 acc[4][4];
  _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
      _Pragma("GCC unroll 4") for (int c = 0; c < CH; c++) acc[g][c] =
          _mm512_maskz_loadu_ps(m[c], o + (size_t)g * hd + i + 16 * c);
  for (int r = 0; r < n; r++) {
    __m512 vv[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < CH; c++) vv[c] =
        _mm512_maskz_loadu_ps(m[c], v + (size_t)r * hd + i + 16 * c);
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
      const __m512 pg = _mm512_set1_ps(p[g * ldp + r]);
      _Pragma("GCC unroll 4") for (int c = 0; c < CH; c++) acc[g][c] =
          _mm512_fmadd_ps(pg, vv[c], acc[g][c]);
    }
  }
  _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
      _Pragma("GCC unroll 4") for (int c = 0; c < CH; c++)
          _mm512_mask_storeu_ps(o + (size_t)g * hd + i + 16 * c, m[c], acc[g][c]);
}

#define ACCUM_G(G)                                 \
  switch (ch) {                                    \
    case 1:                                        \
      accum_gc(v, n, pg, ldp, hd, og, i, m, G, 1); \
      break;                                       \
    case 2:                                        \
      accum_gc(v, n, pg, ldp, hd, og, i, m, G, 2); \
      break;                                       \
    case 3:                                        \
      accum_gc(v, n, pg, ldp, hd, og, i, m, G, 3); \
      break;                                       \
    default:                                       \
      accum_gc(v, n, pg, ldp, hd, og, i, m, G, 4); \
      break;                                       \
  }

AVX512 static void avx512_att_accum(const float *v, int n, const float *p, int64_t ldp, int nq,
                                    int hd, float *o) {
  /* avx2_axpy_f32 updates the columns below a multiple of 8 with one fused
   * multiply-add each, and the rest with a multiply and an add */
  const int n8 = hd & ~7;
  for (int g0 = 0; g0 < nq; g0 += 4) {
    const int ng = nq - g0 < 4 ? nq - g0 : 4;
    const float *pg = p + g0 * ldp;
    float *og = o + (size_t)g0 * hd;
    for (int i = 0; i < n8; i += 64) {
      __mmask16 m[4] = {0, 0, 0, 0};
      int ch = 0;
      for (; ch < 4 && i + 16 * ch < n8; ch++) {
        const int left = n8 - i - 16 * ch;
        m[ch] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
      }
      switch (ng) {
        case 1:
          ACCUM_G(1) break;
        case 2:
          ACCUM_G(2) break;
        case 3:
          ACCUM_G(3) break;
        default:
          ACCUM_G(4) break;
      }
    }
    for (int g = 0; g < ng; g++)
      for (int r = 0; r < n; r++)
        for (int i = n8; i < hd; i++) {
          const __m128 t =
              _mm_mul_ss(_mm_set_ss(pg[g * ldp + r]), _mm_set_ss(v[(size_t)r * hd + i]));
          og[(size_t)g * hd + i] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(og[(size_t)g * hd + i]), t));
        }
  }
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

AVX512 static void avx512_exp_sub(const float *x, float m, float *y, int64_t n) {
  __m512d tab[4];
  for (int i = 0; i < 4; i++) tab[i] = _mm512_loadu_pd(g_exp2_32 + 8 * i);
  const __m512 vm = _mm512_set1_ps(m);
  const __m512i big = _mm512_set1_epi32(0x42b00000); /* |y| >= 88 or NaN */
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lm = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 yf = _mm512_sub_ps(_mm512_maskz_loadu_ps(lm, x + i), vm);
    const __m256 f0 = _mm512_cvtpd_ps(exp_lanes(_mm512_castps512_ps256(yf), tab));
    const __m256 f1 = _mm512_cvtpd_ps(
        exp_lanes(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(yf), 1)), tab));
    _mm512_mask_storeu_ps(
        y + i, lm,
        _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(f0)),
                                            _mm256_castps_pd(f1), 1)));
    const __m512i ab = _mm512_and_si512(_mm512_castps_si512(yf), _mm512_set1_epi32(0x7fffffff));
    __mmask16 redo = _mm512_cmpge_epi32_mask(ab, big) & lm;
    if (redo) {
      float v[16];
      _mm512_storeu_ps(v, yf);
      while (redo) {
        const int j = __builtin_ctz(redo);
        redo &= (__mmask16)(redo - 1);
        y[i + j] = expf(v[j]);
      }
    }
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
  if (agrees) k->exp_sub = avx512_exp_sub;
}
#endif
