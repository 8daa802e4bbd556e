/* Scalar reference dot products: one per weight type. Fast kernels are
 * tested against these. Several accumulators keep the loops cheap without
 * changing the meaning. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/qkernels.h"

static float dot_f32(const void *row, const float *x, int64_t n) {
  const float *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
  for (; i < n; i++) acc[0] += w[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += tl_f16_to_f32(tl_rd_u16(w + 2 * (i + j))) * x[i + j];
  for (; i < n; i++) acc[0] += tl_f16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += tl_bf16_to_f32(tl_rd_u16(w + 2 * (i + j))) * x[i + j];
  for (; i < n; i++) acc[0] += tl_bf16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_q8_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    const int8_t *qs = (const int8_t *)(b + 2);
    const float *xb = x + i * TL_QK8_0;
    float acc[4] = {0};
    for (int j = 0; j < TL_QK8_0; j += 4)
      for (int k = 0; k < 4; k++) acc[k] += (float)qs[j + k] * xb[j + k];
    sum += tl_f16_to_f32(tl_rd_u16(b)) * ((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
  return sum;
}

/* The quantized types below unpack each (sub-)block's integer quants into a
 * small int8 buffer, take sum(q * x) (and sum(x) where the type has a min)
 * in float, and apply the block's float scale and min once:
 *   dot = sum over groups of scale * sum(q * x) - min * sum(x).
 * The unpacking is written independently of quant/quant_*.c, so the tests
 * that compare these against the dequantized rows check both. */

/* sum(q[j] * x[j]) for n a multiple of 4. */
static inline float dot_i8(const int8_t *q, const float *x, int n) {
  float acc[4] = {0};
  for (int j = 0; j < n; j += 4)
    for (int k = 0; k < 4; k++) acc[k] += (float)q[j + k] * x[j + k];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* sum(x[j]) for n a multiple of 4. */
static inline float sum_f32(const float *x, int n) {
  float acc[4] = {0};
  for (int j = 0; j < n; j += 4)
    for (int k = 0; k < 4; k++) acc[k] += x[j + k];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static inline float rd_f16(const uint8_t *p) {
  return tl_f16_to_f32(tl_rd_u16(p));
}

/* Q4_0/Q4_1: byte j of qs holds element j (low nibble) and j + 16 (high). */
static void unpack_nibbles32(const uint8_t *qs, int offset, int8_t q[32]) {
  for (int j = 0; j < 16; j++) {
    q[j] = (int8_t)((qs[j] & 0x0F) - offset);
    q[j + 16] = (int8_t)((qs[j] >> 4) - offset);
  }
}

/* Q5_0/Q5_1: as Q4 plus bit j of the little-endian 32-bit qh as bit 4 of
 * element j. */
static void unpack_q5(const uint8_t *qh, const uint8_t *qs, int offset, int8_t q[32]) {
  for (int j = 0; j < 32; j++) {
    const int lo = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    const int hi = (qh[j / 8] >> (j % 8)) & 1;
    q[j] = (int8_t)((lo | hi << 4) - offset);
  }
}

static float dot_q4_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[32];
  for (int64_t i = 0; i < n / TL_QK4_0; i++, b += sizeof(tl_block_q4_0)) {
    unpack_nibbles32(b + offsetof(tl_block_q4_0, qs), 8, q);
    sum += rd_f16(b + offsetof(tl_block_q4_0, d)) * dot_i8(q, x + i * 32, 32);
  }
  return sum;
}

static float dot_q4_1(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[32];
  for (int64_t i = 0; i < n / TL_QK4_1; i++, b += sizeof(tl_block_q4_1)) {
    const float *xb = x + i * 32;
    unpack_nibbles32(b + offsetof(tl_block_q4_1, qs), 0, q);
    sum += rd_f16(b + offsetof(tl_block_q4_1, d)) * dot_i8(q, xb, 32) +
           rd_f16(b + offsetof(tl_block_q4_1, m)) * sum_f32(xb, 32);
  }
  return sum;
}

static float dot_q5_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[32];
  for (int64_t i = 0; i < n / TL_QK5_0; i++, b += sizeof(tl_block_q5_0)) {
    unpack_q5(b + offsetof(tl_block_q5_0, qh), b + offsetof(tl_block_q5_0, qs), 16, q);
    sum += rd_f16(b + offsetof(tl_block_q5_0, d)) * dot_i8(q, x + i * 32, 32);
  }
  return sum;
}

static float dot_q5_1(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[32];
  for (int64_t i = 0; i < n / TL_QK5_1; i++, b += sizeof(tl_block_q5_1)) {
    const float *xb = x + i * 32;
    unpack_q5(b + offsetof(tl_block_q5_1, qh), b + offsetof(tl_block_q5_1, qs), 0, q);
    sum += rd_f16(b + offsetof(tl_block_q5_1, d)) * dot_i8(q, xb, 32) +
           rd_f16(b + offsetof(tl_block_q5_1, m)) * sum_f32(xb, 32);
  }
  return sum;
}

/* 2-bit field of element e (0..255) in the K-quant bit-plane layout shared by
 * Q2_K, Q3_K (low bits) and Q6_K (high bits): byte 32 * (e / 128) + e % 32,
 * bits 2 * ((e % 128) / 32) and up. */
static inline int kq_2bits(const uint8_t *planes, int e) {
  return (planes[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

static float dot_q2_k(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[16];
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q2_k)) {
    const float d = rd_f16(b + offsetof(tl_block_q2_k, d));
    const float dmin = rd_f16(b + offsetof(tl_block_q2_k, dmin));
    const uint8_t *scales = b + offsetof(tl_block_q2_k, scales);
    const uint8_t *qs = b + offsetof(tl_block_q2_k, qs);
    const float *xb = x + i * TL_QK_K;
    float acc = 0;
    for (int g = 0; g < 16; g++) {
      for (int l = 0; l < 16; l++) q[l] = (int8_t)kq_2bits(qs, 16 * g + l);
      acc += d * (float)(scales[g] & 0x0F) * dot_i8(q, xb + 16 * g, 16) -
             dmin * (float)(scales[g] >> 4) * sum_f32(xb + 16 * g, 16);
    }
    sum += acc;
  }
  return sum;
}

static float dot_q3_k(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[16], sc[16];
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q3_k)) {
    const float d = rd_f16(b + offsetof(tl_block_q3_k, d));
    const uint8_t *hmask = b + offsetof(tl_block_q3_k, hmask);
    const uint8_t *qs = b + offsetof(tl_block_q3_k, qs);
    tl_q3_k_scales(b + offsetof(tl_block_q3_k, scales), sc);
    const float *xb = x + i * TL_QK_K;
    float acc = 0;
    for (int g = 0; g < 16; g++) {
      for (int l = 0; l < 16; l++) {
        const int e = 16 * g + l;
        const int high = (hmask[e % 32] >> (e / 32)) & 1; /* set: no -4 */
        q[l] = (int8_t)(kq_2bits(qs, e) - (high ? 0 : 4));
      }
      acc += d * (float)sc[g] * dot_i8(q, xb + 16 * g, 16);
    }
    sum += acc;
  }
  return sum;
}

/* Q4_K and Q5_K: sub-block j (0..7) of 32 elements takes nibble j % 2 of
 * qs[32 * (j / 2) + l]; Q5_K's 5th bit is bit j of qh[l]. */
static float dot_q45_k(const uint8_t *b, const float *xb, bool five) {
  const size_t off_d = five ? offsetof(tl_block_q5_k, d) : offsetof(tl_block_q4_k, d);
  const size_t off_dmin = five ? offsetof(tl_block_q5_k, dmin) : offsetof(tl_block_q4_k, dmin);
  const size_t off_sc = five ? offsetof(tl_block_q5_k, scales) : offsetof(tl_block_q4_k, scales);
  const size_t off_qs = five ? offsetof(tl_block_q5_k, qs) : offsetof(tl_block_q4_k, qs);
  const float d = rd_f16(b + off_d), dmin = rd_f16(b + off_dmin);
  const uint8_t *qs = b + off_qs, *qh = b + offsetof(tl_block_q5_k, qh);
  int8_t q[32];
  float acc = 0;
  for (int j = 0; j < 8; j++) {
    uint8_t sc, m;
    tl_k4_scale_min(j, b + off_sc, &sc, &m);
    for (int l = 0; l < 32; l++) {
      int v = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0F;
      if (five) v |= ((qh[l] >> j) & 1) << 4;
      q[l] = (int8_t)v;
    }
    acc += d * (float)sc * dot_i8(q, xb + 32 * j, 32) - dmin * (float)m * sum_f32(xb + 32 * j, 32);
  }
  return acc;
}

static float dot_q4_k(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q4_k))
    sum += dot_q45_k(b, x + i * TL_QK_K, false);
  return sum;
}

static float dot_q5_k(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q5_k))
    sum += dot_q45_k(b, x + i * TL_QK_K, true);
  return sum;
}

/* Q6_K: element e = 128 h + 32 k + l has low 4 bits in nibble k / 2 of
 * ql[64 h + 32 (k % 2) + l] and high 2 bits in the bit planes of qh. */
static float dot_q6_k(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[16];
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q6_k)) {
    const float d = rd_f16(b + offsetof(tl_block_q6_k, d));
    const uint8_t *ql = b + offsetof(tl_block_q6_k, ql);
    const uint8_t *qh = b + offsetof(tl_block_q6_k, qh);
    const int8_t *sc = (const int8_t *)(b + offsetof(tl_block_q6_k, scales));
    const float *xb = x + i * TL_QK_K;
    float acc = 0;
    for (int g = 0; g < 16; g++) {
      for (int l = 0; l < 16; l++) {
        const int e = 16 * g + l, h = e / 128, k = (e % 128) / 32;
        const int lo = (ql[64 * h + 32 * (k % 2) + e % 32] >> (4 * (k / 2))) & 0x0F;
        q[l] = (int8_t)((lo | kq_2bits(qh, e) << 4) - 32);
      }
      acc += d * (float)sc[g] * dot_i8(q, xb + 16 * g, 16);
    }
    sum += acc;
  }
  return sum;
}

/* The IQ types: each block's integer form (tl_iq_unpack, qact.c), then
 * f * sum_g sc_g * sum(q * x) per block. */
static inline float dot_iq(uint32_t type, const void *row, const float *x, int64_t n) {
  const tl_type_info *ti = tl_type_get(type);
  const uint8_t *b = row;
  float sum = 0;
  int8_t q[256];
  int16_t sc[16];
  for (int64_t i = 0; i < n / ti->blck; i++, b += ti->type_size) {
    const float f = tl_iq_unpack(type, b, q, sc);
    const float *xb = x + i * ti->blck;
    float acc = 0;
    for (int g = 0; g < ti->blck / 16; g++)
      acc += (float)sc[g] * dot_i8(q + 16 * g, xb + 16 * g, 16);
    sum += f * acc;
  }
  return sum;
}

#define DOT_IQ(name, type)                                              \
  static float dot_##name(const void *row, const float *x, int64_t n) { \
    return dot_iq(type, row, x, n);                                     \
  }
DOT_IQ(iq4_nl, TL_TYPE_IQ4_NL)
DOT_IQ(iq4_xs, TL_TYPE_IQ4_XS)
DOT_IQ(iq2_xxs, TL_TYPE_IQ2_XXS)
DOT_IQ(iq2_xs, TL_TYPE_IQ2_XS)
DOT_IQ(iq2_s, TL_TYPE_IQ2_S)
DOT_IQ(iq3_xxs, TL_TYPE_IQ3_XXS)
DOT_IQ(iq3_s, TL_TYPE_IQ3_S)
DOT_IQ(iq1_s, TL_TYPE_IQ1_S)
DOT_IQ(iq1_m, TL_TYPE_IQ1_M)

/* Torchless .bin int8: groups of 64 values q / s. */
static float dot_i8s(const int8_t *q, const float *scales, const float *x, int64_t n) {
  float sum = 0;
  for (int64_t g = 0; g < n / TL_I8S_GROUP; g++)
    sum += dot_i8(q + g * TL_I8S_GROUP, x + g * TL_I8S_GROUP, TL_I8S_GROUP) / scales[g];
  return sum;
}

static void axpy_f32(float a, const void *xv, float *y, int64_t n) {
  const float *x = xv;
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16(float a, const void *xv, float *y, int64_t n) {
  const uint8_t *x = xv;
  for (int64_t i = 0; i < n; i++) y[i] += a * tl_f16_to_f32(tl_rd_u16(x + 2 * i));
}

static void exp_sub(const float *x, float m, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = expf(x[i] - m);
}

static void silu(const float *x, const float *g, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float s = x[i] / (1.0f + expf(-x[i]));
    y[i] = g ? s * g[i] : s;
  }
}

static const tl_cpu_kernels g_scalar = {
    .name = "scalar",
    .vec_dot =
        {
            [TL_TYPE_F32] = dot_f32,         [TL_TYPE_F16] = dot_f16,
            [TL_TYPE_BF16] = dot_bf16,       [TL_TYPE_Q8_0] = dot_q8_0,
            [TL_TYPE_Q4_0] = dot_q4_0,       [TL_TYPE_Q4_1] = dot_q4_1,
            [TL_TYPE_Q5_0] = dot_q5_0,       [TL_TYPE_Q5_1] = dot_q5_1,
            [TL_TYPE_Q2_K] = dot_q2_k,       [TL_TYPE_Q3_K] = dot_q3_k,
            [TL_TYPE_Q4_K] = dot_q4_k,       [TL_TYPE_Q5_K] = dot_q5_k,
            [TL_TYPE_Q6_K] = dot_q6_k,       [TL_TYPE_IQ4_NL] = dot_iq4_nl,
            [TL_TYPE_IQ4_XS] = dot_iq4_xs,   [TL_TYPE_IQ2_XXS] = dot_iq2_xxs,
            [TL_TYPE_IQ2_XS] = dot_iq2_xs,   [TL_TYPE_IQ2_S] = dot_iq2_s,
            [TL_TYPE_IQ3_XXS] = dot_iq3_xxs, [TL_TYPE_IQ3_S] = dot_iq3_s,
            [TL_TYPE_IQ1_S] = dot_iq1_s,     [TL_TYPE_IQ1_M] = dot_iq1_m,
        },
    .axpy = {[TL_TYPE_F32] = axpy_f32, [TL_TYPE_F16] = axpy_f16},
    .vec_dot_i8s = dot_i8s,
    .exp_sub = exp_sub,
    .silu = silu,
    .gemm =
        {
            [TL_TYPE_Q4_0] = tl_gemm_q4_0_scalar,       [TL_TYPE_Q4_1] = tl_gemm_q4_1_scalar,
            [TL_TYPE_Q5_0] = tl_gemm_q5_0_scalar,       [TL_TYPE_Q5_1] = tl_gemm_q5_1_scalar,
            [TL_TYPE_Q8_0] = tl_gemm_q8_0_scalar,       [TL_TYPE_Q2_K] = tl_gemm_q2_k_scalar,
            [TL_TYPE_Q3_K] = tl_gemm_q3_k_scalar,       [TL_TYPE_Q4_K] = tl_gemm_q4_k_scalar,
            [TL_TYPE_Q5_K] = tl_gemm_q5_k_scalar,       [TL_TYPE_Q6_K] = tl_gemm_q6_k_scalar,
            [TL_TYPE_IQ4_NL] = tl_gemm_iq4_nl_scalar,   [TL_TYPE_IQ4_XS] = tl_gemm_iq4_xs_scalar,
            [TL_TYPE_IQ2_XXS] = tl_gemm_iq2_xxs_scalar, [TL_TYPE_IQ2_XS] = tl_gemm_iq2_xs_scalar,
            [TL_TYPE_IQ2_S] = tl_gemm_iq2_s_scalar,     [TL_TYPE_IQ3_XXS] = tl_gemm_iq3_xxs_scalar,
            [TL_TYPE_IQ3_S] = tl_gemm_iq3_s_scalar,     [TL_TYPE_IQ1_S] = tl_gemm_iq1_s_scalar,
            [TL_TYPE_IQ1_M] = tl_gemm_iq1_m_scalar,
        },
    .quant_act = {[TL_ACT_Q8_32] = tl_qact_q8_32_scalar, [TL_ACT_Q8_256] = tl_qact_q8_256_scalar},
};

const tl_cpu_kernels *tl_cpu_kernels_scalar(void) {
  return &g_scalar;
}

bool tl_cpu_supports_type(uint32_t type) {
  return type < TL_TYPE_COUNT && g_scalar.vec_dot[type] != NULL;
}
