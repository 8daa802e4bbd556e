/* The decoder: one forward pass for every architecture, driven by the traits
 * in tl_arch, the hyper-parameters and the optional tensors a file has. It
 * processes a batch of tokens, each tagged with its sequence and position: a
 * prompt prefill and a decode step are the same code path. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "model/model.h"

static void rms_norm(const float *x, const float *w, float *y, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float scale = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

static void layer_norm(const float *x, const float *w, const float *b, float *y, int n, float eps) {
  double mean = 0, var = 0;
  for (int i = 0; i < n; i++) mean += x[i];
  mean /= n;
  for (int i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
  float scale = (float)(1.0 / sqrt(var / n + eps));
  for (int i = 0; i < n; i++) y[i] = (float)((x[i] - mean) * scale) * w[i] + (b ? b[i] : 0.0f);
}

/* y[t] = norm(x[t]) for n_tok rows of n values (row stride n). */
static void norm_rows(const tl_model *m, const float *x, const float *w, const float *b, float *y,
                      int n_tok, int n) {
  for (int t = 0; t < n_tok; t++) {
    if (m->arch->norm == TL_NORM_LAYER)
      layer_norm(x + (size_t)t * n, w, b, y + (size_t)t * n, n, m->hp.norm_eps);
    else
      rms_norm(x + (size_t)t * n, w, y + (size_t)t * n, n, m->hp.norm_eps);
  }
}

/* A batch's rows, a share of the tokens per thread: x += a (+ b2) where a is
 * given, then y = norm(x) with weight w (and bias nb) where w is given. */
typedef struct rows_task {
  const tl_model *m;
  float *x;
  const float *a, *b2, *w, *nb;
  float *y;
  int n;
} rows_task;

static void rows_run(void *arg, int ith, int nth) {
  const rows_task *t = arg;
  int64_t t0, t1;
  tl_split(t->n, ith, nth, &t0, &t1);
  const int d = t->m->hp.n_embd;
  for (int64_t r = t0; r < t1; r++) {
    float *x = t->x + (size_t)r * d;
    if (t->a) {
      const float *a = t->a + (size_t)r * d;
      if (t->b2) {
        const float *b2 = t->b2 + (size_t)r * d;
        for (int i = 0; i < d; i++) x[i] += a[i] + b2[i];
      } else {
        for (int i = 0; i < d; i++) x[i] += a[i];
      }
    }
    if (t->w) norm_rows(t->m, x, t->w, t->nb, t->y + (size_t)r * d, 1, d);
  }
}

/* fn over a batch of n tokens: on the pool when the batch is more than a
 * few tokens, otherwise on this thread alone. */
static void batch_run(tl_context *c, int n, tl_task_fn fn, void *arg) {
  if (n >= 4)
    tl_pool_run(c->pool, fn, arg);
  else
    fn(arg, 0, 1);
}

/* rows_run over n tokens of n_embd values. */
static void rows(tl_context *c, int n, float *x, const float *a, const float *b2, const float *w,
                 const float *nb, float *y) {
  rows_task t = {c->model, x, a, b2, w, nb, y, n};
  batch_run(c, n, rows_run, &t);
}

static void add_bias(float *y, const float *b, int n_tok, int n) {
  if (!b) return;
  for (int t = 0; t < n_tok; t++)
    for (int i = 0; i < n; i++) y[(size_t)t * n + i] += b[i];
}

/* Rotate the first n_rot dims of each head of q (nq heads) and k (nk heads)
 * in place, for position pos. */
static void rope(const tl_hparams *hp, float theta, float *q, int nq, float *k, int nk,
                 int32_t pos) {
  int half = hp->n_rot / 2;
  for (int i = 0; i < half; i++) {
    double inv = pow((double)theta, -2.0 * i / hp->n_rot);
    if (hp->rope_freq_factors) inv /= hp->rope_freq_factors[i];
    double ang = (double)pos * hp->rope_freq_scale * inv;
    float c = (float)cos(ang), s = (float)sin(ang);
    int i0 = hp->rope_kind == TL_ROPE_NORM ? 2 * i : i;
    int i1 = hp->rope_kind == TL_ROPE_NORM ? 2 * i + 1 : i + half;
    for (int h = 0; h < nq + nk; h++) {
      float *p = h < nq ? q + (size_t)h * hp->head_dim : k + (size_t)(h - nq) * hp->head_dim;
      float x0 = p[i0], x1 = p[i1];
      p[i0] = x0 * c - x1 * s;
      p[i1] = x0 * s + x1 * c;
    }
  }
}

static inline float act(tl_act_kind k, float x) {
  switch (k) {
    case TL_ACT_SILU:
      return x / (1.0f + expf(-x));
    case TL_ACT_GELU_TANH:
      return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case TL_ACT_GELU:
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
  }
  return x;
}

/* Byte offset of cached position pos of a layer, sequence and kv head: each
 * head's positions are contiguous, so attention streams them (for transposed
 * keys, pos a multiple of TL_ATT_TILE gives the start of its block). */
static inline size_t kv_offset(const tl_context *c, int layer, int seq, int kvh, int pos) {
  return ((((size_t)layer * c->n_seq + seq) * (size_t)c->model->hp.n_head_kv + (size_t)kvh) *
              (size_t)c->kv_ctx +
          (size_t)pos) *
         c->kv_head_bytes;
}

/* Keys are stored transposed in blocks of TL_ATT_TILE positions in an f16 or
 * f32 cache (model.h), as rows in a Q8_0 one. */
static inline bool keys_transposed(const tl_context *c) {
  return c->kv_type != TL_KV_Q8_0;
}

/* n values into the cache in its type, every step-th element from off. */
static void kv_store(tl_context *c, void *cache, size_t off, size_t step, const float *src,
                     size_t n) {
  uint8_t *dst = (uint8_t *)cache + off;
  if (c->kv_type == TL_KV_F32) {
    float *d = (float *)(void *)dst;
    for (size_t i = 0; i < n; i++) d[i * step] = src[i];
  } else if (c->kv_type == TL_KV_F16) {
    uint16_t *d = (uint16_t *)(void *)dst;
    for (size_t i = 0; i < n; i++) d[i * step] = tl_f32_to_f16(src[i]);
  } else {
    tl_quant_q8_0(src, dst, (int64_t)n); /* head_dim % 32 == 0: blocks stay within heads */
  }
}

/* Position pos of kv head kvh of layer il's keys and values into the cache. */
static void kv_put(tl_context *c, int il, int seq, int kvh, int pos, const float *k,
                   const float *v) {
  const size_t hd = (size_t)c->model->hp.head_dim;
  kv_store(c, c->v_cache, kv_offset(c, il, seq, kvh, pos), 1, v, hd);
  if (keys_transposed(c)) {
    const int j = pos % TL_ATT_TILE;
    const size_t es = c->kv_type == TL_KV_F32 ? 4 : 2;
    kv_store(c, c->k_cache, kv_offset(c, il, seq, kvh, pos - j) + (size_t)j * es, TL_ATT_TILE, k,
             hd);
  } else {
    kv_store(c, c->k_cache, kv_offset(c, il, seq, kvh, pos), 1, k, hd);
  }
}

#define TL_ATT_RATED_MAX 16
/* Rows of a tile per call of the values kernel (twice as many for the scores). */
#define TL_ATT_PART 16

typedef struct attn_task {
  tl_context *c;
  int layer, n_tok;
  const int32_t *pos, *seq;
  bool rated;                   /* split the query heads by rate (one token) */
  float rate[TL_ATT_RATED_MAX]; /* the threads' rates, clamped */
} attn_task;

/* Positions [j, j + n) of one kv head of a Q8_0 cache as f32 rows of hd values. */
static void kv_rows_q8(const tl_context *c, const void *cache, int layer, int seq, int kvh, int j,
                       int n, float *dst) {
  const uint8_t *src = (const uint8_t *)cache + kv_offset(c, layer, seq, kvh, j);
  tl_cpu_q8_0_to_f32(src, dst, (int64_t)n * c->model->hp.head_dim);
}

static void prefetch_bytes(const void *p, size_t n) {
  for (size_t o = 0; o < n; o += 64) __builtin_prefetch((const uint8_t *)p + o);
}

/* The scores of ng query heads over n positions of transposed keys (value d
 * of position r at kt[d * ldk + r], f16 or f32), for a kernel set without
 * the tile kernel: f16 keys converted to f32 in scratch first, then sums
 * over d in order, each for all positions. */
static void scores_loop(const void *kt, bool f16, int64_t ldk, int n, const float *q, int ng,
                        int hd, float scale, float *s, float *scratch) {
  const float *k = kt;
  if (f16) {
    for (int d = 0; d < hd; d++)
      tl_cpu_f16_to_f32((const uint16_t *)kt + d * ldk, scratch + (size_t)d * TL_ATT_TILE, n);
    k = scratch;
    ldk = TL_ATT_TILE;
  }
  for (int g = 0; g < ng; g++) {
    float *sg = s + (size_t)g * TL_ATT_TILE;
    for (int r = 0; r < n; r++) sg[r] = 0;
    for (int d = 0; d < hd; d++) {
      const float qd = q[(size_t)g * hd + d], *kd = k + d * ldk;
      for (int r = 0; r < n; r++) sg[r] += qd * kd[r];
    }
    for (int r = 0; r < n; r++) sg[r] *= scale;
  }
}

/* The largest of m and x[0..n): four running maxima, which give the same
 * value as one (a maximum does not depend on the order). */
static float max_of(const float *x, int n, float m) {
  float m0 = m, m1 = m, m2 = m, m3 = m;
  int r = 0;
  for (; r + 4 <= n; r += 4) {
    m0 = x[r] > m0 ? x[r] : m0;
    m1 = x[r + 1] > m1 ? x[r + 1] : m1;
    m2 = x[r + 2] > m2 ? x[r + 2] : m2;
    m3 = x[r + 3] > m3 ? x[r + 3] : m3;
  }
  for (; r < n; r++) m0 = x[r] > m0 ? x[r] : m0;
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  return m2 > m0 ? m2 : m0;
}

/* sum[g] = sum[g] * corr[g] + p[g][0] + p[g][1] + ... + p[g][n - 1] for the
 * rows p[g] (ldp apart) of g < group: each sum in position order, as one
 * loop per row makes it, but eight rows side by side, so that their additions
 * overlap (rows past the last repeat it; their sums are dropped). */
static void sum_probs(const float *p, int64_t ldp, int group, int n, const float *corr,
                      float *sum) {
  for (int g0 = 0; g0 < group; g0 += 8) {
    const float *row[8];
    float l[8];
    for (int j = 0; j < 8; j++) {
      const int g = g0 + j < group ? g0 + j : group - 1;
      row[j] = p + (size_t)g * (size_t)ldp;
      l[j] = sum[g] * corr[g];
    }
    for (int r = 0; r < n; r++)
      _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) l[j] += row[j][r];
    for (int j = 0; j < 8 && g0 + j < group; j++) sum[g0 + j] = l[j];
  }
}

/* Tiled attention with an online softmax ("flash" attention): one job is a
 * token and a kv head, serving the query heads that share it (GQA), or a run
 * of those heads. K and V are read in tiles of up to TL_ATT_TILE positions,
 * in place from an f16 or f32 cache (keys transposed, model.h), or converted
 * to f32 from a Q8_0 one; the kernel set's tile kernels, where it has them,
 * compute all the job's heads at once, each key and value loaded once for
 * them all. A token sees the cached positions j <= pos, and j > pos - window
 * on sliding layers.
 *
 * The threads take contiguous runs of the (token, query head) pairs: whole kv
 * heads each when splitting evenly; for one token, shares in proportion to
 * their measured speeds (in steps of up to 4 query heads), so that a slower
 * core does not keep the other waiting. A kv head split between two threads
 * is read by both; every head's result is the same either way, as no
 * operation mixes two heads. */
static void attn_run(void *arg, int ith, int nth) {
  const attn_task *a = arg;
  tl_context *c = a->c;
  const tl_cpu_kernels *kn = c->kernels;
  const tl_hparams *hp = &c->model->hp;
  const tl_layer *L = &c->model->layers[a->layer];
  int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, group = nh / nkv;
  float scale = hp->attn_scale, cap = hp->attn_softcap;
  float *kt = c->att_scratch + (size_t)ith * c->att_scratch_per_thread;
  const int tile = c->att_tile;
  float *vt = kt + (size_t)TL_ATT_TILE * hd;
  float *sc = vt + (size_t)TL_ATT_TILE * hd; /* [group][TL_ATT_TILE] */
  /* then per query head: running maximum, sum, correction, and twice the tile's maximum */
  float *mx = sc + (size_t)group * TL_ATT_TILE, *sum = mx + group, *corr = sum + group;
  const bool in_place = keys_transposed(c), f16 = c->kv_type == TL_KV_F16; /* f16: in place */
  /* values for the plain loop: f16 rows (in place), else f32 rows */
  tl_axpy_fn axpy_v = c->kernels->axpy[f16 ? TL_TYPE_F16 : TL_TYPE_F32];
  /* bytes of a key or value: in the cache (f16 or f32), or in f32 scratch */
  const size_t es = c->kv_type == TL_KV_F32 ? 4 : 2, ves = in_place ? es : 4;
  const size_t block_bytes = (size_t)TL_ATT_TILE * c->kv_head_bytes;
  int64_t b, e;
  struct timespec ts0 = {0, 0};
  if (a->rated) {
    const int step = group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
    tl_split_rated((int64_t)a->n_tok * nh / step, a->rate, ith, nth, &b, &e);
    b *= step;
    e *= step;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
  } else {
    tl_split((int64_t)a->n_tok * nkv, ith, nth, &b, &e);
    b *= group;
    e *= group;
  }
  double work = 0; /* query heads x positions */
  for (int64_t u = b; u < e;) {
    const int t = (int)(u / nh), h = (int)(u % nh), kvh = h / group;
    /* this job's heads: h up to the kv head's last, or to the thread's last */
    const int ng = group - h % group < e - u ? group - h % group : (int)(e - u);
    u += ng;
    int32_t p = a->pos[t], s = a->seq[t];
    int32_t j0 = L->window > 0 && p - L->window + 1 > 0 ? p - L->window + 1 : 0;
    work += (double)ng * (p + 1 - j0);
    const float *q = c->q + ((size_t)t * nh + (size_t)h) * hd;
    float *out = c->att + ((size_t)t * nh + (size_t)h) * hd;
    for (int g = 0; g < ng; g++) {
      mx[g] = -INFINITY;
      sum[g] = 0;
    }
    memset(out, 0, sizeof(float) * (size_t)ng * hd);
    for (int32_t j = j0, n; j <= p; j += n) {
      /* up to the tile size, within one block, up to p */
      const int jr = j % TL_ATT_TILE;
      n = TL_ATT_TILE - jr < tile ? TL_ATT_TILE - jr : tile;
      if (p + 1 - j < n) n = p + 1 - j;
      const size_t at = kv_offset(c, a->layer, s, kvh, j),
                   blk = kv_offset(c, a->layer, s, kvh, j - jr);
      const void *kr = kt, *vr = vt;
      int64_t ldk = TL_ATT_TILE;
      if (in_place) {
        kr = (const uint8_t *)c->k_cache + blk + (size_t)jr * es;
      } else { /* Q8_0 rows to f32, transposed into kt */
        kv_rows_q8(c, c->k_cache, a->layer, s, kvh, j, n, vt);
        for (int r = 0; r < n; r++)
          for (int d = 0; d < hd; d++) kt[(size_t)d * TL_ATT_TILE + r] = vt[(size_t)r * hd + d];
      }
      /* The next block's keys and values (which the weights evicted) are
       * prefetched in parts, one before each part of this tile's scores and
       * values: a few at a time, they arrive while the core computes, where
       * issued all at once they stall it until they drain. */
      const bool next = in_place && j - jr + TL_ATT_TILE <= p;
      const uint8_t *nk = (const uint8_t *)c->k_cache + blk + block_bytes,
                    *nv = (const uint8_t *)c->v_cache + blk + block_bytes;
      /* the tile's largest scores from the kernel, unless they are capped
       * after it (as the reference caps them) */
      float *tmax = kn->att_scores && cap <= 0 ? corr + group : NULL;
      if (kn->att_scores) {
        for (int g = 0; g < ng && tmax; g++) tmax[g] = -INFINITY;
        for (int r0 = 0; r0 < n; r0 += TL_ATT_PART * 2) { /* the kernel's 32 positions */
          const int np = n - r0 < TL_ATT_PART * 2 ? n - r0 : TL_ATT_PART * 2;
          if (next)
            prefetch_bytes(nk + (size_t)r0 * c->kv_head_bytes, (size_t)np * c->kv_head_bytes);
          kn->att_scores((const uint8_t *)kr + (size_t)r0 * ves, f16, ldk, np, q, ng, hd, scale,
                         sc + r0, TL_ATT_TILE, tmax ? tmax + ng : NULL);
          for (int g = 0; g < ng && tmax; g++)
            tmax[g] = tmax[ng + g] > tmax[g] ? tmax[ng + g] : tmax[g];
        }
      } else {
        if (next) prefetch_bytes(nk, block_bytes);
        scores_loop(kr, f16, ldk, n, q, ng, hd, scale, sc, vt);
      }
      for (int g = 0; g < ng; g++) {
        float *sg = sc + (size_t)g * TL_ATT_TILE;
        if (cap > 0)
          for (int r = 0; r < n; r++) sg[r] = cap * tanhf(sg[r] / cap);
        const float m = tmax ? (tmax[g] > mx[g] ? tmax[g] : mx[g]) : max_of(sg, n, mx[g]);
        corr[g] = mx[g] - m;
        mx[g] = m;
        kn->exp_sub(sg, m, sg, n);
      }
      /* rescale what was accumulated under the old maxima, by expf(old - new)
       * (expf(0) = 1 where the maximum stayed) */
      for (int g = 0; g < ng; g++)
        if (corr[g] != 0.0f) {
          kn->exp_sub(&corr[g], 0.0f, &corr[g], 1);
          for (int i = 0; i < hd; i++) out[(size_t)g * hd + i] *= corr[g];
        } else {
          corr[g] = 1.0f;
        }
      if (in_place)
        vr = (const uint8_t *)c->v_cache + at;
      else
        kv_rows_q8(c, c->v_cache, a->layer, s, kvh, j, n, vt);
      if (kn->att_accum) { /* the sums of the probabilities too */
        for (int g = 0; g < ng; g++) sum[g] *= corr[g];
        for (int r0 = 0; r0 < n; r0 += TL_ATT_PART) {
          const int np = n - r0 < TL_ATT_PART ? n - r0 : TL_ATT_PART;
          if (next)
            prefetch_bytes(nv + (size_t)r0 * c->kv_head_bytes, (size_t)np * c->kv_head_bytes);
          kn->att_accum((const uint8_t *)vr + (size_t)r0 * hd * ves, f16, np, sc + r0, TL_ATT_TILE,
                        ng, hd, out, sum);
        }
      } else {
        if (next) prefetch_bytes(nv, block_bytes);
        sum_probs(sc, TL_ATT_TILE, ng, n, corr, sum);
        for (int g = 0; g < ng; g++)
          for (int r = 0; r < n; r++)
            axpy_v(sc[(size_t)g * TL_ATT_TILE + r], (const uint8_t *)vr + (size_t)r * hd * ves,
                   out + (size_t)g * hd, hd);
      }
    }
    for (int g = 0; g < ng; g++) {
      float inv = 1.0f / sum[g];
      for (int i = 0; i < hd; i++) out[(size_t)g * hd + i] *= inv;
    }
  }
  if (a->rated) tl_rate_record(&c->att_rates[ith], work, &ts0); /* this thread's speed */
}

/* Per-head RMS norm of q or k (Qwen 3, Gemma 3). */
static void head_norm(const tl_model *m, float *v, const float *w, int n_tok, int n_heads) {
  int hd = m->hp.head_dim;
  for (size_t r = 0; r < (size_t)n_tok * n_heads; r++)
    rms_norm(v + r * hd, w, v + r * hd, hd, m->hp.norm_eps);
}

/* A layer's batch of query, key and value rows (c->q, c->k, c->v). */
typedef struct qk_task {
  tl_context *c;
  int layer, n_tok;
  const int32_t *pos, *seq;
} qk_task;

/* Rope on the batch's query and key rows, a share of the tokens per thread. */
static void rope_run(void *arg, int ith, int nth) {
  const qk_task *t = arg;
  const tl_hparams *hp = &t->c->model->hp;
  const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
  const float theta = t->c->model->layers[t->layer].rope_theta;
  int64_t t0, t1;
  tl_split(t->n_tok, ith, nth, &t0, &t1);
  for (int64_t i = t0; i < t1; i++)
    rope(hp, theta, t->c->q + i * qd, hp->n_head, t->c->k + i * kvd, hp->n_head_kv, t->pos[i]);
}

/* The batch's keys and values into the cache, a share of the kv heads per
 * thread, each head's tokens in batch order (so that of two tokens at one
 * position, the later one stays, as when they come one after another). */
static void kv_run(void *arg, int ith, int nth) {
  const qk_task *t = arg;
  const tl_hparams *hp = &t->c->model->hp;
  const size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
  int64_t h0, h1;
  tl_split(hp->n_head_kv, ith, nth, &h0, &h1);
  for (int i = 0; i < t->n_tok; i++)
    for (int64_t h = h0; h < h1; h++) {
      const size_t src = (size_t)i * kvd + (size_t)h * hp->head_dim;
      kv_put(t->c, t->layer, t->seq[i], (int)h, t->pos[i], t->c->k + src, t->c->v + src);
    }
}

/* Self-attention of layer il on the normed input xn; result in out [n][d]. */
static void attention(tl_context *c, int il, int n, const int32_t *pos, const int32_t *seq,
                      const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  const tl_layer *L = &m->layers[il];
  int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
  tl_cpu_matmul(c->pool, c->kernels, &L->wq, xn, n, c->q, qd);
  tl_cpu_matmul(c->pool, c->kernels, &L->wk, xn, n, c->k, kvd);
  tl_cpu_matmul(c->pool, c->kernels, &L->wv, xn, n, c->v, kvd);
  add_bias(c->q, L->bq, n, qd);
  add_bias(c->k, L->bk, n, kvd);
  add_bias(c->v, L->bv, n, kvd);
  if (L->q_norm) {
    head_norm(m, c->q, L->q_norm, n, hp->n_head);
    head_norm(m, c->k, L->k_norm, n, hp->n_head_kv);
  }
  qk_task qt = {c, il, n, pos, seq};
  batch_run(c, n, rope_run, &qt);
  batch_run(c, n, kv_run, &qt);
  attn_task at = {c, il, n, pos, seq, false, {0}};
  const int nth = tl_pool_size(c->pool);
  if (n == 1 && nth > 1 && nth <= TL_ATT_RATED_MAX) {
    at.rated = true;
    tl_rates_clamped(c->att_rates, nth, at.rate);
  }
  tl_pool_run(c->pool, attn_run, &at);
  tl_cpu_matmul(c->pool, c->kernels, &L->wo, c->att, n, out, hp->n_embd);
  add_bias(out, L->bo, n, hp->n_embd);
}

typedef struct act_task {
  const tl_cpu_kernels *kn;
  tl_act_kind kind;
  bool gated;
  float *a;       /* gate in, result out */
  const float *b; /* up */
  size_t n;
} act_task;

/* a = act(a) * b (gated) or a = act(b), over a slice per thread. */
static void act_run(void *arg, int ith, int nth) {
  const act_task *t = arg;
  int64_t i0, i1;
  tl_split((int64_t)t->n, ith, nth, &i0, &i1);
  if (t->kind == TL_ACT_SILU) { /* x / (1 + expf(-x)) by the kernel set */
    if (t->gated)
      t->kn->silu(t->a + i0, t->b + i0, t->a + i0, i1 - i0);
    else
      t->kn->silu(t->b + i0, NULL, t->a + i0, i1 - i0);
    return;
  }
  if (t->gated)
    for (int64_t i = i0; i < i1; i++) t->a[i] = act(t->kind, t->a[i]) * t->b[i];
  else
    for (int64_t i = i0; i < i1; i++) t->a[i] = act(t->kind, t->b[i]);
}

/* The MLP of layer il on the normed input xn; result in out [n][d]. */
static void mlp(tl_context *c, int il, int n, const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_layer *L = &m->layers[il];
  int ff = m->hp.n_ff;
  size_t nff = (size_t)n * ff;
  tl_cpu_matmul(c->pool, c->kernels, &L->w_up, xn, n, c->ffn_b, ff);
  add_bias(c->ffn_b, L->b_up, n, ff);
  if (m->arch->gated_ffn) tl_cpu_matmul(c->pool, c->kernels, &L->w_gate, xn, n, c->ffn_a, ff);
  act_task at = {c->kernels, m->arch->act, m->arch->gated_ffn, c->ffn_a, c->ffn_b, nff};
  if (nff >= 32768) /* worth waking the threads (prefill) */
    tl_pool_run(c->pool, act_run, &at);
  else
    act_run(&at, 0, 1);
  tl_cpu_matmul(c->pool, c->kernels, &L->w_down, c->ffn_a, n, out, m->hp.n_embd);
  add_bias(out, L->b_down, n, m->hp.n_embd);
}

tl_status tl_forward(tl_context *c, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  int d = hp->n_embd;
  size_t nd = (size_t)n * d;

  for (int t = 0; t < n; t++) tl_weight_row_f32(&m->tok_embd, tokens[t], c->x + (size_t)t * d);
  if (m->arch->embd_scale) {
    float sc = sqrtf((float)d);
    for (size_t i = 0; i < nd; i++) c->x[i] *= sc;
  }

  for (int il = 0; il < hp->n_layer; il++) {
    const tl_layer *L = &m->layers[il];
    rows(c, n, c->x, NULL, NULL, L->attn_norm, L->attn_norm_b, c->xn);
    attention(c, il, n, pos, seq, c->xn, c->xb);
    if (m->arch->parallel) {
      /* x + attn(norm(x)) + mlp(norm(x)) */
      mlp(c, il, n, c->xn, c->xn);
      rows(c, n, c->x, c->xb, c->xn, NULL, NULL, NULL);
      continue;
    }
    if (L->post_attn_norm) rows(c, n, c->xb, NULL, NULL, L->post_attn_norm, NULL, c->xb);
    rows(c, n, c->x, c->xb, NULL, L->ffn_norm, L->ffn_norm_b, c->xn); /* x += attn; norm */
    mlp(c, il, n, c->xn, c->xb);
    if (L->post_ffn_norm) rows(c, n, c->xb, NULL, NULL, L->post_ffn_norm, NULL, c->xb);
    rows(c, n, c->x, c->xb, NULL, NULL, NULL, NULL);
  }

  /* final norm and the output head, only for the tokens whose logits are wanted */
  int n_out = 0;
  for (int t = 0; t < n; t++) {
    if (!want_logits[t]) continue;
    norm_rows(m, c->x + (size_t)t * d, m->output_norm, m->output_norm_b, c->xn + (size_t)n_out * d,
              1, d);
    n_out++;
  }
  if (n_out == 0) return TL_OK;
  tl_cpu_matmul(c->pool, c->kernels, &m->output, c->xn, n_out, logits_out, hp->n_vocab);
  add_bias(logits_out, m->output_b, n_out, hp->n_vocab);
  if (hp->final_softcap > 0) {
    float cap = hp->final_softcap;
    for (size_t i = 0; i < (size_t)n_out * hp->n_vocab; i++)
      logits_out[i] = cap * tanhf(logits_out[i] / cap);
  }
  return TL_OK;
}
