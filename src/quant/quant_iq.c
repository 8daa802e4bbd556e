/* Dequantization of the IQ types: ggml's dequantize_row_iq* (ggml-quants.c),
 * the same float operations in the same order, so that the results match
 * gguf-py's and llama.cpp's bit for bit. Grid bytes are taken with shifts
 * (element j = byte j of the entry), independent of the host's byte order. */
#include "quant/quant_iq.h"

static inline float rd_f16(const uint8_t *p) {
  return tl_f16_to_f32(tl_rd_u16(p));
}

/* Byte j of a grid entry, unsigned (IQ2, IQ3) or signed (IQ1). */
static inline int grid_u8(uint64_t g, int j) {
  return (int)((g >> (8 * j)) & 0xff);
}
static inline int grid_s8(uint64_t g, int j) {
  return (int)(int8_t)((g >> (8 * j)) & 0xff);
}

void tl_dequant_iq4_nl(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 32; i++, b += sizeof(tl_block_iq4_nl), dst += 32) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq4_nl, qs);
    for (int j = 0; j < 16; j++) {
      dst[j] = d * (float)tl_iq4nl_values[qs[j] & 15];
      dst[j + 16] = d * (float)tl_iq4nl_values[qs[j] >> 4];
    }
  }
}

void tl_dequant_iq4_xs(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq4_xs)) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq4_xs, qs);
    for (int ib = 0; ib < 8; ib++, qs += 16, dst += 32) {
      const float dl = d * (float)tl_iq4_xs_scale(b, ib);
      for (int j = 0; j < 16; j++) {
        dst[j] = dl * (float)tl_iq4nl_values[qs[j] & 15];
        dst[j + 16] = dl * (float)tl_iq4nl_values[qs[j] >> 4];
      }
    }
  }
}

/* 8 values of a grid row with a sign byte (bit j set: element j negative). */
static inline void put8(float *y, float db, uint64_t g, uint8_t signs) {
  for (int j = 0; j < 8; j++) y[j] = db * (float)grid_u8(g, j) * ((signs >> j) & 1 ? -1.f : 1.f);
}

void tl_dequant_iq2_xxs(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq2_xxs)) {
    const float d = rd_f16(b);
    const uint8_t *q = b + offsetof(tl_block_iq2_xxs, qs);
    for (int ib = 0; ib < 8; ib++, q += 8) {
      const uint32_t a1 = tl_rd_u32(q + 4);
      const float db = d * (0.5f + (float)(a1 >> 28)) * 0.25f;
      for (int l = 0; l < 4; l++, dst += 8)
        put8(dst, db, tl_iq2xxs_grid[q[l]], tl_iq_ksigns[(a1 >> (7 * l)) & 127]);
    }
  }
}

void tl_dequant_iq2_xs(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq2_xs)) {
    const float d = rd_f16(b);
    const uint8_t *q = b + offsetof(tl_block_iq2_xs, qs);
    const uint8_t *sc = b + offsetof(tl_block_iq2_xs, scales);
    for (int ib = 0; ib < 8; ib++) {
      const float db[2] = {d * (0.5f + (float)(sc[ib] & 15)) * 0.25f,
                           d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; l++, dst += 8) {
        const uint16_t v = tl_rd_u16(q + 2 * (4 * ib + l));
        put8(dst, db[l / 2], tl_iq2xs_grid[v & 511], tl_iq_ksigns[v >> 9]);
      }
    }
  }
}

void tl_dequant_iq2_s(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq2_s)) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq2_s, qs), *signs = qs + 32;
    const uint8_t *qh = b + offsetof(tl_block_iq2_s, qh);
    const uint8_t *sc = b + offsetof(tl_block_iq2_s, scales);
    for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
      const float db[2] = {d * (0.5f + (float)(sc[ib] & 15)) * 0.25f,
                           d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; l++, dst += 8) {
        const int idx = qs[l] | ((qh[ib] << (8 - 2 * l)) & 0x300);
        put8(dst, db[l / 2], tl_iq2s_grid[idx], signs[l]);
      }
    }
  }
}

/* 4 + 4 values of two IQ3 grid entries with a sign byte. */
static inline void put44(float *y, float db, uint32_t g1, uint32_t g2, uint8_t signs) {
  for (int j = 0; j < 4; j++) {
    y[j] = db * (float)grid_u8(g1, j) * ((signs >> j) & 1 ? -1.f : 1.f);
    y[j + 4] = db * (float)grid_u8(g2, j) * ((signs >> (j + 4)) & 1 ? -1.f : 1.f);
  }
}

void tl_dequant_iq3_xxs(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq3_xxs)) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq3_xxs, qs), *ss = qs + 64;
    for (int ib = 0; ib < 8; ib++, qs += 8) {
      const uint32_t a = tl_rd_u32(ss + 4 * ib);
      const float db = d * (0.5f + (float)(a >> 28)) * 0.5f;
      for (int l = 0; l < 4; l++, dst += 8)
        put44(dst, db, tl_iq3xxs_grid[qs[2 * l]], tl_iq3xxs_grid[qs[2 * l + 1]],
              tl_iq_ksigns[(a >> (7 * l)) & 127]);
    }
  }
}

void tl_dequant_iq3_s(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq3_s)) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq3_s, qs), *qh = b + offsetof(tl_block_iq3_s, qh);
    const uint8_t *signs = b + offsetof(tl_block_iq3_s, signs);
    const uint8_t *sc = b + offsetof(tl_block_iq3_s, scales);
    for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
      const int s = ib % 2 == 0 ? (sc[ib / 2] & 15) : (sc[ib / 2] >> 4);
      const float db = d * (float)(1 + 2 * s);
      for (int l = 0; l < 4; l++, dst += 8) {
        const int i1 = qs[2 * l] | ((qh[ib] << (8 - 2 * l)) & 256);
        const int i2 = qs[2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256);
        put44(dst, db, tl_iq3s_grid[i1], tl_iq3s_grid[i2], signs[l]);
      }
    }
  }
}

void tl_dequant_iq1_s(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq1_s)) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + offsetof(tl_block_iq1_s, qs);
    for (int ib = 0; ib < 8; ib++, qs += 4) {
      const uint16_t qh = tl_rd_u16(b + offsetof(tl_block_iq1_s, qh) + 2 * ib);
      const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
      const float delta = qh & 0x8000 ? -TL_IQ1_DELTA : TL_IQ1_DELTA;
      for (int l = 0; l < 4; l++, dst += 8) {
        const uint64_t g = tl_iq1s_grid[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
        for (int j = 0; j < 8; j++) dst[j] = dl * ((float)grid_s8(g, j) + delta);
      }
    }
  }
}

/* IQ1_M's super-block scale: the top nibbles of its four scale words. */
static inline float iq1_m_d(const uint8_t *b) {
  const uint8_t *s = b + offsetof(tl_block_iq1_m, scales);
  const uint16_t s0 = tl_rd_u16(s), s1 = tl_rd_u16(s + 2), s2 = tl_rd_u16(s + 4),
                 s3 = tl_rd_u16(s + 6);
  return tl_f16_to_f32(
      (uint16_t)((s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000)));
}

void tl_dequant_iq1_m(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq1_m)) {
    const float d = iq1_m_d(b);
    const uint8_t *qs = b + offsetof(tl_block_iq1_m, qs), *qh = b + offsetof(tl_block_iq1_m, qh);
    for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
      const uint16_t sc = tl_rd_u16(b + offsetof(tl_block_iq1_m, scales) + 2 * (ib / 2));
      const float dl1 = d * (float)(2 * ((sc >> (6 * (ib % 2))) & 7) + 1);
      const float dl2 = d * (float)(2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1);
      const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                          qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
      const float delta[4] = {
          qh[0] & 0x08 ? -TL_IQ1_DELTA : TL_IQ1_DELTA, qh[0] & 0x80 ? -TL_IQ1_DELTA : TL_IQ1_DELTA,
          qh[1] & 0x08 ? -TL_IQ1_DELTA : TL_IQ1_DELTA, qh[1] & 0x80 ? -TL_IQ1_DELTA : TL_IQ1_DELTA};
      for (int l = 0; l < 4; l++, dst += 8) {
        const float dl = l < 2 ? dl1 : dl2;
        const uint64_t g = tl_iq1s_grid[idx[l]];
        for (int j = 0; j < 8; j++) dst[j] = dl * ((float)grid_s8(g, j) + delta[l]);
      }
    }
  }
}
