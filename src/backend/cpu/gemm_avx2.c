/* AVX2 (+FMA, F16C) integer matrix kernels of the "avx2" kernel set:
 * activation quantizers (bit-identical to the scalar ones in qact.c) and
 * integer gemm for every quantized weight type on int8 activations
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 on TL_ACT_Q8_32; Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K on TL_ACT_Q8_256).
 *
 * The integer dot products use maddubs (u8 x s8 to pairs of s16) and madd
 * (s16 x s16 to pairs of s32):
 *  - 32-blocks: Q8_0's int8 weights take the sign trick (|w| x sign(a, w)),
 *    the others go in as u8 (Q4_0 and Q5_0 with their offset 8 or 16 as a
 *    min -8 d or -16 d) and add m * s per block (s = d_x * sum(a)); one
 *    float fma per block applies d_w * d_x;
 *  - K-quants: per 32-element step the u8 weights (offsets removed: Q3_K's
 *    -4 and Q6_K's -32 come back as -off * sum_g sc_g * bsum_g from the
 *    activation sums), multiplied by their sub-block scales with madd, are
 *    summed in int32 over the super-block; one float fma per super-block
 *    applies d * d_x, one more dmin * d_x * sum_g m_g * bsum_g (Q2_K, Q4_K,
 *    Q5_K).
 * Each kernel walks register tiles of a few weight rows x a few tokens
 * (prefill: 2 x 4) and, for one token (decode), tiles of 4 rows that prefetch
 * the next tile's bytes in software. Selected at run time (dispatch.c) and
 * tested against the scalar reference (tests/unit/test_qkernels.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "backend/cpu/qkernels.h"
#include "quant/quant_iq.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* ---- helpers ------------------------------------------------------------------ */

AVX2 INLINE float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 INLINE float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

AVX2 INLINE float f16(const uint8_t *p) {
  return _cvtsh_ss(tl_rd_u16(p));
}

AVX2 INLINE __m256 abs_ps(__m256 v) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* ---- activation quantizers (bit-identical to the scalar ones) --------------- */

/* 32 floats times id, rounded to nearest even (the MXCSR default, as
 * nearbyintf), as 32 int8 in element order. */
AVX2 INLINE __m256i quant32(const float *x, __m256 vid) {
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
  const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
  const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
  const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
  /* the packs interleave 4-element groups across the 128-bit lanes:
   * dwords hold elements 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31 */
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* d = max|x| / 127 and id = 1 / d (0 for d = 0), as the scalar quantizer. */
AVX2 INLINE __m256 scale_of(float amax, float *d) {
  const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
  *d = dd;
  return _mm256_set1_ps(id);
}

AVX2 static void qact_q8_32(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n), *s = d + n / 32;
  const __m256i k80 = _mm256_set1_epi8((char)0x80);
  for (int64_t i = 0; i < n / 32; i++, x += 32, q += 32) {
    const __m256 m01 = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x)), abs_ps(_mm256_loadu_ps(x + 8)));
    const __m256 m23 =
        _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 16)), abs_ps(_mm256_loadu_ps(x + 24)));
    float dd;
    const __m256i v = quant32(x, scale_of(hmax_ps(_mm256_max_ps(m01, m23)), &dd));
    _mm256_storeu_si256((__m256i *)q, v);
    /* the sum of the int8 values: sad of the u8 values q + 128, less 32 * 128 */
    const __m256i sd = _mm256_sad_epu8(_mm256_xor_si256(v, k80), _mm256_setzero_si256());
    const __m128i s2 = _mm_add_epi32(_mm256_castsi256_si128(sd), _mm256_extracti128_si256(sd, 1));
    const int sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_unpackhi_epi64(s2, s2))) - 32 * 128;
    d[i] = dd;
    s[i] = dd * (float)sum;
  }
}

AVX2 static void qact_q8_256(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n);
  int16_t *bs = (int16_t *)tl_act_bsum(row, n);
  const __m256i k80 = _mm256_set1_epi8((char)0x80);
  for (int64_t i = 0; i < n / 256; i++, x += 256, q += 256, bs += 16) {
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 256; j += 8) mx = _mm256_max_ps(mx, abs_ps(_mm256_loadu_ps(x + j)));
    float dd;
    const __m256 vid = scale_of(hmax_ps(mx), &dd);
    for (int j = 0; j < 8; j++) {
      const __m256i v = quant32(x + 32 * j, vid);
      _mm256_storeu_si256((__m256i *)(q + 32 * j), v);
      /* sums per 16: the sad's 64-bit lanes 0 + 1 and 2 + 3 */
      const __m256i sd = _mm256_sad_epu8(_mm256_xor_si256(v, k80), _mm256_setzero_si256());
      const __m128i lo = _mm256_castsi256_si128(sd), hi = _mm256_extracti128_si256(sd, 1);
      bs[2 * j] =
          (int16_t)(_mm_cvtsi128_si32(_mm_add_epi32(lo, _mm_unpackhi_epi64(lo, lo))) - 2048);
      bs[2 * j + 1] =
          (int16_t)(_mm_cvtsi128_si32(_mm_add_epi32(hi, _mm_unpackhi_epi64(hi, hi))) - 2048);
    }
    d[i] = dd;
  }
}

/* ---- tile walking ----------------------------------------------------------- */

/* Several tokens: rows in tiles of up to MR, each over the tokens in tiles of up to MT. */
#define GEMM_WALK(tile, MR, MT)                                                                  \
  for (int64_t r = 0; r < nr; r += MR) {                                                         \
    const int mr = nr - r < MR ? (int)(nr - r) : MR;                                             \
    for (int64_t t = 0; t < nt; t += MT) {                                                       \
      const int mt = nt - t < MT ? (int)(nt - t) : MT;                                           \
      TILE_SWITCH(tile, mr, mt, (const uint8_t *)w + r * ldw, ldw, (const uint8_t *)x + t * ldx, \
                  ldx, n, y + t * ldy + r, ldy)                                                  \
    }                                                                                            \
  }

/* One token (decode): rows in tiles of 4, the last few in a smaller one. */
#define GEMM_WALK_DEC(tile)                                                                        \
  for (int64_t r = 0; r < nr; r += 4) {                                                            \
    const int mr = nr - r < 4 ? (int)(nr - r) : 4;                                                 \
    TILE_SWITCH(tile, mr, 1, (const uint8_t *)w + r * ldw, ldw, (const uint8_t *)x, ldx, n, y + r, \
                ldy)                                                                               \
  }

/* The one-token tiles prefetch the same bytes of the next row tile (R rows
 * further): R row streams at once, which the hardware prefetchers alone
 * follow less well than one. */
AVX2 INLINE void pf_next(const uint8_t *p, size_t ldw, int R, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + R * ldw + o, _MM_HINT_T0);
}

/* ---- 32-element blocks (Q8_32 activations) ----------------------------------- */

/* IQ4_NL: Q4_0's layout, the nibbles looked up (vpshufb) as int8 values,
 * multiplied as Q8_0's int8 weights. */
typedef enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0, K_IQ4NL } kind32;

AVX2 INLINE size_t bsz32(kind32 k) {
  switch (k) {
    case K_Q4_0:
      return sizeof(tl_block_q4_0);
    case K_Q4_1:
      return sizeof(tl_block_q4_1);
    case K_Q5_0:
      return sizeof(tl_block_q5_0);
    case K_Q5_1:
      return sizeof(tl_block_q5_1);
    case K_IQ4NL:
      return sizeof(tl_block_iq4_nl);
    default:
      return sizeof(tl_block_q8_0);
  }
}

/* 16 bytes of nibbles as 32 values 0..15 in element order (low nibbles first). */
AVX2 INLINE __m256i nibbles32(const uint8_t *qs) {
  const __m128i v = _mm_loadu_si128((const __m128i *)qs);
  const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
  return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

/* The 32 bits at qh (bit j: element j) as 0x10 in the bytes whose bit is set. */
AVX2 INLINE __m256i fifth_bits(const uint8_t *qh) {
  uint32_t h;
  memcpy(&h, qh, 4);
  /* byte j gets byte j / 8 of h, then tests its bit j % 8 */
  const __m256i bytes = _mm256_shuffle_epi8(
      _mm256_set1_epi32((int)h),
      _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* 32 nibbles (element order) as the IQ4 non-linear int8 values. */
AVX2 INLINE __m256i iq4_lookup(__m256i nib) {
  const __m128i v = _mm_loadu_si128((const __m128i *)tl_iq4nl_values);
  return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(v), nib);
}

/* Block b's 32 weights: Q8_0 and IQ4_NL as int8, the others as u8 without their offset
 * (Q4_0: q + 8, Q5_0: q + 16). */
AVX2 INLINE __m256i load32(kind32 k, const uint8_t *b) {
  switch (k) {
    case K_Q4_0:
      return nibbles32(b + offsetof(tl_block_q4_0, qs));
    case K_Q4_1:
      return nibbles32(b + offsetof(tl_block_q4_1, qs));
    case K_Q5_0:
      return _mm256_or_si256(nibbles32(b + offsetof(tl_block_q5_0, qs)),
                             fifth_bits(b + offsetof(tl_block_q5_0, qh)));
    case K_Q5_1:
      return _mm256_or_si256(nibbles32(b + offsetof(tl_block_q5_1, qs)),
                             fifth_bits(b + offsetof(tl_block_q5_1, qh)));
    case K_IQ4NL:
      return iq4_lookup(nibbles32(b + offsetof(tl_block_iq4_nl, qs)));
    default:
      return _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q8_0, qs)));
  }
}

/* Per block: d_w * d_x * dot(q, a) + m * s with s = d_x * sum(a); the u8
 * weights' offset is a min: m = -8 d_w (Q4_0), -16 d_w (Q5_0). Q8_0's int8
 * weights take the sign trick: |w| as u8, the signs moved onto a. */
AVX2 INLINE void q32_tile(kind32 k, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                          int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const bool q8 = k == K_Q8_0 || k == K_IQ4NL, mins = !q8;
  const size_t bs = bsz32(k);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4][4];
  float ms[4][4];
  const float *dx[4], *sx[4];
  _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    dx[t] = tl_act_d(x + t * ldx, n);
    sx[t] = tl_act_s(x + t * ldx, n);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
      acc[r][t] = _mm256_setzero_ps();
      ms[r][t] = 0;
    }
  }
  for (int64_t i = 0; i < n / 32; i++) {
    __m256i wv[4], wa[4];
    __m256 dw[4];
    float mw[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
      const uint8_t *b = w + r * ldw + (size_t)i * bs;
      if (T == 1 && (i & 3) == 0) pf_next(b, ldw, R, 4 * bs);
      wv[r] = load32(k, b);
      wa[r] = q8 ? _mm256_sign_epi8(wv[r], wv[r]) : wv[r];
      const float d = f16(b);
      dw[r] = _mm256_set1_ps(d);
      mw[r] = k == K_Q4_0 ? -8.0f * d : k == K_Q5_0 ? -16.0f * d : mins ? f16(b + 2) : 0.0f;
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m256i a = _mm256_loadu_si256((const __m256i *)(x + t * ldx + 32 * i));
      const __m256 d = _mm256_broadcast_ss(dx[t] + i);
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const __m256i p = _mm256_maddubs_epi16(wa[r], q8 ? _mm256_sign_epi8(a, wv[r]) : a);
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc[r][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dw[r], d), acc[r][t]);
        if (mins) ms[r][t] += mw[r] * sx[t][i];
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) y[t * ldy + r] =
          hsum_ps(acc[r][t]) + ms[r][t];
}

#define Q32_TILE(name, kind)                                                                     \
  AVX2 INLINE void name##_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,       \
                               int64_t n, float *y, int64_t ldy, const int R, const int T) {     \
    q32_tile(kind, w, ldw, x, ldx, n, y, ldy, R, T);                                             \
  }                                                                                              \
  AVX2 static void gemm_##name(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    if (nt == 1) {                                                                               \
      GEMM_WALK_DEC(name##_tile)                                                                 \
    } else {                                                                                     \
      GEMM_WALK(name##_tile, 2, 4)                                                               \
    }                                                                                            \
  }
Q32_TILE(q4_0, K_Q4_0)
Q32_TILE(q4_1, K_Q4_1)
Q32_TILE(q5_0, K_Q5_0)
Q32_TILE(q5_1, K_Q5_1)
Q32_TILE(q8_0, K_Q8_0)
Q32_TILE(iq4_nl, K_IQ4NL)

/* ---- K-quants (Q8_256 activations) ------------------------------------------ */

/* A super-block's scales: sc8 per group of 16 (int8), minv per group (int16):
 * the mins (Q2_K, Q4_K, Q5_K: times dmin) or -offset * scale (Q3_K, Q6_K:
 * folded into the integer sum). */
typedef struct krow {
  __m128i sc8;
  __m256i minv;
  float d, dmin;
} krow;

AVX2 INLINE bool k_fold(uint32_t type) {
  return type == TL_TYPE_Q3_K || type == TL_TYPE_Q6_K;
}

AVX2 INLINE size_t bszk(uint32_t type) {
  switch (type) {
    case TL_TYPE_Q2_K:
      return sizeof(tl_block_q2_k);
    case TL_TYPE_Q3_K:
      return sizeof(tl_block_q3_k);
    case TL_TYPE_Q4_K:
      return sizeof(tl_block_q4_k);
    case TL_TYPE_Q5_K:
      return sizeof(tl_block_q5_k);
    case TL_TYPE_IQ4_XS:
      return sizeof(tl_block_iq4_xs);
    default:
      return sizeof(tl_block_q6_k);
  }
}

AVX2 INLINE void k_row(uint32_t type, const uint8_t *b, krow *o) {
  const __m128i m4 = _mm_set1_epi8(15);
  switch (type) {
    case TL_TYPE_Q2_K: {
      const __m128i sc = _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q2_k, scales)));
      o->sc8 = _mm_and_si128(sc, m4);
      o->minv = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
      o->d = f16(b + offsetof(tl_block_q2_k, d));
      o->dmin = f16(b + offsetof(tl_block_q2_k, dmin));
      break;
    }
    case TL_TYPE_Q3_K: {
      /* scale j: low 4 bits in the nibbles of bytes 0..7 (low for j < 8), high
       * 2 bits at bit 2 * (j / 4) of byte 8 + j % 4; then less 32 */
      const uint8_t *p = b + offsetof(tl_block_q3_k, scales);
      const __m128i l8 = _mm_loadl_epi64((const __m128i *)p);
      const __m128i lo =
          _mm_unpacklo_epi64(_mm_and_si128(l8, m4), _mm_and_si128(_mm_srli_epi16(l8, 4), m4));
      uint32_t u;
      memcpy(&u, p + 8, 4);
      /* dword k = u >> 2k: its byte j % 4 holds byte 8 + j % 4 >> 2 (j / 4) */
      const __m128i hv = _mm_srlv_epi32(_mm_set1_epi32((int)u), _mm_setr_epi32(0, 2, 4, 6));
      const __m128i hi = _mm_and_si128(hv, _mm_set1_epi8(3));
      o->sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
      o->minv = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(o->sc8), _mm256_set1_epi16(-4));
      o->d = f16(b + offsetof(tl_block_q3_k, d));
      o->dmin = 0;
      break;
    }
    case TL_TYPE_Q4_K:
    case TL_TYPE_Q5_K: {
      /* 8 6-bit scales and mins from the 12 bytes u0 u1 u2 (the 16-byte load's
       * last 4 bytes are quants, unused): scales 0-3 = u0 & 63, mins 0-3 =
       * u1 & 63, scales 4-7 = (u2 & 0x0f) | (u0 >> 6) << 4, mins 4-7 =
       * (u2 >> 4 & 0x0f) | (u1 >> 6) << 4, per byte */
      const __m128i a = _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q4_k, scales)));
      const __m128i xv = _mm_shuffle_epi32(a, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
      const __m128i yv = _mm_shuffle_epi32(a, _MM_SHUFFLE(2, 2, 2, 2)); /* u2 x 4 */
      const __m128i top = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(xv, 6), _mm_set1_epi8(3)), 4);
      const __m128i low = _mm_and_si128(_mm_srlv_epi32(yv, _mm_setr_epi32(0, 0, 0, 4)), m4);
      const __m128i sm =
          _mm_blend_epi32(_mm_and_si128(xv, _mm_set1_epi8(63)), _mm_or_si128(low, top), 0xa);
      o->sc8 = _mm_unpacklo_epi8(sm, sm); /* each scale for its two groups of 16 */
      o->minv = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
      o->d = f16(b);
      o->dmin = f16(b + 2);
      break;
    }
    case TL_TYPE_IQ4_XS: {
      /* sub-block j's 6-bit scale: nibble j % 2 of scales_l[j / 2], 2 bits at
       * 2 j of scales_h; less 32; each for its two groups of 16 */
      int8_t sc[8];
      for (int j = 0; j < 8; j++) sc[j] = (int8_t)tl_iq4_xs_scale(b, j);
      const __m128i s8 = _mm_loadl_epi64((const __m128i *)sc);
      o->sc8 = _mm_unpacklo_epi8(s8, s8);
      o->minv = _mm256_setzero_si256();
      o->d = f16(b);
      o->dmin = 0;
      break;
    }
    default: { /* Q6_K */
      o->sc8 = _mm_loadu_si128((const __m128i *)(b + offsetof(tl_block_q6_k, scales)));
      o->minv = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(o->sc8), _mm256_set1_epi16(-32));
      o->d = f16(b + offsetof(tl_block_q6_k, d));
      o->dmin = 0;
      break;
    }
  }
}

/* Bits at position p of each byte moved to position q (the other bits masked off). */
AVX2 INLINE __m256i bit_to(__m256i v, int p, int q, int mask) {
  const __m256i s = p > q ? _mm256_srli_epi16(v, p - q) : _mm256_slli_epi16(v, q - p);
  return _mm256_and_si256(s, _mm256_set1_epi8((char)mask));
}

/* Elements 32 s .. 32 s + 31 of a super-block as u8 (Q3_K: q + 4, Q6_K: q + 32;
 * IQ4_XS: the int8 values). */
AVX2 INLINE __m256i k_step(uint32_t type, const uint8_t *b, int s) {
  switch (type) {
    case TL_TYPE_IQ4_XS:
      return iq4_lookup(nibbles32(b + offsetof(tl_block_iq4_xs, qs) + 16 * s));
    case TL_TYPE_Q2_K: {
      const __m256i v =
          _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q2_k, qs) + 32 * (s / 4)));
      return bit_to(v, 2 * (s % 4), 0, 3);
    }
    case TL_TYPE_Q3_K: {
      const __m256i v =
          _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q3_k, qs) + 32 * (s / 4)));
      const __m256i hm = _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q3_k, hmask)));
      return _mm256_or_si256(bit_to(v, 2 * (s % 4), 0, 3), bit_to(hm, s, 2, 4));
    }
    case TL_TYPE_Q4_K: {
      const __m256i v =
          _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q4_k, qs) + 32 * (s / 2)));
      return bit_to(v, 4 * (s % 2), 0, 15);
    }
    case TL_TYPE_Q5_K: {
      const __m256i v =
          _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q5_k, qs) + 32 * (s / 2)));
      const __m256i h = _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q5_k, qh)));
      return _mm256_or_si256(bit_to(v, 4 * (s % 2), 0, 15), bit_to(h, s, 4, 0x10));
    }
    default: { /* Q6_K */
      const int h = s / 4, k = s % 4;
      const __m256i l = _mm256_loadu_si256(
          (const __m256i *)(b + offsetof(tl_block_q6_k, ql) + 64 * h + 32 * (k % 2)));
      const __m256i q =
          _mm256_loadu_si256((const __m256i *)(b + offsetof(tl_block_q6_k, qh) + 32 * h));
      return _mm256_or_si256(bit_to(l, 4 * (k / 2), 0, 15), bit_to(q, 2 * k, 4, 0x30));
    }
  }
}

/* Step s's scales per int16 pair: lanes 0-7 group 2 s, lanes 8-15 group 2 s + 1. */
AVX2 INLINE __m256i k_scales(__m128i sc8, int s) {
  const long long c = 0x0101010101010101ll;
  return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_set_epi64x(c * (2 * s + 1), c * 2 * s)));
}

AVX2 INLINE void kq_tile(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, const int R, const int T) {
  const size_t bsz = bszk(type);
  const bool fold = k_fold(type), sgn = type == TL_TYPE_IQ4_XS, mins = !fold && !sgn;
  __m256 acc[4][4];
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 256; i++) {
    krow kr[4];
    __m256i ia[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
      const uint8_t *b = w + r * ldw + (size_t)i * bsz;
      if (T == 1) pf_next(b, ldw, R, bsz);
      k_row(type, b, &kr[r]);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m256i bs =
          _mm256_loadu_si256((const __m256i *)(tl_act_bsum(x + t * ldx, n) + 16 * i));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] =
          fold ? _mm256_madd_epi16(kr[r].minv, bs) : _mm256_setzero_si256();
    }
    _Pragma("GCC unroll 8") for (int s = 0; s < 8; s++) {
      __m256i wq[4], sv[4];
      __m256i ws[4];
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        ws[r] = k_step(type, w + r * ldw + (size_t)i * bsz, s);
        /* IQ4_XS's int8 weights: |w| as u8, the signs moved onto a */
        wq[r] = sgn ? _mm256_sign_epi8(ws[r], ws[r]) : ws[r];
        sv[r] = k_scales(kr[r].sc8, s);
      }
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(x + t * ldx + 256 * i + 32 * s));
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) ia[r][t] = _mm256_add_epi32(
            ia[r][t],
            _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], sgn ? _mm256_sign_epi8(a, ws[r]) : a),
                              sv[r]));
      }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const uint8_t *xr = x + t * ldx;
      const float dx = tl_act_d(xr, n)[i];
      const __m256i bs = _mm256_loadu_si256((const __m256i *)(tl_act_bsum(xr, n) + 16 * i));
      _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        acc[r][t] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][t]), _mm256_set1_ps(kr[r].d * dx), acc[r][t]);
        if (mins)
          acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(kr[r].minv, bs)),
                                       _mm256_set1_ps(kr[r].dmin * dx), acc[r][t]);
      }
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) y[t * ldy + r] = hsum_ps(acc[r][t]);
}

#define KQ_TILE(name, type)                                                                      \
  AVX2 INLINE void name##_tile(const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,       \
                               int64_t n, float *y, int64_t ldy, const int R, const int T) {     \
    kq_tile(type, w, ldw, x, ldx, n, y, ldy, R, T);                                              \
  }                                                                                              \
  AVX2 static void gemm_##name(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    if (nt == 1) {                                                                               \
      GEMM_WALK_DEC(name##_tile)                                                                 \
    } else {                                                                                     \
      GEMM_WALK(name##_tile, 2, 4)                                                               \
    }                                                                                            \
  }
KQ_TILE(q2_k, TL_TYPE_Q2_K)
KQ_TILE(q3_k, TL_TYPE_Q3_K)
KQ_TILE(q4_k, TL_TYPE_Q4_K)
KQ_TILE(q5_k, TL_TYPE_Q5_K)
KQ_TILE(q6_k, TL_TYPE_Q6_K)
KQ_TILE(iq4_xs, TL_TYPE_IQ4_XS)

/* ---- F32 / F16 / BF16 weights, f32 activations (prefill) -------------------- */

/* 8 weights at p as floats. */
AVX2 INLINE __m256 fl_ld8(uint32_t type, const uint8_t *p) {
  if (type == TL_TYPE_F32) return _mm256_loadu_ps((const float *)(const void *)p);
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  if (type == TL_TYPE_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Weight i of a row as a float. */
AVX2 INLINE float fl_at(uint32_t type, const uint8_t *row, int64_t i) {
  if (type == TL_TYPE_F32) return ((const float *)(const void *)row)[i];
  const uint16_t h = tl_rd_u16(row + 2 * i);
  return type == TL_TYPE_F16 ? tl_f16_to_f32(h) : tl_bf16_to_f32(h);
}

/* An R x T tile (R <= 3 rows, T <= 4 tokens: 12 accumulators, 3 weight
 * vectors and one activation vector in the 16 registers) over n columns, its
 * sums stored in y or, with add, added to it; the last n % 8 columns in
 * scalar. */
AVX2 INLINE void fl_tile(uint32_t type, const uint8_t *w, size_t ldw, const uint8_t *x, size_t ldx,
                         int64_t n, float *y, int64_t ldy, bool add, const int R, const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  __m256 acc[3][4];
  _Pragma("GCC unroll 3") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
  const int64_t n8 = n & ~(int64_t)7;
  for (int64_t i = 0; i < n8; i += 8) {
    __m256 wv[3];
    _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) wv[r] = fl_ld8(type, w + r * ldw + i * es);
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
      const __m256 xv = _mm256_loadu_ps((const float *)(const void *)(x + t * ldx) + i);
      _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) acc[r][t] =
          _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  _Pragma("GCC unroll 3") for (int r = 0; r < R; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    const float *xt = (const float *)(const void *)(x + t * ldx);
    float s = hsum_ps(acc[r][t]);
    for (int64_t i = n8; i < n; i++) s += fl_at(type, w + r * ldw, i) * xt[i];
    y[t * ldy + r] = add ? y[t * ldy + r] + s : s;
  }
}

/* Call fl_tile(..., R, T) for nr 1..3 and nt 1..4 as constants. */
// clang-format off
#define FL_SWITCH(nr, nt, ...) \
  switch ((nr) * 8 + (nt)) { \
    case 9: fl_tile(__VA_ARGS__, 1, 1); break; \
    case 10: fl_tile(__VA_ARGS__, 1, 2); break; \
    case 11: fl_tile(__VA_ARGS__, 1, 3); break; \
    case 12: fl_tile(__VA_ARGS__, 1, 4); break; \
    case 17: fl_tile(__VA_ARGS__, 2, 1); break; \
    case 18: fl_tile(__VA_ARGS__, 2, 2); break; \
    case 19: fl_tile(__VA_ARGS__, 2, 3); break; \
    case 20: fl_tile(__VA_ARGS__, 2, 4); break; \
    case 25: fl_tile(__VA_ARGS__, 3, 1); break; \
    case 26: fl_tile(__VA_ARGS__, 3, 2); break; \
    case 27: fl_tile(__VA_ARGS__, 3, 3); break; \
    default: fl_tile(__VA_ARGS__, 3, 4); break; \
  }
// clang-format on

/* The columns FL_KC at a time, and within such a pass the token tiles
 * outside the row tiles, so that a token tile's activations (16 KiB) stay in
 * L1 while the pass's weight rows stream past from L2 (as the AVX-512
 * walk). One token (decode) keeps the vec_dot rows. */
#define FL_KC 1024

AVX2 INLINE void fl_gemm(uint32_t type, const void *w, size_t ldw, int64_t nr, const void *x,
                         size_t ldx, int64_t nt, int64_t n, float *y, int64_t ldy) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  for (int64_t k0 = 0; k0 < n; k0 += FL_KC) {
    const int64_t kn = n - k0 < FL_KC ? n - k0 : FL_KC;
    for (int64_t t = 0; t < nt; t += 4) {
      const int mt = nt - t < 4 ? (int)(nt - t) : 4;
      for (int64_t r = 0; r < nr; r += 3) {
        const int mr = nr - r < 3 ? (int)(nr - r) : 3;
        FL_SWITCH(mr, mt, type, (const uint8_t *)w + r * ldw + k0 * es, ldw,
                  (const uint8_t *)x + t * ldx + k0 * 4, ldx, kn, y + t * ldy + r, ldy, k0 > 0)
      }
    }
  }
}

#define FL_GEMM(name, type, dot)                                                                 \
  AVX2 static void gemm_##name(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    if (nt == 1) {                                                                               \
      for (int64_t r = 0; r < nr; r++)                                                           \
        y[r] = dot((const uint8_t *)w + (size_t)r * ldw, (const float *)x, n);                   \
    } else {                                                                                     \
      fl_gemm(type, w, ldw, nr, x, ldx, nt, n, y, ldy);                                          \
    }                                                                                            \
  }
FL_GEMM(f32, TL_TYPE_F32, tl_avx2_dot_f32)
FL_GEMM(f16, TL_TYPE_F16, tl_avx2_dot_f16)
FL_GEMM(bf16, TL_TYPE_BF16, tl_avx2_dot_bf16)

void tl_cpu_fill_avx2_gemm(tl_cpu_kernels *k) {
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
#endif
