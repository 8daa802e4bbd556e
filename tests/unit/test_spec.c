/* Speculative decoding (tl_spec_*, src/spec/):
 * - the acceptance rule on small hand-made distributions: a chi-square test
 *   over many draws passes with the exact rule (residual max(0, p - q)) and
 *   must fail with the wrong one (residual p), for a drafted model token (q
 *   given) and a fixed lookup token (q one-hot);
 * - tl_sampler_probs against the frequencies of tl_sampler_sample (the p and
 *   q of the rule are what sampling draws from);
 * - on the demo model (target) and the repository's draft model, once per
 *   backend: greedy tokens identical to the target alone, with the draft and
 *   with prompt lookup, over prompts of different lengths and draft lengths;
 *   the caches afterwards hold the sequence and nothing rejected;
 * - the first two sampled tokens (top-k 4: 16 outcomes) against the target's
 *   exact joint distribution: passes with the exact rule, fails with the wrong
 *   one;
 * - vocabulary checks and bad parameters. */
#include "testutil.h"

#include <math.h>

#include "spec/spec.h"

#define DEMO TL_TEST_DATA "/../../models/kjv-llama-13m-q8_0.gguf"
#define DRAFT TL_TEST_DATA "/../../models/kjv-llama-1.5m-draft-q4_0.gguf"

/* chi-square of counts against probabilities over n outcomes (expected
 * counts below 5 pooled); *df its degrees of freedom */
static double chi2(const long *count, const double *prob, int n, long draws, int *df) {
  double c = 0, pe = 0, po = 0;
  int k = -1;
  for (int i = 0; i < n; i++) {
    double e = prob[i] * (double)draws;
    if (prob[i] <= 0) {
      if (count[i]) return INFINITY; /* drawn with probability 0 */
      continue;
    }
    if (e < 5) {
      pe += e;
      po += (double)count[i];
      continue;
    }
    c += ((double)count[i] - e) * ((double)count[i] - e) / e;
    k++;
  }
  if (pe > 0) {
    c += (po - pe) * (po - pe) / (pe > 1 ? pe : 1);
    k++;
  }
  *df = k < 1 ? 1 : k;
  return c;
}

/* the bound of test_sampler: a false alarm about once in 1e6 */
static double bound(int df) {
  return df + 7.0 * sqrt(2.0 * df) + 12.0;
}

static tl_sampler *sampler(float temp, int top_k, uint64_t seed) {
  tl_sampler_params p = tl_sampler_default_params();
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = seed;
  tl_sampler *s = NULL;
  assert_int_equal(tl_sampler_new(&p, &s), TL_OK);
  return s;
}

/* ---- the rule on hand-made distributions ------------------------------------ */

enum { NV = 6, RULE_DRAWS = 20000 };

/* chi-square of RULE_DRAWS outcomes of the rule (draft d ~ q, or the fixed
 * token `fixed` when q is NULL) against p */
static double rule_chi2(const float *p, const float *q, tl_token fixed, tl_spec_rule rule,
                        int *df) {
  tl_sampler *s = sampler(1.0f, 0, 77), *ds = sampler(1.0f, 0, 78);
  float qlog[NV], buf[NV];
  if (q)
    for (int i = 0; i < NV; i++) qlog[i] = q[i] > 0 ? logf(q[i]) : -INFINITY;
  long count[NV] = {0};
  double prob[NV];
  for (int i = 0; i < NV; i++) prob[i] = p[i];
  for (int k = 0; k < RULE_DRAWS; k++) {
    tl_token d = q ? tl_sampler_sample(ds, qlog, NV) : fixed;
    memcpy(buf, p, sizeof buf);
    bool acc;
    tl_token t = tl_spec_verify_token(s, buf, q, NV, d, rule, &acc);
    assert_true(t >= 0 && t < NV);
    assert_true(acc == (t == d) || !acc);
    count[t]++;
  }
  tl_sampler_free(s);
  tl_sampler_free(ds);
  return chi2(count, prob, NV, RULE_DRAWS, df);
}

static void test_rule(void **state) {
  (void)state;
  /* the draft puts too much mass on tokens 0 and 1, none on 5 */
  const float p[NV] = {0.10f, 0.15f, 0.30f, 0.20f, 0.15f, 0.10f};
  const float q[NV] = {0.35f, 0.30f, 0.15f, 0.10f, 0.10f, 0.00f};
  int df;
  double c = rule_chi2(p, q, 0, TL_SPEC_RULE_EXACT, &df);
  print_message("exact rule, model draft: chi2 %.1f (df %d, bound %.1f)\n", c, df, bound(df));
  assert_true(c <= bound(df));
  c = rule_chi2(p, q, 0, TL_SPEC_RULE_PLAIN, &df);
  print_message("residual p (wrong), model draft: chi2 %.1f (df %d, bound %.1f)\n", c, df,
                bound(df));
  assert_true(c > bound(df));
  /* a fixed draft (prompt lookup): q is 1 at the token */
  c = rule_chi2(p, NULL, 2, TL_SPEC_RULE_EXACT, &df);
  print_message("exact rule, fixed draft: chi2 %.1f (df %d, bound %.1f)\n", c, df, bound(df));
  assert_true(c <= bound(df));
  c = rule_chi2(p, NULL, 2, TL_SPEC_RULE_PLAIN, &df);
  print_message("residual p (wrong), fixed draft: chi2 %.1f (df %d, bound %.1f)\n", c, df,
                bound(df));
  assert_true(c > bound(df));
}

/* tl_sampler_probs is the distribution tl_sampler_sample draws from, for
 * several chains (greedy included) */
static void test_probs_consistent(void **state) {
  (void)state;
  enum { N = 40, DRAWS = 40000 };
  float l[N];
  uint64_t r = 5;
  for (int i = 0; i < N; i++) l[i] = 3.0f * tl_test_frand(&r);
  struct {
    float t, tp, mp;
    int k;
  } cfg[] = {{0.8f, 0.95f, 0.05f, 40},
             {1.0f, 1.0f, 0.0f, 4},
             {1.5f, 0.7f, 0.0f, 0},
             {0.0f, 1.0f, 0.0f, 0}};
  for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
    tl_sampler_params p = tl_sampler_default_params();
    p.temperature = cfg[c].t;
    p.top_p = cfg[c].tp;
    p.min_p = cfg[c].mp;
    p.top_k = cfg[c].k;
    p.seed = 100 + c;
    tl_sampler *s = NULL;
    assert_int_equal(tl_sampler_new(&p, &s), TL_OK);
    float pr[N];
    assert_int_equal(tl_sampler_probs(s, l, N, pr), TL_OK);
    double prob[N], sum = 0;
    for (int i = 0; i < N; i++) sum += (prob[i] = pr[i]);
    assert_true(fabs(sum - 1.0) < 1e-5);
    long count[N] = {0};
    for (int d = 0; d < DRAWS; d++) count[tl_sampler_sample(s, l, N)]++;
    int df;
    double x = chi2(count, prob, N, DRAWS, &df);
    if (x > bound(df)) fail_msg("chain %zu: chi2 %.1f > %.1f", c, x, bound(df));
    tl_sampler_free(s);
  }
}

/* ---- the models --------------------------------------------------------------- */

static tl_model *g_target, *g_draft;

static int setup_models(void **state) {
  (void)state;
  if (!g_target) g_target = tl_test_load_model(DEMO);
  if (!g_draft) g_draft = tl_test_load_model(DRAFT);
  return 0;
}

static tl_context *ctx(tl_model *m, int n_ctx) {
  tl_context_params cp = tl_test_ctx_params();
  cp.n_ctx = n_ctx;
  return tl_test_ctx(m, &cp);
}

static int tokenize_bos(const char *text, bool bos, tl_token *out, int cap) {
  size_t n = 0;
  if (tl_tokenize(g_target, text, strlen(text), bos, false, out, (size_t)cap, &n) != TL_OK)
    fail_msg("tokenize: %s", tl_last_error());
  return (int)n;
}

static int tokenize(const char *text, tl_token *out, int cap) {
  return tokenize_bos(text, true, out, cap);
}

/* the target alone: greedy, one token a step (as torchless run) */
static int plain_greedy(tl_context *c, const tl_token *p, int n, int n_gen, tl_token *out) {
  tl_kv_clear(c, -1);
  tl_sampler *s = sampler(0.0f, 0, 1);
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) pos[i] = i;
  tl_batch b = {.n_tokens = n, .tokens = p, .pos = pos};
  assert_int_equal(tl_decode(c, &b), TL_OK);
  free(pos);
  int k = 0;
  for (; k < n_gen; k++) {
    tl_token t = tl_sampler_sample(s, tl_get_logits(c, 0), tl_model_n_vocab(g_target));
    out[k] = t;
    if (tl_token_is_eog(g_target, t)) return k + 1;
    int32_t ps = n + k;
    tl_batch b1 = {.n_tokens = 1, .tokens = &t, .pos = &ps};
    assert_int_equal(tl_decode(c, &b1), TL_OK);
  }
  tl_sampler_free(s);
  return k;
}

static int spec_generate(tl_spec *sp, tl_sampler *s, const tl_token *p, int n, int n_gen,
                         tl_token *out) {
  assert_int_equal(tl_spec_begin(sp, p, n), TL_OK);
  int k = 0;
  while (k < n_gen) {
    int32_t got = 0;
    tl_status st = tl_spec_next(sp, s, n_gen - k, out + k, &got);
    if (st != TL_OK) fail_msg("tl_spec_next: %s", tl_last_error());
    assert_true(got >= 1 && got <= n_gen - k);
    k += got;
    if (tl_token_is_eog(g_target, out[k - 1])) break;
  }
  return k;
}

static const char *const g_prompts[] = {
    "And",
    "In the beginning God created the heaven and the earth.",
    "And the LORD said unto Moses,",
    "Blessed are the meek: for they shall inherit the earth. Blessed are they which do hunger "
    "and thirst after righteousness: for they shall be filled. Blessed are the merciful:",
    "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he "
    "leadeth me beside the still waters. He restoreth my soul: he leadeth me in the paths of "
    "righteousness for his name's sake. The LORD is my shepherd; I shall not want. He maketh me",
};
#define N_PROMPTS (int)(sizeof g_prompts / sizeof g_prompts[0])

enum { N_GEN = 40, N_CTX = 256 };

static void test_greedy_identical(void **state) {
  (void)state;
  tl_context *tc = ctx(g_target, N_CTX), *dc = ctx(g_draft, N_CTX);
  tl_sampler *s = sampler(0.0f, 0, 1);
  static const int n_max[] = {1, 4, 12};
  for (int pi = 0; pi < N_PROMPTS; pi++) {
    tl_token p[128], ref[N_GEN], got[N_GEN];
    int n = tokenize(g_prompts[pi], p, 128);
    int nr = plain_greedy(tc, p, n, N_GEN, ref);
    for (int mode = 0; mode < 2; mode++) {
      for (size_t mi = 0; mi < sizeof n_max / sizeof n_max[0]; mi++) {
        tl_spec_params sp_p = tl_spec_default_params();
        sp_p.n_max = n_max[mi];
        sp_p.p_min = mi == 2 ? 0.0f : 0.5f; /* long drafts, many rejections */
        sp_p.lookup = 2 + (int)mi;
        tl_spec *sp = NULL;
        assert_int_equal(tl_spec_new(tc, mode ? NULL : dc, &sp_p, &sp), TL_OK);
        int ng = spec_generate(sp, s, p, n, N_GEN, got);
        if (ng != nr || memcmp(got, ref, sizeof(tl_token) * (size_t)nr) != 0) {
          int at = 0;
          while (at < nr && at < ng && got[at] == ref[at]) at++;
          fail_msg("prompt %d, %s, draft-max %d: differs at token %d (%d vs %d)", pi,
                   mode ? "lookup" : "draft", n_max[mi], at, at < ng ? got[at] : -1,
                   at < nr ? ref[at] : -1);
        }
        /* the target holds the sequence but its last token, nothing rejected */
        assert_int_equal(tl_kv_seq_pos_max(tc, 0) + 1, tl_spec_n_tokens(sp) - 1);
        if (!mode) assert_true(tl_kv_seq_pos_max(dc, 0) + 1 <= tl_spec_n_tokens(sp));
        tl_spec_stats st;
        tl_spec_get_stats(sp, &st);
        assert_int_equal(st.n_generated, ng);
        assert_true(st.n_accepted <= st.n_drafted);
        assert_true(st.n_target >= 1 && st.n_target <= ng);
        /* every pass gives the accepted drafts plus one token (EOG aside) */
        assert_true(st.n_accepted + st.n_target >= ng);
        tl_spec_free(sp);
      }
    }
  }
  tl_sampler_free(s);
  tl_context_free(tc);
  tl_context_free(dc);
}

/* the generator continues a conversation: a second tl_spec_begin with a
 * longer sequence keeps the shared prefix and still matches */
static void test_begin_again(void **state) {
  (void)state;
  tl_context *tc = ctx(g_target, N_CTX), *dc = ctx(g_draft, N_CTX);
  tl_context *ref_c = ctx(g_target, N_CTX);
  tl_sampler *s = sampler(0.0f, 0, 1);
  tl_spec *sp = NULL;
  assert_int_equal(tl_spec_new(tc, dc, NULL, &sp), TL_OK);
  tl_token p[160], got[N_GEN], ref[N_GEN];
  int n = tokenize(g_prompts[1], p, 128);
  int ng = spec_generate(sp, s, p, n, 20, got);
  memcpy(p + n, got, sizeof(tl_token) * (size_t)ng);
  n += ng;
  n += tokenize_bos(" And the LORD spake", false, p + n, 160 - n);
  int nr = plain_greedy(ref_c, p, n, N_GEN, ref);
  ng = spec_generate(sp, s, p, n, N_GEN, got);
  assert_int_equal(ng, nr);
  assert_memory_equal(got, ref, sizeof(tl_token) * (size_t)nr);
  tl_spec_free(sp);
  tl_sampler_free(s);
  tl_context_free(tc);
  tl_context_free(dc);
  tl_context_free(ref_c);
}

/* The first two tokens, sampled at temperature 1 with top-k 4 (at most 16
 * outcomes), against the target's exact joint distribution. */
enum { DIST_DRAWS = 3000 };

static double first_two_chi2(tl_spec_rule rule, float p_min, int *df) {
  tl_context *tc = ctx(g_target, 64), *dc = ctx(g_draft, 64), *ref_c = ctx(g_target, 64);
  int32_t nv = tl_model_n_vocab(g_target);
  tl_token p[64];
  int n = tokenize("And the LORD said unto", p, 60);
  /* exact: p1 from the prompt, p2 for each of p1's tokens */
  tl_sampler *s = sampler(1.0f, 4, 9);
  float *pr = malloc(sizeof(float) * (size_t)nv), *pr2 = malloc(sizeof(float) * (size_t)nv);
  tl_token first[4];
  double joint[16] = {0};
  tl_token second[16];
  int nf = 0;
  int32_t *pos = malloc(sizeof(int32_t) * 64);
  for (int i = 0; i < 64; i++) pos[i] = i;
  tl_batch b = {.n_tokens = n, .tokens = p, .pos = pos};
  assert_int_equal(tl_decode(ref_c, &b), TL_OK);
  assert_int_equal(tl_sampler_probs(s, tl_get_logits(ref_c, 0), nv, pr), TL_OK);
  for (int t = 0; t < nv; t++) {
    if (pr[t] <= 0) continue;
    assert_true(nf < 4);
    first[nf] = t;
    tl_kv_seq_rm(ref_c, 0, n, -1);
    tl_batch b1 = {.n_tokens = 1, .tokens = &first[nf], .pos = &pos[n]};
    assert_int_equal(tl_decode(ref_c, &b1), TL_OK);
    assert_int_equal(tl_sampler_probs(s, tl_get_logits(ref_c, 0), nv, pr2), TL_OK);
    int j = 0;
    for (int u = 0; u < nv; u++)
      if (pr2[u] > 0) {
        assert_true(j < 4);
        second[nf * 4 + j] = u;
        joint[nf * 4 + j] = (double)pr[t] * pr2[u];
        j++;
      }
    for (; j < 4; j++) second[nf * 4 + j] = -1;
    nf++;
  }
  /* draws */
  tl_spec_params spp = tl_spec_default_params();
  spp.n_max = 2;
  spp.p_min = p_min;
  tl_spec *sp = NULL;
  assert_int_equal(tl_spec_new(tc, dc, &spp, &sp), TL_OK);
  tl_spec_set_rule(sp, rule);
  long count[16] = {0};
  for (int d = 0; d < DIST_DRAWS; d++) {
    tl_token out[4];
    int32_t k = 0, got = 0;
    assert_int_equal(tl_spec_begin(sp, p, n), TL_OK);
    while (k < 2) {
      assert_int_equal(tl_spec_next(sp, s, 3 - k, out + k, &got), TL_OK);
      k += got;
    }
    int cell = -1;
    for (int i = 0; i < nf; i++)
      if (first[i] == out[0])
        for (int j = 0; j < 4; j++)
          if (second[i * 4 + j] == out[1]) cell = i * 4 + j;
    if (cell < 0) fail_msg("tokens %d %d have probability 0", out[0], out[1]);
    count[cell]++;
  }
  tl_spec_stats st;
  tl_spec_get_stats(sp, &st);
  print_message("  drafted %lld, accepted %lld\n", (long long)st.n_drafted,
                (long long)st.n_accepted);
  if (p_min == 0.0f) /* both paths taken */
    assert_true(st.n_accepted > 0 && st.n_accepted < st.n_drafted);
  double c = chi2(count, joint, 16, DIST_DRAWS, df);
  tl_spec_free(sp);
  tl_sampler_free(s);
  free(pr);
  free(pr2);
  free(pos);
  tl_context_free(tc);
  tl_context_free(dc);
  tl_context_free(ref_c);
  return c;
}

static void test_sampling_distribution(void **state) {
  (void)state;
  int df;
  double c = first_two_chi2(TL_SPEC_RULE_EXACT, 0.0f, &df);
  print_message("exact rule: chi2 %.1f (df %d, bound %.1f)\n", c, df, bound(df));
  assert_true(c <= bound(df));
  /* drafting stops where the draft is unsure: the decision must not depend
   * on the token drawn, or the kept drafts are not distributed as q */
  c = first_two_chi2(TL_SPEC_RULE_EXACT, 0.3f, &df);
  print_message("exact rule, p-min 0.3: chi2 %.1f (df %d, bound %.1f)\n", c, df, bound(df));
  assert_true(c <= bound(df));
  c = first_two_chi2(TL_SPEC_RULE_PLAIN, 0.0f, &df);
  print_message("residual p (wrong): chi2 %.1f (df %d, bound %.1f)\n", c, df, bound(df));
  assert_true(c > bound(df));
}

static void test_vocab_and_params(void **state) {
  (void)state;
  assert_int_equal(tl_spec_check_vocab(g_target, g_draft), TL_OK);
  char *other_path = tl_test_fixture_or_skip("llama/model-q8_0.gguf");
  if (!other_path) skip();
  tl_model *other = tl_test_load_model(other_path);
  free(other_path);
  assert_int_equal(tl_spec_check_vocab(g_target, other), TL_ERR_INVALID_ARG);
  print_message("%s\n", tl_last_error());
  assert_non_null(strstr(tl_last_error(), "token "));
  tl_context *tc = ctx(g_target, 64), *oc = ctx(other, 64);
  tl_spec *sp = (tl_spec *)1;
  assert_int_equal(tl_spec_new(tc, oc, NULL, &sp), TL_ERR_INVALID_ARG);
  assert_null(sp);
  tl_spec_params p = tl_spec_default_params();
  p.n_max = 0;
  assert_int_equal(tl_spec_new(tc, NULL, &p, &sp), TL_ERR_INVALID_ARG);
  p = tl_spec_default_params();
  p.p_min = 1.5f;
  assert_int_equal(tl_spec_new(tc, NULL, &p, &sp), TL_ERR_INVALID_ARG);
  p = tl_spec_default_params();
  p.lookup = 0;
  assert_int_equal(tl_spec_new(tc, NULL, &p, &sp), TL_ERR_INVALID_ARG);
  /* next before begin; a full context */
  assert_int_equal(tl_spec_new(tc, NULL, NULL, &sp), TL_OK);
  tl_sampler *s = sampler(0.0f, 0, 1);
  tl_token out[4], big[65];
  int32_t got;
  assert_int_equal(tl_spec_next(sp, s, 4, out, &got), TL_ERR_INVALID_ARG);
  for (int i = 0; i < 65; i++) big[i] = 100 + i;
  assert_int_equal(tl_spec_begin(sp, big, 65), TL_ERR_CONTEXT_FULL);
  assert_int_equal(tl_spec_begin(sp, big, 64), TL_OK);
  assert_int_equal(tl_spec_next(sp, s, 4, out, &got), TL_OK);
  assert_int_equal(got, 1);
  assert_int_equal(tl_spec_next(sp, s, 4, out, &got), TL_ERR_CONTEXT_FULL);
  tl_sampler_free(s);
  tl_spec_free(sp);
  tl_context_free(tc);
  tl_context_free(oc);
  tl_model_free(other);
}

static int make(const char *backend, struct CMUnitTest *t, int max) {
  (void)backend;
  (void)max;
  t[0] = (struct CMUnitTest)cmocka_unit_test_setup(test_greedy_identical, setup_models);
  t[1] = (struct CMUnitTest)cmocka_unit_test_setup(test_begin_again, setup_models);
  t[2] = (struct CMUnitTest)cmocka_unit_test_setup(test_sampling_distribution, setup_models);
  t[3] = (struct CMUnitTest)cmocka_unit_test_setup(test_vocab_and_params, setup_models);
  return 4;
}

int main(void) {
  const struct CMUnitTest unit[] = {
      cmocka_unit_test(test_rule),
      cmocka_unit_test(test_probs_consistent),
  };
  int fails = cmocka_run_group_tests_name("spec rule", unit, NULL, NULL);
  fails += tl_test_main_per_backend("spec", make);
  tl_model_free(g_target);
  tl_model_free(g_draft);
  return fails ? 1 : 0;
}
