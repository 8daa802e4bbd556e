/* The decoder: one forward pass for every architecture, driven by the traits
 * in tl_arch and the hyper-parameters. It processes a batch of tokens, each
 * tagged with its sequence and position: a prompt prefill and a decode step
 * are the same code path. */
#include <math.h>
#include <stdlib.h>

#include "model/model.h"

static void rms_norm(const float *x, const float *w, float *y, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float scale = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

static void norm_rows(const tl_model *m, const float *x, const float *w, float *y, int n_tok) {
  int d = m->hp.n_embd;
  for (int t = 0; t < n_tok; t++) rms_norm(x + (size_t)t * d, w, y + (size_t)t * d, d, m->hp.norm_eps);
}

/* Rotate the first n_rot dims of each head in place. */
static void rope(const tl_hparams *hp, float *v, int n_heads, int32_t pos) {
  int half = hp->n_rot / 2;
  for (int i = 0; i < half; i++) {
    double inv = pow((double)hp->rope_theta, -2.0 * i / hp->n_rot);
    if (hp->rope_freq_factors) inv /= hp->rope_freq_factors[i];
    double ang = (double)pos * hp->rope_freq_scale * inv;
    float c = (float)cos(ang), s = (float)sin(ang);
    for (int h = 0; h < n_heads; h++) {
      float *p = v + (size_t)h * hp->head_dim;
      int i0 = hp->rope_kind == TL_ROPE_NORM ? 2 * i : i;
      int i1 = hp->rope_kind == TL_ROPE_NORM ? 2 * i + 1 : i + half;
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

static inline size_t kv_index(const tl_context *c, int layer, int seq, int pos) {
  size_t kvd = (size_t)c->model->hp.n_head_kv * c->model->hp.head_dim;
  return (((size_t)layer * c->n_seq + seq) * c->n_ctx + pos) * kvd;
}

static void kv_store(tl_context *c, void *cache, size_t idx, const float *src, size_t n) {
  if (c->kv_type == TL_KV_F32) {
    memcpy((float *)cache + idx, src, n * sizeof(float));
  } else {
    uint16_t *d = (uint16_t *)cache + idx;
    for (size_t i = 0; i < n; i++) d[i] = tl_f32_to_f16(src[i]);
  }
}

typedef struct attn_task {
  tl_context *c;
  int layer, n_tok;
  const int32_t *pos, *seq;
} attn_task;

/* out[t][h] = softmax(q[t][h] . K[0..pos] * scale) V  for every (token, head). */
static void attn_run(void *arg, int ith, int nth) {
  const attn_task *a = arg;
  tl_context *c = a->c;
  const tl_hparams *hp = &c->model->hp;
  int hd = hp->head_dim, nh = hp->n_head, group = hp->n_head / hp->n_head_kv;
  float scale = 1.0f / sqrtf((float)hd);
  float *scores = c->att_scores + (size_t)ith * c->n_ctx;
  int64_t b, e;
  tl_split((int64_t)a->n_tok * nh, ith, nth, &b, &e);
  for (int64_t job = b; job < e; job++) {
    int t = (int)(job / nh), h = (int)(job % nh), kvh = h / group;
    int32_t p = a->pos[t], s = a->seq[t];
    const float *q = c->q + ((size_t)t * nh + h) * hd;
    float *out = c->att + ((size_t)t * nh + h) * hd;
    uint32_t kt = c->kv_type == TL_KV_F32 ? TL_TYPE_F32 : TL_TYPE_F16;
    tl_vec_dot_fn dot = c->kernels->vec_dot[kt];
    tl_axpy_fn axpy = c->kernels->axpy[kt];
    const uint8_t *kc = c->k_cache, *vc = c->v_cache;
    float mx = -INFINITY;
    for (int j = 0; j <= p; j++) {
      size_t base = kv_index(c, a->layer, s, j) + (size_t)kvh * hd;
      scores[j] = dot(kc + base * c->kv_elt, q, hd) * scale;
      if (scores[j] > mx) mx = scores[j];
    }
    double sum = 0;
    for (int j = 0; j <= p; j++) {
      scores[j] = expf(scores[j] - mx);
      sum += scores[j];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j <= p; j++) {
      size_t base = kv_index(c, a->layer, s, j) + (size_t)kvh * hd;
      axpy(scores[j] * inv, vc + base * c->kv_elt, out, hd);
    }
  }
}

tl_status tl_forward(tl_context *c, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  const tl_arch *arch = m->arch;
  int d = hp->n_embd, hd = hp->head_dim;
  int qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
  tl_pool *pool = c->pool;
  const tl_cpu_kernels *K = c->kernels;

  for (int t = 0; t < n; t++) tl_weight_row_f32(&m->tok_embd, tokens[t], c->x + (size_t)t * d);

  for (int il = 0; il < hp->n_layer; il++) {
    const tl_layer *L = &m->layers[il];
    norm_rows(m, c->x, L->attn_norm, c->xn, n);
    tl_cpu_matmul(pool, K, &L->wq, c->xn, n, c->q, qd);
    tl_cpu_matmul(pool, K, &L->wk, c->xn, n, c->k, kvd);
    tl_cpu_matmul(pool, K, &L->wv, c->xn, n, c->v, kvd);
    for (int t = 0; t < n; t++) {
      rope(hp, c->q + (size_t)t * qd, hp->n_head, pos[t]);
      rope(hp, c->k + (size_t)t * kvd, hp->n_head_kv, pos[t]);
      size_t idx = kv_index(c, il, seq[t], pos[t]);
      kv_store(c, c->k_cache, idx, c->k + (size_t)t * kvd, (size_t)kvd);
      kv_store(c, c->v_cache, idx, c->v + (size_t)t * kvd, (size_t)kvd);
    }
    attn_task at = {c, il, n, pos, seq};
    tl_pool_run(pool, attn_run, &at);
    tl_cpu_matmul(pool, K, &L->wo, c->att, n, c->xn, d);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xn[i];

    norm_rows(m, c->x, L->ffn_norm, c->xn, n);
    size_t nff = (size_t)n * hp->n_ff;
    tl_cpu_matmul(pool, K, &L->w_up, c->xn, n, c->ffn_b, hp->n_ff);
    if (arch->gated_ffn) {
      tl_cpu_matmul(pool, K, &L->w_gate, c->xn, n, c->ffn_a, hp->n_ff);
      for (size_t i = 0; i < nff; i++) c->ffn_a[i] = act(arch->act, c->ffn_a[i]) * c->ffn_b[i];
    } else {
      for (size_t i = 0; i < nff; i++) c->ffn_a[i] = act(arch->act, c->ffn_b[i]);
    }
    tl_cpu_matmul(pool, K, &L->w_down, c->ffn_a, n, c->xn, d);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xn[i];
  }

  /* final norm and the output head, only for the tokens whose logits are wanted */
  int n_out = 0;
  for (int t = 0; t < n; t++) {
    if (!want_logits[t]) continue;
    rms_norm(c->x + (size_t)t * d, m->output_norm, c->xn + (size_t)n_out * d, d, hp->norm_eps);
    n_out++;
  }
  if (n_out > 0) tl_cpu_matmul(pool, K, &m->output, c->xn, n_out, logits_out, hp->n_vocab);
  return TL_OK;
}
