/* Contexts: the KV cache, the thread pool, scratch buffers, and tl_decode,
 * which validates a batch and runs it through the decoder in chunks. */
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model.h"

tl_context_params tl_context_default_params(void) {
  tl_context_params p = {
      .n_ctx = 0, .n_seq = 1, .n_batch = 512, .n_threads = 0, .kv_type = TL_KV_F16};
  return p;
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
static void *alloc_cache(size_t n, size_t size) {
  const size_t huge = (size_t)2 << 20;
  size_t total;
  if (!tl_mul_size(n, size, &total)) return NULL;
  if (total < 2 * huge) return alloc_lines(n, size);
  const size_t whole = (total + huge - 1) / huge * huge; /* aligned_alloc wants a multiple */
  void *p = aligned_alloc(huge, whole);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, whole, MADV_HUGEPAGE);
#endif
  return p;
}

static void *alloc_floats(size_t n) {
  return alloc_lines(n, sizeof(float));
}

void tl_context_free(tl_context *c) {
  if (!c) return;
  tl_pool_free(c->pool);
  free(c->k_cache);
  free(c->v_cache);
  free(c->seq_len);
  free(c->x);
  free(c->xn);
  free(c->xb);
  free(c->q);
  free(c->k);
  free(c->v);
  free(c->att);
  free(c->ffn_a);
  free(c->ffn_b);
  free(c->att_scratch);
  free(c->att_rates);
  free(c->logits);
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
  c->kv_ctx = (p.n_ctx + TL_ATT_TILE - 1) / TL_ATT_TILE * TL_ATT_TILE;
  c->n_seq = p.n_seq;
  c->n_batch = p.n_batch;
  c->n_threads = p.n_threads;
  c->kv_type = p.kv_type;
  const size_t hd = (size_t)hp->head_dim;
  c->kv_head_bytes = p.kv_type == TL_KV_F32   ? hd * 4
                     : p.kv_type == TL_KV_F16 ? hd * 2
                                              : hd / TL_QK8_0 * sizeof(tl_block_q8_0);
  c->kv_row_bytes = c->kv_head_bytes * (size_t)hp->n_head_kv;
  c->kernels = tl_cpu_kernels_best();
  tl_status s = tl_pool_new(p.n_threads, &c->pool);
  if (s) {
    tl_context_free(c);
    return s;
  }
  uint64_t kv_rows = 0, kv_bytes = 0, all = 0;
  bool fits =
      tl_mul_u64((uint64_t)hp->n_layer * (uint64_t)p.n_seq, (uint64_t)c->kv_ctx, &kv_rows) &&
      tl_mul_u64(kv_rows, c->kv_row_bytes, &kv_bytes) && tl_mul_u64(kv_bytes, 2, &all);
  /* Linux overcommits: malloc of more than the machine has may succeed and
   * the process be killed later, so compare with the physical memory. */
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  uint64_t phys = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
  if (!fits || (phys && all > phys)) {
    tl_context_free(c);
    return tl_fail(TL_ERR_NOMEM,
                   "a context of %d tokens needs a KV cache of %.1f GiB, more than this machine's "
                   "%.1f GiB of memory: use a smaller context (-c)%s",
                   p.n_ctx, fits ? (double)all / 1073741824.0 : 1e30, (double)phys / 1073741824.0,
                   p.kv_type == TL_KV_F32   ? " or an f16 KV cache (--kv f16)"
                   : p.kv_type == TL_KV_F16 ? " or a q8_0 KV cache (--kv q8_0)"
                                            : "");
  }
  c->k_cache = alloc_cache((size_t)kv_rows, c->kv_row_bytes);
  c->v_cache = alloc_cache((size_t)kv_rows, c->kv_row_bytes);
  c->seq_len = calloc((size_t)p.n_seq, sizeof(int32_t));
  size_t nb = (size_t)p.n_batch;
  size_t wide = (size_t)hp->n_head * hp->head_dim;
  if (wide < (size_t)hp->n_embd) wide = (size_t)hp->n_embd;
  c->x = alloc_floats(nb * hp->n_embd);
  c->xn = alloc_floats(nb * wide);
  c->xb = alloc_floats(nb * wide);
  c->q = alloc_floats(nb * hp->n_head * hp->head_dim);
  c->k = alloc_floats(nb * hp->n_head_kv * hp->head_dim);
  c->v = alloc_floats(nb * hp->n_head_kv * hp->head_dim);
  c->att = alloc_floats(nb * hp->n_head * hp->head_dim);
  c->ffn_a = alloc_floats(nb * hp->n_ff);
  c->ffn_b = alloc_floats(nb * hp->n_ff);
  size_t group = (size_t)(hp->n_head / hp->n_head_kv);
  c->att_tile = TL_ATT_TILE;
  const char *tile_env = getenv("TL_ATT_TILE");
  if (tile_env && atoi(tile_env) >= 1 && atoi(tile_env) <= TL_ATT_TILE)
    c->att_tile = atoi(tile_env);
  /* per thread: a key and a value tile in f32, the scores, 5 floats per query head */
  c->att_scratch_per_thread =
      2 * (size_t)TL_ATT_TILE * hp->head_dim + group * TL_ATT_TILE + 5 * group + 16;
  c->att_scratch = alloc_floats((size_t)p.n_threads * c->att_scratch_per_thread);
  c->att_rates = alloc_floats((size_t)p.n_threads);
  for (int i = 0; c->att_rates && i < p.n_threads; i++) c->att_rates[i] = 1.0f;
  if (!c->k_cache || !c->v_cache || !c->seq_len || !c->x || !c->xn || !c->xb || !c->q || !c->k ||
      !c->v || !c->att || !c->ffn_a || !c->ffn_b || !c->att_scratch || !c->att_rates) {
    tl_context_free(c);
    return tl_fail(TL_ERR_NOMEM,
                   "out of memory for a context of %d tokens (KV cache %.1f MiB): use a smaller "
                   "context (-c)",
                   p.n_ctx, (double)kv_bytes * 2 / (1024.0 * 1024.0));
  }
  tl_log(TL_LOG_INFO,
         "context: %d tokens x %d sequences, KV cache %s %.1f MiB, %d threads, %s kernels", p.n_ctx,
         p.n_seq, tl_kv_type_name(p.kv_type), (double)kv_bytes * 2 / (1024.0 * 1024.0), p.n_threads,
         c->kernels->name);
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
int32_t tl_context_n_threads(const tl_context *c) {
  return c->n_threads;
}

void tl_kv_clear(tl_context *c, int32_t seq) {
  for (int32_t s = 0; s < c->n_seq; s++)
    if (seq < 0 || seq == s) c->seq_len[s] = 0;
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
  return TL_OK;
}

const float *tl_get_logits(const tl_context *c, int32_t i) {
  if (!c || i < 0 || i >= c->n_logits) return NULL;
  return c->logits + (size_t)i * c->model->hp.n_vocab;
}
