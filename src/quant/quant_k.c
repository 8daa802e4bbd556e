/* Dequantization of ggml's K-quants: super-blocks of 256 elements with
 * quantized sub-block scales. The float operations and their order are
 * ggml's dequantize_row_*, so results match bit for bit.
 *
 * Q2_K, Q3_K and Q6_K pack several bit planes of 32 consecutive bytes: in
 * each half of 128 elements, byte l of the 32-byte plane holds elements
 * l, l + 32, l + 64, l + 96 (2 bits each, lowest bits first). Q4_K and Q5_K
 * use nibbles: in each group of 64, byte l holds element l (low nibble) and
 * l + 32 (high nibble). */
#include <stddef.h>

#include "quant/quant.h"

void tl_q3_k_scales(const uint8_t packed[12], int8_t out[16]) {
  /* Scale j: low 4 bits in a nibble of bytes 0..7 (low nibbles for j < 8,
   * high nibbles for j >= 8), high 2 bits in byte 8 + j % 4 at bit 2 * (j / 4). */
  for (int j = 0; j < 16; j++) {
    const int lo = j < 8 ? (packed[j] & 0x0F) : (packed[j - 8] >> 4);
    const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (int8_t)((lo | hi << 4) - 32);
  }
}

void tl_k4_scale_min(int j, const uint8_t packed[12], uint8_t *sc, uint8_t *m) {
  /* Sub-blocks 0..3: 6 bits in bytes j (scale) and j + 4 (min). Sub-blocks
   * 4..7: low 4 bits in the nibbles of byte j + 4, high 2 bits in the top
   * bits of bytes j - 4 (scale) and j (min). */
  if (j < 4) {
    *sc = packed[j] & 63;
    *m = packed[j + 4] & 63;
  } else {
    *sc = (uint8_t)((packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4));
    *m = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
  }
}

/* Q2_K: x = (d * sc) * q - (dmin * m) per 16 elements, q in 0..3. */
void tl_dequant_q2_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q2_k), dst += TL_QK_K) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q2_k, d)));
    const float min = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q2_k, dmin)));
    const uint8_t *scales = b + offsetof(tl_block_q2_k, scales);
    for (int e = 0; e < TL_QK_K; e += 16) { /* e: first element of a group of 16 */
      const uint8_t *q = b + offsetof(tl_block_q2_k, qs) + (e / 128) * 32 + (e % 32);
      const int shift = 2 * ((e % 128) / 32);
      const uint8_t sc = scales[e / 16];
      const float dl = d * (float)(sc & 0x0F), ml = min * (float)(sc >> 4);
      for (int l = 0; l < 16; l++) dst[e + l] = dl * (float)((q[l] >> shift) & 3) - ml;
    }
  }
}

/* Q3_K: x = (d * (sc - 32)) * (q - (hbit ? 0 : 4)) per 16 elements, q the low
 * 2 bits; the high bit of element e is bit e / 32 of hmask[e % 32]. */
void tl_dequant_q3_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q3_k), dst += TL_QK_K) {
    const float d_all = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q3_k, d)));
    const uint8_t *hm = b + offsetof(tl_block_q3_k, hmask);
    int8_t scales[16];
    tl_q3_k_scales(b + offsetof(tl_block_q3_k, scales), scales);
    for (int e = 0; e < TL_QK_K; e += 16) {
      const uint8_t *q = b + offsetof(tl_block_q3_k, qs) + (e / 128) * 32 + (e % 32);
      const int shift = 2 * ((e % 128) / 32);
      const uint8_t mask = (uint8_t)(1u << (e / 32));
      const float dl = d_all * (float)scales[e / 16];
      for (int l = 0; l < 16; l++) {
        const int lo = (q[l] >> shift) & 3;
        const int qv = lo - ((hm[e % 32 + l] & mask) ? 0 : 4);
        dst[e + l] = dl * (float)qv;
      }
    }
  }
}

/* Q4_K: x = (d * sc) * q - (dmin * m) per 32 elements, q in 0..15. */
void tl_dequant_q4_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q4_k), dst += TL_QK_K) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q4_k, d)));
    const float min = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q4_k, dmin)));
    const uint8_t *scales = b + offsetof(tl_block_q4_k, scales);
    for (int g = 0; g < TL_QK_K / 64; g++) {
      const uint8_t *q = b + offsetof(tl_block_q4_k, qs) + 32 * g;
      uint8_t sc, m;
      tl_k4_scale_min(2 * g, scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = min * (float)m;
      tl_k4_scale_min(2 * g + 1, scales, &sc, &m);
      const float d2 = d * (float)sc, m2 = min * (float)m;
      float *y = dst + 64 * g;
      for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
    }
  }
}

/* Q5_K: as Q4_K with a 5th bit: for group g of 64, bit 2g of qh[l] belongs
 * to element l (low nibble) and bit 2g + 1 to element l + 32. */
void tl_dequant_q5_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q5_k), dst += TL_QK_K) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q5_k, d)));
    const float min = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q5_k, dmin)));
    const uint8_t *scales = b + offsetof(tl_block_q5_k, scales);
    const uint8_t *qh = b + offsetof(tl_block_q5_k, qh);
    for (int g = 0; g < TL_QK_K / 64; g++) {
      const uint8_t *ql = b + offsetof(tl_block_q5_k, qs) + 32 * g;
      const uint8_t u1 = (uint8_t)(1u << (2 * g)), u2 = (uint8_t)(2u << (2 * g));
      uint8_t sc, m;
      tl_k4_scale_min(2 * g, scales, &sc, &m);
      const float d1 = d * (float)sc, m1 = min * (float)m;
      tl_k4_scale_min(2 * g + 1, scales, &sc, &m);
      const float d2 = d * (float)sc, m2 = min * (float)m;
      float *y = dst + 64 * g;
      for (int l = 0; l < 32; l++)
        y[l] = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; l++)
        y[32 + l] = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

/* Q6_K: x = (d * sc) * (q - 32) per 16 elements, q 6 bits: in each half of
 * 128, element 32k + l (k < 4, l < 32) takes its low 4 bits from ql[l + 32 *
 * (k % 2)] (low nibble for k < 2, high for k >= 2) and its high 2 bits from
 * bits 2k..2k+1 of qh[l]. */
void tl_dequant_q6_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q6_k), dst += TL_QK_K) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q6_k, d)));
    const int8_t *sc = (const int8_t *)(b + offsetof(tl_block_q6_k, scales));
    for (int h = 0; h < 2; h++) {
      const uint8_t *ql = b + offsetof(tl_block_q6_k, ql) + 64 * h;
      const uint8_t *qh = b + offsetof(tl_block_q6_k, qh) + 32 * h;
      for (int k = 0; k < 4; k++) {
        const int nib_shift = k < 2 ? 0 : 4;
        for (int l = 0; l < 32; l++) {
          const int lo = (ql[l + 32 * (k % 2)] >> nib_shift) & 0x0F;
          const int hi = (qh[l] >> (2 * k)) & 3;
          const int e = 128 * h + 32 * k + l;
          dst[e] = d * (float)sc[e / 16] * (float)((lo | hi << 4) - 32);
        }
      }
    }
  }
}

/* Q8_K: x = d * q with an f32 scale (the activation format of ggml's K-quant
 * dot products; bsums are not needed here). */
void tl_dequant_q8_k(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK_K; i++, b += sizeof(tl_block_q8_k), dst += TL_QK_K) {
    float d;
    memcpy(&d, b + offsetof(tl_block_q8_k, d), sizeof d);
    const int8_t *qs = (const int8_t *)(b + offsetof(tl_block_q8_k, qs));
    for (int j = 0; j < TL_QK_K; j++) dst[j] = d * (float)qs[j];
  }
}
