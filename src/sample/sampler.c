/* Token sampler: repetition penalty -> top-k -> top-p -> min-p -> temperature
 * -> draw from the distribution, in the order of llama.cpp's common sampler
 * chain. Top-k, top-p and min-p see the probabilities at temperature 1 (of the
 * penalised logits); the temperature only reshapes what survives them.
 *
 * Logits are never modified: each call copies them into a scratch buffer kept
 * in the sampler (grown on demand, reused). Nothing is fully sorted: top-k is
 * a quickselect, min-p a linear filter, and top-p a quickselect steered by
 * probability mass (all expected O(n)); the final draw does not need order.
 *
 * Non-finite logits: NaN counts as -inf, +inf as the largest float. Tokens at
 * -inf are never drawn; if every logit is -inf (or NaN) the result is token 0,
 * the lowest id among the tied maxima, as greedy decoding would give. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "core/core.h"
#include "sample/sample.h"

/* The seed of tl_sampler_default_params(). Callers wanting varied output pass
 * their own (the CLI uses the clock). */
#define TL_SAMPLER_DEFAULT_SEED UINT64_C(0x746f7263686c6573) /* "torchles" */

/* Top-k up to this size runs as one pass with a bounded heap; larger as a
 * quickselect. */
#define TL_SAMPLER_HEAP_K 1024

/* Longest repetition window accepted (tokens). */
#define TL_SAMPLER_MAX_LAST_N (1 << 24)

typedef struct tl_cand {
  double w; /* a weight, unnormalised (scratch for the stage at hand) */
  float logit;
  int32_t id;
} tl_cand;

struct tl_sampler {
  tl_sampler_params p;
  uint64_t rng[4]; /* xoshiro256** state */

  tl_token *hist; /* ring buffer of the last repeat_last_n accepted tokens */
  int32_t hist_len;
  int32_t hist_pos;      /* next slot to write */
  tl_token *hist_sorted; /* scratch: the window, sorted, for de-duplication */

  tl_cand *cand; /* scratch, cap entries */
  int32_t cap;
  tl_cand *heap; /* top_k entries when top_k is small (see TL_SAMPLER_HEAP_K) */
};

/* ---- random numbers ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void rng_seed(tl_sampler *s, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(tl_sampler *s) {
  uint64_t *st = s->rng;
  uint64_t result = rotl64(st[1] * 5, 7) * 9;
  uint64_t t = st[1] << 17;
  st[2] ^= st[0];
  st[3] ^= st[1];
  st[1] ^= st[2];
  st[0] ^= st[3];
  st[2] ^= t;
  st[3] = rotl64(st[3], 45);
  return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(tl_sampler *s) {
  return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* ---- parameters ---------------------------------------------------------- */

tl_sampler_params tl_sampler_default_params(void) {
  tl_sampler_params p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  p.repeat_penalty = 1.0f;
  p.repeat_last_n = 64;
  p.seed = TL_SAMPLER_DEFAULT_SEED;
  return p;
}

static tl_status check_params(const tl_sampler_params *p) {
  if (!isfinite(p->temperature)) {
    return tl_fail(TL_ERR_INVALID_ARG, "sampler: temperature must be finite (got %g)",
                   (double)p->temperature);
  }
  if (isnan(p->top_p) || p->top_p < 0.0f) {
    return tl_fail(TL_ERR_INVALID_ARG, "sampler: top_p must be >= 0 (got %g)", (double)p->top_p);
  }
  if (isnan(p->min_p) || p->min_p > 1.0f) {
    return tl_fail(TL_ERR_INVALID_ARG, "sampler: min_p must be <= 1 (got %g)", (double)p->min_p);
  }
  if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0.0f) {
    return tl_fail(TL_ERR_INVALID_ARG, "sampler: repeat_penalty must be finite and > 0 (got %g)",
                   (double)p->repeat_penalty);
  }
  if (p->repeat_last_n < 0 || p->repeat_last_n > TL_SAMPLER_MAX_LAST_N) {
    return tl_fail(TL_ERR_INVALID_ARG, "sampler: repeat_last_n must be in [0, %d] (got %d)",
                   TL_SAMPLER_MAX_LAST_N, (int)p->repeat_last_n);
  }
  return TL_OK;
}

tl_status tl_sampler_new(const tl_sampler_params *params, tl_sampler **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "sampler: out is NULL");
  *out = NULL;
  if (!params) return tl_fail(TL_ERR_INVALID_ARG, "sampler: params is NULL");
  tl_status st = check_params(params);
  if (st != TL_OK) return st;

  tl_sampler *s = calloc(1, sizeof(*s));
  if (!s) return tl_fail(TL_ERR_NOMEM, "sampler: out of memory");
  s->p = *params;
  if (s->p.repeat_last_n > 0) {
    s->hist = tl_malloc_array((size_t)s->p.repeat_last_n, sizeof(tl_token));
    s->hist_sorted = tl_malloc_array((size_t)s->p.repeat_last_n, sizeof(tl_token));
    if (!s->hist || !s->hist_sorted) {
      tl_sampler_free(s);
      return tl_fail(TL_ERR_NOMEM, "sampler: out of memory (repeat_last_n %d)",
                     (int)params->repeat_last_n);
    }
  }
  if (s->p.top_k > 0 && s->p.top_k <= TL_SAMPLER_HEAP_K) {
    s->heap = tl_malloc_array((size_t)s->p.top_k, sizeof(tl_cand));
    if (!s->heap) {
      tl_sampler_free(s);
      return tl_fail(TL_ERR_NOMEM, "sampler: out of memory");
    }
  }
  rng_seed(s, s->p.seed);
  *out = s;
  return TL_OK;
}

void tl_sampler_free(tl_sampler *s) {
  if (!s) return;
  free(s->hist);
  free(s->hist_sorted);
  free(s->cand);
  free(s->heap);
  free(s);
}

void tl_sampler_accept(tl_sampler *s, tl_token t) {
  if (!s || t < 0 || s->p.repeat_last_n <= 0) return;
  s->hist[s->hist_pos] = t;
  s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
  if (s->hist_len < s->p.repeat_last_n) s->hist_len++;
}

/* Forget the history and restart the random sequence from the seed. */
void tl_sampler_reset(tl_sampler *s) {
  if (!s) return;
  s->hist_len = 0;
  s->hist_pos = 0;
  rng_seed(s, s->p.seed);
}

/* ---- candidate helpers --------------------------------------------------- */

/* a ranks before b: higher logit, then lower id (a strict total order). */
static inline bool cand_before(const tl_cand *a, const tl_cand *b) {
  return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
  const tl_cand *a = pa, *b = pb;
  if (cand_before(a, b)) return -1;
  if (cand_before(b, a)) return 1;
  return 0;
}

static int token_cmp(const void *pa, const void *pb) {
  tl_token a = *(const tl_token *)pa, b = *(const tl_token *)pb;
  return (a > b) - (a < b);
}

static inline void cand_swap(tl_cand *a, tl_cand *b) {
  tl_cand t = *a;
  *a = *b;
  *b = t;
}

/* Hoare partition of c[lo..hi] (hi > lo) around a median-of-three pivot, by
 * rank. Afterwards c[lo..*j] rank before the pivot or are it, c[*i..hi] after
 * it or are it, and anything strictly between (*j, *i) is the pivot. */
static void partition_rank(tl_cand *c, int32_t lo, int32_t hi, int32_t *pi, int32_t *pj) {
  int32_t mid = lo + (hi - lo) / 2;
  if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
  if (cand_before(&c[hi], &c[lo])) cand_swap(&c[hi], &c[lo]);
  if (cand_before(&c[hi], &c[mid])) cand_swap(&c[hi], &c[mid]);
  tl_cand pivot = c[mid]; /* c[lo] <= pivot <= c[hi] in rank order */
  int32_t i = lo, j = hi;
  while (i <= j) {
    while (cand_before(&c[i], &pivot)) i++;
    while (cand_before(&pivot, &c[j])) j--;
    if (i <= j) {
      cand_swap(&c[i], &c[j]);
      i++;
      j--;
    }
  }
  *pi = i;
  *pj = j;
}

/* Rearrange c[0..n) so that its k best candidates come first (k < n), in no
 * particular order. Quickselect; falls back to sorting the remaining range if
 * the partitions keep coming out lopsided. */
static void select_top_k(tl_cand *c, int32_t n, int32_t k) {
  int32_t lo = 0, hi = n - 1; /* the k-th position lies in [lo, hi] */
  int budget = 64;
  while (hi > lo) {
    if (budget-- == 0) {
      qsort(c + lo, (size_t)(hi - lo + 1), sizeof(*c), cand_cmp);
      return;
    }
    int32_t i, j;
    partition_rank(c, lo, hi, &i, &j);
    if (k - 1 <= j) {
      hi = j;
    } else if (k - 1 >= i) {
      lo = i;
    } else {
      return;
    }
  }
}

/* Restore the heap below slot i: a min-heap by rank (the root ranks last). */
static void heap_sift_down(tl_cand *h, int32_t k, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, w = i;
    if (l < k && cand_before(&h[w], &h[l])) w = l;
    if (l + 1 < k && cand_before(&h[w], &h[l + 1])) w = l + 1;
    if (w == i) return;
    cand_swap(&h[i], &h[w]);
    i = w;
  }
}

/* As select_top_k, in one pass keeping the k best seen in heap[0..k): most
 * candidates cost one comparison with the worst kept. */
static void select_top_k_heap(tl_cand *c, int32_t n, int32_t k, tl_cand *heap) {
  memcpy(heap, c, (size_t)k * sizeof(*c));
  for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(heap, k, i);
  for (int32_t i = k; i < n; i++) {
    if (cand_before(&c[i], &heap[0])) {
      heap[0] = c[i];
      heap_sift_down(heap, k, 0);
    }
  }
  memcpy(c, heap, (size_t)k * sizeof(*c));
}

/* Move the candidates with logit >= thr to the front; returns their count.
 * Order within either part is not kept. */
static int32_t partition_ge(tl_cand *c, int32_t n, double thr) {
  int32_t m = 0;
  for (int32_t i = 0; i < n; i++) {
    if ((double)c[i].logit >= thr) {
      if (i != m) cand_swap(&c[i], &c[m]);
      m++;
    }
  }
  return m;
}

static bool ensure_scratch(tl_sampler *s, int32_t n) {
  if (n <= s->cap) return true;
  tl_cand *c = tl_malloc_array((size_t)n, sizeof(*c));
  if (!c) return false;
  free(s->cand);
  s->cand = c;
  s->cap = n;
  return true;
}

static inline float sanitize(float x) {
  if (isnan(x)) return -INFINITY;
  if (x > FLT_MAX) return FLT_MAX;
  return x;
}

/* Greedy pick straight from the logits (no penalty, no scratch). */
static tl_token argmax_raw(const float *logits, int32_t n) {
  tl_token best = 0;
  float bv = sanitize(logits[0]);
  for (int32_t i = 1; i < n; i++) {
    float v = sanitize(logits[i]);
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/* Apply the repetition penalty to c (indexed by token id) over the distinct
 * tokens of the window. */
static void apply_penalty(tl_sampler *s, tl_cand *c, int32_t n) {
  float pen = s->p.repeat_penalty;
  if (pen == 1.0f || s->hist_len == 0) return;
  int32_t m = 0;
  for (int32_t i = 0; i < s->hist_len; i++) {
    tl_token t = s->hist[i];
    if (t >= 0 && t < n) s->hist_sorted[m++] = t;
  }
  qsort(s->hist_sorted, (size_t)m, sizeof(tl_token), token_cmp);
  for (int32_t i = 0; i < m; i++) {
    if (i > 0 && s->hist_sorted[i] == s->hist_sorted[i - 1]) continue;
    float *l = &c[s->hist_sorted[i]].logit;
    *l = *l > 0.0f ? *l / pen : *l * pen;
    if (*l > FLT_MAX) *l = FLT_MAX;
  }
}

/* ---- sampling ------------------------------------------------------------ */

/* Top-p on c[0..m) whose w holds the unnormalised temperature-1 probabilities:
 * rearranges c so that the shortest ranked head with mass >= need comes first
 * and returns its length. A quickselect steered by mass instead of by count:
 * expected O(m), and the head is never sorted. Requires need > 0. */
static int32_t select_top_p(tl_cand *c, int32_t m, double need) {
  int32_t lo = 0, hi = m - 1; /* c[0..lo) is in the head; the boundary is in [lo, hi] */
  double acc = 0.0;           /* mass of c[0..lo); always < need here */
  int budget = 64;
  for (;;) {
    if (hi - lo < 16 || budget-- == 0) {
      qsort(c + lo, (size_t)(hi - lo + 1), sizeof(*c), cand_cmp);
      for (int32_t i = lo; i <= hi; i++) {
        acc += c[i].w;
        if (acc >= need) return i + 1;
      }
      return hi + 1; /* only rounding gets here: keep the whole range */
    }
    int32_t i, j;
    partition_rank(c, lo, hi, &i, &j);
    double left = 0.0;
    for (int32_t k = lo; k <= j; k++) left += c[k].w;
    if (acc + left >= need) {
      hi = j;
      continue;
    }
    acc += left;
    for (int32_t k = j + 1; k < i; k++) { /* the pivot, if it sits between */
      acc += c[k].w;
      if (acc >= need) return k + 1;
    }
    lo = i;
    if (lo > hi) return hi + 1;
  }
}

/* The candidates the chain keeps from n logits: c[0..m) with c[i].w their
 * unnormalised probabilities (after temperature), m returned; s->cand holds
 * them. Greedy samplers keep one candidate (the first maximum, weight 1).
 * 0 when the scratch cannot be allocated. This one function serves
 * tl_sampler_sample (which draws from the candidates) and tl_sampler_probs
 * (which writes them out), so the two always describe one distribution. */
static int32_t chain(tl_sampler *s, const float *logits, int32_t n, bool *fixed) {
  *fixed = true; /* greedy or no candidate: the choice needs no random number */
  if (!ensure_scratch(s, n)) return 0;
  tl_cand *c = s->cand;
  for (int32_t i = 0; i < n; i++) {
    c[i].logit = sanitize(logits[i]);
    c[i].id = i;
  }
  apply_penalty(s, c, n);

  /* greedy: the first (lowest-id) maximum; with all -inf that is token 0 */
  if (s->p.temperature <= 0.0f) {
    int32_t best = 0;
    float bv = c[0].logit;
    for (int32_t i = 1; i < n; i++) {
      if (c[i].logit > bv) {
        bv = c[i].logit;
        best = i;
      }
    }
    c[0] = c[best];
    c[0].w = 1.0;
    return 1;
  }

  /* drop the impossible tokens */
  int32_t m = 0;
  for (int32_t i = 0; i < n; i++) {
    if (c[i].logit > -INFINITY) c[m++] = c[i];
  }
  if (m == 0) { /* every logit -inf: token 0, as greedy decoding would give */
    c[0].id = 0;
    c[0].w = 1.0;
    return 1;
  }

  *fixed = false;
  /* top-k */
  if (s->p.top_k > 0 && s->p.top_k < m) {
    if (s->heap) {
      select_top_k_heap(c, m, s->p.top_k, s->heap);
    } else {
      select_top_k(c, m, s->p.top_k);
    }
    m = s->p.top_k;
  }

  /* probabilities at temperature 1: p_i = exp(l_i - max) / z */
  int32_t best = 0;
  for (int32_t i = 1; i < m; i++) {
    if (cand_before(&c[i], &c[best])) best = i;
  }
  double max = c[best].logit;

  bool use_top_p = s->p.top_p < 1.0f;
  double z = 0.0;
  if (use_top_p) {
    for (int32_t i = 0; i < m; i++) z += (c[i].w = exp((double)c[i].logit - max));
  }

  /* min-p keeps {l : l - max >= log(min_p)}: a head of the ranked list, like
   * the set top-p keeps, so the two filters commute; the cheap one goes first
   * and top-p searches only what it left (z still covers everything top-k
   * kept, as top-p runs before min-p). */
  if (s->p.min_p > 0.0f) m = partition_ge(c, m, max + log((double)s->p.min_p));

  /* top-p: the shortest ranked head whose probability reaches top_p */
  if (use_top_p) {
    double need = (double)s->p.top_p * z;
    if (need > 0.0) {
      m = select_top_p(c, m, need);
    } else { /* top_p 0: the best alone */
      for (int32_t i = 1; i < m; i++) {
        if (cand_before(&c[i], &c[0])) cand_swap(&c[i], &c[0]);
      }
      m = 1;
    }
  }

  /* temperature */
  double inv_t = 1.0 / (double)s->p.temperature;
  for (int32_t i = 0; i < m; i++) c[i].w = exp(((double)c[i].logit - max) * inv_t);
  return m;
}

/* Draw from c[0..m) by inverse CDF over the weights. */
static tl_token draw_cands(tl_sampler *s, const tl_cand *c, int32_t m) {
  double sum = 0.0;
  for (int32_t i = 0; i < m; i++) sum += c[i].w;
  double target = rng_uniform(s) * sum;
  double cum = 0.0;
  int32_t last = 0;
  for (int32_t i = 0; i < m; i++) {
    if (c[i].w <= 0.0) continue;
    cum += c[i].w;
    last = i;
    if (target < cum) return c[i].id;
  }
  return c[last].id; /* rounding left target at the very end */
}

/* Pick a token. Returns -1 when s or logits is NULL or n <= 0. If scratch
 * memory cannot be allocated, falls back to the argmax of the raw logits. */
tl_token tl_sampler_sample(tl_sampler *s, const float *logits, int32_t n) {
  if (!s || !logits || n <= 0) return -1;
  bool fixed;
  int32_t m = chain(s, logits, n, &fixed);
  if (m == 0) {
    tl_log(TL_LOG_WARN, "sampler: out of memory for %d candidates; using greedy", (int)n);
    return argmax_raw(logits, n);
  }
  if (fixed) return s->cand[0].id;
  return draw_cands(s, s->cand, m);
}

tl_status tl_sampler_probs(tl_sampler *s, const float *logits, int32_t n, float *probs) {
  if (!s || !logits || n <= 0 || !probs)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "sampler: tl_sampler_probs needs a sampler, logits, n > 0 "
                   "and an output array");
  bool fixed;
  int32_t m = chain(s, logits, n, &fixed);
  if (m == 0) return tl_fail(TL_ERR_NOMEM, "sampler: out of memory for %d candidates", (int)n);
  double sum = 0.0;
  for (int32_t i = 0; i < m; i++) sum += s->cand[i].w;
  memset(probs, 0, sizeof(float) * (size_t)n);
  for (int32_t i = 0; i < m; i++) probs[s->cand[i].id] = (float)(s->cand[i].w / sum);
  return TL_OK;
}

/* ---- for speculative decoding (sample/sample.h) --------------------------- */

const tl_sampler_params *tl_sampler_get_params(const tl_sampler *s) {
  return &s->p;
}

double tl_sampler_rand(tl_sampler *s) {
  return rng_uniform(s);
}

tl_token tl_sampler_draw(tl_sampler *s, const float *w, int32_t n) {
  double sum = 0.0;
  for (int32_t i = 0; i < n; i++)
    if (w[i] > 0.0f) sum += (double)w[i];
  if (!(sum > 0.0)) return -1;
  double target = rng_uniform(s) * sum;
  double cum = 0.0;
  int32_t last = -1;
  for (int32_t i = 0; i < n; i++) {
    if (!(w[i] > 0.0f)) continue;
    cum += (double)w[i];
    last = i;
    if (target < cum) return i;
  }
  return last;
}

void tl_sampler_set_history(tl_sampler *s, const tl_token *toks, int32_t n) {
  s->hist_len = 0;
  s->hist_pos = 0;
  int32_t from = n > s->p.repeat_last_n ? n - s->p.repeat_last_n : 0;
  for (int32_t i = from; i < n; i++) tl_sampler_accept(s, toks[i]);
}
