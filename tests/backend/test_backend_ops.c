/* Every operation of the backend interface (src/backend/backend.h) against a
 * plain scalar reference written here, in double precision, on random
 * inputs: odd sizes, every weight type, GQA and MQA, sliding windows,
 * soft-capping, several sequences at different positions, each KV cache
 * type. Outputs are poisoned with NaN first, so an element an operation
 * leaves unwritten fails too.
 *
 *   test_backend_ops [--backend NAME] [--kernels SET] [--seed N]
 *
 * --backend: the backend under test (default cpu). For the CPU without
 * --kernels, every kernel set this CPU runs is tested in turn. The inputs
 * are drawn from --seed, by default from the clock (printed, so a failure
 * can be replayed). A backend this build or machine cannot run is skipped,
 * saying so. The measure of error is the normalised mean squared error
 * sum((out - ref)^2) / sum(ref^2), with bounds per operation below. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "testutil.h"
#include "weightutil.h"

static const char *g_backend = "cpu";
static const char *g_kernels; /* the set under test (CPU) */
static uint64_t g_rng;

static float *rand_floats(size_t n, double scale) {
  float *v = malloc(sizeof(float) * (n ? n : 1));
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) v[i] = (float)(tl_test_frand(&g_rng) * scale);
  return v;
}

/* ---- the backend under test ------------------------------------------------ */

typedef struct dev {
  tl_backend *be;
  void *bufs[4096];
  int n_bufs;
} dev;

static tl_backend_config base_config(void) {
  tl_backend_config c = {.n_layer = 2,
                         .n_head = 4,
                         .n_head_kv = 2,
                         .head_dim = 32,
                         .n_embd = 128,
                         .n_ctx = 160,
                         .n_seq = 3,
                         .n_batch = 64,
                         .kv_type = TL_KV_F32,
                         .n_threads = 2,
                         .cpu_kernels = g_kernels};
  return c;
}

static void dev_open(dev *d, const tl_backend_config *cfg) {
  memset(d, 0, sizeof *d);
  if (tl_backend_new(g_backend, cfg, &d->be) != TL_OK)
    fail_msg("backend %s: %s", g_backend, tl_last_error());
}

static void dev_close(dev *d) {
  for (int i = 0; i < d->n_bufs; i++) d->be->buffer_free(d->be, d->bufs[i]);
  tl_backend_free(d->be);
}

/* n floats of device memory, filled with src (or NaN where src is NULL). */
static float *dev_floats(dev *d, const float *src, size_t n) {
  assert_true(d->n_bufs < 4096);
  float *p = d->be->buffer_alloc(d->be, sizeof(float) * (n ? n : 1));
  assert_non_null(p);
  d->bufs[d->n_bufs++] = p;
  float *h = malloc(sizeof(float) * (n ? n : 1));
  assert_non_null(h);
  for (size_t i = 0; i < n; i++) h[i] = src ? src[i] : NAN;
  assert_int_equal(d->be->from_host(d->be, h, p, (int64_t)n), TL_OK);
  free(h);
  return p;
}

static float *dev_read(dev *d, const float *p, size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  assert_non_null(h);
  assert_int_equal(d->be->to_host(d->be, p, h, (int64_t)n), TL_OK);
  return h;
}

static const float *dev_vector(dev *d, const float *host, int64_t n) {
  const float *v = NULL;
  assert_int_equal(d->be->prepare_vector(d->be, host, n, &v), TL_OK);
  return v;
}

static void step(dev *d, int n, const tl_token *tok, const int32_t *pos, const int32_t *seq,
                 int n_out, const int32_t *out_rows) {
  tl_step st = {
      .n = n, .tokens = tok, .pos = pos, .seq = seq, .n_out = n_out, .out_rows = out_rows};
  assert_int_equal(d->be->step_begin(d->be, &st), TL_OK);
}

static void step_end(dev *d) {
  assert_int_equal(d->be->step_end(d->be), TL_OK);
}

/* The worst error seen per operation (the first word of `what`). */
static struct {
  char op[16];
  double worst;
  int n;
} g_worst[16];

static void record(const char *what, double e) {
  char op[16];
  snprintf(op, sizeof op, "%.*s", (int)strcspn(what, " :"), what);
  int i = 0;
  while (i < 16 && g_worst[i].n && strcmp(g_worst[i].op, op)) i++;
  if (i == 16) return;
  if (!g_worst[i].n) snprintf(g_worst[i].op, sizeof g_worst[i].op, "%s", op);
  if (e > g_worst[i].worst) g_worst[i].worst = e;
  g_worst[i].n++;
}

/* The error of out against ref (every element finite), checked against
 * bound; the reference's squares summed over at least n * floor^2 (a
 * single value near 0 would otherwise turn rounding into a large error). */
static double check_floor(const char *what, const float *out, const double *ref, size_t n,
                          double bound, double floor) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i]))
      fail_msg("%s: element %zu is %f (unwritten or not finite); reference %g", what, i, out[i],
               ref[i]);
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  if (den < (double)n * floor * floor) den = (double)n * floor * floor;
  const double e = den > 0 ? num / den : num;
  if (!(e <= bound)) fail_msg("%s: error %.3g over the bound %.3g", what, e, bound);
  record(what, e);
  return e;
}

static double check(const char *what, const float *out, const double *ref, size_t n, double bound) {
  return check_floor(what, out, ref, n, bound, 0);
}

/* Bounds (normalised squared error). Float arithmetic in single precision
 * lands near 1e-14 here; the bound leaves room for other summation orders
 * and fast intrinsics on a GPU while failing any real mistake (a wrong
 * element among a thousand gives about 1e-3). Matrix products with 8-bit
 * activations (what the quantized kernels take, as llama.cpp's do) land
 * near 1e-5, as ggml's test-backend-ops allows 5e-4. */
#define B_FLOAT 1e-9
#define B_QACT 5e-4

/* ---- embedding rows, selection --------------------------------------------- */

/* The weight types of the interface, in the order tested. */
static const uint32_t g_types[] = {TL_TYPE_F32,  TL_TYPE_F16,  TL_TYPE_BF16, TL_TYPE_Q8_0,
                                   TL_TYPE_Q4_0, TL_TYPE_Q4_1, TL_TYPE_Q5_0, TL_TYPE_Q5_1,
                                   TL_TYPE_Q2_K, TL_TYPE_Q3_K, TL_TYPE_Q4_K, TL_TYPE_Q5_K,
                                   TL_TYPE_Q6_K};
#define N_TYPES (sizeof g_types / sizeof g_types[0])

/* A random host weight of the type (weightutil.h: quantized random floats),
 * and its values as the type stores them (dequantized) in deq. */
static tl_weight host_weight(uint32_t type, int64_t rows, int64_t cols, void **data, double **deq) {
  const tl_type_info *ti = tl_type_get(type);
  size_t rb;
  uint8_t *buf = tl_test_random_weight(type, rows, cols, 1, &g_rng, &rb);
  float *row = malloc(sizeof(float) * (size_t)cols);
  *deq = malloc(sizeof(double) * (size_t)(rows * cols));
  assert_true(row && *deq);
  for (int64_t r = 0; r < rows; r++) {
    ti->to_float(buf + (size_t)r * rb, row, cols);
    for (int64_t c = 0; c < cols; c++) (*deq)[r * cols + c] = row[c];
  }
  free(row);
  *data = buf;
  return (tl_weight){.type = type, .rows = rows, .cols = cols, .row_bytes = rb, .data = buf};
}

static void test_embed(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  for (size_t ti = 0; ti < N_TYPES; ti++) {
    const uint32_t type = g_types[ti];
    if (!d.be->supports_type(d.be, type)) continue;
    const int64_t rows = 37, cols = 512;
    void *data;
    double *deq;
    tl_weight hw = host_weight(type, rows, cols, &data, &deq), w;
    assert_int_equal(d.be->prepare_weight(d.be, &hw, &w), TL_OK);
    const tl_token tok[] = {5, 0, 36, 5, 17};
    const int n = 5;
    const int32_t pos[] = {0, 1, 2, 3, 4}, seq[] = {0, 0, 0, 0, 0};
    float *x = dev_floats(&d, NULL, (size_t)n * cols);
    step(&d, n, tok, pos, seq, 0, NULL);
    d.be->embed(d.be, &w, x);
    step_end(&d);
    float *out = dev_read(&d, x, (size_t)n * cols);
    double *ref = malloc(sizeof(double) * (size_t)(n * cols));
    for (int t = 0; t < n; t++)
      for (int64_t c = 0; c < cols; c++) ref[t * cols + c] = deq[tok[t] * cols + c];
    char what[64];
    snprintf(what, sizeof what, "embed %s", tl_type_name(type));
    check(what, out, ref, (size_t)(n * cols), 1e-12);
    free(out);
    free(ref);
    free(deq);
    free(data);
  }
  dev_close(&d);
}

static void test_select_out(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  const int n = 9, len = 131;
  float *hx = rand_floats((size_t)n * len, 1);
  float *x = dev_floats(&d, hx, (size_t)n * len), *y = dev_floats(&d, NULL, (size_t)4 * len);
  tl_token tok[9] = {0};
  int32_t pos[9], seq[9] = {0};
  for (int i = 0; i < n; i++) pos[i] = i;
  const int32_t rows[] = {0, 3, 7, 8};
  step(&d, n, tok, pos, seq, 4, rows);
  d.be->select_out(d.be, x, y, len);
  step_end(&d);
  float *out = dev_read(&d, y, (size_t)4 * len);
  double ref[4 * 131];
  for (int i = 0; i < 4; i++)
    for (int c = 0; c < len; c++) ref[i * len + c] = hx[rows[i] * len + c];
  check("select_out", out, ref, (size_t)4 * len, 0);
  free(out);
  free(hx);
  dev_close(&d);
}

/* ---- norms ------------------------------------------------------------------- */

static void test_norm(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  const int64_t lens[] = {1, 7, 32, 257};
  const int64_t nrows[] = {1, 3, 9};
  for (int kind = 0; kind < 2; kind++)
    for (size_t li = 0; li < 4; li++)
      for (size_t ri = 0; ri < 3; ri++)
        for (int res = 0; res < 3; res++) /* no residual, a, a + b */
          for (int inplace = 0; inplace < 2; inplace++) {
            const int64_t len = lens[li], rows = nrows[ri];
            if (kind == TL_NORM_LAYER && len == 1) continue; /* variance 0 */
            const size_t n = (size_t)(rows * len);
            float *hx = rand_floats(n, 2), *ha = rand_floats(n, 1), *hb = rand_floats(n, 1);
            float *hw = rand_floats((size_t)len, 1), *hnb = rand_floats((size_t)len, 1);
            /* an epsilon that matters as well as the usual ones */
            const float eps = (li + ri) % 2 ? 0.25f : kind ? 1e-5f : 1e-6f;
            float *x = dev_floats(&d, hx, n), *a = res ? dev_floats(&d, ha, n) : NULL,
                  *b = res == 2 ? dev_floats(&d, hb, n) : NULL;
            float *y = inplace ? x : dev_floats(&d, NULL, n);
            const float *w = dev_vector(&d, hw, len), *nb = kind ? dev_vector(&d, hnb, len) : NULL;
            tl_norm_op op = {.x = x,
                             .a = a,
                             .b = b,
                             .w = w,
                             .nb = nb,
                             .y = y,
                             .rows = rows,
                             .len = len,
                             .kind = (tl_norm_kind)kind,
                             .eps = eps};
            tl_token tok = 0;
            int32_t pos = 0, seq = 0;
            step(&d, 1, &tok, &pos, &seq, 0, NULL);
            d.be->norm(d.be, &op);
            step_end(&d);
            double *rx = malloc(sizeof(double) * n), *ry = malloc(sizeof(double) * n);
            for (int64_t r = 0; r < rows; r++) {
              double *xr = rx + r * len, *yr = ry + r * len;
              for (int64_t i = 0; i < len; i++) {
                const size_t k = (size_t)(r * len + i);
                xr[i] = hx[k] + (res ? (double)ha[k] + (res == 2 ? hb[k] : 0.0) : 0.0);
              }
              double mean = 0, ss = 0;
              if (kind == TL_NORM_LAYER) {
                for (int64_t i = 0; i < len; i++) mean += xr[i];
                mean /= (double)len;
              }
              for (int64_t i = 0; i < len; i++) ss += (xr[i] - mean) * (xr[i] - mean);
              const double sc = 1.0 / sqrt(ss / (double)len + eps);
              for (int64_t i = 0; i < len; i++)
                yr[i] = (xr[i] - mean) * sc * hw[i] + (kind ? hnb[i] : 0.0);
            }
            char what[96];
            snprintf(what, sizeof what, "norm %s len %lld rows %lld residual %d%s",
                     kind ? "layer" : "rms", (long long)len, (long long)rows, res,
                     inplace ? " in place" : "");
            float *oy = dev_read(&d, y, n);
            check(what, oy, ry, n, B_FLOAT);
            if (!inplace) { /* x keeps the residual sum */
              float *ox = dev_read(&d, x, n);
              check(what, ox, rx, n, B_FLOAT);
              free(ox);
            }
            free(oy);
            free(rx);
            free(ry);
            free(hx);
            free(ha);
            free(hb);
            free(hw);
            free(hnb);
          }
  /* the residual alone, without a norm (w NULL) */
  const size_t n = 5 * 33;
  float *hx = rand_floats(n, 1), *ha = rand_floats(n, 1);
  float *x = dev_floats(&d, hx, n), *a = dev_floats(&d, ha, n);
  tl_norm_op op = {.x = x, .a = a, .rows = 5, .len = 33, .kind = TL_NORM_RMS, .eps = 1e-6f};
  tl_token tok = 0;
  int32_t pos = 0, seq = 0;
  step(&d, 1, &tok, &pos, &seq, 0, NULL);
  d.be->norm(d.be, &op);
  step_end(&d);
  double ref[5 * 33];
  for (size_t i = 0; i < n; i++) ref[i] = (double)hx[i] + ha[i];
  float *ox = dev_read(&d, x, n);
  check("residual add", ox, ref, n, B_FLOAT);
  free(ox);
  free(hx);
  free(ha);
  dev_close(&d);
}

/* ---- matrix products ----------------------------------------------------------- */

/* Every type's matmul against the float64 product of the weight's values,
 * and every batch (n > 1) against the same tokens one at a time: a batch
 * and decode must compute the same sums, in another order at most (the
 * bound B_FLOAT, whatever the activations are rounded to). With an f16 KV
 * cache a backend may multiply F16 weights by f16 activations, as
 * llama.cpp does (the CUDA backend with TL_CUDA_F16X=1): their bound is
 * then B_HACT, the error of rounding the activations to f16 (about 3e-8). */
#define B_HACT 1e-6
static void matmul_kv(tl_kv_type kv) {
  dev d;
  tl_backend_config cfg = base_config();
  cfg.kv_type = kv;
  cfg.n_batch = 128;
  dev_open(&d, &cfg);
  /* 3: a GPU's kernel for a few tokens; 17, 40, 100: its batch kernels
   * (100: two token tiles of 64) */
  const int ntoks[] = {1, 3, 17, 40, 100};
  for (size_t ti = 0; ti < N_TYPES; ti++) {
    const uint32_t type = g_types[ti];
    if (kv != TL_KV_F32 && type != TL_TYPE_F16) continue;
    if (!d.be->supports_type(d.be, type)) {
      printf("matmul: %s backend has no %s\n", g_backend, tl_type_name(type));
      continue;
    }
    const int64_t blck = tl_type_get(type)->blck;
    /* an odd number of blocks where the block is small; two super-blocks for K types */
    const int64_t colss[] = {blck >= 256 ? 512 : blck * 7, blck >= 256 ? 1280 : 2112};
    for (int ci = 0; ci < 2; ci++)
      for (int ni = 0; ni < 5; ni++)
        for (int bias = 0; bias < 2; bias++) {
          const int64_t rows = 67, cols = colss[ci], ldy = rows + 5;
          const int n = ntoks[ni];
          void *data;
          double *deq;
          tl_weight hw = host_weight(type, rows, cols, &data, &deq), w;
          assert_int_equal(d.be->prepare_weight(d.be, &hw, &w), TL_OK);
          float *hx = rand_floats((size_t)n * cols, 1), *hb = rand_floats((size_t)rows, 1);
          float *x = dev_floats(&d, hx, (size_t)n * cols);
          float *y = dev_floats(&d, NULL, (size_t)n * ldy);
          float *y1 = dev_floats(&d, NULL, (size_t)n * ldy);
          const float *b = bias ? dev_vector(&d, hb, rows) : NULL;
          tl_token tok[100] = {0};
          int32_t pos[100] = {0}, seq[100] = {0};
          step(&d, n, tok, pos, seq, 0, NULL);
          d.be->matmul(d.be, &w, b, x, n, y, ldy);
          step_end(&d);
          for (int t = 0; t < n && n > 1; t++) {
            step(&d, 1, tok, pos, seq, 0, NULL);
            d.be->matmul(d.be, &w, b, x + (size_t)t * cols, 1, y1 + (size_t)t * ldy, ldy);
            step_end(&d);
          }
          float *out = dev_read(&d, y, (size_t)n * ldy);
          float *out1 = dev_read(&d, y1, (size_t)n * ldy);
          float *got = malloc(sizeof(float) * (size_t)(n * rows));
          double *ref = malloc(sizeof(double) * (size_t)(n * rows));
          double *alone = malloc(sizeof(double) * (size_t)(n * rows));
          for (int t = 0; t < n; t++)
            for (int64_t r = 0; r < rows; r++) {
              double s = bias ? hb[r] : 0;
              for (int64_t c = 0; c < cols; c++) s += deq[r * cols + c] * hx[t * cols + c];
              ref[t * rows + r] = s;
              got[t * rows + r] = out[t * ldy + r];
              alone[t * rows + r] = out1[t * ldy + r];
            }
          /* the gap between rows must stay untouched (NaN) */
          for (int t = 0; t < n; t++)
            for (int64_t r = rows; r < ldy && t + 1 < n; r++)
              if (!isnan(out[t * ldy + r])) fail_msg("matmul wrote past its rows (ldy)");
          const bool qact = type != TL_TYPE_F32 && type != TL_TYPE_F16 && type != TL_TYPE_BF16;
          char what[128];
          snprintf(what, sizeof what, "matmul %s %lld x %lld, %d tokens%s%s", tl_type_name(type),
                   (long long)rows, (long long)cols, n, bias ? ", bias" : "",
                   kv == TL_KV_F32 ? "" : ", f16 kv");
          check(what, got, ref, (size_t)(n * rows),
                qact              ? B_QACT
                : kv == TL_KV_F32 ? B_FLOAT
                                  : B_HACT);
          if (n > 1) {
            snprintf(what, sizeof what, "matmul batch vs alone %s %lld x %lld, %d tokens%s%s",
                     tl_type_name(type), (long long)rows, (long long)cols, n, bias ? ", bias" : "",
                     kv == TL_KV_F32 ? "" : ", f16 kv");
            check(what, got, alone, (size_t)(n * rows), B_FLOAT);
          }
          free(out);
          free(out1);
          free(got);
          free(ref);
          free(alone);
          free(hx);
          free(hb);
          free(deq);
          free(data);
        }
  }
  dev_close(&d);
}

static void test_matmul(void **state) {
  matmul_kv(TL_KV_F32);
}

/* F16 weights with the default f16 KV cache */
static void test_matmul_f16_kv(void **state) {
  matmul_kv(TL_KV_F16);
}

/* ---- RoPE ---------------------------------------------------------------------- */

static void test_rope(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  for (int kind = 0; kind < 2; kind++)
    for (int partial = 0; partial < 2; partial++)
      for (int factors = 0; factors < 2; factors++) {
        const int nh = 6, nkv = 2, hd = 24, n_rot = partial ? 12 : hd, n = 5;
        const float theta = partial ? 10000.0f : 500000.0f, fscale = factors ? 0.25f : 1.0f;
        const size_t nq = (size_t)n * nh * hd, nk = (size_t)n * nkv * hd;
        float *hq = rand_floats(nq, 1), *hk = rand_floats(nk, 1);
        float *hf = rand_floats((size_t)n_rot / 2, 1);
        for (int i = 0; i < n_rot / 2; i++) hf[i] = 1.0f + 4.0f * fabsf(hf[i]);
        float *q = dev_floats(&d, hq, nq), *k = dev_floats(&d, hk, nk);
        tl_rope_op op = {.q = q,
                         .k = k,
                         .n_head = nh,
                         .n_head_kv = nkv,
                         .head_dim = hd,
                         .n_rot = n_rot,
                         .kind = (tl_rope_kind)kind,
                         .theta = theta,
                         .freq_scale = fscale,
                         .freq_factors = factors ? dev_vector(&d, hf, n_rot / 2) : NULL};
        const tl_token tok[5] = {0};
        const int32_t pos[5] = {0, 1, 57, 3, 1000}, seq[5] = {0, 0, 1, 2, 2};
        step(&d, n, tok, pos, seq, 0, NULL);
        d.be->rope(d.be, &op);
        step_end(&d);
        for (int which = 0; which < 2; which++) {
          const int heads = which ? nkv : nh;
          const float *src = which ? hk : hq;
          const size_t cnt = which ? nk : nq;
          double *ref = malloc(sizeof(double) * cnt);
          for (size_t i = 0; i < cnt; i++) ref[i] = src[i];
          for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++) {
              double *p = ref + ((size_t)t * heads + h) * hd;
              for (int i = 0; i < n_rot / 2; i++) {
                double f = pow(theta, -2.0 * i / n_rot) / (factors ? hf[i] : 1.0);
                double ang = pos[t] * (double)fscale * f;
                int i0 = kind == TL_ROPE_NORM ? 2 * i : i;
                int i1 = kind == TL_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
                double x0 = p[i0], x1 = p[i1];
                p[i0] = x0 * cos(ang) - x1 * sin(ang);
                p[i1] = x0 * sin(ang) + x1 * cos(ang);
              }
            }
          float *out = dev_read(&d, which ? k : q, cnt);
          char what[96];
          snprintf(what, sizeof what, "rope %s %s rot %d%s", kind ? "neox" : "norm",
                   which ? "k" : "q", n_rot, factors ? " factors, scaled" : "");
          check(what, out, ref, cnt, B_FLOAT);
          free(out);
          free(ref);
        }
        free(hq);
        free(hk);
        free(hf);
      }
  dev_close(&d);
}

/* ---- KV cache and attention ------------------------------------------------------ */

/* The cache as the reference sees it: each stored key and value as the
 * cache type holds it, [layer][seq][pos][kv head][head_dim]. */
typedef struct ref_kv {
  int n_layer, n_seq, n_ctx, nkv, hd;
  double *k, *v;
} ref_kv;

static double *rkv_at(const ref_kv *r, double *base, int l, int s, int p) {
  return base + ((((size_t)l * r->n_seq + s) * r->n_ctx + p) * r->nkv) * r->hd;
}

/* x as the cache type stores it. */
static void as_cached(tl_kv_type kv, const float *x, double *out, int n) {
  if (kv == TL_KV_F32) {
    for (int i = 0; i < n; i++) out[i] = x[i];
  } else if (kv == TL_KV_F16) {
    for (int i = 0; i < n; i++) out[i] = tl_f16_to_f32(tl_f32_to_f16(x[i]));
  } else {
    tl_block_q8_0 b[8];
    float f[256];
    assert_true(n % 32 == 0 && n <= 256);
    tl_quant_q8_0(x, b, n);
    tl_dequant_q8_0(b, f, n);
    for (int i = 0; i < n; i++) out[i] = f[i];
  }
}

typedef struct attn_cfg {
  int nh, nkv, hd, window;
  float softcap;
  tl_kv_type kv;
} attn_cfg;

/* Stores k, v of a step into the device and the reference. */
static void store_step(dev *d, ref_kv *r, const attn_cfg *ac, int layer, int n, const int32_t *pos,
                       const int32_t *seq, float **kd, float **vd, float **hk_out) {
  const size_t kvd = (size_t)ac->nkv * ac->hd;
  float *hk = rand_floats((size_t)n * kvd, 1), *hv = rand_floats((size_t)n * kvd, 1);
  *kd = dev_floats(d, hk, (size_t)n * kvd);
  *vd = dev_floats(d, hv, (size_t)n * kvd);
  d->be->kv_store(d->be, layer, *kd, *vd);
  for (int t = 0; t < n; t++)
    for (int h = 0; h < ac->nkv; h++) {
      as_cached(ac->kv, hk + t * kvd + (size_t)h * ac->hd,
                rkv_at(r, r->k, layer, seq[t], pos[t]) + (size_t)h * ac->hd, ac->hd);
      as_cached(ac->kv, hv + t * kvd + (size_t)h * ac->hd,
                rkv_at(r, r->v, layer, seq[t], pos[t]) + (size_t)h * ac->hd, ac->hd);
    }
  free(hv);
  if (hk_out)
    *hk_out = hk;
  else
    free(hk);
}

/* The reference attention of a step's tokens. */
static void ref_attention(const ref_kv *r, const attn_cfg *ac, int layer, float scale, int n,
                          const int32_t *pos, const int32_t *seq, const float *q, double *out) {
  const int group = ac->nh / ac->nkv, hd = ac->hd;
  double *sc = malloc(sizeof(double) * (size_t)r->n_ctx);
  for (int t = 0; t < n; t++)
    for (int h = 0; h < ac->nh; h++) {
      const float *qh = q + ((size_t)t * ac->nh + h) * hd;
      const int j0 = ac->window > 0 && pos[t] - ac->window + 1 > 0 ? pos[t] - ac->window + 1 : 0;
      double mx = -INFINITY, sum = 0;
      for (int j = j0; j <= pos[t]; j++) {
        const double *kj = rkv_at(r, r->k, layer, seq[t], j) + (size_t)(h / group) * hd;
        double s = 0;
        for (int i = 0; i < hd; i++) s += qh[i] * kj[i];
        s *= scale;
        if (ac->softcap > 0) s = ac->softcap * tanh(s / ac->softcap);
        sc[j] = s;
        if (s > mx) mx = s;
      }
      for (int j = j0; j <= pos[t]; j++) sum += (sc[j] = exp(sc[j] - mx));
      double *o = out + ((size_t)t * ac->nh + h) * hd;
      for (int i = 0; i < hd; i++) o[i] = 0;
      for (int j = j0; j <= pos[t]; j++) {
        const double *vj = rkv_at(r, r->v, layer, seq[t], j) + (size_t)(h / group) * hd;
        for (int i = 0; i < hd; i++) o[i] += sc[j] / sum * vj[i];
      }
    }
  free(sc);
}

static void run_attention_case(const attn_cfg *ac) {
  tl_backend_config cfg = base_config();
  cfg.n_head = ac->nh;
  cfg.n_head_kv = ac->nkv;
  cfg.head_dim = ac->hd;
  cfg.kv_type = ac->kv;
  cfg.n_ctx = 150;
  cfg.n_seq = 3;
  cfg.n_batch = 80;
  dev d;
  memset(&d, 0, sizeof d);
  tl_status st = tl_backend_new(g_backend, &cfg, &d.be);
  if (st == TL_ERR_UNSUPPORTED) { /* e.g. a KV cache type this backend does not keep */
    printf("attention, kv %s: skipped: %s\n", tl_kv_type_name(ac->kv), tl_last_error());
    return;
  }
  if (st) fail_msg("backend %s: %s", g_backend, tl_last_error());
  ref_kv r = {.n_layer = 2, .n_seq = 3, .n_ctx = 150, .nkv = ac->nkv, .hd = ac->hd};
  const size_t all = (size_t)2 * 3 * 150 * ac->nkv * ac->hd;
  r.k = calloc(all, sizeof(double));
  r.v = calloc(all, sizeof(double));
  const float scale = 1.0f / sqrtf((float)ac->hd) * 1.3f;
  const int layer = 1;
  /* prefill: sequence 0 with 70 positions (across a 64-position block),
   * sequence 1 with 9, in one step; layer 0 gets other values */
  enum { NP = 79 };
  tl_token tok[NP] = {0};
  int32_t pos[NP], seq[NP];
  for (int i = 0; i < 70; i++) pos[i] = i, seq[i] = 0;
  for (int i = 0; i < 9; i++) pos[70 + i] = i, seq[70 + i] = 1;
  float *kd, *vd;
  step(&d, NP, tok, pos, seq, 0, NULL);
  store_step(&d, &r, ac, 0, NP, pos, seq, &kd, &vd, NULL);
  store_step(&d, &r, ac, layer, NP, pos, seq, &kd, &vd, NULL);
  /* the prefill's own attention (causal within the step) */
  const size_t qd = (size_t)ac->nh * ac->hd;
  float *hq = rand_floats((size_t)NP * qd, 1);
  float *q = dev_floats(&d, hq, (size_t)NP * qd), *o = dev_floats(&d, NULL, (size_t)NP * qd);
  tl_attn_op op = {.layer = layer,
                   .q = q,
                   .out = o,
                   .n_head = ac->nh,
                   .n_head_kv = ac->nkv,
                   .head_dim = ac->hd,
                   .window = ac->window,
                   .scale = scale,
                   .softcap = ac->softcap};
  d.be->attention(d.be, &op);
  step_end(&d);
  double *ref = malloc(sizeof(double) * (size_t)NP * qd);
  ref_attention(&r, ac, layer, scale, NP, pos, seq, hq, ref);
  char what[128];
  snprintf(what, sizeof what, "attention %d/%d heads, hd %d, window %d, softcap %g, kv %s: prefill",
           ac->nh, ac->nkv, ac->hd, ac->window, ac->softcap, tl_kv_type_name(ac->kv));
  float *out = dev_read(&d, o, (size_t)NP * qd);
  check(what, out, ref, (size_t)NP * qd, B_FLOAT);
  free(out);
  free(hq);
  /* sequence 0's first 40 positions copied to sequence 2 */
  assert_int_equal(d.be->kv_copy(d.be, 0, 2, 0, 40), TL_OK);
  for (int l = 0; l < 2; l++)
    for (int p = 0; p < 40; p++) {
      memcpy(rkv_at(&r, r.k, l, 2, p), rkv_at(&r, r.k, l, 0, p), sizeof(double) * ac->nkv * ac->hd);
      memcpy(rkv_at(&r, r.v, l, 2, p), rkv_at(&r, r.v, l, 0, p), sizeof(double) * ac->nkv * ac->hd);
    }
  /* a step of several sequences at different positions: sequence 1 gets two
   * tokens, 0 and 2 one each */
  const int n2 = 4;
  const int32_t pos2[] = {9, 70, 10, 40}, seq2[] = {1, 0, 1, 2};
  step(&d, n2, tok, pos2, seq2, 0, NULL);
  store_step(&d, &r, ac, layer, n2, pos2, seq2, &kd, &vd, NULL);
  hq = rand_floats((size_t)n2 * qd, 1);
  q = dev_floats(&d, hq, (size_t)n2 * qd);
  o = dev_floats(&d, NULL, (size_t)n2 * qd);
  op.q = q;
  op.out = o;
  d.be->attention(d.be, &op);
  step_end(&d);
  ref_attention(&r, ac, layer, scale, n2, pos2, seq2, hq, ref);
  out = dev_read(&d, o, (size_t)n2 * qd);
  snprintf(what, sizeof what, "attention %d/%d heads, hd %d, window %d, softcap %g, kv %s: mixed",
           ac->nh, ac->nkv, ac->hd, ac->window, ac->softcap, tl_kv_type_name(ac->kv));
  check(what, out, ref, (size_t)n2 * qd, B_FLOAT);
  free(out);
  free(hq);
  free(ref);
  free(r.k);
  free(r.v);
  dev_close(&d);
}

static void test_attention(void **state) {
  const attn_cfg cases[] = {
      {4, 2, 32, 0, 0, TL_KV_F32},  {4, 2, 32, 0, 0, TL_KV_F16},   {4, 2, 32, 0, 0, TL_KV_Q8_0},
      {8, 1, 64, 0, 0, TL_KV_F16},  {6, 6, 16, 0, 0, TL_KV_F32},   {4, 2, 32, 5, 0, TL_KV_F16},
      {4, 4, 32, 0, 30, TL_KV_F32}, {4, 2, 96, 8, 50, TL_KV_F16},  {12, 4, 32, 0, 0, TL_KV_Q8_0},
      {8, 2, 128, 0, 0, TL_KV_F16}, {3, 1, 256, 0, 20, TL_KV_F32},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_attention_case(&cases[i]);
}

/* kv_io: the keys and values kv_store put in the cache, read out in the
 * interface's one layout (per layer, per kv head: the keys' rows, then the
 * values'), each row as the cache type holds it: f32, f16 (tl_f32_to_f16)
 * or Q8_0 blocks (tl_quant_q8_0), byte for byte; written into another
 * sequence and read back unchanged. */
static void test_kv_io(void **state) {
  const tl_kv_type kvs[] = {TL_KV_F32, TL_KV_F16, TL_KV_Q8_0};
  for (size_t ki = 0; ki < 3; ki++) {
    tl_backend_config cfg = base_config();
    cfg.kv_type = kvs[ki];
    cfg.head_dim = 64;
    dev d;
    memset(&d, 0, sizeof d);
    tl_status st = tl_backend_new(g_backend, &cfg, &d.be);
    if (st == TL_ERR_UNSUPPORTED) {
      printf("kv_io, kv %s: skipped: %s\n", tl_kv_type_name(kvs[ki]), tl_last_error());
      continue;
    }
    if (st) fail_msg("backend %s: %s", g_backend, tl_last_error());
    const int n = 7, p0 = 2, nkv = cfg.n_head_kv, hd = cfg.head_dim;
    const size_t kvd = (size_t)nkv * hd, rb = tl_kv_row_bytes(kvs[ki], hd);
    tl_token tok[7] = {0};
    int32_t pos[7], seq[7];
    for (int i = 0; i < n; i++) pos[i] = p0 + i, seq[i] = 1;
    float *hk[2], *hv[2];
    for (int l = 0; l < cfg.n_layer; l++) {
      hk[l] = rand_floats((size_t)n * kvd, 1);
      hv[l] = rand_floats((size_t)n * kvd, 1);
      float *k = dev_floats(&d, hk[l], (size_t)n * kvd),
            *v = dev_floats(&d, hv[l], (size_t)n * kvd);
      step(&d, n, tok, pos, seq, 0, NULL);
      d.be->kv_store(d.be, l, k, v);
      step_end(&d);
    }
    const size_t bytes = (size_t)cfg.n_layer * nkv * 2 * n * rb;
    uint8_t *want = malloc(bytes), *got = malloc(bytes), *back = malloc(bytes);
    assert_true(want && got && back);
    uint8_t *w = want;
    for (int l = 0; l < cfg.n_layer; l++)
      for (int h = 0; h < nkv; h++)
        for (int which = 0; which < 2; which++)
          for (int t = 0; t < n; t++, w += rb) {
            const float *x = (which ? hv[l] : hk[l]) + t * kvd + (size_t)h * hd;
            if (kvs[ki] == TL_KV_F32) {
              memcpy(w, x, rb);
            } else if (kvs[ki] == TL_KV_F16) {
              for (int i = 0; i < hd; i++) {
                const uint16_t hb = tl_f32_to_f16(x[i]);
                memcpy(w + 2 * i, &hb, 2);
              }
            } else {
              tl_quant_q8_0(x, w, hd);
            }
          }
    assert_int_equal(d.be->kv_io(d.be, 1, p0, p0 + n, got, false), TL_OK);
    if (memcmp(got, want, bytes))
      fail_msg("kv_io, kv %s: the cache's rows differ from the stored values",
               tl_kv_type_name(kvs[ki]));
    assert_int_equal(d.be->kv_io(d.be, 2, 10, 10 + n, want, true), TL_OK);
    assert_int_equal(d.be->kv_io(d.be, 2, 10, 10 + n, back, false), TL_OK);
    if (memcmp(back, want, bytes))
      fail_msg("kv_io, kv %s: written rows read back differently", tl_kv_type_name(kvs[ki]));
    for (int l = 0; l < cfg.n_layer; l++) {
      free(hk[l]);
      free(hv[l]);
    }
    free(want);
    free(got);
    free(back);
    dev_close(&d);
  }
}

/* ---- activations, scale, soft-cap ----------------------------------------------- */

static double act_ref(tl_act_kind k, double x) {
  switch (k) {
    case TL_ACT_SILU:
      return x / (1 + exp(-x));
    case TL_ACT_GELU_TANH:
      return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case TL_ACT_GELU:
      return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  }
  return NAN;
}

static void test_act(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  const int64_t sizes[] = {1, 37, 40001}; /* the last wakes the CPU's threads */
  for (int k = 0; k < 3; k++)
    for (int gated = 0; gated < 2; gated++)
      for (int si = 0; si < 3; si++) {
        const int64_t n = sizes[si];
        float *ha = rand_floats((size_t)n, 6), *hb = rand_floats((size_t)n, 2);
        float *a = dev_floats(&d, ha, (size_t)n), *b = dev_floats(&d, hb, (size_t)n);
        tl_token tok = 0;
        int32_t pos = 0, seq = 0;
        step(&d, 1, &tok, &pos, &seq, 0, NULL);
        d.be->act(d.be, (tl_act_kind)k, gated, a, b, n);
        step_end(&d);
        double *ref = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
          ref[i] = gated ? act_ref((tl_act_kind)k, ha[i]) * hb[i] : act_ref((tl_act_kind)k, hb[i]);
        float *out = dev_read(&d, a, (size_t)n);
        char what[64];
        snprintf(what, sizeof what, "act %d%s n %lld", k, gated ? " gated" : "", (long long)n);
        /* the activations of inputs near -6 are differences of nearly equal
         * floats (1 + tanh): judged against values of the inputs' size */
        check_floor(what, out, ref, (size_t)n, B_FLOAT, 1.0);
        free(out);
        free(ref);
        free(ha);
        free(hb);
      }
  dev_close(&d);
}

static void test_scale_softcap(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  dev_open(&d, &cfg);
  const int64_t n = 1001;
  float *hx = rand_floats((size_t)n, 80);
  float *x = dev_floats(&d, hx, (size_t)n), *y = dev_floats(&d, hx, (size_t)n);
  tl_token tok = 0;
  int32_t pos = 0, seq = 0;
  step(&d, 1, &tok, &pos, &seq, 0, NULL);
  d.be->scale(d.be, x, 1.7f, n);
  d.be->softcap(d.be, y, 30.0f, n);
  step_end(&d);
  double *ref = malloc(sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++) ref[i] = hx[i] * (double)1.7f;
  float *out = dev_read(&d, x, (size_t)n);
  check("scale", out, ref, (size_t)n, B_FLOAT);
  free(out);
  for (int64_t i = 0; i < n; i++) ref[i] = 30.0 * tanh(hx[i] / 30.0);
  out = dev_read(&d, y, (size_t)n);
  check("softcap", out, ref, (size_t)n, B_FLOAT);
  free(out);
  free(ref);
  free(hx);
  dev_close(&d);
}

/* ---- mixture of experts ------------------------------------------------------- */

/* The router (moe_route: softmax, top-k, renormalized or not) on random
 * logits, then the experts' products (matmul_id) on its choice: one output
 * per slot from a shared input, and the weighted sum from per-slot inputs,
 * against the double reference; a batch against the same tokens one at a
 * time (bit for bit up to B_FLOAT). */
static void test_moe(void **state) {
  dev d;
  tl_backend_config cfg = base_config();
  cfg.n_batch = 64;
  dev_open(&d, &cfg);
  if (!d.be->moe_route || !d.be->matmul_id) {
    printf("moe: %s backend has no mixture of experts\n", g_backend);
    dev_close(&d);
    return;
  }
  const int ntoks[] = {1, 3, 17, 40};
  const int n_expert = 6, rows = 40;
  for (size_t ti = 0; ti < N_TYPES; ti++) {
    const uint32_t type = g_types[ti];
    if (!d.be->supports_type(d.be, type)) continue;
    const int64_t blck = tl_type_get(type)->blck;
    const int64_t cols = blck >= 256 ? 512 : blck * 7;
    void *data;
    double *deq;
    tl_weight hw = host_weight(type, (int64_t)n_expert * rows, cols, &data, &deq), w;
    assert_int_equal(d.be->prepare_weight(d.be, &hw, &w), TL_OK);
    for (int ni = 0; ni < 4; ni++) {
      const int n = ntoks[ni], k = 1 + (ni + (int)ti) % 3;
      const bool norm = (ni + ti) % 2 == 0;
      float *hl = rand_floats((size_t)n * n_expert, 3);
      float *hx = rand_floats((size_t)n * k * cols, 1);
      float *logits = dev_floats(&d, hl, (size_t)n * n_expert);
      float *wts = dev_floats(&d, NULL, (size_t)n * k);
      int32_t *ids = (int32_t *)dev_floats(&d, NULL, (size_t)n * k);
      float *x = dev_floats(&d, hx, (size_t)n * k * cols);
      float *y = dev_floats(&d, NULL, (size_t)n * k * rows);
      float *ysum = dev_floats(&d, NULL, (size_t)n * rows);
      float *y1 = dev_floats(&d, NULL, (size_t)n * k * rows);
      float *ysum1 = dev_floats(&d, NULL, (size_t)n * rows);
      tl_token tok[64] = {0};
      int32_t pos[64] = {0}, seq[64] = {0};
      step(&d, n, tok, pos, seq, 0, NULL);
      tl_moe_route_op r = {.logits = logits,
                           .ids = ids,
                           .weights = wts,
                           .n = n,
                           .n_expert = n_expert,
                           .k = k,
                           .norm = norm};
      d.be->moe_route(d.be, &r);
      tl_matmul_id_op op = {
          .w = &w, .n_expert = n_expert, .x = x, .ids = ids, .n = n, .k = k, .y = y};
      d.be->matmul_id(d.be, &op);
      op.x_per_slot = true;
      op.weights = wts;
      op.y = ysum;
      d.be->matmul_id(d.be, &op);
      step_end(&d);
      for (int t = 0; t < n && n > 1; t++) { /* one token at a time */
        step(&d, 1, tok, pos, seq, 0, NULL);
        tl_matmul_id_op o1 = {.w = &w,
                              .n_expert = n_expert,
                              .x = x + (size_t)t * cols,
                              .ids = ids + t * k,
                              .n = 1,
                              .k = k,
                              .y = y1 + (size_t)t * k * rows};
        d.be->matmul_id(d.be, &o1);
        o1.x = x + (size_t)t * k * cols;
        o1.x_per_slot = true;
        o1.weights = wts + t * k;
        o1.y = ysum1 + (size_t)t * rows;
        d.be->matmul_id(d.be, &o1);
        step_end(&d);
      }
      float *got_w = dev_read(&d, wts, (size_t)n * k);
      float *got_ids = dev_read(&d, (const float *)ids, (size_t)n * k);
      float *got_y = dev_read(&d, y, (size_t)n * k * rows);
      float *got_sum = dev_read(&d, ysum, (size_t)n * rows);
      double *ref_w = malloc(sizeof(double) * (size_t)(n * k));
      double *ref_y = malloc(sizeof(double) * (size_t)(n * k * rows));
      double *ref_sum = malloc(sizeof(double) * (size_t)(n * rows));
      assert_true(ref_w && ref_y && ref_sum);
      int32_t *rid = malloc(sizeof(int32_t) * (size_t)(n * k));
      for (int t = 0; t < n; t++) {
        /* reference route: softmax in double, the k largest by repeated scans */
        const float *l = hl + t * n_expert;
        double mx = -INFINITY, sum = 0, chosen = 0;
        for (int e = 0; e < n_expert; e++) mx = l[e] > mx ? l[e] : mx;
        for (int e = 0; e < n_expert; e++) sum += exp(l[e] - mx);
        for (int j = 0; j < k; j++) {
          int best = -1;
          for (int e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= rid[t * k + i] == e;
            if (!taken && (best < 0 || l[e] > l[best])) best = e;
          }
          rid[t * k + j] = best;
          ref_w[t * k + j] = exp(l[best] - mx) / sum;
          chosen += ref_w[t * k + j];
        }
        for (int j = 0; j < k && norm; j++) ref_w[t * k + j] /= chosen;
        for (int j = 0; j < k; j++) {
          int32_t gid;
          memcpy(&gid, &got_ids[t * k + j], sizeof gid);
          if (gid != rid[t * k + j])
            fail_msg("moe_route: token %d slot %d chose expert %d, the reference %d", t, j, gid,
                     rid[t * k + j]);
        }
        for (int64_t rr = 0; rr < rows; rr++) ref_sum[t * rows + rr] = 0;
        for (int j = 0; j < k; j++) {
          const double *we = deq + (size_t)rid[t * k + j] * rows * cols;
          for (int64_t rr = 0; rr < rows; rr++) {
            double a = 0, b = 0;
            for (int64_t c = 0; c < cols; c++) {
              a += we[rr * cols + c] * hx[(size_t)t * cols + c];
              b += we[rr * cols + c] * hx[((size_t)t * k + j) * cols + c];
            }
            ref_y[((size_t)t * k + j) * rows + rr] = a;
            ref_sum[t * rows + rr] += ref_w[t * k + j] * b;
          }
        }
      }
      const bool qact = type != TL_TYPE_F32 && type != TL_TYPE_F16 && type != TL_TYPE_BF16;
      char what[128];
      snprintf(what, sizeof what, "moe_route %d of %d experts, %d tokens%s", k, n_expert, n,
               norm ? ", renormalized" : "");
      check(what, got_w, ref_w, (size_t)(n * k), B_FLOAT);
      snprintf(what, sizeof what, "matmul_id %s %d x %lld, %d tokens, %d of %d", tl_type_name(type),
               rows, (long long)cols, n, k, n_expert);
      check(what, got_y, ref_y, (size_t)(n * k * rows), qact ? B_QACT : B_FLOAT);
      snprintf(what, sizeof what, "matmul_id_sum %s %d x %lld, %d tokens, %d of %d",
               tl_type_name(type), rows, (long long)cols, n, k, n_expert);
      check(what, got_sum, ref_sum, (size_t)(n * rows), qact ? B_QACT : B_FLOAT);
      if (n > 1) {
        float *a_y = dev_read(&d, y1, (size_t)n * k * rows);
        float *a_sum = dev_read(&d, ysum1, (size_t)n * rows);
        double *da = malloc(sizeof(double) * (size_t)(n * k * rows));
        assert_non_null(da);
        for (size_t i = 0; i < (size_t)(n * k * rows); i++) da[i] = a_y[i];
        snprintf(what, sizeof what, "matmul_id batch vs alone %s, %d tokens", tl_type_name(type),
                 n);
        check(what, got_y, da, (size_t)(n * k * rows), B_FLOAT);
        for (size_t i = 0; i < (size_t)(n * rows); i++) da[i] = a_sum[i];
        check(what, got_sum, da, (size_t)(n * rows), B_FLOAT);
        free(da);
        free(a_y);
        free(a_sum);
      }
      free(rid);
      free(got_w);
      free(got_ids);
      free(got_y);
      free(got_sum);
      free(ref_w);
      free(ref_y);
      free(ref_sum);
      free(hl);
      free(hx);
    }
    free(deq);
    free(data);
  }
  dev_close(&d);
}

static void test_errors(void **state) {
  /* an unknown backend is a status with a message, never a crash */
  tl_backend_config cfg = base_config();
  tl_backend *be = NULL;
  assert_int_equal(tl_backend_new("no-such-backend", &cfg, &be), TL_ERR_UNSUPPORTED);
  assert_null(be);
  assert_non_null(strstr(tl_last_error(), "no-such-backend"));
}

int main(int argc, char **argv) {
  g_rng = (uint64_t)time(NULL) * 2654435761u + 1;
  const char *only_set = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--backend") && i + 1 < argc)
      g_backend = argv[++i];
    else if (!strcmp(argv[i], "--kernels") && i + 1 < argc)
      only_set = argv[++i];
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      g_rng = strtoull(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: test_backend_ops [--backend NAME] [--kernels SET] [--seed N]\n");
      return 2;
    }
  }
  if (!g_rng) g_rng = 1;
  const uint64_t seed = g_rng;
  tl_backend_config cfg = base_config();
  tl_backend *probe = NULL;
  if (tl_backend_new(g_backend, &cfg, &probe) != TL_OK) {
    printf("SKIPPED: %s\n", tl_last_error());
    return 0;
  }
  tl_backend_free(probe);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors),        cmocka_unit_test(test_embed),
      cmocka_unit_test(test_select_out),    cmocka_unit_test(test_norm),
      cmocka_unit_test(test_matmul),        cmocka_unit_test(test_matmul_f16_kv),
      cmocka_unit_test(test_rope),          cmocka_unit_test(test_attention),
      cmocka_unit_test(test_kv_io),         cmocka_unit_test(test_act),
      cmocka_unit_test(test_scale_softcap), cmocka_unit_test(test_moe),
  };
  /* the CPU: every kernel set (or the one named) */
  const tl_cpu_kernels *sets[16];
  int n_sets = 1;
  if (!strcmp(g_backend, "cpu")) n_sets = tl_cpu_kernel_sets(sets, 16);
  int failed = 0;
  for (int i = 0; i < n_sets; i++) {
    if (!strcmp(g_backend, "cpu")) {
      if (only_set && strcmp(only_set, sets[i]->name)) continue;
      g_kernels = sets[i]->name;
    }
    printf("backend %s%s%s, seed %llu\n", g_backend, g_kernels ? ", kernels " : "",
           g_kernels ? g_kernels : "", (unsigned long long)seed);
    g_rng = seed;
    memset(g_worst, 0, sizeof g_worst);
    failed |= cmocka_run_group_tests_name(g_kernels ? g_kernels : g_backend, tests, NULL, NULL);
    for (int w = 0; w < 16 && g_worst[w].n; w++)
      printf("  %-12s %4d checks, worst error %.2g\n", g_worst[w].op, g_worst[w].n,
             g_worst[w].worst);
  }
  return failed;
}
