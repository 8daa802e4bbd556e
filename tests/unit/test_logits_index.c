/* tl_get_logits (the i-th requested row) and tl_get_logits_pos (a batch
 * position, llama_get_logits_ith's indexing, negative from the end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "torchless.h"

static void test_rows_and_positions(void **state) {
  tl_model *m = tl_test_load_model(TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf");
  assert_non_null(m);
  tl_context *c = tl_test_new_ctx(m, TL_KV_F32, 64);
  const tl_token toks[] = {1, 450, 2201, 13, 77};
  const int32_t pos[] = {0, 1, 2, 3, 4};
  const int8_t want[] = {0, 1, 0, 1, 1};
  tl_batch b = {.n_tokens = 5, .tokens = toks, .pos = pos, .logits = want};
  assert_int_equal(tl_decode(c, &b), TL_OK);
  /* position 1 is row 0, 3 is row 1, 4 (also -1) is row 2 */
  assert_ptr_equal(tl_get_logits_pos(c, 1), tl_get_logits(c, 0));
  assert_ptr_equal(tl_get_logits_pos(c, 3), tl_get_logits(c, 1));
  assert_ptr_equal(tl_get_logits_pos(c, 4), tl_get_logits(c, 2));
  assert_ptr_equal(tl_get_logits_pos(c, -1), tl_get_logits(c, 2));
  assert_ptr_equal(tl_get_logits_pos(c, -2), tl_get_logits(c, 1));
  assert_non_null(tl_get_logits(c, 2));
  /* not requested, or out of range: NULL with a message */
  assert_null(tl_get_logits_pos(c, 0));
  assert_true(strstr(tl_last_error(), "has no logits") != NULL);
  assert_null(tl_get_logits_pos(c, 2));
  assert_null(tl_get_logits_pos(c, 5));
  assert_null(tl_get_logits_pos(c, -6));
  assert_null(tl_get_logits(c, 3));
  assert_true(strstr(tl_last_error(), "tl_get_logits") != NULL);
  /* a batch without a logits array: only the last token */
  tl_kv_clear(c, -1);
  tl_batch b2 = {.n_tokens = 3, .tokens = toks, .pos = pos};
  assert_int_equal(tl_decode(c, &b2), TL_OK);
  assert_ptr_equal(tl_get_logits_pos(c, 2), tl_get_logits(c, 0));
  assert_null(tl_get_logits_pos(c, 1));
  tl_context_free(c);
  tl_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_rows_and_positions)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
