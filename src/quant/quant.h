/* Weight types with ggml's numbering and block layouts, and the scalar
 * reference conversions every fast kernel is tested against. */
#ifndef TL_QUANT_H
#define TL_QUANT_H

#include "core/core.h"

typedef enum tl_type {
  TL_TYPE_F32 = 0,
  TL_TYPE_F16 = 1,
  TL_TYPE_Q4_0 = 2,
  TL_TYPE_Q4_1 = 3,
  TL_TYPE_Q5_0 = 6,
  TL_TYPE_Q5_1 = 7,
  TL_TYPE_Q8_0 = 8,
  TL_TYPE_Q8_1 = 9,
  TL_TYPE_Q2_K = 10,
  TL_TYPE_Q3_K = 11,
  TL_TYPE_Q4_K = 12,
  TL_TYPE_Q5_K = 13,
  TL_TYPE_Q6_K = 14,
  TL_TYPE_Q8_K = 15,
  TL_TYPE_IQ2_XXS = 16,
  TL_TYPE_IQ2_XS = 17,
  TL_TYPE_IQ3_XXS = 18,
  TL_TYPE_IQ1_S = 19,
  TL_TYPE_IQ4_NL = 20,
  TL_TYPE_IQ3_S = 21,
  TL_TYPE_IQ2_S = 22,
  TL_TYPE_IQ4_XS = 23,
  TL_TYPE_I8 = 24,
  TL_TYPE_I16 = 25,
  TL_TYPE_I32 = 26,
  TL_TYPE_I64 = 27,
  TL_TYPE_F64 = 28,
  TL_TYPE_IQ1_M = 29,
  TL_TYPE_BF16 = 30,
  TL_TYPE_TQ1_0 = 34,
  TL_TYPE_TQ2_0 = 35,
  TL_TYPE_COUNT = 40
} tl_type;

#define TL_QK8_0 32
typedef struct {
  uint16_t d; /* f16 scale */
  int8_t qs[TL_QK8_0];
} tl_block_q8_0;

/* The other ggml block layouts (ggml-common.h). Half-precision fields are
 * raw f16 bits; blocks inside a row need not be aligned, so code reads them
 * through byte pointers at offsetof(...) (tl_rd_u16) rather than through
 * struct pointers. */
#define TL_QK4_0 32
typedef struct {
  uint16_t d;               /* f16 scale */
  uint8_t qs[TL_QK4_0 / 2]; /* byte j: element j (low nibble), j + 16 (high) */
} tl_block_q4_0;            /* x = d * (q - 8) */

#define TL_QK4_1 32
typedef struct {
  uint16_t d, m; /* f16 scale and min */
  uint8_t qs[TL_QK4_1 / 2];
} tl_block_q4_1; /* x = d * q + m */

#define TL_QK5_0 32
typedef struct {
  uint16_t d;
  uint8_t qh[4]; /* little-endian u32: bit j is the 5th bit of element j */
  uint8_t qs[TL_QK5_0 / 2];
} tl_block_q5_0; /* x = d * (q - 16) */

#define TL_QK5_1 32
typedef struct {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[TL_QK5_1 / 2];
} tl_block_q5_1; /* x = d * q + m */

#define TL_QK_K 256
#define TL_K_SCALE_SIZE 12

typedef struct {
  uint8_t scales[TL_QK_K / 16]; /* per 16: scale (low nibble), min (high nibble) */
  uint8_t qs[TL_QK_K / 4];      /* 2-bit quants */
  uint16_t d;                   /* f16 super-block scale of the scales */
  uint16_t dmin;                /* f16 super-block scale of the mins */
} tl_block_q2_k;                /* x = d * sc * q - dmin * m */

typedef struct {
  uint8_t hmask[TL_QK_K / 8]; /* high bit of each quant (set: no -4) */
  uint8_t qs[TL_QK_K / 4];    /* low 2 bits */
  uint8_t scales[12];         /* 16 6-bit scales, offset by 32 */
  uint16_t d;                 /* f16 super-block scale */
} tl_block_q3_k;              /* x = d * (sc - 32) * (q - 4 * !hbit) */

typedef struct {
  uint16_t d, dmin;
  uint8_t scales[TL_K_SCALE_SIZE]; /* 8 6-bit scales and 8 6-bit mins */
  uint8_t qs[TL_QK_K / 2];         /* 4-bit quants */
} tl_block_q4_k;                   /* x = d * sc * q - dmin * m, per 32 */

typedef struct {
  uint16_t d, dmin;
  uint8_t scales[TL_K_SCALE_SIZE];
  uint8_t qh[TL_QK_K / 8]; /* 5th bits */
  uint8_t qs[TL_QK_K / 2]; /* low 4 bits */
} tl_block_q5_k;

typedef struct {
  uint8_t ql[TL_QK_K / 2];     /* low 4 bits */
  uint8_t qh[TL_QK_K / 4];     /* high 2 bits */
  int8_t scales[TL_QK_K / 16]; /* 8-bit scales, per 16 */
  uint16_t d;                  /* f16 super-block scale */
} tl_block_q6_k;               /* x = d * sc * (q - 32) */

typedef struct {
  float d; /* f32 scale */
  int8_t qs[TL_QK_K];
  int16_t bsums[TL_QK_K / 16]; /* sums of qs per 16 (unused by dequant) */
} tl_block_q8_k;

_Static_assert(sizeof(tl_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(tl_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(tl_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(tl_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(tl_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(tl_block_q2_k) == 84, "q2_K block");
_Static_assert(sizeof(tl_block_q3_k) == 110, "q3_K block");
_Static_assert(sizeof(tl_block_q4_k) == 144, "q4_K block");
_Static_assert(sizeof(tl_block_q5_k) == 176, "q5_K block");
_Static_assert(sizeof(tl_block_q6_k) == 210, "q6_K block");
_Static_assert(sizeof(tl_block_q8_k) == 292, "q8_K block");

typedef struct tl_type_info {
  const char *name;
  int64_t blck;     /* elements per block */
  size_t type_size; /* bytes per block */
  /* Row conversion of n elements (n a multiple of blck); NULL: unsupported. */
  void (*to_float)(const void *src, float *dst, int64_t n);
  void (*from_float)(const float *src, void *dst, int64_t n);
} tl_type_info;

/* Info for a ggml type id; NULL for ids that ggml never defined. A known type
 * we cannot compute with has to_float == NULL. */
const tl_type_info *tl_type_get(uint32_t type);
const char *tl_type_name(uint32_t type);
/* Bytes of a row of n elements; false on overflow or n % blck != 0. */
bool tl_type_row_size(uint32_t type, int64_t n, uint64_t *out);

void tl_dequant_q8_0(const void *src, float *dst, int64_t n);
void tl_quant_q8_0(const float *src, void *dst, int64_t n);

/* Scalar reference dequantization, exactly ggml's dequantize_row_* (same
 * float operations in the same order). n is a multiple of the block size. */
void tl_dequant_q4_0(const void *src, float *dst, int64_t n);
void tl_dequant_q4_1(const void *src, float *dst, int64_t n);
void tl_dequant_q5_0(const void *src, float *dst, int64_t n);
void tl_dequant_q5_1(const void *src, float *dst, int64_t n);
void tl_dequant_q2_k(const void *src, float *dst, int64_t n);
void tl_dequant_q3_k(const void *src, float *dst, int64_t n);
void tl_dequant_q4_k(const void *src, float *dst, int64_t n);
void tl_dequant_q5_k(const void *src, float *dst, int64_t n);
void tl_dequant_q6_k(const void *src, float *dst, int64_t n);
void tl_dequant_q8_k(const void *src, float *dst, int64_t n);

/* K-quant scale unpacking. Q3_K: the 16 6-bit scales of a block with the 32
 * offset removed (-32..31). Q4_K/Q5_K: scale and min (0..63) of sub-block j
 * (0..7) of 32 elements (ggml's get_scale_min_k4). */
void tl_q3_k_scales(const uint8_t packed[12], int8_t out[16]);
void tl_k4_scale_min(int j, const uint8_t packed[12], uint8_t *sc, uint8_t *m);

#endif
