/* The quantized-activation path, scalar reference: activation formats, their
 * quantizers, and per weight type the integer dot products that the SIMD
 * kernels must reproduce. Integer sums are exact; only the float scaling and
 * accumulation order may differ in a fast kernel. The weight unpacking is
 * written independently of quant/quant_*.c and of kernels_scalar.c, so the
 * tests that compare these with dequantized rows check both. */
#include <math.h>
#include <stddef.h>

#include "backend/cpu/qkernels.h"
#include "quant/quant_iq.h"

tl_act_fmt tl_cpu_act_fmt(uint32_t type) {
  switch (type) {
    case TL_TYPE_Q4_0:
    case TL_TYPE_Q4_1:
    case TL_TYPE_Q5_0:
    case TL_TYPE_Q5_1:
    case TL_TYPE_Q8_0:
    case TL_TYPE_IQ4_NL:
      return TL_ACT_Q8_32;
    case TL_TYPE_Q2_K:
    case TL_TYPE_Q3_K:
    case TL_TYPE_Q4_K:
    case TL_TYPE_Q5_K:
    case TL_TYPE_Q6_K:
    case TL_TYPE_IQ4_XS:
    case TL_TYPE_IQ2_XXS:
    case TL_TYPE_IQ2_XS:
    case TL_TYPE_IQ2_S:
    case TL_TYPE_IQ3_XXS:
    case TL_TYPE_IQ3_S:
    case TL_TYPE_IQ1_S:
    case TL_TYPE_IQ1_M:
      return TL_ACT_Q8_256;
    default:
      return TL_ACT_F32;
  }
}

size_t tl_act_row_bytes(tl_act_fmt f, int64_t n) {
  size_t extra = 0;
  if (f == TL_ACT_F32) return (size_t)n * sizeof(float);
  if (f == TL_ACT_Q8_32) extra = 2 * sizeof(float) * (size_t)(n / 32);
  if (f == TL_ACT_Q8_256) extra = sizeof(float) * (size_t)(n / 256) + 2 * (size_t)(n / 16);
  return (tl_act_q_bytes(n) + extra + 63) & ~(size_t)63;
}

/* Symmetric int8 quantization of a block: d = max|x| / 127, q = x / d rounded
 * to nearest even (what the SIMD quantizers compute, bit for bit). Returns d. */
static float quant_block(const float *x, int8_t *q, int n) {
  float amax = 0;
  for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < n; j++) q[j] = (int8_t)nearbyintf(x[j] * id);
  return d;
}

void tl_qact_q8_32_scalar(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n), *s = d + n / 32;
  for (int64_t i = 0; i < n / 32; i++) {
    d[i] = quant_block(x + 32 * i, q + 32 * i, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += q[32 * i + j];
    s[i] = d[i] * (float)sum;
  }
}

void tl_qact_q8_256_scalar(const float *x, void *row, int64_t n) {
  int8_t *q = row;
  float *d = (float *)tl_act_d(row, n);
  int16_t *bs = (int16_t *)tl_act_bsum(row, n);
  for (int64_t i = 0; i < n / 256; i++) d[i] = quant_block(x + 256 * i, q + 256 * i, 256);
  for (int64_t g = 0; g < n / 16; g++) {
    int sum = 0;
    for (int j = 0; j < 16; j++) sum += q[16 * g + j];
    bs[g] = (int16_t)sum;
  }
}

static inline float rd_f16(const uint8_t *p) {
  return tl_f16_to_f32(tl_rd_u16(p));
}

static inline int32_t idot(const int8_t *w, const int8_t *a, int n) {
  int32_t s = 0;
  for (int j = 0; j < n; j++) s += (int32_t)w[j] * a[j];
  return s;
}

/* ---- 32-element blocks, Q8_32 activations ----------------------------------- */

/* Element j of a Q4 block: low nibble of byte j for j < 16, else high nibble of j - 16. */
static void unpack_q4(const uint8_t *qs, int off, int8_t q[32]) {
  for (int j = 0; j < 16; j++) {
    q[j] = (int8_t)((qs[j] & 15) - off);
    q[j + 16] = (int8_t)((qs[j] >> 4) - off);
  }
}

static void unpack_q5(const uint8_t *qh, const uint8_t *qs, int off, int8_t q[32]) {
  uint32_t h =
      (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
  unpack_q4(qs, 0, q);
  for (int j = 0; j < 32; j++) q[j] = (int8_t)((q[j] | (int)((h >> j) & 1) << 4) - off);
}

typedef enum { K_Q4_0, K_Q4_1, K_Q5_0, K_Q5_1, K_Q8_0 } kind32;

static float qdot32(kind32 k, const uint8_t *b, const void *xrow, int64_t n) {
  const int8_t *a = xrow;
  const float *d = tl_act_d(xrow, n), *s = tl_act_s(xrow, n);
  float sum = 0;
  int8_t q[32];
  for (int64_t i = 0; i < n / 32; i++) {
    float dw = rd_f16(b), m = 0;
    switch (k) {
      case K_Q4_0:
        unpack_q4(b + offsetof(tl_block_q4_0, qs), 8, q);
        b += sizeof(tl_block_q4_0);
        break;
      case K_Q4_1:
        m = rd_f16(b + offsetof(tl_block_q4_1, m));
        unpack_q4(b + offsetof(tl_block_q4_1, qs), 0, q);
        b += sizeof(tl_block_q4_1);
        break;
      case K_Q5_0:
        unpack_q5(b + offsetof(tl_block_q5_0, qh), b + offsetof(tl_block_q5_0, qs), 16, q);
        b += sizeof(tl_block_q5_0);
        break;
      case K_Q5_1:
        m = rd_f16(b + offsetof(tl_block_q5_1, m));
        unpack_q5(b + offsetof(tl_block_q5_1, qh), b + offsetof(tl_block_q5_1, qs), 0, q);
        b += sizeof(tl_block_q5_1);
        break;
      case K_Q8_0:
        for (int j = 0; j < 32; j++) q[j] = (int8_t)b[2 + j];
        b += sizeof(tl_block_q8_0);
        break;
    }
    sum += dw * d[i] * (float)idot(q, a + 32 * i, 32) + m * s[i];
  }
  return sum;
}

static void gemm32(kind32 k, const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                   int64_t nt, int64_t n, float *y, int64_t ldy) {
  for (int64_t t = 0; t < nt; t++)
    for (int64_t r = 0; r < nr; r++)
      y[t * ldy + r] = qdot32(k, (const uint8_t *)w + r * ldw, (const uint8_t *)x + t * ldx, n);
}

#define GEMM32(name, kind)                                                                       \
  void tl_gemm_##name##_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    gemm32(kind, w, ldw, nr, x, ldx, nt, n, y, ldy);                                             \
  }
GEMM32(q4_0, K_Q4_0)
GEMM32(q4_1, K_Q4_1)
GEMM32(q5_0, K_Q5_0)
GEMM32(q5_1, K_Q5_1)
GEMM32(q8_0, K_Q8_0)

/* ---- K-quants, Q8_256 activations -------------------------------------------- */

/* 2-bit field of element e of the K-quant bit planes (Q2_K, Q3_K low bits,
 * Q6_K high bits): byte 32 * (e / 128) + e % 32, bit pair (e % 128) / 32. */
static inline int planes2(const uint8_t *p, int e) {
  return (p[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

static void k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
    *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}

/* One super-block: d * dx * sum_g sc_g * dot_g - dmin * dx * sum_g m_g * bsum_g. */
static float kdot_block(uint32_t type, const uint8_t *b, const int8_t *a, float dx,
                        const int16_t *bs) {
  int8_t q[256];
  int32_t tot = 0, mins = 0;
  float d = 0, dmin = 0;
  switch (type) {
    case TL_TYPE_Q2_K: {
      const uint8_t *sc = b + offsetof(tl_block_q2_k, scales);
      d = rd_f16(b + offsetof(tl_block_q2_k, d));
      dmin = rd_f16(b + offsetof(tl_block_q2_k, dmin));
      for (int e = 0; e < 256; e++) q[e] = (int8_t)planes2(b + offsetof(tl_block_q2_k, qs), e);
      for (int g = 0; g < 16; g++) {
        tot += (sc[g] & 15) * idot(q + 16 * g, a + 16 * g, 16);
        mins += (sc[g] >> 4) * bs[g];
      }
      break;
    }
    case TL_TYPE_Q3_K: {
      int8_t sc[16];
      const uint8_t *hm = b + offsetof(tl_block_q3_k, hmask);
      d = rd_f16(b + offsetof(tl_block_q3_k, d));
      tl_q3_k_scales(b + offsetof(tl_block_q3_k, scales), sc);
      for (int e = 0; e < 256; e++)
        q[e] = (int8_t)(planes2(b + offsetof(tl_block_q3_k, qs), e) -
                        ((hm[e % 32] >> (e / 32)) & 1 ? 0 : 4));
      for (int g = 0; g < 16; g++) tot += sc[g] * idot(q + 16 * g, a + 16 * g, 16);
      break;
    }
    case TL_TYPE_Q4_K:
    case TL_TYPE_Q5_K: {
      const bool five = type == TL_TYPE_Q5_K;
      const uint8_t *qs = b + (five ? offsetof(tl_block_q5_k, qs) : offsetof(tl_block_q4_k, qs));
      const uint8_t *qh = b + offsetof(tl_block_q5_k, qh);
      d = rd_f16(b);
      dmin = rd_f16(b + 2);
      for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(j, b + 4, &sc, &m);
        for (int l = 0; l < 32; l++) {
          int v = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
          if (five) v |= ((qh[l] >> j) & 1) << 4;
          q[32 * j + l] = (int8_t)v;
        }
        tot += sc * idot(q + 32 * j, a + 32 * j, 32);
        mins += m * (bs[2 * j] + bs[2 * j + 1]);
      }
      break;
    }
    case TL_TYPE_Q6_K: {
      const uint8_t *ql = b + offsetof(tl_block_q6_k, ql), *qh = b + offsetof(tl_block_q6_k, qh);
      const int8_t *sc = (const int8_t *)(b + offsetof(tl_block_q6_k, scales));
      d = rd_f16(b + offsetof(tl_block_q6_k, d));
      for (int e = 0; e < 256; e++) {
        const int h = e / 128, k = (e % 128) / 32;
        const int lo = (ql[64 * h + 32 * (k % 2) + e % 32] >> (4 * (k / 2))) & 15;
        q[e] = (int8_t)((lo | planes2(qh, e) << 4) - 32);
      }
      for (int g = 0; g < 16; g++) tot += sc[g] * idot(q + 16 * g, a + 16 * g, 16);
      break;
    }
    default:
      break;
  }
  return d * dx * (float)tot - dmin * dx * (float)mins;
}

static void gemm_k(uint32_t type, const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                   int64_t nt, int64_t n, float *y, int64_t ldy) {
  const size_t bsz = tl_type_get(type)->type_size;
  for (int64_t t = 0; t < nt; t++) {
    const uint8_t *xr = (const uint8_t *)x + t * ldx;
    const float *dx = tl_act_d(xr, n);
    const int16_t *bs = tl_act_bsum(xr, n);
    for (int64_t r = 0; r < nr; r++) {
      const uint8_t *b = (const uint8_t *)w + r * ldw;
      float sum = 0;
      for (int64_t i = 0; i < n / 256; i++)
        sum += kdot_block(type, b + i * bsz, (const int8_t *)xr + 256 * i, dx[i], bs + 16 * i);
      y[t * ldy + r] = sum;
    }
  }
}

#define GEMMK(name, type)                                                                        \
  void tl_gemm_##name##_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    gemm_k(type, w, ldw, nr, x, ldx, nt, n, y, ldy);                                             \
  }
GEMMK(q2_k, TL_TYPE_Q2_K)
GEMMK(q3_k, TL_TYPE_Q3_K)
GEMMK(q4_k, TL_TYPE_Q4_K)
GEMMK(q5_k, TL_TYPE_Q5_K)
GEMMK(q6_k, TL_TYPE_Q6_K)

/* ---- IQ types -------------------------------------------------------------------
 * Every IQ value is an integer times a per-16 integer scale times a float:
 * x = f * sc[e / 16] * q[e] with
 *   IQ4_NL (per 32: sc = 1), IQ4_XS: f = d, sc = ls - 32, q = the non-linear value;
 *   IQ2_*: f = d / 8, sc = 2 s + 1, q = grid byte * sign;
 *   IQ3_XXS: f = d / 4, sc = 2 s + 1; IQ3_S: f = d, sc = 2 s + 1;
 *   IQ1_S / IQ1_M: f = d / 8, sc = 2 s + 1, q = 8 * grid +- 1 (the delta 1/8).
 * These follow from ggml's dequantizers ((0.5 + s) * 0.25 = (2 s + 1) / 8 etc.,
 * exact in binary); the unpacking is written from the block layouts
 * independently of quant/quant_iq.c, whose dequantized rows the tests compare
 * it with. */

static inline int gbyte(uint64_t g, int j) {
  return (int)((g >> (8 * j)) & 0xff);
}

/* 8 elements of an IQ2 grid row with a sign byte. */
static inline void iq_put8(int8_t *q, uint64_t g, unsigned signs) {
  for (int j = 0; j < 8; j++) q[j] = (int8_t)((signs >> j) & 1 ? -gbyte(g, j) : gbyte(g, j));
}

/* 4 + 4 elements of two IQ3 grid entries with a sign byte. */
static inline void iq_put44(int8_t *q, uint32_t g1, uint32_t g2, unsigned signs) {
  for (int j = 0; j < 4; j++) {
    q[j] = (int8_t)((signs >> j) & 1 ? -gbyte(g1, j) : gbyte(g1, j));
    q[j + 4] = (int8_t)((signs >> (j + 4)) & 1 ? -gbyte(g2, j) : gbyte(g2, j));
  }
}

/* IQ1: 8 elements 8 * grid + (neg ? -1 : 1). */
static inline void iq_put1(int8_t *q, uint64_t g, bool neg) {
  for (int j = 0; j < 8; j++) q[j] = (int8_t)(8 * (int8_t)gbyte(g, j) + (neg ? -1 : 1));
}

float tl_iq_unpack(uint32_t type, const uint8_t *b, int8_t *q, int16_t *sc) {
  switch (type) {
    case TL_TYPE_IQ4_NL:
      for (int j = 0; j < 16; j++) {
        q[j] = tl_iq4nl_values[b[2 + j] & 15];
        q[j + 16] = tl_iq4nl_values[b[2 + j] >> 4];
      }
      sc[0] = sc[1] = 1;
      return rd_f16(b);
    case TL_TYPE_IQ4_XS: {
      const uint8_t *qs = b + offsetof(tl_block_iq4_xs, qs);
      const unsigned sh = tl_rd_u16(b + 2);
      for (int ib = 0; ib < 8; ib++) {
        const int lo = (b[4 + ib / 2] >> (4 * (ib & 1))) & 15;
        sc[2 * ib] = sc[2 * ib + 1] = (int16_t)((lo | ((sh >> (2 * ib)) & 3) << 4) - 32);
        for (int j = 0; j < 16; j++) {
          q[32 * ib + j] = tl_iq4nl_values[qs[16 * ib + j] & 15];
          q[32 * ib + 16 + j] = tl_iq4nl_values[qs[16 * ib + j] >> 4];
        }
      }
      return rd_f16(b);
    }
    case TL_TYPE_IQ2_XXS:
      for (int ib = 0; ib < 8; ib++) {
        const uint8_t *g = b + 2 + 8 * ib;
        const uint32_t a = tl_rd_u32(g + 4);
        sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * (a >> 28) + 1);
        for (int l = 0; l < 4; l++)
          iq_put8(q + 32 * ib + 8 * l, tl_iq2xxs_grid[g[l]], tl_iq_ksigns[(a >> (7 * l)) & 127]);
      }
      return rd_f16(b) * 0.125f;
    case TL_TYPE_IQ2_XS:
      for (int ib = 0; ib < 8; ib++) {
        const uint8_t s = b[offsetof(tl_block_iq2_xs, scales) + ib];
        sc[2 * ib] = (int16_t)(2 * (s & 15) + 1);
        sc[2 * ib + 1] = (int16_t)(2 * (s >> 4) + 1);
        for (int l = 0; l < 4; l++) {
          const unsigned v = tl_rd_u16(b + 2 + 2 * (4 * ib + l));
          iq_put8(q + 32 * ib + 8 * l, tl_iq2xs_grid[v & 511], tl_iq_ksigns[v >> 9]);
        }
      }
      return rd_f16(b) * 0.125f;
    case TL_TYPE_IQ2_S:
      for (int ib = 0; ib < 8; ib++) {
        const uint8_t s = b[offsetof(tl_block_iq2_s, scales) + ib];
        const unsigned h = b[offsetof(tl_block_iq2_s, qh) + ib];
        sc[2 * ib] = (int16_t)(2 * (s & 15) + 1);
        sc[2 * ib + 1] = (int16_t)(2 * (s >> 4) + 1);
        for (int l = 0; l < 4; l++) {
          const unsigned idx = b[2 + 4 * ib + l] | (((h >> (2 * l)) & 3) << 8);
          iq_put8(q + 32 * ib + 8 * l, tl_iq2s_grid[idx], b[2 + 32 + 4 * ib + l]);
        }
      }
      return rd_f16(b) * 0.125f;
    case TL_TYPE_IQ3_XXS:
      for (int ib = 0; ib < 8; ib++) {
        const uint8_t *g = b + 2 + 8 * ib;
        const uint32_t a = tl_rd_u32(b + 2 + 64 + 4 * ib);
        sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * (a >> 28) + 1);
        for (int l = 0; l < 4; l++)
          iq_put44(q + 32 * ib + 8 * l, tl_iq3xxs_grid[g[2 * l]], tl_iq3xxs_grid[g[2 * l + 1]],
                   tl_iq_ksigns[(a >> (7 * l)) & 127]);
      }
      return rd_f16(b) * 0.25f;
    case TL_TYPE_IQ3_S:
      for (int ib = 0; ib < 8; ib++) {
        const uint8_t *g = b + offsetof(tl_block_iq3_s, qs) + 8 * ib;
        const unsigned h = b[offsetof(tl_block_iq3_s, qh) + ib];
        const uint8_t s = b[offsetof(tl_block_iq3_s, scales) + ib / 2];
        sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * ((s >> (4 * (ib & 1))) & 15) + 1);
        for (int l = 0; l < 4; l++) {
          const unsigned i1 = g[2 * l] | (((h >> (2 * l)) & 1) << 8);
          const unsigned i2 = g[2 * l + 1] | (((h >> (2 * l + 1)) & 1) << 8);
          iq_put44(q + 32 * ib + 8 * l, tl_iq3s_grid[i1], tl_iq3s_grid[i2],
                   b[offsetof(tl_block_iq3_s, signs) + 4 * ib + l]);
        }
      }
      return rd_f16(b);
    case TL_TYPE_IQ1_S:
      for (int ib = 0; ib < 8; ib++) {
        const unsigned h = tl_rd_u16(b + offsetof(tl_block_iq1_s, qh) + 2 * ib);
        sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * ((h >> 12) & 7) + 1);
        for (int l = 0; l < 4; l++) {
          const unsigned idx = b[2 + 4 * ib + l] | (((h >> (3 * l)) & 7) << 8);
          iq_put1(q + 32 * ib + 8 * l, tl_iq1s_grid[idx], (h & 0x8000) != 0);
        }
      }
      return rd_f16(b) * 0.125f;
    case TL_TYPE_IQ1_M: {
      const uint8_t *s8 = b + offsetof(tl_block_iq1_m, scales);
      unsigned w[4];
      for (int k = 0; k < 4; k++) w[k] = tl_rd_u16(s8 + 2 * k);
      const uint16_t dh =
          (uint16_t)((w[0] >> 12) | ((w[1] >> 8) & 0xf0) | ((w[2] >> 4) & 0xf00) | (w[3] & 0xf000));
      for (int ib = 0; ib < 8; ib++) {
        const unsigned sw = w[ib / 2] >> (6 * (ib & 1));
        sc[2 * ib] = (int16_t)(2 * (sw & 7) + 1);
        sc[2 * ib + 1] = (int16_t)(2 * ((sw >> 3) & 7) + 1);
        for (int l = 0; l < 4; l++) {
          const unsigned h = b[offsetof(tl_block_iq1_m, qh) + 2 * ib + l / 2] >> (4 * (l & 1));
          const unsigned idx = b[4 * ib + l] | ((h & 7) << 8);
          iq_put1(q + 32 * ib + 8 * l, tl_iq1s_grid[idx], (h & 8) != 0);
        }
      }
      return tl_f16_to_f32(dh) * 0.125f;
    }
    default:
      return 0;
  }
}

/* IQ4_NL: 32-blocks on Q8_32 activations; the others: 256-blocks on Q8_256.
 * Each weight block is unpacked once and used for up to 64 tokens. */
static void gemm_iq(uint32_t type, const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                    int64_t nt, int64_t n, float *y, int64_t ldy) {
  const tl_type_info *ti = tl_type_get(type);
  const int64_t blk = ti->blck;
  int8_t q[256];
  int16_t sc[16];
  float acc[64];
  for (int64_t t0 = 0; t0 < nt; t0 += 64) {
    const int64_t tn = nt - t0 < 64 ? nt - t0 : 64;
    for (int64_t r = 0; r < nr; r++) {
      const uint8_t *b = (const uint8_t *)w + r * ldw;
      for (int64_t t = 0; t < tn; t++) acc[t] = 0;
      for (int64_t i = 0; i < n / blk; i++) {
        const float f = tl_iq_unpack(type, b + i * ti->type_size, q, sc);
        for (int64_t t = 0; t < tn; t++) {
          const uint8_t *xr = (const uint8_t *)x + (t0 + t) * ldx;
          const int8_t *a = (const int8_t *)xr + blk * i;
          int32_t tot = 0;
          for (int g = 0; g < blk / 16; g++) tot += sc[g] * idot(q + 16 * g, a + 16 * g, 16);
          acc[t] += f * tl_act_d(xr, n)[i] * (float)tot;
        }
      }
      for (int64_t t = 0; t < tn; t++) y[(t0 + t) * ldy + r] = acc[t];
    }
  }
}

#define GEMMIQ(name, type)                                                                       \
  void tl_gemm_##name##_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy) {                   \
    gemm_iq(type, w, ldw, nr, x, ldx, nt, n, y, ldy);                                            \
  }
GEMMIQ(iq4_nl, TL_TYPE_IQ4_NL)
GEMMIQ(iq4_xs, TL_TYPE_IQ4_XS)
GEMMIQ(iq2_xxs, TL_TYPE_IQ2_XXS)
GEMMIQ(iq2_xs, TL_TYPE_IQ2_XS)
GEMMIQ(iq2_s, TL_TYPE_IQ2_S)
GEMMIQ(iq3_xxs, TL_TYPE_IQ3_XXS)
GEMMIQ(iq3_s, TL_TYPE_IQ3_S)
GEMMIQ(iq1_s, TL_TYPE_IQ1_S)
GEMMIQ(iq1_m, TL_TYPE_IQ1_M)
