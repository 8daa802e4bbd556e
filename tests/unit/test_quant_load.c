/* --quant: a float model quantized while loading gives exactly what
 * quantizing it to a file and loading that file gives — and, for the llama
 * fixture, exactly what llama.cpp's own Q4_K_M / Q8_0 files give. */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "format/gguf.h"
#include "quant/quant.h"
#include "testutil.h"

static const tl_token g_ids[] = {1, 300, 391, 394, 465, 320, 365, 386, 298, 305, 446};
#define N_IDS ((int)(sizeof g_ids / sizeof g_ids[0]))

static float *logits_of(tl_model *m) {
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 64;
  cp.n_threads = 2;
  cp.kv_type = TL_KV_F32;
  tl_context *c = NULL;
  assert_int_equal(tl_context_new(m, &cp, &c), TL_OK);
  int32_t pos[N_IDS];
  int8_t want[N_IDS];
  for (int i = 0; i < N_IDS; i++) {
    pos[i] = i;
    want[i] = 1;
  }
  tl_batch b = {.n_tokens = N_IDS, .tokens = g_ids, .pos = pos, .logits = want};
  assert_int_equal(tl_decode(c, &b), TL_OK);
  int nv = tl_model_n_vocab(m);
  float *out = malloc(sizeof(float) * (size_t)nv * N_IDS);
  for (int i = 0; i < N_IDS; i++)
    memcpy(out + (size_t)i * nv, tl_get_logits(c, i), sizeof(float) * nv);
  tl_context_free(c);
  return out;
}

static float *load_and_eval(const char *path, int quant, int *nv) {
  tl_model_params mp = tl_model_default_params();
  mp.quant_ftype = quant;
  tl_model *m = NULL;
  if (tl_model_load(path, &mp, &m) != TL_OK) fail_msg("loading %s: %s", path, tl_last_error());
  *nv = tl_model_n_vocab(m);
  float *l = logits_of(m);
  tl_model_free(m);
  return l;
}

static void check_type_of(const char *folder, const char *name, const char *llamacpp_file) {
  tl_ftype ft;
  assert_int_equal(tl_ftype_from_name(name, &ft), TL_OK);
  int nv = 0, nv2 = 0;
  float *on_load = load_and_eval(folder, (int)ft, &nv);

  char *tmp = tl_test_tmpfile(".gguf");
  tl_quantize_params qp = tl_quantize_default_params();
  qp.ftype = ft;
  assert_int_equal(tl_model_quantize(folder, tmp, &qp), TL_OK);
  float *from_file = load_and_eval(tmp, -1, &nv2);
  assert_int_equal(nv, nv2);
  assert_memory_equal(on_load, from_file, sizeof(float) * (size_t)nv * N_IDS);
  unlink(tmp);
  free(tmp);

  char *ref = llamacpp_file ? tl_test_fixture_or_skip(llamacpp_file) : NULL;
  if (ref) {
    float *theirs = load_and_eval(ref, -1, &nv2);
    assert_memory_equal(on_load, theirs, sizeof(float) * (size_t)nv * N_IDS);
    printf("%s: quantized while loading == quantized file == llama.cpp's %s\n", name,
           llamacpp_file);
    free(theirs);
    free(ref);
  }
  free(on_load);
  free(from_file);
}

static void check_type(const char *name, const char *llamacpp_file) {
  check_type_of(TL_TEST_DATA "/llama", name, llamacpp_file);
}

/* Two GGUF files hold the same tensors (names, types, shapes) and llama.cpp
 * would read the same special-token keys (none signed). */
static void same_layout(const char *ours, const char *theirs) {
  tl_gguf *a = NULL, *b = NULL;
  assert_int_equal(tl_gguf_open(ours, &a), TL_OK);
  assert_int_equal(tl_gguf_open(theirs, &b), TL_OK);
  assert_int_equal(a->n_tensors, b->n_tensors);
  for (uint64_t i = 0; i < b->n_tensors; i++) {
    const tl_gguf_tensor *tb = &b->tensors[i];
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)tb->name.len, tb->name.ptr);
    const tl_gguf_tensor *ta = tl_gguf_find_tensor(a, name);
    if (!ta) fail_msg("%s lacks llama.cpp's tensor %s", ours, name);
    if (ta->type != tb->type || memcmp(ta->ne, tb->ne, sizeof ta->ne))
      fail_msg("%s: %s [%lld, %lld, %lld] in type %s, llama.cpp's [%lld, %lld, %lld] in %s", ours,
               name, (long long)ta->ne[0], (long long)ta->ne[1], (long long)ta->ne[2],
               tl_type_name(ta->type), (long long)tb->ne[0], (long long)tb->ne[1],
               (long long)tb->ne[2], tl_type_name(tb->type));
  }
  for (uint64_t i = 0; i < a->n_kv; i++)
    if (a->kv[i].val.type == TL_GGUF_I32 && a->kv[i].key.len > 9 &&
        !memcmp(a->kv[i].key.ptr + a->kv[i].key.len - 9, "_token_id", 9))
      fail_msg("%s: a signed %.*s, which llama.cpp refuses", ours, (int)a->kv[i].key.len,
               a->kv[i].key.ptr);
  tl_gguf_free(a);
  tl_gguf_free(b);
}

/* Mixtures of experts (the Hub's per-expert tensors stacked into llama.cpp's
 * ffn_*_exps): Mixtral's folder to Q8_0 gives llama.cpp's own Q8_0 file's
 * logits bit for bit; Qwen3-MoE's to Q4_K_M the same while loading as from
 * the file (fixtures from ../shared; skipped where absent). */
static void test_moe(void **state) {
  (void)state;
  const char *archs[] = {"mixtral", "qwen3moe"};
  for (int i = 0; i < 2; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "%s/config.json", archs[i]);
    char *cfg = tl_test_fixture_or_skip(rel);
    if (!cfg) continue;
    *strrchr(cfg, '/') = 0;
    if (i == 0) {
      check_type_of(cfg, "q8_0", "mixtral/model-q8_0.gguf");
      /* the same tensors as llama.cpp's converter and llama-quantize wrote */
      char *ref = tl_test_fixture_or_skip("mixtral/model-q8_0.gguf");
      char *tmp = tl_test_tmpfile(".gguf");
      tl_quantize_params qp = tl_quantize_default_params();
      qp.ftype = TL_FTYPE_Q8_0;
      assert_int_equal(tl_model_quantize(cfg, tmp, &qp), TL_OK);
      if (ref) same_layout(tmp, ref);
      unlink(tmp);
      free(tmp);
      free(ref);
    } else {
      check_type_of(cfg, "q4_k_m", NULL);
    }
    free(cfg);
  }
}

static void test_q4_k_m(void **state) {
  (void)state;
  check_type("q4_k_m", "llama/model-q4_k_m.gguf");
}

static void test_q8_0(void **state) {
  (void)state;
  check_type("q8_0", "llama/model-q8_0.gguf");
}

/* llama.cpp's IQ4_XS file made without an importance matrix */
static void test_iq4_xs(void **state) {
  (void)state;
  check_type("iq4_xs", "llama/model-iq4_xs-plain.gguf");
}

/* Every fixture architecture: its Hugging Face folder quantized to a Q8_0
 * GGUF file (llama.cpp's names and keys) loads again and stays as close to
 * the reference as llama.cpp's own Q8_0 files are (worst case over the
 * fixtures: 0.028 relative error, bound 1.1 x that + 0.005). */
static void test_folders_to_gguf(void **state) {
  (void)state;
  const char *archs[] = {"llama", "llama3", "mistral", "qwen2",  "qwen3",
                         "phi2",  "phi3",   "gemma",   "gemma2", "gemma3"};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
    char folder[1024], refp[1100];
    snprintf(folder, sizeof folder, "%s/%s", TL_TEST_DATA, archs[i]);
    snprintf(refp, sizeof refp, "%s/reference.safetensors", folder);
    char *tmp = tl_test_tmpfile(".gguf");
    tl_quantize_params qp = tl_quantize_default_params();
    qp.ftype = TL_FTYPE_Q8_0;
    if (tl_model_quantize(folder, tmp, &qp) != TL_OK)
      fail_msg("quantizing %s: %s", folder, tl_last_error());
    tl_model *m = NULL;
    if (tl_model_load(tmp, NULL, &m) != TL_OK) fail_msg("loading %s: %s", tmp, tl_last_error());
    tl_test_st *st = tl_test_st_open(refp);
    assert_non_null(st);
    /* the reference prompt's ids (from the model's own tokenizer) */
    char jp[1100];
    snprintf(jp, sizeof jp, "%s/reference.json", folder);
    char *js = tl_test_read_file(jp, NULL);
    assert_non_null(js);
    cJSON *j = cJSON_Parse(js), *id;
    free(js);
    assert_non_null(j);
    tl_token ids[256];
    int n = 0;
    cJSON_ArrayForEach(id,
                       cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "prompts"), 0),
                                           "input_ids")) {
      assert_true(n < 256);
      ids[n++] = (tl_token)id->valueint;
    }
    cJSON_Delete(j);
    int nv = tl_model_n_vocab(m);
    const float *ref = tl_test_ref_logits(st, 0, n, nv);
    assert_non_null(ref);
    tl_context_params cp = tl_context_default_params();
    cp.n_ctx = 256;
    cp.kv_type = TL_KV_F32;
    tl_context *c = NULL;
    assert_int_equal(tl_context_new(m, &cp, &c), TL_OK);
    int32_t pos[256];
    int8_t want[256];
    for (int k = 0; k < n; k++) {
      pos[k] = k;
      want[k] = 1;
    }
    tl_batch b = {.n_tokens = n, .tokens = ids, .pos = pos, .logits = want};
    assert_int_equal(tl_decode(c, &b), TL_OK);
    float *ours = malloc(sizeof(float) * (size_t)n * nv);
    for (int k = 0; k < n; k++)
      memcpy(ours + (size_t)k * nv, tl_get_logits(c, k), sizeof(float) * nv);
    double e = tl_test_rel_err(ours, ref, (size_t)n * nv);
    printf("%s folder -> Q8_0 GGUF -> logits rel err %.4f\n", archs[i], e);
    assert_true(e <= 1.1 * 0.02786 + 0.005);
    free(ours);
    tl_context_free(c);
    tl_test_st_free(st);
    tl_model_free(m);
    unlink(tmp);
    free(tmp);
  }
}

static void test_bad_type(void **state) {
  (void)state;
  tl_model_params mp = tl_model_default_params();
  mp.quant_ftype = 99;
  tl_model *m = NULL;
  assert_int_not_equal(tl_model_load(TL_TEST_DATA "/llama", &mp, &m), TL_OK);
  assert_null(m);
  assert_true(strlen(tl_last_error()) > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_q4_k_m),
      cmocka_unit_test(test_iq4_xs),
      cmocka_unit_test(test_q8_0),
      cmocka_unit_test(test_moe),
      cmocka_unit_test(test_folders_to_gguf),
      cmocka_unit_test(test_bad_type),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
