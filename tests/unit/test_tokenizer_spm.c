/* SentencePiece-BPE tokenizer: llama.cpp's vocabulary test cases, the
 * input_ids of the reference fixtures, streaming detokenization, pieces,
 * special tokens, error handling and GGUF validation. */
#include "vocabutil.h"

#include <time.h>
#include <unistd.h>

#include "format/gguf.h"

/* ---- helpers -------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- 1. llama.cpp's vocabulary tests (test-tokenizer-0) ------------------- */

/* Runs every case of REL.inp / REL.out; returns the number of cases. */
static int run_vocab_cases(const char *rel) {
  char *path = tl_test_fixture_or_skip(rel);
  if (!path) skip();
  char inp_path[4096], out_path[4096];
  snprintf(inp_path, sizeof inp_path, "%s.inp", path);
  snprintf(out_path, sizeof out_path, "%s.out", path);
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_SPM);
  int n = tl_test_vocab_cases(v, inp_path, out_path, rel, false);
  tl_vocab_free(v);
  free(path);
  return n;
}

static void test_vocab_llama_spm(void **state) {
  (void)state;
  run_vocab_cases("vocab/ggml-vocab-llama-spm.gguf");
}

static void test_vocab_phi3(void **state) {
  (void)state;
  run_vocab_cases("vocab/ggml-vocab-phi-3.gguf");
  /* Phi-3's added tokens eat the whitespace on their right (llama.cpp sets
   * rstrip for them by model name); <|end|> and eos end generation */
  char *path = tl_test_fixture("vocab/ggml-vocab-phi-3.gguf");
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  const char *chat = "<|user|>\nHello<|end|>\n<|assistant|>";
  size_t n = 0;
  tl_token *t = tl_test_tokenize(v, chat, strlen(chat), true, true, &n);
  tl_token hello = tl_vocab_find(v, "\xe2\x96\x81Hello", 8);
  assert_true(hello >= 0);
  const tl_token exp[] = {1, 32010, hello, 32007, 32001};
  assert_int_equal(n, 5);
  assert_memory_equal(t, exp, sizeof exp);
  free(t);
  assert_true(tl_vocab_is_eog(v, 32000));
  assert_true(tl_vocab_is_eog(v, 32007));
  assert_false(tl_vocab_is_eog(v, 32010));
  tl_vocab_free(v);
  free(path);
}

/* ---- 2. input_ids of the reference fixtures -------------------------------- */

typedef struct {
  const char *name;  /* the fixture folder of reference.json */
  const char *gguf;  /* fixture-relative, or absolute */
  bool dummy_prefix; /* the reference tokenizer always adds a leading space */
} ref_case;

static void check_reference(const ref_case *rc) {
  char *gguf = rc->gguf[0] == '/' ? strdup(rc->gguf) : tl_test_fixture_or_skip(rc->gguf);
  char *json = tl_test_fixture_or_skipf("%s/reference.json", rc->name);
  if (gguf && access(gguf, R_OK) != 0) {
    printf("SKIPPED: %s (fixture not found)\n", gguf);
    free(gguf);
    gguf = NULL;
  }
  if (!tl_test_both(&gguf, &json)) return;
  tl_vocab *v = tl_test_vocab_gguf(gguf);
  assert_non_null(v);
  /* The fixture's Hugging Face tokenizer adds SentencePiece's dummy prefix
   * while its GGUF says add_space_prefix = false (as llama.cpp's Gemma
   * converter always writes): the ids match with an explicit leading space. */
  const char *prefix = rc->dummy_prefix && !v->add_space_prefix ? " " : "";
  int n_prompts = 0;
  const int n_ok = tl_test_reference_ids(v, rc->name, prefix, &n_prompts);
  assert_true(n_prompts > 0);
  assert_int_equal(n_ok, n_prompts);
  printf("%s: input_ids of %d prompts match\n", rc->name, n_prompts);
  tl_vocab_free(v);
  free(gguf);
  free(json);
}

static void test_reference_input_ids(void **state) {
  (void)state;
  static const ref_case cases[] = {
      {"llama", "llama/model-q8_0.gguf", false},
      {"mistral", "mistral/model-q8_0.gguf", false},
      {"phi3", "phi3/model-q8_0.gguf", false},
      {"gemma", "gemma/model-q8_0.gguf", true},
      {"gemma2", "gemma2/model-q8_0.gguf", true},
      {"demo", TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_reference(&cases[i]);
}

/* ---- 3. streaming detokenization ------------------------------------------ */

static const char *const detok_texts[] = {
    "Hello world",
    "Führer ½ months – “quotes” …",
    "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～",
    "нещо на Български",
    "  leading spaces\tand\ttabs\n\nnew lines  ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 ꙮ \xef\xbf\xbd",
};

/* Streams tokens through the detokenizer with a given output capacity and
 * checks every chunk is whole UTF-8 characters; returns the concatenation. */
static char *stream(const tl_vocab *v, const tl_token *t, size_t n, size_t cap) {
  tl_detok *d = NULL;
  assert_int_equal(tl_vocab_detok_new(v, &d), TL_OK);
  size_t acc_cap = 1024, acc_n = 0;
  char *acc = malloc(acc_cap);
  char *buf = malloc(cap);
  /* pushes, then flushes until nothing is left (a small buffer may leave
   * complete characters pending after a push) */
  for (size_t i = 0;; i++) {
    size_t w = i < n ? tl_vocab_detok_push(d, t[i], buf, cap) : tl_vocab_detok_flush(d, buf, cap);
    assert_true(w < cap);
    assert_int_equal(buf[w], '\0');
    assert_true(tl_utf8_valid(buf, w)); /* never a partial character */
    if (acc_n + w + 1 > acc_cap) {
      acc_cap = (acc_n + w + 1) * 2;
      acc = realloc(acc, acc_cap);
    }
    memcpy(acc + acc_n, buf, w);
    acc_n += w;
    if (i >= n && w == 0) break;
  }
  acc[acc_n] = '\0';
  tl_vocab_detok_free(d);
  free(buf);
  return acc;
}

static void detok_roundtrip(const char *rel) {
  char *path = rel[0] == '/' ? strdup(rel) : tl_test_fixture_or_skip(rel);
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  int n_bytefallback = 0;
  for (size_t k = 0; k < sizeof detok_texts / sizeof detok_texts[0]; k++) {
    const char *text = detok_texts[k];
    size_t n = 0;
    tl_token *t = tl_test_tokenize(v, text, strlen(text), true, false, &n);
    for (size_t i = 0; i < n; i++) n_bytefallback += tl_vocab_type(v, t[i]) == TL_TOKTYPE_BYTE;
    char expect[1024];
    snprintf(expect, sizeof expect, "%s%s", v->add_space_prefix ? " " : "", text);
    /* piece by piece (BOS is a control token: empty piece) */
    char joined[2048];
    size_t jn = 0;
    for (size_t i = 0; i < n; i++) {
      int32_t m = tl_vocab_piece(v, t[i], joined + jn, sizeof joined - jn);
      assert_true(m >= 0);
      jn += (size_t)m;
    }
    assert_int_equal(jn, strlen(expect));
    assert_memory_equal(joined, expect, jn);
    /* 5: the smallest buffer that holds a 4-byte character and the NUL */
    size_t caps[] = {64, 5, 7};
    for (size_t c = 0; c < 3; c++) {
      char *s = stream(v, t, n, caps[c]);
      assert_string_equal(s, expect);
      free(s);
    }
    free(t);
  }
  assert_true(n_bytefallback > 0); /* the texts exercise byte tokens */
  tl_vocab_free(v);
  free(path);
}

static void test_detok_stream_llama_spm(void **state) {
  (void)state;
  detok_roundtrip("vocab/ggml-vocab-llama-spm.gguf");
}

static void test_detok_stream_demo(void **state) {
  (void)state;
  detok_roundtrip(TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf");
}

/* Byte sequences that never complete become U+FFFD. */
static void test_detok_invalid(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-llama-spm.gguf");
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  tl_token b_f0 = tl_vocab_find(v, "<0xF0>", 6), b_9f = tl_vocab_find(v, "<0x9F>", 6);
  tl_token b_ff = tl_vocab_find(v, "<0xFF>", 6), b_e2 = tl_vocab_find(v, "<0xE2>", 6);
  tl_token b_82 = tl_vocab_find(v, "<0x82>", 6), b_ac = tl_vocab_find(v, "<0xAC>", 6);
  tl_token a = tl_vocab_find(v, "a", 1);
  assert_true(b_f0 >= 0 && b_9f >= 0 && b_ff >= 0 && b_e2 >= 0 && b_82 >= 0 && a >= 0);
  tl_detok *d = NULL;
  assert_int_equal(tl_vocab_detok_new(v, &d), TL_OK);
  char buf[64];
  /* a euro sign, byte by byte: nothing until the last byte */
  assert_int_equal(tl_vocab_detok_push(d, b_e2, buf, sizeof buf), 0);
  assert_string_equal(buf, "");
  assert_int_equal(tl_vocab_detok_push(d, b_82, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_detok_push(d, b_ac, buf, sizeof buf), 3);
  assert_string_equal(buf, "€");
  /* a stray 0xFF */
  assert_int_equal(tl_vocab_detok_push(d, b_ff, buf, sizeof buf), 3);
  assert_string_equal(buf, "\xef\xbf\xbd");
  /* an interrupted sequence */
  assert_int_equal(tl_vocab_detok_push(d, b_e2, buf, sizeof buf), 0);
  tl_vocab_detok_push(d, a, buf, sizeof buf);
  assert_string_equal(buf,
                      "\xef\xbf\xbd"
                      "a");
  /* an incomplete tail at the end */
  assert_int_equal(tl_vocab_detok_push(d, b_f0, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_detok_push(d, b_9f, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_detok_flush(d, buf, sizeof buf), 3);
  assert_string_equal(buf, "\xef\xbf\xbd");
  assert_int_equal(tl_vocab_detok_flush(d, buf, sizeof buf), 0);
  /* invalid tokens add nothing */
  assert_int_equal(tl_vocab_detok_push(d, -5, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_detok_push(d, tl_vocab_n_tokens(v), buf, sizeof buf), 0);
  tl_vocab_detok_free(d);
  tl_vocab_free(v);
  free(path);
}

/* ---- 4. pieces, special tokens, edge cases --------------------------------- */

static void test_pieces_and_specials(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-llama-spm.gguf");
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  assert_int_equal(tl_vocab_n_tokens(v), 32000);
  assert_int_equal(tl_vocab_bos(v), 1);
  assert_int_equal(tl_vocab_eos(v), 2);
  assert_true(tl_vocab_add_bos(v));
  assert_true(tl_vocab_is_eog(v, 2));
  assert_false(tl_vocab_is_eog(v, 1));
  assert_false(tl_vocab_is_eog(v, -1));

  char buf[64];
  /* '▁' becomes a space */
  tl_token hello = tl_vocab_find(v, "\xe2\x96\x81Hello", 8);
  assert_true(hello >= 0);
  assert_int_equal(tl_vocab_piece(v, hello, buf, sizeof buf), 6);
  assert_memory_equal(buf, " Hello", 6);
  /* the length is returned even when it does not fit; nothing beyond cap */
  memset(buf, 'x', sizeof buf);
  assert_int_equal(tl_vocab_piece(v, hello, buf, 3), 6);
  assert_memory_equal(buf, " He", 3);
  assert_int_equal(buf[3], 'x');
  /* byte tokens give their byte */
  assert_int_equal(tl_vocab_piece(v, tl_vocab_find(v, "<0x0A>", 6), buf, sizeof buf), 1);
  assert_int_equal(buf[0], '\n');
  assert_int_equal(tl_vocab_piece(v, tl_vocab_find(v, "<0xE2>", 6), buf, sizeof buf), 1);
  assert_int_equal((unsigned char)buf[0], 0xE2);
  /* control and unknown tokens have no text */
  assert_int_equal(tl_vocab_piece(v, 0, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_piece(v, 1, buf, sizeof buf), 0);
  assert_int_equal(tl_vocab_piece(v, 2, buf, sizeof buf), 0);
  /* out of range */
  assert_int_equal(tl_vocab_piece(v, -1, buf, sizeof buf), -1);
  assert_int_equal(tl_vocab_piece(v, 32000, buf, sizeof buf), -1);

  /* empty text: BOS or nothing */
  tl_token out[256];
  size_t n = 99;
  assert_int_equal(tl_vocab_tokenize(v, "", 0, true, false, out, 256, &n), TL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(out[0], 1);
  assert_int_equal(tl_vocab_tokenize(v, "", 0, false, false, out, 256, &n), TL_OK);
  assert_int_equal(n, 0);
  assert_int_equal(tl_vocab_tokenize(v, NULL, 0, false, false, NULL, 0, &n), TL_OK);
  assert_int_equal(n, 0);

  /* BOS + text */
  assert_int_equal(tl_vocab_tokenize(v, "Hello", 5, true, false, out, 256, &n), TL_OK);
  assert_int_equal(n, 2);
  assert_int_equal(out[0], 1);
  assert_int_equal(out[1], hello);

  /* too small a buffer: the count needed */
  assert_int_equal(tl_vocab_tokenize(v, "Hello world", 11, true, false, out, 1, &n),
                   TL_ERR_INVALID_ARG);
  assert_int_equal(n, 3);

  /* special tokens: parsed only with parse_special; a text fragment after a
   * special token gets the space prefix again (as llama.cpp) */
  const char *s = "<s>Hello</s>";
  assert_int_equal(tl_vocab_tokenize(v, s, strlen(s), false, true, out, 256, &n), TL_OK);
  assert_int_equal(n, 3);
  assert_int_equal(out[0], 1);
  assert_int_equal(out[1], hello);
  assert_int_equal(out[2], 2);
  assert_int_equal(tl_vocab_tokenize(v, s, strlen(s), false, false, out, 256, &n), TL_OK);
  assert_true(n > 3);
  for (size_t i = 0; i < n; i++) assert_true(out[i] != 1 && out[i] != 2);
  /* "<unk>" is a special (unknown-type) token only with parse_special */
  assert_int_equal(tl_vocab_tokenize(v, "<unk>", 5, false, true, out, 256, &n), TL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(out[0], 0);

  tl_vocab_free(v);
  free(path);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-llama-spm.gguf");
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  /* stray bytes, overlong forms, a surrogate, above U+10FFFF, truncated */
  static const char *const bad[] = {
      "\xff",      "abc\x80",      "\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
      "x\xe2\x82", "\xf0\x9f\x98", "\xc3(",
  };
  tl_token out[64];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = 7;
    tl_status st = tl_vocab_tokenize(v, bad[i], strlen(bad[i]), true, true, out, 64, &n);
    assert_int_equal(st, TL_ERR_TOKENIZER);
    assert_true(strstr(tl_last_error(), "UTF-8") != NULL);
    assert_false(tl_utf8_valid(bad[i], strlen(bad[i])));
  }
  /* valid edge cases */
  static const char *const good[] = {"\xc2\x80",         "\xe0\xa0\x80",     "\xed\x9f\xbf",
                                     "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\xef\xbf\xbd"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    size_t n = 0;
    assert_true(tl_utf8_valid(good[i], strlen(good[i])));
    assert_int_equal(tl_vocab_tokenize(v, good[i], strlen(good[i]), false, false, out, 64, &n),
                     TL_OK);
    assert_true(n >= 1);
  }
  /* embedded NUL is a character like any other */
  size_t n = 0;
  assert_int_equal(tl_vocab_tokenize(v, "a\0b", 3, false, false, out, 64, &n), TL_OK);
  assert_true(n >= 3);
  tl_vocab_free(v);
  free(path);
}

/* 100 KB of text tokenizes quickly (priority-queue merges, hashed lookups),
 * and identically when split at fragment boundaries. */
static void test_speed(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-llama-spm.gguf");
  if (!path) skip();
  char inp_path[4096];
  snprintf(inp_path, sizeof inp_path, "%s.inp", path);
  size_t inp_n = 0;
  char *inp = tl_test_read_file(inp_path, &inp_n);
  assert_non_null(inp);
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_non_null(v);
  size_t target = 100 * 1024;
  char *big = malloc(target + inp_n + 1);
  size_t bn = 0;
  while (bn < target) {
    memcpy(big + bn, inp, inp_n);
    bn += inp_n;
  }
  double t0 = now_s();
  size_t n = 0;
  tl_token *t = tl_test_tokenize(v, big, bn, true, true, &n);
  double dt = now_s() - t0;
  printf("tokenized %zu bytes into %zu tokens in %.3f s\n", bn, n, dt);
  assert_true(n > bn / 8);
  assert_true(dt < 2.0);
  /* detokenized, it is the text again (with the space prefix) */
  char *s = stream(v, t, n, 64);
  assert_int_equal(strlen(s), bn + 1);
  assert_int_equal(s[0], ' ');
  assert_memory_equal(s + 1, big, bn);
  free(s);
  free(t);

  /* one long word: no spaces at all */
  memset(big, 'a', target);
  t0 = now_s();
  t = tl_test_tokenize(v, big, target, false, false, &n);
  dt = now_s() - t0;
  printf("tokenized %zu bytes of 'a' into %zu tokens in %.3f s\n", target, n, dt);
  assert_true(dt < 2.0);
  free(t);
  free(big);
  free(inp);
  tl_vocab_free(v);
  free(path);
}

/* ---- 5. synthetic vocabularies: algorithm details and validation ---------- */

typedef struct {
  uint8_t *p;
  size_t n, cap;
  uint64_t n_kv;
} gbuf;

static void gput(gbuf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 256;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void gu32(gbuf *b, uint32_t x) {
  gput(b, &x, 4);
}
static void gu64(gbuf *b, uint64_t x) {
  gput(b, &x, 8);
}
static void gstr(gbuf *b, const char *s) {
  gu64(b, strlen(s));
  gput(b, s, strlen(s));
}
static void gkey(gbuf *b, const char *k, uint32_t type) {
  gstr(b, k);
  gu32(b, type);
  b->n_kv++;
}

typedef struct {
  const char *model;
  int n;
  const char *const *tokens;
  const float *scores;
  int n_scores;
  const int32_t *types;
  int n_types;
  int64_t bos;          /* -2: absent */
  int add_space_prefix; /* -1: absent */
} synth;

/* Builds a GGUF (no tensors) with the kv pairs first, header patched last. */
static uint8_t *build_gguf(const synth *s, size_t *size) {
  gbuf kv = {0};
  gkey(&kv, "general.architecture", TL_GGUF_STRING);
  gstr(&kv, "llama");
  if (s->model) {
    gkey(&kv, "tokenizer.ggml.model", TL_GGUF_STRING);
    gstr(&kv, s->model);
  }
  if (s->tokens) {
    gkey(&kv, "tokenizer.ggml.tokens", TL_GGUF_ARRAY);
    gu32(&kv, TL_GGUF_STRING);
    gu64(&kv, (uint64_t)s->n);
    for (int i = 0; i < s->n; i++) gstr(&kv, s->tokens[i]);
  }
  if (s->scores) {
    gkey(&kv, "tokenizer.ggml.scores", TL_GGUF_ARRAY);
    gu32(&kv, TL_GGUF_F32);
    gu64(&kv, (uint64_t)s->n_scores);
    gput(&kv, s->scores, (size_t)s->n_scores * 4);
  }
  if (s->types) {
    gkey(&kv, "tokenizer.ggml.token_type", TL_GGUF_ARRAY);
    gu32(&kv, TL_GGUF_I32);
    gu64(&kv, (uint64_t)s->n_types);
    gput(&kv, s->types, (size_t)s->n_types * 4);
  }
  if (s->bos != -2) {
    gkey(&kv, "tokenizer.ggml.bos_token_id", TL_GGUF_U32);
    gu32(&kv, (uint32_t)s->bos);
  }
  if (s->add_space_prefix >= 0) {
    gkey(&kv, "tokenizer.ggml.add_space_prefix", TL_GGUF_BOOL);
    uint8_t b = (uint8_t)s->add_space_prefix;
    gput(&kv, &b, 1);
  }
  gbuf out = {0};
  gput(&out, "GGUF", 4);
  gu32(&out, 3);
  gu64(&out, 0);
  gu64(&out, kv.n_kv);
  gput(&out, kv.p, kv.n);
  /* pad to the default alignment */
  while (out.n % 32) gput(&out, "", 1);
  free(kv.p);
  *size = out.n;
  return out.p;
}

static tl_status synth_vocab(const synth *s, tl_vocab **v) {
  size_t size = 0;
  uint8_t *data = build_gguf(s, &size);
  tl_gguf *g = NULL;
  tl_status st = tl_gguf_parse(data, size, &g);
  if (st != TL_OK) fail_msg("synthetic gguf: %s", tl_last_error());
  st = tl_vocab_from_gguf(g, v);
  tl_gguf_free(g);
  free(data);
  return st;
}

static const char *const syn_tokens[] = {
    "<unk>",  "<s>",    "</s>",  "\xe2\x96\x81",   "a", "b", "c", "ab", "bc", "abc", "<0x41>",
    "<0xC3>", "<0xA9>", "<|x|>", "\342\226\201ab", /* "▁ab" */
};
static const float syn_scores[] = {0, 0, 0, -1, -2, -2, -2, -5, -3, -1, 0, 0, 0, 0, -4};
static const int32_t syn_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6, 6, 4, 1};
#define SYN_N ((int)(sizeof syn_tokens / sizeof syn_tokens[0]))

static synth syn_base(void) {
  synth s = {"llama", SYN_N, syn_tokens, syn_scores, SYN_N, syn_types, SYN_N, -2, 0};
  return s;
}

static void expect_ids(const tl_vocab *v, const char *text, bool special, const tl_token *exp,
                       size_t n_exp) {
  size_t n = 0;
  tl_token *got = tl_test_tokenize(v, text, strlen(text), false, special, &n);
  if (n != n_exp || memcmp(got, exp, n * sizeof *got) != 0) {
    printf("text '%s'\n", text);
    tl_test_print_ids("expected", exp, n_exp);
    tl_test_print_ids("got     ", got, n);
    fail();
  }
  free(got);
}

static void test_synthetic_bpe(void **state) {
  (void)state;
  synth s = syn_base();
  tl_vocab *v = NULL;
  assert_int_equal(synth_vocab(&s, &v), TL_OK);
  /* "abc": pairs ab (-5) and bc (-3): bc first, then a+bc = abc (-1) */
  expect_ids(v, "abc", false, (const tl_token[]){9}, 1);
  /* "abab": ab (-5) twice, ties leftmost; ab+ab is no token */
  expect_ids(v, "abab", false, (const tl_token[]){7, 7}, 2);
  /* "bcbc": bc, bc */
  expect_ids(v, "bcbc", false, (const tl_token[]){8, 8}, 2);
  /* byte fallback: 'A' has a byte token, 'é' (C3 A9) too, 'Z' has none: UNK */
  expect_ids(v, "A\xc3\xa9Z", false, (const tl_token[]){10, 11, 12, 0}, 4);
  /* spaces become ▁; "▁ab" is a token (-4) but bc (-3) wins first */
  expect_ids(v, " abc", false, (const tl_token[]){3, 9}, 2);
  expect_ids(v, " ab", false, (const tl_token[]){14}, 1);
  /* user-defined tokens are split off even without parse_special */
  expect_ids(v, "a<|x|>b", false, (const tl_token[]){4, 13, 5}, 3);
  /* control tokens only with parse_special */
  expect_ids(v, "<s>a", true, (const tl_token[]){1, 4}, 2);
  tl_vocab_free(v);

  /* with the space prefix: every fragment after a special token gets one */
  s.add_space_prefix = 1;
  assert_int_equal(synth_vocab(&s, &v), TL_OK);
  expect_ids(v, "ab", false, (const tl_token[]){14}, 1);
  expect_ids(v, "ab<s>ab", true, (const tl_token[]){14, 1, 14}, 3);
  expect_ids(v, "<s>", true, (const tl_token[]){1}, 1);
  tl_vocab_free(v);

  /* defaults: add_space_prefix on, bos 1, eos 2 */
  s.add_space_prefix = -1;
  assert_int_equal(synth_vocab(&s, &v), TL_OK);
  expect_ids(v, "ab", false, (const tl_token[]){14}, 1);
  assert_int_equal(tl_vocab_bos(v), 1);
  assert_int_equal(tl_vocab_eos(v), 2);
  tl_vocab_free(v);
}

static void test_gguf_validation(void **state) {
  (void)state;
  tl_vocab *v = NULL;
  synth s = syn_base();
  s.model = "bert"; /* (gpt2 is byte-level BPE: test_tokenizer_bpe.c) */
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_UNSUPPORTED);
  assert_null(v);
  s = syn_base();
  s.model = NULL;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_UNSUPPORTED);
  s = syn_base();
  s.tokens = NULL;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  s = syn_base();
  s.n_scores = SYN_N - 1;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  assert_true(strstr(tl_last_error(), "scores") != NULL);
  s = syn_base();
  s.n_types = SYN_N - 2;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  s = syn_base();
  s.bos = SYN_N;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  assert_true(strstr(tl_last_error(), "bos_token_id") != NULL);
  int32_t bad_types[SYN_N];
  memcpy(bad_types, syn_types, sizeof bad_types);
  bad_types[4] = 9;
  s = syn_base();
  s.types = bad_types;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  bad_types[4] = TL_TOKTYPE_BYTE; /* "a" is not <0xXX> */
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  float nan_scores[SYN_N];
  memcpy(nan_scores, syn_scores, sizeof nan_scores);
  nan_scores[3] = 0.0f / 0.0f;
  s = syn_base();
  s.scores = nan_scores;
  assert_int_equal(synth_vocab(&s, &v), TL_ERR_FORMAT);
  assert_null(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vocab_llama_spm),
      cmocka_unit_test(test_vocab_phi3),
      cmocka_unit_test(test_reference_input_ids),
      cmocka_unit_test(test_detok_stream_llama_spm),
      cmocka_unit_test(test_detok_stream_demo),
      cmocka_unit_test(test_detok_invalid),
      cmocka_unit_test(test_pieces_and_specials),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_speed),
      cmocka_unit_test(test_synthetic_bpe),
      cmocka_unit_test(test_gguf_validation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
