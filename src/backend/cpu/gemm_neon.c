/* AArch64 matrix kernels (the gemm entries of the "neon" and "neon_dotprod"
 * sets, kernels_neon.c):
 *  - every quantized type on int8 activations (Q8_32 for Q4_0, Q4_1, Q5_0,
 *    Q5_1, Q8_0; Q8_256 for Q2_K .. Q6_K). A tile of 4 weight rows is
 *    unpacked block by block to int8 in element order (the 32-blocks into
 *    registers, the 256-blocks into an L1 buffer with their 16 sub-block
 *    scales and mins as integers), then multiplied with tiles of 4 tokens
 *    (1 for decode). The integer dot product of 16 int8 pairs is SDOT in
 *    "neon_dotprod" and SMULL/SMLAL2/SADALP in "neon": both leave four int32
 *    lanes whose sum is the dot product; K-quant sub-block scales multiply
 *    those lanes in int32, and one float FMA per block applies d * dx, so
 *    the integer sums equal the scalar reference's exactly;
 *  - F32, F16 and BF16 weights on f32 activations, 4 rows x 4 tokens.
 * The integer tiles are written once in gemm_neon_tmpl.h and compiled twice,
 * the second time with target("arch=armv8.2-a+dotprod") so the rest of the
 * build stays baseline Armv8-A. Tested against the scalar reference
 * (tests/unit/test_qkernels.c). */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <stddef.h>
#include <string.h>

#include "backend/cpu/qkernels.h"
#include "quant/quant_iq.h"

#define INLINE static inline __attribute__((always_inline))

static inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* One f16 scale as a float (FCVTL; exact, as tl_f16_to_f32). */
INLINE float f16s(const uint8_t *p) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(tl_rd_u16(p)))), 0);
}

/* ---- 32-element blocks: two int8 vectors in element order ---------------------------- */

/* IQ4_NL: Q4_0's layout, the nibbles looked up (TBL) as the int8 values. */
typedef enum { K32_Q4_0, K32_Q4_1, K32_Q5_0, K32_Q5_1, K32_Q8_0, K32_IQ4NL } kind32;

typedef struct w32 {
  int8x16_t q0, q1;
  float d, m;
} w32;

static inline size_t bsize32(kind32 k) {
  switch (k) {
    case K32_Q4_0:
      return sizeof(tl_block_q4_0);
    case K32_Q4_1:
      return sizeof(tl_block_q4_1);
    case K32_Q5_0:
      return sizeof(tl_block_q5_0);
    case K32_Q5_1:
      return sizeof(tl_block_q5_1);
    case K32_IQ4NL:
      return sizeof(tl_block_iq4_nl);
    default:
      return sizeof(tl_block_q8_0);
  }
}

/* The 5th bits of a Q5 block (bit j of the little-endian qh: element j) as
 * 16 in the bytes of elements 0..15 (h0) and 16..31 (h1). */
INLINE void q5_high(const uint8_t *qh, uint8x16_t *h0, uint8x16_t *h1) {
  static const uint8_t i0[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  static const uint8_t i1[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t hv = vreinterpretq_u8_u32(vdupq_n_u32(tl_rd_u32(qh)));
  const uint8x16_t m = vld1q_u8(bit), k16 = vdupq_n_u8(16);
  *h0 = vandq_u8(vtstq_u8(vqtbl1q_u8(hv, vld1q_u8(i0)), m), k16);
  *h1 = vandq_u8(vtstq_u8(vqtbl1q_u8(hv, vld1q_u8(i1)), m), k16);
}

INLINE void unpack32(kind32 k, const uint8_t *b, w32 *o) {
  const uint8x16_t m4 = vdupq_n_u8(15);
  uint8x16_t v, h0, h1;
  o->d = f16s(b);
  o->m = 0;
  switch (k) {
    case K32_Q8_0:
      o->q0 = vld1q_s8((const int8_t *)b + 2);
      o->q1 = vld1q_s8((const int8_t *)b + 18);
      break;
    case K32_Q4_0:
      v = vld1q_u8(b + offsetof(tl_block_q4_0, qs));
      o->q0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), vdupq_n_s8(8));
      o->q1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
      break;
    case K32_Q4_1:
      o->m = f16s(b + offsetof(tl_block_q4_1, m));
      v = vld1q_u8(b + offsetof(tl_block_q4_1, qs));
      o->q0 = vreinterpretq_s8_u8(vandq_u8(v, m4));
      o->q1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
      break;
    case K32_Q5_0:
      q5_high(b + offsetof(tl_block_q5_0, qh), &h0, &h1);
      v = vld1q_u8(b + offsetof(tl_block_q5_0, qs));
      o->q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), h0)), vdupq_n_s8(16));
      o->q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1)), vdupq_n_s8(16));
      break;
    case K32_Q5_1:
      o->m = f16s(b + offsetof(tl_block_q5_1, m));
      q5_high(b + offsetof(tl_block_q5_1, qh), &h0, &h1);
      v = vld1q_u8(b + offsetof(tl_block_q5_1, qs));
      o->q0 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), h0));
      o->q1 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1));
      break;
    case K32_IQ4NL: {
      const int8x16_t vals = vld1q_s8(tl_iq4nl_values);
      v = vld1q_u8(b + offsetof(tl_block_iq4_nl, qs));
      o->q0 = vqtbl1q_s8(vals, vandq_u8(v, m4));
      o->q1 = vqtbl1q_s8(vals, vshrq_n_u8(v, 4));
      break;
    }
  }
}

/* ---- 256-element blocks: int8 in element order, scales and mins per 16 ------------ */

typedef struct kblk {
  int8_t q[256];
  int32x4_t sc[4]; /* scale of sub-block g (16 elements) in lane g % 4 of sc[g / 4] */
  int16x8_t mn[2]; /* min of sub-block g (Q2_K, Q4_K, Q5_K; else 0) */
  float d, dmin;
} kblk;

INLINE void widen_u8_s32(uint8x16_t v, int32x4_t o[4]) {
  const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
  o[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo)));
  o[1] = vreinterpretq_s32_u32(vmovl_high_u16(lo));
  o[2] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi)));
  o[3] = vreinterpretq_s32_u32(vmovl_high_u16(hi));
}

INLINE void widen_s8_s32(int8x16_t v, int32x4_t o[4]) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
  o[0] = vmovl_s16(vget_low_s16(lo));
  o[1] = vmovl_high_s16(lo);
  o[2] = vmovl_s16(vget_low_s16(hi));
  o[3] = vmovl_high_s16(hi);
}

INLINE void widen_u8_s16(uint8x16_t v, int16x8_t o[2]) {
  o[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v)));
  o[1] = vreinterpretq_s16_u16(vmovl_high_u8(v));
}

/* (v >> 2k) & 3 for k = 0..3 */
INLINE uint8x16_t bits2(uint8x16_t v, int k) {
  return vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * k))), vdupq_n_u8(3));
}

static void unpack_q2_k(const uint8_t *b, kblk *o) {
  const uint8_t *qs = b + offsetof(tl_block_q2_k, qs);
  for (int h = 0; h < 2; h++) {
    const uint8x16_t v0 = vld1q_u8(qs + 32 * h), v1 = vld1q_u8(qs + 32 * h + 16);
    for (int k = 0; k < 4; k++) {
      vst1q_s8(o->q + 128 * h + 32 * k, vreinterpretq_s8_u8(bits2(v0, k)));
      vst1q_s8(o->q + 128 * h + 32 * k + 16, vreinterpretq_s8_u8(bits2(v1, k)));
    }
  }
  const uint8x16_t s = vld1q_u8(b + offsetof(tl_block_q2_k, scales));
  widen_u8_s32(vandq_u8(s, vdupq_n_u8(15)), o->sc);
  widen_u8_s16(vshrq_n_u8(s, 4), o->mn);
  o->d = f16s(b + offsetof(tl_block_q2_k, d));
  o->dmin = f16s(b + offsetof(tl_block_q2_k, dmin));
}

static void unpack_q3_k(const uint8_t *b, kblk *o) {
  const uint8_t *qs = b + offsetof(tl_block_q3_k, qs), *hm = b + offsetof(tl_block_q3_k, hmask);
  const uint8x16_t hm0 = vld1q_u8(hm), hm1 = vld1q_u8(hm + 16), four = vdupq_n_u8(4);
  for (int h = 0; h < 2; h++) {
    const uint8x16_t v0 = vld1q_u8(qs + 32 * h), v1 = vld1q_u8(qs + 32 * h + 16);
    for (int k = 0; k < 4; k++) {
      /* high bit e / 32 = 4 h + k of hmask[e % 32]; clear: -4 */
      const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (4 * h + k)));
      const uint8x16_t q0 = vsubq_u8(bits2(v0, k), vbicq_u8(four, vtstq_u8(hm0, bit)));
      const uint8x16_t q1 = vsubq_u8(bits2(v1, k), vbicq_u8(four, vtstq_u8(hm1, bit)));
      vst1q_s8(o->q + 128 * h + 32 * k, vreinterpretq_s8_u8(q0));
      vst1q_s8(o->q + 128 * h + 32 * k + 16, vreinterpretq_s8_u8(q1));
    }
  }
  int8_t sc[16];
  tl_q3_k_scales(b + offsetof(tl_block_q3_k, scales), sc);
  widen_s8_s32(vld1q_s8(sc), o->sc);
  o->mn[0] = o->mn[1] = vdupq_n_s16(0);
  o->d = f16s(b + offsetof(tl_block_q3_k, d));
  o->dmin = 0;
}

/* Q4_K and Q5_K: sub-block j of 32 takes nibble j % 2 of qs[32 (j / 2) + l]
 * (Q5_K: bit j of qh[l] as bit 4); its scale and min go to both 16-halves. */
INLINE void unpack_q45_k(bool five, const uint8_t *b, kblk *o) {
  const uint8_t *qs = b + (five ? offsetof(tl_block_q5_k, qs) : offsetof(tl_block_q4_k, qs));
  const uint8_t *sp =
      b + (five ? offsetof(tl_block_q5_k, scales) : offsetof(tl_block_q4_k, scales));
  const uint8_t *qhp = b + offsetof(tl_block_q5_k, qh);
  const uint8x16_t m4 = vdupq_n_u8(15), k16 = vdupq_n_u8(16);
  uint8x16_t qh0 = vdupq_n_u8(0), qh1 = qh0;
  if (five) {
    qh0 = vld1q_u8(qhp);
    qh1 = vld1q_u8(qhp + 16);
  }
  for (int p = 0; p < 4; p++) {
    const uint8x16_t v0 = vld1q_u8(qs + 32 * p), v1 = vld1q_u8(qs + 32 * p + 16);
    uint8x16_t a0 = vandq_u8(v0, m4), a1 = vandq_u8(v1, m4);
    uint8x16_t b0 = vshrq_n_u8(v0, 4), b1 = vshrq_n_u8(v1, 4);
    if (five) {
      const uint8x16_t ba = vdupq_n_u8((uint8_t)(1u << (2 * p)));
      const uint8x16_t bb = vdupq_n_u8((uint8_t)(1u << (2 * p + 1)));
      a0 = vorrq_u8(a0, vandq_u8(vtstq_u8(qh0, ba), k16));
      a1 = vorrq_u8(a1, vandq_u8(vtstq_u8(qh1, ba), k16));
      b0 = vorrq_u8(b0, vandq_u8(vtstq_u8(qh0, bb), k16));
      b1 = vorrq_u8(b1, vandq_u8(vtstq_u8(qh1, bb), k16));
    }
    vst1q_s8(o->q + 64 * p, vreinterpretq_s8_u8(a0));
    vst1q_s8(o->q + 64 * p + 16, vreinterpretq_s8_u8(a1));
    vst1q_s8(o->q + 64 * p + 32, vreinterpretq_s8_u8(b0));
    vst1q_s8(o->q + 64 * p + 48, vreinterpretq_s8_u8(b1));
  }
  uint8_t sc[16], mn[16];
  for (int j = 0; j < 8; j++) {
    tl_k4_scale_min(j, sp, &sc[2 * j], &mn[2 * j]);
    sc[2 * j + 1] = sc[2 * j];
    mn[2 * j + 1] = mn[2 * j];
  }
  widen_u8_s32(vld1q_u8(sc), o->sc);
  widen_u8_s16(vld1q_u8(mn), o->mn);
  o->d = f16s(b);
  o->dmin = f16s(b + 2);
}

static void unpack_q4_k(const uint8_t *b, kblk *o) {
  unpack_q45_k(false, b, o);
}
static void unpack_q5_k(const uint8_t *b, kblk *o) {
  unpack_q45_k(true, b, o);
}

/* Q6_K: element 128 h + 32 k + l: low 4 bits in nibble k / 2 of
 * ql[64 h + 32 (k % 2) + l], high 2 bits (qh[32 h + l] >> 2 k) & 3; minus 32. */
static void unpack_q6_k(const uint8_t *b, kblk *o) {
  const uint8_t *ql = b + offsetof(tl_block_q6_k, ql), *qh = b + offsetof(tl_block_q6_k, qh);
  const uint8x16_t m4 = vdupq_n_u8(15);
  const int8x16_t k32 = vdupq_n_s8(32);
  for (int h = 0; h < 2; h++) {
    uint8x16_t l[4];
    for (int j = 0; j < 4; j++) l[j] = vld1q_u8(ql + 64 * h + 16 * j);
    const uint8x16_t h0 = vld1q_u8(qh + 32 * h), h1 = vld1q_u8(qh + 32 * h + 16);
    for (int k = 0; k < 4; k++) {
      const uint8x16_t s0 = l[2 * (k % 2)], s1 = l[2 * (k % 2) + 1];
      const uint8x16_t lo0 = k < 2 ? vandq_u8(s0, m4) : vshrq_n_u8(s0, 4);
      const uint8x16_t lo1 = k < 2 ? vandq_u8(s1, m4) : vshrq_n_u8(s1, 4);
      const uint8x16_t q0 = vorrq_u8(lo0, vshlq_n_u8(bits2(h0, k), 4));
      const uint8x16_t q1 = vorrq_u8(lo1, vshlq_n_u8(bits2(h1, k), 4));
      vst1q_s8(o->q + 128 * h + 32 * k, vsubq_s8(vreinterpretq_s8_u8(q0), k32));
      vst1q_s8(o->q + 128 * h + 32 * k + 16, vsubq_s8(vreinterpretq_s8_u8(q1), k32));
    }
  }
  widen_s8_s32(vld1q_s8((const int8_t *)b + offsetof(tl_block_q6_k, scales)), o->sc);
  o->mn[0] = o->mn[1] = vdupq_n_s16(0);
  o->d = f16s(b + offsetof(tl_block_q6_k, d));
  o->dmin = 0;
}

/* IQ4_XS: the nibbles looked up (TBL) as the int8 values; the 6-bit scales
 * - 32 per 32, for both 16-halves. */
static void unpack_iq4_xs(const uint8_t *b, kblk *o) {
  const int8x16_t vals = vld1q_s8(tl_iq4nl_values);
  const uint8x16_t m4 = vdupq_n_u8(15);
  const uint8_t *qs = b + offsetof(tl_block_iq4_xs, qs);
  int8_t sc[16];
  for (int j = 0; j < 8; j++) {
    const uint8x16_t v = vld1q_u8(qs + 16 * j);
    vst1q_s8(o->q + 32 * j, vqtbl1q_s8(vals, vandq_u8(v, m4)));
    vst1q_s8(o->q + 32 * j + 16, vqtbl1q_s8(vals, vshrq_n_u8(v, 4)));
    sc[2 * j] = sc[2 * j + 1] = (int8_t)tl_iq4_xs_scale(b, j);
  }
  widen_s8_s32(vld1q_s8(sc), o->sc);
  o->mn[0] = o->mn[1] = vdupq_n_s16(0);
  o->d = f16s(b);
  o->dmin = 0;
}

/* The other IQ types: the lattice lookups of the scalar reference's integer
 * form (tl_iq_unpack: values f * sc[e / 16] * q[e]); the dot products in NEON. */
INLINE void unpack_iq(uint32_t type, const uint8_t *b, kblk *o) {
  int16_t sc[16];
  o->d = tl_iq_unpack(type, b, o->q, sc);
  widen_s8_s32(vmovn_high_s16(vmovn_s16(vld1q_s16(sc)), vld1q_s16(sc + 8)), o->sc);
  o->mn[0] = o->mn[1] = vdupq_n_s16(0);
  o->dmin = 0;
}
#define UNPACK_IQ(name, type)                            \
  static void unpack_##name(const uint8_t *b, kblk *o) { \
    unpack_iq(type, b, o);                               \
  }
UNPACK_IQ(iq2_xxs, TL_TYPE_IQ2_XXS)
UNPACK_IQ(iq2_xs, TL_TYPE_IQ2_XS)
UNPACK_IQ(iq2_s, TL_TYPE_IQ2_S)
UNPACK_IQ(iq3_xxs, TL_TYPE_IQ3_XXS)
UNPACK_IQ(iq3_s, TL_TYPE_IQ3_S)
UNPACK_IQ(iq1_s, TL_TYPE_IQ1_S)
UNPACK_IQ(iq1_m, TL_TYPE_IQ1_M)
#undef UNPACK_IQ

/* [sum of v[0], .., sum of v[T - 1]]: the per-token totals of a tile row
 * (T = 1: in every lane). The integer totals are exact, so a token's result
 * does not depend on the tiling: prefill equals token-by-token decoding. */
INLINE int32x4_t hsum4(const int32x4_t v[4], const int T) {
  if (T == 1) return vdupq_n_s32(vaddvq_s32(v[0]));
  return vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]));
}

/* Token tiles: T = 4 (lane t: token t; the last tile repeats the last token
 * and only valid lanes are stored) or T = 1 for one token (in every lane). */
#define TOK_CHUNK 64

/* The valid lanes of a row tile's accumulators (acc[q][r], lane t: token
 * 4 q + t of the chunk at c0; rows r0..r0 + 3) into y. */
static inline void store_tiles(float32x4_t acc[TOK_CHUNK / 4][4], int ntt, int64_t tn, int64_t nr,
                               int64_t c0, int64_t r0, float *y, int64_t ldy) {
  const int mr = (int)min64(4, nr - r0);
  for (int q = 0; q < ntt; q++) {
    float o[4][4];
    for (int r = 0; r < 4; r++) vst1q_f32(o[r], acc[q][r]);
    for (int t = 0; t < 4 && 4 * q + t < tn; t++)
      for (int r = 0; r < mr; r++) y[(c0 + 4 * q + t) * ldy + r0 + r] = o[r][t];
  }
}

/* ---- the integer kernels, twice ----------------------------------------------------- */

/* Baseline: SMULL + SMLAL2 (two products per int16 lane: |w a| <= 128 * 127,
 * so the pair fits) and SADALP into the int32 lanes. */
#define SFX(name) name##_neon
#define TGT
#define DOT16(acc, w, a) \
  vpadalq_s16((acc), vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(a)), (w), (a)))
#include "backend/cpu/gemm_neon_tmpl.h"
#undef SFX
#undef TGT
#undef DOT16

#define SFX(name) name##_dotprod
#define TGT __attribute__((target("arch=armv8.2-a+dotprod")))
#define DOT16(acc, w, a) vdotq_s32((acc), (w), (a))
#include "backend/cpu/gemm_neon_tmpl.h"
#undef SFX
#undef TGT
#undef DOT16

/* ---- F32 / F16 / BF16 weights, f32 activations -------------------------------------- */

INLINE float32x4_t ld_w4(uint32_t type, const uint8_t *p) {
  if (type == TL_TYPE_F32) return vreinterpretq_f32_u8(vld1q_u8(p));
  if (type == TL_TYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
  return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
}

INLINE float ld_w1(uint32_t type, const uint8_t *p) {
  if (type == TL_TYPE_F32) {
    float f;
    memcpy(&f, p, 4);
    return f;
  }
  if (type == TL_TYPE_F16) return tl_f16_to_f32(tl_rd_u16(p));
  return tl_bf16_to_f32(tl_rd_u16(p));
}

/* out[r][t] = dot(row r, token t) for 4 rows and T tokens. */
INLINE void fl_tile(uint32_t type, const uint8_t *const wr[4], const float *const xr[4], int64_t n,
                    float out[4][4], const int T) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  float32x4_t acc[4][4];
  _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t xv[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) xv[t] = vld1q_f32(xr[t] + i);
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
      const float32x4_t wv = ld_w4(type, wr[r] + (size_t)i * es);
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] =
          vfmaq_f32(acc[r][t], wv, xv[t]);
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
      _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
    float s = vaddvq_f32(acc[r][t]);
    for (int64_t j = i; j < n; j++) s += ld_w1(type, wr[r] + (size_t)j * es) * xr[t][j];
    out[r][t] = s;
  }
}

INLINE void gemm_fl(uint32_t type, const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                    int64_t nt, int64_t n, float *y, int64_t ldy) {
  for (int64_t r0 = 0; r0 < nr; r0 += 4) {
    const uint8_t *wr[4];
    for (int r = 0; r < 4; r++) wr[r] = (const uint8_t *)w + min64(r0 + r, nr - 1) * ldw;
    const int mr = (int)min64(4, nr - r0);
    for (int64_t t0 = 0; t0 < nt; t0 += 4) {
      const float *xr[4];
      for (int t = 0; t < 4; t++)
        xr[t] = (const float *)(const void *)((const uint8_t *)x + min64(t0 + t, nt - 1) * ldx);
      float out[4][4];
      if (nt == 1)
        fl_tile(type, wr, xr, n, out, 1);
      else
        fl_tile(type, wr, xr, n, out, 4);
      const int mt = (int)min64(4, nt - t0);
      for (int t = 0; t < mt; t++)
        for (int r = 0; r < mr; r++) y[(t0 + t) * ldy + r0 + r] = out[r][t];
    }
  }
}

static void gemm_f32(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, int64_t nt,
                     int64_t n, float *y, int64_t ldy) {
  gemm_fl(TL_TYPE_F32, w, ldw, nr, x, ldx, nt, n, y, ldy);
}

static void gemm_f16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, int64_t nt,
                     int64_t n, float *y, int64_t ldy) {
  gemm_fl(TL_TYPE_F16, w, ldw, nr, x, ldx, nt, n, y, ldy);
}

static void gemm_bf16(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, int64_t nt,
                      int64_t n, float *y, int64_t ldy) {
  gemm_fl(TL_TYPE_BF16, w, ldw, nr, x, ldx, nt, n, y, ldy);
}

void tl_neon_fill_gemm(tl_cpu_kernels *k, bool dotprod);
void tl_neon_fill_gemm(tl_cpu_kernels *k, bool dotprod) {
  k->gemm[TL_TYPE_F32] = gemm_f32;
  k->gemm[TL_TYPE_F16] = gemm_f16;
  k->gemm[TL_TYPE_BF16] = gemm_bf16;
  if (dotprod)
    fill_qgemm_dotprod(k);
  else
    fill_qgemm_neon(k);
}
#endif
