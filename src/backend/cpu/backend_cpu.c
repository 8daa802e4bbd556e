/* The CPU backend: the operations of backend/backend.h on host memory, run
 * on a thread pool with the kernel set chosen for this CPU (cpu.h). It owns
 * the pool, the KV cache and the attention scratch. Weights are used in
 * place: the backend's view of a weight is the mapped file's own. */
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"

/* Positions per attention tile, and per block of transposed keys in an f16
 * or f32 KV cache (a tile never crosses a block). */
#define TL_ATT_TILE 64

typedef struct cpu_ctx {
  tl_backend be;
  tl_backend_config cfg;
  int32_t n_seq;
  int32_t kv_ctx; /* cached positions per head: n_ctx rounded up to a whole block */
  tl_kv_type kv_type;
  /* bytes of one cached position (n_head_kv * head_dim values in kv_type:
   * f32, f16, or Q8_0 blocks of 32 along each head) and of one head's slice */
  size_t kv_row_bytes, kv_head_bytes;
  /* [n_layer][n_seq][n_head_kv][kv_ctx] positions of kv_head_bytes each. Values
   * are rows (position-major). Keys are rows too in a Q8_0 cache (blocks of 32
   * along the head); in an f16 or f32 cache they are transposed in blocks of
   * TL_ATT_TILE positions: value d of position j at element
   * (j - j % TL_ATT_TILE) * head_dim + d * TL_ATT_TILE + j % TL_ATT_TILE. */
  void *k_cache, *v_cache;
  tl_pool *pool;
  const tl_cpu_kernels *kernels;
  float *att_scratch; /* per thread: K and V tiles, scores, running max and sum */
  size_t att_scratch_per_thread;
  float *att_rates; /* per thread: attention work (query heads x positions) per ns, smoothed */
  int att_tile;     /* positions per tile: TL_ATT_TILE, or fewer (tests) */
  tl_step st;       /* the step being run */
  tl_status err;    /* the step's first failed operation (step_end returns it) */
} cpu_ctx;

static cpu_ctx *cpu_of(tl_backend *be) {
  return be->priv;
}

/* n x size bytes (at least one) from a 64-byte boundary: the SIMD kernels
 * read 64 bytes at a time, and a vector that straddles two cache lines costs
 * two reads (malloc gives 16-byte alignment only). */
static void *alloc_lines(size_t n, size_t size) {
  size_t bytes;
  if (!tl_mul_size(n ? n : 1, size ? size : 1, &bytes) || bytes > SIZE_MAX - 63) return NULL;
  return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

/* The KV cache: 2 MiB-aligned and marked for huge pages when it is large, so
 * that attention, which reads each layer's cache back once per token after
 * the weights have gone through the caches, takes few TLB misses (measured at
 * 2048 cached positions: the f16 -> f32 tile conversions, where those misses
 * land, took about 30 % less time). A hint: without it, ordinary pages. */
static void *alloc_cache(size_t n, size_t size, bool small_pages) {
  const size_t huge = (size_t)2 << 20;
  size_t total;
  if (!tl_mul_size(n, size, &total)) return NULL;
  if (total < 2 * huge) return alloc_lines(n, size);
  if (small_pages) {
    void *q = alloc_lines(n, size);
#ifdef MADV_NOHUGEPAGE
    /* where transparent huge pages are "always": whole pages only */
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)q;
    const uintptr_t lo = (a + pg - 1) / pg * pg, hi = (a + total) / pg * pg;
    if (q && hi > lo) madvise((void *)lo, hi - lo, MADV_NOHUGEPAGE);
#endif
    return q;
  }
  const size_t whole = (total + huge - 1) / huge * huge; /* aligned_alloc wants a multiple */
  void *p = aligned_alloc(huge, whole);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, whole, MADV_HUGEPAGE);
#endif
  return p;
}

/* fn over a batch of n rows: on the pool when there are more than a few,
 * otherwise on this thread alone. */
static void batch_run(cpu_ctx *c, int64_t n, tl_task_fn fn, void *arg) {
  if (n >= 4)
    tl_pool_run(c->pool, fn, arg);
  else
    fn(arg, 0, 1);
}

/* ---- norms ---------------------------------------------------------------- */

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
/* The norm op's rows, a share per thread. */
static void norm_run(void *arg, int ith, int nth) {
  const tl_norm_op *t = arg;
  int64_t r0, r1;
  tl_split(t->rows, ith, nth, &r0, &r1);
  const int d = (int)t->len;
  for (int64_t r = r0; r < r1; r++) {
    float *x = t->x + (size_t)r * d;
    if (t->a) {
      const float *a = t->a + (size_t)r * d;
      if (t->b) {
        const float *b2 = t->b + (size_t)r * d;
        for (int i = 0; i < d; i++) x[i] += a[i] + b2[i];
      } else {
        for (int i = 0; i < d; i++) x[i] += a[i];
      }
    }
    if (!t->w) continue;
    if (t->kind == TL_NORM_LAYER)
      layer_norm(x, t->w, t->nb, t->y + (size_t)r * d, d, t->eps);
    else
      rms_norm(x, t->w, t->y + (size_t)r * d, d, t->eps);
  }
}

static void cpu_norm(tl_backend *be, const tl_norm_op *op) {
  batch_run(cpu_of(be), op->rows, norm_run, (void *)op);
}

/* ---- rope ----------------------------------------------------------------- */

/* Rotate the first n_rot dims of each head of q (nq heads) and k (nk heads)
 * in place, for position pos. */
static void rope(const tl_rope_op *hp, float *q, int nq, float *k, int nk, int32_t pos) {
  const float theta = hp->theta;
  int half = hp->n_rot / 2;
  for (int i = 0; i < half; i++) {
    double inv = pow((double)theta, -2.0 * i / hp->n_rot);
    if (hp->freq_factors) inv /= hp->freq_factors[i];
    double ang = (double)pos * hp->freq_scale * inv;
    float c = (float)cos(ang), s = (float)sin(ang);
    int i0 = hp->kind == TL_ROPE_NORM ? 2 * i : i;
    int i1 = hp->kind == TL_ROPE_NORM ? 2 * i + 1 : i + half;
    for (int h = 0; h < nq + nk; h++) {
      float *p = h < nq ? q + (size_t)h * hp->head_dim : k + (size_t)(h - nq) * hp->head_dim;
      float x0 = p[i0], x1 = p[i1];
      p[i0] = x0 * c - x1 * s;
      p[i1] = x0 * s + x1 * c;
    }
  }
}

typedef struct rope_task {
  const tl_rope_op *op;
  const int32_t *pos;
  int32_t n;
} rope_task;

/* Rope on the step's query and key rows, a share of the tokens per thread. */
static void rope_run(void *arg, int ith, int nth) {
  const rope_task *t = arg;
  const tl_rope_op *op = t->op;
  const size_t qd = (size_t)op->n_head * op->head_dim, kvd = (size_t)op->n_head_kv * op->head_dim;
  int64_t t0, t1;
  tl_split(t->n, ith, nth, &t0, &t1);
  for (int64_t i = t0; i < t1; i++)
    rope(op, op->q + i * qd, op->n_head, op->k + i * kvd, op->n_head_kv, t->pos[i]);
}

static void cpu_rope(tl_backend *be, const tl_rope_op *op) {
  cpu_ctx *c = cpu_of(be);
  rope_task t = {op, c->st.pos, c->st.n};
  batch_run(c, c->st.n, rope_run, &t);
}

/* ---- KV cache and attention ------------------------------------------------ */

/* Byte offset of cached position pos of a layer, sequence and kv head: each
 * head's positions are contiguous, so attention streams them (for transposed
 * keys, pos a multiple of TL_ATT_TILE gives the start of its block). */
static inline size_t kv_offset(const cpu_ctx *c, int layer, int seq, int kvh, int pos) {
  return ((((size_t)layer * c->n_seq + seq) * (size_t)c->cfg.n_head_kv + (size_t)kvh) *
              (size_t)c->kv_ctx +
          (size_t)pos) *
         c->kv_head_bytes;
}

/* Keys are stored transposed in blocks of TL_ATT_TILE positions in an f16 or
 * f32 cache (see cpu_ctx), as rows in a Q8_0 one. */
static inline bool keys_transposed(const cpu_ctx *c) {
  return c->kv_type != TL_KV_Q8_0;
}

/* n values into the cache in its type, every step-th element from off. */
static void kv_store(cpu_ctx *c, void *cache, size_t off, size_t step, const float *src, size_t n) {
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
static void kv_put(cpu_ctx *c, int il, int seq, int kvh, int pos, const float *k, const float *v) {
  const size_t hd = (size_t)c->cfg.head_dim;
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
  cpu_ctx *c;
  const tl_attn_op *op;
  int n_tok;
  const int32_t *pos, *seq;
  bool rated;                   /* split the query heads by rate (one token) */
  float rate[TL_ATT_RATED_MAX]; /* the threads' rates, clamped */
} attn_task;

/* Positions [j, j + n) of one kv head of a Q8_0 cache as f32 rows of hd values. */
static void kv_rows_q8(const cpu_ctx *c, const void *cache, int layer, int seq, int kvh, int j,
                       int n, float *dst) {
  const uint8_t *src = (const uint8_t *)cache + kv_offset(c, layer, seq, kvh, j);
  tl_cpu_q8_0_to_f32(src, dst, (int64_t)n * c->cfg.head_dim);
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
  cpu_ctx *c = a->c;
  const tl_cpu_kernels *kn = c->kernels;
  const tl_attn_op *op = a->op;
  const int layer = op->layer, window = op->window;
  int hd = op->head_dim, nh = op->n_head, nkv = op->n_head_kv, group = nh / nkv;
  float scale = op->scale, cap = op->softcap;
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
    int32_t j0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
    work += (double)ng * (p + 1 - j0);
    const float *q = op->q + ((size_t)t * nh + (size_t)h) * hd;
    float *out = op->out + ((size_t)t * nh + (size_t)h) * hd;
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
      const size_t at = kv_offset(c, layer, s, kvh, j), blk = kv_offset(c, layer, s, kvh, j - jr);
      const void *kr = kt, *vr = vt;
      int64_t ldk = TL_ATT_TILE;
      if (in_place) {
        kr = (const uint8_t *)c->k_cache + blk + (size_t)jr * es;
      } else { /* Q8_0 rows to f32, transposed into kt */
        kv_rows_q8(c, c->k_cache, layer, s, kvh, j, n, vt);
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
        kv_rows_q8(c, c->v_cache, layer, s, kvh, j, n, vt);
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

typedef struct kv_task {
  cpu_ctx *c;
  int layer;
  const float *k, *v;
} kv_task;

/* The step's keys and values into the cache, a share of the kv heads per
 * thread, each head's tokens in step order (so that of two tokens at one
 * position, the later one stays, as when they come one after another). */
static void kv_run(void *arg, int ith, int nth) {
  const kv_task *t = arg;
  cpu_ctx *c = t->c;
  const size_t kvd = (size_t)c->cfg.n_head_kv * c->cfg.head_dim;
  int64_t h0, h1;
  tl_split(c->cfg.n_head_kv, ith, nth, &h0, &h1);
  for (int i = 0; i < c->st.n; i++)
    for (int64_t h = h0; h < h1; h++) {
      const size_t src = (size_t)i * kvd + (size_t)h * c->cfg.head_dim;
      kv_put(c, t->layer, c->st.seq[i], (int)h, c->st.pos[i], t->k + src, t->v + src);
    }
}

static void cpu_kv_store(tl_backend *be, int32_t layer, const float *k, const float *v) {
  cpu_ctx *c = cpu_of(be);
  kv_task t = {c, layer, k, v};
  batch_run(c, c->st.n, kv_run, &t);
}

static void cpu_attention(tl_backend *be, const tl_attn_op *op) {
  cpu_ctx *c = cpu_of(be);
  attn_task at = {c, op, c->st.n, c->st.pos, c->st.seq, false, {0}};
  const int nth = tl_pool_size(c->pool);
  if (c->st.n == 1 && nth > 1 && nth <= TL_ATT_RATED_MAX) {
    at.rated = true;
    tl_rates_clamped(c->att_rates, nth, at.rate);
  }
  tl_pool_run(c->pool, attn_run, &at);
}

/* Positions [p0, p1) of every layer and kv head from sequence src to dst:
 * values and Q8_0 keys are rows; f16/f32 keys are transposed in blocks, so
 * each block's part of the range is one run per value d. */
static tl_status cpu_kv_copy(tl_backend *be, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  cpu_ctx *c = cpu_of(be);
  if (src == dst || p1 <= p0) return TL_OK;
  const size_t es = c->kv_type == TL_KV_F32 ? 4 : 2;
  for (int il = 0; il < c->cfg.n_layer; il++)
    for (int h = 0; h < c->cfg.n_head_kv; h++) {
      const size_t from = kv_offset(c, il, src, h, p0), to = kv_offset(c, il, dst, h, p0);
      const size_t bytes = (size_t)(p1 - p0) * c->kv_head_bytes;
      memcpy((uint8_t *)c->v_cache + to, (const uint8_t *)c->v_cache + from, bytes);
      if (!keys_transposed(c)) {
        memcpy((uint8_t *)c->k_cache + to, (const uint8_t *)c->k_cache + from, bytes);
        continue;
      }
      /* per block, positions [j0, j1) of it: one run of each value d */
      for (int32_t p = p0; p < p1;) {
        const int j0 = p % TL_ATT_TILE, blk = p - j0;
        const int j1 = p1 - blk < TL_ATT_TILE ? p1 - blk : TL_ATT_TILE;
        const size_t fb = kv_offset(c, il, src, h, blk), tb = kv_offset(c, il, dst, h, blk);
        for (int d = 0; d < c->cfg.head_dim; d++) {
          const size_t e = ((size_t)d * TL_ATT_TILE + (size_t)j0) * es;
          memcpy((uint8_t *)c->k_cache + tb + e, (const uint8_t *)c->k_cache + fb + e,
                 (size_t)(j1 - j0) * es);
        }
        p += j1 - j0;
      }
    }
  return TL_OK;
}

/* The keys and values of positions [p0, p1) of seq to or from buf, in
 * kv_io's layout (rows; the keys of an f16/f32 cache are transposed per
 * tile here, so they go element by element). */
static tl_status cpu_kv_io(tl_backend *be, int32_t seq, int32_t p0, int32_t p1, void *buf,
                           bool write) {
  cpu_ctx *c = cpu_of(be);
  if (seq < 0 || seq >= c->n_seq || p0 < 0 || p1 > c->kv_ctx || p1 < p0)
    return tl_fail(TL_ERR_INVALID_ARG, "kv_io: sequence %d, positions [%d, %d)", seq, p0, p1);
  const size_t es = c->kv_type == TL_KV_F32 ? 4 : 2, rb = c->kv_head_bytes;
  const size_t n = (size_t)(p1 - p0);
  uint8_t *b = buf, *kc = c->k_cache, *vc = c->v_cache;
  for (int il = 0; il < c->cfg.n_layer; il++)
    for (int h = 0; h < c->cfg.n_head_kv; h++) {
      if (!keys_transposed(c)) {
        uint8_t *k = kc + kv_offset(c, il, seq, h, p0);
        memcpy(write ? k : b, write ? b : k, n * rb);
      } else {
        for (int32_t p = p0; p < p1; p++) {
          const int j = p % TL_ATT_TILE;
          uint8_t *tile = kc + kv_offset(c, il, seq, h, p - j), *row = b + (size_t)(p - p0) * rb;
          for (int d = 0; d < c->cfg.head_dim; d++) {
            uint8_t *e = tile + ((size_t)d * TL_ATT_TILE + (size_t)j) * es;
            memcpy(write ? e : row + (size_t)d * es, write ? row + (size_t)d * es : e, es);
          }
        }
      }
      b += n * rb;
      uint8_t *v = vc + kv_offset(c, il, seq, h, p0);
      memcpy(write ? v : b, write ? b : v, n * rb);
      b += n * rb;
    }
  return TL_OK;
}

/* ---- activations and the rest --------------------------------------------- */

static inline float act_of(tl_act_kind k, float x) {
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
    for (int64_t i = i0; i < i1; i++) t->a[i] = act_of(t->kind, t->a[i]) * t->b[i];
  else
    for (int64_t i = i0; i < i1; i++) t->a[i] = act_of(t->kind, t->b[i]);
}

static void cpu_act(tl_backend *be, tl_act_kind kind, bool gated, float *a, const float *b,
                    int64_t n) {
  cpu_ctx *c = cpu_of(be);
  act_task at = {c->kernels, kind, gated, a, b, (size_t)n};
  if (n >= 32768) /* worth waking the threads (prefill) */
    tl_pool_run(c->pool, act_run, &at);
  else
    act_run(&at, 0, 1);
}

static void cpu_matmul(tl_backend *be, const tl_weight *w, const float *bias, const float *x,
                       int32_t n, float *y, int64_t ldy) {
  cpu_ctx *c = cpu_of(be);
  tl_cpu_matmul(c->pool, c->kernels, w, x, n, y, ldy);
  if (!bias) return;
  for (int32_t t = 0; t < n; t++)
    for (int64_t i = 0; i < w->rows; i++) y[(size_t)t * (size_t)ldy + (size_t)i] += bias[i];
}

static void cpu_embed(tl_backend *be, const tl_weight *w, float *x) {
  cpu_ctx *c = cpu_of(be);
  for (int32_t t = 0; t < c->st.n; t++)
    tl_weight_row_f32(w, c->st.tokens[t], x + (size_t)t * (size_t)w->cols);
}

static void cpu_select_out(tl_backend *be, const float *x, float *y, int64_t len) {
  cpu_ctx *c = cpu_of(be);
  for (int32_t i = 0; i < c->st.n_out; i++)
    memmove(y + (size_t)i * (size_t)len, x + (size_t)c->st.out_rows[i] * (size_t)len,
            sizeof(float) * (size_t)len);
}

static void cpu_scale(tl_backend *be, float *x, float s, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] *= s;
}

static void cpu_softcap(tl_backend *be, float *x, float cap, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

static tl_status cpu_to_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  if (src != dst) memcpy(dst, src, sizeof(float) * (size_t)n);
  return TL_OK;
}

static tl_status cpu_from_host(tl_backend *be, const float *src, float *dst, int64_t n) {
  if (src != dst) memcpy(dst, src, sizeof(float) * (size_t)n);
  return TL_OK;
}

static tl_status cpu_step_begin(tl_backend *be, const tl_step *st) {
  cpu_of(be)->st = *st;
  cpu_of(be)->err = TL_OK;
  return TL_OK;
}

static tl_status cpu_step_end(tl_backend *be) {
  return cpu_of(be)->err;
}

static void cpu_moe_route(tl_backend *be, const tl_moe_route_op *op) {
  (void)be;
  tl_cpu_moe_route(op);
}

static void cpu_matmul_id(tl_backend *be, const tl_matmul_id_op *op) {
  cpu_ctx *c = cpu_of(be);
  if (c->err) return;
  c->err = tl_cpu_matmul_id(c->pool, c->kernels, op);
}

static bool cpu_supports_type(const tl_backend *be, uint32_t type) {
  return tl_cpu_supports_type(type);
}

static tl_status cpu_prepare_weight(tl_backend *be, const tl_weight *host, tl_weight *out) {
  *out = *host;
  return TL_OK;
}

static tl_status cpu_prepare_vector(tl_backend *be, const float *host, int64_t n,
                                    const float **out) {
  *out = host;
  return TL_OK;
}

static void *cpu_buffer_alloc(tl_backend *be, size_t bytes) {
  return alloc_lines(bytes, 1);
}

static void cpu_buffer_free(tl_backend *be, void *p) {
  free(p);
}

static void cpu_free(tl_backend *be) {
  if (!be) return;
  cpu_ctx *c = cpu_of(be);
  tl_pool_free(c->pool);
  free(c->k_cache);
  free(c->v_cache);
  free(c->att_scratch);
  free(c->att_rates);
  free(c);
}

/* The kernel set named (NULL or "": the best; TL_CPU_KERNELS overrides). */
static const tl_cpu_kernels *pick_kernels(const char *name, tl_status *st) {
  const char *env = getenv("TL_CPU_KERNELS");
  if (env && *env) name = env;
  *st = TL_OK;
  if (!name || !*name) return tl_cpu_kernels_best();
  const tl_cpu_kernels *sets[16];
  int n = tl_cpu_kernel_sets(sets, 16);
  for (int i = 0; i < n; i++)
    if (!strcmp(sets[i]->name, name)) return sets[i];
  char have[256] = "";
  for (int i = 0; i < n; i++) {
    strncat(have, sets[i]->name, sizeof have - strlen(have) - 1);
    if (i + 1 < n) strncat(have, ", ", sizeof have - strlen(have) - 1);
  }
  *st = tl_fail(TL_ERR_UNSUPPORTED, "CPU kernel set '%s' is not available on this CPU (it has: %s)",
                name, have);
  return NULL;
}

tl_status tl_backend_cpu_new(const tl_backend_config *cfg, tl_backend **out) {
  *out = NULL;
  tl_status s;
  const tl_cpu_kernels *kn = pick_kernels(cfg->cpu_kernels, &s);
  if (!kn) return s;
  cpu_ctx *c = calloc(1, sizeof *c);
  if (!c) return tl_fail(TL_ERR_NOMEM, "out of memory");
  c->be = (tl_backend){
      .name = "cpu",
      .detail = kn->name,
      .priv = c,
      .supports_type = cpu_supports_type,
      .free = cpu_free,
      .prepare_weight = cpu_prepare_weight,
      .prepare_vector = cpu_prepare_vector,
      .buffer_alloc = cpu_buffer_alloc,
      .buffer_free = cpu_buffer_free,
      .kv_copy = cpu_kv_copy,
      .kv_io = cpu_kv_io,
      .step_begin = cpu_step_begin,
      .step_end = cpu_step_end,
      .embed = cpu_embed,
      .select_out = cpu_select_out,
      .norm = cpu_norm,
      .matmul = cpu_matmul,
      .rope = cpu_rope,
      .moe_route = cpu_moe_route,
      .matmul_id = cpu_matmul_id,
      .kv_store = cpu_kv_store,
      .attention = cpu_attention,
      .act = cpu_act,
      .scale = cpu_scale,
      .softcap = cpu_softcap,
      .to_host = cpu_to_host,
      .from_host = cpu_from_host,
  };
  c->cfg = *cfg;
  c->kernels = kn;
  c->n_seq = cfg->n_seq;
  c->kv_ctx = (cfg->n_ctx + TL_ATT_TILE - 1) / TL_ATT_TILE * TL_ATT_TILE;
  c->kv_type = cfg->kv_type;
  const size_t hd = (size_t)cfg->head_dim;
  c->kv_head_bytes = cfg->kv_type == TL_KV_F32   ? hd * 4
                     : cfg->kv_type == TL_KV_F16 ? hd * 2
                                                 : hd / TL_QK8_0 * sizeof(tl_block_q8_0);
  c->kv_row_bytes = c->kv_head_bytes * (size_t)cfg->n_head_kv;
  if ((s = tl_pool_new(cfg->n_threads, &c->pool))) {
    cpu_free(&c->be);
    return s;
  }
  uint64_t kv_rows = 0, kv_bytes = 0, all = 0;
  bool fits =
      tl_mul_u64((uint64_t)cfg->n_layer * (uint64_t)cfg->n_seq, (uint64_t)c->kv_ctx, &kv_rows) &&
      tl_mul_u64(kv_rows, c->kv_row_bytes, &kv_bytes) && tl_mul_u64(kv_bytes, 2, &all);
  /* Linux overcommits: malloc of more than the machine has may succeed and
   * the process be killed later, so compare with the physical memory. */
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  uint64_t phys = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
  if (!fits || (phys && all > phys)) {
    cpu_free(&c->be);
    return tl_fail(TL_ERR_NOMEM,
                   "a context of %d tokens needs a KV cache of %.1f GiB, more than this machine's "
                   "%.1f GiB of memory: use a smaller context (-c)%s",
                   cfg->n_ctx, fits ? (double)all / 1073741824.0 : 1e30,
                   (double)phys / 1073741824.0,
                   cfg->kv_type == TL_KV_F32   ? " or an f16 KV cache (--kv f16)"
                   : cfg->kv_type == TL_KV_F16 ? " or a q8_0 KV cache (--kv q8_0)"
                                               : "");
  }
  c->k_cache = alloc_cache((size_t)kv_rows, c->kv_row_bytes, cfg->low_mem);
  c->v_cache = alloc_cache((size_t)kv_rows, c->kv_row_bytes, cfg->low_mem);
  size_t group = (size_t)(cfg->n_head / cfg->n_head_kv);
  c->att_tile = cfg->att_tile >= 1 && cfg->att_tile <= TL_ATT_TILE ? cfg->att_tile : TL_ATT_TILE;
  const char *tile_env = getenv("TL_ATT_TILE");
  if (tile_env && atoi(tile_env) >= 1 && atoi(tile_env) <= TL_ATT_TILE)
    c->att_tile = atoi(tile_env);
  /* per thread: a key and a value tile in f32, the scores, 5 floats per query head */
  c->att_scratch_per_thread =
      2 * (size_t)TL_ATT_TILE * cfg->head_dim + group * TL_ATT_TILE + 5 * group + 16;
  c->att_scratch = alloc_lines((size_t)cfg->n_threads * c->att_scratch_per_thread, sizeof(float));
  c->att_rates = alloc_lines((size_t)cfg->n_threads, sizeof(float));
  for (int i = 0; c->att_rates && i < cfg->n_threads; i++) c->att_rates[i] = 1.0f;
  if (!c->k_cache || !c->v_cache || !c->att_scratch || !c->att_rates) {
    cpu_free(&c->be);
    return tl_fail(TL_ERR_NOMEM,
                   "out of memory for a context of %d tokens (KV cache %.1f MiB): use a smaller "
                   "context (-c)",
                   cfg->n_ctx, (double)kv_bytes * 2 / (1024.0 * 1024.0));
  }
  tl_log(TL_LOG_INFO, "cpu: KV cache %.1f MiB, %s kernels", (double)all / (1024.0 * 1024.0),
         kn->name);
  *out = &c->be;
  return TL_OK;
}

float *tl_backend_cpu_att_rates(tl_backend *be, int *n) {
  cpu_ctx *c = be->priv;
  *n = c->cfg.n_threads;
  return c->att_rates;
}
