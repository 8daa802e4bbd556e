#include "vocabutil.h"

#include "format/gguf.h"

tl_vocab *tl_test_vocab_gguf(const char *path) {
  tl_gguf *g = NULL;
  if (tl_gguf_open(path, &g) != TL_OK) fail_msg("cannot open %s: %s", path, tl_last_error());
  tl_vocab *v = NULL;
  tl_status st = tl_vocab_from_gguf(g, &v);
  tl_gguf_free(g); /* the vocabulary keeps copies */
  if (st != TL_OK) fail_msg("vocab of %s: %s", path, tl_last_error());
  return v;
}

tl_token *tl_test_tokenize(const tl_vocab *v, const char *text, size_t len, bool bos, bool special,
                           size_t *n) {
  size_t need = 0;
  tl_status st = tl_vocab_tokenize(v, text, len, bos, special, NULL, 0, &need);
  if (st != TL_OK && st != TL_ERR_INVALID_ARG) fail_msg("tokenize: %s", tl_last_error());
  tl_token *out = malloc((need + 1) * sizeof *out);
  assert_non_null(out);
  size_t got = 0;
  st = tl_vocab_tokenize(v, text, len, bos, special, out, need, &got);
  if (st != TL_OK) fail_msg("tokenize: %s", tl_last_error());
  assert_int_equal(got, need);
  *n = got;
  return out;
}

void tl_test_print_ids(const char *label, const tl_token *t, size_t n) {
  printf("  %s:", label);
  for (size_t i = 0; i < n && i < 64; i++) printf(" %d", (int)t[i]);
  printf("%s\n", n > 64 ? " ..." : "");
}

char *tl_test_pieces(const tl_vocab *v, const tl_token *t, size_t n, size_t *len) {
  size_t cap = 64, m = 0;
  char *s = malloc(cap);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++) {
    int32_t l = tl_vocab_piece(v, t[i], NULL, 0);
    assert_true(l >= 0);
    if (m + (size_t)l + 1 > cap) {
      cap = (m + (size_t)l + 1) * 2;
      s = realloc(s, cap);
      assert_non_null(s);
    }
    assert_int_equal(tl_vocab_piece(v, t[i], s + m, (size_t)l), l);
    m += (size_t)l;
  }
  s[m] = '\0';
  *len = m;
  return s;
}

int tl_test_reference_ids(const tl_vocab *v, const char *arch, const char *prefix, int *n_prompts) {
  tl_test_prompt ps[16];
  const int np = tl_test_load_prompts(arch, ps, 16);
  int n_ok = 0;
  for (int i = 0; i < np; i++) {
    size_t lp = strlen(prefix), lt = strlen(ps[i].text);
    char *txt = malloc(lp + lt + 1);
    assert_non_null(txt);
    memcpy(txt, prefix, lp);
    memcpy(txt + lp, ps[i].text, lt + 1);
    size_t n = 0;
    tl_token *got = tl_test_tokenize(v, txt, lp + lt, tl_vocab_add_bos(v), true, &n);
    const bool ok = n == (size_t)ps[i].n_ids && memcmp(got, ps[i].ids, n * sizeof *got) == 0;
    if (!ok) {
      printf("MISMATCH %s prompt %d: '%s'\n", arch, i, txt);
      tl_test_print_ids("expected", ps[i].ids, (size_t)ps[i].n_ids);
      tl_test_print_ids("got     ", got, n);
    }
    n_ok += ok;
    free(got);
    free(txt);
  }
  tl_test_free_prompts(ps, np);
  *n_prompts = np;
  return n_ok;
}

#define SEP "\n__ggml_vocab_test__\n"

int tl_test_vocab_cases(const tl_vocab *v, const char *inp_path, const char *out_path,
                        const char *label, bool round_trip) {
  size_t inp_n = 0, out_n = 0;
  char *inp = tl_test_read_file(inp_path, &inp_n);
  char *outs = tl_test_read_file(out_path, &out_n);
  assert_non_null(inp);
  assert_non_null(outs);
  static tl_token exp[8192];
  int n_cases = 0, n_pass = 0;
  char *p = inp, *line = outs;
  for (;;) {
    char *sep = strstr(p, SEP);
    if (!sep) break;
    char *eol = strchr(line, '\n');
    assert_non_null(eol);
    *eol = '\0';
    size_t n_exp = 0;
    for (char *q = line; *q;) {
      while (*q == ' ') q++;
      if (!*q) break;
      char *end;
      long id = strtol(q, &end, 10);
      assert_true(end > q);
      assert_true(n_exp < sizeof exp / sizeof exp[0]);
      exp[n_exp++] = (tl_token)id;
      q = end;
    }
    /* as test-tokenizer-0: no BOS, no special-token parsing */
    size_t n = 0;
    tl_token *got = tl_test_tokenize(v, p, (size_t)(sep - p), false, false, &n);
    if (n == n_exp && (n == 0 || memcmp(got, exp, n * sizeof *got) == 0)) {
      n_pass++;
    } else {
      printf("MISMATCH %s case %d: '%.*s'\n", label, n_cases, (int)(sep - p), p);
      tl_test_print_ids("expected", exp, n_exp);
      tl_test_print_ids("got     ", got, n);
    }
    if (round_trip) { /* the pieces give the text back */
      size_t pl = 0;
      char *back = tl_test_pieces(v, got, n, &pl);
      assert_int_equal(pl, (size_t)(sep - p));
      assert_memory_equal(back, p, pl);
      free(back);
    }
    free(got);
    n_cases++;
    p = sep + strlen(SEP);
    line = eol + 1;
  }
  printf("%s: %d/%d cases match\n", label, n_pass, n_cases);
  assert_true(n_cases >= 40);
  assert_int_equal(n_pass, n_cases);
  free(inp);
  free(outs);
  return n_cases;
}
