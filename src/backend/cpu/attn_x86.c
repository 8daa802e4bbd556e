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

/* expf(x - m), 8 lanes at a time in double precision: with y = x - m (a float
 * subtraction, as the scalar loop makes it), e^y = 2^(k/16) e^r for
 * k = round(16 y / ln 2) and r = y - k ln2/16 (|r| <= ln2/32); e^r comes from
 * its Taylor polynomial to r^5 (truncation error below 2^-42), 2^(k/16) from
 * the table of 2^(i/16) scaled by 2^(k div 16) in the exponent bits. The double
 * result is within 2^-41 (relative) of e^y, so rounding it to float gives the
 * correctly rounded e^y except where e^y lies that close to a midpoint between
 * two floats. The C library's expf (glibc's and musl's: below 0.502 ulp) is
 * correctly rounded except within 0.002 ulp of such a midpoint. So the lanes
 * whose double result lies within 2^-8 ulp of a midpoint (about 0.8 % of
 * them), whose result is a power of two (where the ulp changes), or whose y
 * is outside [-87, 88] (results that are subnormal, overflow, NaN) are given to
 * expf itself; every other lane is then exactly expf's value. Before the kernel
 * is used, exp_sub_agrees() checks that against the library it runs with. */
static double g_exp2_16[16]; /* 2^(i/16) */

AVX512 static void avx512_exp_sub(const float *x, float m, float *y, int64_t n) {
  const __m512d t0 = _mm512_loadu_pd(g_exp2_16), t1 = _mm512_loadu_pd(g_exp2_16 + 8);
  const __m512d to_k = _mm512_set1_pd(16.0 / 0.693147180559945309417232121458176568);
  const __m512d ln2_16 = _mm512_set1_pd(0.693147180559945309417232121458176568 / 16.0);
  const __m512d one = _mm512_set1_pd(1.0), c2 = _mm512_set1_pd(1.0 / 2),
                c3 = _mm512_set1_pd(1.0 / 6), c4 = _mm512_set1_pd(1.0 / 24),
                c5 = _mm512_set1_pd(1.0 / 120);
  /* a double result d rounded to f needs expf when |d - f| >= (1/2 - 2^-8) ulp(f) */
  const __m512d near = _mm512_set1_pd((0.5 - 1.0 / 256) * 0x1p-23);
  const __m512i expo = _mm512_set1_epi64(0x7ff0000000000000ll);
  const __m256 vm = _mm256_set1_ps(m), lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const __mmask8 lm = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1);
    const __m256 yf = _mm256_sub_ps(_mm256_maskz_loadu_ps(lm, x + i), vm);
    const __m512d yd = _mm512_cvtps_pd(yf);
    const __m512d kd = _mm512_roundscale_pd(_mm512_mul_pd(yd, to_k), _MM_FROUND_TO_NEAREST_INT);
    const __m512d r = _mm512_fnmadd_pd(kd, ln2_16, yd);
    __m512d p = _mm512_fmadd_pd(c5, r, c4);
    p = _mm512_fmadd_pd(p, r, c3);
    p = _mm512_fmadd_pd(p, r, c2);
    p = _mm512_fmadd_pd(p, r, one);
    p = _mm512_fmadd_pd(p, r, one);
    const __m512i k = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(kd));
    const __m512d t = _mm512_permutex2var_pd(t0, k, t1); /* 2^((k mod 16) / 16) */
    const __m512i sc = _mm512_slli_epi64(_mm512_srai_epi64(k, 4), 52);
    const __m512d d =
        _mm512_mul_pd(p, _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(t), sc)));
    const __m256 f = _mm512_cvtpd_ps(d);
    const __m512d fd = _mm512_cvtps_pd(f);
    const __m512d ulp = _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(fd), expo));
    __mmask8 redo = _mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(d, fd)),
                                       _mm512_mul_pd(ulp, near), _CMP_GE_OQ);
    redo |= _mm256_cmp_ps_mask(yf, lo, _CMP_NGE_UQ) | _mm256_cmp_ps_mask(yf, hi, _CMP_NLE_UQ);
    redo |= _mm256_testn_epi32_mask(_mm256_castps_si256(f), _mm256_set1_epi32(0x7fffff));
    redo &= lm;
    _mm256_mask_storeu_ps(y + i, lm, f);
    while (redo) {
      const int j = __builtin_ctz(redo);
      redo &= (__mmask8)(redo - 1);
      y[i + j] = expf(_mm256_cvtss_f32(_mm256_permutexvar_ps(_mm256_set1_epi32(j), yf)));
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
    for (int i = 0; i < 16; i++) g_exp2_16[i] = exp2((double)i / 16);
    agrees = exp_sub_agrees();
  }
  if (agrees) k->exp_sub = avx512_exp_sub;
}
#endif
