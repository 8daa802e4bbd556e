/* Helpers shared by the libFuzzer targets. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *fz_tmpdir(void) {
  struct stat st;
  const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  char *d = malloc(strlen(base) + 32);
  if (!d) abort();
  sprintf(d, "%s/tl-fuzz-XXXXXX", base);
  if (!mkdtemp(d)) {
    perror("mkdtemp");
    abort();
  }
  return d;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (!p) abort();
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

void fz_write(const char *dir, const char *name, const void *data, size_t n) {
  char *p = join(dir, name);
  FILE *f = fopen(p, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
    perror(p);
    abort();
  }
  free(p);
}

void fz_unlink(const char *dir, const char *name) {
  char *p = join(dir, name);
  unlink(p);
  free(p);
}

void fz_symlink(const char *dir, const char *name, const char *target) {
  char *p = join(dir, name);
  unlink(p);
  if (symlink(target, p) != 0) {
    perror(p);
    abort();
  }
  free(p);
}

static void run_text(const tl_model *m, const char *text, size_t len, bool bos, bool special) {
  size_t cap = len + 8, n = 0;
  tl_token *toks = malloc(cap * sizeof *toks);
  if (!toks) return;
  tl_status s = tl_tokenize(m, text, len, bos, special, toks, cap, &n);
  if (s == TL_ERR_INVALID_ARG && n > cap) {
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
    int32_t nv = tl_model_n_vocab(m);
    tl_detok *d = NULL;
    char buf[64];
    if (tl_detok_new(m, &d) == TL_OK) {
      for (size_t i = 0; i < n; i++) {
        if (toks[i] < 0 || toks[i] >= nv) abort(); /* a token outside the vocabulary */
        tl_detok_push(d, toks[i], buf, sizeof buf);
      }
      while (tl_detok_flush(d, buf, sizeof buf) > 0) {
      }
      tl_detok_free(d);
    }
  }
  free(toks);
}

void fz_exercise_vocab(const tl_model *m, const uint8_t *text, size_t n) {
  static const char *const fixed[] = {
      "Hello world", " In the beginning  God\n\ncreated the heaven.",
      "<s></s><unk><|endoftext|><|im_start|>x<|im_end|>",
      ("caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 12345 'll 've  \t"),
      ""};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    run_text(m, fixed[i], strlen(fixed[i]), i & 1, i & 2);
  if (n > 0) {
    run_text(m, (const char *)text, n, true, true);
    /* the same bytes made valid UTF-8 (tokenization rejects invalid text) */
    char *t = malloc(n);
    if (t) {
      for (size_t i = 0; i < n; i++) t[i] = (char)(text[i] & 0x7f);
      run_text(m, t, n, false, false);
      free(t);
    }
  }
  /* every piece (bounded) through one detokenizer, and invalid ids */
  int32_t nv = tl_model_n_vocab(m);
  tl_detok *d = NULL;
  char buf[64];
  if (tl_detok_new(m, &d) != TL_OK) return;
  int32_t lim = nv < 4096 ? nv : 4096;
  for (int32_t t = -1; t <= lim; t++) {
    char piece[16];
    tl_token_to_piece(m, t, piece, sizeof piece);
    tl_detok_push(d, t, buf, sizeof buf);
  }
  while (tl_detok_flush(d, buf, sizeof buf) > 0) {
  }
  tl_detok_free(d);
  (void)tl_token_bos(m);
  (void)tl_token_eos(m);
  (void)tl_model_add_bos(m);
  for (int32_t t = 0; t < lim; t++) (void)tl_token_is_eog(m, t);
}

void fz_split(const uint8_t *data, size_t size, size_t *n1, const uint8_t **p2, size_t *n2) {
  static const char mark[] = "\n@@@@\n";
  const size_t ml = sizeof mark - 1;
  *n1 = size;
  *p2 = NULL;
  *n2 = 0;
  for (size_t i = 0; i + ml <= size; i++)
    if (memcmp(data + i, mark, ml) == 0) {
      *n1 = i;
      *p2 = data + i + ml;
      *n2 = size - i - ml;
      return;
    }
}
