/* torchless serve: the scheduler. One thread owns the context. Each step it
 * takes queued requests into free slots (each slot is one sequence of the
 * context, its KV cache), then runs one tl_decode over every active slot:
 * one token for each slot that is generating, and a chunk of the prompt of
 * each slot still prefilling (SRV_CHUNK tokens a step in all, so that a
 * long prompt never holds the others up for more than one chunk). After the
 * step it samples the next token of every slot whose logits came out,
 * publishes the text, and finishes requests at an end-of-generation token,
 * a stop string, max_tokens or the end of the context.
 *
 * Prompt caching: a slot keeps the tokens of its cache after its request
 * ends. A new request goes to the free slot whose cache shares the longest
 * prefix with its prompt (else the least recently used one), or has that
 * prefix copied from a busier slot (tl_kv_seq_cp); only the rest is
 * prefilled. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define SRV_CHUNK 256  /* prompt tokens per step, over all slots */
#define SRV_MIN_COPY 8 /* a shorter shared prefix is not worth a copy */

typedef struct slot {
  int id;
  tl_token *cache; /* the tokens in the slot's KV cache, positions 0.. */
  int n_cache, cap_cache;
  srv_request *req; /* NULL: free */
  int n_prefilled;  /* prompt tokens in the cache */
  bool has_next;    /* next: sampled, to be decoded */
  tl_token next;
  tl_sampler *smp;
  tl_detok *dt;
  int32_t *counts; /* per vocabulary entry: times generated (penalties) */
  float *scratch;  /* penalised logits */
  char *text;      /* the whole reply so far */
  size_t len, cap;
  size_t emitted; /* bytes of text published */
  int max_tokens;
  int64_t last_used;
  bool in_step;
} slot;

struct srv_engine {
  tl_model *m;
  tl_context *c;
  int n_vocab, n_ctx, n_slots, max_queue;
  tl_token eog[64];
  int n_eog;
  slot *slots;
  pthread_t thread;
  bool started, joined;
  pthread_mutex_t mu;
  pthread_cond_t work; /* to the engine: a request came, or stop */
  pthread_cond_t out;  /* from the engine: a step is done */
  srv_request *qhead, *qtail;
  int qlen;
  bool stopping;
  atomic_bool abort_now;
  srv_metrics mt;
  /* the batch of a step */
  tl_token *b_tok;
  int32_t *b_pos, *b_seq;
  int8_t *b_want;
  int *row_slot;
  int b_cap;
  int rr; /* the slot whose prompt goes first next step */
  /* recent generation speed */
  int64_t win_t0;
  uint64_t win_tokens;
};

void srv_lock(srv_engine *e) {
  pthread_mutex_lock(&e->mu);
}
void srv_unlock(srv_engine *e) {
  pthread_mutex_unlock(&e->mu);
}

void srv_wait(srv_engine *e, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(&e->out, &e->mu, &ts);
}

srv_metrics srv_get_metrics(srv_engine *e) {
  srv_metrics m = e->mt;
  m.queue_len = e->qlen;
  m.slots = e->n_slots;
  m.slots_busy = 0;
  for (int i = 0; i < e->n_slots; i++) m.slots_busy += e->slots[i].req != NULL;
  return m;
}

void srv_count_request(srv_engine *e, bool failed) {
  e->mt.requests++;
  if (failed) e->mt.requests_failed++;
}

int srv_n_ctx(const srv_engine *e) {
  return e->n_ctx;
}

/* ---- requests --------------------------------------------------------------- */

srv_request *srv_request_new(const tl_token *prompt, int n_prompt, const srv_params *p) {
  srv_request *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->prompt = malloc(sizeof(tl_token) * (size_t)(n_prompt > 0 ? n_prompt : 1));
  r->text = malloc(256);
  if (!r->prompt || !r->text) {
    free(r->prompt);
    free(r->text);
    free(r);
    return NULL;
  }
  memcpy(r->prompt, prompt, sizeof(tl_token) * (size_t)n_prompt);
  r->n_prompt = n_prompt;
  r->p = *p;
  for (int i = 0; i < p->n_stop; i++) r->p.stop[i] = strdup(p->stop[i]);
  r->cap = 256;
  r->text[0] = 0;
  r->refs = 1;
  atomic_init(&r->cancelled, false);
  return r;
}

static void request_unref(srv_request *r) {
  if (--r->refs > 0) return;
  for (int i = 0; i < r->p.n_stop; i++) free(r->p.stop[i]);
  free(r->prompt);
  free(r->text);
  free(r->toks);
  free(r);
}

int srv_submit(srv_engine *e, srv_request *r) {
  srv_lock(e);
  int rc = 0;
  if (e->stopping)
    rc = -2;
  else if (e->qlen >= e->max_queue)
    rc = -1;
  else {
    r->refs++;
    r->state = SRV_QUEUED;
    r->t_queued = tl_time_us();
    r->next = NULL;
    if (e->qtail)
      e->qtail->next = r;
    else
      e->qhead = r;
    e->qtail = r;
    e->qlen++;
    pthread_cond_signal(&e->work);
  }
  srv_unlock(e);
  return rc;
}

void srv_release(srv_engine *e, srv_request *r) {
  if (!r) return;
  srv_lock(e);
  atomic_store(&r->cancelled, true);
  pthread_cond_signal(&e->work);
  request_unref(r);
  srv_unlock(e);
}

/* With the lock held: r is over (with err NULL: finish reason set). */
static void request_done(srv_engine *e, srv_request *r, int status, const char *err) {
  if (err) {
    r->err_status = status;
    snprintf(r->err, sizeof r->err, "%s", err);
  }
  r->state = SRV_DONE;
  request_unref(r);
}

static bool append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t nc = *cap * 2 > *len + n + 1 ? *cap * 2 : *len + n + 64;
    char *nb = realloc(*buf, nc);
    if (!nb) return false;
    *buf = nb;
    *cap = nc;
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = 0;
  return true;
}

/* ---- slots ---------------------------------------------------------------------- */

static bool cache_push(slot *s, tl_token t) {
  if (s->n_cache == s->cap_cache) {
    int nc = s->cap_cache ? s->cap_cache * 2 : 256;
    tl_token *n = realloc(s->cache, sizeof(tl_token) * (size_t)nc);
    if (!n) return false;
    s->cache = n;
    s->cap_cache = nc;
  }
  s->cache[s->n_cache++] = t;
  return true;
}

static int common_prefix(const tl_token *a, int na, const tl_token *b, int nb) {
  int n = na < nb ? na : nb, i = 0;
  while (i < n && a[i] == b[i]) i++;
  return i;
}

/* Make the slot's cache agree with what the context holds (after an
 * aborted or failed step). */
static void slot_resync(srv_engine *e, slot *s) {
  int have = tl_kv_seq_pos_max(e->c, s->id) + 1;
  if (have > s->n_cache) {
    tl_kv_seq_rm(e->c, s->id, s->n_cache, -1);
  } else if (have < s->n_cache) {
    s->n_cache = have < 0 ? 0 : have;
  }
}

/* Free the slot's request resources; the cache stays for the next one. */
static void slot_end(srv_engine *e, slot *s) {
  tl_sampler_free(s->smp);
  s->smp = NULL;
  tl_detok_free(s->dt);
  s->dt = NULL;
  s->req = NULL;
  s->has_next = false;
  s->last_used = tl_time_us();
  (void)e;
}

/* Publish the reply up to byte `upto` (with the lock held). */
static void publish(slot *s, size_t upto) {
  srv_request *r = s->req;
  if (r->p.trim_leading && r->len == 0)
    while (s->emitted < upto && s->text[s->emitted] == ' ') s->emitted++;
  if (upto > s->emitted) {
    if (!append(&r->text, &r->len, &r->cap, s->text + s->emitted, upto - s->emitted)) return;
    s->emitted = upto;
  }
}

static void slot_finish(srv_engine *e, slot *s, const char *reason) {
  srv_request *r = s->req;
  if (strcmp(reason, "stop_string")) {
    char buf[64];
    size_t nb = tl_detok_flush(s->dt, buf, sizeof buf);
    append(&s->text, &s->len, &s->cap, buf, nb);
  } else {
    reason = "stop";
  }
  publish(s, s->len);
  r->finish = reason;
  request_done(e, r, 0, NULL);
  slot_end(e, s);
}

/* Take request r into slot s: the sampler, and the cached prefix. */
static bool slot_start(srv_engine *e, slot *s, srv_request *r) {
  s->req = r;
  s->n_prefilled = 0;
  s->has_next = false;
  s->len = 0;
  s->emitted = 0;
  if (s->text) s->text[0] = 0;
  tl_sampler_params sp = r->p.sp;
  if (tl_sampler_new(&sp, &s->smp) || tl_detok_new(e->m, &s->dt)) return false;
  if (r->p.presence != 0 || r->p.frequency != 0) {
    if (!s->counts && !(s->counts = calloc((size_t)e->n_vocab, sizeof(int32_t)))) return false;
    if (!s->scratch && !(s->scratch = malloc(sizeof(float) * (size_t)e->n_vocab))) return false;
    memset(s->counts, 0, sizeof(int32_t) * (size_t)e->n_vocab);
  }
  /* the prefix to keep: this slot's, or a longer one copied from another */
  int keep = r->p.cache_prompt ? common_prefix(s->cache, s->n_cache, r->prompt, r->n_prompt) : 0;
  if (r->p.cache_prompt) {
    int best = keep, src = -1;
    for (int i = 0; i < e->n_slots; i++) {
      slot *o = &e->slots[i];
      if (o == s) continue;
      int k = common_prefix(o->cache, o->n_cache, r->prompt, r->n_prompt);
      if (k > best) {
        best = k;
        src = i;
      }
    }
    if (src >= 0 && best >= keep + SRV_MIN_COPY &&
        tl_kv_seq_cp(e->c, src, s->id, 0, best) == TL_OK) {
      s->n_cache = 0;
      for (int i = 0; i < best; i++)
        if (!cache_push(s, r->prompt[i])) return false;
      keep = best;
    }
  }
  if (keep >= r->n_prompt) keep = r->n_prompt - 1; /* the last token again, for its logits */
  if (keep < 0) keep = 0;
  if (tl_kv_seq_rm(e->c, s->id, keep, -1) != TL_OK) {
    tl_kv_clear(e->c, s->id);
    keep = 0;
  }
  s->n_cache = keep;
  s->n_prefilled = keep;
  r->n_cached = keep;
  r->state = SRV_ACTIVE;
  int room = e->n_ctx - r->n_prompt;
  s->max_tokens = r->p.max_tokens > 0 && r->p.max_tokens < room ? r->p.max_tokens : room;
  e->mt.prompt_tokens += (uint64_t)r->n_prompt;
  e->mt.cached_tokens += (uint64_t)keep;
  return true;
}

/* The free slot for a prompt: the longest cached prefix, else the least
 * recently used. */
static slot *pick_slot(srv_engine *e, const srv_request *r) {
  slot *best = NULL;
  int best_k = -1;
  for (int i = 0; i < e->n_slots; i++) {
    slot *s = &e->slots[i];
    if (s->req) continue;
    int k = r->p.cache_prompt ? common_prefix(s->cache, s->n_cache, r->prompt, r->n_prompt) : 0;
    if (k > best_k || (k == best_k && s->last_used < best->last_used)) {
      best = s;
      best_k = k;
    }
  }
  return best;
}

/* ---- sampling ------------------------------------------------------------------ */

static bool is_eog(const srv_engine *e, tl_token t) {
  if (tl_token_is_eog(e->m, t)) return true;
  for (int i = 0; i < e->n_eog; i++)
    if (e->eog[i] == t) return true;
  return false;
}

static void logprobs_of(const float *lg, int n, tl_token t, int n_top, srv_tokinfo *ti) {
  float mx = -INFINITY;
  for (int i = 0; i < n; i++)
    if (lg[i] > mx) mx = lg[i];
  double sum = 0;
  for (int i = 0; i < n; i++) sum += exp((double)(lg[i] - mx));
  float lse = mx + (float)log(sum);
  ti->id = t;
  ti->logprob = lg[t] - lse;
  ti->n_top = 0;
  for (int i = 0; i < n && n_top > 0; i++) {
    float v = lg[i];
    if (ti->n_top == n_top && v <= ti->top_lp[n_top - 1]) continue;
    int j = ti->n_top < n_top ? ti->n_top++ : n_top - 1;
    while (j > 0 && ti->top_lp[j - 1] < v) {
      ti->top_lp[j] = ti->top_lp[j - 1];
      ti->top_id[j] = ti->top_id[j - 1];
      j--;
    }
    ti->top_lp[j] = v;
    ti->top_id[j] = i;
  }
  for (int i = 0; i < ti->n_top; i++) ti->top_lp[i] -= lse;
}

/* The first stop string in text[from, len): its offset, or -1. */
static long find_stop(const srv_request *r, const char *text, size_t len, size_t from) {
  long best = -1;
  for (int i = 0; i < r->p.n_stop; i++) {
    const char *hit = memmem(text + from, len - from, r->p.stop[i], strlen(r->p.stop[i]));
    if (hit && (best < 0 || hit - text < best)) best = hit - text;
  }
  return best;
}

/* How many bytes at the end of text could begin a stop string. */
static size_t stop_hold(const srv_request *r, const char *text, size_t len) {
  size_t hold = 0;
  for (int i = 0; i < r->p.n_stop; i++) {
    size_t sl = strlen(r->p.stop[i]);
    for (size_t k = sl - 1 < len ? sl - 1 : len; k > hold; k--)
      if (!memcmp(text + len - k, r->p.stop[i], k)) {
        hold = k;
        break;
      }
  }
  return hold;
}

/* The slot's logits are out: pick the next token (with the lock held). */
static void slot_sample(srv_engine *e, slot *s, const float *lg) {
  srv_request *r = s->req;
  const float *L = lg;
  if (r->p.presence != 0 || r->p.frequency != 0) {
    memcpy(s->scratch, lg, sizeof(float) * (size_t)e->n_vocab);
    for (int i = 0; i < e->n_vocab; i++)
      if (s->counts[i] > 0) s->scratch[i] -= (float)s->counts[i] * r->p.frequency + r->p.presence;
    L = s->scratch;
  }
  tl_token t = tl_sampler_sample(s->smp, L, e->n_vocab);
  if (r->n_gen == 0) r->t_first = tl_time_us();
  if (is_eog(e, t)) {
    slot_finish(e, s, "stop");
    return;
  }
  if (r->p.logprobs) {
    if (r->n_toks == r->cap_toks) {
      int nc = r->cap_toks ? r->cap_toks * 2 : 16;
      srv_tokinfo *nt = realloc(r->toks, sizeof *nt * (size_t)nc);
      if (nt) {
        r->toks = nt;
        r->cap_toks = nc;
      }
    }
    if (r->n_toks < r->cap_toks)
      logprobs_of(L, e->n_vocab, t, r->p.top_logprobs, &r->toks[r->n_toks++]);
  }
  tl_sampler_accept(s->smp, t);
  if (s->counts) s->counts[t]++;
  r->n_gen++;
  e->mt.gen_tokens++;
  e->win_tokens++;
  char buf[256];
  size_t nb = tl_detok_push(s->dt, t, buf, sizeof buf);
  size_t from = s->emitted;
  if (!append(&s->text, &s->len, &s->cap, buf, nb)) {
    slot_finish(e, s, "length");
    return;
  }
  if (r->p.n_stop) {
    long at = find_stop(r, s->text, s->len, from);
    if (at >= 0) {
      s->len = (size_t)at;
      s->text[at] = 0;
      slot_finish(e, s, "stop_string");
      return;
    }
  }
  publish(s, s->len - stop_hold(r, s->text, s->len));
  if (r->n_gen >= s->max_tokens || s->n_cache >= e->n_ctx) {
    slot_finish(e, s, "length");
    return;
  }
  s->next = t;
  s->has_next = true;
}

/* ---- the loop ------------------------------------------------------------------ */

static bool abort_cb(void *user) {
  srv_engine *e = user;
  if (atomic_load(&e->abort_now)) return true;
  /* stop the step only when every request in it is gone */
  for (int i = 0; i < e->n_slots; i++) {
    slot *s = &e->slots[i];
    if (s->in_step && s->req && !atomic_load(&s->req->cancelled)) return false;
  }
  return true;
}

static void fail_all(srv_engine *e, int status, const char *msg) {
  for (int i = 0; i < e->n_slots; i++) {
    slot *s = &e->slots[i];
    if (!s->req) continue;
    request_done(e, s->req, status, msg);
    slot_end(e, s);
  }
}

static void *engine_main(void *arg) {
  srv_engine *e = arg;
  srv_lock(e);
  for (;;) {
    /* requests that are gone */
    for (int i = 0; i < e->n_slots; i++) {
      slot *s = &e->slots[i];
      if (s->req && atomic_load(&s->req->cancelled)) {
        request_done(e, s->req, 499, "cancelled");
        slot_end(e, s);
      }
    }
    for (srv_request **p = &e->qhead; *p;) {
      srv_request *r = *p;
      if (!atomic_load(&r->cancelled) && !e->stopping) {
        p = &r->next;
        continue;
      }
      *p = r->next;
      e->qlen--;
      request_done(e, r, 503, e->stopping ? "the server is shutting down" : "cancelled");
    }
    e->qtail = NULL;
    for (srv_request *r = e->qhead; r; r = r->next) e->qtail = r;
    if (e->stopping) {
      fail_all(e, 503, "the server is shutting down");
      pthread_cond_broadcast(&e->out);
      break;
    }
    /* take queued requests into free slots */
    while (e->qhead) {
      slot *s = pick_slot(e, e->qhead);
      if (!s) break;
      srv_request *r = e->qhead;
      e->qhead = r->next;
      if (!e->qhead) e->qtail = NULL;
      e->qlen--;
      if (!slot_start(e, s, r)) {
        request_done(e, r, 500, "out of memory");
        slot_end(e, s);
      }
    }
    /* the batch */
    int n = 0, n_gen = 0, n_prompt = 0;
    for (int i = 0; i < e->n_slots; i++) {
      slot *s = &e->slots[i];
      s->in_step = false;
      if (!s->req || !s->has_next) continue;
      e->b_tok[n] = s->next;
      e->b_pos[n] = s->n_cache;
      e->b_seq[n] = s->id;
      e->b_want[n] = 1;
      s->in_step = true;
      n++;
      n_gen++;
    }
    int budget = SRV_CHUNK;
    for (int k = 0; k < e->n_slots && budget > 0; k++) {
      slot *s = &e->slots[(e->rr + k) % e->n_slots];
      if (!s->req || s->has_next) continue;
      srv_request *r = s->req;
      int todo = r->n_prompt - s->n_prefilled;
      int take = todo < budget ? todo : budget;
      for (int j = 0; j < take; j++) {
        int p = s->n_prefilled + j;
        e->b_tok[n] = r->prompt[p];
        e->b_pos[n] = p;
        e->b_seq[n] = s->id;
        e->b_want[n] = p == r->n_prompt - 1;
        n++;
      }
      budget -= take;
      n_prompt += take;
      s->in_step = true;
    }
    e->rr = (e->rr + 1) % e->n_slots;
    if (n == 0) {
      pthread_cond_broadcast(&e->out);
      pthread_cond_wait(&e->work, &e->mu);
      continue;
    }
    srv_unlock(e);
    int64_t t0 = tl_time_us();
    tl_batch b = {
        .n_tokens = n, .tokens = e->b_tok, .pos = e->b_pos, .seq = e->b_seq, .logits = e->b_want};
    tl_status st = tl_decode(e->c, &b);
    double dt = (double)(tl_time_us() - t0) / 1e6;
    srv_lock(e);
    e->mt.steps++;
    if (n_gen) e->mt.gen_seconds += dt * n_gen / n;
    if (n_prompt) e->mt.prompt_seconds += dt * n_prompt / n;
    if (st != TL_OK) {
      for (int i = 0; i < e->n_slots; i++) slot_resync(e, &e->slots[i]);
      if (st != TL_ERR_ABORTED) {
        char msg[200];
        snprintf(msg, sizeof msg, "decoding failed: %s", tl_last_error());
        for (int i = 0; i < e->n_slots; i++) {
          slot *s = &e->slots[i];
          if (!s->in_step || !s->req) continue;
          request_done(e, s->req, 500, msg);
          slot_end(e, s);
        }
      }
      pthread_cond_broadcast(&e->out);
      continue;
    }
    /* the tokens are in the cache: record them, then sample */
    int row = 0;
    for (int i = 0; i < n; i++) {
      slot *s = &e->slots[e->b_seq[i]];
      cache_push(s, e->b_tok[i]);
      if (s->req && !s->has_next) s->n_prefilled++;
      if (e->b_want[i]) e->row_slot[row++] = e->b_seq[i];
    }
    for (int i = 0; i < e->n_slots; i++) e->slots[i].has_next = false;
    for (int k = 0; k < row; k++) {
      slot *s = &e->slots[e->row_slot[k]];
      if (!s->req) continue;
      const float *lg = tl_get_logits(e->c, k);
      if (!lg) {
        request_done(e, s->req, 500, "no logits");
        slot_end(e, s);
        continue;
      }
      slot_sample(e, s, lg);
    }
    /* recent speed: over windows of at least two seconds */
    int64_t now = tl_time_us();
    if (!e->win_t0) e->win_t0 = now;
    if (now - e->win_t0 >= 2000000) {
      e->mt.recent_tps = (double)e->win_tokens / ((double)(now - e->win_t0) / 1e6);
      e->win_t0 = now;
      e->win_tokens = 0;
    }
    pthread_cond_broadcast(&e->out);
  }
  srv_unlock(e);
  return NULL;
}

tl_status srv_engine_start(tl_model *m, tl_context *c, int n_parallel, int max_queue,
                           srv_engine **out) {
  srv_engine *e = calloc(1, sizeof *e);
  if (!e) return TL_ERR_NOMEM;
  e->m = m;
  e->c = c;
  e->n_vocab = tl_model_n_vocab(m);
  e->n_ctx = tl_context_n_ctx(c);
  e->n_slots = n_parallel;
  e->max_queue = max_queue;
  e->n_eog = tl_model_eog_tokens(m, e->eog, 64);
  if (e->n_eog > 64) e->n_eog = 64;
  e->b_cap = SRV_CHUNK + n_parallel;
  e->slots = calloc((size_t)n_parallel, sizeof *e->slots);
  e->b_tok = malloc(sizeof(tl_token) * (size_t)e->b_cap);
  e->b_pos = malloc(sizeof(int32_t) * (size_t)e->b_cap);
  e->b_seq = malloc(sizeof(int32_t) * (size_t)e->b_cap);
  e->b_want = malloc((size_t)e->b_cap);
  e->row_slot = malloc(sizeof(int) * (size_t)e->b_cap);
  if (!e->slots || !e->b_tok || !e->b_pos || !e->b_seq || !e->b_want || !e->row_slot) {
    srv_engine_free(e);
    return TL_ERR_NOMEM;
  }
  for (int i = 0; i < n_parallel; i++) {
    e->slots[i].id = i;
    e->slots[i].cap = 256;
    if (!(e->slots[i].text = malloc(256))) {
      srv_engine_free(e);
      return TL_ERR_NOMEM;
    }
  }
  atomic_init(&e->abort_now, false);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->work, NULL);
  pthread_cond_init(&e->out, NULL);
  if (pthread_create(&e->thread, NULL, engine_main, e)) {
    srv_engine_free(e);
    return TL_ERR_NOMEM;
  }
  e->started = true;
  *out = e;
  return TL_OK;
}

bool srv_abort_cb(void *user) {
  srv_engine *const *pe = user;
  return *pe ? abort_cb(*pe) : false;
}

void srv_engine_shutdown(srv_engine *e) {
  if (!e || !e->started) return;
  srv_lock(e);
  e->stopping = true;
  atomic_store(&e->abort_now, true);
  pthread_cond_signal(&e->work);
  srv_unlock(e);
  pthread_join(e->thread, NULL);
  e->started = false;
  e->joined = true;
}

void srv_engine_free(srv_engine *e) {
  if (!e) return;
  srv_engine_shutdown(e);
  if (e->joined) {
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->out);
  }
  for (int i = 0; e->slots && i < e->n_slots; i++) {
    slot *s = &e->slots[i];
    tl_sampler_free(s->smp);
    tl_detok_free(s->dt);
    free(s->cache);
    free(s->counts);
    free(s->scratch);
    free(s->text);
  }
  free(e->slots);
  free(e->b_tok);
  free(e->b_pos);
  free(e->b_seq);
  free(e->b_want);
  free(e->row_slot);
  free(e);
}
