/* AVX-512 VNNI matrix kernels (the "avx512vnni" kernel set): activation
 * quantizers, integer gemm for Q4_0, Q8_0, Q4_K and Q6_K weights on int8
 * activations, and f32-activation gemm for F32/F16/BF16 weights. Each kernel
 * walks register tiles of a few weight rows x a few tokens: a tile's weights
 * are loaded and unpacked once per step and used for all its tokens. Compiled
 * with per-function target attributes, selected at run time (dispatch.c),
 * and tested against the scalar reference (tests/unit/test_qkernels.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "backend/cpu/qkernels.h"

#define VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
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
#define TILE_SWITCH(fn, nr, nt, ...)        \
  switch ((nr) * 8 + (nt)) {               \
    case 9: fn(__VA_ARGS__, 1, 1); break;  \
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

/* Walk the rows in tiles of up to MR and, for each, the tokens in tiles of up to MT. */
#define GEMM_WALK(tile, MR, MT)                                                            \
  for (int64_t r = 0; r < nr; r += MR) {                                                   \
    const int mr = nr - r < MR ? (int)(nr - r) : MR;                                       \
    for (int64_t t = 0; t < nt; t += MT) {                                                 \
      const int mt = nt - t < MT ? (int)(nt - t) : MT;                                     \
      TILE_SWITCH(tile, mr, mt, (const uint8_t *)w + r * ldw, ldw,                         \
                  (const uint8_t *)x + t * ldx, ldx, n, y + t * ldy + r, ldy)              \
    }                                                                                      \
  }

#define ZERO_ACC(acc, R, T)                                 \
  _Pragma("GCC unroll 4") for (int r_ = 0; r_ < R; r_++)   \
      _Pragma("GCC unroll 4") for (int t_ = 0; t_ < T; t_++) acc[r_][t_] = _mm512_setzero_ps()

#define STORE_ACC(acc, R, T)                               \
  _Pragma("GCC unroll 4") for (int r_ = 0; r_ < R; r_++)  \
      _Pragma("GCC unroll 4") for (int t_ = 0; t_ < T; t_++) y[t_ * ldy + r_] = \
          _mm512_reduce_add_ps(acc[r_][t_])

/* ---- Q4_0 and Q8_0: two 32-blocks per 512-bit step ------------------------------
 * Weights as u8 (Q4_0: the nibble 0..15; Q8_0: q + 128), activations s8: VNNI
 * dpbusd sums w * a per 4 bytes, and the offset (8 or 128) times the sum of
 * the activations, taken per token with one more dpbusd, is subtracted by
 * starting from it. Lanes 0-7 hold the first block, 8-15 the second. */

VNNI INLINE void q32_step(bool q8, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, int64_t i, bool two, __m512 acc[4][4], const int R,
                          const int T) {
  const size_t bs = q8 ? sizeof(tl_block_q8_0) : sizeof(tl_block_q4_0);
  const __m512i koff = _mm512_set1_epi8(q8 ? (char)0x80 : 8);
  __m512i wq[4];
  __m512 dw[4];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
    const uint8_t *b = w + r * ldw + (size_t)i * bs;
    if (q8) {
      __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
      if (two) v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(b + bs + 2)), 1);
      else v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2)));
      wq[r] = _mm512_xor_si512(v, koff);
    } else {
      const __m128i q0 = _mm_loadu_si128((const __m128i *)(b + 2));
      const __m128i q1 = two ? _mm_loadu_si128((const __m128i *)(b + bs + 2)) : _mm_setzero_si128();
      const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
      const __m256i m4 = _mm256_set1_epi8(15);
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      /* [q0 lo, q0 hi, q1 lo, q1 hi]: elements 0-31 of each block in order */
      wq[r] = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    }
    dw[r] = spread2(f16x2(b, b + bs, two));
  }
  _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    const uint8_t *xr = x + t * ldx;
    const __m512i a = two ? _mm512_loadu_si512(xr + 32 * i)
                          : _mm512_maskz_loadu_epi8(0xffffffffull, xr + 32 * i);
    const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), koff, a));
    const __m512 dx = spread2(f32x2(tl_act_d(xr, n) + i, two));
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wq[r], a));
      acc[r][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw[r], dx), acc[r][t]);
    }
  }
}

VNNI INLINE void q32_tile(bool q8, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  __m512 acc[4][4];
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

VNNI static void gemm_q4_0(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  GEMM_WALK(q4_0_tile, 4, 4)
}

VNNI static void gemm_q8_0(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  GEMM_WALK(q8_0_tile, 4, 4)
}

/* ---- Q4_K and Q6_K: 256-blocks in four 64-element steps -----------------------
 * maddubs (u8 weight x s8 activation, pairs to s16) then dpwssd with the
 * sub-block scales accumulates sum_g sc_g * dot_g in int32 over the block;
 * one float fma per block applies d * dx. Q4_K's mins use the activation
 * sums per 16; Q6_K's offset 32 is -32 * sc_g * bsum_g, one more dpwssd. */

typedef struct kq_row {
  __m512i sc16;   /* the block's scales as int16 (Q4_K: 8, Q6_K: 16) */
  __m512i minv;   /* Q4_K: m_j per bsum (16 x int16); Q6_K: -32 * sc_g (16 x int16) */
  float d, dmin;
} kq_row;

VNNI INLINE void q4k_row(const uint8_t *b, kq_row *o) {
  uint32_t u[4];
  memcpy(u, b + 4, 12);
  const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
  u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
  const uint32_t t = u[1] & k1;
  u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
  u[2] = t;
  u[0] &= k1;
  const __m128i sm = _mm_loadu_si128((const __m128i *)u); /* 8 scales, 8 mins */
  o->sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sm));
  o->minv = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)));
  o->d = tl_f16_to_f32(tl_rd_u16(b));
  o->dmin = tl_f16_to_f32(tl_rd_u16(b + 2));
}

VNNI INLINE void q6k_row(const uint8_t *b, kq_row *o) {
  const __m256i sc = _mm256_cvtepi8_epi16(
      _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q6_k, scales))));
  o->sc16 = _mm512_castsi256_si512(sc);
  o->minv = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc, _mm256_set1_epi16(-32)));
  o->d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q6_k, d)));
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
  const __m256i q32 = _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q6_k, qh) + 32 * h));
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
  __m512 acc[4][4];
  ZERO_ACC(acc, R, T);
  for (int64_t i = 0; i < n / 256; i++) {
    kq_row rw[4];
    __m512i ia[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
      if (six) q6k_row(w + r * ldw + i * bsz, &rw[r]);
      else q4k_row(w + r * ldw + i * bsz, &rw[r]);
    }
    /* Q6_K: start from -32 * sum_g sc_g * bsum_g; Q4_K: from 0 */
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m512i bs =
          _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(tl_act_bsum(x + t * ldx, n) + 16 * i)));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] =
          six ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), rw[r].minv, bs) : _mm512_setzero_si512();
    }
    for (int s = 0; s < 4; s++) {
      __m512i wq[4], sv[4];
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        if (six) q6k_step(w + r * ldw + i * bsz, &rw[r], s, &wq[r], &sv[r]);
        else q4k_step(w + r * ldw + i * bsz, &rw[r], s, &wq[r], &sv[r]);
      }
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        const __m512i a = _mm512_loadu_si512(x + t * ldx + 256 * i + 64 * s);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] =
            _mm512_dpwssd_epi32(ia[r][t], _mm512_maddubs_epi16(wq[r], a), sv[r]);
      }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const uint8_t *xr = x + t * ldx;
      const float dx = tl_act_d(xr, n)[i];
      __m512i bs = _mm512_setzero_si512();
      if (!six) bs = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(tl_act_bsum(xr, n) + 16 * i)));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][t]), _mm512_set1_ps(rw[r].d * dx),
                                    acc[r][t]);
        if (!six) {
          const __m512i mi = _mm512_madd_epi16(rw[r].minv, bs);
          acc[r][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mi), _mm512_set1_ps(rw[r].dmin * dx),
                                       acc[r][t]);
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

VNNI static void gemm_q4_k(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK(q4_k_tile, 4, 1)
  } else {
    GEMM_WALK(q4_k_tile, 2, 4)
  }
}

VNNI static void gemm_q6_k(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  if (nt == 1) {
    GEMM_WALK(q6_k_tile, 4, 1)
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

VNNI INLINE void fl_tile(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x,
                         size_t ldx, int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  __m512 acc[4][4];
  ZERO_ACC(acc, R, T);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 wv[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) wv[r] = ld_w(type, w + r * ldw + i * es, m);
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(const void *)(x + t * ldx) + i);
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) acc[r][t] =
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

VNNI static void gemm_f32(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  GEMM_WALK(f32_tile, 4, 4)
}
VNNI static void gemm_f16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                          int64_t nt, int64_t n, float *y, int64_t ldy) {
  GEMM_WALK(f16_tile, 4, 4)
}
VNNI static void gemm_bf16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy) {
  GEMM_WALK(bf16_tile, 4, 4)
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
