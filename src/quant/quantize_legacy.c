/* Float -> Q4_0, Q4_1, Q5_0, Q5_1: ggml's quantize_row_*_ref, byte for byte.
 *
 * Rounding rules (the same float operations as ggml, in the same order):
 * - Q4_0 / Q5_0: the element of largest magnitude, signed, is max; the scale
 *   d = max / -8 (resp. / -16) is stored as f16 (round to nearest even), but
 *   the quants use the unrounded id = 1 / d: q = min(15, trunc(x * id + 8.5))
 *   (resp. min(31, trunc(x * id + 16.5))), i.e. round half up of x * id + 8.
 *   The largest-magnitude element maps to q = 0 exactly (-8 * d).
 * - Q4_1 / Q5_1: d = (max - min) / 15 (resp. / 31), m = min, both stored as
 *   f16; q = trunc((x - min) * id + 0.5), capped at 15 (resp. 31).
 * Each block is built in a local struct and copied out, so dst needs no
 * alignment. */
#include <float.h>
#include <math.h>
#include <stddef.h>

#include "quant/quantize.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* no fused multiply-adds: ggml's roundings */
#endif

static inline int imin(int a, int b) {
  return a < b ? a : b;
}

/* The signed value of largest magnitude (the first one on ties). */
static float signed_absmax(const float *x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; j++) {
    const float v = x[j];
    if (amax < fabsf(v)) {
      amax = fabsf(v);
      max = v;
    }
  }
  return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < n; j++) {
    const float v = x[j];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  *mn = min;
  *mx = max;
}

void tl_quant_q4_0(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / TL_QK4_0; i++, src += TL_QK4_0, out += sizeof(tl_block_q4_0)) {
    tl_block_q4_0 b;
    const float max = signed_absmax(src, TL_QK4_0);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = tl_f32_to_f16(d);
    for (int j = 0; j < TL_QK4_0 / 2; j++) {
      const float x0 = src[j] * id;
      const float x1 = src[TL_QK4_0 / 2 + j] * id;
      const int q0 = imin(15, (int)(x0 + 8.5f));
      const int q1 = imin(15, (int)(x1 + 8.5f));
      b.qs[j] = (uint8_t)(q0 | q1 << 4);
    }
    memcpy(out, &b, sizeof b);
  }
}

void tl_quant_q4_1(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / TL_QK4_1; i++, src += TL_QK4_1, out += sizeof(tl_block_q4_1)) {
    tl_block_q4_1 b;
    float min, max;
    min_max(src, TL_QK4_1, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = tl_f32_to_f16(d);
    b.m = tl_f32_to_f16(min);
    for (int j = 0; j < TL_QK4_1 / 2; j++) {
      const float x0 = (src[j] - min) * id;
      const float x1 = (src[TL_QK4_1 / 2 + j] - min) * id;
      const int q0 = imin(15, (int)(x0 + 0.5f));
      const int q1 = imin(15, (int)(x1 + 0.5f));
      b.qs[j] = (uint8_t)(q0 | q1 << 4);
    }
    memcpy(out, &b, sizeof b);
  }
}

/* The low nibbles go to qs, bit 4 of element j to bit j of qh. */
static void pack_q5(const int q[32], uint8_t qs[16], uint8_t qh_out[4]) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; j++) {
    qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= (uint32_t)((q[j] & 0x10) >> 4) << j;
    qh |= (uint32_t)((q[j + 16] & 0x10) >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

void tl_quant_q5_0(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / TL_QK5_0; i++, src += TL_QK5_0, out += sizeof(tl_block_q5_0)) {
    tl_block_q5_0 b;
    const float max = signed_absmax(src, TL_QK5_0);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = tl_f32_to_f16(d);
    int q[TL_QK5_0];
    for (int j = 0; j < TL_QK5_0; j++) {
      const float x0 = src[j] * id;
      q[j] = imin(31, (int)(x0 + 16.5f));
    }
    pack_q5(q, b.qs, b.qh);
    memcpy(out, &b, sizeof b);
  }
}

void tl_quant_q5_1(const float *src, void *dst, int64_t n) {
  uint8_t *out = dst;
  for (int64_t i = 0; i < n / TL_QK5_1; i++, src += TL_QK5_1, out += sizeof(tl_block_q5_1)) {
    tl_block_q5_1 b;
    float min, max;
    min_max(src, TL_QK5_1, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b.d = tl_f32_to_f16(d);
    b.m = tl_f32_to_f16(min);
    int q[TL_QK5_1];
    for (int j = 0; j < TL_QK5_1; j++) {
      const float x0 = (src[j] - min) * id;
      q[j] = imin(31, (int)(x0 + 0.5f));
    }
    pack_q5(q, b.qs, b.qh);
    memcpy(out, &b, sizeof b);
  }
}
