/* Contexts: a backend (which owns the KV cache, threads and compute), the
 * activation buffers in its memory, each sequence's cached length, and
 * tl_decode, which validates a batch and runs it through the decoder in
 * steps of at most n_batch tokens. */
#include <math.h>
#include <stdlib.h>

#include "model/lowmem.h"
#include "model/model.h"

tl_context_params tl_context_default_params(void) {
  tl_context_params p = {.n_ctx = 0,
                         .n_seq = 1,
                         .n_batch = 512,
                         .n_threads = 0,
                         .kv_type = TL_KV_F16,
                         .backend = NULL,
                         .n_gpu_layers = -1,
                         .att_tile = 0,
                         .abort_callback = NULL,
                         .abort_user = NULL};
  return p;
}

/* A part's weights as its backend sees them: every tensor through
 * prepare_weight / prepare_vector (views of the mapped file on the CPU):
 * its layers, the embedding on the first part, the output head on the
 * last. */
static tl_status prepare_weights(tl_context *c, tl_part *P, bool first, bool last) {
  const tl_model *m = c->model;
  tl_backend *be = P->be;
  const int32_t d = m->hp.n_embd, qd = m->hp.n_head * m->hp.head_dim,
                kvd = m->hp.n_head_kv * m->hp.head_dim, ff = m->hp.n_ff, hd = m->hp.head_dim;
  tl_weights *w = &P->w;
  /* a backend with its own memory: the file's pages of each weight are
   * dropped once it is uploaded (the CPU keeps no second copy) */
  const bool gpu = be->memory != NULL;
  w->layers = calloc((size_t)(P->l1 - P->l0 > 0 ? P->l1 - P->l0 : 1), sizeof(tl_layer));
  if (!w->layers) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status s;
#define MAT(dst, src)                                                                           \
  if ((src).data) {                                                                             \
    if (!(src).scales && !be->supports_type(be, (src).type))                                    \
      return tl_fail(TL_ERR_UNSUPPORTED, "the %s backend cannot multiply %s weights", be->name, \
                     tl_type_name((src).type));                                                 \
    if ((s = be->prepare_weight(be, &(src), &(dst)))) return s;                                 \
    if (gpu && m->gguf)                                                                         \
      tl_mmap_release(&m->gguf->map, (src).data, (src).row_bytes *(size_t)(src).rows);          \
  }
  const float *v;
#define VEC(dst, src, n)                                               \
  if (src) {                                                           \
    if ((s = be->prepare_vector(be, (src), (n), &v))) return s;        \
    (dst) = (float *)v; /* the layer struct's vectors are not const */ \
  }
  if (first) MAT(w->tok_embd, m->tok_embd);
  if (last) {
    if (first && m->output.data == m->tok_embd.data) /* tied: one copy on the backend */
      w->output = w->tok_embd;
    else
      MAT(w->output, m->output);
    VEC(w->output_b, m->output_b, m->hp.n_vocab);
    VEC(w->output_norm, m->output_norm, d);
    VEC(w->output_norm_b, m->output_norm_b, d);
  }
  VEC(w->rope_freqs, m->hp.rope_freq_factors, m->hp.n_rot / 2);
  for (int il = P->l0; il < P->l1; il++) {
    const tl_layer *L = &m->layers[il];
    tl_layer *B = &w->layers[il - P->l0];
    *B = *L; /* the scalars (window, rope base); every tensor replaced below */
    MAT(B->wq, L->wq);
    MAT(B->wk, L->wk);
    MAT(B->wv, L->wv);
    MAT(B->wo, L->wo);
    MAT(B->w_gate, L->w_gate);
    MAT(B->w_up, L->w_up);
    MAT(B->w_down, L->w_down);
    MAT(B->w_gate_inp, L->w_gate_inp);
    MAT(B->w_gate_exps, L->w_gate_exps);
    MAT(B->w_up_exps, L->w_up_exps);
    MAT(B->w_down_exps, L->w_down_exps);
    VEC(B->attn_norm, L->attn_norm, d);
    VEC(B->attn_norm_b, L->attn_norm_b, d);
    VEC(B->ffn_norm, L->ffn_norm, d);
    VEC(B->ffn_norm_b, L->ffn_norm_b, d);
    VEC(B->post_attn_norm, L->post_attn_norm, d);
    VEC(B->post_ffn_norm, L->post_ffn_norm, d);
    VEC(B->q_norm, L->q_norm, hd);
    VEC(B->k_norm, L->k_norm, hd);
    VEC(B->bq, L->bq, qd);
    VEC(B->bk, L->bk, kvd);
    VEC(B->bv, L->bv, kvd);
    VEC(B->bo, L->bo, d);
    VEC(B->b_up, L->b_up, ff);
    VEC(B->b_down, L->b_down, d);
  }
#undef MAT
#undef VEC
  return TL_OK;
}

static void part_free(tl_part *P) {
  if (P->be) {
    float *bufs[] = {P->x,
                     P->xn,
                     P->xb,
                     P->q,
                     P->k,
                     P->v,
                     P->att,
                     P->ffn_a,
                     P->ffn_b,
                     P->logits_dev,
                     P->moe_w,
                     P->moe_logits,
                     (float *)P->moe_ids};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
      if (bufs[i]) P->be->buffer_free(P->be, bufs[i]);
    tl_backend_free(P->be);
  }
  free(P->w.layers);
}

/* A part of layers [l0, l1) on the named backend: the backend, its weights
 * and its activation buffers. */
static tl_status part_new(tl_context *c, tl_part *P, const char *backend,
                          const tl_context_params *p, int32_t l0, int32_t l1, bool first,
                          bool last) {
  const tl_hparams *hp = &c->model->hp;
  P->l0 = l0;
  P->l1 = l1;
  tl_backend_config bc = {.n_layer = l1 - l0 > 0 ? l1 - l0 : 1,
                          .n_head = hp->n_head,
                          .n_head_kv = hp->n_head_kv,
                          .head_dim = hp->head_dim,
                          .n_embd = hp->n_embd,
                          .n_ctx = p->n_ctx,
                          .n_seq = p->n_seq,
                          .n_batch = p->n_batch,
                          .kv_type = p->kv_type,
                          .n_threads = p->n_threads};
  tl_backend_config_options(&bc, p);
  tl_status s = tl_backend_new(backend, &bc, &P->be);
  if (!s && hp->n_expert > 0 && (!P->be->moe_route || !P->be->matmul_id))
    s = tl_fail(TL_ERR_UNSUPPORTED, "the %s backend cannot run a mixture of experts yet",
                P->be->name);
  if (!s) s = prepare_weights(c, P, first, last);
  if (s) return s;
  tl_backend *be = P->be;
  const size_t nb = (size_t)p->n_batch, fl = sizeof(float);
  size_t wide = (size_t)hp->n_head * hp->head_dim;
  if (wide < (size_t)hp->n_embd) wide = (size_t)hp->n_embd;
  P->x = be->buffer_alloc(be, nb * hp->n_embd * fl);
  P->xn = be->buffer_alloc(be, nb * wide * fl);
  P->xb = be->buffer_alloc(be, nb * wide * fl);
  P->q = be->buffer_alloc(be, nb * hp->n_head * hp->head_dim * fl);
  P->k = be->buffer_alloc(be, nb * hp->n_head_kv * hp->head_dim * fl);
  P->v = be->buffer_alloc(be, nb * hp->n_head_kv * hp->head_dim * fl);
  P->att = be->buffer_alloc(be, nb * hp->n_head * hp->head_dim * fl);
  /* with experts, the MLP buffers hold each token's chosen experts */
  size_t ff =
      hp->n_expert > 0 ? (size_t)hp->n_expert_used * (size_t)hp->n_ff_exp : (size_t)hp->n_ff;
  P->ffn_a = be->buffer_alloc(be, nb * ff * fl);
  P->ffn_b = be->buffer_alloc(be, nb * ff * fl);
  bool moe_ok = true;
  if (hp->n_expert > 0) {
    P->moe_logits = be->buffer_alloc(be, nb * (size_t)hp->n_expert * fl);
    P->moe_w = be->buffer_alloc(be, nb * (size_t)hp->n_expert_used * fl);
    P->moe_ids = be->buffer_alloc(be, nb * (size_t)hp->n_expert_used * sizeof(int32_t));
    moe_ok = P->moe_logits && P->moe_w && P->moe_ids;
  }
  if (!P->x || !P->xn || !P->xb || !P->q || !P->k || !P->v || !P->att || !P->ffn_a || !P->ffn_b ||
      !moe_ok)
    return tl_fail(TL_ERR_NOMEM,
                   "out of %s memory for the activations of a batch of %d tokens: use a smaller "
                   "batch (-b) or context (-c)",
                   be->name, p->n_batch);
  return TL_OK;
}

void tl_context_free(tl_context *c) {
  if (!c) return;
  tl_lowmem_free(c->lowmem);
  for (int i = 0; i < 2; i++) part_free(&c->part[i]);
  free(c->handoff);
  free(c->seq_len);
  free(c->out_rows);
  free(c->logits);
  free(c->row_of);
  free(c);
}

tl_status tl_context_new(tl_model *m, const tl_context_params *params, tl_context **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_context_new: out is NULL");
  *out = NULL;
  if (!m || !m->has_weights)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_context_new: the model has no weights loaded");
  tl_context_params p = params ? *params : tl_context_default_params();
  const tl_hparams *hp = &m->hp;
  if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train;
  if (p.n_threads == 0) p.n_threads = tl_physical_cores();
  if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
    return tl_fail(TL_ERR_INVALID_ARG, "context size %d is out of range (1..16777216)", p.n_ctx);
  if (p.n_seq < 1 || p.n_seq > 4096)
    return tl_fail(TL_ERR_INVALID_ARG, "sequence count %d is out of range (1..4096)", p.n_seq);
  if (p.n_batch <= 0 || p.n_batch > p.n_ctx) p.n_batch = p.n_ctx < 512 ? p.n_ctx : 512;
  if (p.mem_budget_mb < 0 || p.mem_budget_mb > (1 << 24))
    return tl_fail(TL_ERR_INVALID_ARG, "memory budget %d MiB is out of range (1..16777216)",
                   p.mem_budget_mb);
  if (p.n_threads < 1 || p.n_threads > 1024)
    return tl_fail(TL_ERR_INVALID_ARG, "thread count %d is out of range (1..1024)", p.n_threads);
  if (!tl_kv_type_name(p.kv_type))
    return tl_fail(TL_ERR_INVALID_ARG, "unknown KV cache type %d", (int)p.kv_type);
  if (p.kv_type == TL_KV_Q8_0 && hp->head_dim % TL_QK8_0 != 0)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "a q8_0 KV cache needs a head size that is a multiple of %d; this model's is "
                   "%d: use --kv f16",
                   TL_QK8_0, hp->head_dim);

  tl_context *c = calloc(1, sizeof *c);
  if (!c) return tl_fail(TL_ERR_NOMEM, "out of memory");
  c->model = m;
  c->n_ctx = p.n_ctx;
  c->n_seq = p.n_seq;
  c->n_batch = p.n_batch;
  c->n_threads = p.n_threads;
  c->kv_type = p.kv_type;
  c->abort_cb = p.abort_callback;
  c->low_mem = p.low_mem;
  c->abort_user = p.abort_user;
  /* a GPU backend with n_gpu_layers below the model's: its layers first,
   * then the CPU's (the CPU backend ignores n_gpu_layers: tried with the
   * GPU's share first, it is made again with every layer, which costs it
   * no upload) */
  const int32_t L = hp->n_layer, g = p.n_gpu_layers;
  const bool split = g >= 0 && g < L;
  tl_status s = part_new(c, &c->part[0], p.backend, &p, 0, split ? g : L, true, !split);
  c->n_part = 1;
  /* TL_SPLIT_CPU=1: the split made on the CPU too (two CPU backends), so
   * that tests check the hand-over where there is no GPU */
  const char *sc = getenv("TL_SPLIT_CPU");
  const bool split_cpu = sc && !strcmp(sc, "1");
  if (!s && split && !c->part[0].be->memory && !split_cpu) {
    part_free(&c->part[0]);
    memset(&c->part[0], 0, sizeof c->part[0]);
    s = part_new(c, &c->part[0], p.backend, &p, 0, L, true, true);
  } else if (!s && split) {
    c->n_part = 2;
    s = part_new(c, &c->part[1], "cpu", &p, g, L, false, true);
    if (!s && !(c->handoff = malloc(sizeof(float) * (size_t)p.n_batch * hp->n_embd)))
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
    if (!s)
      tl_log(TL_LOG_INFO, "context: layers 0..%d on %s (%s), %d..%d and the output on the cpu",
             g - 1, c->part[0].be->name, c->part[0].be->detail, g, L - 1);
  }
  c->be = c->part[0].be;
  c->seq_len = calloc((size_t)p.n_seq, sizeof(int32_t));
  c->out_rows = calloc((size_t)p.n_batch, sizeof(int32_t));
  if (!s && (!c->seq_len || !c->out_rows)) s = tl_fail(TL_ERR_NOMEM, "out of memory");
  if (!s && c->low_mem)
    s = tl_lowmem_new(c, (size_t)(p.mem_budget_mb > 0 ? p.mem_budget_mb : 1536) << 20, &c->lowmem);
  if (s) {
    tl_context_free(c);
    return s;
  }
  tl_backend *be = c->be;
  tl_log(TL_LOG_INFO, "context: %d tokens x %d sequences, KV cache %s, %d threads, backend %s (%s)",
         p.n_ctx, p.n_seq, tl_kv_type_name(p.kv_type), p.n_threads, be->name, be->detail);
  *out = c;
  return TL_OK;
}

const char *tl_kv_type_name(tl_kv_type t) {
  switch (t) {
    case TL_KV_F16:
      return "f16";
    case TL_KV_F32:
      return "f32";
    case TL_KV_Q8_0:
      return "q8_0";
  }
  return NULL;
}

int32_t tl_context_n_ctx(const tl_context *c) {
  return c->n_ctx;
}
const tl_model *tl_context_model(const tl_context *c) {
  return c->model;
}
int32_t tl_context_n_threads(const tl_context *c) {
  return c->n_threads;
}

const char *tl_context_backend(const tl_context *c) {
  return c->be->name;
}

bool tl_context_device_memory(const tl_context *c, uint64_t *now, uint64_t *peak,
                              uint64_t *device_used) {
  *now = *peak = *device_used = 0;
  for (int i = 0; i < c->n_part; i++)
    if (c->part[i].be->memory) {
      c->part[i].be->memory(c->part[i].be, now, peak, device_used);
      return true;
    }
  return false;
}

const tl_backend *tl_context_get_backend(const tl_context *c) {
  return c->be;
}

void tl_kv_clear(tl_context *c, int32_t seq) {
  for (int32_t s = 0; s < c->n_seq; s++)
    if (seq < 0 || seq == s) c->seq_len[s] = 0;
}

tl_status tl_kv_seq_rm(tl_context *c, int32_t seq, int32_t p0, int32_t p1) {
  if (!c || seq < -1 || seq >= c->n_seq || p0 < 0 || (p1 >= 0 && p1 < p0))
    return tl_fail(TL_ERR_INVALID_ARG, "tl_kv_seq_rm: bad sequence %d or range [%d, %d)", seq, p0,
                   p1);
  for (int32_t s = 0; s < c->n_seq; s++)
    if ((seq < 0 || seq == s) && p1 >= 0 && p1 < c->seq_len[s] && p0 < p1)
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "tl_kv_seq_rm: dropping positions [%d, %d) of sequence %d would leave a hole "
                     "before the rest of its %d cached positions; only a range to the end can "
                     "be dropped",
                     p0, p1, s, c->seq_len[s]);
  for (int32_t s = 0; s < c->n_seq; s++)
    if ((seq < 0 || seq == s) && p0 < c->seq_len[s] && p0 != p1) c->seq_len[s] = p0;
  return TL_OK;
}

tl_status tl_kv_seq_cp(tl_context *c, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  if (!c || src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_kv_seq_cp: sequence %d or %d is out of range (0..%d)",
                   src, dst, c ? c->n_seq - 1 : 0);
  if (p1 < 0) p1 = c->seq_len[src];
  if (p0 < 0 || p0 > p1 || p1 > c->seq_len[src])
    return tl_fail(TL_ERR_INVALID_ARG,
                   "tl_kv_seq_cp: range [%d, %d) is not within the %d cached positions of "
                   "sequence %d",
                   p0, p1, c->seq_len[src], src);
  if (src == dst) return TL_OK;
  if (p0 > c->seq_len[dst])
    return tl_fail(TL_ERR_INVALID_ARG,
                   "tl_kv_seq_cp: sequence %d holds %d positions; a copy from position %d "
                   "would leave a hole",
                   dst, c->seq_len[dst], p0);
  for (int i = 0; i < c->n_part; i++) {
    tl_status s = c->part[i].be->kv_copy(c->part[i].be, src, dst, p0, p1);
    if (s) return s;
  }
  c->seq_len[dst] = p1;
  return TL_OK;
}

int32_t tl_kv_seq_pos_max(const tl_context *c, int32_t seq) {
  if (!c || seq < 0 || seq >= c->n_seq) return -1;
  return c->seq_len[seq] - 1;
}

tl_status tl_decode(tl_context *c, const tl_batch *b) {
  if (!c || !b || b->n_tokens < 1 || !b->tokens || !b->pos)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_decode: empty or invalid batch");
  const tl_model *m = c->model;
  int32_t n = b->n_tokens;
  /* validate every token before touching the cache */
  int32_t *len = malloc((size_t)c->n_seq * sizeof(int32_t));
  if (!len) return tl_fail(TL_ERR_NOMEM, "out of memory");
  memcpy(len, c->seq_len, (size_t)c->n_seq * sizeof(int32_t));
  int32_t n_want = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t s = b->seq ? b->seq[i] : 0, p = b->pos[i];
    tl_token t = b->tokens[i];
    tl_status st = TL_OK;
    if (t < 0 || t >= m->hp.n_vocab)
      st = tl_fail(TL_ERR_INVALID_ARG,
                   "token id %d at batch index %d is outside the vocabulary "
                   "(0..%d)",
                   t, i, m->hp.n_vocab - 1);
    else if (s < 0 || s >= c->n_seq)
      st = tl_fail(TL_ERR_INVALID_ARG, "sequence id %d is out of range (0..%d)", s, c->n_seq - 1);
    else if (p >= c->n_ctx)
      st = tl_fail(TL_ERR_CONTEXT_FULL, "position %d does not fit in the context of %d tokens", p,
                   c->n_ctx);
    else if (p < 0 || p > len[s])
      st = tl_fail(TL_ERR_INVALID_ARG,
                   "position %d of sequence %d is not contiguous with its %d cached tokens", p, s,
                   len[s]);
    if (st) {
      free(len);
      return st;
    }
    len[s] = p + 1 > len[s] ? p + 1 : len[s];
    if (b->logits ? b->logits[i] != 0 : i == n - 1) n_want++;
  }
  free(len);
  if (n_want > c->logits_cap) {
    float *nl = tl_malloc_array((size_t)n_want * (size_t)m->hp.n_vocab, sizeof(float));
    if (!nl) return tl_fail(TL_ERR_NOMEM, "out of memory for %d rows of logits", n_want);
    free(c->logits);
    c->logits = nl;
    c->logits_cap = n_want;
  }
  int8_t *want = malloc((size_t)c->n_batch);
  int32_t *seq0 = b->seq ? NULL : calloc((size_t)c->n_batch, sizeof(int32_t));
  if (!want || (!b->seq && !seq0)) {
    free(want);
    free(seq0);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  int32_t done_logits = 0;
  for (int32_t off = 0; off < n; off += c->n_batch) {
    int32_t cn = n - off < c->n_batch ? n - off : c->n_batch;
    for (int32_t i = 0; i < cn; i++)
      want[i] = b->logits ? (b->logits[off + i] != 0) : (off + i == n - 1);
    const int32_t *seq = b->seq ? b->seq + off : seq0;
    tl_status st = tl_forward(c, cn, b->tokens + off, b->pos + off, seq, want,
                              c->logits + (size_t)done_logits * m->hp.n_vocab);
    /* NaN or Inf weights (a corrupt or hostile file: matrices are not scanned
     * at load) must not turn into garbage text */
    const float *lg = c->logits + (size_t)done_logits * m->hp.n_vocab;
    for (int32_t i = 0, r = 0; i < cn && !st; i++) {
      if (!want[i]) continue;
      for (int32_t k = 0; k < m->hp.n_vocab; k++)
        if (!isfinite(lg[(size_t)r * m->hp.n_vocab + k])) {
          st = tl_fail(TL_ERR_FORMAT,
                       "the logits of token %d are not finite (NaN or Inf): the model's "
                       "weights are corrupt",
                       off + i);
          break;
        }
      r++;
    }
    if (st) {
      free(want);
      free(seq0);
      return st;
    }
    for (int32_t i = 0; i < cn; i++) {
      int32_t s = seq[i];
      if (b->pos[off + i] + 1 > c->seq_len[s]) c->seq_len[s] = b->pos[off + i] + 1;
      done_logits += want[i];
    }
  }
  free(want);
  free(seq0);
  c->n_logits = n_want;
  /* batch position -> logits row, for tl_get_logits_pos */
  if (n > c->row_cap) {
    int32_t *nr = realloc(c->row_of, sizeof(int32_t) * (size_t)n);
    if (!nr) return tl_fail(TL_ERR_NOMEM, "out of memory");
    c->row_of = nr;
    c->row_cap = n;
  }
  for (int32_t i = 0, r = 0; i < n; i++)
    c->row_of[i] = (b->logits ? b->logits[i] != 0 : i == n - 1) ? r++ : -1;
  c->n_last = n;
  return TL_OK;
}

const float *tl_get_logits(const tl_context *c, int32_t i) {
  if (!c || i < 0 || i >= c->n_logits) {
    tl_fail(TL_ERR_INVALID_ARG, "tl_get_logits: row %d of %d rows of logits", i,
            c ? c->n_logits : 0);
    return NULL;
  }
  return c->logits + (size_t)i * c->model->hp.n_vocab;
}

const float *tl_get_logits_pos(const tl_context *c, int32_t j) {
  if (c && j < 0) j += c->n_last;
  if (!c || j < 0 || j >= c->n_last || c->row_of[j] < 0) {
    tl_fail(TL_ERR_INVALID_ARG,
            "tl_get_logits_pos: batch position %d has no logits (the last batch had %d tokens)", j,
            c ? c->n_last : 0);
    return NULL;
  }
  return tl_get_logits(c, c->row_of[j]);
}
