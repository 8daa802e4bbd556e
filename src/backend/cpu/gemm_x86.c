/* AVX-512 VNNI matrix kernels (the "avx512vnni" kernel set): activation
 * quantizers, integer gemm for every quantized type (Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0 on Q8_32 activations; Q2_K .. Q6_K on Q8_256 ones), and f32-activation
 * gemm for F32/F16/BF16 weights. Each kernel
 * walks register tiles of a few weight rows x a few tokens:
 *  - several tokens (prefill): the quantized types unpack a tile of 4 rows
 *    once into an L1-resident buffer (u8 weights, spread scales) and run
 *    4 x 4 (32-blocks) or 4 x 3 (K-quants) tiles over all tokens on it,
 *    prefetching the next row tile into L2; float weights use 4 x 6 tiles;
 *  - one token (decode): 8-row tiles (worked in two halves of 4 rows per
 *    block, so that the registers hold) that prefetch the next tile's bytes
 *    in software (the hardware prefetchers alone reach a fraction of the
 *    memory bandwidth here).
 * Compiled with per-function target attributes, selected at run time
 * (dispatch.c), and tested against the scalar reference
 * (tests/unit/test_qkernels.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "backend/cpu/qkernels.h"
#include "quant/quant_iq.h"

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

/* Two floats (the second 0 when !two) at p, 4-byte aligned (Q8_32's s array
 * starts at an odd float when n / 32 is odd). */
VNNI INLINE __m128 f32x2(const float *p, bool two) {
  return two ? _mm_castsi128_ps(_mm_loadu_si64(p)) : _mm_load_ss(p);
}

/* Walk the rows in tiles of MR and, for each, the tokens in tiles of MT; the
 * partial tiles token by token (with the one-token tiles, so that only one
 * more tile size is compiled per type). */
#define GEMM_WALK(tile, MR, MT)                                                                    \
  for (int64_t r = 0; r < nr; r += MR) {                                                           \
    const int mr = nr - r < MR ? (int)(nr - r) : MR;                                               \
    const uint8_t *wr = (const uint8_t *)w + r * ldw;                                              \
    for (int64_t t = 0; t < nt; t += MT) {                                                         \
      const int mt = nt - t < MT ? (int)(nt - t) : MT;                                             \
      if (mr == MR && mt == MT) {                                                                  \
        tile(wr, ldw, (const uint8_t *)x + t * ldx, ldx, n, y + t * ldy + r, ldy, MR, MT);         \
      } else {                                                                                     \
        for (int64_t u = t; u < t + mt; u++)                                                       \
          TILE_SWITCH(tile, mr, 1, wr, ldw, (const uint8_t *)x + u * ldx, ldx, n, y + u * ldy + r, \
                      ldy)                                                                         \
      }                                                                                            \
    }                                                                                              \
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

/* Columns up to which the unpacked buffers (on the stack) are used. */
#define UNP_MAX_COLS 16384

/* Rows in tiles of 4 unpacked once each (unpack(..., row, n, buffer)), tokens in
 * tiles of up to MT. */
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

/* ---- 32-blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): two blocks per 512-bit step -------
 * Weights as u8 (4 bits: the nibble; 5 bits: nibble | high bit << 4; Q8_0:
 * q + 128), activations s8: VNNI dpbusd sums w * a per 4 bytes. The offset (8,
 * 16 or 128) times the sum of the activations, taken per token with one more
 * dpbusd, is subtracted by starting from it; Q4_1 and Q5_1 add m * s per
 * block (s = dx * sum(q), stored in the activation row) in one lane of the
 * block. Lanes 0-7 hold the first block, 8-15 the second. */

/* IQ4_NL is laid out as Q4_0 (f16 d, 16 nibble bytes); its nibbles index the
 * 16 non-linear values, looked up (vpshufb) as u8 value + 128, offset 128. */
typedef enum { Q32_4_0, Q32_4_1, Q32_5_0, Q32_5_1, Q32_8_0, Q32_IQ4NL } q32_kind;

INLINE size_t q32_bs(q32_kind k) {
  return k == Q32_4_0 || k == Q32_IQ4NL ? sizeof(tl_block_q4_0)
         : k == Q32_4_1                 ? sizeof(tl_block_q4_1)
         : k == Q32_5_0                 ? sizeof(tl_block_q5_0)
         : k == Q32_5_1                 ? sizeof(tl_block_q5_1)
                                        : sizeof(tl_block_q8_0);
}

INLINE size_t q32_qs(q32_kind k) {
  return k == Q32_4_0 || k == Q32_IQ4NL ? offsetof(tl_block_q4_0, qs)
         : k == Q32_4_1                 ? offsetof(tl_block_q4_1, qs)
         : k == Q32_5_0                 ? offsetof(tl_block_q5_0, qs)
         : k == Q32_5_1                 ? offsetof(tl_block_q5_1, qs)
                                        : offsetof(tl_block_q8_0, qs);
}

INLINE size_t q32_qh(q32_kind k) {
  return k == Q32_5_0 ? offsetof(tl_block_q5_0, qh) : offsetof(tl_block_q5_1, qh);
}

INLINE bool q32_five(q32_kind k) {
  return k == Q32_5_0 || k == Q32_5_1;
}
INLINE bool q32_min(q32_kind k) {
  return k == Q32_4_1 || k == Q32_5_1;
}

/* The offset subtracted from the u8 weights (0: none). */
INLINE int q32_off(q32_kind k) {
  return k == Q32_4_0 ? 8 : k == Q32_5_0 ? 16 : k == Q32_8_0 || k == Q32_IQ4NL ? 128 : 0;
}

/* Word indices b .. b + 7, highest first (for _mm512_set_epi16). */
#define IDX8(b)                                                                             \
  (short)((b) + 7), (short)((b) + 6), (short)((b) + 5), (short)((b) + 4), (short)((b) + 3), \
      (short)((b) + 2), (short)((b) + 1), (short)(b)
#define REP8(v) \
  (short)(v), (short)(v), (short)(v), (short)(v), (short)(v), (short)(v), (short)(v), (short)(v)

/* Two blocks (the second absent when !two) as 64 u8 weights in element order,
 * d (and with a min, m) spread over 8 lanes each. The 4/5-bit blocks come in
 * one masked load; their qs, d and m sit at even offsets, so word permutes
 * gather them; the high bits become a byte mask. */
VNNI INLINE void q32_load2(q32_kind k, const uint8_t *b, bool two, __m512i *wq, __m512 *dw,
                           __m512 *mw) {
  const size_t bs = q32_bs(k);
  *mw = _mm512_setzero_ps();
  if (k == Q32_8_0) {
    __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
    if (two) v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(b + bs + 2)), 1);
    *wq = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    *dw = spread2(f16x2(b, b + bs, two));
    return;
  }
  const __m512i v = _mm512_maskz_loadu_epi8((1ull << (two ? 2 * bs : bs)) - 1, b);
  const int h0 = (int)q32_qs(k) / 2, h1 = (int)(bs + q32_qs(k)) / 2;
  const __m512i iq = _mm512_set_epi16(IDX8(h1), IDX8(h1), IDX8(h0), IDX8(h0));
  const __m512i sh = _mm512_set_epi16(REP8(4), REP8(0), REP8(4), REP8(0));
  const __m512i q = _mm512_srlv_epi16(_mm512_permutexvar_epi16(iq, v), sh);
  *wq = _mm512_and_si512(q, _mm512_set1_epi8(15));
  if (k == Q32_IQ4NL)
    *wq = _mm512_shuffle_epi8(
        _mm512_broadcast_i32x4(_mm_add_epi8(_mm_loadu_si128((const __m128i *)tl_iq4nl_values),
                                            _mm_set1_epi8((char)0x80))),
        *wq);
  if (q32_five(k)) {
    const uint64_t hb =
        tl_rd_u32(b + q32_qh(k)) | (two ? (uint64_t)tl_rd_u32(b + bs + q32_qh(k)) << 32 : 0);
    *wq = _mm512_mask_add_epi8(*wq, hb, *wq, _mm512_set1_epi8(16));
  }
  /* d0 x 8, d1 x 8 in the low half; m0 x 8, m1 x 8 in the high half */
  const int e = (int)bs / 2;
  const __m512i id = _mm512_set_epi16(REP8(e + 1), REP8(1), REP8(e), REP8(0));
  const __m512i dm = _mm512_permutexvar_epi16(id, v);
  *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
  if (q32_min(k)) *mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1));
}

/* Tokens of blocks i, i + 1 (not the second when !two): a, the offset
 * correction c, the spread scales dx and (with a min) sums sx. */
VNNI INLINE void q32_tok(q32_kind k, const uint8_t *xr, int64_t n, int64_t i, bool two, __m512i *a,
                         __m512i *c, __m512 *dx, __m512 *sx) {
  *a = two ? _mm512_loadu_si512(xr + 32 * i) : _mm512_maskz_loadu_epi8(0xffffffffull, xr + 32 * i);
  *c = _mm512_setzero_si512();
  if (q32_off(k))
    *c = _mm512_sub_epi32(
        *c, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)q32_off(k)), *a));
  *dx = spread2(f32x2(tl_act_d(xr, n) + i, two));
  *sx = q32_min(k) ? spread2(f32x2(tl_act_s(xr, n) + i, two)) : _mm512_setzero_ps();
}

/* acc + dot * d * dx (+ m * s in lanes 0 and 8). */
VNNI INLINE __m512 q32_fma(q32_kind k, __m512i wq, __m512 dw, __m512 mw, __m512i a, __m512i c,
                           __m512 dx, __m512 sx, __m512 acc) {
  const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wq, a));
  acc = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, dx), acc);
  if (q32_min(k)) acc = _mm512_mask3_fmadd_ps(mw, sx, acc, 0x0101);
  return acc;
}

VNNI INLINE void q32_step(q32_kind k, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, int64_t i, bool two, __m512 acc[8][4], const int R,
                          const int T) {
  const size_t bs = q32_bs(k);
  /* Q4_0 / Q8_0: all R rows at once (8 weight streams in flight for
   * decode); the types with high bits or mins in two halves of 4 rows, which
   * keeps their extra registers from spilling */
  const int HALF = q32_five(k) || q32_min(k) ? 4 : 8;
  _Pragma("GCC unroll 2") for (int h = 0; h < R; h += HALF) {
    const int RH = R - h < HALF ? R - h : HALF;
    __m512i wq[8];
    __m512 dw[8], mw[8];
    _Pragma("GCC unroll 8") for (int r = 0; r < RH; r++) {
      const uint8_t *b = w + (h + r) * ldw + (size_t)i * bs;
      if (T == 1) pf_next(b, ldw, R, 2 * bs);
      q32_load2(k, b, two, &wq[r], &dw[r], &mw[r]);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      __m512i a, c;
      __m512 dx, sx;
      q32_tok(k, x + t * ldx, n, i, two, &a, &c, &dx, &sx);
      _Pragma("GCC unroll 8") for (int r = 0; r < RH; r++) acc[h + r][t] =
          q32_fma(k, wq[r], dw[r], mw[r], a, c, dx, sx, acc[h + r][t]);
    }
  }
}

VNNI INLINE void q32_tile(q32_kind k, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[8][4];
  ZERO_ACC(acc, R, T);
  const int64_t nb = n / 32;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) q32_step(k, w, ldw, x, ldx, n, i, true, acc, R, T);
  if (i < nb) q32_step(k, w, ldw, x, ldx, n, i, false, acc, R, T);
  STORE_ACC(acc, R, T);
}

/* Q4_0 decode (one token): a dedicated loop. The generic q32_step above gave
 * about two thirds of this loop's tokens/s on TinyLlama Q4_0 (tg32, 2
 * threads: 36-41 against 53-55 tok/s, measured side by side). */
VNNI INLINE void q4x_dec_tile(q32_kind k, const uint8_t *w, size_t ldw, const uint8_t *x,
                              size_t ldx, int64_t n, float *y, int64_t ldy, const int R,
                              const int T) {
  (void)ldx;
  (void)T;
  const size_t bs = sizeof(tl_block_q4_0);
  const __m512i koff = _mm512_set1_epi8((char)q32_off(k));
  __m512 acc[8];
  _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
  const int64_t nb = n / 32;
  for (int64_t i = 0; i < nb; i += 2) {
    const bool two = i + 2 <= nb;
    __m512i wq[8];
    __m512 dw[8], mw;
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      const uint8_t *b = w + r * ldw + (size_t)i * bs;
      pf_next(b, ldw, R, 2 * bs);
      q32_load2(k, b, two, &wq[r], &dw[r], &mw);
    }
    const __m512i a =
        two ? _mm512_loadu_si512(x + 32 * i) : _mm512_maskz_loadu_epi8(0xffffffffull, x + 32 * i);
    const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, a));
    const __m512 dx = spread2(f32x2(tl_act_d(x, n) + i, two));
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wq[r], a));
      acc[r] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw[r], dx), acc[r]);
    }
  }
  _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
  (void)ldy;
}

/* Q4_0 and IQ4_NL (the same layout, nibbles looked up) decode with it. */
VNNI INLINE void q4_0_dec_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                               int64_t n, float *y, int64_t ldy, const int R, const int T) {
  q4x_dec_tile(Q32_4_0, w, ldw, x, ldx, n, y, ldy, R, T);
}
VNNI INLINE void iq4_nl_dec_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                                 int64_t n, float *y, int64_t ldy, const int R, const int T) {
  q4x_dec_tile(Q32_IQ4NL, w, ldw, x, ldx, n, y, ldy, R, T);
}

/* For several tokens, a tile's rows are unpacked once into an L1-resident
 * buffer (per 64-element step: 64 u8 weights, then the two block scales
 * spread over 8 lanes each, then for Q4_1 / Q5_1 the mins the same way) and
 * the token tiles read it from there (with the load / store intrinsics: the
 * two layouts share the buffer code). */
typedef struct q32_unp {
  __m512i wq;
  __m512 dw;
} q32_unp;

typedef struct q32m_unp {
  __m512i wq;
  __m512 dw, mw;
} q32m_unp;

INLINE size_t q32_usz(q32_kind k) {
  return q32_min(k) ? sizeof(q32m_unp) : sizeof(q32_unp);
}

VNNI INLINE void q32_unpack_row(q32_kind k, const uint8_t *b, int64_t n, void *u) {
  const size_t bs = q32_bs(k), usz = q32_usz(k);
  const int64_t nb = n / 32;
  uint8_t *p = u;
  for (int64_t i = 0; i < nb; i += 2, b += 2 * bs, p += usz) {
    __m512i wq;
    __m512 dw, mw;
    q32_load2(k, b, i + 2 <= nb, &wq, &dw, &mw);
    _mm512_store_si512(p, wq);
    _mm512_store_ps(p + 64, dw);
    if (q32_min(k)) _mm512_store_ps(p + 128, mw);
  }
}

VNNI INLINE void q32_utile(q32_kind k, const void *u, int64_t ns, const uint8_t *x, size_t ldx,
                           int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t usz = q32_usz(k);
  __m512 acc[4][6];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
  const bool odd = (n / 32) % 2 != 0;
  for (int64_t s = 0; s < ns; s++) {
    const bool two = !odd || s + 1 < ns;
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      __m512i a, c;
      __m512 dx, sx;
      if (two)
        q32_tok(k, x + t * ldx, n, 2 * s, true, &a, &c, &dx, &sx);
      else
        q32_tok(k, x + t * ldx, n, 2 * s, false, &a, &c, &dx, &sx);
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const uint8_t *p = (const uint8_t *)u + (size_t)(r * ns + s) * usz;
        const __m512 mw = q32_min(k) ? _mm512_load_ps(p + 128) : _mm512_setzero_ps();
        acc[r][t] =
            q32_fma(k, _mm512_load_si512(p), _mm512_load_ps(p + 64), mw, a, c, dx, sx, acc[r][t]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) y[t * ldy + r] =
          _mm512_reduce_add_ps(acc[r][t]);
}

/* Prefill for Q4_0 with the rows across the lanes: 16 rows are
 * unpacked per block into 8 vectors whose lane r holds 4 u8 weights of row r
 * (weights 4g .. 4g + 3 in vector g), so that dpbusd with a token's 4
 * activations broadcast from memory adds to 16 rows' sums at once: a block
 * takes 8 dpbusd per token into one int32 sum per row, and the float work
 * (the scales) is per block, token and 16 rows, rather than per two lanes'
 * sums as in q32_utile. The weights' offset (8) is taken off in int32
 * by starting each sum from -off * sum(a) of the token's block, so the sums
 * are exact; sum(a) is s / d of the activation row, exact after rounding
 * (s = d * sum(a) in float, |sum(a)| <= 32 * 127).
 * The sums round differently from the decode tile's (per block, then across
 * blocks, rather than per lane pair, then across lanes), so a token's logits
 * from a batch and from decoding agree to rounding, except where that moves an
 * activation's int8 rounding (llama.cpp's gemm and gemv differ the same way).
 * Q8_0 keeps q32_utile, which matches its decode bit for bit: the same
 * arithmetic in decode (tried: rows summed per block, then turned across)
 * cost a third of Q4_0's tg. */
#define QT_ROWS 16
#define QT_TOK 8
#define QT_KB 64 /* blocks per unpacked chunk: 16 rows x 64 blocks, 36 KiB */
#define QT_TG 64 /* tokens whose offsets are taken per chunk */

typedef struct qt_unp {
  __m512i w[8];
  __m512 dw;
} qt_unp;

/* Q4_0 rows 0 .. 15 of w (rows from nr on repeat the last one), blocks b0 .. b0 + nbk - 1. */
VNNI INLINE void qt_unpack(q32_kind k, const uint8_t *w, size_t ldw, int64_t nr, int64_t b0,
                           int64_t nbk, qt_unp *u) {
  /* Each row's 16 qs bytes in one 128-bit load, four rows to a register
   * (row 4j + l in lane l of z[j]); dword h of the 16 rows (lane r: row r)
   * then comes from two two-source permutes and an insert. Gathering the qs
   * dwords (four 16-lane gathers a block, as for d) made the unpacking the
   * larger part of a batch of a few tokens: TinyLlama Q4_0, 2 threads, side by
   * side on a busy machine, pp8 82-92 against 63-65 tok/s (the gathers, or the
   * unpacked tiles of q32_utile), pp64 195-229 against 164-174. */
  const size_t bs = q32_bs(k);
  const uint8_t *rp[QT_ROWS];
  for (int r = 0; r < QT_ROWS; r++)
    rp[r] = w + (size_t)((r < nr ? r : nr - 1) * (int64_t)ldw) + (size_t)b0 * bs;
  int32_t offs[QT_ROWS];
  for (int r = 0; r < QT_ROWS; r++) offs[r] = (int32_t)((r < nr ? r : nr - 1) * (int64_t)ldw);
  const __m512i vo = _mm512_loadu_si512(offs);
  const __m512i lo4 = _mm512_set1_epi8(15);
  __m512i idx[4];
  for (int h = 0; h < 4; h++) {
    int32_t e[16];
    for (int j = 0; j < 16; j++) e[j] = j < 4 ? 4 * j + h : j < 8 ? 16 + 4 * (j - 4) + h : 0;
    idx[h] = _mm512_loadu_si512(e);
  }
  for (int64_t b = 0; b < nbk; b++) {
    const size_t o = (size_t)b * bs;
    if ((b & 3) == 0) /* 16 streams: ahead of the hardware prefetcher */
      for (int r = 0; r < QT_ROWS; r++)
        _mm_prefetch((const char *)rp[r] + o + 16 * bs, _MM_HINT_T0);
    __m512i z[4];
    _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[4 * j] + o + 2)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 * j + 1] + o + 2)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 * j + 2] + o + 2)), 2);
      z[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 * j + 3] + o + 2)), 3);
    }
    _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {
      const __m512i lo = _mm512_permutex2var_epi32(z[0], idx[h], z[1]);
      const __m512i hi = _mm512_permutex2var_epi32(z[2], idx[h], z[3]);
      const __m512i q = _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1);
      u[b].w[h] = _mm512_and_si512(q, lo4);
      u[b].w[h + 4] = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
    }
    const __m512i dg = _mm512_i32gather_epi32(vo, (const void *)(w + (size_t)(b0 + b) * bs), 1);
    const __m256i d = _mm512_cvtepi32_epi16(dg);
    u[b].dw = _mm512_cvtph_ps(d);
  }
}

/* cs[b] = -off * sum of the activations of blocks b0 .. b0 + nbk - 1 of one row. */
VNNI INLINE void qt_offsets(q32_kind k, const uint8_t *xr, int64_t n, int64_t b0, int64_t nbk,
                            int32_t *cs) {
  const float *d = tl_act_d(xr, n) + b0, *s = tl_act_s(xr, n) + b0;
  const __m512i off = _mm512_set1_epi32(-q32_off(k));
  for (int64_t b = 0; b < nbk; b += 16) {
    const __mmask16 m = nbk - b >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nbk - b)) - 1);
    const __m512 vd = _mm512_maskz_loadu_ps(m, d + b), vs = _mm512_maskz_loadu_ps(m, s + b);
    const __mmask16 nz = _mm512_mask_cmp_ps_mask(m, vd, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    const __m512i q = _mm512_maskz_cvtps_epi32(nz, _mm512_maskz_div_ps(nz, vs, vd));
    _mm512_mask_storeu_epi32(cs + b, m, _mm512_mullo_epi32(q, off));
  }
}

/* T tokens (rows of x, ldx apart; their offsets cs, QT_KB apart) over the
 * unpacked blocks b0 .. b0 + nbk - 1: y[t * ldy + r] (r < mr) gets the sums,
 * or with add, adds them. */
VNNI INLINE void qt_tile(const qt_unp *u, int64_t b0, int64_t nbk, const uint8_t *x, size_t ldx,
                         const int32_t *cs, int64_t n, float *y, int64_t ldy, int mr, bool add,
                         const int T) {
  __m512 acc[QT_TOK];
  _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nbk; b++) {
    const int64_t bb = b0 + b;
    __m512i ia[QT_TOK];
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) ia[t] =
        _mm512_set1_epi32(cs[t * QT_KB + b]);
    _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) {
      const __m512i wg = _mm512_load_si512(&u[b].w[g]);
      _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) ia[t] = _mm512_dpbusd_epi32(
          ia[t], wg, _mm512_set1_epi32((int)tl_rd_u32(x + t * ldx + 32 * bb + 4 * g)));
    }
    const __m512 dw = _mm512_load_ps((const float *)&u[b].dw);
    _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
      const __m512 f =
          _mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), _mm512_set1_ps(tl_act_d(x + t * ldx, n)[bb]));
      acc[t] = _mm512_fmadd_ps(f, dw, acc[t]);
    }
  }
  const __mmask16 m = (__mmask16)((1u << mr) - 1);
  _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
    float *yt = y + t * ldy;
    __m512 v = acc[t];
    if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, yt));
    _mm512_mask_storeu_ps(yt, m, v);
  }
}

/* Column chunks of QT_KB blocks (each token's offsets for it, then each row
 * tile unpacked once and run over the token tiles), for QT_TG tokens at a time. */
VNNI INLINE void qt_gemm(q32_kind k, const uint8_t *w, size_t ldw, int64_t nr, const uint8_t *x,
                         size_t ldx, int64_t nt, int64_t n, float *y, int64_t ldy) {
  qt_unp u[QT_KB];
  int32_t cs[QT_TG * QT_KB] __attribute__((aligned(64)));
  const int64_t nb = n / 32;
  for (int64_t t0 = 0; t0 < nt; t0 += QT_TG) {
    const int64_t ntg = nt - t0 < QT_TG ? nt - t0 : QT_TG;
    for (int64_t b0 = 0; b0 < nb; b0 += QT_KB) {
      const int64_t nbk = nb - b0 < QT_KB ? nb - b0 : QT_KB;
      for (int64_t t = 0; t < ntg; t++)
        qt_offsets(k, x + (t0 + t) * ldx, n, b0, nbk, cs + t * QT_KB);
      for (int64_t r = 0; r < nr; r += QT_ROWS) {
        const int mr = nr - r < QT_ROWS ? (int)(nr - r) : QT_ROWS;
        qt_unpack(k, w + r * ldw, ldw, mr, b0, nbk, u);
        for (int64_t t = 0; t < ntg; t += QT_TOK) {
          const int64_t mt = ntg - t < QT_TOK ? ntg - t : QT_TOK;
          const uint8_t *xt = x + (t0 + t) * ldx;
          const int32_t *ct = cs + t * QT_KB;
          float *yt = y + (t0 + t) * ldy + r;
          const bool add = b0 > 0;
          TL_SWITCH_G8(qt_tile, mt, u, b0, nbk, xt, ldx, ct, n, yt, ldy, mr, add)
        }
      }
    }
  }
}

/* The tiles and the gemm of a 32-block type. */
#define GEMM_Q32(name, kind, unp_t)                                                              \
  VNNI INLINE void name##_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,       \
                               int64_t n, float *y, int64_t ldy, const int R, const int T) {     \
    q32_tile(kind, w, ldw, x, ldx, n, y, ldy, R, T);                                             \
  }                                                                                              \
  VNNI INLINE void name##_utile(const void *u, int64_t ns, const uint8_t *x, size_t ldx,         \
                                int64_t n, float *y, int64_t ldy, const int R, const int T) {    \
    q32_utile(kind, u, ns, x, ldx, n, y, ldy, R, T);                                             \
  }                                                                                              \
  VNNI static void gemm_##name(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    if (nt == 1) {                                                                               \
      GEMM_WALK_DEC(name##_dec_tile);                                                            \
    } else if (kind == Q32_4_0 && ldw <= INT32_MAX / QT_ROWS) {                                  \
      qt_gemm(kind, (const uint8_t *)w, ldw, nr, (const uint8_t *)x, ldx, nt, n, y, ldy);        \
    } else if (n <= UNP_MAX_COLS) {                                                              \
      GEMM_WALK_UNP(unp_t, 64, q32_unpack_row, name##_utile, 4, kind, );                         \
    } else {                                                                                     \
      GEMM_WALK(name##_tile, 4, 4);                                                              \
    }                                                                                            \
  }

/* decode tiles: the generic one, except for Q4_0 (q4_0_dec_tile above) */
#define q4_1_dec_tile q4_1_tile
#define q5_0_dec_tile q5_0_tile
#define q5_1_dec_tile q5_1_tile
#define q8_0_dec_tile q8_0_tile
GEMM_Q32(q4_0, Q32_4_0, q32_unp)
GEMM_Q32(q4_1, Q32_4_1, q32m_unp)
GEMM_Q32(q5_0, Q32_5_0, q32_unp)
GEMM_Q32(q5_1, Q32_5_1, q32m_unp)
GEMM_Q32(q8_0, Q32_8_0, q32_unp)
GEMM_Q32(iq4_nl, Q32_IQ4NL, q32_unp)

/* ---- K-quants (Q2_K .. Q6_K): 256-blocks in four 64-element steps ---------------
 * Weights as u8 (Q2_K: 0..3; Q3_K: low 2 bits | high bit << 2; Q4_K: the
 * nibble; Q5_K: nibble | high bit << 4; Q6_K: 0..63); maddubs (u8 weight x s8
 * activation, pairs to s16) then dpwssd with the sub-block scales accumulates
 * sum_g sc_g * dot_g in int32 over the block; one float fma per block applies
 * d * dx. The mins of Q2_K, Q4_K and Q5_K use the activation sums per 16
 * (dmin * sum_g m_g * bsum_g); the offsets of Q3_K (4) and Q6_K (32) are
 * -off * sc_g * bsum_g, one more dpwssd that starts the int32 sum. */

/* IQ4_XS goes the same way with signed weights: maddubs takes |value| (u8,
 * at most 127, so the pair sums do not saturate) and the activations negated
 * where the value is negative (a byte mask per row and step, neg); its 6-bit
 * scales - 32 act per 32 as Q4_K's. */
typedef enum { KQ_2, KQ_3, KQ_4, KQ_5, KQ_6, KQ_IQ4XS } kq_kind;

INLINE size_t kq_bs(kq_kind k) {
  return k == KQ_2   ? sizeof(tl_block_q2_k)
         : k == KQ_3 ? sizeof(tl_block_q3_k)
         : k == KQ_4 ? sizeof(tl_block_q4_k)
         : k == KQ_5 ? sizeof(tl_block_q5_k)
         : k == KQ_6 ? sizeof(tl_block_q6_k)
                     : sizeof(tl_block_iq4_xs);
}

/* Mins (times dmin and the bsums) or an offset (folded into the int32 sum). */
INLINE bool kq_min(kq_kind k) {
  return k == KQ_2 || k == KQ_4 || k == KQ_5;
}
INLINE bool kq_off(kq_kind k) {
  return k == KQ_3 || k == KQ_6;
}

typedef struct kq_row {
  __m512i sc16; /* the block's scales as int16 (Q4_K, Q5_K: 8 per 32; the others: 16 per 16) */
  __m512i minv; /* mins m_g per bsum, or -off * sc_g (16 x int16) */
  float d, dmin;
} kq_row;

/* d and the f16 after it (dmin) as floats. */
VNNI INLINE void kq_d2(const uint8_t *p, kq_row *o) {
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)tl_rd_u32(p)));
  o->d = _mm_cvtss_f32(f);
  o->dmin = _mm_cvtss_f32(_mm_movehdup_ps(f));
}

VNNI INLINE void q2k_row(const uint8_t *b, kq_row *o) {
  const __m128i sc = _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q2_k, scales)));
  const __m128i m4 = _mm_set1_epi8(15);
  o->sc16 = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sc, m4)));
  o->minv = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4)));
  kq_d2(b + offsetof(tl_block_q2_k, d), o);
}

/* Q3_K's 12 scale bytes to 16 scales - 32 (tl_q3_k_scales for all j at once). */
VNNI INLINE void q3k_row(const uint8_t *b, kq_row *o) {
  const __m128i a = _mm_maskz_loadu_epi8(0xfff, b + offsetof(tl_block_q3_k, scales));
  const __m128i m4 = _mm_set1_epi8(15);
  /* low 4 bits: the low nibbles of bytes 0-7 (j < 8), then their high nibbles */
  const __m128i lo =
      _mm_unpacklo_epi64(_mm_and_si128(a, m4), _mm_and_si128(_mm_srli_epi16(a, 4), m4));
  /* high 2 bits: byte 8 + j % 4 at bit 2 * (j / 4) (the dword of bytes 8-11 per 4 j) */
  const __m128i hi = _mm_and_si128(
      _mm_srlv_epi32(_mm_shuffle_epi32(a, _MM_SHUFFLE(2, 2, 2, 2)), _mm_set_epi32(6, 4, 2, 0)),
      _mm_set1_epi8(3));
  const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
  const __m256i sc = _mm256_cvtepi8_epi16(sc8);
  o->sc16 = _mm512_zextsi256_si512(sc);
  o->minv = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc, _mm256_set1_epi16(-4)));
  o->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(tl_rd_u16(b + offsetof(tl_block_q3_k, d)))));
  o->dmin = 0;
}

/* Q4_K's and Q5_K's 12 scale bytes to 8 scales and 8 mins (ggml's
 * get_scale_min_k4 for all j at once, in 32-bit lanes), and d, dmin. */
VNNI INLINE void q4k_row(const uint8_t *b, kq_row *o) {
  _Static_assert(offsetof(tl_block_q4_k, scales) == offsetof(tl_block_q5_k, scales), "q5_K");
  /* lanes u0 u1 u2 of the scales (the 4th lane is qs / qh, unused) */
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
  kq_d2(b, o);
}

VNNI INLINE void q6k_row(const uint8_t *b, kq_row *o) {
  const __m256i sc =
      _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q6_k, scales))));
  o->sc16 = _mm512_castsi256_si512(sc);
  o->minv = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc, _mm256_set1_epi16(-32)));
  o->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(tl_rd_u16(b + offsetof(tl_block_q6_k, d)))));
  o->dmin = 0;
}

/* IQ4_XS's 8 scales (6 bits - 32, per 32) as int16, and d. */
VNNI INLINE void iq4xs_row(const uint8_t *b, kq_row *o) {
  const __m128i lo8 = _mm_cvtsi32_si128((int)tl_rd_u32(b + offsetof(tl_block_iq4_xs, scales_l)));
  /* nibble j % 2 of byte j / 2, as 16-bit lanes j */
  const __m128i lo16 = _mm_cvtepu8_epi16(lo8);
  const __m128i lo = _mm_and_si128(
      _mm_srlv_epi16(_mm_unpacklo_epi16(lo16, lo16), _mm_set_epi16(4, 0, 4, 0, 4, 0, 4, 0)),
      _mm_set1_epi16(15));
  const __m128i hi = _mm_and_si128(
      _mm_srlv_epi16(_mm_set1_epi16((short)tl_rd_u16(b + offsetof(tl_block_iq4_xs, scales_h))),
                     _mm_set_epi16(14, 12, 10, 8, 6, 4, 2, 0)),
      _mm_set1_epi16(3));
  const __m128i sc = _mm_sub_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi16(32));
  o->sc16 = _mm512_castsi128_si512(sc);
  o->minv = _mm512_setzero_si512();
  o->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(tl_rd_u16(b))));
  o->dmin = 0;
}

VNNI INLINE void kq_row_load(kq_kind k, const uint8_t *b, kq_row *o) {
  if (k == KQ_IQ4XS) iq4xs_row(b, o);
  if (k == KQ_2) q2k_row(b, o);
  if (k == KQ_3) q3k_row(b, o);
  if (k == KQ_4 || k == KQ_5) q4k_row(b, o);
  if (k == KQ_6) q6k_row(b, o);
}

/* Elements 64 s .. 64 s + 63 of 2-bit planes p (Q2_K, Q3_K qs; Q6_K qh) as u8 0..3. */
VNNI INLINE __m512i planes2_step(const uint8_t *p, int s) {
  const __m256i q32 = _mm256_loadu_si256((const __m256i *)(p + 32 * (s >> 1)));
  __m512i hv = _mm512_inserti64x4(_mm512_castsi256_si512(q32), _mm256_srli_epi16(q32, 2), 1);
  if (s & 1) hv = _mm512_srli_epi16(hv, 4);
  return _mm512_and_si512(hv, _mm512_set1_epi8(3));
}

/* Elements 64 s .. 64 s + 63 of 4-bit qs (Q4_K, Q5_K) as u8 0..15. */
VNNI INLINE __m512i nib_step(const uint8_t *p, int s) {
  const __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 * s));
  const __m256i m4 = _mm256_set1_epi8(15);
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
}

/* The high bits of elements 64 s .. 64 s + 63 (Q3_K hmask, Q5_K qh: element
 * 32 j + l is bit j of byte l) as a byte mask. */
VNNI INLINE __mmask64 hbits_step(const uint8_t *p, int s) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * s))),
                                         _mm256_set1_epi8((char)(1 << (2 * s + 1))), 1);
  return _mm512_test_epi8_mask(_mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1), bit);
}

/* The scales per int16 pair of step s: scales per 32 (Q4_K, Q5_K) or per 16. */
VNNI INLINE __m512i sv32_step(const kq_row *o, int s) {
  const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * s)),
                                         _mm256_set1_epi16((short)(2 * s + 1)), 1);
  return _mm512_permutexvar_epi16(idx, o->sc16);
}

VNNI INLINE __m512i sv16_step(const kq_row *o, int s) {
  const __m512i idx =
      _mm512_set_epi16(REP8(4 * s + 3), REP8(4 * s + 2), REP8(4 * s + 1), REP8(4 * s));
  return _mm512_permutexvar_epi16(idx, o->sc16);
}

/* Weights of step s (elements 64 s .. 64 s + 63) as u8, and their scales per
 * int16 pair; IQ4_XS: |value| and the mask of the negative ones in *neg. */
VNNI INLINE void kq_step(kq_kind k, const uint8_t *b, const kq_row *o, int s, __m512i *wq,
                         __m512i *sv, __mmask64 *neg) {
  if (k == KQ_IQ4XS) {
    /* bytes 16 j .. 16 j + 15 of sub-block j: elements l (low nibble), l + 16 */
    const __m256i v =
        _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_iq4_xs, qs) + 32 * s));
    const __m256i m4 = _mm256_set1_epi8(15);
    /* 128-bit lanes: elements 0..15 and 16..31 of sub-block 2 s (low nibbles, then
     * high ones) in lanes 0 and 2, those of 2 s + 1 in lanes 1 and 3; the
     * activations are put in the same order (kq_act) */
    const __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                                           _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
    const __m128i vals = _mm_loadu_si128((const __m128i *)tl_iq4nl_values);
    *wq = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_abs_epi8(vals)), nib);
    *neg = _mm512_cmplt_epu8_mask(nib, _mm512_set1_epi8(8));
    *sv = _mm512_permutexvar_epi16(
        _mm512_set_epi16(REP8(2 * s + 1), REP8(2 * s), REP8(2 * s + 1), REP8(2 * s)), o->sc16);
    return;
  }
  *neg = 0;
  if (k == KQ_2) {
    *wq = planes2_step(b + offsetof(tl_block_q2_k, qs), s);
  } else if (k == KQ_3) {
    const __m512i q = planes2_step(b + offsetof(tl_block_q3_k, qs), s);
    *wq = _mm512_mask_add_epi8(q, hbits_step(b + offsetof(tl_block_q3_k, hmask), s), q,
                               _mm512_set1_epi8(4));
  } else if (k == KQ_4) {
    *wq = nib_step(b + offsetof(tl_block_q4_k, qs), s);
  } else if (k == KQ_5) {
    const __m512i q = nib_step(b + offsetof(tl_block_q5_k, qs), s);
    *wq = _mm512_mask_add_epi8(q, hbits_step(b + offsetof(tl_block_q5_k, qh), s), q,
                               _mm512_set1_epi8(16));
  } else {
    const __m512i ql = _mm512_loadu_si512(b + offsetof(tl_block_q6_k, ql) + 64 * (s >> 1));
    const __m512i lo =
        _mm512_and_si512((s & 1) ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(15));
    const __m512i hv = planes2_step(b + offsetof(tl_block_q6_k, qh), s);
    *wq = _mm512_or_si512(lo, _mm512_slli_epi16(hv, 4));
  }
  *sv = k == KQ_4 || k == KQ_5 ? sv32_step(o, s) : sv16_step(o, s);
}

/* The 64 activations of a step in the order of the weights (IQ4_XS: 128-bit
 * lanes 0, 2, 1, 3; the others: as they are). */
VNNI INLINE __m512i kq_act(kq_kind k, const uint8_t *p) {
  const __m512i a = _mm512_loadu_si512(p);
  return k == KQ_IQ4XS ? _mm512_shuffle_i64x2(a, a, _MM_SHUFFLE(3, 1, 2, 0)) : a;
}

/* The activations with the IQ4_XS signs applied (the others: a). */
VNNI INLINE __m512i kq_sign(kq_kind k, __m512i a, __mmask64 neg) {
  return k == KQ_IQ4XS ? _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a) : a;
}

/* The activation sums per 16 of block i. */
VNNI INLINE __m512i kq_bsum(const uint8_t *xr, int64_t n, int64_t i) {
  return _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(tl_act_bsum(xr, n) + 16 * i)));
}

/* The int32 sum's start: the offset term, or 0. */
VNNI INLINE __m512i kq_start(kq_kind k, __m512i minv, __m512i bs) {
  return kq_off(k) ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), minv, bs) : _mm512_setzero_si512();
}

/* acc + ia * d * dx (- dmin * dx * sum_g m_g * bsum_g). */
VNNI INLINE __m512 kq_fin(kq_kind k, __m512i ia, float d, float dmin, __m512i minv, __m512i bs,
                          float dx, __m512 acc) {
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_set1_ps(d * dx), acc);
  if (kq_min(k))
    acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(minv, bs)),
                           _mm512_set1_ps(dmin * dx), acc);
  return acc;
}

VNNI INLINE void kq_tile(kq_kind k, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t bsz = kq_bs(k);
  __m512 acc[8][4];
  ZERO_ACC(acc, R, T);
  for (int64_t i = 0; i < n / 256; i++) {
    /* 8 rows (decode) in two halves of 4: 8 streams, the registers of 4 */
    _Pragma("GCC unroll 2") for (int h = 0; h < R; h += 4) {
      const int RH = R - h < 4 ? R - h : 4;
      const uint8_t *wh = w + h * ldw + i * bsz;
      kq_row rw[4];
      __m512i ia[4][4];
      _Pragma("GCC unroll 4") for (int r = 0; r < RH; r++) {
        if (T == 1) pf_next(wh + r * ldw, ldw, R, bsz);
        kq_row_load(k, wh + r * ldw, &rw[r]);
      }
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        const __m512i bs = kq_off(k) ? kq_bsum(x + t * ldx, n, i) : _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int r = 0; r < RH; r++) ia[r][t] = kq_start(k, rw[r].minv, bs);
      }
      _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
        __m512i wq[4], sv[4];
        __mmask64 neg[4];
        _Pragma("GCC unroll 4") for (int r = 0; r < RH; r++)
            kq_step(k, wh + r * ldw, &rw[r], s, &wq[r], &sv[r], &neg[r]);
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
          const __m512i a = kq_act(k, x + t * ldx + 256 * i + 64 * s);
          _Pragma("GCC unroll 4") for (int r = 0; r < RH; r++) ia[r][t] = _mm512_dpwssd_epi32(
              ia[r][t], _mm512_maddubs_epi16(wq[r], kq_sign(k, a, neg[r])), sv[r]);
        }
      }
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        const uint8_t *xr = x + t * ldx;
        const float dx = tl_act_d(xr, n)[i];
        const __m512i bs = kq_min(k) ? kq_bsum(xr, n, i) : _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int r = 0; r < RH; r++) acc[h + r][t] =
            kq_fin(k, ia[r][t], rw[r].d, rw[r].dmin, rw[r].minv, bs, dx, acc[h + r][t]);
      }
    }
  }
  STORE_ACC(acc, R, T);
}

/* Unpacked K-quant row tile: per 256-block and row, the four steps' u8 weights
 * and int16 scale vectors, the min / offset vector and d, dmin. */
typedef struct kq_unp {
  __m512i wq[4], sv[4], minv;
  float d, dmin;
  __mmask64 neg[4];
  float pad[6];
} kq_unp;

VNNI INLINE void kq_unpack_row(kq_kind k, const uint8_t *b, int64_t n, kq_unp *u) {
  const size_t bsz = kq_bs(k);
  for (int64_t i = 0; i < n / 256; i++, b += bsz, u++) {
    kq_row rw;
    kq_row_load(k, b, &rw);
    _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++)
        kq_step(k, b, &rw, s, &u->wq[s], &u->sv[s], &u->neg[s]);
    u->minv = rw.minv;
    u->d = rw.d;
    u->dmin = rw.dmin;
  }
}

VNNI INLINE void kq_utile(kq_kind k, const kq_unp *u, int64_t nsb, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[4][6];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nsb; i++) {
    __m512i ia[4][6];
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      const __m512i bs = kq_off(k) ? kq_bsum(x + t * ldx, n, i) : _mm512_setzero_si512();
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] =
          kq_start(k, u[r * nsb + i].minv, bs);
    }
    for (int s = 0; s < 4; s++) {
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
        const __m512i a = kq_act(k, x + t * ldx + 256 * i + 64 * s);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
          const kq_unp *ur = u + r * nsb + i;
          ia[r][t] = _mm512_dpwssd_epi32(
              ia[r][t], _mm512_maddubs_epi16(ur->wq[s], kq_sign(k, a, ur->neg[s])), ur->sv[s]);
        }
      }
    }
    _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
      const uint8_t *xr = x + t * ldx;
      const float dx = tl_act_d(xr, n)[i];
      const __m512i bs = kq_min(k) ? kq_bsum(xr, n, i) : _mm512_setzero_si512();
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const kq_unp *ur = u + r * nsb + i;
        acc[r][t] = kq_fin(k, ia[r][t], ur->d, ur->dmin, ur->minv, bs, dx, acc[r][t]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) y[t * ldy + r] =
          _mm512_reduce_add_ps(acc[r][t]);
}

#define KQ_MT 3

/* The tiles and the gemm of a K-quant type. */
#define GEMM_KQ(name, kind)                                                                      \
  VNNI INLINE void name##_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,       \
                               int64_t n, float *y, int64_t ldy, const int R, const int T) {     \
    kq_tile(kind, w, ldw, x, ldx, n, y, ldy, R, T);                                              \
  }                                                                                              \
  VNNI INLINE void name##_utile(const kq_unp *u, int64_t nsb, const uint8_t *x, size_t ldx,      \
                                int64_t n, float *y, int64_t ldy, const int R, const int T) {    \
    kq_utile(kind, u, nsb, x, ldx, n, y, ldy, R, T);                                             \
  }                                                                                              \
  VNNI static void gemm_##name(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    if (nt == 1) {                                                                               \
      GEMM_WALK_DEC(name##_tile);                                                                \
    } else if (n <= UNP_MAX_COLS) {                                                              \
      GEMM_WALK_UNP(kq_unp, 256, kq_unpack_row, name##_utile, KQ_MT, kind, );                    \
    } else {                                                                                     \
      GEMM_WALK(name##_tile, 2, 4)                                                               \
    }                                                                                            \
  }

GEMM_KQ(q2_k, KQ_2)
GEMM_KQ(q3_k, KQ_3)
GEMM_KQ(q4_k, KQ_4)
GEMM_KQ(q5_k, KQ_5)
GEMM_KQ(q6_k, KQ_6)
GEMM_KQ(iq4_xs, KQ_IQ4XS)

/* ---- F32 / F16 / BF16 weights, f32 activations ---------------------------------- */

VNNI INLINE __m512 ld_w(uint32_t type, const uint8_t *p, __mmask16 m) {
  if (type == TL_TYPE_F32) return _mm512_maskz_loadu_ps(m, p);
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  if (type == TL_TYPE_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The sums of a, b, c and d's lanes, in that order: 14 shuffles and adds
 * where four _mm512_reduce_add_ps take about 30 (a 4 x 6 tile's sums cost a
 * tenth of its 1024-column pass that way). */
VNNI INLINE __m128 sum4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
  /* 128-bit quarters: a0+a2, a1+a3, b0+b2, b1+b3 (and the same for c, d) */
  const __m512 ab =
      _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd =
      _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  /* quarter k: four partial sums of the k-th vector */
  __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  q = _mm512_add_ps(q, _mm512_shuffle_ps(q, q, 0x4e));
  q = _mm512_add_ps(q, _mm512_shuffle_ps(q, q, 0xb1));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), q));
}

/* 16 columns from i (mask m) of an R x T tile: acc[r][t] += w[r] * x[t]. */
VNNI INLINE void fl_step(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t i, __mmask16 m, __m512 acc[4][6], const int R, const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  __m512 wv[4];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] = ld_w(type, w + r * ldw + i * es, m);
  _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
    const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(const void *)(x + t * ldx) + i);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =
        _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
  }
}

/* The prefill tiles (FL_WALK: up to 4 rows x 6 tokens, over n columns),
 * storing their sums in y or, with add, adding them to it; one token takes
 * fl_rows below. With pf, the same columns of 4 rows at pf (the next row
 * tile, on its first pass from memory) are prefetched as the tile goes. */
VNNI INLINE void fl_tile(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, bool add, const uint8_t *pf, const int R,
                         const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  __m512 acc[4][6];
  ZERO_ACC(acc, R, T);
  /* full 16s without masks, and without the prefetch test outside the tile
   * that prefetches (fewer instructions: +3 to +9 % in a microbenchmark, most
   * on a core shared with another tenant), then the rest masked */
  const int64_t n16 = n & ~(int64_t)15;
  if (pf != NULL)
    for (int64_t i = 0; i < n16; i += 16) {
      if ((i * es) % 64 == 0) /* each line once */
        for (int r = 0; r < 4; r++) _mm_prefetch((const char *)pf + r * ldw + i * es, _MM_HINT_T0);
      fl_step(type, w, ldw, x, ldx, i, 0xffff, acc, R, T);
    }
  else
    for (int64_t i = 0; i < n16; i += 16) fl_step(type, w, ldw, x, ldx, i, 0xffff, acc, R, T);
  if (n16 < n) fl_step(type, w, ldw, x, ldx, n16, (__mmask16)((1u << (n - n16)) - 1), acc, R, T);
  _Pragma("GCC unroll 6") for (int t = 0; t < T; t++) {
    const __m512 z = _mm512_setzero_ps();
    const __m128 s =
        sum4_ps(acc[0][t], R > 1 ? acc[1][t] : z, R > 2 ? acc[2][t] : z, R > 3 ? acc[3][t] : z);
    const __mmask8 m = (__mmask8)((1u << R) - 1);
    _mm_mask_storeu_ps(y + t * ldy, m, add ? _mm_add_ps(s, _mm_maskz_loadu_ps(m, y + t * ldy)) : s);
  }
}

VNNI INLINE void f32_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                          float *y, int64_t ldy, bool add, const uint8_t *pf, const int R,
                          const int T) {
  fl_tile(TL_TYPE_F32, w, ldw, x, ldx, n, y, ldy, add, pf, R, T);
}
VNNI INLINE void f16_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                          float *y, int64_t ldy, bool add, const uint8_t *pf, const int R,
                          const int T) {
  fl_tile(TL_TYPE_F16, w, ldw, x, ldx, n, y, ldy, add, pf, R, T);
}
VNNI INLINE void bf16_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx, int64_t n,
                           float *y, int64_t ldy, bool add, const uint8_t *pf, const int R,
                           const int T) {
  fl_tile(TL_TYPE_BF16, w, ldw, x, ldx, n, y, ldy, add, pf, R, T);
}

/* One token: the rows one after another, each with four accumulators over
 * 64 columns at a time, so that the weights are read as one sequential
 * stream rather than as R streams: the memory delivers a single stream
 * faster, and the hardware prefetcher follows it without help (software
 * prefetches 1 to 16 KiB ahead were no faster). */
VNNI INLINE void fl_rows(uint32_t type, const uint8_t *w, size_t ldw, int64_t nr, const float *x,
                         int64_t n, float *y) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  const int64_t n64 = n & ~(int64_t)63;
  for (int64_t r = 0; r < nr; r++) {
    const uint8_t *wr = w + (size_t)r * ldw;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < n64; i += 64) {
      a0 = _mm512_fmadd_ps(ld_w(type, wr + i * es, 0xffff), _mm512_loadu_ps(x + i), a0);
      a1 = _mm512_fmadd_ps(ld_w(type, wr + (i + 16) * es, 0xffff), _mm512_loadu_ps(x + i + 16), a1);
      a2 = _mm512_fmadd_ps(ld_w(type, wr + (i + 32) * es, 0xffff), _mm512_loadu_ps(x + i + 32), a2);
      a3 = _mm512_fmadd_ps(ld_w(type, wr + (i + 48) * es, 0xffff), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (int64_t i = n64; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
      a0 = _mm512_fmadd_ps(ld_w(type, wr + i * es, m), _mm512_maskz_loadu_ps(m, x + i), a0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
}

#define FL_MT 6
/* The prefill walk goes over the columns FL_KC at a time. Within such a
 * pass, a token tile's 6 activation rows (24 KiB) stay in L1 while the row
 * tiles stream past them (from L2, after the first token tile has read them
 * from memory, prefetching one row tile ahead), rather than each 4-row tile
 * streaming the activations from L2 or, for long rows, from L3. In-process
 * A/B on F16 TinyLlama pp128: +14 %. */
#define FL_KC 1024

#define FL_WALK(tile, type)                                                                        \
  for (int64_t k0 = 0; k0 < n; k0 += FL_KC) {                                                      \
    const int64_t kn = n - k0 < FL_KC ? n - k0 : FL_KC;                                            \
    const size_t es = (type) == TL_TYPE_F32 ? 4 : 2;                                               \
    for (int64_t t = 0; t < nt; t += FL_MT) {                                                      \
      const int mt = nt - t < FL_MT ? (int)(nt - t) : FL_MT;                                       \
      for (int64_t r = 0; r < nr; r += 4) {                                                        \
        const int mr = nr - r < 4 ? (int)(nr - r) : 4;                                             \
        TILE_SWITCH6(tile, mr, mt, (const uint8_t *)w + r * ldw + k0 * es, ldw,                    \
                     (const uint8_t *)x + t * ldx + k0 * 4, ldx, kn, y + t * ldy + r, ldy, k0 > 0, \
                     t == 0 && r + 8 <= nr ? (const uint8_t *)w + (r + 4) * ldw + k0 * es : NULL)  \
      }                                                                                            \
    }                                                                                              \
  }

VNNI static void gemm_f32(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    fl_rows(TL_TYPE_F32, (const uint8_t *)w, ldw, nr, (const float *)x, n, y);
  } else {
    FL_WALK(f32_tile, TL_TYPE_F32);
  }
}

VNNI static void gemm_f16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    fl_rows(TL_TYPE_F16, (const uint8_t *)w, ldw, nr, (const float *)x, n, y);
  } else {
    FL_WALK(f16_tile, TL_TYPE_F16);
  }
}

VNNI static void gemm_bf16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    fl_rows(TL_TYPE_BF16, (const uint8_t *)w, ldw, nr, (const float *)x, n, y);
  } else {
    FL_WALK(bf16_tile, TL_TYPE_BF16);
  }
}

void tl_cpu_fill_avx512vnni(tl_cpu_kernels *k) {
  tl_cpu_fill_avx512(k);
  k->name = "avx512vnni";
  k->quant_act[TL_ACT_Q8_32] = qact_q8_32;
  k->quant_act[TL_ACT_Q8_256] = qact_q8_256;
  k->gemm[TL_TYPE_Q4_0] = gemm_q4_0;
  k->gemm[TL_TYPE_Q4_1] = gemm_q4_1;
  k->gemm[TL_TYPE_Q5_0] = gemm_q5_0;
  k->gemm[TL_TYPE_Q5_1] = gemm_q5_1;
  k->gemm[TL_TYPE_Q8_0] = gemm_q8_0;
  k->gemm[TL_TYPE_Q2_K] = gemm_q2_k;
  k->gemm[TL_TYPE_Q3_K] = gemm_q3_k;
  k->gemm[TL_TYPE_Q4_K] = gemm_q4_k;
  k->gemm[TL_TYPE_Q5_K] = gemm_q5_k;
  k->gemm[TL_TYPE_Q6_K] = gemm_q6_k;
  k->gemm[TL_TYPE_IQ4_NL] = gemm_iq4_nl;
  k->gemm[TL_TYPE_IQ4_XS] = gemm_iq4_xs;
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
