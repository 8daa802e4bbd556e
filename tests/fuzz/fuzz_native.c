/* libFuzzer target: the Torchless native .bin reader (header size, JSON
 * header, metadata, tensor offsets and shapes, the embedded tokenizer) and a
 * full model load of the same bytes (no forward pass). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/native.h"
#include "fuzz_util.h"

static int g_fd = -1;
static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_fd = memfd_create("tl-fuzz-native", 0);
  if (g_fd < 0) {
    perror("memfd_create");
    abort();
  }
  snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)tl_native_sniff(data, size);
  if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size) abort();
  tl_gguf *g = NULL;
  tl_status s = tl_native_open(g_path, &g);
  if (s != TL_OK) {
    if (g || !tl_last_error()[0]) abort();
    return 0;
  }
  volatile uint8_t sink = 0;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const tl_gguf_tensor *t = &g->tensors[i];
    const uint8_t *td = t->data;
    if (t->nbytes) sink ^= td[0] ^ td[t->nbytes - 1];
  }
  (void)sink;
  tl_gguf_free(g);
  tl_model *m = NULL;
  if (tl_model_load(g_path, NULL, &m) == TL_OK) {
    fz_exercise_vocab(m, NULL, 0);
    tl_model_free(m);
  }
  return 0;
}
