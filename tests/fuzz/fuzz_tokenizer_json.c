/* libFuzzer target: tokenizer.json (and tokenizer_config.json after a
 * "\n@@@@\n" marker) of a Hugging Face folder into a vocabulary, then
 * encoding and decoding text with it. */
#include <stdlib.h>

#include "fuzz_util.h"

static char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_dir = fz_tmpdir();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n1, n2;
  const uint8_t *p2;
  fz_split(data, size, &n1, &p2, &n2);
  fz_write(g_dir, "tokenizer.json", data, n1);
  if (p2)
    fz_write(g_dir, "tokenizer_config.json", p2, n2);
  else
    fz_unlink(g_dir, "tokenizer_config.json");
  tl_model_params p = tl_model_default_params();
  p.vocab_only = true;
  tl_model *m = NULL;
  tl_status s = tl_model_load(g_dir, &p, &m);
  if (s != TL_OK) {
    if (m || !tl_last_error()[0]) abort();
    return 0;
  }
  fz_exercise_vocab(m, NULL, 0);
  tl_model_free(m);
  return 0;
}
