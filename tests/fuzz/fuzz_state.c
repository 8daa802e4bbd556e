/* libFuzzer target: a state file (tl_state_seq_load_file, run --prompt-cache)
 * loaded into sequence 0 of a context of the demo model, and a token decoded
 * after what it restored. A rejected file must leave a message and the
 * sequence as it was; nothing may crash, leak or read out of bounds. */
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"
#include "fuzz_util.h"

static tl_model *g_model;
static tl_context *g_ctx;
static char *g_dir;

enum { N_CTX = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_model) {
    g_dir = fz_tmpdir();
    if (tl_model_load(TL_FUZZ_DATA "/demo/model-q8_0.gguf", NULL, &g_model) != TL_OK) abort();
    tl_context_params cp = tl_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_seq = 2;
    cp.n_threads = 1;
    cp.backend = "cpu";
    if (tl_context_new(g_model, &cp, &g_ctx) != TL_OK) abort();
    const tl_token pre[] = {1, 450, 2201};
    const int32_t pp[] = {0, 1, 2}, sq[] = {1, 1, 1};
    tl_batch b = {.n_tokens = 3, .tokens = pre, .pos = pp, .seq = sq};
    if (tl_decode(g_ctx, &b) != TL_OK) abort();
  }
  /* sequence 0 holds three tokens before each load (copied from 1) */
  tl_kv_clear(g_ctx, 0);
  if (tl_kv_seq_cp(g_ctx, 1, 0, 0, 3) != TL_OK) abort();
  fz_write(g_dir, "state", data, size);
  char path[4096];
  snprintf(path, sizeof path, "%s/state", g_dir);
  tl_token toks[N_CTX];
  size_t n = 99;
  tl_clear_error();
  tl_status s = tl_state_seq_load_file(g_ctx, path, 0, toks, N_CTX, &n);
  if (s != TL_OK) {
    if (!tl_last_error()[0] || n != 0) abort();
    if (tl_kv_seq_pos_max(g_ctx, 0) != 2) abort(); /* as it was */
    return 0;
  }
  if (n > N_CTX || tl_kv_seq_pos_max(g_ctx, 0) != (int32_t)n - 1) abort();
  if (n < N_CTX) {
    const tl_token t = 13;
    const int32_t p = (int32_t)n;
    tl_batch b2 = {.n_tokens = 1, .tokens = &t, .pos = &p};
    if (tl_decode(g_ctx, &b2) != TL_OK) abort();
  }
  return 0;
}
