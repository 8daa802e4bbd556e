/* The quantizer: byte identity with llama.cpp's llama-quantize on the llama
 * fixtures (whole files and per tensor), K-quant error against llama.cpp's
 * on the same tensors, the per-tensor type choice of the mixes, error bounds
 * on random data for every type, round trips through the loader and the
 * decoder, the GGUF writer, and synthetic models. */
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/quantize_model.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "quant/quant.h"
#include "testutil.h"

#define DEMO TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf"

static char *tname(const tl_gguf_tensor *t) {
  return tl_strndup(t->name.ptr, (size_t)t->name.len);
}

static int64_t nrows(const tl_gguf_tensor *t) {
  return t->ne[1] * t->ne[2] * t->ne[3];
}

/* Quantize a float32 tensor to type (a malloc'd buffer of the type's bytes). */
static uint8_t *quantize_tensor(const tl_gguf_tensor *t, uint32_t type, uint64_t *nbytes) {
  const tl_type_info *ti = tl_type_get(type);
  assert_non_null(ti);
  assert_non_null(ti->from_float);
  assert_int_equal(t->type, TL_TYPE_F32);
  uint64_t rb;
  assert_true(tl_type_row_size(type, t->ne[0], &rb));
  *nbytes = rb * (uint64_t)nrows(t);
  uint8_t *q = malloc((size_t)*nbytes);
  assert_non_null(q);
  const float *x = t->data;
  for (int64_t r = 0; r < nrows(t); r++) ti->from_float(x + r * t->ne[0], q + r * rb, t->ne[0]);
  return q;
}

static float *dequantize(const void *q, uint32_t type, int64_t n) {
  float *y = malloc((size_t)n * sizeof(float));
  assert_non_null(y);
  tl_type_get(type)->to_float(q, y, n);
  return y;
}

/* Our mix's type for every tensor of f32, checked against the types in
 * llama.cpp's file ref. Returns the number of tensors compared. */
/* in quantized to out as ftype on 2 threads; fails the test on an error. */
static void quantize_file(const char *in, const char *out, tl_ftype ftype) {
  tl_quantize_params qp = tl_quantize_default_params();
  qp.ftype = ftype;
  qp.n_threads = 2;
  if (tl_model_quantize(in, out, &qp) != TL_OK)
    fail_msg("%s as %s: %s", in, tl_ftype_name(ftype), tl_last_error());
}

static int check_types(const tl_gguf *f32, const tl_gguf *ref, tl_ftype ftype) {
  uint64_t n = f32->n_tensors;
  char **names = calloc((size_t)n, sizeof *names);
  int64_t(*ne)[4] = calloc((size_t)n, sizeof *ne);
  uint32_t *st = calloc((size_t)n, 4), *dt = calloc((size_t)n, 4);
  assert_true(names && ne && st && dt);
  for (uint64_t i = 0; i < n; i++) {
    names[i] = tname(&f32->tensors[i]);
    memcpy(ne[i], f32->tensors[i].ne, sizeof ne[i]);
    st[i] = f32->tensors[i].type;
  }
  /* counting order: llama.cpp's (layer, then name) */
  for (uint64_t i = 1; i < n; i++)
    for (uint64_t j = i; j > 0 && tl_quant_name_cmp(names[j], names[j - 1]) < 0; j--) {
      char *tn = names[j];
      names[j] = names[j - 1];
      names[j - 1] = tn;
      int64_t te[4];
      memcpy(te, ne[j], sizeof te);
      memcpy(ne[j], ne[j - 1], sizeof te);
      memcpy(ne[j - 1], te, sizeof te);
    }
  assert_int_equal(
      tl_quant_choose_types("llama", ftype, false, 2, 4, 2, n, (const char *const *)names,
                            (const int64_t(*)[4])ne, st, dt),
      TL_OK);
  for (uint64_t i = 0; i < n; i++) {
    const tl_gguf_tensor *rt = tl_gguf_find_tensor(ref, names[i]);
    assert_non_null(rt);
    if (rt->type != dt[i])
      fail_msg("%s: %s: llama.cpp chose %s, we chose %s", tl_ftype_name(ftype), names[i],
               tl_type_name(rt->type), tl_type_name(dt[i]));
    free(names[i]);
  }
  free(names);
  free(ne);
  free(st);
  free(dt);
  return (int)n;
}

/* ---- 1. Q8_0 / Q4_0: byte identity ---------------------------------------- */

static void test_fixture_bytes(void **state) {
  (void)state;
  char *f32p = tl_test_fixture_or_skip("llama/model-f32.gguf");
  if (!f32p) return;
  tl_gguf *f32 = NULL;
  assert_int_equal(tl_gguf_open(f32p, &f32), TL_OK);
  const struct {
    const char *file;
    tl_ftype ftype;
    uint32_t type;
  } cases[] = {{"llama/model-q8_0.gguf", TL_FTYPE_Q8_0, TL_TYPE_Q8_0},
               {"llama/model-q4_0.gguf", TL_FTYPE_Q4_0, TL_TYPE_Q4_0},
               {"llama/model-q4_k_m.gguf", TL_FTYPE_Q4_K_M, TL_TYPE_Q4_K},
               {"llama/model-q6_k.gguf", TL_FTYPE_Q6_K, TL_TYPE_Q6_K},
               /* made without an importance matrix (the other IQ fixtures had one) */
               {"llama/model-iq4_nl-plain.gguf", TL_FTYPE_IQ4_NL, TL_TYPE_IQ4_NL},
               {"llama/model-iq4_xs-plain.gguf", TL_FTYPE_IQ4_XS, TL_TYPE_IQ4_XS}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char *rp = tl_test_fixture_or_skip(cases[c].file);
    if (!rp) continue;
    tl_gguf *ref = NULL;
    assert_int_equal(tl_gguf_open(rp, &ref), TL_OK);
    int n_types = check_types(f32, ref, cases[c].ftype);
    /* per tensor: every quantized tensor of llama.cpp's file, in its type */
    int same = 0, total = 0;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
      const tl_gguf_tensor *rt = &ref->tensors[i];
      if (rt->type == TL_TYPE_F32) continue;
      char *nm = tname(rt);
      const tl_gguf_tensor *ft = tl_gguf_find_tensor(f32, nm);
      assert_non_null(ft);
      uint64_t nb;
      uint8_t *q = quantize_tensor(ft, rt->type, &nb);
      assert_int_equal(nb, rt->nbytes);
      total++;
      if (memcmp(q, rt->data, (size_t)nb) == 0) {
        same++;
        bytes += nb;
      } else {
        uint64_t k = 0;
        while (q[k] == ((const uint8_t *)rt->data)[k]) k++;
        print_message("  %s %s: first differing byte at %llu\n", nm, tl_type_name(rt->type),
                      (unsigned long long)k);
      }
      free(q);
      free(nm);
    }
    print_message(
        "%-24s types of %d tensors as llama.cpp; %d/%d quantized tensors "
        "byte-identical (%llu bytes)\n",
        cases[c].file, n_types, same, total, (unsigned long long)bytes);
    assert_int_equal(same, total);
    /* the whole file, through the public API */
    char *out = tl_test_tmpfile(".gguf");
    quantize_file(f32p, out, cases[c].ftype);
    size_t on = 0, rn = 0;
    char *ob = tl_test_read_file(out, &on), *rb = tl_test_read_file(rp, &rn);
    assert_non_null(ob);
    assert_non_null(rb);
    print_message("%-24s whole file %s (%zu bytes)\n", cases[c].file,
                  on == rn && memcmp(ob, rb, on) == 0 ? "byte-identical" : "DIFFERS", on);
    if (cases[c].type == TL_TYPE_Q8_0 || cases[c].type == TL_TYPE_Q4_0 ||
        cases[c].type == TL_TYPE_IQ4_NL || cases[c].type == TL_TYPE_IQ4_XS) {
      assert_int_equal(on, rn);
      assert_memory_equal(ob, rb, on);
    }
    free(ob);
    free(rb);
    unlink(out);
    free(out);
    tl_gguf_free(ref);
    free(rp);
  }
  tl_gguf_free(f32);
  free(f32p);
}

/* ---- 2. K-quants: error no worse than 1.05 x llama.cpp's ------------------- */

static void test_fixture_kquant_error(void **state) {
  (void)state;
  char *f32p = tl_test_fixture_or_skip("llama/model-f32.gguf");
  if (!f32p) return;
  tl_gguf *f32 = NULL;
  assert_int_equal(tl_gguf_open(f32p, &f32), TL_OK);
  const char *files[] = {"llama/model-q4_k_m.gguf", "llama/model-q6_k.gguf"};
  for (size_t f = 0; f < 2; f++) {
    char *rp = tl_test_fixture_or_skip(files[f]);
    if (!rp) continue;
    tl_gguf *ref = NULL;
    assert_int_equal(tl_gguf_open(rp, &ref), TL_OK);
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
      const tl_gguf_tensor *rt = &ref->tensors[i];
      if (rt->type == TL_TYPE_F32) continue;
      char *nm = tname(rt);
      const tl_gguf_tensor *ft = tl_gguf_find_tensor(f32, nm);
      assert_non_null(ft);
      int64_t n = ft->ne[0] * nrows(ft);
      uint64_t nb;
      uint8_t *q = quantize_tensor(ft, rt->type, &nb);
      float *ours = dequantize(q, rt->type, n), *theirs = dequantize(rt->data, rt->type, n);
      double eo = tl_test_rel_err(ours, ft->data, (size_t)n);
      double et = tl_test_rel_err(theirs, ft->data, (size_t)n);
      print_message("%-24s %-26s %-5s rel RMSE ours %.6f llama.cpp %.6f (ratio %.4f)\n", files[f],
                    nm, tl_type_name(rt->type), eo, et, eo / et);
      assert_true(eo <= 1.05 * et);
      free(q);
      free(ours);
      free(theirs);
      free(nm);
    }
    tl_gguf_free(ref);
    free(rp);
  }
  tl_gguf_free(f32);
  free(f32p);
}

/* ---- 3. random data: every type's error is bounded ------------------------ */

static uint64_t g_rng = 0x853c49e6748fea9bull;
static double urand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}
static float nrand(void) { /* Box-Muller */
  double u = urand(), v = urand();
  if (u < 1e-300) u = 1e-300;
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void test_random_error_bounds(void **state) {
  (void)state;
  /* Bounds: a uniform quantizer with 2^b levels over the block's range has
   * relative RMS error about range / (2^b * sqrt(12) * sigma); for Gaussian
   * blocks of 32 (range ~ 4.3 sigma) that is ~0.077 at 4 bits, and the
   * bounds below leave ~30% headroom over the measured values (printed). */
  const struct {
    uint32_t type;
    double bound;
  } cases[] = {{TL_TYPE_Q8_0, 0.01}, {TL_TYPE_Q4_0, 0.12},  {TL_TYPE_Q4_1, 0.11},
               {TL_TYPE_Q5_0, 0.06}, {TL_TYPE_Q5_1, 0.055}, {TL_TYPE_Q2_K, 0.42},
               {TL_TYPE_Q3_K, 0.22}, {TL_TYPE_Q4_K, 0.11},  {TL_TYPE_Q5_K, 0.055},
               {TL_TYPE_Q6_K, 0.03}, {TL_TYPE_F16, 0.001},  {TL_TYPE_BF16, 0.005}};
  const int64_t shapes[][2] = {{768, 3}, {4096, 2}, {256, 9}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const tl_type_info *ti = tl_type_get(cases[c].type);
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      int64_t cols = shapes[s][0], rows = shapes[s][1], n = cols * rows;
      float *x = malloc((size_t)n * sizeof(float));
      for (int64_t i = 0; i < n; i++)
        x[i] = nrand() * (s == 2 ? 3.0f : 0.02f) + (s == 1 ? 0.01f : 0);
      uint64_t rb;
      assert_true(tl_type_row_size(cases[c].type, cols, &rb));
      uint8_t *q = calloc((size_t)(rb * (uint64_t)rows), 1);
      for (int64_t r = 0; r < rows; r++) ti->from_float(x + r * cols, q + r * rb, cols);
      float *y = malloc((size_t)n * sizeof(float));
      for (int64_t r = 0; r < rows; r++) ti->to_float(q + r * rb, y + r * cols, cols);
      double e = tl_test_rel_err(y, x, (size_t)n);
      if (e > worst) worst = e;
      free(x);
      free(q);
      free(y);
    }
    /* zeros quantize to zeros, and the quantizers do not divide by zero */
    float z[256] = {0}, back[256];
    uint8_t zq[512];
    ti->from_float(z, zq, 256);
    ti->to_float(zq, back, 256);
    for (int i = 0; i < 256; i++) assert_true(back[i] == 0.0f);
    print_message("%-5s random rel RMSE %.5f (bound %.3f)\n", ti->name, worst, cases[c].bound);
    assert_true(worst < cases[c].bound);
  }
}

/* ---- 4. round trips through the loader and the decoder -------------------- */

static void eval_finite(const char *path) {
  tl_model *m = NULL;
  if (tl_model_load(path, NULL, &m) != TL_OK) fail_msg("%s: %s", path, tl_last_error());
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 16;
  cp.n_threads = 2;
  tl_context *c = NULL;
  assert_int_equal(tl_context_new(m, &cp, &c), TL_OK);
  tl_token toks[4] = {1, 100, 200, 300};
  int32_t pos[4] = {0, 1, 2, 3};
  int8_t want[4] = {1, 1, 1, 1};
  tl_batch b = {.n_tokens = 4, .tokens = toks, .pos = pos, .logits = want};
  assert_int_equal(tl_decode(c, &b), TL_OK);
  int32_t nv = tl_model_n_vocab(m);
  for (int i = 0; i < 4; i++) {
    const float *lg = tl_get_logits(c, i);
    for (int32_t v = 0; v < nv; v++) assert_true(isfinite(lg[v]));
  }
  tl_context_free(c);
  tl_model_free(m);
}

static void test_round_trip_all_types(void **state) {
  (void)state;
  char *src = tl_test_fixture("llama/model-f32.gguf");
  if (!src) src = tl_test_fixture_or_skip("llama/model-f16.gguf");
  if (!src) return;
  /* the CLI, Q8_0 */
  char *out = tl_test_tmpfile(".gguf");
  char args[2048];
  snprintf(args, sizeof args, "quantize '%s' '%s' q8_0 -t 2", src, out);
  char *err = NULL;
  assert_int_equal(tl_test_run_cli(args, NULL, &err), 0);
  assert_non_null(strstr(err, "blk.1.ffn_up.weight"));
  assert_non_null(strstr(err, "-> Q8_0"));
  free(err);
  eval_finite(out);
  snprintf(args, sizeof args, "quantize '%s' '%s' q4_k --mix q4_k_m -t 2", src, out);
  assert_int_equal(tl_test_run_cli(args, NULL, NULL), 0);
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_open(out, &g), TL_OK);
  uint32_t ft = 0;
  assert_true(tl_gguf_get_u32(g, "general.file_type", &ft));
  assert_int_equal(ft, TL_FTYPE_Q4_K_M);
  tl_gguf_free(g);
  snprintf(args, sizeof args, "quantize '%s' '%s' q8_0 --mix q4_k_m", src, out);
  assert_int_equal(tl_test_run_cli(args, NULL, NULL), 1);
  /* every file type through the library */
  const tl_ftype all[] = {TL_FTYPE_F32,    TL_FTYPE_F16,    TL_FTYPE_BF16,   TL_FTYPE_Q8_0,
                          TL_FTYPE_Q4_0,   TL_FTYPE_Q4_1,   TL_FTYPE_Q5_0,   TL_FTYPE_Q5_1,
                          TL_FTYPE_Q2_K,   TL_FTYPE_Q3_K_S, TL_FTYPE_Q3_K_M, TL_FTYPE_Q3_K_L,
                          TL_FTYPE_Q4_K_S, TL_FTYPE_Q4_K_M, TL_FTYPE_Q5_K_S, TL_FTYPE_Q5_K_M,
                          TL_FTYPE_Q6_K};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    tl_ftype back;
    assert_int_equal(tl_ftype_from_name(tl_ftype_name(all[i]), &back), TL_OK);
    assert_int_equal(back, all[i]);
    quantize_file(src, out, all[i]);
    eval_finite(out);
  }
  unlink(out);
  free(out);
  free(src);
}

/* A Hugging Face folder (the llama fixture's safetensors) quantizes to the
 * same tensors as llama.cpp's convert + quantize: Q/K rows permuted back to
 * the converter's order, every tensor byte-identical. */
static void test_hf_folder(void **state) {
  (void)state;
  char *cfg = tl_test_fixture_or_skip("llama/config.json");
  if (!cfg) return;
  *strrchr(cfg, '/') = 0;
  const struct {
    const char *file;
    tl_ftype ftype;
  } cases[] = {{"llama/model-q8_0.gguf", TL_FTYPE_Q8_0},
               {"llama/model-q4_k_m.gguf", TL_FTYPE_Q4_K_M},
               {"llama/model-q4_0.gguf", TL_FTYPE_Q4_0},
               {"llama/model-q6_k.gguf", TL_FTYPE_Q6_K}};
  char *out = tl_test_tmpfile(".gguf");
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char *rp = tl_test_fixture_or_skip(cases[c].file);
    if (!rp) continue;
    quantize_file(cfg, out, cases[c].ftype);
    tl_gguf *ours = NULL, *ref = NULL;
    assert_int_equal(tl_gguf_open(out, &ours), TL_OK);
    assert_int_equal(tl_gguf_open(rp, &ref), TL_OK);
    assert_null(tl_gguf_get(ours, "torchless.rope.type"));
    assert_int_equal(ours->n_tensors, ref->n_tensors);
    int same = 0;
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
      const tl_gguf_tensor *rt = &ref->tensors[i];
      char *nm = tname(rt);
      const tl_gguf_tensor *ot = tl_gguf_find_tensor(ours, nm);
      assert_non_null(ot);
      if (ot->type != rt->type || memcmp(ot->data, rt->data, (size_t)rt->nbytes) != 0)
        fail_msg("%s: %s differs from llama.cpp's", cases[c].file, nm);
      same++;
      free(nm);
    }
    print_message("HF folder -> %-24s %d/%d tensors byte-identical\n", cases[c].file, same,
                  (int)ref->n_tensors);
    tl_gguf_free(ours);
    tl_gguf_free(ref);
    free(rp);
  }
  eval_finite(out);
  unlink(out);
  free(out);
  free(cfg);
}

/* Logits of 12 tokens from the model at path (n_vocab of them each, in out). */
static float *logits_12(const char *path, int32_t *nv) {
  tl_model *m = NULL;
  if (tl_model_load(path, NULL, &m) != TL_OK) fail_msg("%s: %s", path, tl_last_error());
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 16;
  cp.n_threads = 2;
  tl_context *c = NULL;
  assert_int_equal(tl_context_new(m, &cp, &c), TL_OK);
  tl_token toks[12];
  int32_t pos[12];
  int8_t want[12];
  for (int i = 0; i < 12; i++) toks[i] = 1 + 37 * i, pos[i] = i, want[i] = 1;
  tl_batch b = {.n_tokens = 12, .tokens = toks, .pos = pos, .logits = want};
  assert_int_equal(tl_decode(c, &b), TL_OK);
  *nv = tl_model_n_vocab(m);
  float *out = malloc((size_t)12 * (size_t)*nv * sizeof *out);
  assert_non_null(out);
  for (int i = 0; i < 12; i++)
    memcpy(out + (size_t)i * (size_t)*nv, tl_get_logits(c, i), (size_t)*nv * sizeof *out);
  tl_context_free(c);
  tl_model_free(m);
  return out;
}

/* YaRN / LongRoPE folders (shared fixtures) convert to f32 GGUF files whose
 * logits are the folder's: YaRN's llama.cpp metadata, LongRoPE's frequency
 * divisors (rope_freqs.weight) and query scale survive the conversion. */
static void test_hf_rope_scaled(void **state) {
  (void)state;
  const char *dirs[] = {"qwen2yarn/config.json", "phi3long/config.json"};
  for (size_t d = 0; d < 2; d++) {
    char *cfg = tl_test_fixture_or_skip(dirs[d]);
    if (!cfg) continue;
    *strrchr(cfg, '/') = 0;
    char *out = tl_test_tmpfile(".gguf");
    quantize_file(cfg, out, TL_FTYPE_F32);
    tl_gguf *g = NULL;
    assert_int_equal(tl_gguf_open(out, &g), TL_OK);
    if (d == 0) {
      const char *tk = "qwen2.rope.scaling.type";
      assert_non_null(tl_gguf_get(g, tk));
    } else {
      assert_non_null(tl_gguf_find_tensor(g, "rope_factors_long.weight"));
    }
    tl_gguf_free(g);
    int32_t nv, nv2;
    float *a = logits_12(cfg, &nv), *b = logits_12(out, &nv2);
    assert_int_equal(nv, nv2);
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)12 * (size_t)nv; i++) {
      num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
      den += (double)a[i] * a[i];
    }
    print_message("%s: HF folder vs f32 GGUF rel err %.3g\n", dirs[d], sqrt(num / den));
    assert_true(sqrt(num / den) <= 1e-6);
    free(a);
    free(b);
    unlink(out);
    free(out);
    free(cfg);
  }
}

/* Cancelling from the progress callback leaves neither OUT nor a
 * temporary file. */
static bool cancel_at_3(const tl_quantize_progress *p, void *user) {
  (*(int *)user)++;
  return p->index < 3;
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void test_cancel_and_bad_paths(void **state) {
  (void)state;
  char tmpl[] = "/tmp/tl_quant_XXXXXX";
  char *dir = mkdtemp(tmpl);
  assert_non_null(dir);
  char out[512];
  snprintf(out, sizeof out, "%s/out.gguf", dir);
  int calls = 0;
  tl_quantize_params qp = tl_quantize_default_params();
  qp.progress = cancel_at_3;
  qp.progress_user = &calls;
  assert_int_equal(tl_model_quantize(DEMO, out, &qp), TL_ERR_ABORTED);
  assert_non_null(strstr(tl_last_error(), "cancelled"));
  assert_int_equal(calls, 4);
  assert_int_equal(count_entries(dir), 0);
  /* a directory that does not exist: an error, no file */
  char bad[600];
  snprintf(bad, sizeof bad, "%s/no/such/dir/out.gguf", dir);
  assert_int_equal(tl_model_quantize(DEMO, bad, NULL), TL_ERR_IO);
  assert_int_equal(count_entries(dir), 0);
  /* an input that does not exist */
  assert_int_not_equal(tl_model_quantize("/nonexistent/model.gguf", out, NULL), TL_OK);
  assert_int_equal(count_entries(dir), 0);
  tl_ftype f;
  assert_int_equal(tl_ftype_from_name("q4_k", &f), TL_OK);
  assert_int_equal(f, TL_FTYPE_Q4_K_M);
  assert_int_equal(tl_ftype_from_name("Q5_K_S", &f), TL_OK);
  assert_int_equal(f, TL_FTYPE_Q5_K_S);
  assert_int_equal(tl_ftype_from_name("q7_0", &f), TL_ERR_INVALID_ARG);
  rmdir(dir);
}

/* ---- 5. the writer ---------------------------------------------------------- */

static void test_writer_round_trip(void **state) {
  (void)state;
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_new_virtual(&g), TL_OK);
  assert_int_equal(tl_gguf_set_u32(g, "general.alignment", 64), TL_OK);
  assert_int_equal(tl_gguf_set_str(g, "general.architecture", "llama", 5), TL_OK);
  assert_int_equal(tl_gguf_set_i32(g, "t.i32", -7), TL_OK);
  assert_int_equal(tl_gguf_set_f32(g, "t.f32", 1.5f), TL_OK);
  assert_int_equal(tl_gguf_set_bool(g, "t.bool", true), TL_OK);
  const int16_t i16[3] = {-1, 2, -3};
  const double f64[2] = {0.25, -1e300};
  const uint8_t u8[5] = {1, 2, 3, 4, 255};
  const uint64_t u64[2] = {1ull << 40, 7};
  assert_int_equal(tl_gguf_set_arr(g, "t.i16", TL_GGUF_I16, i16, 3), TL_OK);
  assert_int_equal(tl_gguf_set_arr(g, "t.f64", TL_GGUF_F64, f64, 2), TL_OK);
  assert_int_equal(tl_gguf_set_arr(g, "t.u8", TL_GGUF_U8, u8, 5), TL_OK);
  assert_int_equal(tl_gguf_set_arr(g, "t.u64", TL_GGUF_U64, u64, 2), TL_OK);
  tl_str strs[3] = {{"a", 1}, {"", 0}, {"\xe2\x96\x81the", 6}};
  assert_int_equal(tl_gguf_set_str_arr(g, "t.strs", strs, 3), TL_OK);
  assert_int_equal(tl_gguf_set_arr(g, "t.empty", TL_GGUF_I32, NULL, 0), TL_OK);
  static float w[3 * 64];
  static uint8_t q[2 * 34];
  static float v[5] = {1, 2, 3, 4, 5};
  for (int i = 0; i < 3 * 64; i++) w[i] = (float)i * 0.5f - 7;
  tl_quant_q8_0(w, q, 64);
  const int64_t ne_w[2] = {64, 3}, ne_q[2] = {64, 1}, ne_v[1] = {5};
  assert_int_equal(tl_gguf_add_tensor(g, "w", TL_TYPE_F32, 2, ne_w, w, sizeof w), TL_OK);
  assert_int_equal(tl_gguf_add_tensor(g, "v", TL_TYPE_F32, 1, ne_v, v, sizeof v), TL_OK);
  assert_int_equal(tl_gguf_add_tensor(g, "q", TL_TYPE_Q8_0, 2, ne_q, q, sizeof q), TL_OK);
  char *path = tl_test_tmpfile(".gguf");
  assert_int_equal(tl_gguf_write(g, path), TL_OK);
  size_t size = 0;
  char *buf = tl_test_read_file(path, &size);
  assert_non_null(buf);
  assert_int_equal(size % 64, 0);
  tl_gguf *r = NULL;
  if (tl_gguf_parse(buf, size, &r) != TL_OK) fail_msg("%s", tl_last_error());
  assert_int_equal(r->version, 3);
  assert_int_equal(r->alignment, 64);
  assert_int_equal(r->n_kv, g->n_kv);
  for (uint64_t i = 0; i < g->n_kv; i++) {
    const tl_gguf_kv *a = &g->kv[i], *b = &r->kv[i];
    assert_int_equal(a->key.len, b->key.len);
    assert_memory_equal(a->key.ptr, b->key.ptr, a->key.len);
    assert_int_equal(a->val.type, b->val.type);
    if (a->val.type == TL_GGUF_STRING) {
      assert_int_equal(a->val.v.str.len, b->val.v.str.len);
      assert_memory_equal(a->val.v.str.ptr, b->val.v.str.ptr, a->val.v.str.len);
    } else if (a->val.type == TL_GGUF_ARRAY) {
      assert_int_equal(a->val.v.arr.elem_type, b->val.v.arr.elem_type);
      assert_int_equal(a->val.v.arr.n, b->val.v.arr.n);
      for (uint64_t k = 0; k < a->val.v.arr.n; k++) {
        if (a->val.v.arr.elem_type == TL_GGUF_STRING) {
          assert_int_equal(a->val.v.arr.strs[k].len, b->val.v.arr.strs[k].len);
          assert_memory_equal(a->val.v.arr.strs[k].ptr, b->val.v.arr.strs[k].ptr,
                              a->val.v.arr.strs[k].len);
        } else {
          assert_true(tl_gguf_arr_f64(&a->val, k) == tl_gguf_arr_f64(&b->val, k));
          assert_true(tl_gguf_arr_i64(&a->val, k) == tl_gguf_arr_i64(&b->val, k));
        }
      }
    } else {
      assert_memory_equal(&a->val.v, &b->val.v, sizeof(uint64_t));
    }
  }
  assert_int_equal(r->n_tensors, 3);
  for (uint64_t i = 0; i < 3; i++) {
    const tl_gguf_tensor *a = &g->tensors[i], *b = &r->tensors[i];
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->n_dims, b->n_dims);
    assert_memory_equal(a->ne, b->ne, sizeof a->ne);
    assert_int_equal(b->offset % 64, 0);
    assert_int_equal((r->data_offset + b->offset) % 64, 0);
    assert_int_equal(a->nbytes, b->nbytes);
    assert_memory_equal(a->data, b->data, a->nbytes);
  }
  tl_gguf_free(r);
  free(buf);
  /* a streaming write that stops early leaves no file */
  unlink(path);
  tl_gguf_wtensor wt = {.name = "x", .type = TL_TYPE_F32, .n_dims = 1, .ne = {8, 1, 1, 1}};
  tl_gguf_writer *wr = NULL;
  assert_int_equal(tl_gguf_writer_open(path, g->kv, g->n_kv, &wt, 1, &wr), TL_OK);
  assert_int_equal(tl_gguf_writer_pending(wr), 32);
  assert_int_equal(tl_gguf_writer_write(wr, w, 16), TL_OK);
  assert_int_not_equal(tl_gguf_writer_finish(wr), TL_OK); /* 16 bytes missing */
  assert_int_equal(access(path, F_OK), -1);
  assert_int_equal(tl_gguf_writer_open(path, g->kv, g->n_kv, &wt, 1, &wr), TL_OK);
  tl_gguf_writer_abort(wr);
  assert_int_equal(access(path, F_OK), -1);
  /* a path in a directory that does not exist */
  assert_int_equal(tl_gguf_write(g, "/nonexistent-dir-tl/x.gguf"), TL_ERR_IO);
  assert_int_equal(access("/nonexistent-dir-tl/x.gguf", F_OK), -1);
  free(path);
  tl_gguf_free(g);
}

/* A file that is read back and written again is byte-identical. */
static void test_writer_rewrites_fixture(void **state) {
  (void)state;
  char *p = tl_test_fixture_or_skip("llama/model-q4_k_m.gguf");
  if (!p) return;
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_open(p, &g), TL_OK);
  char *out = tl_test_tmpfile(".gguf");
  assert_int_equal(tl_gguf_write(g, out), TL_OK);
  tl_test_assert_same_file(p, out);
  unlink(out);
  free(out);
  tl_gguf_free(g);
  free(p);
}

/* ---- 6. synthetic models ---------------------------------------------------- */

static void test_synth_tiny(void **state) {
  (void)state;
  char *out = tl_test_tmpfile(".gguf"), *out2 = tl_test_tmpfile(".gguf");
  tl_synth_params sp = tl_synth_default_params();
  sp.preset = "tiny";
  sp.ftype = TL_FTYPE_Q4_0;
  sp.tokenizer_model = DEMO;
  sp.n_threads = 2;
  assert_int_equal(tl_synth_model(out, &sp), TL_OK);
  eval_finite(out);
  tl_model *m = NULL;
  assert_int_equal(tl_model_load(out, NULL, &m), TL_OK);
  assert_int_equal(tl_model_n_vocab(m), 8192);
  assert_int_equal(tl_model_n_layer(m), 2);
  /* padding tokens: UNUSED (no text when detokenized) */
  char piece[64];
  assert_int_equal(tl_token_to_piece(m, 4096 + 904, piece, sizeof piece), 0);
  /* the demo tokenizer still works */
  tl_token toks[16];
  size_t nt = 0;
  assert_int_equal(tl_tokenize(m, "In the beginning", 16, true, false, toks, 16, &nt), TL_OK);
  assert_true(nt >= 2);
  for (size_t i = 0; i < nt; i++) assert_true(toks[i] < 4096);
  tl_model_free(m);
  /* the mix applies: output Q6_K; seeded: same seed, same bytes */
  sp.ftype = TL_FTYPE_Q4_K_M;
  assert_int_equal(tl_synth_model(out, &sp), TL_OK);
  sp.n_threads = 1;
  assert_int_equal(tl_synth_model(out2, &sp), TL_OK);
  size_t a = 0, b = 0;
  char *x = tl_test_read_file(out, &a), *y = tl_test_read_file(out2, &b);
  assert_int_equal(a, b);
  assert_memory_equal(x, y, a);
  free(y);
  sp.seed = 99;
  assert_int_equal(tl_synth_model(out2, &sp), TL_OK);
  y = tl_test_read_file(out2, &b);
  assert_int_equal(a, b);
  assert_true(memcmp(x, y, a) != 0);
  free(x);
  free(y);
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_open(out, &g), TL_OK);
  const tl_gguf_value *tv = tl_gguf_get_arr(g, "tokenizer.ggml.tokens", TL_GGUF_STRING);
  const tl_gguf_value *ty = tl_gguf_get_arr(g, "tokenizer.ggml.token_type", TL_GGUF_I32);
  const tl_gguf_value *sc = tl_gguf_get_arr(g, "tokenizer.ggml.scores", TL_GGUF_F32);
  assert_true(tv && ty && sc);
  assert_int_equal(tv->v.arr.n, 8192);
  assert_int_equal(ty->v.arr.n, 8192);
  assert_int_equal(sc->v.arr.n, 8192);
  assert_true(tl_str_eq(tv->v.arr.strs[4096 + 904], "<unused_904>"));
  assert_int_equal(tl_gguf_arr_i64(ty, 5000), 5);
  assert_true(tl_gguf_arr_f64(sc, 8191) == -1e9f);
  assert_true(tl_str_eq(tv->v.arr.strs[1], "<s>"));
  assert_int_equal(tl_gguf_find_tensor(g, "output.weight")->type, TL_TYPE_Q6_K);
  assert_int_equal(tl_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, TL_TYPE_Q4_K);
  assert_int_equal(tl_gguf_find_tensor(g, "blk.1.ffn_down.weight")->type, TL_TYPE_Q6_K);
  assert_int_equal(tl_gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, TL_TYPE_F32);
  tl_gguf_free(g);
  /* the CLI */
  char args[1024];
  snprintf(args, sizeof args, "synth --preset tiny --type q8_0 --seed 5 -o '%s'", out);
  char *err = NULL;
  assert_int_equal(tl_test_run_cli(args, NULL, &err), 0);
  assert_non_null(strstr(err, "token_embd.weight"));
  free(err);
  eval_finite(out);
  snprintf(args, sizeof args, "synth --preset nosuch -o '%s'", out2);
  assert_int_equal(tl_test_run_cli(args, NULL, NULL), 1);
  unlink(out);
  unlink(out2);
  free(out);
  free(out2);
}

/* The presets' tensor shapes (a one-layer Qwen2.5-7B costs a few seconds
 * only at Q8_0, so check the metadata and shapes of a one-layer TinyLlama,
 * and Qwen's bias tensors through tl_synth_presets + a one-layer file when
 * TL_TEST_SLOW is set). */
static void test_synth_presets(void **state) {
  (void)state;
  const char *const *names = tl_synth_presets();
  const char *want[] = {"tinyllama-1.1b", "mistral-7b", "llama3-8b", "qwen2.5-7b"};
  for (size_t i = 0; i < 4; i++) {
    bool found = false;
    for (const char *const *p = names; *p; p++) found |= !strcmp(*p, want[i]);
    assert_true(found);
  }
  if (!getenv("TL_TEST_SLOW")) {
    print_message("SKIPPED: full-size preset files (set TL_TEST_SLOW=1)\n");
    return;
  }
  char *out = tl_test_tmpfile(".gguf");
  tl_synth_params sp = tl_synth_default_params();
  sp.tokenizer_model = DEMO;
  sp.n_layer = 1;
  sp.preset = "qwen2.5-7b";
  assert_int_equal(tl_synth_model(out, &sp), TL_OK);
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_open(out, &g), TL_OK);
  const tl_gguf_tensor *t = tl_gguf_find_tensor(g, "blk.0.attn_k.bias");
  assert_non_null(t);
  assert_int_equal(t->ne[0], 512);
  t = tl_gguf_find_tensor(g, "token_embd.weight");
  assert_int_equal(t->ne[0], 3584);
  assert_int_equal(t->ne[1], 152064);
  t = tl_gguf_find_tensor(g, "blk.0.ffn_down.weight");
  assert_int_equal(t->ne[0], 18944);
  tl_gguf_free(g);
  unlink(out);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixture_bytes),
      cmocka_unit_test(test_fixture_kquant_error),
      cmocka_unit_test(test_random_error_bounds),
      cmocka_unit_test(test_round_trip_all_types),
      cmocka_unit_test(test_cancel_and_bad_paths),
      cmocka_unit_test(test_writer_round_trip),
      cmocka_unit_test(test_writer_rewrites_fixture),
      cmocka_unit_test(test_synth_tiny),
      cmocka_unit_test(test_hf_rope_scaled),
      cmocka_unit_test(test_synth_presets),
      cmocka_unit_test(test_hf_folder),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
