/* Dequantization of ggml's legacy 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1.
 * Every block splits in halves: byte j of qs holds element j in its low
 * nibble and element j + 16 in its high nibble. The float operations and
 * their order are ggml's dequantize_row_*, so results match bit for bit. */
#include <stddef.h>

#include "quant/quant.h"

/* Q4_0: x = d * (q - 8). */
void tl_dequant_q4_0(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK4_0; i++, b += sizeof(tl_block_q4_0), dst += TL_QK4_0) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q4_0, d)));
    const uint8_t *qs = b + offsetof(tl_block_q4_0, qs);
    for (int j = 0; j < TL_QK4_0 / 2; j++) {
      const int x0 = (qs[j] & 0x0F) - 8;
      const int x1 = (qs[j] >> 4) - 8;
      dst[j] = (float)x0 * d;
      dst[j + TL_QK4_0 / 2] = (float)x1 * d;
    }
  }
}

/* Q4_1: x = d * q + m. */
void tl_dequant_q4_1(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK4_1; i++, b += sizeof(tl_block_q4_1), dst += TL_QK4_1) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q4_1, d)));
    const float m = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q4_1, m)));
    const uint8_t *qs = b + offsetof(tl_block_q4_1, qs);
    for (int j = 0; j < TL_QK4_1 / 2; j++) {
      const int x0 = qs[j] & 0x0F;
      const int x1 = qs[j] >> 4;
      dst[j] = (float)x0 * d + m;
      dst[j + TL_QK4_1 / 2] = (float)x1 * d + m;
    }
  }
}

/* The 5th bits of Q5_0/Q5_1: bit j of the little-endian u32 qh belongs to
 * element j (so bits 16..31 to the high-nibble half). */
static inline uint32_t q5_high_bits(const uint8_t *qh) {
  return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* Q5_0: x = d * (q - 16), q = nibble | (bit j of qh) << 4. */
void tl_dequant_q5_0(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK5_0; i++, b += sizeof(tl_block_q5_0), dst += TL_QK5_0) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q5_0, d)));
    const uint32_t qh = q5_high_bits(b + offsetof(tl_block_q5_0, qh));
    const uint8_t *qs = b + offsetof(tl_block_q5_0, qs);
    for (int j = 0; j < TL_QK5_0 / 2; j++) {
      const int h0 = (int)((qh >> j) & 1) << 4;
      const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
      const int x0 = ((qs[j] & 0x0F) | h0) - 16;
      const int x1 = ((qs[j] >> 4) | h1) - 16;
      dst[j] = (float)x0 * d;
      dst[j + TL_QK5_0 / 2] = (float)x1 * d;
    }
  }
}

/* Q5_1: x = d * q + m, q as in Q5_0 without the offset. */
void tl_dequant_q5_1(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK5_1; i++, b += sizeof(tl_block_q5_1), dst += TL_QK5_1) {
    const float d = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q5_1, d)));
    const float m = tl_f16_to_f32(tl_rd_u16(b + offsetof(tl_block_q5_1, m)));
    const uint32_t qh = q5_high_bits(b + offsetof(tl_block_q5_1, qh));
    const uint8_t *qs = b + offsetof(tl_block_q5_1, qs);
    for (int j = 0; j < TL_QK5_1 / 2; j++) {
      const int h0 = (int)((qh >> j) & 1) << 4;
      const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
      const int x0 = (qs[j] & 0x0F) | h0;
      const int x1 = (qs[j] >> 4) | h1;
      dst[j] = (float)x0 * d + m;
      dst[j + TL_QK5_1 / 2] = (float)x1 * d + m;
    }
  }
}
