/* Float -> K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): ggml's reference
 * quantizers quantize_row_*_ref, which llama-quantize runs when no
 * importance matrix is given (quantize_q4_K etc. call the _ref path when
 * quant_weights is NULL). The same float operations in the same order, so
 * the output matches ggml's byte for byte on the same input.
 *
 * Rounding: nearest_int() adds 1.5 * 2^23 and reads the mantissa, i.e.
 * round half to even (ggml's trick), used for every quant and sub-block
 * scale; the super-block scales go to f16 with round to nearest even.
 *
 * Per type (x: the 256 floats of a super-block):
 * - Q6_K: per 16 elements make_qx_quants(nmax 32, weights x^2) picks a
 *   signed scale by a search over 19 candidate scales; the 16 scales are
 *   quantized to int8 against the one of largest magnitude (d = max / -128),
 *   then every element is re-quantized with its rounded scale.
 * - Q3_K: per 16 elements make_q3_quants (nmax 4, weights x^2, 5 rounds of
 *   coordinate descent); 6-bit scales against d = max / -32.
 * - Q2_K / Q4_K / Q5_K: per 16 (Q2_K) or 32 elements an asymmetric fit
 *   (scale and min) by make_qkx2_quants, a grid search over candidate
 *   scales with a least-squares min; the scales and mins are quantized to 4
 *   (Q2_K) or 6 bits against their maxima. */
#include <math.h>
#include <stddef.h>

#include "quant/quantize.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* no fused multiply-adds: ggml's roundings */
#endif

#define GROUP_MAX_EPS 1e-15f

static inline int imax(int a, int b) {
  return a > b ? a : b;
}
static inline int imin(int a, int b) {
  return a < b ? a : b;
}

/* Round half to even for |f| <= 4194303 (ggml's nearest_int). */
static inline int nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t i;
  memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

/* Symmetric quantization of n values to [-nmax, nmax-1] (stored + nmax).
 * Returns the scale. rmse_type 1: weights x^2 with a search over scales. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (int i = 0; i < n; i++) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; i++) {
      int l = nearest_int(iscale * x[i]);
      L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = (int8_t)(l + nmax);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest_int(iscale * x[i]);
      l = imax(-nmax, imin(nmax - 1, l));
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/* Q3_K's sub-block fit: weights x^2, coordinate descent on the quants. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (int i = 0; i < n; i++) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = (int8_t)l;
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; itry++) {
    int n_changed = 0;
    for (int i = 0; i < n; i++) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = imax(-nmax, imin(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = (int8_t)new_l;
            sumlx = slx;
            suml2 = sl2;
            n_changed++;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric fit x ~ scale * L + min with L in [0, nmax]: *the_min gets
 * -min (>= 0). A grid of nstep + 1 candidate scales around nmax / range,
 * each refined by weighted least squares; the smallest weighted error
 * (absolute if use_mad, else squared) wins. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; i++) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; i++) {
    int l = nearest_int(iscale * (x[i] - min));
    L[i] = (uint8_t)imax(0, imin(nmax, l));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? fabsf(diff) : diff * diff;
    float w = weights[i];
    best_error += w * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = nearest_int(iscale * (x[i] - min));
      l = imax(0, imin(nmax, l));
      Laux[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        cur_error += w * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; i++) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

/* Pack 2-bit quants: byte l of each 32-byte plane holds elements l, l+32,
 * l+64, l+96 of its half of 128. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
  for (int j = 0; j < TL_QK_K; j += 128)
    for (int l = 0; l < 32; l++)
      qs[j / 4 + l] =
          (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void tl_quant_q2_k(const float *x, void *dst, int64_t n) {
  uint8_t *out = dst;
  uint8_t L[TL_QK_K], Laux[16];
  float weights[16], mins[TL_QK_K / 16], scales[TL_QK_K / 16];
  const float q4scale = 15.f;
  for (int64_t i = 0; i < n / TL_QK_K; i++, x += TL_QK_K, out += sizeof(tl_block_q2_k)) {
    tl_block_q2_k y;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < TL_QK_K / 16; j++) {
      for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      float iscale = q4scale / max_scale;
      for (int j = 0; j < TL_QK_K / 16; j++) y.scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
      y.d = tl_f32_to_f16(max_scale / q4scale);
    } else {
      for (int j = 0; j < TL_QK_K / 16; j++) y.scales[j] = 0;
      y.d = tl_f32_to_f16(0.f);
    }
    if (max_min > 0) {
      float iscale = q4scale / max_min;
      for (int j = 0; j < TL_QK_K / 16; j++) {
        int l = nearest_int(iscale * mins[j]);
        y.scales[j] = (uint8_t)(y.scales[j] | (l << 4));
      }
      y.dmin = tl_f32_to_f16(max_min / q4scale);
    } else {
      y.dmin = tl_f32_to_f16(0.f);
    }
    for (int j = 0; j < TL_QK_K / 16; j++) {
      const float d = tl_f16_to_f32(y.d) * (y.scales[j] & 0xF);
      if (!d) continue;
      const float dm = tl_f16_to_f32(y.dmin) * (y.scales[j] >> 4);
      for (int ii = 0; ii < 16; ii++) {
        int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
      }
    }
    pack_2bit(L, y.qs);
    memcpy(out, &y, sizeof y);
  }
}

void tl_quant_q3_k(const float *x, void *dst, int64_t n) {
  uint8_t *out = dst;
  int8_t L[TL_QK_K];
  float scales[TL_QK_K / 16];
  for (int64_t i = 0; i < n / TL_QK_K; i++, x += TL_QK_K, out += sizeof(tl_block_q3_k)) {
    tl_block_q3_k y;
    float max_scale = 0, amax = 0;
    for (int j = 0; j < TL_QK_K / 16; j++) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      float scale = fabsf(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    memset(y.scales, 0, 12);
    if (max_scale) {
      float iscale = -32.f / max_scale;
      for (int j = 0; j < TL_QK_K / 16; j++) {
        int8_t l = (int8_t)nearest_int(iscale * scales[j]);
        l = (int8_t)(imax(-32, imin(31, l)) + 32);
        if (j < 8)
          y.scales[j] = (uint8_t)(l & 0xF);
        else
          y.scales[j - 8] = (uint8_t)(y.scales[j - 8] | ((l & 0xF) << 4));
        l = (int8_t)(l >> 4);
        y.scales[j % 4 + 8] = (uint8_t)(y.scales[j % 4 + 8] | (l << (2 * (j / 4))));
      }
      y.d = tl_f32_to_f16(1 / iscale);
    } else {
      y.d = tl_f32_to_f16(0.f);
    }
    int8_t sc[16];
    tl_q3_k_scales(y.scales, sc); /* the 6-bit scales minus 32, as ggml unpacks them */
    for (int j = 0; j < TL_QK_K / 16; j++) {
      float d = tl_f16_to_f32(y.d) * sc[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ii++) {
        int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
      }
    }
    /* high bit of element j: bit j / 32 of hmask[j % 32] */
    memset(y.hmask, 0, TL_QK_K / 8);
    int m = 0;
    uint8_t hm = 1;
    uint8_t Lu[TL_QK_K];
    for (int j = 0; j < TL_QK_K; j++) {
      int l = L[j];
      if (l > 3) {
        y.hmask[m] |= hm;
        l -= 4;
      }
      Lu[j] = (uint8_t)l;
      if (++m == TL_QK_K / 8) {
        m = 0;
        hm = (uint8_t)(hm << 1);
      }
    }
    pack_2bit(Lu, y.qs);
    memcpy(out, &y, sizeof y);
  }
}

/* Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins. */
static void quant_k45(const float *x, uint8_t L[TL_QK_K], int nmax, float rmin, float rdelta,
                      int nstep, uint16_t *d_out, uint16_t *dmin_out, uint8_t scales_out[12]) {
  uint8_t Laux[32];
  float weights[32], mins[TL_QK_K / 32], scales[TL_QK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < TL_QK_K / 32; j++) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
    float av_x = sqrtf(sum_x2 / 32);
    for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                 rdelta, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t *s = scales_out;
  for (int j = 0; j < TL_QK_K / 32; j++) {
    uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
    uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
    if (ls > 63) ls = 63;
    if (lm > 63) lm = 63;
    if (j < 4) {
      s[j] = ls;
      s[j + 4] = lm;
    } else {
      s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
      s[j - 4] = (uint8_t)(s[j - 4] | ((ls >> 4) << 6));
      s[j] = (uint8_t)(s[j] | ((lm >> 4) << 6));
    }
  }
  *d_out = tl_f32_to_f16(max_scale / 63.f);
  *dmin_out = tl_f32_to_f16(max_min / 63.f);
  for (int j = 0; j < TL_QK_K / 32; j++) {
    uint8_t sc, m;
    tl_k4_scale_min(j, s, &sc, &m);
    const float d = tl_f16_to_f32(*d_out) * sc;
    if (!d) continue;
    const float dm = tl_f16_to_f32(*dmin_out) * m;
    for (int ii = 0; ii < 32; ii++) {
      int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
    }
  }
}

void tl_quant_q4_k(const float *x, void *dst, int64_t n) {
  uint8_t *out = dst;
  uint8_t L[TL_QK_K];
  for (int64_t i = 0; i < n / TL_QK_K; i++, x += TL_QK_K, out += sizeof(tl_block_q4_k)) {
    tl_block_q4_k y;
    quant_k45(x, L, 15, -1.f, 0.1f, 20, &y.d, &y.dmin, y.scales);
    uint8_t *q = y.qs;
    for (int j = 0; j < TL_QK_K; j += 64, q += 32)
      for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    memcpy(out, &y, sizeof y);
  }
}

void tl_quant_q5_k(const float *x, void *dst, int64_t n) {
  uint8_t *out = dst;
  uint8_t L[TL_QK_K];
  for (int64_t i = 0; i < n / TL_QK_K; i++, x += TL_QK_K, out += sizeof(tl_block_q5_k)) {
    tl_block_q5_k y;
    quant_k45(x, L, 31, -0.5f, 0.1f, 15, &y.d, &y.dmin, y.scales);
    uint8_t *qh = y.qh, *ql = y.qs;
    memset(qh, 0, TL_QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int nn = 0; nn < TL_QK_K; nn += 64, ql += 32) {
      for (int j = 0; j < 32; j++) {
        int l1 = L[nn + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[nn + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = (uint8_t)(l1 | (l2 << 4));
      }
      m1 = (uint8_t)(m1 << 2);
      m2 = (uint8_t)(m2 << 2);
    }
    memcpy(out, &y, sizeof y);
  }
}

void tl_quant_q6_k(const float *x, void *dst, int64_t n) {
  uint8_t *out = dst;
  int8_t L[TL_QK_K];
  float scales[TL_QK_K / 16];
  for (int64_t i = 0; i < n / TL_QK_K; i++, x += TL_QK_K, out += sizeof(tl_block_q6_k)) {
    tl_block_q6_k y;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < TL_QK_K / 16; ib++) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
      scales[ib] = scale;
      const float abs_scale = fabsf(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
      memset(&y, 0, sizeof y);
      y.d = tl_f32_to_f16(0.f);
      memcpy(out, &y, sizeof y);
      continue;
    }
    float iscale = -128.f / max_scale;
    y.d = tl_f32_to_f16(1 / iscale);
    for (int ib = 0; ib < TL_QK_K / 16; ib++)
      y.scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
    for (int j = 0; j < TL_QK_K / 16; j++) {
      float d = tl_f16_to_f32(y.d) * y.scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ii++) {
        int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
      }
    }
    uint8_t *ql = y.ql, *qh = y.qh;
    for (int j = 0; j < TL_QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; l++) {
        const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
        ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
        qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                          ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
    }
    memcpy(out, &y, sizeof y);
  }
}
