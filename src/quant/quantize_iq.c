/* Float -> IQ4_NL and IQ4_XS without an importance matrix: ggml's
 * quantize_row_iq4_nl_impl (ggml-quants.c) as quantize_iq4_nl /
 * quantize_iq4_xs call it with quant_weights NULL and ntry 7, which is what
 * llama-quantize runs without --imatrix. The same float operations in the
 * same order, so the output matches ggml's byte for byte.
 *
 * Per block of 32 (weights w = x^2): the element of largest magnitude max
 * fixes a first scale -max / values[0]; each element takes the nearest of the
 * 16 non-linear values; the least-squares scale sumqx / sumq2 is kept, then 15
 * more candidate scales (itry + values[0]) / max, itry = -7..7, are tried and
 * the one with the largest sumqx^2 / sumq2 wins. IQ4_NL stores that scale in
 * f16 and re-quantizes with it. IQ4_XS quantizes the 8 block scales to 6 bits
 * against d = -max_scale / 32 (the one of largest magnitude) and re-quantizes
 * each block with its rounded scale. */
#include <math.h>

#include "quant/quant_iq.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* no fused multiply-adds: ggml's roundings */
#endif

#define GROUP_MAX_EPS 1e-15f
#define NTRY 7

/* Round half to even for |f| <= 4194303 (ggml's nearest_int). */
static inline int nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t i;
  memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

/* The index of the value nearest x among the sorted values (ggml's
 * best_index_int8: ties go to the upper one). */
static inline int best_index(const int8_t *val, float x) {
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    int mav = (ml + mu) / 2;
    if (x < val[mav])
      mu = mav;
    else
      ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* One super-block of sb (32 or 256) elements in blocks of 32. dh: the f16
 * scale; q4: sb / 2 nibble bytes; for sb 256, scales_h / scales_l. */
static void iq4_impl(int sb, const float *x, uint8_t *dh, uint8_t *q4, uint8_t *scales_h,
                     uint8_t *scales_l) {
  const int8_t *values = tl_iq4nl_values;
  float scales[8], weight[32];
  uint8_t L[256];
  memset(q4, 0, (size_t)sb / 2);
  memset(L, 0, sizeof L);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < sb / 32; ib++) {
    const float *xb = x + 32 * ib;
    uint8_t *Lb = L + 32 * ib;
    for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
      float ax = fabsf(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax < GROUP_MAX_EPS) {
      scales[ib] = 0;
      continue;
    }
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
      float al = id * xb[j];
      int l = best_index(values, al);
      Lb[j] = (uint8_t)l;
      float q = values[l];
      float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -NTRY; itry <= NTRY; itry++) {
      id = (float)(itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; j++) {
        float al = id * xb[j];
        int l = best_index(values, al);
        float q = values[l];
        float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    float abs_d = fabsf(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (sb > 32) {
    uint16_t sh = 0;
    float d = -max_scale / 32;
    uint16_t h = tl_f32_to_f16(d);
    memcpy(dh, &h, 2);
    float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < sb / 32; ib++) {
      int l = nearest_int(id * scales[ib]);
      l = l < -32 ? -32 : l > 31 ? 31 : l;
      float dl = d * (float)l;
      float idl = dl != 0 ? 1 / dl : 0.f;
      uint8_t *Lb = L + 32 * ib;
      const float *xb = x + 32 * ib;
      for (int j = 0; j < 32; j++) Lb[j] = (uint8_t)best_index(values, idl * xb[j]);
      l += 32;
      const uint8_t l_l = (uint8_t)(l & 15), l_h = (uint8_t)(l >> 4);
      if (ib % 2 == 0)
        scales_l[ib / 2] = l_l;
      else
        scales_l[ib / 2] |= (uint8_t)(l_l << 4);
      sh |= (uint16_t)(l_h << (2 * ib));
    }
    scales_h[0] = (uint8_t)(sh & 0xff);
    scales_h[1] = (uint8_t)(sh >> 8);
  } else {
    uint16_t h = tl_f32_to_f16(scales[0]);
    memcpy(dh, &h, 2);
    float id = scales[0] != 0 ? 1 / scales[0] : 0;
    for (int j = 0; j < sb; j++) L[j] = (uint8_t)best_index(values, id * x[j]);
  }
  for (int i = 0; i < sb / 32; i++)
    for (int j = 0; j < 16; j++)
      q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void tl_quant_iq4_nl(const float *src, void *dst, int64_t n) {
  uint8_t *b = dst;
  for (int64_t i = 0; i < n / 32; i++, b += sizeof(tl_block_iq4_nl))
    iq4_impl(32, src + 32 * i, b, b + offsetof(tl_block_iq4_nl, qs), NULL, NULL);
}

void tl_quant_iq4_xs(const float *src, void *dst, int64_t n) {
  uint8_t *b = dst;
  for (int64_t i = 0; i < n / 256; i++, b += sizeof(tl_block_iq4_xs))
    iq4_impl(256, src + 256 * i, b, b + offsetof(tl_block_iq4_xs, qs),
             b + offsetof(tl_block_iq4_xs, scales_h), b + offsetof(tl_block_iq4_xs, scales_l));
}
