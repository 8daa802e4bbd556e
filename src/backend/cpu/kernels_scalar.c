/* Scalar reference dot products: one per weight type. Fast kernels are
 * tested against these. Several accumulators keep the loops cheap without
 * changing the meaning. */
#include <stdlib.h>

#include "backend/backend.h"

static float dot_f32(const void *row, const float *x, int64_t n) {
  const float *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
  for (; i < n; i++) acc[0] += w[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += tl_f16_to_f32(tl_rd_u16(w + 2 * (i + j))) * x[i + j];
  for (; i < n; i++) acc[0] += tl_f16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_bf16(const void *row, const float *x, int64_t n) {
  const uint8_t *w = row;
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += tl_bf16_to_f32(tl_rd_u16(w + 2 * (i + j))) * x[i + j];
  for (; i < n; i++) acc[0] += tl_bf16_to_f32(tl_rd_u16(w + 2 * i)) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_q8_0(const void *row, const float *x, int64_t n) {
  const uint8_t *b = row;
  float sum = 0;
  for (int64_t i = 0; i < n / TL_QK8_0; i++, b += sizeof(tl_block_q8_0)) {
    const int8_t *qs = (const int8_t *)(b + 2);
    const float *xb = x + i * TL_QK8_0;
    float acc[4] = {0};
    for (int j = 0; j < TL_QK8_0; j += 4)
      for (int k = 0; k < 4; k++) acc[k] += (float)qs[j + k] * xb[j + k];
    sum += tl_f16_to_f32(tl_rd_u16(b)) * ((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
  return sum;
}

static const tl_cpu_kernels g_scalar = {
    .name = "scalar",
    .vec_dot =
        {
            [TL_TYPE_F32] = dot_f32,
            [TL_TYPE_F16] = dot_f16,
            [TL_TYPE_BF16] = dot_bf16,
            [TL_TYPE_Q8_0] = dot_q8_0,
        },
};

const tl_cpu_kernels *tl_cpu_kernels_scalar(void) { return &g_scalar; }

const tl_cpu_kernels *tl_cpu_kernels_best(void) {
  /* SIMD kernel sets are selected here by CPUID once they exist;
   * TL_CPU_KERNELS=scalar will keep forcing the reference. */
  return &g_scalar;
}

bool tl_cpu_supports_type(uint32_t type) {
  return type < TL_TYPE_COUNT && g_scalar.vec_dot[type] != NULL;
}
