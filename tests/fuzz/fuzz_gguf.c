/* libFuzzer target: the GGUF parser (header, metadata, tensor infos), the
 * vocabulary built from its tokenizer.ggml.* keys, and a full model load
 * (hyper-parameters, weight binding; no forward pass) of the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/gguf.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

static int g_fd = -1;
static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_fd = memfd_create("tl-fuzz-gguf", 0);
  if (g_fd < 0) {
    perror("memfd_create");
    abort();
  }
  snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
  return 0;
}

static void poke(const tl_gguf *g) {
  static const char *const keys[] = {"general.architecture", "general.alignment",
                                     "llama.block_count", "tokenizer.ggml.tokens",
                                     "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    uint32_t u;
    float f;
    bool b;
    tl_str s;
    tl_gguf_get_u32(g, keys[i], &u);
    tl_gguf_get_f32(g, keys[i], &f);
    tl_gguf_get_bool(g, keys[i], &b);
    tl_gguf_get_str(g, keys[i], &s);
  }
  for (uint64_t i = 0; i < g->n_kv; i++) {
    const tl_gguf_value *v = &g->kv[i].val;
    if (v->type != TL_GGUF_ARRAY) continue;
    uint64_t n = v->v.arr.n < 64 ? v->v.arr.n : 64;
    for (uint64_t k = 0; k <= n; k++) {
      (void)tl_gguf_arr_f64(v, k);
      (void)tl_gguf_arr_i64(v, k);
    }
  }
  volatile uint8_t sink = 0;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const tl_gguf_tensor *t = &g->tensors[i];
    const uint8_t *td = t->data;
    if (t->nbytes) sink ^= td[0] ^ td[t->nbytes - 1];
    tl_gguf_find_tensor(g, "token_embd.weight");
  }
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tl_gguf *g = NULL;
  if (tl_gguf_parse(data, size, &g) == TL_OK) {
    poke(g);
    tl_vocab *v = NULL;
    if (tl_vocab_from_gguf(g, &v) == TL_OK) tl_vocab_free(v);
    tl_gguf_free(g);
  } else if (g) {
    abort(); /* a failed parse must not return a file */
  }
  /* the same bytes through tl_model_load (a memfd: mmap as for a file) */
  if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size) abort();
  for (int vocab_only = 0; vocab_only < 2; vocab_only++) {
    tl_model_params p = tl_model_default_params();
    p.vocab_only = vocab_only;
    tl_model *m = NULL;
    tl_status s = tl_model_load(g_path, &p, &m);
    if (s != TL_OK) {
      if (m || !tl_last_error()[0]) abort(); /* failures carry a message */
      continue;
    }
    (void)tl_model_desc(m);
    (void)tl_model_n_params(m);
    fz_exercise_vocab(m, data, size < 256 ? size : 256);
    tl_model_free(m);
  }
  return 0;
}
