/* Property tests for the CPU kernels: every kernel set against the scalar
 * reference (and the scalar reference against a float64 dot product of the
 * dequantized rows), on random data at odd shapes; half-precision
 * conversions exhaustively. */
#include <math.h>

#include "backend/backend.h"
#include "core/threadpool.h"
#include "quant/quant.h"
#include "testutil.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const uint32_t g_types[] = {TL_TYPE_F32, TL_TYPE_F16, TL_TYPE_BF16, TL_TYPE_Q8_0};

/* A random weight matrix of the given type, made by quantizing floats. */
static void *make_weight(uint32_t type, int64_t rows, int64_t cols, tl_weight *w) {
  const tl_type_info *ti = tl_type_get(type);
  uint64_t rb;
  assert_true(tl_type_row_size(type, cols, &rb));
  uint8_t *data = malloc((size_t)(rb * (uint64_t)rows));
  float *tmp = malloc(sizeof(float) * (size_t)cols);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) tmp[c] = frand() * (1.0f + (float)(r % 7));
    ti->from_float(tmp, data + r * rb, cols);
  }
  free(tmp);
  *w = (tl_weight){type, rows, cols, (size_t)rb, data};
  return data;
}

static void test_vec_dot_vs_float64(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[] = {tl_cpu_kernels_scalar(), tl_cpu_kernels_best()};
  const int64_t col_sizes[] = {32, 64, 96, 160, 256, 288, 1024 + 32};
  for (size_t ti = 0; ti < sizeof g_types / sizeof g_types[0]; ti++) {
    for (size_t ci = 0; ci < sizeof col_sizes / sizeof col_sizes[0]; ci++) {
      int64_t cols = col_sizes[ci], rows = 7;
      tl_weight w;
      void *data = make_weight(g_types[ti], rows, cols, &w);
      float *x = malloc(sizeof(float) * (size_t)cols), *row = malloc(sizeof(float) * (size_t)cols);
      for (int64_t c = 0; c < cols; c++) x[c] = frand();
      for (int64_t r = 0; r < rows; r++) {
        tl_weight_row_f32(&w, r, row);
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; c++) {
          ref += (double)row[c] * x[c];
          mag += fabs((double)row[c] * x[c]);
        }
        for (size_t k = 0; k < 2; k++) {
          float got = sets[k]->vec_dot[g_types[ti]]((const uint8_t *)data + r * w.row_bytes, x, cols);
          /* float32 accumulation: error bounded relative to the sum of magnitudes */
          if (fabs(got - ref) > 1e-5 * mag + 1e-6)
            fail_msg("%s %s cols %lld row %lld: got %.9g want %.9g", sets[k]->name,
                     tl_type_name(g_types[ti]), (long long)cols, (long long)r, got, ref);
        }
      }
      free(x);
      free(row);
      free(data);
    }
  }
}

static void test_matmul_threads(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{1, 1, 32}, {37, 3, 96}, {129, 5, 64}, {3, 17, 256}, {64, 1, 288}};
  for (size_t ti = 0; ti < sizeof g_types / sizeof g_types[0]; ti++) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
      int64_t rows = shapes[si][0], ntok = shapes[si][1], cols = shapes[si][2];
      tl_weight w;
      void *data = make_weight(g_types[ti], rows, cols, &w);
      float *x = malloc(sizeof(float) * (size_t)(ntok * cols));
      for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
      float *ref = malloc(sizeof(float) * (size_t)(ntok * rows));
      const tl_cpu_kernels *sc = tl_cpu_kernels_scalar();
      for (int64_t t = 0; t < ntok; t++)
        for (int64_t r = 0; r < rows; r++)
          ref[t * rows + r] =
              sc->vec_dot[w.type]((const uint8_t *)data + r * w.row_bytes, x + t * cols, cols);
      for (int nth = 1; nth <= 3; nth++) {
        tl_pool *pool;
        assert_int_equal(tl_pool_new(nth, &pool), TL_OK);
        float *y = calloc((size_t)(ntok * (rows + 3)), sizeof(float));
        tl_cpu_matmul(pool, tl_cpu_kernels_best(), &w, x, ntok, y, rows + 3);
        for (int64_t t = 0; t < ntok; t++)
          for (int64_t r = 0; r < rows; r++) {
            float a = y[t * (rows + 3) + r], b = ref[t * rows + r];
            if (fabsf(a - b) > 1e-4f * (1.0f + fabsf(b)))
              fail_msg("%s matmul %lldx%lld tok %lld threads %d: %g vs %g",
                       tl_type_name(w.type), (long long)rows, (long long)cols, (long long)t, nth, a,
                       b);
          }
        free(y);
        tl_pool_free(pool);
      }
      free(ref);
      free(x);
      free(data);
    }
  }
}

static void test_f16_exhaustive(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = tl_f16_to_f32((uint16_t)h);
    _Float16 hw;
    uint16_t hb = (uint16_t)h;
    memcpy(&hw, &hb, 2);
    float expect = (float)hw;
    if (isnan(expect)) {
      assert_true(isnan(f));
      continue;
    }
    assert_memory_equal(&f, &expect, 4);
    assert_int_equal(tl_f32_to_f16(f), h); /* round trip */
  }
  /* float -> half rounding against the compiler's conversion on random and edge values */
  const float edges[] = {65504.0f, 65519.99f, 65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f, 2.99e-8f,
                         6.1e-5f, 6.097e-5f, -0.0f, INFINITY, -INFINITY, 1.00048828125f,
                         1.000244140625f, 3.0e-7f};
  for (int i = 0; i < 2000000 + (int)(sizeof edges / sizeof edges[0]); i++) {
    float f;
    if (i < (int)(sizeof edges / sizeof edges[0])) {
      f = edges[i];
    } else {
      g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
      uint32_t bits = (uint32_t)(g_rng >> 32);
      memcpy(&f, &bits, 4);
      if (isnan(f)) continue;
    }
    _Float16 hw = (_Float16)f;
    uint16_t expect;
    memcpy(&expect, &hw, 2);
    if (tl_f32_to_f16(f) != expect)
      fail_msg("f32 %.9g: got 0x%04x want 0x%04x", f, tl_f32_to_f16(f), expect);
  }
}

static void test_bf16(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = tl_bf16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(tl_f32_to_bf16(f), h);
  }
  /* round to nearest even */
  float f;
  uint32_t bits = 0x3f808000u; /* exactly halfway between two bf16 values, even below */
  memcpy(&f, &bits, 4);
  assert_int_equal(tl_f32_to_bf16(f), 0x3f80);
  bits = 0x3f818000u; /* halfway, odd below: rounds up */
  memcpy(&f, &bits, 4);
  assert_int_equal(tl_f32_to_bf16(f), 0x3f82);
}

static void test_q8_0_rule(void **state) {
  (void)state;
  float x[32];
  for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) / 16.0f * 2.54f;
  tl_block_q8_0 b;
  tl_quant_q8_0(x, &b, 32);
  /* d = max|x| / 127 = 2.54/127 = 0.02; x[0] = -2.54 -> -127 */
  assert_int_equal(b.qs[0], -127);
  assert_int_equal(b.qs[16], 0);
  assert_true(fabsf(tl_f16_to_f32(b.d) - 0.02f) < 1e-5f);
  /* half-way values round away from zero like roundf */
  for (int i = 0; i < 32; i++) x[i] = 0;
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  tl_quant_q8_0(x, &b, 32);
  assert_int_equal(b.qs[0], 127);
  assert_int_equal(b.qs[1], 3);
  assert_int_equal(b.qs[2], -4);
  float back[32];
  tl_dequant_q8_0(&b, back, 32);
  assert_true(fabsf(back[0] - 127.0f) < 1e-3f);
  assert_true(fabsf(back[1] - 3.0f) < 1e-3f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vec_dot_vs_float64), cmocka_unit_test(test_matmul_threads),
      cmocka_unit_test(test_f16_exhaustive),     cmocka_unit_test(test_bf16),
      cmocka_unit_test(test_q8_0_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
