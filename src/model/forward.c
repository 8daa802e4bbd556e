/* The decoder: one forward pass for every architecture, driven by the traits
 * in tl_arch, the hyper-parameters and the optional tensors a file has. It
 * is a recipe of backend operations (backend/backend.h) over a step of
 * tokens, each tagged with its sequence and position: a prompt prefill and a
 * decode step are the same code path, on whichever backend the context has. */
#include <math.h>

#include "model/lowmem.h"
#include "model/model.h"

/* x += a (+ b) where a is given, then y = norm(x) with weight w (and bias
 * nb) where w is given, over n rows of len values. */
static void norm(tl_context *c, tl_part *P, int64_t n, int64_t len, float *x, const float *a,
                 const float *b, const float *w, const float *nb, float *y) {
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
  P->be->norm(P->be, &op);
}

/* Self-attention of the part's layer il (its own numbering) on the normed
 * input xn; result in out [n][d]. */
static void attention(tl_context *c, tl_part *P, int il, int n, const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  const tl_layer *L = &P->w.layers[il];
  tl_backend *be = P->be;
  int hd = hp->head_dim, qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
  be->matmul(be, &L->wq, L->bq, xn, n, P->q, qd);
  be->matmul(be, &L->wk, L->bk, xn, n, P->k, kvd);
  be->matmul(be, &L->wv, L->bv, xn, n, P->v, kvd);
  if (L->q_norm) { /* per-head RMS norms (Qwen 3, Gemma 3) */
    tl_norm_op qn = {.x = P->q,
                     .w = L->q_norm,
                     .y = P->q,
                     .rows = (int64_t)n * hp->n_head,
                     .len = hd,
                     .kind = TL_NORM_RMS,
                     .eps = hp->norm_eps};
    tl_norm_op kn = qn;
    kn.x = kn.y = P->k;
    kn.w = L->k_norm;
    kn.rows = (int64_t)n * hp->n_head_kv;
    be->norm(be, &qn);
    be->norm(be, &kn);
  }
  tl_rope_op rope = {.q = P->q,
                     .k = P->k,
                     .n_head = hp->n_head,
                     .n_head_kv = hp->n_head_kv,
                     .head_dim = hd,
                     .n_rot = hp->n_rot,
                     .kind = hp->rope_kind,
                     .theta = L->rope_theta,
                     .freq_scale = hp->rope_freq_scale,
                     .freq_factors = P->w.rope_freqs};
  be->rope(be, &rope);
  be->kv_store(be, il, P->k, P->v);
  tl_attn_op at = {.layer = il,
                   .q = P->q,
                   .out = P->att,
                   .n_head = hp->n_head,
                   .n_head_kv = hp->n_head_kv,
                   .head_dim = hd,
                   .window = L->window,
                   .scale = hp->attn_scale,
                   .softcap = hp->attn_softcap};
  be->attention(be, &at);
  be->matmul(be, &L->wo, L->bo, P->att, n, out, hp->n_embd);
}

/* The MLP of the part's layer il on the normed input xn; result in out [n][d]. */
static void mlp(tl_context *c, tl_part *P, int il, int n, const float *xn, float *out) {
  const tl_model *m = c->model;
  const tl_layer *L = &P->w.layers[il];
  tl_backend *be = P->be;
  int ff = m->hp.n_ff;
  be->matmul(be, &L->w_up, L->b_up, xn, n, P->ffn_b, ff);
  if (m->arch->gated_ffn) be->matmul(be, &L->w_gate, NULL, xn, n, P->ffn_a, ff);
  be->act(be, m->arch->act, m->arch->gated_ffn, P->ffn_a, P->ffn_b, (int64_t)n * ff);
  be->matmul(be, &L->w_down, L->b_down, P->ffn_a, n, out, m->hp.n_embd);
}

/* A mixture of experts on the normed input xn (result in out [n][d]): the
 * router's logits, the top-k choice on the device (moe_route), then each
 * token's chosen experts as gated MLPs through matmul_id, summed with the
 * router's weights by the down projection. */
static void moe(tl_context *c, tl_part *P, int il, int n, const float *xn, float *out) {
  const tl_hparams *hp = &c->model->hp;
  const tl_layer *L = &P->w.layers[il];
  tl_backend *be = P->be;
  const int32_t ne = hp->n_expert, k = hp->n_expert_used;
  be->matmul(be, &L->w_gate_inp, NULL, xn, n, P->moe_logits, ne);
  tl_moe_route_op r = {.logits = P->moe_logits,
                       .ids = P->moe_ids,
                       .weights = P->moe_w,
                       .n = n,
                       .n_expert = ne,
                       .k = k,
                       .norm = hp->expert_norm};
  be->moe_route(be, &r);
  tl_matmul_id_op op = {.w = &L->w_up_exps,
                        .n_expert = ne,
                        .x = xn,
                        .ids = P->moe_ids,
                        .n = n,
                        .k = k,
                        .y = P->ffn_b};
  be->matmul_id(be, &op);
  op.w = &L->w_gate_exps;
  op.y = P->ffn_a;
  be->matmul_id(be, &op);
  be->act(be, c->model->arch->act, true, P->ffn_a, P->ffn_b, (int64_t)n * k * hp->n_ff_exp);
  op.w = &L->w_down_exps;
  op.x = P->ffn_a;
  op.x_per_slot = true;
  op.weights = P->moe_w;
  op.y = out;
  be->matmul_id(be, &op);
}

/* Room for n rows of logits in the last part's memory. */
static tl_status logits_room(tl_context *c, tl_part *P, int32_t n) {
  if (n <= P->logits_dev_cap) return TL_OK;
  size_t bytes;
  if (!tl_mul_size((size_t)n * (size_t)c->model->hp.n_vocab, sizeof(float), &bytes))
    return tl_fail(TL_ERR_NOMEM, "too many rows of logits");
  P->be->buffer_free(P->be, P->logits_dev);
  P->logits_dev = P->be->buffer_alloc(P->be, bytes);
  P->logits_dev_cap = P->logits_dev ? n : 0;
  if (!P->logits_dev)
    return tl_fail(TL_ERR_NOMEM, "out of %s memory for %d rows of logits (%.1f MiB)", P->be->name,
                   n, (double)bytes / (1024.0 * 1024.0));
  return TL_OK;
}

tl_status tl_forward(tl_context *c, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out) {
  const tl_model *m = c->model;
  const tl_hparams *hp = &m->hp;
  const int d = hp->n_embd;
  tl_part *last = &c->part[c->n_part - 1];

  int32_t *out_rows = c->out_rows, n_out = 0;
  for (int t = 0; t < n; t++)
    if (want_logits[t]) out_rows[n_out++] = t;
  tl_status s = logits_room(c, last, n_out);
  if (s) return s;

  bool aborted = false;
  for (int ip = 0; ip < c->n_part && !aborted; ip++) {
    tl_part *P = &c->part[ip];
    tl_backend *be = P->be;
    const bool is_last = P == last;
    /* the residual stream from the part before */
    if (ip > 0 && (s = be->from_host(be, c->handoff, P->x, (int64_t)n * d))) return s;
    tl_step st = {.n = n,
                  .tokens = tokens,
                  .pos = pos,
                  .seq = seq,
                  .n_out = is_last ? n_out : 0,
                  .out_rows = out_rows};
    if ((s = be->step_begin(be, &st))) return s;
    if (ip == 0) {
      be->embed(be, &P->w.tok_embd, P->x);
      if (m->arch->embd_scale) be->scale(be, P->x, sqrtf((float)d), (int64_t)n * d);
    }
    for (int il = 0; il < P->l1 - P->l0; il++) {
      if (c->abort_cb && c->abort_cb(c->abort_user)) {
        aborted = true;
        break;
      }
      const tl_layer *L = &P->w.layers[il];
      /* low-memory mode: this layer's weights mapped (and the next ones'
       * asked for), dropped again once it has run */
      const int unit = tl_lowmem_unit(c->lowmem, ip, il);
      tl_lowmem_enter(c->lowmem, unit);
      norm(c, P, n, d, P->x, NULL, NULL, L->attn_norm, L->attn_norm_b, P->xn);
      attention(c, P, il, n, P->xn, P->xb);
      if (m->arch->parallel) {
        /* x + attn(norm(x)) + mlp(norm(x)) */
        mlp(c, P, il, n, P->xn, P->xn);
        norm(c, P, n, d, P->x, P->xb, P->xn, NULL, NULL, NULL);
        tl_lowmem_leave(c->lowmem, unit);
        continue;
      }
      if (L->post_attn_norm) norm(c, P, n, d, P->xb, NULL, NULL, L->post_attn_norm, NULL, P->xb);
      norm(c, P, n, d, P->x, P->xb, NULL, L->ffn_norm, L->ffn_norm_b, P->xn); /* x += attn; norm */
      if (hp->n_expert > 0)
        moe(c, P, il, n, P->xn, P->xb);
      else
        mlp(c, P, il, n, P->xn, P->xb);
      if (L->post_ffn_norm) norm(c, P, n, d, P->xb, NULL, NULL, L->post_ffn_norm, NULL, P->xb);
      norm(c, P, n, d, P->x, P->xb, NULL, NULL, NULL, NULL);
      tl_lowmem_leave(c->lowmem, unit);
    }
    /* final norm and the output head, only for the tokens whose logits are wanted */
    if (is_last && !aborted && n_out > 0) {
      be->select_out(be, P->x, P->xb, d);
      norm(c, P, n_out, d, P->xb, NULL, NULL, P->w.output_norm, P->w.output_norm_b, P->xn);
      const int unit = tl_lowmem_unit(c->lowmem, ip, -1);
      tl_lowmem_enter(c->lowmem, unit);
      be->matmul(be, &P->w.output, P->w.output_b, P->xn, n_out, P->logits_dev, hp->n_vocab);
      tl_lowmem_leave(c->lowmem, unit);
      if (hp->final_softcap > 0)
        be->softcap(be, P->logits_dev, hp->final_softcap, (int64_t)n_out * hp->n_vocab);
    }
    if ((s = be->step_end(be))) return s;
    if (!is_last && !aborted && (s = be->to_host(be, P->x, c->handoff, (int64_t)n * d))) return s;
  }
  if (aborted) return tl_fail(TL_ERR_ABORTED, "aborted by the abort callback");
  if (n_out == 0) return TL_OK;
  return last->be->to_host(last->be, last->logits_dev, logits_out, (int64_t)n_out * hp->n_vocab);
}
