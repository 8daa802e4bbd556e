/* A model's metadata by key: tl_model_meta_count, _key_by_index and _str,
 * on a GGUF file and on a Hugging Face folder (read through the same keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "torchless.h"

static void check_model(const char *path, const char *arch) {
  tl_model *m = tl_test_load_model(path);
  assert_non_null(m);
  char buf[256], key[128];
  assert_int_equal(tl_model_meta_str(m, "general.architecture", buf, sizeof buf),
                   (int32_t)strlen(arch));
  assert_string_equal(buf, arch);
  /* a number, printed in decimal, equal to what the model reports */
  char ctx_key[96];
  snprintf(ctx_key, sizeof ctx_key, "%s.context_length", arch);
  assert_true(tl_model_meta_str(m, ctx_key, buf, sizeof buf) > 0);
  char want[32];
  snprintf(want, sizeof want, "%d", tl_model_n_ctx_train(m));
  assert_string_equal(buf, want);
  /* every listed key has a value, and the listing finds general.architecture */
  const int32_t n = tl_model_meta_count(m);
  assert_true(n > 3);
  int found = 0;
  for (int32_t i = 0; i < n; i++) {
    assert_true(tl_model_meta_key_by_index(m, i, key, sizeof key) > 0);
    assert_true(tl_model_meta_str(m, key, NULL, 0) >= 0);
    found += !strcmp(key, "general.architecture");
  }
  assert_int_equal(found, 1);
  assert_int_equal(tl_model_meta_key_by_index(m, n, key, sizeof key), -1);
  assert_int_equal(tl_model_meta_key_by_index(m, -1, key, sizeof key), -1);
  /* a missing key; a value cut to the buffer, its full length returned */
  assert_int_equal(tl_model_meta_str(m, "no.such.key", buf, sizeof buf), -1);
  assert_string_equal(buf, "");
  char small[4];
  assert_int_equal(tl_model_meta_str(m, "general.architecture", small, sizeof small),
                   (int32_t)strlen(arch));
  assert_int_equal(strlen(small), 3);
  assert_memory_equal(small, arch, 3);
  /* an array: the token list, quoted strings in brackets */
  int32_t len = tl_model_meta_str(m, "tokenizer.ggml.tokens", buf, sizeof buf);
  assert_true(len > (int32_t)sizeof buf);
  assert_true(buf[0] == '[' && buf[1] == '"');
  tl_model_free(m);
}

static void test_gguf(void **state) {
  char *p = tl_test_model_path("llama", "f16");
  if (!p) skip();
  check_model(p, "llama");
  free(p);
}

static void test_hf_folder(void **state) {
  check_model(TL_TEST_DATA "/qwen2", "qwen2");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_gguf), cmocka_unit_test(test_hf_folder)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
