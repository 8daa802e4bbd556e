#include <math.h>
#include <stdatomic.h>
#include <time.h>

#include "backend/cpu/cpu.h"

#define TL_MM_RATED_MAX 16

typedef struct mm_task {
  const tl_cpu_kernels *k;
  const tl_weight *w;
  const float *x;
  int64_t n_tok;
  float *y;
  int64_t ldy;
  /* the gemm path: activation rows xa (ldx bytes apart) in the kernel's format */
  tl_gemm_fn gemm;
  tl_quant_act_fn quant;
  void *xa;
  size_t ldx;
  /* with shared, the rows are split into shares: share[i] holds thread i's
   * units of 16 rows, claimed ch at a time from next up to end by thread i
   * and, once their own are done, by the others; for one token the split
   * follows the threads' measured speeds in rates, which each thread then
   * updates in rates[ith] (NULL otherwise) */
  bool shared;
  float *rates;
  int64_t ch;
  struct {
    _Alignas(64) atomic_llong next;
    long long end;
  } share[TL_MM_RATED_MAX];
} mm_task;

/* Each thread takes a contiguous range of weight rows; within it, tiles of
 * rows are reused across all tokens while they are hot in cache. */
static void mm_run(void *arg, int ith, int nth) {
  const mm_task *t = arg;
  const tl_weight *w = t->w;
  tl_vec_dot_fn dot = t->k->vec_dot[w->type];
  int64_t r0, r1;
  tl_split(w->rows, ith, nth, &r0, &r1);
  const int64_t tile = 16;
  if (w->scales) { /* Torchless .bin int8 with a scale per 64 values */
    tl_vec_dot_i8s_fn dot8 = t->k->vec_dot_i8s;
    const int64_t gpr = w->cols / TL_I8S_GROUP;
    for (int64_t rb = r0; rb < r1; rb += tile) {
      int64_t re = rb + tile < r1 ? rb + tile : r1;
      for (int64_t tok = 0; tok < t->n_tok; tok++) {
        const float *xr = t->x + tok * w->cols;
        float *yr = t->y + tok * t->ldy;
        for (int64_t r = rb; r < re; r++)
          yr[r] = dot8((const int8_t *)w->data + (size_t)r * w->row_bytes, w->scales + r * gpr, xr,
                       w->cols);
      }
    }
    return;
  }
  for (int64_t rb = r0; rb < r1; rb += tile) {
    int64_t re = rb + tile < r1 ? rb + tile : r1;
    for (int64_t tok = 0; tok < t->n_tok; tok++) {
      const float *xr = t->x + tok * w->cols;
      float *yr = t->y + tok * t->ldy;
      for (int64_t r = rb; r < re; r++)
        yr[r] = dot((const uint8_t *)w->data + (size_t)r * w->row_bytes, xr, w->cols);
    }
  }
}

/* Quantize the activation rows, a share of the tokens per thread. */
static void mm_quant_run(void *arg, int ith, int nth) {
  const mm_task *t = arg;
  int64_t b, e;
  tl_split(t->n_tok, ith, nth, &b, &e);
  for (int64_t i = b; i < e; i++)
    t->quant(t->x + i * t->w->cols, (uint8_t *)t->xa + i * t->ldx, t->w->cols);
}

/* Blocks of rows x tokens that stay in L2 (weights and activations) while the
 * kernel walks its register tiles over them. */
#define MM_ROW_BLOCK 64
#define MM_TOK_BLOCK 64

/* Up to this many tokens, a block of rows goes through the kernel's
 * one-token path once per token while it is in cache (read from memory
 * once): Q4_0's many-token path unpacks each block of weights, at a cost a
 * few tokens do not repay (on an AMD EPYC, 2 threads, a synthetic 1.1B
 * Q4_0: 2 tokens took 84 ms that way against 24 ms, 4 tokens 88 against 36
 * ms, 8 tokens 103 against 68 ms, 16 tokens 109 against 135 ms); for Q4_K
 * it pays at 2 tokens only (31 against 23 ms), for Q8_0 not at all. These
 * small batches are what a speculative verification decodes. */
static int64_t few_tokens(tl_type type) {
  return type == TL_TYPE_Q4_0 ? 8 : type == TL_TYPE_Q4_K ? 2 : 1;
}

/* Rows [r0, r1) x tokens [t0, t1) through the gemm kernel. */
static void mm_gemm_rows(const mm_task *t, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const tl_weight *w = t->w;
  if (t1 - t0 > 1 && t1 - t0 <= few_tokens(w->type)) {
    for (int64_t rb = r0; rb < r1; rb += MM_ROW_BLOCK) {
      const int64_t nr = r1 - rb < MM_ROW_BLOCK ? r1 - rb : MM_ROW_BLOCK;
      for (int64_t tok = t0; tok < t1; tok++)
        t->gemm((const uint8_t *)w->data + (size_t)rb * w->row_bytes, w->row_bytes, nr,
                (const uint8_t *)t->xa + (size_t)tok * t->ldx, t->ldx, 1, w->cols,
                t->y + tok * t->ldy + rb, t->ldy);
    }
    return;
  }
  for (int64_t rb = r0; rb < r1; rb += MM_ROW_BLOCK) {
    const int64_t nr = r1 - rb < MM_ROW_BLOCK ? r1 - rb : MM_ROW_BLOCK;
    for (int64_t tb = t0; tb < t1; tb += MM_TOK_BLOCK) {
      const int64_t nt = t1 - tb < MM_TOK_BLOCK ? t1 - tb : MM_TOK_BLOCK;
      t->gemm((const uint8_t *)w->data + (size_t)rb * w->row_bytes, w->row_bytes, nr,
              (const uint8_t *)t->xa + (size_t)tb * t->ldx, t->ldx, nt, w->cols,
              t->y + tb * t->ldy + rb, t->ldy);
    }
  }
}

/* Each thread takes a share of the rows (in multiples of 16) or, when the
 * rows are too few to keep every thread busy, a share of the tokens. Row
 * shares are claimed a chunk at a time from the share's front, and a thread
 * done with its own goes on with what is left of the others' (in turn from
 * the next thread's), so that a core slowed by a neighbour on a shared
 * machine does not leave the others waiting at the end; each share is still
 * read in order. For one token (decode, where every thread streams its rows
 * from memory) the shares follow the threads' measured speeds, which each
 * thread updates from its run. */
static void mm_gemm_run(void *arg, int ith, int nth) {
  mm_task *t = arg;
  const tl_weight *w = t->w;
  if (t->shared) {
    struct timespec ts0;
    if (t->rates) clock_gettime(CLOCK_MONOTONIC, &ts0);
    int64_t rows = 0;
    for (int k = 0; k < nth; k++) { /* its own share, then the others' in turn */
      const int i = (ith + k) % nth;
      for (;;) {
        /* prefill: a share's last chunks in single units, so that the
         * threads finish closer together */
        const int64_t ch =
            !t->rates && t->share[i].end - atomic_load(&t->share[i].next) <= 2 * t->ch ? 1 : t->ch;
        const int64_t u = atomic_fetch_add(&t->share[i].next, ch);
        if (u >= t->share[i].end) break;
        const int64_t ue = u + ch < t->share[i].end ? u + ch : t->share[i].end;
        const int64_t r0 = u * 16, r1 = ue * 16 < w->rows ? ue * 16 : w->rows;
        mm_gemm_rows(t, r0, r1, 0, t->n_tok);
        rows += r1 - r0;
      }
    }
    /* this thread's speed: bytes per ns */
    if (t->rates) tl_rate_record(&t->rates[ith], (double)rows * (double)w->row_bytes, &ts0);
    return;
  }
  int64_t r0 = 0, r1 = w->rows, t0 = 0, t1 = t->n_tok;
  if (t->n_tok < 4 * nth || w->rows >= 64 * nth) {
    tl_split((w->rows + 15) / 16, ith, nth, &r0, &r1);
    r0 *= 16;
    r1 = r1 * 16 < w->rows ? r1 * 16 : w->rows;
  } else {
    tl_split(t->n_tok, ith, nth, &t0, &t1);
  }
  mm_gemm_rows(t, r0, r1, t0, t1);
}

void tl_cpu_matmul(tl_pool *pool, const tl_cpu_kernels *k, const tl_weight *w, const float *x,
                   int64_t n_tok, float *y, int64_t ldy) {
  mm_task t = {k, w, x, n_tok, y, ldy, NULL, NULL, NULL, 0, false, NULL, 0, {{0}}};
  tl_gemm_fn gemm = w->scales || w->type >= TL_TYPE_COUNT ? NULL : k->gemm[w->type];
  if (gemm) {
    const tl_act_fmt fmt = tl_cpu_act_fmt(w->type);
    t.gemm = gemm;
    t.ldx = tl_act_row_bytes(fmt, w->cols);
    if (fmt == TL_ACT_F32) {
      t.xa = (void *)x;
    } else if ((t.quant = k->quant_act[fmt]) != NULL &&
               (t.xa = tl_pool_scratch(pool, t.ldx * (size_t)n_tok)) != NULL) {
      if (n_tok == 1)
        mm_quant_run(&t, 0, 1);
      else
        tl_pool_run(pool, mm_quant_run, &t);
    } else {
      t.gemm = NULL; /* no scratch: the f32 path */
    }
  }
  const int nth = tl_pool_size(pool);
  const int64_t units = (w->rows + 15) / 16;
  if (t.gemm && nth > 1 && nth <= TL_MM_RATED_MAX &&
      (n_tok == 1 || n_tok < 4 * nth || w->rows >= 64 * nth)) {
    t.shared = true;
    float rate[TL_MM_RATED_MAX];
    if (n_tok == 1) {
      t.rates = tl_pool_rates(pool);
      tl_rates_clamped(t.rates, nth, rate);
      /* chunks of at least 128 KiB of weights */
      const int64_t unit_bytes = 16 * (int64_t)w->row_bytes;
      t.ch = unit_bytes >= 131072 ? 1 : (131072 + unit_bytes - 1) / unit_bytes;
    } else {
      for (int i = 0; i < nth; i++) rate[i] = 1;
      t.ch = MM_ROW_BLOCK / 16;
    }
    for (int i = 0; i < nth; i++) {
      int64_t b, e;
      tl_split_rated(units, rate, i, nth, &b, &e);
      atomic_init(&t.share[i].next, b);
      t.share[i].end = e;
    }
  }
  tl_pool_run(pool, t.gemm ? mm_gemm_run : mm_run, &t);
}

void tl_weight_row_f32(const tl_weight *w, int64_t i, float *out) {
  if (w->scales) {
    const int8_t *q = (const int8_t *)w->data + (size_t)i * w->row_bytes;
    const float *s = w->scales + i * (w->cols / TL_I8S_GROUP);
    for (int64_t c = 0; c < w->cols; c++) out[c] = (float)q[c] / s[c / TL_I8S_GROUP];
    return;
  }
  tl_type_get(w->type)->to_float((const uint8_t *)w->data + (size_t)i * w->row_bytes, out, w->cols);
}

/* ---- mixture of experts ----------------------------------------------------
 * The step's (token, slot) pairs sorted by expert (a counting sort, in token
 * order within an expert), their activation rows gathered in that order in
 * the kernel's format, then units of MM_ROW_BLOCK rows of one chosen expert
 * times all the tokens routed to it, claimed one at a time by the threads:
 * each expert's weights are read once per step, and only the chosen ones. */

typedef struct mmid_task {
  const tl_cpu_kernels *k;
  const tl_matmul_id_op *op;
  int64_t rows, cols; /* one expert's */
  size_t ldx;         /* bytes of a gathered activation row */
  tl_gemm_fn gemm;
  tl_quant_act_fn quant;
  const int32_t *slot_of; /* [n * k]: sorted position -> slot t * k + j */
  const int32_t *cnt, *off, *active;
  int n_active;
  uint8_t *xa; /* [n * k] gathered rows */
  uint8_t *xq; /* [n] each token's row quantized once (a shared input), or NULL */
  float *ys;   /* [n * k][rows] results in sorted order */
  int64_t units_per_expert;
  _Alignas(64) atomic_llong next;
} mmid_task;

/* A shared input's token rows quantized once, a share of the tokens per thread. */
static void mmid_quant_tokens(void *arg, int ith, int nth) {
  mmid_task *t = arg;
  int64_t b, e;
  tl_split(t->op->n, ith, nth, &b, &e);
  for (int64_t i = b; i < e; i++)
    t->quant(t->op->x + (size_t)i * (size_t)t->cols, t->xq + (size_t)i * t->ldx, t->cols);
}

/* Activation rows into sorted order, a share of the sorted positions per thread. */
static void mmid_gather(void *arg, int ith, int nth) {
  mmid_task *t = arg;
  const tl_matmul_id_op *op = t->op;
  int64_t b, e;
  tl_split((int64_t)op->n * op->k, ith, nth, &b, &e);
  for (int64_t i = b; i < e; i++) {
    const int32_t slot = t->slot_of[i];
    const int32_t row = op->x_per_slot ? slot : slot / op->k;
    uint8_t *dst = t->xa + (size_t)i * t->ldx;
    if (t->xq)
      memcpy(dst, t->xq + (size_t)row * t->ldx, t->ldx);
    else if (t->quant)
      t->quant(op->x + (size_t)row * (size_t)t->cols, dst, t->cols);
    else
      memcpy(dst, op->x + (size_t)row * (size_t)t->cols, (size_t)t->cols * sizeof(float));
  }
}

static void mmid_run(void *arg, int ith, int nth) {
  mmid_task *t = arg;
  (void)ith;
  (void)nth;
  const tl_matmul_id_op *op = t->op;
  const int64_t n_units = (int64_t)t->n_active * t->units_per_expert;
  for (;;) {
    const int64_t u = atomic_fetch_add(&t->next, 1);
    if (u >= n_units) break;
    const int e = t->active[u / t->units_per_expert];
    const int64_t r0 = (u % t->units_per_expert) * MM_ROW_BLOCK;
    const int64_t r1 = r0 + MM_ROW_BLOCK < t->rows ? r0 + MM_ROW_BLOCK : t->rows;
    tl_weight we = *op->w;
    we.rows = t->rows;
    we.data = (const uint8_t *)op->w->data + (size_t)e * (size_t)t->rows * op->w->row_bytes;
    const int64_t nt = t->cnt[e];
    const uint8_t *xa = t->xa + (size_t)t->off[e] * t->ldx;
    float *ys = t->ys + (size_t)t->off[e] * (size_t)t->rows;
    if (t->gemm) {
      mm_task mt = {.k = t->k,
                    .w = &we,
                    .n_tok = nt,
                    .y = ys,
                    .ldy = t->rows,
                    .gemm = t->gemm,
                    .xa = (void *)xa,
                    .ldx = t->ldx};
      mm_gemm_rows(&mt, r0, r1, 0, nt);
      continue;
    }
    tl_vec_dot_fn dot = t->k->vec_dot[we.type];
    for (int64_t tok = 0; tok < nt; tok++) {
      const float *xr = (const float *)(xa + (size_t)tok * t->ldx);
      for (int64_t r = r0; r < r1; r++)
        ys[tok * t->rows + r] =
            dot((const uint8_t *)we.data + (size_t)r * we.row_bytes, xr, we.cols);
    }
  }
}

/* The results out of sorted order: copied to their slots, or weighted and
 * summed per token in slot order; a share of the tokens per thread. */
static void mmid_scatter(void *arg, int ith, int nth) {
  mmid_task *t = arg;
  const tl_matmul_id_op *op = t->op;
  const int32_t *pos = t->slot_of + (size_t)op->n * (size_t)op->k; /* slot -> sorted position */
  int64_t b, e;
  tl_split(op->n, ith, nth, &b, &e);
  const size_t rows = (size_t)t->rows;
  for (int64_t tok = b; tok < e; tok++) {
    if (!op->weights) {
      for (int j = 0; j < op->k; j++)
        memcpy(op->y + ((size_t)tok * (size_t)op->k + (size_t)j) * rows,
               t->ys + (size_t)pos[tok * op->k + j] * rows, rows * sizeof(float));
      continue;
    }
    float *y = op->y + (size_t)tok * rows;
    for (size_t r = 0; r < rows; r++) y[r] = 0;
    for (int j = 0; j < op->k; j++) {
      const float wj = op->weights[tok * op->k + j];
      const float *src = t->ys + (size_t)pos[tok * op->k + j] * rows;
      for (size_t r = 0; r < rows; r++) y[r] += wj * src[r];
    }
  }
}

tl_status tl_cpu_matmul_id(tl_pool *pool, const tl_cpu_kernels *k, const tl_matmul_id_op *op) {
  const tl_weight *w = op->w;
  if (op->n_expert < 1 || op->k < 1 || op->k > op->n_expert || w->rows % op->n_expert || w->scales)
    return tl_fail(TL_ERR_INVALID_ARG, "matmul_id: %d of %d experts over %lld rows%s", op->k,
                   op->n_expert, (long long)w->rows, w->scales ? " of int8 with scales" : "");
  if (op->n <= 0) return TL_OK;
  mmid_task t = {.k = k, .op = op, .rows = w->rows / op->n_expert, .cols = w->cols};
  const int64_t slots = (int64_t)op->n * op->k;
  t.gemm = w->type < TL_TYPE_COUNT ? k->gemm[w->type] : NULL;
  tl_act_fmt fmt = TL_ACT_F32;
  if (t.gemm) {
    fmt = tl_cpu_act_fmt(w->type);
    if (fmt != TL_ACT_F32 && !(t.quant = k->quant_act[fmt])) {
      t.gemm = NULL;
      fmt = TL_ACT_F32;
    }
  }
  t.ldx = tl_act_row_bytes(fmt, w->cols);
  /* one scratch: slot_of and pos [2 * slots], cnt, off, active [3 * n_expert]
   * ints, then the gathered rows and the sorted results */
  size_t ints = (size_t)(2 * slots + 3 * (int64_t)op->n_expert);
  size_t head = (ints * sizeof(int32_t) + 63) & ~(size_t)63;
  size_t xa_bytes = ((size_t)slots * t.ldx + 63) & ~(size_t)63;
  /* a shared input in 8 bits: each token quantized once for its k slots */
  const bool once = !op->x_per_slot && t.quant && op->k > 1;
  size_t xq_bytes = once ? ((size_t)op->n * t.ldx + 63) & ~(size_t)63 : 0;
  uint8_t *buf =
      tl_pool_scratch(pool, head + xa_bytes + xq_bytes + (size_t)slots * (size_t)t.rows * 4);
  if (!buf) return tl_fail(TL_ERR_NOMEM, "out of memory for the experts of %d tokens", op->n);
  int32_t *slot_of = (int32_t *)buf, *pos = slot_of + slots, *cnt = pos + slots;
  int32_t *off = cnt + op->n_expert, *active = off + op->n_expert;
  t.xa = buf + head;
  t.xq = once ? buf + head + xa_bytes : NULL;
  t.ys = (float *)(buf + head + xa_bytes + xq_bytes);
  memset(cnt, 0, (size_t)op->n_expert * sizeof *cnt);
  for (int64_t i = 0; i < slots; i++) {
    const int32_t e = op->ids[i];
    if (e < 0 || e >= op->n_expert)
      return tl_fail(TL_ERR_INVALID_ARG, "matmul_id: expert %d of %d", e, op->n_expert);
    cnt[e]++;
  }
  int32_t acc = 0;
  for (int e = 0; e < op->n_expert; e++) {
    off[e] = acc;
    acc += cnt[e];
    if (cnt[e]) active[t.n_active++] = e;
  }
  for (int e = 0; e < op->n_expert; e++) cnt[e] = 0;
  for (int64_t i = 0; i < slots; i++) {
    const int32_t e = op->ids[i], p = off[e] + cnt[e]++;
    slot_of[p] = (int32_t)i;
    pos[i] = p;
  }
  t.slot_of = slot_of;
  t.cnt = cnt;
  t.off = off;
  t.active = active;
  t.units_per_expert = (t.rows + MM_ROW_BLOCK - 1) / MM_ROW_BLOCK;
  atomic_init(&t.next, 0);
  const bool many = slots * t.cols >= 65536;
  if (t.xq && (int64_t)op->n * t.cols >= 65536)
    tl_pool_run(pool, mmid_quant_tokens, &t);
  else if (t.xq)
    mmid_quant_tokens(&t, 0, 1);
  if (many)
    tl_pool_run(pool, mmid_gather, &t);
  else
    mmid_gather(&t, 0, 1);
  tl_pool_run(pool, mmid_run, &t);
  if (many)
    tl_pool_run(pool, mmid_scatter, &t);
  else
    mmid_scatter(&t, 0, 1);
  return TL_OK;
}

void tl_cpu_moe_route(const tl_moe_route_op *op) {
  for (int32_t t = 0; t < op->n; t++) {
    const float *l = op->logits + (size_t)t * (size_t)op->n_expert;
    int32_t *ids = op->ids + (size_t)t * (size_t)op->k;
    float *wt = op->weights + (size_t)t * (size_t)op->k;
    float mx = -INFINITY;
    for (int e = 0; e < op->n_expert; e++)
      if (l[e] > mx) mx = l[e];
    float sum = 0;
    for (int e = 0; e < op->n_expert; e++) sum += expf(l[e] - mx);
    /* the k largest logits (the softmax keeps their order), ties to the lower
     * index; O(n_expert * k) with a mark per expert (the loader allows 4096) */
    uint8_t marks[4096];
    const bool marked = op->n_expert <= 4096;
    if (marked) memset(marks, 0, (size_t)op->n_expert);
    float chosen = 0;
    for (int j = 0; j < op->k; j++) {
      int best = -1;
      for (int e = 0; e < op->n_expert; e++) {
        bool taken = marked && marks[e];
        for (int i = 0; i < j && !marked && !taken; i++) taken = ids[i] == e;
        if (!taken && (best < 0 || l[e] > l[best])) best = e;
      }
      if (marked) marks[best] = 1;
      ids[j] = best;
      wt[j] = expf(l[best] - mx) / sum;
      chosen += wt[j];
    }
    if (op->norm && chosen > 0)
      for (int j = 0; j < op->k; j++) wt[j] /= chosen;
  }
}
