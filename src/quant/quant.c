/* The type table and the scalar reference conversions. */
#include "quant/quant.h"
#include "quant/quant_iq.h"
#include "quant/quantize.h"

#include <math.h>

static void f32_to_float(const void *src, float *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f32_from_float(const float *src, void *dst, int64_t n) {
  memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tl_f16_to_f32(tl_rd_u16(s + 2 * i));
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
  uint16_t *d = dst;
  for (int64_t i = 0; i < n; i++) d[i] = tl_f32_to_f16(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
  const uint8_t *s = src;
  for (int64_t i = 0; i < n; i++) dst[i] = tl_bf16_to_f32(tl_rd_u16(s + 2 * i));
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
  uint16_t *d = dst;
  for (int64_t i = 0; i < n; i++) d[i] = tl_f32_to_bf16(src[i]);
}

/* Q8_0: blocks of 32 int8 with one f16 scale d; x = d * q. */
void tl_dequant_q8_0(const void *src, float *dst, int64_t n) {
  const uint8_t *b = src;
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    float d = tl_f16_to_f32(tl_rd_u16(b));
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < TL_QK8_0; j++) dst[i * TL_QK8_0 + j] = d * (float)qs[j];
  }
}

/* The rounding rule of ggml's quantize_row_q8_0_ref: d = max|x| / 127, the
 * stored scale is d in f16, q = round-half-away(x / d) computed with the
 * unrounded d. */
void tl_quant_q8_0(const float *src, void *dst, int64_t n) {
  uint8_t *b = dst;
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    const float *x = src + i * TL_QK8_0;
    float amax = 0;
    for (int j = 0; j < TL_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t dh = tl_f32_to_f16(d);
    memcpy(b, &dh, 2);
    int8_t *qs = (int8_t *)(b + 2);
    for (int j = 0; j < TL_QK8_0; j++) qs[j] = (int8_t)roundf(x[j] * id);
  }
}

#define T(id, nm, bl, ts, tf, ff) [id] = {nm, bl, ts, tf, ff}
static const tl_type_info g_types[TL_TYPE_COUNT] = {
    T(TL_TYPE_F32, "F32", 1, 4, f32_to_float, f32_from_float),
    T(TL_TYPE_F16, "F16", 1, 2, f16_to_float, f16_from_float),
    T(TL_TYPE_Q4_0, "Q4_0", 32, 18, tl_dequant_q4_0, tl_quant_q4_0),
    T(TL_TYPE_Q4_1, "Q4_1", 32, 20, tl_dequant_q4_1, tl_quant_q4_1),
    T(TL_TYPE_Q5_0, "Q5_0", 32, 22, tl_dequant_q5_0, tl_quant_q5_0),
    T(TL_TYPE_Q5_1, "Q5_1", 32, 24, tl_dequant_q5_1, tl_quant_q5_1),
    T(TL_TYPE_Q8_0, "Q8_0", 32, 34, tl_dequant_q8_0, tl_quant_q8_0),
    T(TL_TYPE_Q8_1, "Q8_1", 32, 36, NULL, NULL),
    T(TL_TYPE_Q2_K, "Q2_K", 256, 84, tl_dequant_q2_k, tl_quant_q2_k),
    T(TL_TYPE_Q3_K, "Q3_K", 256, 110, tl_dequant_q3_k, tl_quant_q3_k),
    T(TL_TYPE_Q4_K, "Q4_K", 256, 144, tl_dequant_q4_k, tl_quant_q4_k),
    T(TL_TYPE_Q5_K, "Q5_K", 256, 176, tl_dequant_q5_k, tl_quant_q5_k),
    T(TL_TYPE_Q6_K, "Q6_K", 256, 210, tl_dequant_q6_k, tl_quant_q6_k),
    T(TL_TYPE_Q8_K, "Q8_K", 256, 292, tl_dequant_q8_k, NULL),
    T(TL_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, tl_dequant_iq2_xxs, NULL),
    T(TL_TYPE_IQ2_XS, "IQ2_XS", 256, 74, tl_dequant_iq2_xs, NULL),
    T(TL_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98, tl_dequant_iq3_xxs, NULL),
    T(TL_TYPE_IQ1_S, "IQ1_S", 256, 50, tl_dequant_iq1_s, NULL),
    T(TL_TYPE_IQ4_NL, "IQ4_NL", 32, 18, tl_dequant_iq4_nl, tl_quant_iq4_nl),
    T(TL_TYPE_IQ3_S, "IQ3_S", 256, 110, tl_dequant_iq3_s, NULL),
    T(TL_TYPE_IQ2_S, "IQ2_S", 256, 82, tl_dequant_iq2_s, NULL),
    T(TL_TYPE_IQ4_XS, "IQ4_XS", 256, 136, tl_dequant_iq4_xs, tl_quant_iq4_xs),
    T(TL_TYPE_I8, "I8", 1, 1, NULL, NULL),
    T(TL_TYPE_I16, "I16", 1, 2, NULL, NULL),
    T(TL_TYPE_I32, "I32", 1, 4, NULL, NULL),
    T(TL_TYPE_I64, "I64", 1, 8, NULL, NULL),
    T(TL_TYPE_F64, "F64", 1, 8, NULL, NULL),
    T(TL_TYPE_IQ1_M, "IQ1_M", 256, 56, tl_dequant_iq1_m, NULL),
    T(TL_TYPE_BF16, "BF16", 1, 2, bf16_to_float, bf16_from_float),
    T(TL_TYPE_TQ1_0, "TQ1_0", 256, 54, NULL, NULL),
    T(TL_TYPE_TQ2_0, "TQ2_0", 256, 66, NULL, NULL),
};

const tl_type_info *tl_type_get(uint32_t type) {
  if (type >= TL_TYPE_COUNT || !g_types[type].name) return NULL;
  return &g_types[type];
}

const char *tl_type_name(uint32_t type) {
  const tl_type_info *t = tl_type_get(type);
  return t ? t->name : "unknown";
}

bool tl_type_row_size(uint32_t type, int64_t n, uint64_t *out) {
  const tl_type_info *t = tl_type_get(type);
  if (!t || n < 0 || n % t->blck != 0) return false;
  return tl_mul_u64((uint64_t)(n / t->blck), t->type_size, out);
}
