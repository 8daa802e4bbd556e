/* The quantized-activation path, scalar reference: activation formats, their
 * quantizers, and per weight type the integer dot products that the SIMD
 * kernels must reproduce. Integer sums are exact; only the float scaling and
 * accumulation order may differ in a fast kernel. The weight unpacking is
 * written independently of quant/quant_*.c and of kernels_scalar.c, so the
 * tests that compare these with dequantized rows check both. */
#include <math.h>
#include <stddef.h>

#include "backend/cpu/qkernels.h"

tl_act_fmt tl_cpu_act_fmt(uint32_t type) {
  switch (type) {
    case TL_TYPE_Q4_0:
    case TL_TYPE_Q4_1:
    case TL_TYPE_Q5_0:
    case TL_TYPE_Q5_1:
    case TL_TYPE_Q8_0:
      return TL_ACT_Q8_32;
    case TL_TYPE_Q2_K:
    case TL_TYPE_Q3_K:
    case TL_TYPE_Q4_K:
    case TL_TYPE_Q5_K:
    case TL_TYPE_Q6_K:
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
