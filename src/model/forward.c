/* The decoder: one forward pass for every architecture, driven by the traits
 * in tl_arch, the hyper-parameters and the optional tensors a file has. It
 * is a recipe of backend operations (backend/backend.h) over a step of
 * tokens, each tagged with its sequence and position: a prompt prefill and a
 * decode step are the same code path, on whichever backend the context has. */
#include <math.h>

#include "model/model.h"

/* x += a (+ b) where a is given, then y = norm(x) with weight w (and bias
 * nb) where w is given, over n rows of len values. */
static void norm(tl_context *c, int64_t n, int64_t len, float *x, const float *a, const float *b,
                 const float *w, const float *nb, float *y) {
  const tl_model *m = c->model;
  tl_norm_op op = {.x = x,
                   .a = a,
                   .b = b,
                   .w = w,
                   .nb = nb,
                   .y = y,
                   .rows = n,
                   .len = len,
                   .kind = m->arch->norm,
                   .eps = m->hp.norm_eps};
  c->be->norm(c->be, &op);
}

/* Self-attention of layer il on the normed input xn; result in out [n][d]. */
static void attention(tl_context *c, int il, int n, const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  const tl_layer *L = &c->w.layers[il];
  tl_backend *be = c->be;
  int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
  be->matmul(be, &L->wq, L->bq, xn, n, c->q, qd);
  be->matmul(be, &L->wk, L->bk, xn, n, c->k, kvd);
  be->matmul(be, &L->wv, L->bv, xn, n, c->v, kvd);
  if (L->q_norm) { /* per-head RMS norms (Qwen 3, Gemma 3) */
    tl_norm_op qn = {.x = c->q, .w = L->q_norm, .y = c->q, .rows = (int64_t)n * hp->n_head,
                     .len = hd, .kind = TL_NORM_RMS, .eps = hp->norm_eps};
    tl_norm_op kn = qn;
    kn.x = kn.y = c->k;
    kn.w = L->k_norm;
    kn.rows = (int64_t)n * hp->n_head_kv;
    be->norm(be, &qn);
    be->norm(be, &kn);
  }
  tl_rope_op rope = {.q = c->q,
                     .k = c->k,
                     .n_head = hp->n_head,
                     .n_head_kv = hp->n_head_kv,
                     .head_dim = hd,
                     .n_rot = hp->n_rot,
                     .kind = hp->rope_kind,
                     .theta = L->rope_theta,
                     .freq_scale = hp->rope_freq_scale,
                     .freq_factors = c->w.rope_freqs};
  be->rope(be, &rope);
  be->kv_store(be, il, c->k, c->v);
  tl_attn_op at = {.layer = il,
                   .q = c->q,
                   .out = c->att,
                   .n_head = hp->n_head,
                   .n_head_kv = hp->n_head_kv,
                   .head_dim = hd,
                   .window = L->window,
                   .scale = hp->attn_scale,
                   .softcap = hp->attn_softcap};
  be->attention(be, &at);
  be->matmul(be, &L->wo, L->bo, c->att, n, out, hp->n_embd);
}

/* The MLP of layer il on the normed input xn; result in out [n][d]. */
static void mlp(tl_context *c, int il, int n, const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_layer *L = &c->w.layers[il];
  tl_backend *be = c->be;
  int ff = m->hp.n_ff;
  be->matmul(be, &L->w_up, L->b_up, xn, n, c->ffn_b, ff);
  if (m->arch->gated_ffn) be->matmul(be, &L->w_gate, NULL, xn, n, c->ffn_a, ff);
  be->act(be, m->arch->act, m->arch->gated_ffn, c->ffn_a, c->ffn_b, (int64_t)n * ff);
  be->matmul(be, &L->w_down, L->b_down, c->ffn_a, n, out, m->hp.n_embd);
}

/* Room for n rows of logits in the backend's memory. */
static tl_status logits_room(tl_context *c, int32_t n) {
  if (n <= c->logits_dev_cap) return TL_OK;
  size_t bytes;
  if (!tl_mul_size((size_t)n * (size_t)c->model->hp.n_vocab, sizeof(float), &bytes))
    return tl_fail(TL_ERR_NOMEM, "too many rows of logits");
  c->be->buffer_free(c->be, c->logits_dev);
  c->logits_dev = c->be->buffer_alloc(c->be, bytes);
  c->logits_dev_cap = c->logits_dev ? n : 0;
  if (!c->logits_dev)
    return tl_fail(TL_ERR_NOMEM, "out of %s memory for %d rows of logits (%.1f MiB)", c->be->name,
                   n, (double)bytes / (1024.0 * 1024.0));
  return TL_OK;
}

tl_status tl_forward(tl_context *c, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  tl_backend *be = c->be;
  const int d = hp->n_embd;

  int32_t *out_rows = c->out_rows, n_out = 0;
  for (int t = 0; t < n; t++)
    if (want_logits[t]) out_rows[n_out++] = t;
  tl_status s = logits_room(c, n_out);
  if (s) return s;
  tl_step st = {.n = n, .tokens = tokens, .pos = pos, .seq = seq, .n_out = n_out,
                .out_rows = out_rows};
  if ((s = be->step_begin(be, &st))) return s;

  be->embed(be, &c->w.tok_embd, c->x);
  if (m->arch->embd_scale) be->scale(be, c->x, sqrtf((float)d), (int64_t)n * d);

  bool aborted = false;
  for (int il = 0; il < hp->n_layer; il++) {
    if (c->abort_cb && c->abort_cb(c->abort_user)) {
      aborted = true;
      break;
    }
    const tl_layer *L = &c->w.layers[il];
    norm(c, n, d, c->x, NULL, NULL, L->attn_norm, L->attn_norm_b, c->xn);
    attention(c, il, n, c->xn, c->xb);
    if (m->arch->parallel) {
      /* x + attn(norm(x)) + mlp(norm(x)) */
      mlp(c, il, n, c->xn, c->xn);
      norm(c, n, d, c->x, c->xb, c->xn, NULL, NULL, NULL);
      continue;
    }
    if (L->post_attn_norm) norm(c, n, d, c->xb, NULL, NULL, L->post_attn_norm, NULL, c->xb);
    norm(c, n, d, c->x, c->xb, NULL, L->ffn_norm, L->ffn_norm_b, c->xn); /* x += attn; norm */
    mlp(c, il, n, c->xn, c->xb);
    if (L->post_ffn_norm) norm(c, n, d, c->xb, NULL, NULL, L->post_ffn_norm, NULL, c->xb);
    norm(c, n, d, c->x, c->xb, NULL, NULL, NULL, NULL);
  }

  /* final norm and the output head, only for the tokens whose logits are wanted */
  if (!aborted && n_out > 0) {
    be->select_out(be, c->x, c->xb, d);
    norm(c, n_out, d, c->xb, NULL, NULL, c->w.output_norm, c->w.output_norm_b, c->xn);
    be->matmul(be, &c->w.output, c->w.output_b, c->xn, n_out, c->logits_dev, hp->n_vocab);
    if (hp->final_softcap > 0)
      be->softcap(be, c->logits_dev, hp->final_softcap, (int64_t)n_out * hp->n_vocab);
  }
  tl_status e = be->step_end(be);
  if (e) return e;
  if (aborted) return tl_fail(TL_ERR_ABORTED, "aborted by the abort callback");
  if (n_out == 0) return TL_OK;
  return be->to_host(be, c->logits_dev, logits_out, (int64_t)n_out * hp->n_vocab);
}
