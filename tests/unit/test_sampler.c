/* Sampler: greedy, determinism, empirical distributions (chi-square against
 * the exact distributions of a naive reference), top-k / top-p / min-p,
 * repetition penalty, non-finite logits, parameter validation. */
#include "testutil.h"

#include <math.h>

#define N_DRAWS 200000

static tl_sampler *make(tl_sampler_params p) {
  tl_sampler *s = NULL;
  assert_int_equal(tl_sampler_new(&p, &s), TL_OK);
  assert_non_null(s);
  return s;
}

static tl_sampler_params plain(float temperature, uint64_t seed) {
  tl_sampler_params p = tl_sampler_default_params();
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = seed;
  return p;
}

/* ---- a naive reference of the chain: full sort, straight from the spec ---- */

typedef struct ref_item {
  double l;
  int id;
} ref_item;

static int ref_cmp(const void *pa, const void *pb) {
  const ref_item *a = pa, *b = pb;
  if (a->l != b->l) return a->l > b->l ? -1 : 1;
  return a->id - b->id;
}

/* Exact probabilities of each token (prob[n]) for params p after accepting
 * hist[0..nh) (only the last repeat_last_n count). */
static void ref_dist(const tl_sampler_params *p, const float *logits, int n, const int *hist,
                     int nh, double *prob) {
  ref_item *it = calloc((size_t)n, sizeof(*it));
  for (int i = 0; i < n; i++) {
    it[i].id = i;
    it[i].l = isnan(logits[i]) ? -INFINITY : logits[i];
  }
  int start = nh > p->repeat_last_n ? nh - p->repeat_last_n : 0;
  char *seen = calloc((size_t)n, 1);
  for (int i = start; i < nh; i++) {
    int t = hist[i];
    if (t < 0 || t >= n || seen[t]) continue;
    seen[t] = 1;
    float l = (float)it[t].l;
    it[t].l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
  }
  free(seen);
  qsort(it, (size_t)n, sizeof(*it), ref_cmp);
  int m = n;
  while (m > 0 && it[m - 1].l == -INFINITY) m--;
  if (p->top_k > 0 && p->top_k < m) m = p->top_k;
  double z = 0;
  for (int i = 0; i < m; i++) z += exp(it[i].l - it[0].l);
  if (p->top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < m; i++) {
      cum += exp(it[i].l - it[0].l) / z;
      if (cum >= p->top_p) {
        m = i + 1;
        break;
      }
    }
  }
  if (p->min_p > 0.0f) {
    int k = 0;
    while (k < m && exp(it[k].l - it[0].l) >= p->min_p) k++;
    m = k;
  }
  memset(prob, 0, (size_t)n * sizeof(*prob));
  double sum = 0;
  for (int i = 0; i < m; i++) sum += exp((it[i].l - it[0].l) / p->temperature);
  for (int i = 0; i < m; i++) prob[it[i].id] = exp((it[i].l - it[0].l) / p->temperature) / sum;
  free(it);
}

/* Draw `draws` tokens and compare with prob: no token outside the support, and
 * a chi-square statistic (over tokens with expected count >= 5, the rest
 * pooled) below a bound with a false-alarm rate around 1e-6. */
static void check_freq(tl_sampler *s, const float *logits, int n, const double *prob, int draws) {
  long *count = calloc((size_t)n, sizeof(long));
  for (int d = 0; d < draws; d++) {
    tl_token t = tl_sampler_sample(s, logits, n);
    assert_true(t >= 0 && t < n);
    if (prob[t] == 0.0) fail_msg("token %d drawn but has probability 0", t);
    count[t]++;
  }
  double chi2 = 0, pool_e = 0, pool_o = 0;
  int df = -1;
  for (int i = 0; i < n; i++) {
    double e = prob[i] * draws;
    if (prob[i] == 0.0) continue;
    if (e < 5) {
      pool_e += e;
      pool_o += (double)count[i];
      continue;
    }
    chi2 += (count[i] - e) * (count[i] - e) / e;
    df++;
  }
  if (pool_e > 0) {
    chi2 += (pool_o - pool_e) * (pool_o - pool_e) / (pool_e > 1 ? pool_e : 1);
    df++;
  }
  if (df < 1) df = 1;
  double bound = df + 7.0 * sqrt(2.0 * df) + 12.0;
  if (chi2 > bound) fail_msg("chi-square %.2f > %.2f (df %d)", chi2, bound, df);
  free(count);
}

static void check_against_ref_n(tl_sampler_params p, const float *logits, int n, const int *hist,
                                int nh, int draws) {
  tl_sampler *s = make(p);
  for (int i = 0; i < nh; i++) tl_sampler_accept(s, hist[i]);
  double *prob = malloc((size_t)n * sizeof(double));
  ref_dist(&p, logits, n, hist, nh, prob);
  check_freq(s, logits, n, prob, draws);
  free(prob);
  tl_sampler_free(s);
}

static void check_against_ref(tl_sampler_params p, const float *logits, int n, const int *hist,
                              int nh) {
  check_against_ref_n(p, logits, n, hist, nh, N_DRAWS);
}

/* logits = log(probabilities), placed at token ids perm[i] */
static void logits_from_probs(const double *pr, const int *perm, int n, float *out) {
  for (int i = 0; i < n; i++) out[perm ? perm[i] : i] = (float)log(pr[i]);
}

/* n logits (malloc'd), each (level + lo) / div for a pseudo-random level in
 * [0, levels) (a 64-bit LCG seeded with seed, its bits from `shift` up): few
 * levels give many exact ties. */
static float *lcg_logits(int n, uint64_t seed, int shift, int levels, int lo, float div) {
  float *l = malloc((size_t)n * sizeof(float));
  assert_non_null(l);
  uint64_t x = seed;
  for (int i = 0; i < n; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    l[i] = (float)((int)((x >> shift) % (uint64_t)levels) + lo) / div;
  }
  return l;
}

/* Draws of a sampler with params p follow the best `keep` of the n
 * probabilities pr (sorted, placed at token ids perm) renormalized, and
 * nothing else. */
static void check_keeps_best(tl_sampler_params p, const float *logits, const double *pr,
                             const int *perm, int n, int keep) {
  double prob[8] = {0}, z = 0;
  assert_true(n <= 8);
  for (int i = 0; i < keep; i++) z += pr[i];
  for (int i = 0; i < keep; i++) prob[perm[i]] = pr[i] / z;
  tl_sampler *s = make(p);
  check_freq(s, logits, n, prob, N_DRAWS);
  tl_sampler_free(s);
}

/* The token a fresh sampler with params p draws from the n logits l after
 * accepting prev. */
static tl_token sample_after(tl_sampler_params p, tl_token prev, const float *l, int n) {
  tl_sampler *s = make(p);
  tl_sampler_accept(s, prev);
  tl_token t = tl_sampler_sample(s, l, n);
  tl_sampler_free(s);
  return t;
}

/* ---- tests ------------------------------------------------------------- */

static void test_defaults(void **state) {
  (void)state;
  tl_sampler_params p = tl_sampler_default_params();
  assert_float_equal(p.temperature, 0.8f, 1e-7);
  assert_int_equal(p.top_k, 40);
  assert_float_equal(p.top_p, 0.95f, 1e-7);
  assert_float_equal(p.min_p, 0.05f, 1e-7);
  assert_float_equal(p.repeat_penalty, 1.0f, 0);
  assert_int_equal(p.repeat_last_n, 64);
  tl_sampler *a = make(p), *b = make(p);
  float logits[6] = {1.0f, 0.5f, 0.2f, 0.1f, 0.0f, -0.3f};
  for (int i = 0; i < 200; i++) {
    assert_int_equal(tl_sampler_sample(a, logits, 6), tl_sampler_sample(b, logits, 6));
  }
  tl_sampler_free(a);
  tl_sampler_free(b);
}

static void test_invalid_params(void **state) {
  (void)state;
  tl_sampler *s = (tl_sampler *)(uintptr_t)1;
  tl_sampler_params base = tl_sampler_default_params();
  tl_sampler_params bad[12];
  int nb = 0;
  bad[nb] = base, bad[nb++].temperature = NAN;
  bad[nb] = base, bad[nb++].temperature = INFINITY;
  bad[nb] = base, bad[nb++].top_p = -0.1f;
  bad[nb] = base, bad[nb++].top_p = NAN;
  bad[nb] = base, bad[nb++].min_p = NAN;
  bad[nb] = base, bad[nb++].min_p = 1.5f;
  bad[nb] = base, bad[nb++].repeat_penalty = 0.0f;
  bad[nb] = base, bad[nb++].repeat_penalty = -1.0f;
  bad[nb] = base, bad[nb++].repeat_penalty = NAN;
  bad[nb] = base, bad[nb++].repeat_penalty = INFINITY;
  bad[nb] = base, bad[nb++].repeat_last_n = -1;
  for (int i = 0; i < nb; i++) {
    s = (tl_sampler *)(uintptr_t)1;
    assert_int_equal(tl_sampler_new(&bad[i], &s), TL_ERR_INVALID_ARG);
    assert_null(s);
    assert_true(strlen(tl_last_error()) > 0);
    assert_non_null(strstr(tl_last_error(), "sampler"));
  }
  assert_int_equal(tl_sampler_new(NULL, &s), TL_ERR_INVALID_ARG);
  assert_int_equal(tl_sampler_new(&base, NULL), TL_ERR_INVALID_ARG);

  /* edge values that are valid */
  tl_sampler_params ok[6];
  int no = 0;
  ok[no] = base, ok[no++].temperature = -1.0f; /* greedy */
  ok[no] = base, ok[no++].top_p = 0.0f;
  ok[no] = base, ok[no++].top_p = 2.0f;
  ok[no] = base, ok[no++].min_p = -1.0f; /* off */
  ok[no] = base, ok[no++].top_k = -5;    /* off */
  ok[no] = base, ok[no++].repeat_last_n = 0;
  for (int i = 0; i < no; i++) {
    s = NULL;
    assert_int_equal(tl_sampler_new(&ok[i], &s), TL_OK);
    tl_sampler_free(s);
  }
  tl_sampler_free(NULL);
  tl_sampler_accept(NULL, 1);
  tl_sampler_reset(NULL);
}

static void test_greedy(void **state) {
  (void)state;
  float logits[8] = {0.1f, 2.0f, -1.0f, 3.5f, 3.4f, 0.0f, -7.0f, 1.0f};
  float copy[8];
  memcpy(copy, logits, sizeof(logits));
  tl_sampler_params p = plain(0.0f, 1);
  tl_sampler *s = make(p);
  for (int i = 0; i < 100; i++) assert_int_equal(tl_sampler_sample(s, logits, 8), 3);
  assert_memory_equal(logits, copy, sizeof(logits)); /* untouched */
  tl_sampler_free(s);

  /* ties go to the lowest id */
  float tie[5] = {1.0f, 4.0f, 2.0f, 4.0f, 4.0f};
  s = make(plain(0.0f, 1));
  assert_int_equal(tl_sampler_sample(s, tie, 5), 1);
  tl_sampler_free(s);

  /* negative temperature is greedy too; top-k/top-p/min-p do not matter */
  p = plain(-0.5f, 9);
  p.top_k = 3;
  p.top_p = 0.01f;
  p.min_p = 0.9f;
  s = make(p);
  for (int i = 0; i < 100; i++) assert_int_equal(tl_sampler_sample(s, logits, 8), 3);
  tl_sampler_free(s);

  /* a large vocabulary */
  int n = 256000;
  float *big = lcg_logits(n, 12345, 40, 100000, 0, 10000.0f);
  big[201234] = 11.0f;
  s = make(plain(0.0f, 1));
  assert_int_equal(tl_sampler_sample(s, big, n), 201234);
  tl_sampler_free(s);
  free(big);
}

static void test_seed_determinism(void **state) {
  (void)state;
  float logits[16];
  for (int i = 0; i < 16; i++) logits[i] = (float)(i % 5) * 0.3f;
  enum { L = 300 };
  tl_token a[L], b[L], c[L], d[L];
  tl_sampler *sa = make(plain(1.0f, 77)), *sb = make(plain(1.0f, 77));
  tl_sampler *sc = make(plain(1.0f, 78));
  for (int i = 0; i < L; i++) {
    a[i] = tl_sampler_sample(sa, logits, 16);
    b[i] = tl_sampler_sample(sb, logits, 16);
    c[i] = tl_sampler_sample(sc, logits, 16);
  }
  assert_memory_equal(a, b, sizeof(a));
  int differ = 0;
  for (int i = 0; i < L; i++) differ += a[i] != c[i];
  assert_true(differ > L / 2); /* ~15/16 of positions differ for unrelated streams */

  /* reset restarts the sequence */
  tl_sampler_reset(sa);
  for (int i = 0; i < L; i++) d[i] = tl_sampler_sample(sa, logits, 16);
  assert_memory_equal(a, d, sizeof(a));

  /* seed 0 works and differs from seed 1 */
  tl_sampler *s0 = make(plain(1.0f, 0)), *s1 = make(plain(1.0f, 1));
  differ = 0;
  for (int i = 0; i < L; i++) {
    differ += tl_sampler_sample(s0, logits, 16) != tl_sampler_sample(s1, logits, 16);
  }
  assert_true(differ > L / 2);
  tl_sampler_free(sa);
  tl_sampler_free(sb);
  tl_sampler_free(sc);
  tl_sampler_free(s0);
  tl_sampler_free(s1);
}

static void softmax_t(const float *l, int n, double t, double *p) {
  double mx = -INFINITY, z = 0;
  for (int i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
  for (int i = 0; i < n; i++) z += (p[i] = exp((l[i] - mx) / t));
  for (int i = 0; i < n; i++) p[i] /= z;
}

static void test_temperature_distribution(void **state) {
  (void)state;
  float logits[10] = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f, 1.5f, -0.5f, 0.25f, 2.0f, -2.0f};
  double prob[10];
  double temps[3] = {1.0, 0.5, 1.7};
  for (int k = 0; k < 3; k++) {
    softmax_t(logits, 10, temps[k], prob);
    tl_sampler *s = make(plain((float)temps[k], 1000 + (uint64_t)k));
    check_freq(s, logits, 10, prob, N_DRAWS);
    tl_sampler_free(s);
  }

  /* the check itself has teeth: T=1 draws do not pass as T=0.5 */
  softmax_t(logits, 10, 0.5, prob);
  tl_sampler *s = make(plain(1.0f, 5));
  long count[10] = {0};
  for (int d = 0; d < N_DRAWS; d++) count[tl_sampler_sample(s, logits, 10)]++;
  double chi2 = 0;
  for (int i = 0; i < 10; i++) {
    double e = prob[i] * N_DRAWS;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  assert_true(chi2 > 1000.0);
  tl_sampler_free(s);
}

static void test_top_k(void **state) {
  (void)state;
  float logits[12] = {0.3f, 1.2f, -0.4f, 2.2f, 0.9f, 2.0f, 0.1f, 1.9f, -3.0f, 0.0f, 1.0f, 0.5f};
  /* top-k 1 is greedy, whatever the temperature */
  tl_sampler_params p = plain(5.0f, 3);
  p.top_k = 1;
  tl_sampler *s = make(p);
  for (int i = 0; i < 20000; i++) assert_int_equal(tl_sampler_sample(s, logits, 12), 3);
  tl_sampler_free(s);

  /* top-k 2: only tokens 3 and 5, in proportion exp((2.2 - 2.0) / T) */
  double temps[2] = {1.0, 0.7};
  for (int k = 0; k < 2; k++) {
    p = plain((float)temps[k], 40 + (uint64_t)k);
    p.top_k = 2;
    s = make(p);
    double prob[12] = {0};
    double r = exp((2.2 - 2.0) / temps[k]);
    prob[3] = r / (1 + r);
    prob[5] = 1 / (1 + r);
    check_freq(s, logits, 12, prob, N_DRAWS);
    tl_sampler_free(s);
  }

  /* top-k 5 against the reference */
  p = plain(0.9f, 8);
  p.top_k = 5;
  check_against_ref(p, logits, 12, NULL, 0);

  /* top-k larger than the vocabulary: off */
  p = plain(1.0f, 9);
  p.top_k = 1000;
  check_against_ref(p, logits, 12, NULL, 0);

  /* a large top-k (the quickselect path rather than the heap) */
  {
    int nq = 3000;
    float *lq = malloc((size_t)nq * sizeof(float));
    for (int i = 0; i < nq; i++) lq[i] = (float)((i * 7919) % 1500) / 150.0f; /* ties in pairs */
    p = plain(1.0f, 11);
    p.top_k = 1501;
    check_against_ref_n(p, lq, nq, NULL, 0, 10000);
    p.top_p = 0.9f;
    check_against_ref_n(p, lq, nq, NULL, 0, 10000);
    free(lq);
  }

  /* a 256k vocabulary with many near ties: draws stay in the exact top 40 */
  int n = 256000;
  float *big = lcg_logits(n, 777, 33, 2000, 0, 100.0f); /* many exact ties */
  p = plain(1.0f, 10);
  p.top_k = 40;
  s = make(p);
  double *prob = malloc((size_t)n * sizeof(double));
  ref_dist(&p, big, n, NULL, 0, prob);
  int support = 0;
  for (int i = 0; i < n; i++) support += prob[i] > 0;
  assert_int_equal(support, 40);
  check_freq(s, big, n, prob, 2000);
  tl_sampler_free(s);
  free(prob);
  free(big);
}

static void test_top_p(void **state) {
  (void)state;
  /* probabilities 0.5 0.25 0.15 0.1, placed at shuffled ids */
  double pr[4] = {0.5, 0.25, 0.15, 0.1};
  int perm[4] = {2, 0, 3, 1};
  float logits[4];
  logits_from_probs(pr, perm, 4, logits);
  struct {
    float top_p;
    int keep; /* how many of the best are reachable */
  } cases[] = {{0.3f, 1}, {0.7f, 2}, {0.8f, 3}, {0.95f, 4}, {0.0f, 1}};
  for (int c = 0; c < 5; c++) {
    tl_sampler_params p = plain(1.0f, 100 + (uint64_t)c);
    p.top_p = cases[c].top_p;
    check_keeps_best(p, logits, pr, perm, 4, cases[c].keep);
  }

  /* top-p sees the temperature-1 probabilities (llama.cpp order): with
   * p = .5 .3 .2 and top_p .6, tokens 0 and 1 stay even at T = 0.1, where
   * token 1 has weight (3/5)^10 relative to token 0 */
  double pr3[3] = {0.5, 0.3, 0.2};
  float l3[3];
  logits_from_probs(pr3, NULL, 3, l3);
  tl_sampler_params p = plain(0.1f, 7);
  p.top_p = 0.6f;
  tl_sampler *s = make(p);
  double r = pow(0.3 / 0.5, 10.0);
  double prob3[3] = {1 / (1 + r), r / (1 + r), 0};
  check_freq(s, l3, 3, prob3, N_DRAWS);
  tl_sampler_free(s);

  /* a large vocabulary (exercises the partial sort) against the reference */
  int n = 2048;
  float *big = lcg_logits(n, 99, 33, 100000, 0, 8000.0f); /* spread 12.5 */
  for (int k = 0; k < 3; k++) {
    float tps[3] = {0.5f, 0.9f, 0.999f};
    p = plain(1.0f, 200 + (uint64_t)k);
    p.top_p = tps[k];
    check_against_ref_n(p, big, n, NULL, 0, 20000);
  }
  /* a flat distribution: top-p must widen its head to the whole vocabulary */
  for (int i = 0; i < n; i++) big[i] = (float)(i % 7) * 1e-3f;
  p = plain(1.0f, 300);
  p.top_p = 0.9f;
  check_against_ref_n(p, big, n, NULL, 0, 20000);
  free(big);
}

static void test_min_p(void **state) {
  (void)state;
  double pr[5] = {0.4, 0.3, 0.2, 0.06, 0.04};
  int perm[5] = {4, 1, 0, 2, 3};
  float logits[5];
  logits_from_probs(pr, perm, 5, logits);
  struct {
    float min_p;
    int keep;
  } cases[] = {{0.2f, 3}, {0.6f, 2}, {0.12f, 4}, {0.05f, 5}, {0.9f, 1}, {1.0f, 1}};
  for (int c = 0; c < 6; c++) {
    tl_sampler_params p = plain(1.0f, 500 + (uint64_t)c);
    p.min_p = cases[c].min_p;
    check_keeps_best(p, logits, pr, perm, 5, cases[c].keep);
  }
  /* with temperature: survivors reweighted by exp(l / T) */
  tl_sampler_params p = plain(0.5f, 600);
  p.min_p = 0.2f;
  check_against_ref(p, logits, 5, NULL, 0);
}

static void test_chain_vs_reference(void **state) {
  (void)state;
  int n = 300;
  float *logits = lcg_logits(n, 4242, 33, 4000, -2000, 400.0f);
  int hist[20];
  for (int i = 0; i < 20; i++) hist[i] = (i * 37) % n;
  hist[5] = hist[6] = hist[7] = tl_test_argmax(logits, (size_t)n);
  struct {
    float t;
    int k;
    float tp, mp, pen;
    int last_n;
  } cfg[] = {
      {0.8f, 40, 0.95f, 0.05f, 1.0f, 64}, /* the defaults */
      {1.0f, 0, 0.9f, 0.0f, 1.3f, 64},    {0.7f, 20, 1.0f, 0.1f, 1.1f, 10},
      {1.3f, 100, 0.8f, 0.02f, 0.8f, 5},  {1.0f, 0, 1.0f, 0.0f, 1.5f, 3},
  };
  for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
    tl_sampler_params p = plain(cfg[c].t, 900 + c);
    p.top_k = cfg[c].k;
    p.top_p = cfg[c].tp;
    p.min_p = cfg[c].mp;
    p.repeat_penalty = cfg[c].pen;
    p.repeat_last_n = cfg[c].last_n;
    check_against_ref(p, logits, n, hist, 20);
  }
  free(logits);
}

static void test_repeat_penalty(void **state) {
  (void)state;
  tl_sampler_params p = plain(0.0f, 1);
  p.repeat_penalty = 1.1f;
  p.repeat_last_n = 64;
  float l[4] = {2.0f, 1.9f, -1.0f, -1.2f};
  tl_sampler *s = make(p);
  assert_int_equal(tl_sampler_sample(s, l, 4), 0);
  tl_sampler_accept(s, 0); /* 2.0 / 1.1 = 1.82 < 1.9 */
  assert_int_equal(tl_sampler_sample(s, l, 4), 1);
  tl_sampler_reset(s);
  assert_int_equal(tl_sampler_sample(s, l, 4), 0);
  tl_sampler_free(s);

  /* negative logits are multiplied */
  p.repeat_penalty = 1.5f;
  float neg[2] = {-1.0f, -1.2f};
  s = make(p);
  tl_sampler_accept(s, 0); /* -1.5 < -1.2 */
  assert_int_equal(tl_sampler_sample(s, neg, 2), 1);
  tl_sampler_free(s);

  /* each distinct token once: three repeats still divide by 1.1 only once */
  p.repeat_penalty = 1.1f;
  float l2[2] = {2.0f, 1.7f};
  s = make(p);
  for (int i = 0; i < 3; i++) tl_sampler_accept(s, 0);
  assert_int_equal(tl_sampler_sample(s, l2, 2), 0); /* 1.82 > 1.7; 2/1.1^3 = 1.50 would lose */
  tl_sampler_free(s);

  /* the window: repeat_last_n 2 */
  p.repeat_last_n = 2;
  s = make(p);
  tl_sampler_accept(s, 0);
  assert_int_equal(tl_sampler_sample(s, l, 4), 1);
  tl_sampler_accept(s, 3);
  assert_int_equal(tl_sampler_sample(s, l, 4), 1);
  tl_sampler_accept(s, 3); /* 0 has left the window */
  assert_int_equal(tl_sampler_sample(s, l, 4), 0);
  tl_sampler_accept(s, 0);
  assert_int_equal(tl_sampler_sample(s, l, 4), 1);
  tl_sampler_accept(s, 9999); /* out of range ids are harmless */
  tl_sampler_accept(s, -4);
  assert_int_equal(tl_sampler_sample(s, l, 4), 1); /* -4 ignored, 0 still in window */
  tl_sampler_free(s);

  /* repeat_last_n 0 and penalty 1 are off */
  p.repeat_last_n = 0;
  assert_int_equal(sample_after(p, 0, l, 4), 0);
  p.repeat_last_n = 64;
  p.repeat_penalty = 1.0f;
  assert_int_equal(sample_after(p, 0, l, 4), 0);

  /* a penalty < 1 boosts */
  p.repeat_penalty = 0.5f;
  assert_int_equal(sample_after(p, 1, l, 4), 1); /* 1.9 / 0.5 = 3.8 */

  /* the sampled distribution: logits 1, 0 with token 0 penalised by 2 -> 0.5, 0 */
  p = plain(1.0f, 31);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 8;
  s = make(p);
  float l3[2] = {1.0f, 0.0f};
  tl_sampler_accept(s, 0);
  double e = exp(0.5);
  double prob[2] = {e / (e + 1), 1 / (e + 1)};
  check_freq(s, l3, 2, prob, N_DRAWS);
  tl_sampler_free(s);
}

static void test_nonfinite_logits(void **state) {
  (void)state;
  tl_sampler *g = make(plain(0.0f, 1));
  tl_sampler *s = make(plain(1.0f, 2));
  tl_sampler_params dp = tl_sampler_default_params();
  tl_sampler *d = make(dp);

  float a[5] = {NAN, 1.0f, -INFINITY, 0.5f, NAN};
  assert_int_equal(tl_sampler_sample(g, a, 5), 1);
  double prob[5] = {0, exp(0.5) / (exp(0.5) + 1), 0, 1 / (exp(0.5) + 1), 0};
  check_freq(s, a, 5, prob, N_DRAWS);

  float nan_all[3] = {NAN, NAN, NAN};
  float ninf_all[3] = {-INFINITY, -INFINITY, -INFINITY};
  assert_int_equal(tl_sampler_sample(g, nan_all, 3), 0);
  assert_int_equal(tl_sampler_sample(s, nan_all, 3), 0);
  assert_int_equal(tl_sampler_sample(d, nan_all, 3), 0);
  assert_int_equal(tl_sampler_sample(s, ninf_all, 3), 0);
  assert_int_equal(tl_sampler_sample(d, ninf_all, 3), 0);

  /* +inf wins; two of them split evenly */
  float pinf[4] = {1e30f, INFINITY, 3.0f, NAN};
  assert_int_equal(tl_sampler_sample(g, pinf, 4), 1);
  for (int i = 0; i < 1000; i++) assert_int_equal(tl_sampler_sample(s, pinf, 4), 1);
  for (int i = 0; i < 1000; i++) assert_int_equal(tl_sampler_sample(d, pinf, 4), 1);
  float pinf2[4] = {INFINITY, 0.0f, INFINITY, -INFINITY};
  double prob2[4] = {0.5, 0, 0.5, 0};
  check_freq(s, pinf2, 4, prob2, N_DRAWS);

  /* huge finite logits do not overflow the softmax */
  float huge[3] = {3e38f, 2.9e38f, -3e38f};
  for (int i = 0; i < 100; i++) assert_int_equal(tl_sampler_sample(s, huge, 3), 0);

  /* bad calls */
  assert_int_equal(tl_sampler_sample(s, a, 0), -1);
  assert_int_equal(tl_sampler_sample(s, NULL, 5), -1);
  assert_int_equal(tl_sampler_sample(NULL, a, 5), -1);
  float one[1] = {-2.0f};
  assert_int_equal(tl_sampler_sample(s, one, 1), 0);
  tl_sampler_free(g);
  tl_sampler_free(s);
  tl_sampler_free(d);
}

static void test_vocab_sizes_and_reuse(void **state) {
  (void)state;
  /* one sampler across calls with growing and shrinking vocabularies */
  tl_sampler *s = make(tl_sampler_default_params());
  int sizes[5] = {3, 256000, 10, 100000, 1};
  for (int k = 0; k < 5; k++) {
    int n = sizes[k];
    float *l = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) l[i] = (float)((i * 7919) % 1000) / 100.0f;
    int32_t top = tl_test_argmax(l, (size_t)n);
    for (int r = 0; r < 50; r++) {
      tl_token t = tl_sampler_sample(s, l, n);
      assert_true(t >= 0 && t < n);
      /* defaults: min-p 0.05 keeps only logits within log(20) of the max */
      assert_true(l[t] >= l[top] - 3.0f);
      tl_sampler_accept(s, t);
    }
    free(l);
  }
  tl_sampler_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_invalid_params),
      cmocka_unit_test(test_greedy),
      cmocka_unit_test(test_seed_determinism),
      cmocka_unit_test(test_temperature_distribution),
      cmocka_unit_test(test_top_k),
      cmocka_unit_test(test_top_p),
      cmocka_unit_test(test_min_p),
      cmocka_unit_test(test_chain_vs_reference),
      cmocka_unit_test(test_repeat_penalty),
      cmocka_unit_test(test_nonfinite_logits),
      cmocka_unit_test(test_vocab_sizes_and_reuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
