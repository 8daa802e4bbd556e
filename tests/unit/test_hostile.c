/* Hostile inputs, generated here (no committed binaries): semantic errors in
 * otherwise well-formed GGUF files (missing tensors, wrong shapes, NaN/Inf
 * weights, overlapping tensor data), vocabularies with invalid UTF-8 and
 * merges over unknown tokens, type confusion in tokenizer.json and its
 * companions, huge claimed counts (bounded time and memory), and the CLI's
 * runtime limits. Every rejection must carry a message naming the problem,
 * and the CLI must exit with status 1. Parser-level cases (truncation,
 * magic, versions, counts, offsets) are in test_gguf.c and test_hf_loader.c. */
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "format/gguf_write.h"
#include "quant/quant.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- a tiny LLaMA, built as a GGUF view and written with the library's writer */

enum { D = 32, NH = 2, NKV = 1, FF = 64, HD = D / NH };

typedef struct spec {
  const char *omit;      /* a tensor left out */
  const char *reshape;   /* a tensor whose last dimension is one larger */
  const char *bad_value; /* a tensor whose first value is bad_f */
  float bad_f;
  const char *three_d; /* a matrix stored with an extra dimension of 1... made 2 */
  int n_layer;
  bool fused_qkv;
  int qkv_extra_rows;
  const char *const *tokens; /* NULL: the default 8 */
  int n_tokens;
  const char *tok_model;     /* "llama" (default) or "gpt2" */
  const char *const *merges; /* gpt2 */
  int n_merges;
} spec;

static const char *const k_tokens[8] = {"<unk>",
                                        "<s>",
                                        "</s>",
                                        "\xe2\x96\x81",
                                        "a",
                                        "b",
                                        "\xe2\x96\x81"
                                        "a",
                                        "ab"};

static void chk(tl_status s) {
  if (s != TL_OK) fail_msg("building the test model: %s", tl_last_error());
}

static void add_t(tl_gguf *g, const spec *sp, const char *name, int64_t ne0, int64_t ne1,
                  bool norm) {
  if (sp->omit && !strcmp(sp->omit, name)) return;
  int64_t ne[3] = {ne0, ne1, 1};
  uint32_t nd = ne1 > 1 || sp->three_d ? 2 : 1;
  if (ne1 <= 1) ne[1] = 1;
  if (sp->reshape && !strcmp(sp->reshape, name)) ne[nd - 1] += 1;
  if (sp->three_d && !strcmp(sp->three_d, name)) {
    ne[1] = ne1 > 1 ? ne1 / 2 : 1;
    ne[2] = 2;
    nd = 3;
  }
  size_t cnt = (size_t)(ne[0] * ne[1] * ne[2]);
  float *f = malloc(cnt * sizeof *f);
  assert_non_null(f);
  uint32_t r = 7;
  for (size_t i = 0; i < cnt; i++) {
    r = r * 1664525u + 1013904223u;
    float u = (float)(r >> 8) / 16777216.0f - 0.5f;
    f[i] = norm ? 1.0f + 0.1f * u : u;
  }
  if (sp->bad_value && !strcmp(sp->bad_value, name))
    for (size_t i = 0; i < cnt; i += 7) f[i] = sp->bad_f;
  chk(tl_gguf_own(g, f, free));
  chk(tl_gguf_add_tensor(g, name, TL_TYPE_F32, nd, ne, f, cnt * sizeof(float)));
}

/* Writes the model of sp to a temporary file; returns its path (malloc'd). */
static char *write_model(const spec *sp) {
  tl_gguf *g;
  chk(tl_gguf_new_virtual(&g));
  int nl = sp->n_layer ? sp->n_layer : 1;
  const char *const *toks = sp->tokens ? sp->tokens : k_tokens;
  int nv = sp->tokens ? sp->n_tokens : 8;
  chk(tl_gguf_set_str(g, "general.architecture", "llama", 5));
  chk(tl_gguf_set_u32(g, "llama.block_count", (uint32_t)nl));
  chk(tl_gguf_set_u32(g, "llama.context_length", 64));
  chk(tl_gguf_set_u32(g, "llama.embedding_length", D));
  chk(tl_gguf_set_u32(g, "llama.feed_forward_length", FF));
  chk(tl_gguf_set_u32(g, "llama.attention.head_count", NH));
  chk(tl_gguf_set_u32(g, "llama.attention.head_count_kv", NKV));
  chk(tl_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
  const char *tm = sp->tok_model ? sp->tok_model : "llama";
  chk(tl_gguf_set_str(g, "tokenizer.ggml.model", tm, strlen(tm)));
  tl_str *ts = calloc((size_t)nv, sizeof *ts);
  int32_t *types = calloc((size_t)nv, sizeof *types);
  assert_true(ts && types);
  for (int i = 0; i < nv; i++) {
    ts[i] = (tl_str){toks[i], strlen(toks[i])};
    types[i] = toks[i][0] == '<' && toks[i][1] != '0' && strlen(toks[i]) > 2 ? 3 : 1;
  }
  chk(tl_gguf_set_str_arr(g, "tokenizer.ggml.tokens", ts, (uint64_t)nv));
  chk(tl_gguf_set_arr(g, "tokenizer.ggml.token_type", TL_GGUF_I32, types, (uint64_t)nv));
  free(ts);
  free(types);
  if (sp->merges) {
    tl_str *ms = calloc((size_t)sp->n_merges, sizeof *ms);
    assert_non_null(ms);
    for (int i = 0; i < sp->n_merges; i++) ms[i] = (tl_str){sp->merges[i], strlen(sp->merges[i])};
    chk(tl_gguf_set_str_arr(g, "tokenizer.ggml.merges", ms, (uint64_t)sp->n_merges));
    free(ms);
  }
  add_t(g, sp, "token_embd.weight", D, nv, false);
  add_t(g, sp, "output_norm.weight", D, 1, true);
  add_t(g, sp, "output.weight", D, nv, false);
  for (int il = 0; il < nl; il++) {
    char n[64];
#define N(x) (snprintf(n, sizeof n, "blk.%d." x, il), n)
    add_t(g, sp, N("attn_norm.weight"), D, 1, true);
    if (sp->fused_qkv) {
      add_t(g, sp, N("attn_qkv.weight"), D, NH * HD + 2 * NKV * HD + sp->qkv_extra_rows, false);
    } else {
      add_t(g, sp, N("attn_q.weight"), D, NH * HD, false);
      add_t(g, sp, N("attn_k.weight"), D, NKV * HD, false);
      add_t(g, sp, N("attn_v.weight"), D, NKV * HD, false);
    }
    add_t(g, sp, N("attn_output.weight"), NH * HD, D, false);
    add_t(g, sp, N("ffn_norm.weight"), D, 1, true);
    add_t(g, sp, N("ffn_gate.weight"), D, FF, false);
    add_t(g, sp, N("ffn_up.weight"), D, FF, false);
    add_t(g, sp, N("ffn_down.weight"), FF, D, false);
#undef N
  }
  char *path = tl_test_tmpfile(".gguf");
  assert_non_null(path);
  chk(tl_gguf_write(g, path));
  tl_gguf_free(g);
  return path;
}

static tl_model *load_ok(const char *path) {
  tl_model *m = NULL;
  if (tl_model_load(path, NULL, &m) != TL_OK) fail_msg("load of %s: %s", path, tl_last_error());
  return m;
}

#define EXPECT_LOAD_FAIL(path, want, sub1, sub2) \
  expect_load_fail_at((path), (want), (sub1), (sub2), __LINE__)
static void expect_load_fail_at(const char *path, tl_status want, const char *sub1,
                                const char *sub2, int line) {
  tl_model *m = NULL;
  tl_clear_error();
  double t0 = now_s();
  tl_status s = tl_model_load(path, NULL, &m);
  double dt = now_s() - t0;
  if (s == TL_OK) {
    tl_model_free(m);
    fail_msg("line %d: %s loaded; expected a failure naming '%s'", line, path, sub1);
  }
  const char *msg = tl_last_error();
  print_message("  line %d: %s (%.3f s)\n", line, msg, dt);
  assert_null(m);
  if (want && s != want)
    fail_msg("line %d: status %s, expected %s (%s)", line, tl_status_name(s), tl_status_name(want),
             msg);
  if (sub1 && !strstr(msg, sub1)) fail_msg("line %d: '%s' lacks '%s'", line, msg, sub1);
  if (sub2 && !strstr(msg, sub2)) fail_msg("line %d: '%s' lacks '%s'", line, msg, sub2);
  if (dt > 5.0) fail_msg("line %d: rejecting took %.1f s", line, dt);
}

static int cli_at(const char *args, char **err, int line) {
  char *out = NULL;
  *err = NULL;
  int rc = tl_test_run_cli(args, &out, err);
  free(out);
  if (!*err) *err = calloc(1, 1);
  if (strstr(*err, "Sanitizer") || strstr(*err, "runtime error"))
    fail_msg("line %d: '%s': sanitizer report:\n%s", line, args, *err);
  return rc;
}

/* The CLI exits with status 1 and an error naming sub. */
#define EXPECT_CLI_FAIL(args, sub) expect_cli_fail_at((args), (sub), __LINE__)
static void expect_cli_fail_at(const char *args, const char *sub, int line) {
  char *err;
  int rc = cli_at(args, &err, line);
  if (rc != 1) fail_msg("line %d: '%s': exit status %d, expected 1\n%s", line, args, rc, err);
  if (!strstr(err, "error")) fail_msg("line %d: '%s': no error message: %s", line, args, err);
  if (sub && !strstr(err, sub))
    fail_msg("line %d: '%s': stderr lacks '%s': %s", line, args, sub, err);
  print_message("  %s", err);
  free(err);
}

static bool have_cli(void) {
  if (access(TL_CLI_PATH, X_OK) == 0) return true;
  print_message("SKIPPED: %s not built\n", TL_CLI_PATH);
  return false;
}

/* ---- 1. semantic errors in well-formed files ------------------------------- */

static void test_semantic(void **state) {
  (void)state;
  spec sp = {0};
  char *p = write_model(&sp);
  tl_model_free(load_ok(p)); /* control */
  unlink(p);
  free(p);
  static const struct {
    spec sp;
    const char *sub1, *sub2;
  } cases[] = {
      {{.omit = "blk.0.ffn_down.weight"}, "missing tensor", "blk.0.ffn_down.weight"},
      {{.omit = "blk.1.attn_v.weight", .n_layer = 2}, "missing tensor", "blk.1.attn_v.weight"},
      {{.omit = "blk.0.ffn_norm.weight"}, "missing tensor", "blk.0.ffn_norm.weight"},
      {{.reshape = "blk.0.attn_output.weight"}, "blk.0.attn_output.weight", "shape"},
      {{.reshape = "output_norm.weight"}, "output_norm.weight", "shape"},
      {{.reshape = "blk.0.ffn_gate.weight"}, "blk.0.ffn_gate.weight", "shape"},
      {{.three_d = "blk.0.attn_q.weight"}, "blk.0.attn_q.weight", "shape"},
      {{.fused_qkv = true, .qkv_extra_rows = 1}, "blk.0.attn_qkv.weight", "shape"},
      {{.reshape = "token_embd.weight"}, "output.weight", "shape"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    p = write_model(&cases[i].sp);
    EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, cases[i].sub1, cases[i].sub2);
    if (i % 4 == 0 && have_cli()) {
      char args[1024];
      snprintf(args, sizeof args, "run -m '%s' -p ab -n 1 -t 1", p);
      EXPECT_CLI_FAIL(args, cases[i].sub1);
    }
    unlink(p);
    free(p);
  }
  spec fused = {.fused_qkv = true};
  p = write_model(&fused);
  tl_model_free(load_ok(p)); /* a fused qkv of the right shape loads */
  unlink(p);
  free(p);
}

/* ---- 1b. mixture-of-experts metadata against the tensors ---------------------- */

/* llama.cpp's Mixtral file (4 experts, 2 per token) with its expert counts
 * overridden: each contradiction is refused, naming what is wrong. */
static void moe_expect_fail(const char *path, const char *ov, const char *sub1, const char *sub2) {
  const char *ovs[2] = {ov, NULL};
  tl_model_params mp = tl_model_default_params();
  mp.kv_overrides = ovs;
  tl_model *m = NULL;
  tl_clear_error();
  tl_status s = tl_model_load(path, &mp, &m);
  if (s == TL_OK) {
    tl_model_free(m);
    fail_msg("%s with %s loaded", path, ov);
  }
  const char *msg = tl_last_error();
  print_message("  %s: %s\n", ov, msg);
  assert_int_equal(s, TL_ERR_FORMAT);
  if (!strstr(msg, sub1)) fail_msg("'%s' lacks '%s'", msg, sub1);
  if (sub2 && !strstr(msg, sub2)) fail_msg("'%s' lacks '%s'", msg, sub2);
}

static void test_moe_metadata(void **state) {
  (void)state;
  char *path = tl_test_fixture_or_skip("mixtral/model-q8_0.gguf");
  if (!path) return;
  tl_model_free(load_ok(path)); /* control */
  moe_expect_fail(path, "llama.expert_used_count=int:5", "expert_used_count 5", "expert_count 4");
  moe_expect_fail(path, "llama.expert_used_count=int:0", "expert_used_count 0", NULL);
  moe_expect_fail(path, "llama.expert_count=int:0", "expert_count 0", NULL);
  moe_expect_fail(path, "llama.expert_count=int:100000", "expert_count 100000", NULL);
  moe_expect_fail(path, "llama.expert_count=int:8", "blk.0.ffn_gate_inp.weight", "shape");
  moe_expect_fail(path, "llama.expert_count=int:3", "blk.0.ffn_gate_inp.weight", "shape");
  moe_expect_fail(path, "llama.expert_feed_forward_length=int:128", "expert_feed_forward_length",
                  "256 wide");
  moe_expect_fail(path, "llama.expert_weights_norm=int:1", "expert_weights_norm", "bool");
  free(path);
}

/* ---- 2. overlapping and misplaced tensor data -------------------------------- */

/* Offset of the tensor-info "offset" field of tensor name in a GGUF file. */
static size_t info_offset_field(const uint8_t *d, size_t n, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 8; i + 8 + nl < n; i++) {
    if (tl_rd_u64(d + i - 8) != nl || memcmp(d + i, name, nl) != 0) continue;
    size_t q = i + nl;
    uint32_t nd = tl_rd_u32(d + q);
    if (nd < 1 || nd > 4) continue;
    return q + 4 + 8 * nd + 4;
  }
  fail_msg("tensor info of %s not found", name);
  return 0;
}

static void patch_and_expect(const char *name, uint64_t (*patch)(uint64_t own, uint64_t other),
                             const char *sub1, const char *sub2) {
  spec sp = {0};
  char *p = write_model(&sp);
  size_t n;
  uint8_t *d = (uint8_t *)tl_test_read_file(p, &n);
  assert_non_null(d);
  size_t at = info_offset_field(d, n, name);
  size_t other = info_offset_field(d, n, "blk.0.attn_q.weight");
  uint64_t v = patch(tl_rd_u64(d + at), tl_rd_u64(d + other));
  memcpy(d + at, &v, 8);
  assert_int_equal(tl_test_write_file(p, d, n), 0);
  EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, sub1, sub2);
  if (have_cli()) {
    char args[1024];
    snprintf(args, sizeof args, "'%s' hello -n 1 -t 1", p);
    EXPECT_CLI_FAIL(args, sub1);
  }
  unlink(p);
  free(p);
  free(d);
}

static uint64_t same_as_other(uint64_t own, uint64_t other) {
  (void)own;
  return other;
}
static uint64_t plus_32(uint64_t own, uint64_t other) {
  (void)own;
  return other + 32;
}
static uint64_t misalign(uint64_t own, uint64_t other) {
  (void)other;
  return own + 4;
}
static uint64_t past_eof(uint64_t own, uint64_t other) {
  (void)own;
  (void)other;
  return (uint64_t)1 << 40;
}
static uint64_t huge(uint64_t own, uint64_t other) {
  (void)own;
  (void)other;
  return UINT64_MAX - 31;
}

static void test_tensor_data_placement(void **state) {
  (void)state;
  patch_and_expect("blk.0.attn_k.weight", same_as_other, "overlap", "blk.0.attn_");
  patch_and_expect("blk.0.attn_k.weight", plus_32, "overlap", "blk.0.attn_");
  patch_and_expect("blk.0.attn_k.weight", misalign, "aligned", "blk.0.attn_k.weight");
  patch_and_expect("blk.0.attn_k.weight", past_eof, "past the end", "blk.0.attn_k.weight");
  patch_and_expect("blk.0.attn_k.weight", huge, "blk.0.attn_k.weight", NULL);
}

/* ---- 3. NaN and Inf weights --------------------------------------------------- */

static void test_non_finite_weights(void **state) {
  (void)state;
  /* in norm vectors (converted at load): rejected */
  spec sp = {.bad_value = "output_norm.weight", .bad_f = INFINITY};
  char *p = write_model(&sp);
  EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, "output_norm.weight", "non-finite");
  unlink(p);
  free(p);
  sp = (spec){.bad_value = "blk.0.ffn_norm.weight", .bad_f = -INFINITY};
  p = write_model(&sp);
  EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, "blk.0.ffn_norm.weight", "non-finite");
  unlink(p);
  free(p);
  /* in matrices (not scanned at load, as llama.cpp): the model loads, and
   * tl_decode reports the non-finite logits instead of returning garbage */
  static const char *const mats[] = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight",
                                     "output.weight"};
  const float vals[] = {NAN, INFINITY, NAN};
  for (int i = 0; i < 3; i++) {
    sp = (spec){.bad_value = mats[i], .bad_f = vals[i]};
    p = write_model(&sp);
    tl_model *m = load_ok(p);
    tl_context_params cp = tl_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    tl_context *c = NULL;
    assert_int_equal(tl_context_new(m, &cp, &c), TL_OK);
    tl_token toks[3] = {1, 4, 5};
    int32_t pos[3] = {0, 1, 2};
    tl_batch b = {.n_tokens = 3, .tokens = toks, .pos = pos};
    tl_status s = tl_decode(c, &b);
    print_message("  %s = %g: %s\n", mats[i], (double)vals[i], tl_last_error());
    assert_int_equal(s, TL_ERR_FORMAT);
    assert_non_null(strstr(tl_last_error(), "not finite"));
    tl_context_free(c);
    tl_model_free(m);
    if (i == 0 && have_cli()) {
      char args[1024];
      snprintf(args, sizeof args, "run -m '%s' -p ab -n 4 -t 1", p);
      EXPECT_CLI_FAIL(args, "not finite");
    }
    unlink(p);
    free(p);
  }
}

/* ---- 4. vocabularies ------------------------------------------------------------ */

static void test_vocab_invalid_utf8(void **state) {
  (void)state;
  /* token texts that are not UTF-8: a lone continuation byte, a truncated
   * sequence, an overlong encoding, a surrogate */
  static const char *const toks[10] = {"<unk>", "<s>",  "</s>",     "\xe2\x96\x81", "a",
                                       "b",     "\x80", "\xe2\x96", "\xc0\xaf",     "\xed\xa0\x80"};
  spec sp = {.tokens = toks, .n_tokens = 10};
  char *p = write_model(&sp);
  tl_model *m = load_ok(p);
  size_t n = 0;
  tl_token out[32];
  assert_int_equal(tl_tokenize(m, "ab a", 4, true, true, out, 32, &n), TL_OK);
  assert_true(n >= 3);
  /* invalid text is rejected, not tokenized */
  assert_int_equal(tl_tokenize(m, "a\xff", 2, true, true, out, 32, &n), TL_ERR_TOKENIZER);
  assert_non_null(strstr(tl_last_error(), "UTF-8"));
  /* each bad piece comes out of the streaming detokenizer as U+FFFD(s) */
  for (tl_token t = 6; t < 10; t++) {
    tl_detok *d;
    assert_int_equal(tl_detok_new(m, &d), TL_OK);
    char buf[64], all[256] = "";
    size_t w = tl_detok_push(d, 4, buf, sizeof buf);
    strcat(all, buf);
    w += tl_detok_push(d, t, buf, sizeof buf);
    strcat(all, buf);
    w += tl_detok_push(d, 5, buf, sizeof buf);
    strcat(all, buf);
    w += tl_detok_flush(d, buf, sizeof buf);
    strcat(all, buf);
    tl_detok_free(d);
    assert_int_equal(strlen(all), w);
    assert_true(tl_utf8_valid(all, w));
    assert_non_null(strstr(all, "\xef\xbf\xbd"));
    assert_int_equal(all[0], 'a');
    assert_int_equal(all[w - 1], 'b');
  }
  tl_model_free(m);
  if (have_cli()) {
    char args[1024], *err;
    snprintf(args, sizeof args, "tokenize -m '%s' -p 'ab'", p);
    assert_int_equal(cli_at(args, &err, __LINE__), 0);
    free(err);
  }
  unlink(p);
  free(p);
}

static void test_bpe_merges(void **state) {
  (void)state;
  static const char *const toks[8] = {"a", "b", "c", "ab", "abc", "\xc4\xa0", "\xff", "<|x|>"};
  /* rules over strings that are not tokens are ignored (they can never
   * apply); the valid ones still work */
  static const char *const merges[5] = {"a b", "zz q", "ab c", "\xff \xfe", "q <|x|>"};
  spec sp = {.tokens = toks, .n_tokens = 8, .tok_model = "gpt2", .merges = merges, .n_merges = 5};
  char *p = write_model(&sp);
  tl_model *m = load_ok(p);
  size_t n = 0;
  tl_token out[16];
  assert_int_equal(tl_tokenize(m, "abc", 3, false, false, out, 16, &n), TL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(out[0], 4);
  /* bytes without a token: an error naming the problem, never a crash */
  tl_status s = tl_tokenize(m, "xyz ab", 6, false, false, out, 16, &n);
  print_message("  'xyz ab': %s\n", s ? tl_last_error() : "ok");
  assert_true(s == TL_OK || (s == TL_ERR_TOKENIZER && tl_last_error()[0]));
  tl_model_free(m);
  unlink(p);
  free(p);
  /* a rule that is not "left right" is malformed */
  static const char *const bad[2] = {"a b", "abc"};
  sp.merges = bad;
  sp.n_merges = 2;
  p = write_model(&sp);
  EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, "merges[1]", "left right");
  unlink(p);
  free(p);
  /* no merges at all for a BPE vocabulary */
  sp.merges = NULL;
  p = write_model(&sp);
  EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, "tokenizer.ggml.merges", NULL);
  unlink(p);
  free(p);
}

/* ---- 5. Hugging Face tokenizer files: type confusion ------------------------------ */

static char *tmp_dir(void) {
  char *p = tl_test_tmpfile("-hostile");
  assert_non_null(p);
  assert_int_equal(mkdir(p, 0700), 0);
  return p;
}

static void put(const char *dir, const char *name, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  assert_int_equal(tl_test_write_file(path, text, strlen(text)), 0);
}

static void rm(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
}

#define EXPECT_VOCAB_FAIL(dir, want, sub) expect_vocab_fail_at((dir), (want), (sub), __LINE__)
static void expect_vocab_fail_at(const char *dir, tl_status want, const char *sub, int line) {
  tl_model_params mp = tl_model_default_params();
  mp.vocab_only = true;
  tl_model *m = NULL;
  tl_clear_error();
  double t0 = now_s();
  tl_status s = tl_model_load(dir, &mp, &m);
  double dt = now_s() - t0;
  if (s == TL_OK) {
    tl_model_free(m);
    fail_msg("line %d: the tokenizer loaded; expected '%s'", line, sub);
  }
  print_message("  line %d: %s\n", line, tl_last_error());
  if (want && s != want)
    fail_msg("line %d: status %s, expected %s (%s)", line, tl_status_name(s), tl_status_name(want),
             tl_last_error());
  if (sub && !strstr(tl_last_error(), sub))
    fail_msg("line %d: '%s' lacks '%s'", line, tl_last_error(), sub);
  if (dt > 5.0) fail_msg("line %d: rejecting took %.1f s", line, dt);
}

#define TJ(model) "{\"model\": " model ", \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}"
#define VOC "{\"a\": 0, \"b\": 1, \"ab\": 2}"

static void test_tokenizer_json_hostile(void **state) {
  (void)state;
  char *dir = tmp_dir();
  static const struct {
    const char *json;
    tl_status want;
    const char *sub;
  } cases[] = {
      {"[1, 2]", TL_ERR_FORMAT, "top level"},
      {"{\"model\": []}", TL_ERR_FORMAT, "'model'"},
      {TJ("{\"type\": 5, \"vocab\": " VOC ", \"merges\": []}"), TL_ERR_FORMAT, "model.type"},
      {TJ("{\"type\": \"WordPiece\", \"vocab\": " VOC ", \"merges\": []}"), TL_ERR_UNSUPPORTED,
       "WordPiece"},
      {TJ("{\"vocab\": [\"a\"], \"merges\": []}"), TL_ERR_FORMAT, "model.vocab"},
      {TJ("{\"vocab\": {\"a\": \"0\"}, \"merges\": []}"), TL_ERR_FORMAT, "token id"},
      {TJ("{\"vocab\": {\"a\": -1}, \"merges\": []}"), TL_ERR_FORMAT, "token id"},
      {TJ("{\"vocab\": {\"a\": 1.5}, \"merges\": []}"), TL_ERR_FORMAT, "token id"},
      {TJ("{\"vocab\": {\"a\": 1099511627776}, \"merges\": []}"), TL_ERR_FORMAT, "token id"},
      {TJ("{\"vocab\": {}, \"merges\": []}"), TL_ERR_FORMAT, "empty"},
      {TJ("{\"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}"), TL_ERR_FORMAT, "twice"},
      {TJ("{\"vocab\": " VOC ", \"merges\": {}}"), TL_ERR_FORMAT, "model.merges"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [1]}"), TL_ERR_FORMAT, "merges[0]"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [\"ab\"]}"), TL_ERR_FORMAT, "merges[0]"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [[\"a\"]]}"), TL_ERR_FORMAT, "merges[0]"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [], \"byte_fallback\": \"yes\"}"), TL_ERR_FORMAT,
       "byte_fallback"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [], \"unk_token\": 3}"), TL_ERR_FORMAT, "unk_token"},
      {TJ("{\"vocab\": " VOC ", \"merges\": [], \"unk_token\": \"zz\"}"), TL_ERR_FORMAT,
       "unk_token"},
      {"{\"model\": {\"vocab\": " VOC ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
       "\"ByteLevel\"}, \"added_tokens\": {}}",
       TL_ERR_FORMAT, "added_tokens"},
      {"{\"model\": {\"vocab\": " VOC ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
       "\"ByteLevel\"}, \"added_tokens\": [{\"id\": \"3\", \"content\": \"x\"}]}",
       TL_ERR_FORMAT, "added_tokens"},
      {"{\"model\": {\"vocab\": " VOC ", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
       "\"ByteLevel\"}, \"added_tokens\": [{\"id\": 3, \"content\": 7}]}",
       TL_ERR_FORMAT, "added_tokens"},
      {"{\"model\": {\"vocab\": " VOC ", \"merges\": []}}", TL_ERR_UNSUPPORTED, "ByteLevel"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    put(dir, "tokenizer.json", cases[i].json);
    EXPECT_VOCAB_FAIL(dir, cases[i].want, cases[i].sub);
  }

  /* merges naming unknown tokens load (they can never apply) */
  put(dir, "tokenizer.json",
      TJ("{\"vocab\": " VOC ", \"merges\": [\"a b\", \"zz yy\", \"a \\u0120\"]}"));
  tl_model_params mp = tl_model_default_params();
  mp.vocab_only = true;
  tl_model *m = NULL;
  if (tl_model_load(dir, &mp, &m) != TL_OK) fail_msg("%s", tl_last_error());
  size_t n;
  tl_token out[8];
  assert_int_equal(tl_tokenize(m, "ab", 2, false, false, out, 8, &n), TL_OK);
  assert_int_equal(n, 1);
  assert_int_equal(out[0], 2);
  tl_model_free(m);

  /* tokenizer_config.json / generation_config.json type confusion */
  static const struct {
    const char *file, *json, *sub;
  } cfg[] = {
      {"tokenizer_config.json", "[]", "top level"},
      {"tokenizer_config.json", "{\"bos_token\": 5}", "bos_token"},
      {"tokenizer_config.json", "{\"eos_token\": \"<nope>\"}", "eos_token"},
      {"tokenizer_config.json", "{\"eos_token\": {\"content\": 1}}", "eos_token"},
      {"tokenizer_config.json", "{\"add_bos_token\": \"yes\"}", "add_bos_token"},
      {"tokenizer_config.json", "{\"chat_template\": 5}", "chat_template"},
      {"tokenizer_config.json", "{\"chat_template\": [{\"name\": 1}]}", "chat_template"},
      {"generation_config.json", "{\"eos_token_id\": \"2\"}", "eos_token_id"},
      {"generation_config.json", "{\"eos_token_id\": [0, 99]}", "eos_token_id"},
      {"generation_config.json", "{\"eos_token_id\": -1}", "eos_token_id"},
      {"generation_config.json", "{\"eos_token_id\": 1e300}", "eos_token_id"},
  };
  put(dir, "tokenizer.json", TJ("{\"vocab\": " VOC ", \"merges\": [\"a b\"]}"));
  for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
    put(dir, cfg[i].file, cfg[i].json);
    EXPECT_VOCAB_FAIL(dir, TL_ERR_FORMAT, cfg[i].sub);
    rm(dir, cfg[i].file);
  }

  /* a huge id claims a huge vocabulary: bounded (ids are capped at 2^24, and
   * most ids below the largest must have a token) */
  put(dir, "tokenizer.json", TJ("{\"vocab\": {\"a\": 16777216}, \"merges\": []}"));
  EXPECT_VOCAB_FAIL(dir, TL_ERR_FORMAT, "token id");
  put(dir, "tokenizer.json", TJ("{\"vocab\": {\"a\": 16777215}, \"merges\": []}"));
  EXPECT_VOCAB_FAIL(dir, TL_ERR_FORMAT, "without a token");
  put(dir, "tokenizer.json",
      "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
      "\"ByteLevel\"}, \"added_tokens\": [{\"id\": 9999999, \"content\": \"x\"}]}");
  EXPECT_VOCAB_FAIL(dir, TL_ERR_FORMAT, "without a token");

  /* tokenizer.model: malformed protobuf, a piece of invalid UTF-8, a bad type */
  rm(dir, "tokenizer.json");
  static const struct {
    const char *bytes;
    size_t n;
    const char *sub;
  } pm[] = {
      {"\x0a", 1, "malformed"},
      {"\x0a\x05\x0a\x01"
       "a",
       5, "malformed"},
      {"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12, "malformed"},
      {"\x12\x02\x18\x02\x0a\x03\x0a\x01\xff", 9, "UTF-8"},
      {"\x12\x02\x18\x02\x0a\x05\x0a\x01"
       "a\x18\x63",
       11, "type"},
      {"\x12\x02\x18\x01\x0a\x03\x0a\x01"
       "a",
       9, "model type"},
      {"\x12\x02\x18\x02", 4, "pieces"},
      {"\x0b", 1, "malformed"},
  };
  for (size_t i = 0; i < sizeof pm / sizeof pm[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    assert_int_equal(tl_test_write_file(path, pm[i].bytes, pm[i].n), 0);
    EXPECT_VOCAB_FAIL(dir, 0, pm[i].sub);
  }
  rm(dir, "tokenizer.model");
  rmdir(dir);
  free(dir);
}

/* ---- 6. huge claims: bounded time and memory --------------------------------------- */

/* A GGUF whose single key is a string array claiming n elements. */
static uint8_t *claim_file(uint64_t n, size_t *size) {
  static const char key[] = "tokenizer.ggml.tokens";
  size_t k = sizeof key - 1;
  *size = 24 + 8 + k + 4 + 4 + 8 + 64;
  uint8_t *d = calloc(*size, 1);
  assert_non_null(d);
  uint32_t v3 = 3, t_arr = TL_GGUF_ARRAY, t_str = TL_GGUF_STRING;
  uint64_t zero = 0, one = 1, kl = k;
  memcpy(d, "GGUF", 4);
  memcpy(d + 4, &v3, 4);
  memcpy(d + 8, &zero, 8);
  memcpy(d + 16, &one, 8);
  memcpy(d + 24, &kl, 8);
  memcpy(d + 32, key, k);
  memcpy(d + 32 + k, &t_arr, 4);
  memcpy(d + 36 + k, &t_str, 4);
  memcpy(d + 40 + k, &n, 8);
  return d;
}

static void test_huge_claims(void **state) {
  (void)state;
  const uint64_t claims[] = {(uint64_t)1 << 40, (uint64_t)1 << 63, UINT64_MAX, 1u << 20};
  for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
    size_t n;
    uint8_t *d = claim_file(claims[i], &n);
    char *p = tl_test_tmpfile(".gguf");
    assert_int_equal(tl_test_write_file(p, d, n), 0);
    free(d);
#if !defined(__SANITIZE_ADDRESS__) /* ASan reserves terabytes of address space */
    /* in a child limited to 256 MiB of address space beyond what it has */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      struct rlimit rl = {(rlim_t)1 << 30, (rlim_t)1 << 30};
      setrlimit(RLIMIT_AS, &rl);
      tl_model *m = NULL;
      tl_status s = tl_model_load(p, NULL, &m);
      _exit(s == TL_ERR_FORMAT && strstr(tl_last_error(), "tokenizer.ggml.tokens") ? 0 : 3);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      fail_msg("claim of %llu strings: child status %d", (unsigned long long)claims[i], st);
#endif
    EXPECT_LOAD_FAIL(p, TL_ERR_FORMAT, "tokenizer.ggml.tokens", NULL);
    unlink(p);
    free(p);
  }
}

/* ---- 7. the CLI's runtime limits ---------------------------------------------------- */

static void test_cli_limits(void **state) {
  (void)state;
  if (!have_cli()) skip();
  char *model = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!model) skip();
  char args[2048], *err;
  char longp[1200] = "";
  for (int i = 0; i < 80; i++) strcat(longp, "and God said ");
  /* a prompt longer than the context: an error naming --truncate ... */
  snprintf(args, sizeof args, "run -m '%s' -p '%s' -c 32 -n 4 -t 1", model, longp);
  EXPECT_CLI_FAIL(args, "--truncate");
  /* ... or, with --truncate, its end fills the context */
  snprintf(args, sizeof args, "run -m '%s' -p '%s' -c 32 -n 4 -t 1 --truncate --temp 0", model,
           longp);
  int rc = cli_at(args, &err, __LINE__);
  if (rc != 0 || !strstr(err, "truncated")) fail_msg("--truncate: status %d: %s", rc, err);
  free(err);
  /* -n beyond the context stops at its end with a message */
  snprintf(args, sizeof args, "run -m '%s' -p 'In the beginning' -c 24 -n 1000 -t 1 --temp 0",
           model);
  rc = cli_at(args, &err, __LINE__);
  if (rc != 0 || !strstr(err, "is full")) fail_msg("-n 1000 -c 24: status %d: %s", rc, err);
  free(err);
  /* threads and context sizes out of range */
  snprintf(args, sizeof args, "run -m '%s' -p hi -t 0", model);
  EXPECT_CLI_FAIL(args, "-t");
  snprintf(args, sizeof args, "run -m '%s' -p hi -t 100000", model);
  EXPECT_CLI_FAIL(args, "-t");
  snprintf(args, sizeof args, "run -m '%s' -p hi -c 0", model);
  EXPECT_CLI_FAIL(args, "-c");
  snprintf(args, sizeof args, "run -m '%s' -p hi -c 99999999999", model);
  EXPECT_CLI_FAIL(args, "-c");
  /* invalid UTF-8 in the prompt is rejected */
  snprintf(args, sizeof args, "run -m '%s' -p \"$(printf 'abc\\377')\" -n 1 -t 1", model);
  EXPECT_CLI_FAIL(args, "UTF-8");
  snprintf(args, sizeof args, "tokenize -m '%s' -p \"$(printf '\\300\\200')\"", model);
  EXPECT_CLI_FAIL(args, "UTF-8");
  /* missing files, directories without config.json, a directory as a file */
  EXPECT_CLI_FAIL("run -m /nonexistent/model.gguf -p hi", "/nonexistent/model.gguf");
  char *dir = tmp_dir();
  snprintf(args, sizeof args, "run -m '%s' -p hi", dir);
  EXPECT_CLI_FAIL(args, "config.json");
  /* unreadable permissions (root reads anything: skipped there) */
  char path[1024];
  snprintf(path, sizeof path, "%s/secret.gguf", dir);
  assert_int_equal(tl_test_write_file(path, "GGUF", 4), 0);
  chmod(path, 0);
  if (geteuid() == 0) {
    print_message("  (running as root: the unreadable-file case is skipped)\n");
  } else {
    snprintf(args, sizeof args, "run -m '%s' -p hi", path);
    EXPECT_CLI_FAIL(args, "Permission denied");
  }
  unlink(path);
  rmdir(dir);
  free(dir);
  free(model);
}

/* A context whose KV cache cannot fit in memory fails early with advice. */
static void test_context_too_big(void **state) {
  (void)state;
  spec sp = {0};
  char *p = write_model(&sp);
  tl_model *m = load_ok(p);
  tl_context_params cp = tl_context_default_params();
  cp.n_ctx = 1 << 24;
  cp.n_seq = 4096;
  cp.n_threads = 1;
  tl_context *c = NULL;
  tl_status s = tl_context_new(m, &cp, &c);
  print_message("  %s\n", tl_last_error());
  assert_int_equal(s, TL_ERR_NOMEM);
  assert_null(c);
  assert_non_null(strstr(tl_last_error(), "smaller context"));
  tl_model_free(m);
  if (have_cli()) {
    char args[1024];
    snprintf(args, sizeof args, "run -m '%s' -p ab -c 16777216 -t 1 --kv f32", p);
    char *err;
    int rc = cli_at(args, &err, __LINE__);
    /* 16M tokens x 1 layer x 16 values x 4 bytes x 2 = 2 GiB: fails on small machines */
    if (rc != 0 && !strstr(err, "-c")) fail_msg("status %d without advice: %s", rc, err);
    free(err);
  }
  unlink(p);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_semantic),
      cmocka_unit_test(test_moe_metadata),
      cmocka_unit_test(test_tensor_data_placement),
      cmocka_unit_test(test_non_finite_weights),
      cmocka_unit_test(test_vocab_invalid_utf8),
      cmocka_unit_test(test_bpe_merges),
      cmocka_unit_test(test_tokenizer_json_hostile),
      cmocka_unit_test(test_huge_claims),
      cmocka_unit_test(test_context_too_big),
      cmocka_unit_test(test_cli_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
