/* Property tests for the matrix (gemm) kernels and the quantized-activation
 * path: the activation quantizers of every kernel set bit for bit against
 * the scalar ones; the scalar integer gemm against a float64 dot product of
 * the dequantized weights and dequantized activations; every set's gemm
 * against the scalar reference at odd shapes; the threaded matmul (row and
 * token splits) against the one-thread scalar one. */
#include <math.h>

#include "backend/cpu/cpu.h"
#include "core/threadpool.h"
#include "weightutil.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float frand(void) {
  return tl_test_frand(&g_rng);
} /* uniform in [-1, 1) */

/* rows x cols random weights of a type (weightutil.h). */
static uint8_t *make_weight(uint32_t type, int64_t rows, int64_t cols, size_t *row_bytes) {
  return tl_test_random_weight(type, rows, cols, 5, &g_rng, row_bytes);
}

/* Activations with a spread of magnitudes, a zero block and exact ties. */
static void make_x(float *x, int64_t n, int64_t ntok) {
  for (int64_t i = 0; i < n * ntok; i++) x[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
  for (int64_t i = 0; i < 32 && i < n; i++) x[i] = 0; /* an all-zero block: d = 0 */
  if (n >= 64) {
    for (int i = 32; i < 64; i++) x[i] = 0;
    x[40] = 127.0f; /* d = 1: the others are exact halves, rounding ties to even */
    x[41] = 2.5f;
    x[42] = -3.5f;
    x[43] = 0.5f;
  }
}

static uint32_t g_qtypes[] = {TL_TYPE_Q4_0, TL_TYPE_Q4_1, TL_TYPE_Q5_0, TL_TYPE_Q5_1, TL_TYPE_Q8_0,
                              TL_TYPE_Q2_K, TL_TYPE_Q3_K, TL_TYPE_Q4_K, TL_TYPE_Q5_K, TL_TYPE_Q6_K};
#define N_QTYPES (sizeof g_qtypes / sizeof g_qtypes[0])
/* The IQ types: the scalar gemm on 8-bit activations; the x86 sets have their
 * own for IQ4_NL and IQ4_XS (test_iq4_simd_gemm), the NEON sets for all. */
static uint32_t g_iqtypes[] = {TL_TYPE_IQ4_NL, TL_TYPE_IQ4_XS, TL_TYPE_IQ2_XXS,
                               TL_TYPE_IQ2_XS, TL_TYPE_IQ2_S,  TL_TYPE_IQ3_XXS,
                               TL_TYPE_IQ3_S,  TL_TYPE_IQ1_S,  TL_TYPE_IQ1_M};
#define N_IQTYPES (sizeof g_iqtypes / sizeof g_iqtypes[0])

/* Activation rows of x in the format, with the scalar quantizer. */
static uint8_t *quant_rows(tl_act_fmt f, const float *x, int64_t n, int64_t ntok, size_t *ldx) {
  *ldx = tl_act_row_bytes(f, n);
  uint8_t *xa = aligned_alloc(64, *ldx * (size_t)ntok);
  memset(xa, 0xcd, *ldx * (size_t)ntok);
  for (int64_t t = 0; t < ntok; t++)
    tl_cpu_kernels_scalar()->quant_act[f](x + t * n, xa + t * *ldx, n);
  return xa;
}

static void test_quant_act(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  const int64_t sizes[] = {256, 768, 2816, 5632};
  for (int f = TL_ACT_Q8_32; f <= TL_ACT_Q8_256; f++) {
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0] + 3; si++) {
      int64_t n = si < 3 ? (f == TL_ACT_Q8_32 ? 32 : 256) * (int64_t)(2 * si + 1) : sizes[si - 3];
      float *x = malloc(sizeof(float) * (size_t)n);
      make_x(x, n, 1);
      size_t ldx;
      uint8_t *ref = quant_rows((tl_act_fmt)f, x, n, 1, &ldx);
      /* the scalar rows decode to within half a step of x */
      const float *d = tl_act_d(ref, n);
      const int64_t blk = f == TL_ACT_Q8_32 ? 32 : 256;
      for (int64_t i = 0; i < n; i++) {
        float back = d[i / blk] * (float)((const int8_t *)ref)[i];
        assert_true(fabsf(back - x[i]) <= 0.5001f * d[i / blk]);
      }
      if (f == TL_ACT_Q8_256) {
        for (int64_t g = 0; g < n / 16; g++) {
          int s = 0;
          for (int j = 0; j < 16; j++) s += ((const int8_t *)ref)[16 * g + j];
          assert_int_equal(tl_act_bsum(ref, n)[g], s);
        }
      }
      uint8_t *got = aligned_alloc(64, ldx);
      for (int k = 1; k < n_sets; k++) {
        if (!sets[k]->quant_act[f]) continue;
        memset(got, 0xcd, ldx);
        sets[k]->quant_act[f](x, got, n);
        if (memcmp(got, ref, ldx) != 0)
          fail_msg("%s quant_act fmt %d n %lld differs from the scalar one", sets[k]->name, f,
                   (long long)n);
      }
      free(got);
      free(ref);
      free(x);
    }
  }
}

/* The scalar quantized gemm against float64 on the dequantized operands. */
static void test_scalar_vs_float64(void **state) {
  (void)state;
  const tl_cpu_kernels *sc = tl_cpu_kernels_scalar();
  for (size_t ti = 0; ti < N_QTYPES + N_IQTYPES; ti++) {
    const uint32_t type = ti < N_QTYPES ? g_qtypes[ti] : g_iqtypes[ti - N_QTYPES];
    const tl_act_fmt f = tl_cpu_act_fmt(type);
    const int64_t blck = tl_type_get(type)->blck, ablk = f == TL_ACT_Q8_32 ? 32 : 256;
    assert_non_null(sc->gemm[type]);
    for (int64_t mult = 1; mult <= 7; mult += 3) {
      const int64_t n = blck * mult, rows = 5, ntok = 3;
      size_t ldw, ldx;
      uint8_t *w = make_weight(type, rows, n, &ldw);
      float *x = malloc(sizeof(float) * (size_t)(n * ntok)), *wr = malloc(sizeof(float) * n);
      make_x(x, n, ntok);
      uint8_t *xa = quant_rows(f, x, n, ntok, &ldx);
      float y[15];
      sc->gemm[type](w, ldw, rows, xa, ldx, ntok, n, y, rows);
      for (int64_t r = 0; r < rows; r++) {
        tl_type_get(type)->to_float(w + r * ldw, wr, n);
        for (int64_t t = 0; t < ntok; t++) {
          const uint8_t *xr = xa + t * ldx;
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < n; c++) {
            double xv = (double)tl_act_d(xr, n)[c / ablk] * ((const int8_t *)xr)[c];
            ref += (double)wr[c] * xv;
            mag += fabs((double)wr[c] * xv);
          }
          if (fabs(y[t * rows + r] - ref) > 2e-5 * mag + 1e-6)
            fail_msg("scalar gemm %s n %lld row %lld tok %lld: %.9g want %.9g (mag %g)",
                     tl_type_name(type), (long long)n, (long long)r, (long long)t, y[t * rows + r],
                     ref, mag);
        }
      }
      free(xa);
      free(x);
      free(wr);
      free(w);
    }
  }
}

/* Every set's gemm against the scalar reference (quantized types: the scalar
 * gemm; float types: the scalar vec_dot), at odd row / token counts. */
static void test_gemm_vs_scalar(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  const tl_cpu_kernels *sc = sets[0];
  uint32_t types[TL_TYPE_COUNT];
  int n_types = tl_test_cpu_types(types);
  const int64_t nrs[] = {1, 3, 4, 5, 9, 17}, nts[] = {1, 2, 3, 4, 5, 7, 9, 16, 17};
  for (int ti = 0; ti < n_types; ti++) {
    const uint32_t type = types[ti];
    const tl_act_fmt f = tl_cpu_act_fmt(type);
    const int64_t blck = tl_type_get(type)->blck;
    const int64_t ns[] = {blck, blck * 3, blck * 5, blck == 1 ? 1 : blck * 11,
                          blck == 1 ? 17 : blck * 2, blck == 1 ? 100 : blck * 22,
                          /* several column passes of the prefill walks (float
                           * types: 1024 columns; Q4_0: 64 blocks) */
                          blck == 1    ? 2100
                          : blck == 32 ? blck * 70
                                       : blck * 7};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
      const int64_t n = ns[ni], rows = 17, ntok = 17;
      size_t ldw, ldx;
      uint8_t *w = make_weight(type, rows, n, &ldw);
      float *x = malloc(sizeof(float) * (size_t)(n * ntok)), *wr = malloc(sizeof(float) * n);
      for (int64_t i = 0; i < n * ntok; i++) x[i] = frand();
      uint8_t *xa = f == TL_ACT_F32 ? NULL : quant_rows(f, x, n, ntok, &ldx);
      if (!xa) ldx = (size_t)n * sizeof(float);
      const void *xin = xa ? (const void *)xa : (const void *)x;
      /* the reference and the magnitudes for the tolerance */
      float ref[17 * 17];
      double mag[17 * 17];
      for (int64_t r = 0; r < rows; r++) {
        tl_type_get(type)->to_float(w + r * ldw, wr, n);
        for (int64_t t = 0; t < ntok; t++) {
          if (xa)
            sc->gemm[type](w + r * ldw, ldw, 1, xa + t * ldx, ldx, 1, n, &ref[t * rows + r], 1);
          else
            ref[t * rows + r] = sc->vec_dot[type](w + r * ldw, x + t * n, n);
          mag[t * rows + r] = 0;
          for (int64_t c = 0; c < n; c++) mag[t * rows + r] += fabs((double)wr[c] * x[t * n + c]);
        }
      }
      for (int k = 0; k < n_sets; k++) {
        if (!sets[k]->gemm[type]) continue;
        /* a SIMD set that takes the scalar gemm (the rarer IQ types): done at k = 0 */
        if (k > 0 && sets[k]->gemm[type] == sc->gemm[type]) continue;
        for (size_t a = 0; a < sizeof nrs / sizeof nrs[0]; a++)
          for (size_t b = 0; b < sizeof nts / sizeof nts[0]; b++) {
            const int64_t nr = nrs[a], nt = nts[b], ldy = nr + 2;
            float y[19 * 17];
            for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) y[i] = NAN;
            sets[k]->gemm[type](w, ldw, nr, xin, ldx, nt, n, y, ldy);
            for (int64_t t = 0; t < nt; t++)
              for (int64_t r = 0; r < ldy; r++) {
                const float got = y[t * ldy + r];
                if (r >= nr) {
                  if (!isnan(got))
                    fail_msg("%s gemm %s wrote outside its tile", sets[k]->name,
                             tl_type_name(type));
                  continue;
                }
                const float want = ref[t * rows + r];
                if (!(fabs(got - want) <= 1e-5 * mag[t * rows + r] + 1e-6))
                  fail_msg("%s gemm %s n %lld tile %lldx%lld row %lld tok %lld: %.9g want %.9g",
                           sets[k]->name, tl_type_name(type), (long long)n, (long long)nr,
                           (long long)nt, (long long)r, (long long)t, got, want);
              }
          }
      }
      free(xa);
      free(x);
      free(wr);
      free(w);
    }
  }
}

/* The avx512vnni set has an integer gemm for every quantized type (so that
 * the comparisons above are not vacuous for it). */
static void test_vnni_gemm_complete(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  for (int k = 0; k < n_sets; k++) {
    if (strcmp(sets[k]->name, "avx512vnni") != 0) continue;
    for (size_t ti = 0; ti < N_QTYPES; ti++)
      if (!sets[k]->gemm[g_qtypes[ti]] ||
          sets[k]->gemm[g_qtypes[ti]] == sets[0]->gemm[g_qtypes[ti]])
        fail_msg("avx512vnni has no gemm of its own for %s", tl_type_name(g_qtypes[ti]));
  }
}

/* The avx2 set (and so avx512, which inherits it) has an integer gemm and
 * activation quantizers of its own for every quantized type. */
static void test_avx2_gemm_complete(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  for (int k = 0; k < n_sets; k++) {
    if (strcmp(sets[k]->name, "avx2") != 0 && strcmp(sets[k]->name, "avx512") != 0) continue;
    for (size_t ti = 0; ti < N_QTYPES; ti++)
      if (!sets[k]->gemm[g_qtypes[ti]] ||
          sets[k]->gemm[g_qtypes[ti]] == sets[0]->gemm[g_qtypes[ti]])
        fail_msg("%s has no gemm of its own for %s", sets[k]->name, tl_type_name(g_qtypes[ti]));
    for (int f = TL_ACT_Q8_32; f <= TL_ACT_Q8_256; f++)
      if (!sets[k]->quant_act[f] || sets[k]->quant_act[f] == sets[0]->quant_act[f])
        fail_msg("%s has no quantizer of its own for activation format %d", sets[k]->name, f);
  }
}

/* The x86 sets (avx2, avx512, avx512vnni) have an integer gemm of their own
 * for IQ4_NL and IQ4_XS, so that test_gemm_vs_scalar compares them. */
static void test_iq4_simd_gemm(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  for (int k = 1; k < n_sets; k++) {
    if (strncmp(sets[k]->name, "avx", 3) != 0) continue;
    for (size_t ti = 0; ti < 2; ti++)
      if (!sets[k]->gemm[g_iqtypes[ti]] ||
          sets[k]->gemm[g_iqtypes[ti]] == sets[0]->gemm[g_iqtypes[ti]])
        fail_msg("%s has no gemm of its own for %s", sets[k]->name, tl_type_name(g_iqtypes[ti]));
  }
}

/* tl_cpu_matmul of every set on 1..3 threads (row split, also by uneven
 * thread speeds, threads done early taking chunks of the others' shares;
 * token split; ldy > rows) against the scalar set on one thread. */
static void test_matmul_splits(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  const int64_t shapes[][3] = {{7, 1, 256},   {301, 1, 512}, {33, 13, 512},
                               {300, 5, 256}, {20, 40, 256}, {130, 70, 768}};
  uint32_t types[TL_TYPE_COUNT];
  int n_types = tl_test_cpu_types(types);
  tl_pool *pools[3], *pool1;
  for (int i = 0; i < 3; i++) assert_int_equal(tl_pool_new(i + 1, &pools[i]), TL_OK);
  pool1 = pools[0];
  for (int ti = 0; ti < n_types; ti++) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
      const int64_t rows = shapes[si][0], ntok = shapes[si][1], cols = shapes[si][2];
      const int64_t ldy = rows + 3;
      tl_weight w = {.type = types[ti], .rows = rows, .cols = cols};
      void *data = make_weight(types[ti], rows, cols, &w.row_bytes);
      w.data = data;
      float *x = malloc(sizeof(float) * (size_t)(ntok * cols));
      for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
      float *ref = malloc(sizeof(float) * (size_t)(ntok * ldy));
      float *y = malloc(sizeof(float) * (size_t)(ntok * ldy));
      for (int k = 0; k < n_sets; k++) {
        /* the scalar path of the same kind: gemm on quantized activations
         * where the set has a gemm for the type, else vec_dot on f32 ones */
        tl_cpu_kernels ref_k = *sets[0];
        if (!sets[k]->gemm[w.type]) ref_k.gemm[w.type] = NULL;
        tl_cpu_matmul(pool1, &ref_k, &w, x, ntok, ref, ldy);
        for (int p = 0; p < 3; p++) {
          for (int64_t i = 0; i < ntok * ldy; i++) y[i] = -7.0f;
          /* uneven thread speeds, as one-token matmuls split rows by them */
          float *rate = tl_pool_rates(pools[p]);
          for (int i = 0; i <= p; i++) rate[i] = (float)(1 + (i + (int)si) % 3) * (i == p ? 4 : 1);
          tl_cpu_matmul(pools[p], sets[k], &w, x, ntok, y, ldy);
          for (int64_t t = 0; t < ntok; t++)
            for (int64_t r = 0; r < ldy; r++) {
              float a = y[t * ldy + r], b = ref[t * ldy + r];
              if (r >= rows) {
                assert_true(a == -7.0f);
                continue;
              }
              if (!(fabsf(a - b) <= 1e-4f * (1.0f + fabsf(b))))
                fail_msg(
                    "%s matmul %s %lldx%lld x %lld tok, %d threads, tok %lld row %lld: %g vs %g",
                    sets[k]->name, tl_type_name(w.type), (long long)rows, (long long)cols,
                    (long long)ntok, p + 1, (long long)t, (long long)r, a, b);
            }
        }
      }
      free(ref);
      free(y);
      free(x);
      free(data);
    }
  }
  for (int i = 0; i < 3; i++) tl_pool_free(pools[i]);
}

/* The kernel sets this run covers (printed). TL_EXPECT_KERNELS, a comma-
 * separated list of set names (`make test-neon` passes neon,neon_dotprod),
 * makes a missing set a failure, and each named SIMD set must have an
 * integer gemm of its own for every quantized type, so that the comparisons
 * above are not vacuous for it. */
static void test_expected_sets(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  printf("kernel sets:");
  for (int k = 0; k < n_sets; k++) printf(" %s", sets[k]->name);
  printf("\n");
  const char *want = getenv("TL_EXPECT_KERNELS");
  if (!want || !*want) return;
  char buf[256], *save = NULL;
  snprintf(buf, sizeof buf, "%s", want);
  for (char *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    int found = -1;
    for (int k = 0; k < n_sets; k++)
      if (!strcmp(sets[k]->name, name)) found = k;
    if (found < 0) fail_msg("kernel set %s is not available here", name);
    for (size_t ti = 0; found > 0 && ti < N_QTYPES; ti++)
      if (!sets[found]->gemm[g_qtypes[ti]] ||
          sets[found]->gemm[g_qtypes[ti]] == sets[0]->gemm[g_qtypes[ti]])
        fail_msg("%s has no gemm of its own for %s", name, tl_type_name(g_qtypes[ti]));
    /* the NEON sets: every IQ type too (the x86 ones: IQ4_NL and IQ4_XS) */
    const size_t n_iq = strncmp(name, "neon", 4) == 0 ? N_IQTYPES : 2;
    for (size_t ti = 0; found > 0 && ti < n_iq; ti++)
      if (!sets[found]->gemm[g_iqtypes[ti]] ||
          sets[found]->gemm[g_iqtypes[ti]] == sets[0]->gemm[g_iqtypes[ti]])
        fail_msg("%s has no gemm of its own for %s", name, tl_type_name(g_iqtypes[ti]));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quant_act),          cmocka_unit_test(test_scalar_vs_float64),
      cmocka_unit_test(test_gemm_vs_scalar),     cmocka_unit_test(test_vnni_gemm_complete),
      cmocka_unit_test(test_avx2_gemm_complete), cmocka_unit_test(test_matmul_splits),
      cmocka_unit_test(test_iq4_simd_gemm),      cmocka_unit_test(test_expected_sets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
