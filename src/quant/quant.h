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

#endif
