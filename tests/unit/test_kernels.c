/* Property tests for the CPU kernels: every kernel set against the scalar
 * reference (and the scalar reference against a float64 dot product of the
 * dequantized rows), on random data at odd shapes; half-precision
 * conversions exhaustively. */
#include <math.h>

#include "backend/cpu/cpu.h"
#include "core/threadpool.h"
#include "weightutil.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
  return tl_test_frand(&g_rng);
} /* uniform in [-1, 1) */

/* A random weight matrix of the given type (weightutil.h), viewed as w. */
static void *make_weight(uint32_t type, int64_t rows, int64_t cols, tl_weight *w) {
  size_t rb;
  uint8_t *data = tl_test_random_weight(type, rows, cols, 7, &g_rng, &rb);
  *w = (tl_weight){type, rows, cols, rb, data};
  return data;
}

static void test_vec_dot_vs_float64(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  uint32_t g_types[TL_TYPE_COUNT];
  int n_types = tl_test_cpu_types(g_types);
  const int64_t col_sizes[] = {256, 512, 768, 1280, 2816};
  for (int ti = 0; ti < n_types; ti++) {
    int64_t blck = tl_type_get(g_types[ti])->blck;
    printf("type %s:", tl_type_name(g_types[ti]));
    for (int k = 0; k < n_sets; k++) printf(" %s", sets[k]->name);
    printf("\n");
    for (size_t ci = 0; ci < sizeof col_sizes / sizeof col_sizes[0] + 3; ci++) {
      /* odd multiples of the block, then the usual sizes */
      int64_t cols = ci < 3 ? blck * (int64_t)(2 * ci + 1) : col_sizes[ci - 3];
      if (cols % blck) continue;
      int64_t rows = 7;
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
        for (int k = 0; k < n_sets; k++) {
          float got =
              sets[k]->vec_dot[g_types[ti]]((const uint8_t *)data + r * w.row_bytes, x, cols);
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
  const int64_t shapes[][3] = {
      {1, 1, 256}, {37, 3, 768}, {129, 5, 256}, {3, 17, 512}, {64, 1, 1280}};
  uint32_t g_types[TL_TYPE_COUNT];
  int n_types = tl_test_cpu_types(g_types);
  for (int ti = 0; ti < n_types; ti++) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
      int64_t rows = shapes[si][0], ntok = shapes[si][1], cols = shapes[si][2];
      tl_weight w;
      void *data = make_weight(g_types[ti], rows, cols, &w);
      float *x = malloc(sizeof(float) * (size_t)(ntok * cols));
      for (int64_t i = 0; i < ntok * cols; i++) x[i] = frand();
      float *ref = malloc(sizeof(float) * (size_t)(ntok * rows));
      /* the scalar reference on one thread: vec_dot on f32 activations, or
       * for quantized weights the quantized-activation gemm (test_qkernels.c) */
      tl_pool *pool1;
      assert_int_equal(tl_pool_new(1, &pool1), TL_OK);
      tl_cpu_matmul(pool1, tl_cpu_kernels_scalar(), &w, x, ntok, ref, rows);
      tl_pool_free(pool1);
      for (int nth = 1; nth <= 3; nth++) {
        tl_pool *pool;
        assert_int_equal(tl_pool_new(nth, &pool), TL_OK);
        float *y = calloc((size_t)(ntok * (rows + 3)), sizeof(float));
        tl_cpu_matmul(pool, tl_cpu_kernels_best(), &w, x, ntok, y, rows + 3);
        for (int64_t t = 0; t < ntok; t++)
          for (int64_t r = 0; r < rows; r++) {
            float a = y[t * (rows + 3) + r], b = ref[t * rows + r];
            if (fabsf(a - b) > 1e-4f * (1.0f + fabsf(b)))
              fail_msg("%s matmul %lldx%lld tok %lld threads %d: %g vs %g", tl_type_name(w.type),
                       (long long)rows, (long long)cols, (long long)t, nth, a, b);
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

/* y += a * x for the KV cache types, every set against the scalar reference. */
static void test_axpy(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  const uint32_t types[] = {TL_TYPE_F32, TL_TYPE_F16};
  for (int n = 1; n < 80; n += 3) {
    float x[80], ref[80], y[80];
    uint16_t xh[80];
    for (int i = 0; i < n; i++) {
      x[i] = frand();
      xh[i] = tl_f32_to_f16(x[i]);
      ref[i] = frand();
    }
    float a = frand();
    for (size_t t = 0; t < 2; t++) {
      const void *src = types[t] == TL_TYPE_F32 ? (const void *)x : (const void *)xh;
      float want[80];
      memcpy(want, ref, sizeof want);
      tl_cpu_kernels_scalar()->axpy[types[t]](a, src, want, n);
      for (int k = 0; k < n_sets; k++) {
        memcpy(y, ref, sizeof y);
        sets[k]->axpy[types[t]](a, src, y, n);
        for (int i = 0; i < n; i++)
          if (fabsf(y[i] - want[i]) > 1e-6f * (1.0f + fabsf(want[i])))
            fail_msg("%s axpy %s n=%d i=%d: %g vs %g", sets[k]->name, tl_type_name(types[t]), n, i,
                     y[i], want[i]);
      }
    }
  }
}

/* The attention tile kernels of every set that has them against their
 * contract (backend.h), computed here with fmaf in the stated order: the
 * results must be bit-identical. Keys transposed with a row stride larger
 * than the tile and an offset into it (a tile that starts inside a block),
 * f16 and f32 caches, head sizes with and without SIMD tails, tiles of 1..70
 * positions, 1..17 query heads (more than one group of 8); nothing past the
 * tile's scores may be written. The maxima and sums they may return on the
 * side are checked too, and asking for them must not change the rest. */
static void test_att_kernels(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  int n_sets = tl_cpu_kernel_sets(sets, 8);
  const int hds[] = {1, 8, 17, 24, 64, 80, 96, 128, 256};
  enum { MAXN = 70, MAXQ = 17, MAXHD = 256, LDS = 72, LDK = 80 };
  float *kf = malloc(sizeof(float) * MAXHD * LDK), *vf = malloc(sizeof(float) * MAXN * MAXHD);
  uint16_t *kh = malloc(sizeof(uint16_t) * MAXHD * LDK),
           *vh = malloc(sizeof(uint16_t) * MAXN * MAXHD);
  float *q = malloc(sizeof(float) * MAXQ * MAXHD), *o0 = malloc(sizeof(float) * MAXQ * MAXHD);
  float *o1 = malloc(sizeof(float) * MAXQ * MAXHD), *o2 = malloc(sizeof(float) * MAXQ * MAXHD);
  float *s0 = malloc(sizeof(float) * MAXQ * LDS), *s1 = malloc(sizeof(float) * MAXQ * LDS);
  float *p = malloc(sizeof(float) * MAXQ * LDS);
  float mx0[MAXQ], mx1[MAXQ], l0[MAXQ], l1[MAXQ];
  int cases = 0;
  for (int c = 0; c < n_sets; c++) {
    const tl_cpu_kernels *ks = sets[c];
    if (!ks->att_scores && !ks->att_accum) continue;
    for (int f16 = 0; f16 < 2; f16++)
      for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        const int hd = hds[h];
        for (int n = 1; n <= MAXN; n += 1 + (int)h) {
          const int nq = 1 + (n * 3 + (int)h) % MAXQ, off = (n + (int)h) % (LDK - MAXN + 1);
          const float scale = 0.5f + 0.25f * frand();
          /* the cache as the kernel reads it (f16, or f32), and as f32 values */
          for (int i = 0; i < hd * LDK; i++) {
            kh[i] = tl_f32_to_f16(frand());
            kf[i] = f16 ? tl_f16_to_f32(kh[i]) : frand();
          }
          for (int i = 0; i < n * hd; i++) {
            vh[i] = tl_f32_to_f16(frand());
            vf[i] = f16 ? tl_f16_to_f32(vh[i]) : frand();
          }
          for (int i = 0; i < nq * hd; i++) {
            q[i] = frand();
            o0[i] = frand();
          }
          for (int i = 0; i < nq * LDS; i++) p[i] = frand() + 1.0f;
          const void *kt = f16 ? (const void *)(kh + off) : (const void *)(kf + off);
          const void *vv = f16 ? (const void *)vh : (const void *)vf;
          if (ks->att_scores) {
            for (int i = 0; i < nq * LDS; i++) s0[i] = s1[i] = -7.0f; /* untouched past n */
            const bool want_max = (n + (int)h) % 2 == 0;
            for (int g = 0; g < nq; g++) {
              mx0[g] = -INFINITY;
              mx1[g] = 7.0f;
              for (int r = 0; r < n; r++) {
                float a = 0;
                for (int d = 0; d < hd; d++) a = fmaf(q[g * hd + d], kf[d * LDK + off + r], a);
                s0[g * LDS + r] = a * scale;
                if (s0[g * LDS + r] > mx0[g]) mx0[g] = s0[g * LDS + r];
              }
            }
            ks->att_scores(kt, f16, LDK, n, q, nq, hd, scale, s1, LDS, want_max ? mx1 : NULL);
            for (int g = 0; g < nq; g++)
              if (want_max ? mx1[g] != mx0[g] : mx1[g] != 7.0f)
                fail_msg("%s att_scores %s hd=%d n=%d nq=%d g=%d: max %.9g, want %.9g", ks->name,
                         f16 ? "f16" : "f32", hd, n, nq, g, mx1[g], want_max ? mx0[g] : 7.0f);
            for (int g = 0; g < nq; g++)
              for (int r = 0; r < LDS; r++)
                if (memcmp(&s0[g * LDS + r], &s1[g * LDS + r], sizeof(float)) != 0)
                  fail_msg("%s att_scores %s hd=%d n=%d nq=%d g=%d r=%d: %.9g, want %.9g", ks->name,
                           f16 ? "f16" : "f32", hd, n, nq, g, r, s1[g * LDS + r], s0[g * LDS + r]);
            cases++;
          }
          if (ks->att_accum) {
            const bool want_sum = (n + (int)h) % 3 != 0;
            memcpy(o1, o0, sizeof(float) * (size_t)nq * hd);
            memcpy(o2, o0, sizeof(float) * (size_t)nq * hd);
            for (int g = 0; g < nq; g++) {
              l0[g] = l1[g] = frand();
              for (int r = 0; r < n; r++) {
                for (int i = 0; i < hd; i++)
                  o1[g * hd + i] = fmaf(p[g * LDS + r], vf[r * hd + i], o1[g * hd + i]);
                if (want_sum) l0[g] += p[g * LDS + r];
              }
            }
            ks->att_accum(vv, f16, n, p, LDS, nq, hd, o2, want_sum ? l1 : NULL);
            if (memcmp(l0, l1, sizeof(float) * (size_t)nq) != 0)
              fail_msg("%s att_accum %s hd=%d n=%d nq=%d: sums differ", ks->name,
                       f16 ? "f16" : "f32", hd, n, nq);
            for (int i = 0; i < nq * hd; i++)
              if (memcmp(&o1[i], &o2[i], sizeof(float)) != 0)
                fail_msg("%s att_accum %s hd=%d n=%d nq=%d i=%d: %.9g, want %.9g", ks->name,
                         f16 ? "f16" : "f32", hd, n, nq, i, o2[i], o1[i]);
            cases++;
          }
        }
      }
  }
#if defined(__x86_64__)
  if (tl_cpu_has_avx512()) assert_true(cases > 400); /* the AVX2 and AVX-512 sets have both */
#elif defined(__aarch64__)
  assert_true(cases > 400); /* the NEON sets have both */
#endif
  free(kf);
  free(vf);
  free(kh);
  free(vh);
  free(q);
  free(o0);
  free(o1);
  free(o2);
  free(s0);
  free(s1);
  free(p);
}

/* tl_split_rated: ranges in thread order that cover [0, n) exactly, each
 * within one item of n * rate / sum of rates (even when no rate is usable). */
static void test_split_rated(void **state) {
  (void)state;
  const float rates[][4] = {
      {1, 1, 1, 1}, {3, 1, 0, 0}, {0.2f, 5, 1, 1}, {0, 0, 0, 0}, {1, 2, 3, 4}};
  for (size_t c = 0; c < sizeof rates / sizeof rates[0]; c++)
    for (int nth = 1; nth <= 4; nth++)
      for (int64_t n = 0; n < 300; n += 7) {
        double total = 0;
        for (int i = 0; i < nth; i++) total += rates[c][i];
        int64_t prev = 0;
        for (int i = 0; i < nth; i++) {
          int64_t b, e;
          tl_split_rated(n, rates[c], i, nth, &b, &e);
          assert_int_equal(b, prev);
          assert_true(e >= b);
          const double want = total > 0 ? (double)n * rates[c][i] / total : (double)n / nth;
          assert_true(fabs((double)(e - b) - want) <= 1.0);
          prev = e;
        }
        assert_int_equal(prev, n);
      }
}

/* y and e the same float bits (any NaN matching any NaN). */
static bool same_float(float y, float e) {
  return memcmp(&y, &e, sizeof y) == 0 || (isnan(y) && isnan(e));
}

/* exp_sub of every set is bit for bit the C library's expf(x - m): on random
 * scores and maxima at odd lengths (in place and not), on a sweep over all
 * float bit patterns, and on the edges of its range. */
static void test_exp_sub(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  const int n_sets = tl_cpu_kernel_sets(sets, 8);
  enum { N = 4096 };
  float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
  assert_non_null(x);
  assert_non_null(y);
  int simd = 0;
  for (int c = 0; c < n_sets; c++) {
    const tl_cpu_kernels *ks = sets[c];
    assert_non_null(ks->exp_sub);
    if (ks->exp_sub != tl_cpu_kernels_scalar()->exp_sub) simd++;
    for (int n = 1; n <= 77; n += 4) {
      for (int rep = 0; rep < 20; rep++) {
        const float m = 12.0f * frand(), spread = rep < 10 ? 4.0f : 110.0f;
        for (int i = 0; i < n; i++) x[i] = m + spread * frand() - (rep & 1 ? spread : 0.0f);
        ks->exp_sub(x, m, y, n);
        for (int i = 0; i < n; i++)
          if (!same_float(y[i], expf(x[i] - m)))
            fail_msg("%s exp_sub n=%d x=%a m=%a: %a, expf %a", ks->name, n, (double)x[i], (double)m,
                     (double)y[i], (double)expf(x[i] - m));
      }
    }
    /* in place: the results are those of a separate output */
    for (int i = 0; i < 300; i++) x[i] = 20.0f * frand() - 10.0f;
    memcpy(y, x, sizeof(float) * 300);
    ks->exp_sub(x, 1.5f, x, 300);
    for (int i = 0; i < 300; i++)
      if (!same_float(x[i], expf(y[i] - 1.5f))) fail_msg("%s exp_sub in place i=%d", ks->name, i);
    /* every 9973rd float bit pattern, m = 0 */
    for (uint64_t u = 0; u <= 0xffffffffull;) {
      int n = 0;
      for (; n < N && u <= 0xffffffffull; n++, u += 9973) {
        const uint32_t bits = (uint32_t)u;
        memcpy(&x[n], &bits, sizeof bits);
      }
      ks->exp_sub(x, 0.0f, y, n);
      for (int i = 0; i < n; i++)
        if (!same_float(y[i], expf(x[i])))
          fail_msg("%s exp_sub x=%a: %a, expf %a", ks->name, (double)x[i], (double)y[i],
                   (double)expf(x[i]));
    }
    const float edge[] = {0.0f,       -0.0f,      1.0f,       -1.0f,     1e-30f,    -1e-30f,
                          88.0f,      88.72283f,  88.722839f, 88.7229f,  89.0f,     -87.0f,
                          -87.33654f, -87.33655f, -87.3366f,  -95.0f,    -103.97f,  -103.9721f,
                          -103.98f,   -104.0f,    -150.0f,    INFINITY,  -INFINITY, NAN,
                          1e-45f,     -1e-45f,    0x1p-126f,  -0x1p-126f};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int shift = 0; shift < 3; shift++) { /* each edge in every lane position */
      for (int i = 0; i < ne + shift; i++) x[i] = i < shift ? 0.5f : edge[i - shift];
      ks->exp_sub(x, 0.0f, y, ne + shift);
      for (int i = 0; i < ne + shift; i++)
        if (!same_float(y[i], expf(x[i])))
          fail_msg("%s exp_sub edge x=%a: %a, expf %a", ks->name, (double)x[i], (double)y[i],
                   (double)expf(x[i]));
    }
  }
#if defined(__x86_64__) && defined(__GLIBC__)
  /* the AVX-512 sets install their kernel when it agrees with glibc's expf */
  if (tl_cpu_has_avx512()) assert_true(simd >= 1);
#endif
  (void)simd;
  free(x);
  free(y);
}

/* silu of every set is bit for bit x / (1 + expf(-x)) (times g): gated and
 * not, in place and not, at odd lengths, on random inputs of a narrow and a
 * wide spread (past the fast exp's range), on a sweep over the float bit
 * patterns, and on the edges. */
static void test_silu(void **state) {
  (void)state;
  const tl_cpu_kernels *sets[8];
  const int n_sets = tl_cpu_kernel_sets(sets, 8);
  enum { N = 4096 };
  float *x = malloc(sizeof(float) * N), *g = malloc(sizeof(float) * N),
        *y = malloc(sizeof(float) * N), *x0 = malloc(sizeof(float) * N);
  assert_non_null(x);
  assert_non_null(g);
  assert_non_null(y);
  assert_non_null(x0);
  int simd = 0;
  for (int c = 0; c < n_sets; c++) {
    const tl_cpu_kernels *ks = sets[c];
    assert_non_null(ks->silu);
    if (ks->silu != tl_cpu_kernels_scalar()->silu) simd++;
    for (int n = 1; n <= 77; n += 4) {
      for (int rep = 0; rep < 20; rep++) {
        const float spread = rep < 10 ? 8.0f : 200.0f;
        for (int i = 0; i < n; i++) {
          x[i] = spread * (2.0f * frand() - 1.0f);
          g[i] = 4.0f * frand() - 2.0f;
        }
        const bool gated = rep & 1, in_place = rep & 2;
        memcpy(x0, x, sizeof(float) * (size_t)n);
        ks->silu(x, gated ? g : NULL, in_place ? x : y, n);
        const float *out = in_place ? x : y;
        for (int i = 0; i < n; i++) {
          const float s = x0[i] / (1.0f + expf(-x0[i])), want = gated ? s * g[i] : s;
          if (!same_float(out[i], want))
            fail_msg("%s silu n=%d gated=%d x=%a: %a, want %a", ks->name, n, gated, (double)x0[i],
                     (double)out[i], (double)want);
        }
      }
    }
    for (uint64_t u = 0; u <= 0xffffffffull;) { /* every 9973rd float bit pattern */
      int n = 0;
      for (; n < N && u <= 0xffffffffull; n++, u += 9973) {
        const uint32_t bits = (uint32_t)u;
        memcpy(&x[n], &bits, sizeof bits);
      }
      ks->silu(x, NULL, y, n);
      for (int i = 0; i < n; i++) {
        const float want = x[i] / (1.0f + expf(-x[i]));
        if (!same_float(y[i], want))
          fail_msg("%s silu x=%a: %a, want %a", ks->name, (double)x[i], (double)y[i], (double)want);
      }
    }
    const float edge[] = {0.0f,    -0.0f,  88.0f,   -88.0f,   88.7229f,  -88.7229f, 104.0f,
                          -104.0f, 1e-45f, -1e-45f, INFINITY, -INFINITY, NAN,       -NAN};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int shift = 0; shift < 3; shift++) {
      for (int i = 0; i < ne + shift; i++) {
        x[i] = i < shift ? 0.5f : edge[i - shift];
        g[i] = 1.5f;
      }
      ks->silu(x, g, y, ne + shift);
      for (int i = 0; i < ne + shift; i++) {
        const float want = x[i] / (1.0f + expf(-x[i])) * 1.5f;
        if (!same_float(y[i], want))
          fail_msg("%s silu edge x=%a: %a, want %a", ks->name, (double)x[i], (double)y[i],
                   (double)want);
      }
    }
  }
#if defined(__x86_64__) && defined(__GLIBC__)
  /* the AVX-512 sets install theirs with their exp_sub */
  if (tl_cpu_has_avx512()) assert_true(simd >= 1);
#endif
  (void)simd;
  free(x);
  free(g);
  free(y);
  free(x0);
}

/* The bulk Q8_0 conversion of KV cache tiles against tl_dequant_q8_0, bit for
 * bit: every int8 value, every finite f16 scale. */
static void test_q8_0_to_f32(void **state) {
  (void)state;
  enum { NB = 2048 };
  tl_block_q8_0 *b = malloc(sizeof(tl_block_q8_0) * NB);
  float *want = malloc(sizeof(float) * NB * TL_QK8_0), *got = malloc(sizeof(float) * NB * TL_QK8_0);
  for (uint32_t h0 = 0; h0 < 65536; h0 += NB) {
    for (int i = 0; i < NB; i++) {
      uint16_t h = (uint16_t)(h0 + (uint32_t)i);
      if ((h & 0x7c00) == 0x7c00) h = 0x3c00; /* inf / NaN scales: 1.0 instead */
      memcpy(&b[i].d, &h, 2);
      for (int j = 0; j < TL_QK8_0; j++) b[i].qs[j] = (int8_t)((i * 37 + j * 11) & 0xff);
    }
    tl_dequant_q8_0(b, want, (int64_t)NB * TL_QK8_0);
    tl_cpu_q8_0_to_f32(b, got, (int64_t)NB * TL_QK8_0);
    assert_memory_equal(got, want, sizeof(float) * NB * TL_QK8_0);
  }
  free(b);
  free(want);
  free(got);
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
  /* the bulk conversion (SIMD where the CPU has it), odd length for the tail */
  uint16_t *hs = malloc(sizeof(uint16_t) * 65536);
  float *fs = malloc(sizeof(float) * 65536);
  for (uint32_t h = 0; h < 65536; h++) hs[h] = (uint16_t)h;
  tl_cpu_f16_to_f32(hs, fs, 65533);
  for (uint32_t h = 0; h < 65533; h++) {
    const float want = tl_f16_to_f32((uint16_t)h);
    if (isnan(want))
      assert_true(isnan(fs[h]));
    else
      assert_memory_equal(&fs[h], &want, 4);
  }
  free(hs);
  free(fs);
  /* float -> half rounding against the compiler's conversion on random and edge values */
  const float edges[] = {65504.0f, 65519.99f, 65520.0f,       1e-8f,           5.96e-8f,
                         2.98e-8f, 2.99e-8f,  6.1e-5f,        6.097e-5f,       -0.0f,
                         INFINITY, -INFINITY, 1.00048828125f, 1.000244140625f, 3.0e-7f};
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

/* Torchless .bin int8 (values q / s, a scale per 64): the scalar reference
 * against float64, every kernel set against the scalar reference, and the
 * threaded matmul and row dequantization on such a weight. */
static void test_i8s(void **state) {
  (void)state;
  const int64_t rows = 7, cols = 320, groups = cols / TL_I8S_GROUP;
  int8_t *q = malloc((size_t)(rows * cols));
  float *sc = malloc(sizeof(float) * (size_t)(rows * groups)), *x = malloc(sizeof(float) * cols);
  for (int64_t i = 0; i < rows * cols; i++) q[i] = (int8_t)(frand() * 127.0f);
  for (int64_t i = 0; i < rows * groups; i++) sc[i] = 127.0f / (0.01f + fabsf(frand()));
  for (int64_t i = 0; i < cols; i++) x[i] = frand();
  const tl_cpu_kernels *sets[4];
  int n_sets = tl_cpu_kernel_sets(sets, 4);
  float ref[7];
  for (int64_t r = 0; r < rows; r++) {
    double d = 0;
    for (int64_t c = 0; c < cols; c++)
      d += (double)q[r * cols + c] / sc[r * groups + c / TL_I8S_GROUP] * x[c];
    ref[r] = sets[0]->vec_dot_i8s(q + r * cols, sc + r * groups, x, cols);
    assert_true(fabs(ref[r] - d) <= 1e-5 * (1.0 + fabs(d)));
    for (int k = 1; k < n_sets; k++) {
      assert_non_null(sets[k]->vec_dot_i8s);
      float v = sets[k]->vec_dot_i8s(q + r * cols, sc + r * groups, x, cols);
      if (fabsf(v - ref[r]) > 1e-5f * (1.0f + fabsf(ref[r])))
        fail_msg("%s vec_dot_i8s row %lld: %g vs %g", sets[k]->name, (long long)r, v, ref[r]);
    }
  }
  tl_weight w = {.type = TL_TYPE_I8,
                 .rows = rows,
                 .cols = cols,
                 .row_bytes = (size_t)cols,
                 .data = q,
                 .scales = sc};
  tl_pool *pool;
  assert_int_equal(tl_pool_new(2, &pool), TL_OK);
  float y[7], row[320];
  tl_cpu_matmul(pool, tl_cpu_kernels_best(), &w, x, 1, y, rows);
  for (int64_t r = 0; r < rows; r++) {
    assert_true(fabsf(y[r] - ref[r]) <= 1e-5f * (1.0f + fabsf(ref[r])));
    tl_weight_row_f32(&w, r, row);
    for (int64_t c = 0; c < cols; c++)
      assert_true(row[c] == (float)q[r * cols + c] / sc[r * groups + c / TL_I8S_GROUP]);
  }
  tl_pool_free(pool);
  free(q);
  free(sc);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_i8s),
      cmocka_unit_test(test_vec_dot_vs_float64),
      cmocka_unit_test(test_matmul_threads),
      cmocka_unit_test(test_axpy),
      cmocka_unit_test(test_att_kernels),
      cmocka_unit_test(test_split_rated),
      cmocka_unit_test(test_exp_sub),
      cmocka_unit_test(test_silu),
      cmocka_unit_test(test_q8_0_to_f32),
      cmocka_unit_test(test_f16_exhaustive),
      cmocka_unit_test(test_bf16),
      cmocka_unit_test(test_q8_0_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
