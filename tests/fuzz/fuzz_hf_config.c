/* libFuzzer target: config.json of a Hugging Face folder into the
 * hyper-parameters and a full model load (no forward pass). The folder holds
 * the fuzzed config.json next to the llama fixture's weights and tokenizer;
 * an input "A\n@@@@\nB" also writes B as model.safetensors.index.json
 * (sharded weights pointing at the same file). */
#include <stdlib.h>

#include "fuzz_util.h"

static char *g_dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_dir = fz_tmpdir();
  fz_symlink(g_dir, "tokenizer.model", TL_FUZZ_DATA "/llama/tokenizer.model");
  fz_symlink(g_dir, "tokenizer_config.json", TL_FUZZ_DATA "/llama/tokenizer_config.json");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n1, n2;
  const uint8_t *p2;
  fz_split(data, size, &n1, &p2, &n2);
  fz_write(g_dir, "config.json", data, n1);
  if (p2) {
    fz_unlink(g_dir, "model.safetensors");
    fz_symlink(g_dir, "shard.safetensors", TL_FUZZ_DATA "/llama/model.safetensors");
    fz_write(g_dir, "model.safetensors.index.json", p2, n2);
  } else {
    fz_unlink(g_dir, "model.safetensors.index.json");
    fz_symlink(g_dir, "model.safetensors", TL_FUZZ_DATA "/llama/model.safetensors");
  }
  tl_model *m = NULL;
  tl_status s = tl_model_load(g_dir, NULL, &m);
  if (s != TL_OK) {
    if (m || !tl_last_error()[0]) abort();
    return 0;
  }
  (void)tl_model_desc(m);
  (void)tl_model_n_ctx_train(m);
  tl_model_free(m);
  return 0;
}
