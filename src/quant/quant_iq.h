/* llama.cpp's IQ quantization types (i-quants): block layouts as ggml lays
 * them out (ggml-common.h), their format tables (iq_tables.c) and the scalar
 * reference dequantizers (quant_iq.c), which compute ggml's
 * dequantize_row_iq* with the same float operations in the same order.
 *
 * Every type but IQ4_NL has 256-element super-blocks; multi-byte fields are
 * little-endian and read through byte pointers (blocks need not be aligned).
 * Grid entries pack one element per byte, element j in byte j. */
#ifndef TL_QUANT_IQ_H
#define TL_QUANT_IQ_H

#include <stddef.h>

#include "quant/quant.h"

/* IQ4_NL: 32 elements, x = d * values[nibble]; byte j holds element j (low
 * nibble) and j + 16 (high nibble), as Q4_0. */
typedef struct {
  uint16_t d;
  uint8_t qs[16];
} tl_block_iq4_nl;

/* IQ4_XS: 256 elements in 8 sub-blocks of 32 with 6-bit scales ls (low 4 bits
 * in nibble j % 2 of scales_l[j / 2], high 2 bits at bit 2j of scales_h):
 * x = d * (ls - 32) * values[nibble], nibbles as IQ4_NL per 32. */
typedef struct {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
} tl_block_iq4_xs;

/* IQ2_XXS: per 32 elements two u32 words a, b: the bytes of a index 4 grid
 * rows of 8 (iq2xxs_grid), b holds 4 x 7-bit sign indices (ksigns) and a
 * 4-bit scale s in bits 28..31: x = d * (0.5 + s) * 0.25 * grid * sign. */
typedef struct {
  uint16_t d;
  uint16_t qs[32];
} tl_block_iq2_xxs;

/* IQ2_XS: per 8 elements a u16: 9-bit grid index (iq2xs_grid), 7-bit sign
 * index; a 4-bit scale per 16 (nibbles of scales[j / 32]). */
typedef struct {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
} tl_block_iq2_xs;

/* IQ2_S: per 8 elements a 10-bit grid index (qs byte, 2 bits of qh per
 * 32-group) into iq2s_grid, and an explicit sign byte (qs[32 + ...]). */
typedef struct {
  uint16_t d;
  uint8_t qs[64]; /* 32 grid index bytes, then 32 sign bytes */
  uint8_t qh[8];
  uint8_t scales[8];
} tl_block_iq2_s;

/* IQ3_XXS: per 4 elements an 8-bit grid index (iq3xxs_grid); per 32 a u32
 * with 4 x 7-bit sign indices and a 4-bit scale: x = d * (0.5 + s) * 0.5 *
 * grid * sign. */
typedef struct {
  uint16_t d;
  uint8_t qs[96]; /* 64 grid index bytes, then 8 u32 scales-and-signs */
} tl_block_iq3_xxs;

/* IQ3_S: per 4 elements a 9-bit grid index (qs byte, 1 bit of qh), explicit
 * sign bits, a 4-bit scale per 32: x = d * (1 + 2 s) * grid * sign. */
typedef struct {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
} tl_block_iq3_s;

/* IQ1_S: per 8 elements an 11-bit index into iq1s_grid (values -1, 0, 1),
 * per 32 a u16 qh: 3 high index bits per 8, a 3-bit scale s (bits 12..14)
 * and the sign of delta (bit 15): x = d * (2 s + 1) * (grid + delta). */
typedef struct {
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
} tl_block_iq1_s;

/* IQ1_M: as IQ1_S without a d field: per 8 elements 3 high index bits and
 * a delta sign bit in a nibble of qh; 3-bit scales per 16 in the four u16
 * scale words, whose top nibbles together make the f16 super-block scale. */
typedef struct {
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];
} tl_block_iq1_m;

_Static_assert(sizeof(tl_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(tl_block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(tl_block_iq2_xxs) == 66, "iq2_xxs block");
_Static_assert(sizeof(tl_block_iq2_xs) == 74, "iq2_xs block");
_Static_assert(sizeof(tl_block_iq2_s) == 82, "iq2_s block");
_Static_assert(sizeof(tl_block_iq3_xxs) == 98, "iq3_xxs block");
_Static_assert(sizeof(tl_block_iq3_s) == 110, "iq3_s block");
_Static_assert(sizeof(tl_block_iq1_s) == 50, "iq1_s block");
_Static_assert(sizeof(tl_block_iq1_m) == 56, "iq1_m block");

/* The format tables (iq_tables.c, from ggml). */
extern const uint8_t tl_iq_ksigns[128]; /* 7 sign bits + parity as the 8th */
extern const uint64_t tl_iq2xxs_grid[256];
extern const uint64_t tl_iq2xs_grid[512];
extern const uint64_t tl_iq2s_grid[1024];
extern const uint32_t tl_iq3xxs_grid[256];
extern const uint32_t tl_iq3s_grid[512];
extern const int8_t tl_iq4nl_values[16];
extern const uint64_t tl_iq1s_grid[2048];
#define TL_IQ1_DELTA 0.125f

void tl_dequant_iq4_nl(const void *src, float *dst, int64_t n);
void tl_dequant_iq4_xs(const void *src, float *dst, int64_t n);
void tl_dequant_iq2_xxs(const void *src, float *dst, int64_t n);
void tl_dequant_iq2_xs(const void *src, float *dst, int64_t n);
void tl_dequant_iq2_s(const void *src, float *dst, int64_t n);
void tl_dequant_iq3_xxs(const void *src, float *dst, int64_t n);
void tl_dequant_iq3_s(const void *src, float *dst, int64_t n);
void tl_dequant_iq1_s(const void *src, float *dst, int64_t n);
void tl_dequant_iq1_m(const void *src, float *dst, int64_t n);

/* IQ4_XS's 6-bit scale of sub-block j (0..7), minus 32. */
static inline int tl_iq4_xs_scale(const uint8_t *block, int j) {
  const uint8_t *b = block;
  const int lo = (b[offsetof(tl_block_iq4_xs, scales_l) + j / 2] >> (4 * (j % 2))) & 15;
  const int hi = (tl_rd_u16(b + offsetof(tl_block_iq4_xs, scales_h)) >> (2 * j)) & 3;
  return (lo | hi << 4) - 32;
}

/* Float -> IQ4_NL / IQ4_XS without an importance matrix: ggml's
 * quantize_iq4_nl / quantize_iq4_xs with quant_weights NULL (what
 * llama-quantize runs without --imatrix), byte for byte. */
void tl_quant_iq4_nl(const float *src, void *dst, int64_t n);
void tl_quant_iq4_xs(const float *src, void *dst, int64_t n);

#endif
