/* --quant: a float model quantized while loading gives exactly what
 * quantizing it to a file and loading that file gives — and, for the llama
 * fixture, exactly what llama.cpp's own Q4_K_M / Q8_0 files give. */
#include <unistd.h>

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
  for (int i = 0; i < N_IDS; i++) memcpy(out + (size_t)i * nv, tl_get_logits(c, i), sizeof(float) * nv);
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

static void check_type(const char *name, const char *llamacpp_file) {
  tl_ftype ft;
  assert_int_equal(tl_ftype_from_name(name, &ft), TL_OK);
  const char *folder = TL_TEST_DATA "/llama";
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

  char *ref = tl_test_fixture_or_skip(llamacpp_file);
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

static void test_q4_k_m(void **state) {
  (void)state;
  check_type("q4_k_m", "llama/model-q4_k_m.gguf");
}

static void test_q8_0(void **state) {
  (void)state;
  check_type("q8_0", "llama/model-q8_0.gguf");
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
      cmocka_unit_test(test_q8_0),
      cmocka_unit_test(test_bad_type),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
