#include "weightutil.h"

#include <math.h>

int tl_test_cpu_types(uint32_t *out) {
  int n = 0;
  for (uint32_t t = 0; t < TL_TYPE_COUNT; t++)
    if (tl_cpu_supports_type(t)) out[n++] = t;
  return n;
}

/* A block decodes to finite values of a sane size. */
static bool block_ok(const tl_type_info *ti, const uint8_t *b) {
  float v[256];
  ti->to_float(b, v, ti->blck);
  for (int i = 0; i < ti->blck; i++)
    if (!isfinite(v[i]) || fabsf(v[i]) > 1e4f) return false;
  return true;
}

uint8_t *tl_test_random_weight(uint32_t type, int64_t rows, int64_t cols, int scale_period,
                               uint64_t *rng, size_t *row_bytes) {
  const tl_type_info *ti = tl_type_get(type);
  uint64_t rb;
  assert_true(tl_type_row_size(type, cols, &rb));
  uint8_t *data = malloc((size_t)(rb * (uint64_t)rows));
  float *tmp = malloc(sizeof(float) * (size_t)cols);
  assert_true(data && tmp);
  for (int64_t r = 0; r < rows; r++) {
    uint8_t *row = data + r * rb;
    if (ti->from_float) {
      for (int64_t c = 0; c < cols; c++)
        tmp[c] = tl_test_frand(rng) * (1.0f + (float)(r % scale_period));
      ti->from_float(tmp, row, cols);
      continue;
    }
    for (int64_t b = 0; b < cols / ti->blck; b++) {
      uint8_t *blk = row + b * ti->type_size;
      for (size_t i = 0; i < ti->type_size; i++)
        blk[i] = (uint8_t)(tl_test_frand(rng) * 128.0f + 128.0f);
      if (!block_ok(ti, blk))
        for (size_t i = 0; i < ti->type_size; i++) blk[i] &= 0xbf;
      assert_true(block_ok(ti, blk));
    }
  }
  free(tmp);
  *row_bytes = (size_t)rb;
  return data;
}
