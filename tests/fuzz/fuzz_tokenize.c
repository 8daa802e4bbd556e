/* libFuzzer target: encoding fuzzed text with the fixture tokenizers
 * (SentencePiece BPE, byte-level BPE with the GPT-2, LLaMA 3 and Qwen2
 * pre-tokenizers, NFC) and decoding the tokens, plus decoding fuzzed token
 * id sequences (byte tokens that form invalid UTF-8). Byte 0 of the input
 * picks the options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static const char *const k_dirs[] = {"llama", "llama3", "qwen2", "phi2", "gemma3"};
enum { N_MODELS = sizeof k_dirs / sizeof k_dirs[0] };
static tl_model *g_m[N_MODELS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  for (int i = 0; i < N_MODELS; i++) {
    tl_model_params p = tl_model_default_params();
    p.vocab_only = true;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", TL_FUZZ_DATA, k_dirs[i]);
    if (tl_model_load(path, &p, &g_m[i]) != TL_OK) {
      fprintf(stderr, "fuzz_tokenize: %s\n", tl_last_error());
      abort();
    }
  }
  return 0;
}

static void tokenize(const tl_model *m, const char *text, size_t len, bool bos, bool special) {
  size_t cap = len + 8, n = 0;
  tl_token *toks = malloc(cap * sizeof *toks);
  if (!toks) return;
  tl_status s = tl_tokenize(m, text, len, bos, special, toks, cap, &n);
  if (s == TL_ERR_INVALID_ARG && n > cap) { /* NFC may lengthen the text */
    tl_token *t2 = realloc(toks, n * sizeof *toks);
    if (!t2) {
      free(toks);
      return;
    }
    toks = t2;
    cap = n;
    s = tl_tokenize(m, text, len, bos, special, toks, cap, &n);
  }
  if (s == TL_OK) {
    tl_detok *d = NULL;
    char buf[64];
    if (tl_detok_new(m, &d) != TL_OK) abort();
    for (size_t i = 0; i < n; i++) {
      if (toks[i] < 0 || toks[i] >= tl_model_n_vocab(m)) abort();
      size_t w = tl_detok_push(d, toks[i], buf, sizeof buf);
      if (w >= sizeof buf || buf[w] != 0) abort();
    }
    while (tl_detok_flush(d, buf, sizeof buf) > 0) {
    }
    tl_detok_free(d);
    /* a smaller output buffer must be reported, not overrun */
    if (n > 1) {
      size_t n2 = 0;
      if (tl_tokenize(m, text, len, bos, special, toks, n - 1, &n2) != TL_ERR_INVALID_ARG ||
          n2 != n)
        abort();
    }
  }
  free(toks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t opt = data[0];
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  for (int i = 0; i < N_MODELS; i++) {
    tokenize(g_m[i], text, len, opt & 1, opt & 2);
    /* bytes as token ids (16-bit little-endian), streamed through the
     * detokenizer with a small buffer */
    tl_detok *d = NULL;
    char buf[64];
    if (tl_detok_new(g_m[i], &d) != TL_OK) abort();
    int32_t nv = tl_model_n_vocab(g_m[i]);
    for (size_t k = 0; k + 1 < len; k += 2) {
      int32_t t = (int32_t)((uint8_t)text[k] | (uint8_t)text[k + 1] << 8);
      if (opt & 4) t %= nv + 2;
      t -= (opt & 8) ? 1 : 0;
      tl_detok_push(d, t, buf, sizeof buf);
    }
    while (tl_detok_flush(d, buf, sizeof buf) > 0) {
    }
    tl_detok_free(d);
  }
  return 0;
}
