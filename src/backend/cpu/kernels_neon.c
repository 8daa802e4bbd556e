/* AArch64 kernels: the "neon" set (baseline ASIMD, which every AArch64 CPU
 * has) and the "neon_dotprod" set (adds the SDOT integer dot product,
 * Armv8.2+). This file: f32-activation dot products and axpy for F32, F16
 * and BF16, the int8-with-group-scales dot, the activation quantizers
 * (bit-identical to the scalar ones), the attention tile kernels and the bulk
 * f16 conversion; the
 * matrix kernels are in gemm_neon.c. Selected at run time by HWCAP
 * (dispatch.c) and tested against the scalar reference
 * (tests/unit/test_kernels.c, test_qkernels.c), under qemu-aarch64 in CI
 * (`make test-neon`). */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/qkernels.h"

/* gemm_neon.c: the matrix kernels of a set (dotprod: the SDOT ones). */
void tl_neon_fill_gemm(tl_cpu_kernels *k, bool dotprod);

/* ---- loads --------------------------------------------------------------------- */

static inline float32x4_t ld_f32(const void *p) {
  return vreinterpretq_f32_u8(vld1q_u8((const uint8_t *)p));
}

/* Four halves (8 bytes) as floats: FCVTL is baseline Armv8. */
static inline float32x4_t ld_f16x4(const uint8_t *p) {
  return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
}

static inline float32x4_t ld_bf16x4(const uint8_t *p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p)), 16));
}

/* ---- f32 activations --------------------------------------------------------------- */

/* Four weights of a float type as floats, and one. */
static inline float32x4_t ld_w4(uint32_t type, const uint8_t *p) {
  if (type == TL_TYPE_F32) return ld_f32(p);
  return type == TL_TYPE_F16 ? ld_f16x4(p) : ld_bf16x4(p);
}
static inline float ld_w1(uint32_t type, const uint8_t *p) {
  if (type == TL_TYPE_F32) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
  }
  const uint16_t h = tl_rd_u16(p);
  return type == TL_TYPE_F16 ? tl_f16_to_f32(h) : tl_bf16_to_f32(h);
}

/* dot(row, x) for F32 / F16 / BF16 rows: four accumulators over 16 values a
 * step, then 4 at a time, then one at a time. */
static inline float dot_fl(uint32_t type, const uint8_t *w, const float *x, int64_t n) {
  const size_t es = type == TL_TYPE_F32 ? 4 : 2;
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = vfmaq_f32(a0, ld_w4(type, w + es * (size_t)i), vld1q_f32(x + i));
    a1 = vfmaq_f32(a1, ld_w4(type, w + es * (size_t)(i + 4)), vld1q_f32(x + i + 4));
    a2 = vfmaq_f32(a2, ld_w4(type, w + es * (size_t)(i + 8)), vld1q_f32(x + i + 8));
    a3 = vfmaq_f32(a3, ld_w4(type, w + es * (size_t)(i + 12)), vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, ld_w4(type, w + es * (size_t)i), vld1q_f32(x + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; i++) s += ld_w1(type, w + es * (size_t)i) * x[i];
  return s;
}

static float neon_dot_f32(const void *row, const float *x, int64_t n) {
  return dot_fl(TL_TYPE_F32, row, x, n);
}
static float neon_dot_f16(const void *row, const float *x, int64_t n) {
  return dot_fl(TL_TYPE_F16, row, x, n);
}
static float neon_dot_bf16(const void *row, const float *x, int64_t n) {
  return dot_fl(TL_TYPE_BF16, row, x, n);
}

/* Sixteen int8 as four float vectors. */
static inline void i8x16_to_f32(int8x16_t v, float32x4_t f[4]) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
  f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
  f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
  f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
  f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

static float neon_dot_i8s(const int8_t *q, const float *scales, const float *x, int64_t n) {
  float32x4_t acc = vdupq_n_f32(0);
  for (int64_t g = 0; g < n / TL_I8S_GROUP; g++, q += TL_I8S_GROUP, x += TL_I8S_GROUP) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
    for (int j = 0; j < TL_I8S_GROUP; j += 16) {
      float32x4_t f[4];
      i8x16_to_f32(vld1q_s8(q + j), f);
      s0 = vfmaq_f32(s0, f[0], vld1q_f32(x + j));
      s1 = vfmaq_f32(s1, f[1], vld1q_f32(x + j + 4));
      s0 = vfmaq_f32(s0, f[2], vld1q_f32(x + j + 8));
      s1 = vfmaq_f32(s1, f[3], vld1q_f32(x + j + 12));
    }
    acc = vfmaq_n_f32(acc, vaddq_f32(s0, s1), 1.0f / scales[g]);
  }
  return vaddvq_f32(acc);
}

static void neon_axpy_f32(float a, const void *xv, float *y, int64_t n) {
  const float *x = xv;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), ld_f32(x + i), a));
  for (; i < n; i++) y[i] += a * x[i];
}

static void neon_axpy_f16(float a, const void *xv, float *y, int64_t n) {
  const uint8_t *x = xv;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), ld_f16x4(x + 2 * i), a));
  for (; i < n; i++) y[i] += a * tl_f16_to_f32(tl_rd_u16(x + 2 * i));
}

/* ---- activation quantizers (bit-identical to the scalar ones) --------------------
 * amax with FMAXNM (NaN-ignoring, as fmaxf), the same d and 1 / d, and
 * FCVTNS: round to nearest, ties to even, as nearbyintf in the default mode. */

/* q[16] from x[16] times id; returns the four int32 lanes' sum vector. */
static inline int32x4_t quant16(const float *x, float32x4_t vid, int8_t *q) {
  const int32x4_t i0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x), vid));
  const int32x4_t i1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4), vid));
  const int32x4_t i2 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 8), vid));
  const int32x4_t i3 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 12), vid));
  const int16x8_t h0 = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
  const int16x8_t h1 = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
  vst1q_s8(q, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
  return vaddq_s32(vaddq_s32(i0, i1), vaddq_s32(i2, i3));
}

static inline float amax_f32(const float *x, int n) {
  float32x4_t m = vdupq_n_f32(0);
  for (int j = 0; j < n; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
  return vmaxnmvq_f32(m);
}

static void neon_qact_q8_32(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n), *s = d + n / 32;
  for (int64_t i = 0; i < n / 32; i++, x += 32, q += 32) {
    const float dd = amax_f32(x, 32) / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const float32x4_t vid = vdupq_n_f32(id);
    const int32x4_t sum = vaddq_s32(quant16(x, vid, q), quant16(x + 16, vid, q + 16));
    d[i] = dd;
    s[i] = dd * (float)vaddvq_s32(sum);
  }
}

static void neon_qact_q8_256(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n);
  int16_t *bs = (int16_t *)tl_act_bsum(row, n);
  for (int64_t i = 0; i < n / 256; i++, x += 256, q += 256, bs += 16) {
    const float dd = amax_f32(x, 256) / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const float32x4_t vid = vdupq_n_f32(id);
    for (int j = 0; j < 16; j++) bs[j] = (int16_t)vaddvq_s32(quant16(x + 16 * j, vid, q + 16 * j));
    d[i] = dd;
  }
}

/* ---- bulk f16 conversion ------------------------------------------------------------ */

void tl_neon_f16_to_f32(const void *src, float *dst, int64_t n);
void tl_neon_f16_to_f32(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(s + 2 * i));
    vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
  }
  for (; i < n; i++) dst[i] = tl_f16_to_f32(tl_rd_u16(s + 2 * i));
}

/* ---- attention tile kernels (contracts in backend.h) ----------------------------- */

/* As the x86 ones (attn_x86.c): keys transposed, so a vector holds one value
 * of 4 positions and each query value is a scalar operand (FMLA by element,
 * fused); up to 8 query heads x 8 positions, or x 8 value columns, stay in
 * registers. The same operations in the same order as every other set. */

/* The first cnt (0..4) of 4 cache values from p as f32, the rest 0. */
static inline float32x4_t ld_kv4(const uint8_t *p, const bool f16, int cnt) {
  if (cnt >= 4) return f16 ? ld_f16x4(p) : ld_f32(p);
  uint8_t b[16] = {0};
  if (cnt > 0) memcpy(b, p, (size_t)cnt * (f16 ? 2 : 4));
  return f16 ? ld_f16x4(b) : ld_f32(b);
}

/* The first cnt (0..4) lanes of v to y. */
static inline void st4(float *y, float32x4_t v, int cnt) {
  if (cnt >= 4) {
    vst1q_f32(y, v);
  } else if (cnt > 0) {
    float b[4];
    vst1q_f32(b, v);
    memcpy(y, b, (size_t)cnt * 4);
  }
}

static inline int clamp4(int left) {
  return left >= 4 ? 4 : left > 0 ? left : 0;
}

/* The first cnt (0..4) lanes of v, the others -inf. */
static inline float32x4_t first4(float32x4_t v, int cnt) {
  const int32_t idx[4] = {0, 1, 2, 3};
  const uint32x4_t in = vcltq_s32(vld1q_s32(idx), vdupq_n_s32(cnt));
  return vbslq_f32(in, v, vdupq_n_f32(-INFINITY));
}

static inline __attribute__((always_inline)) void scores_g8(const uint8_t *kt, const bool f16,
                                                            int64_t ldk, int n, const float *q,
                                                            int hd, float scale, float *s,
                                                            int64_t lds, float *smax, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)ldk * es;
  float32x4_t mv[8]; /* running maxima; FMAXNM leaves NaNs out */
  for (int g = 0; g < G; g++) mv[g] = vdupq_n_f32(-INFINITY);
  for (int r0 = 0; r0 < n; r0 += 8) {
    const int c0 = clamp4(n - r0), c1 = clamp4(n - r0 - 4);
    float32x4_t a0[8], a1[8];
    for (int g = 0; g < G; g++) a0[g] = a1[g] = vdupq_n_f32(0);
    const uint8_t *kp = kt + (size_t)r0 * es;
    for (int d = 0; d < hd; d++, kp += row) {
      const float32x4_t k0 = ld_kv4(kp, f16, c0), k1 = ld_kv4(kp + 4 * es, f16, c1);
      for (int g = 0; g < G; g++) {
        const float qv = q[(size_t)g * hd + d];
        a0[g] = vfmaq_n_f32(a0[g], k0, qv);
        a1[g] = vfmaq_n_f32(a1[g], k1, qv);
      }
    }
    for (int g = 0; g < G; g++) {
      const float32x4_t s0 = vmulq_n_f32(a0[g], scale), s1 = vmulq_n_f32(a1[g], scale);
      st4(s + g * lds + r0, s0, c0);
      st4(s + g * lds + r0 + 4, s1, c1);
      mv[g] = vmaxnmq_f32(mv[g], first4(s0, c0));
      mv[g] = vmaxnmq_f32(mv[g], first4(s1, c1));
    }
  }
  if (smax)
    for (int g = 0; g < G; g++) smax[g] = vmaxnmvq_f32(mv[g]);
}

static void neon_att_scores(const void *kt, bool f16, int64_t ldk, int n, const float *q, int nq,
                            int hd, float scale, float *s, int64_t lds, float *smax) {
  for (int g0 = 0; g0 < nq; g0 += 8) {
    const int ng = nq - g0 < 8 ? nq - g0 : 8;
    const float *qg = q + (size_t)g0 * hd;
    float *sg = s + g0 * lds, *mg = smax ? smax + g0 : NULL;
    if (f16)
      TL_SWITCH_G8(scores_g8, ng, (const uint8_t *)kt, true, ldk, n, qg, hd, scale, sg, lds, mg)
    else
      TL_SWITCH_G8(scores_g8, ng, (const uint8_t *)kt, false, ldk, n, qg, hd, scale, sg, lds, mg)
  }
}

static inline __attribute__((always_inline)) void accum_g8(const uint8_t *v, const bool f16, int n,
                                                           const float *p, int64_t ldp, int hd,
                                                           float *o, float *sum, const int G) {
  const size_t es = f16 ? 2 : 4, row = (size_t)hd * es;
  float l[8];
  for (int g = 0; g < G; g++) l[g] = sum ? sum[g] : 0;
  for (int i0 = 0; i0 < hd; i0 += 8) {
    const bool with_sum = sum && i0 == 0; /* the sums, with the first columns */
    const int c0 = clamp4(hd - i0), c1 = clamp4(hd - i0 - 4);
    float32x4_t a0[8], a1[8];
    for (int g = 0; g < G; g++) {
      a0[g] = ld_kv4((const uint8_t *)(o + (size_t)g * hd + i0), false, c0);
      a1[g] = ld_kv4((const uint8_t *)(o + (size_t)g * hd + i0 + 4), false, c1);
    }
    const uint8_t *vp = v + (size_t)i0 * es;
    for (int r = 0; r < n; r++, vp += row) {
      const float32x4_t v0 = ld_kv4(vp, f16, c0), v1 = ld_kv4(vp + 4 * es, f16, c1);
      for (int g = 0; g < G; g++) {
        const float pv = p[g * ldp + r];
        a0[g] = vfmaq_n_f32(a0[g], v0, pv);
        a1[g] = vfmaq_n_f32(a1[g], v1, pv);
        if (with_sum) l[g] += pv;
      }
    }
    for (int g = 0; g < G; g++) {
      st4(o + (size_t)g * hd + i0, a0[g], c0);
      st4(o + (size_t)g * hd + i0 + 4, a1[g], c1);
    }
  }
  if (sum)
    for (int g = 0; g < G; g++) sum[g] = l[g];
}

static void neon_att_accum(const void *v, bool f16, int n, const float *p, int64_t ldp, int nq,
                           int hd, float *o, float *sum) {
  for (int g0 = 0; g0 < nq; g0 += 8) {
    const int ng = nq - g0 < 8 ? nq - g0 : 8;
    const float *pg = p + g0 * ldp;
    float *og = o + (size_t)g0 * hd, *lg = sum ? sum + g0 : NULL;
    if (f16)
      TL_SWITCH_G8(accum_g8, ng, (const uint8_t *)v, true, n, pg, ldp, hd, og, lg)
    else
      TL_SWITCH_G8(accum_g8, ng, (const uint8_t *)v, false, n, pg, ldp, hd, og, lg)
  }
}

/* ---- the sets ------------------------------------------------------------------------ */

void tl_cpu_fill_neon(tl_cpu_kernels *k) {
  k->name = "neon";
  k->vec_dot[TL_TYPE_F32] = neon_dot_f32;
  k->vec_dot[TL_TYPE_F16] = neon_dot_f16;
  k->vec_dot[TL_TYPE_BF16] = neon_dot_bf16;
  k->axpy[TL_TYPE_F32] = neon_axpy_f32;
  k->axpy[TL_TYPE_F16] = neon_axpy_f16;
  k->vec_dot_i8s = neon_dot_i8s;
  k->att_scores = neon_att_scores;
  k->att_accum = neon_att_accum;
  k->quant_act[TL_ACT_Q8_32] = neon_qact_q8_32;
  k->quant_act[TL_ACT_Q8_256] = neon_qact_q8_256;
  tl_neon_fill_gemm(k, false);
}

void tl_cpu_fill_neon_dotprod(tl_cpu_kernels *k) {
  tl_cpu_fill_neon(k);
  k->name = "neon_dotprod";
  tl_neon_fill_gemm(k, true);
}
#endif
