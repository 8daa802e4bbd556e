/* AVX-512 VNNI matrix kernels (the "avx512vnni" kernel set): activation
 * quantizers, integer gemm for Q4_0, Q8_0, Q4_K and Q6_K weights on int8
 * activations, and f32-activation gemm for F32/F16/BF16 weights. Each kernel
 * walks register tiles of a few weight rows x a few tokens:
 *  - several tokens (prefill): the quantized types unpack a tile of 4 rows
 *    once into an L1-resident buffer (u8 weights, spread scales) and run
 *    4 x 4 (Q4_0, Q8_0) or 4 x 3 (K-quants) tiles over all tokens on it,
 *    prefetching the next row tile into L2; float weights use 4 x 6 tiles;
 *  - one token (decode): 8-row tiles that prefetch the next tile's bytes in
 *    software (the hardware prefetchers alone reach a fraction of the memory
 *    bandwidth here).
 * Compiled with per-function target attributes, selected at run time
 * (dispatch.c), and tested against the scalar reference
 * (tests/unit/test_qkernels.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "backend/cpu/qkernels.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* ---- activation quantizers (bit-identical to the scalar ones) --------------- */

VNNI static void qact_q8_32(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n), *s = d + n / 32;
  for (int64_t i = 0; i < n / 32; i++, x += 32, q += 32) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(i1));
    d[i] = dd;
    s[i] = dd * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
  }
}

VNNI static void qact_q8_256(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n);
  int16_t *bs = (int16_t *)tl_act_bsum(row, n);
  for (int64_t i = 0; i < n / 256; i++, x += 256, q += 256, bs += 16) {
    __m512 mx = _mm512_setzero_ps();
    for (int j = 0; j < 256; j += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(mx);
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    for (int j = 0; j < 16; j++) {
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), vid));
      _mm_storeu_si128((__m128i *)(q + 16 * j), _mm512_cvtsepi32_epi8(v));
      bs[j] = (int16_t)_mm512_reduce_add_epi32(v);
    }
    d[i] = dd;
  }
}

/* ---- helpers ------------------------------------------------------------------ */

/* [v0 x 8, v1 x 8] from the first two floats of v. */
VNNI INLINE __m512 spread2(__m128 v) {
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/* Two f16 scales (the second 0 when !two) as floats in lanes 0 and 1. */
VNNI INLINE __m128 f16x2(const uint8_t *p0, const uint8_t *p1, bool two) {
  uint32_t bits = tl_rd_u16(p0) | (two ? (uint32_t)tl_rd_u16(p1) << 16 : 0);
  return _mm_cvtph_ps(_mm_cvtsi32_si128((int)bits));
}

VNNI INLINE __m128 f32x2(const float *p, bool two) {
  return two ? _mm_castpd_ps(_mm_load_sd((const double *)(const void *)p)) : _mm_load_ss(p);
}

/* Call fn(..., R, T) for the tile size nr x nt (1..4 each) as constants. */
// clang-format off
#define TILE_SWITCH(fn, nr, nt, ...) \
  switch ((nr) * 8 + (nt)) { \
    case 9: fn(__VA_ARGS__, 1, 1); break; \
    case 10: fn(__VA_ARGS__, 1, 2); break; \
    case 11: fn(__VA_ARGS__, 1, 3); break; \
    case 12: fn(__VA_ARGS__, 1, 4); break; \
    case 17: fn(__VA_ARGS__, 2, 1); break; \
    case 18: fn(__VA_ARGS__, 2, 2); break; \
    case 19: fn(__VA_ARGS__, 2, 3); break; \
    case 20: fn(__VA_ARGS__, 2, 4); break; \
    case 25: fn(__VA_ARGS__, 3, 1); break; \
    case 26: fn(__VA_ARGS__, 3, 2); break; \
    case 27: fn(__VA_ARGS__, 3, 3); break; \
    case 28: fn(__VA_ARGS__, 3, 4); break; \
    case 33: fn(__VA_ARGS__, 4, 1); break; \
    case 34: fn(__VA_ARGS__, 4, 2); break; \
    case 35: fn(__VA_ARGS__, 4, 3); break; \
    default: fn(__VA_ARGS__, 4, 4); break; \
  }
// clang-format on

/* Walk the rows in tiles of up to MR and, for each, the tokens in tiles of up to MT. */
#define GEMM_WALK(tile, MR, MT)                                                                  \
  for (int64_t r = 0; r < nr; r += MR) {                                                         \
    const int mr = nr - r < MR ? (int)(nr - r) : MR;                                             \
    for (int64_t t = 0; t < nt; t += MT) {                                                       \
      const int mt = nt - t < MT ? (int)(nt - t) : MT;                                           \
      TILE_SWITCH(tile, mr, mt, (const uint8_t *)w + r * ldw, ldw, (const uint8_t *)x + t * ldx, \
                  ldx, n, y + t * ldy + r, ldy)                                                  \
    }                                                                                            \
  }

/* One token (decode): rows in tiles of 8 (8 weight streams in flight), the
 * last few in tiles of up to 4. */
#define GEMM_WALK_DEC(tile)                                                     \
  for (int64_t r = 0; r < nr;) {                                                \
    const uint8_t *wr = (const uint8_t *)w + r * ldw;                           \
    if (nr - r >= 8) {                                                          \
      tile(wr, ldw, (const uint8_t *)x, ldx, n, y + r, ldy, 8, 1);              \
      r += 8;                                                                   \
    } else {                                                                    \
      const int mr = nr - r < 4 ? (int)(nr - r) : 4;                            \
      TILE_SWITCH(tile, mr, 1, wr, ldw, (const uint8_t *)x, ldx, n, y + r, ldy) \
      r += mr;                                                                  \
    }                                                                           \
  }

/* The same with tiles of up to 4 x 6. */
#define GEMM_WALK6(tile, MR, MT)                                                                  \
  for (int64_t r = 0; r < nr; r += MR) {                                                          \
    const int mr = nr - r < MR ? (int)(nr - r) : MR;                                              \
    for (int64_t t = 0; t < nt; t += MT) {                                                        \
      const int mt = nt - t < MT ? (int)(nt - t) : MT;                                            \
      TILE_SWITCH6(tile, mr, mt, (const uint8_t *)w + r * ldw, ldw, (const uint8_t *)x + t * ldx, \
                   ldx, n, y + t * ldy + r, ldy)                                                  \
    }                                                                                             \
  }

#define ZERO_ACC(acc, R, T)                              \
  _Pragma("GCC unroll 8") for (int r_ = 0; r_ < R; r_++) \
      _Pragma("GCC unroll 6") for (int t_ = 0; t_ < T; t_++) acc[r_][t_] = _mm512_setzero_ps()

#define STORE_ACC(acc, R, T)                                                    \
  _Pragma("GCC unroll 8") for (int r_ = 0; r_ < R; r_++)                        \
      _Pragma("GCC unroll 6") for (int t_ = 0; t_ < T; t_++) y[t_ * ldy + r_] = \
          _mm512_reduce_add_ps(acc[r_][t_])

/* The one-token (decode) tiles prefetch the same columns of the next row
 * tile (R rows further): R rows stream at once, which the hardware
 * prefetchers follow less well than one stream. */
VNNI INLINE void pf_next(const uint8_t *p, size_t ldw, int R, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + R * ldw + o, _MM_HINT_T0);
}

/* ---- Q4_0 and Q8_0: two 32-blocks per 512-bit step ------------------------------
 * Weights as u8 (Q4_0: the nibble 0..15; Q8_0: q + 128), activations s8: VNNI
 * dpbusd sums w * a per 4 bytes, and the offset (8 or 128) times the sum of
 * the activations, taken per token with one more dpbusd, is subtracted by
 * starting from it. Lanes 0-7 hold the first block, 8-15 the second. */

/* Two Q4_0 blocks (36 bytes, one masked load) as 64 u8 nibbles in element
 * order, and their scales spread over 8 lanes each; both qs and the second
 * d sit at even offsets, so word permutes gather them. */
VNNI INLINE void q4_0_load2(const uint8_t *b, bool two, __m512i *wq, __m512 *dw) {
  const __m512i v = _mm512_maskz_loadu_epi8(two ? 0xfffffffffull : 0x3ffffull, b);
  const __m512i iq = _mm512_set_epi16(17, 16, 15, 14, 13, 12, 11, 10, 17, 16, 15, 14, 13, 12, 11,
                                      10, 8, 7, 6, 5, 4, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1);
  const __m512i sh = _mm512_set_epi16(4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4,
                                      4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i q = _mm512_srlv_epi16(_mm512_permutexvar_epi16(iq, v), sh);
  *wq = _mm512_and_si512(q, _mm512_set1_epi8(15));
  const __m512i id = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9,
                                      9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0);
  *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(id, v)));
}

VNNI INLINE void q32_step(bool q8, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, int64_t i, bool two, __m512 acc[8][4], const int R,
                          const int T) {
  const size_t bs = q8 ? sizeof(tl_block_q8_0) : sizeof(tl_block_q4_0);
  const __m512i koff = _mm512_set1_epi8(q8 ? (char)0x80 : 8);
  __m512i wq[8];
  __m512 dw[8];
  _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
    const uint8_t *b = w + r * ldw + (size_t)i * bs;
    if (T == 1) pf_next(b, ldw, R, 2 * bs);
    if (q8) {
      __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
      if (two) v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(b + bs + 2)), 1);
      wq[r] = _mm512_xor_si512(v, koff);
      dw[r] = spread2(f16x2(b, b + bs, two));
    } else {
      q4_0_load2(b, two, &wq[r], &dw[r]);
    }
  }
  _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    const uint8_t *xr = x + t * ldx;
    const __m512i a =
        two ? _mm512_loadu_si512(xr + 32 * i) : _mm512_maskz_loadu_epi8(0xffffffffull, xr + 32 * i);
    const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, a));
    const __m512 dx = spread2(f32x2(tl_act_d(xr, n) + i, two));
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wq[r], a));
      acc[r][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw[r], dx), acc[r][t]);
    }
  }
}

VNNI INLINE void q32_tile(bool q8, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[8][4];
  ZERO_ACC(acc, R, T);
  const int64_t nb = n / 32;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) q32_step(q8, w, ldw, x, ldx, n, i, true, acc, R, T);
  if (i < nb) q32_step(q8, w, ldw, x, ldx, n, i, false, acc, R, T);
  STORE_ACC(acc, R, T);
}

VNNI INLINE void q4_0_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, const int R, const int T) {
  q32_tile(false, w, ldw, x, ldx, n, y, ldy, R, T);
}

VNNI INLINE void q8_0_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, const int R, const int T) {
  q32_tile(true, w, ldw, x, ldx, n, y, ldy, R, T);
}

/* For several tokens, a tile's rows are unpacked once into an L1-resident
 * buffer (per 64-element step: 64 u8 weights, then the two block scales
 * spread over 8 lanes each) and the token tiles read it from there. */
typedef struct q32_unp {
  __m512i wq;
  __m512 dw;
} q32_unp;

/* Columns up to which the unpacked buffers (on the stack) are used. */
#define UNP_MAX_COLS 16384

VNNI INLINE void q32_unpack_row(bool q8, const uint8_t *b, int64_t n, q32_unp *u) {
  const size_t bs = q8 ? sizeof(tl_block_q8_0) : sizeof(tl_block_q4_0);
  const __m512i koff = _mm512_set1_epi8((char)0x80);
  const int64_t nb = n / 32;
  for (int64_t i = 0; i < nb; i += 2, b += 2 * bs, u++) {
    const bool two = i + 2 <= nb;
    if (q8) {
      __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
      if (two) v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(b + bs + 2)), 1);
      u->wq = _mm512_xor_si512(v, koff);
      u->dw = spread2(f16x2(b, b + bs, two));
    } else {
      q4_0_load2(b, two, &u->wq, &u->dw);
    }
  }
}

/* Tokens of step s: a, the offset correction c and the spread scales dx. */
VNNI INLINE void q32_tok(bool q8, const uint8_t *xr, int64_t n, int64_t s, bool two, __m512i *a,
                         __m512i *c, __m512 *dx) {
  const __m512i koff = _mm512_set1_epi8(q8 ? (char)0x80 : 8);
  *a = two ? _mm512_loadu_si512(xr + 64 * s) : _mm512_maskz_loadu_epi8(0xffffffffull, xr + 64 * s);
  *c = _mm512_sub_epi32(_mm512_setzero_si512(),
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, *a));
  *dx = spread2(f32x2(tl_act_d(xr, n) + 2 * s, two));
}

VNNI INLINE void q32_utile(bool q8, const q32_unp *u, int64_t ns, const uint8_t *x, size_t ldx,
                           int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[4][6];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
  const bool odd = (n / 32) % 2 != 0;
  for (int64_t s = 0; s < ns; s++) {
    const bool two = !odd || s + 1 < ns;
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      __m512i a, c;
      __m512 dx;
      if (two)
        q32_tok(q8, x + t * ldx, n, s, true, &a, &c, &dx);
      else
        q32_tok(q8, x + t * ldx, n, s, false, &a, &c, &dx);
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const q32_unp *ur = u + r * ns + s;
        const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, ur->wq, a));
        acc[r][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(ur->dw, dx), acc[r][t]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) y[t * ldy + r] =
          _mm512_reduce_add_ps(acc[r][t]);
}

VNNI INLINE void q4_0_utile(const q32_unp *u, int64_t ns, const uint8_t *x, size_t ldx, int64_t n,
                            float *y, int64_t ldy, const int R, const int T) {
  q32_utile(false, u, ns, x, ldx, n, y, ldy, R, T);
}

VNNI INLINE void q8_0_utile(const q32_unp *u, int64_t ns, const uint8_t *x, size_t ldx, int64_t n,
                            float *y, int64_t ldy, const int R, const int T) {
  q32_utile(true, u, ns, x, ldx, n, y, ldy, R, T);
}

/* Call fn(..., R, T) for nr 1..4 and nt 1..6 as constants. */
// clang-format off
#define TILE_SWITCH6(fn, nr, nt, ...) \
  switch ((nr) * 8 + (nt)) { \
    case 9: fn(__VA_ARGS__, 1, 1); break; \
    case 10: fn(__VA_ARGS__, 1, 2); break; \
    case 11: fn(__VA_ARGS__, 1, 3); break; \
    case 12: fn(__VA_ARGS__, 1, 4); break; \
    case 13: fn(__VA_ARGS__, 1, 5); break; \
    case 14: fn(__VA_ARGS__, 1, 6); break; \
    case 17: fn(__VA_ARGS__, 2, 1); break; \
    case 18: fn(__VA_ARGS__, 2, 2); break; \
    case 19: fn(__VA_ARGS__, 2, 3); break; \
    case 20: fn(__VA_ARGS__, 2, 4); break; \
    case 21: fn(__VA_ARGS__, 2, 5); break; \
    case 22: fn(__VA_ARGS__, 2, 6); break; \
    case 25: fn(__VA_ARGS__, 3, 1); break; \
    case 26: fn(__VA_ARGS__, 3, 2); break; \
    case 27: fn(__VA_ARGS__, 3, 3); break; \
    case 28: fn(__VA_ARGS__, 3, 4); break; \
    case 29: fn(__VA_ARGS__, 3, 5); break; \
    case 30: fn(__VA_ARGS__, 3, 6); break; \
    case 33: fn(__VA_ARGS__, 4, 1); break; \
    case 34: fn(__VA_ARGS__, 4, 2); break; \
    case 35: fn(__VA_ARGS__, 4, 3); break; \
    case 36: fn(__VA_ARGS__, 4, 4); break; \
    case 37: fn(__VA_ARGS__, 4, 5); break; \
    default: fn(__VA_ARGS__, 4, 6); break; \
  }
// clang-format on

/* Rows in tiles of 4 unpacked once each, tokens in tiles of up to MT. */
#define GEMM_WALK_UNP(unp_t, STEP, unpack, utile, MT, ...)                                        \
  do {                                                                                            \
    unp_t u[4 * (UNP_MAX_COLS / STEP)] __attribute__((aligned(64)));                              \
    const int64_t ns = (n + STEP - 1) / STEP;                                                     \
    for (int64_t r = 0; r < nr; r += 4) {                                                         \
      const int mr = nr - r < 4 ? (int)(nr - r) : 4;                                              \
      for (int k = 0; k < mr; k++)                                                                \
        unpack(__VA_ARGS__(const uint8_t *) w + (r + k) * ldw, n, u + k * ns);                    \
      if (r + 4 < nr) /* the next row tile, into L2 while this one runs */                        \
        for (size_t o = 0; o < 4 * ldw; o += 64)                                                  \
          _mm_prefetch((const char *)w + (r + 4) * ldw + o, _MM_HINT_T1);                         \
      for (int64_t t = 0; t < nt; t += MT) {                                                      \
        const int mt = nt - t < MT ? (int)(nt - t) : MT;                                          \
        TILE_SWITCH6(utile, mr, mt, u, ns, (const uint8_t *)x + t * ldx, ldx, n, y + t * ldy + r, \
                     ldy)                                                                         \
      }                                                                                           \
    }                                                                                             \
  } while (0)

VNNI static void gemm_q4_0(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(q4_0_tile);
  } else if (n <= UNP_MAX_COLS) {
    GEMM_WALK_UNP(q32_unp, 64, q32_unpack_row, q4_0_utile, 4, false, );
  } else {
    GEMM_WALK(q4_0_tile, 4, 4);
  }
}

VNNI static void gemm_q8_0(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(q8_0_tile);
  } else if (n <= UNP_MAX_COLS) {
    GEMM_WALK_UNP(q32_unp, 64, q32_unpack_row, q8_0_utile, 4, true, );
  } else {
    GEMM_WALK(q8_0_tile, 4, 4);
  }
}

/* ---- Q4_K and Q6_K: 256-blocks in four 64-element steps -----------------------
 * maddubs (u8 weight x s8 activation, pairs to s16) then dpwssd with the
 * sub-block scales accumulates sum_g sc_g * dot_g in int32 over the block;
 * one float fma per block applies d * dx. Q4_K's mins use the activation
 * sums per 16; Q6_K's offset 32 is -32 * sc_g * bsum_g, one more dpwssd. */

typedef struct kq_row {
  __m512i sc16; /* the block's scales as int16 (Q4_K: 8, Q6_K: 16) */
  __m512i minv; /* Q4_K: m_j per bsum (16 x int16); Q6_K: -32 * sc_g (16 x int16) */
  float d, dmin;
} kq_row;

/* Q4_K's 12 scale bytes to 8 scales and 8 mins (ggml's get_scale_min_k4 for
 * all j at once, in 32-bit lanes), and d, dmin with the F16C conversion. */
VNNI INLINE void q4k_row(const uint8_t *b, kq_row *o) {
  /* lanes u0 u1 u2 of the scales (the 4th lane is qs, unused) */
  const __m128i a = _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q4_k, scales)));
  const __m128i k1 = _mm_set1_epi32(0x3f3f3f3f), k2 = _mm_set1_epi32(0x0f0f0f0f),
                k3 = _mm_set1_epi32(0x03030303);
  const __m128i xv = _mm_shuffle_epi32(a, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
  const __m128i yv = _mm_shuffle_epi32(a, _MM_SHUFFLE(2, 2, 2, 2)); /* u2 */
  const __m128i hi = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(xv, 6), k3), 4);
  const __m128i lo = _mm_and_si128(_mm_srlv_epi32(yv, _mm_set_epi32(4, 0, 0, 0)), k2);
  /* scales 0-3, scales 4-7, mins 0-3, mins 4-7 */
  const __m128i sm = _mm_blend_epi32(_mm_and_si128(xv, k1), _mm_or_si128(lo, hi), 0xa);
  o->sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sm));
  o->minv = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)));
  uint32_t dd;
  memcpy(&dd, b, 4);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd));
  o->d = _mm_cvtss_f32(f);
  o->dmin = _mm_cvtss_f32(_mm_movehdup_ps(f));
}

VNNI INLINE void q6k_row(const uint8_t *b, kq_row *o) {
  const __m256i sc =
      _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q6_k, scales))));
  o->sc16 = _mm512_castsi256_si512(sc);
  o->minv = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc, _mm256_set1_epi16(-32)));
  o->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(tl_rd_u16(b + offsetof(tl_block_q6_k, d)))));
  o->dmin = 0;
}

/* Weights of step s (elements 64 s .. 64 s + 63) as u8, and their scales per int16 pair. */
VNNI INLINE void q4k_step(const uint8_t *b, const kq_row *o, int s, __m512i *wq, __m512i *sv) {
  const __m256i v = _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q4_k, qs) + 32 * s));
  const __m256i m4 = _mm256_set1_epi8(15);
  *wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                           _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
  const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * s)),
                                         _mm256_set1_epi16((short)(2 * s + 1)), 1);
  *sv = _mm512_permutexvar_epi16(idx, o->sc16);
}

VNNI INLINE void q6k_step(const uint8_t *b, const kq_row *o, int s, __m512i *wq, __m512i *sv) {
  const int h = s >> 1, kk = s & 1;
  const __m512i ql = _mm512_loadu_si512(b + offsetof(tl_block_q6_k, ql) + 64 * h);
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i lo = _mm512_and_si512(kk ? _mm512_srli_epi16(ql, 4) : ql, m4);
  const __m256i q32 =
      _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q6_k, qh) + 32 * h));
  __m512i hv = _mm512_inserti64x4(_mm512_castsi256_si512(q32), _mm256_srli_epi16(q32, 2), 1);
  if (kk) hv = _mm512_srli_epi16(hv, 4);
  hv = _mm512_and_si512(hv, _mm512_set1_epi8(3));
  *wq = _mm512_or_si512(lo, _mm512_slli_epi16(hv, 4));
  const __m512i idx = _mm512_set_epi16(
      (short)(4 * s + 3), (short)(4 * s + 3), (short)(4 * s + 3), (short)(4 * s + 3),
      (short)(4 * s + 3), (short)(4 * s + 3), (short)(4 * s + 3), (short)(4 * s + 3),
      (short)(4 * s + 2), (short)(4 * s + 2), (short)(4 * s + 2), (short)(4 * s + 2),
      (short)(4 * s + 2), (short)(4 * s + 2), (short)(4 * s + 2), (short)(4 * s + 2),
      (short)(4 * s + 1), (short)(4 * s + 1), (short)(4 * s + 1), (short)(4 * s + 1),
      (short)(4 * s + 1), (short)(4 * s + 1), (short)(4 * s + 1), (short)(4 * s + 1),
      (short)(4 * s), (short)(4 * s), (short)(4 * s), (short)(4 * s), (short)(4 * s),
      (short)(4 * s), (short)(4 * s), (short)(4 * s));
  *sv = _mm512_permutexvar_epi16(idx, o->sc16);
}

VNNI INLINE void kq_tile(bool six, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t bsz = six ? sizeof(tl_block_q6_k) : sizeof(tl_block_q4_k);
  __m512 acc[8][4];
  ZERO_ACC(acc, R, T);
  for (int64_t i = 0; i < n / 256; i++) {
    kq_row rw[8];
    __m512i ia[8][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      if (T == 1) pf_next(w + r * ldw + i * bsz, ldw, R, bsz);
      if (six)
        q6k_row(w + r * ldw + i * bsz, &rw[r]);
      else
        q4k_row(w + r * ldw + i * bsz, &rw[r]);
    }
    /* Q6_K: start from -32 * sum_g sc_g * bsum_g; Q4_K: from 0 */
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m512i bs = _mm512_zextsi256_si512(
          _mm256_loadu_si256((const __m256i *)(tl_act_bsum(x + t * ldx, n) + 16 * i)));
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) ia[r][t] =
          six ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), rw[r].minv, bs)
              : _mm512_setzero_si512();
    }
    _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
      __m512i wq[8], sv[8];
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        if (six)
          q6k_step(w + r * ldw + i * bsz, &rw[r], s, &wq[r], &sv[r]);
        else
          q4k_step(w + r * ldw + i * bsz, &rw[r], s, &wq[r], &sv[r]);
      }
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        const __m512i a = _mm512_loadu_si512(x + t * ldx + 256 * i + 64 * s);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) ia[r][t] =
            _mm512_dpwssd_epi32(ia[r][t], _mm512_maddubs_epi16(wq[r], a), sv[r]);
      }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const uint8_t *xr = x + t * ldx;
      const float dx = tl_act_d(xr, n)[i];
      __m512i bs = _mm512_setzero_si512();
      if (!six)
        bs = _mm512_zextsi256_si512(
            _mm256_loadu_si256((const __m256i *)(tl_act_bsum(xr, n) + 16 * i)));
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        acc[r][t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][t]), _mm512_set1_ps(rw[r].d * dx), acc[r][t]);
        if (!six) {
          const __m512i mi = _mm512_madd_epi16(rw[r].minv, bs);
          acc[r][t] =
              _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mi), _mm512_set1_ps(rw[r].dmin * dx), acc[r][t]);
        }
      }
    }
  }
  STORE_ACC(acc, R, T);
}

VNNI INLINE void q4_k_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, const int R, const int T) {
  kq_tile(false, w, ldw, x, ldx, n, y, ldy, R, T);
}

VNNI INLINE void q6_k_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, const int R, const int T) {
  kq_tile(true, w, ldw, x, ldx, n, y, ldy, R, T);
}

/* Unpacked K-quant row tile: per 256-block and row, the four steps' u8 weights
 * and int16 scale vectors, the min / offset vector and d, dmin. */
typedef struct kq_unp {
  __m512i wq[4], sv[4], minv;
  float d, dmin, pad[14];
} kq_unp;

VNNI INLINE void kq_unpack_row(bool six, const uint8_t *b, int64_t n, kq_unp *u) {
  const size_t bsz = six ? sizeof(tl_block_q6_k) : sizeof(tl_block_q4_k);
  for (int64_t i = 0; i < n / 256; i++, b += bsz, u++) {
    kq_row rw;
    if (six)
      q6k_row(b, &rw);
    else
      q4k_row(b, &rw);
    _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
      if (six)
        q6k_step(b, &rw, s, &u->wq[s], &u->sv[s]);
      else
        q4k_step(b, &rw, s, &u->wq[s], &u->sv[s]);
    }
    u->minv = rw.minv;
    u->d = rw.d;
    u->dmin = rw.dmin;
  }
}

VNNI INLINE void kq_utile(bool six, const kq_unp *u, int64_t nsb, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[4][6];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nsb; i++) {
    __m512i ia[4][6];
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      const __m512i bs = _mm512_zextsi256_si512(
          _mm256_loadu_si256((const __m256i *)(tl_act_bsum(x + t * ldx, n) + 16 * i)));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] =
          six ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), u[r * nsb + i].minv, bs)
              : _mm512_setzero_si512();
    }
    for (int s = 0; s < 4; s++) {
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
        const __m512i a = _mm512_loadu_si512(x + t * ldx + 256 * i + 64 * s);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
          const kq_unp *ur = u + r * nsb + i;
          ia[r][t] = _mm512_dpwssd_epi32(ia[r][t], _mm512_maddubs_epi16(ur->wq[s], a), ur->sv[s]);
        }
      }
    }
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      const uint8_t *xr = x + t * ldx;
      const float dx = tl_act_d(xr, n)[i];
      __m512i bs = _mm512_setzero_si512();
      if (!six)
        bs = _mm512_zextsi256_si512(
            _mm256_loadu_si256((const __m256i *)(tl_act_bsum(xr, n) + 16 * i)));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const kq_unp *ur = u + r * nsb + i;
        acc[r][t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][t]), _mm512_set1_ps(ur->d * dx), acc[r][t]);
        if (!six)
          acc[r][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(ur->minv, bs)),
                                       _mm512_set1_ps(ur->dmin * dx), acc[r][t]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) y[t * ldy + r] =
          _mm512_reduce_add_ps(acc[r][t]);
}

VNNI INLINE void q4_k_utile(const kq_unp *u, int64_t nsb, const uint8_t *x, size_t ldx, int64_t n,
                            float *y, int64_t ldy, const int R, const int T) {
  kq_utile(false, u, nsb, x, ldx, n, y, ldy, R, T);
}

VNNI INLINE void q6_k_utile(const kq_unp *u, int64_t nsb, const uint8_t *x, size_t ldx, int64_t n,
                            float *y, int64_t ldy, const int R, const int T) {
  kq_utile(true, u, nsb, x, ldx, n, y, ldy, R, T);
}

#define KQ_MT 3

VNNI static void gemm_q4_k(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(q4_k_tile);
  } else if (n <= UNP_MAX_COLS) {
    GEMM_WALK_UNP(kq_unp, 256, kq_unpack_row, q4_k_utile, KQ_MT, false, );
  } else {
    GEMM_WALK(q4_k_tile, 2, 4)
  }
}

VNNI static void gemm_q6_k(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(q6_k_tile);
  } else if (n <= UNP_MAX_COLS) {
    GEMM_WALK_UNP(kq_unp, 256, kq_unpack_row, q6_k_utile, KQ_MT, true, );
  } else {
    GEMM_WALK(q6_k_tile, 2, 4)
  }
}

/* ---- F32 / F16 / BF16 weights, f32 activations ---------------------------------- */

VNNI INLINE __m512 ld_w(uint32_t type, const uint8_t *p, __mmask16 m) {
  if (type == TL_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  if (type == TL_TYPE_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

VNNI INLINE void fl_tile(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  __m512 acc[8][6];
  ZERO_ACC(acc, R, T);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 wv[8];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      if (T == 1 && (i & 31) == 0) pf_next(w + r * ldw + i * es, ldw, R, 32 * es);
      wv[r] = ld_w(type, w + r * ldw + i * es, m);
    }
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(const void *)(x + t * ldx) + i);
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r][t] =
          _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  STORE_ACC(acc, R, T);
}

VNNI INLINE void f32_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                          float *y, int64_t ldy, const int R, const int T) {
  fl_tile(TL_TYPE_F32, w, ldw, x, ldx, n, y, ldy, R, T);
}
VNNI INLINE void f16_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                          float *y, int64_t ldy, const int R, const int T) {
  fl_tile(TL_TYPE_F16, w, ldw, x, ldx, n, y, ldy, R, T);
}
VNNI INLINE void bf16_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, const int R, const int T) {
  fl_tile(TL_TYPE_BF16, w, ldw, x, ldx, n, y, ldy, R, T);
}

#define FL_MT 6

VNNI static void gemm_f32(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(f32_tile);
  } else {
    GEMM_WALK6(f32_tile, 4, FL_MT);
  }
}

VNNI static void gemm_f16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(f16_tile);
  } else {
    GEMM_WALK6(f16_tile, 4, FL_MT);
  }
}

VNNI static void gemm_bf16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK_DEC(bf16_tile);
  } else {
    GEMM_WALK6(bf16_tile, 4, FL_MT);
  }
}

void tl_cpu_fill_avx512vnni(tl_cpu_kernels *k) {
  tl_cpu_fill_avx512(k);
  k->name = "avx512vnni";
  k->quant_act[TL_ACT_Q8_32] = qact_q8_32;
  k->quant_act[TL_ACT_Q8_256] = qact_q8_256;
  k->gemm[TL_TYPE_Q4_0] = gemm_q4_0;
  k->gemm[TL_TYPE_Q8_0] = gemm_q8_0;
  k->gemm[TL_TYPE_Q4_K] = gemm_q4_k;
  k->gemm[TL_TYPE_Q6_K] = gemm_q6_k;
  k->gemm[TL_TYPE_F32] = gemm_f32;
  k->gemm[TL_TYPE_F16] = gemm_f16;
  k->gemm[TL_TYPE_BF16] = gemm_bf16;
}

bool tl_cpu_has_avx512vnni(void) {
  __builtin_cpu_init();
  return tl_cpu_has_avx512() && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512dq");
}
#endif
