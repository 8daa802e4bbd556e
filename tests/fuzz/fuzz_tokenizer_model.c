/* libFuzzer target: tokenizer.model (a SentencePiece ModelProto, read by a
 * minimal protobuf decoder) into a vocabulary, then encoding and decoding
 * text with it. */
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
  fz_write(g_dir, "tokenizer.model", data, size);
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
