/* A sequence's state to and from a file (tl_state_seq_save_file /
 * tl_state_seq_load_file): the tokens and their cached keys and values, so
 * that a prompt's cache survives a restart.
 *
 * Format (little-endian), version 1:
 *   "TLSQ", u32 version,
 *   u32 n_layer, n_head_kv, head_dim, n_embd, n_vocab, kv_type,
 *   u64 n_params, u64 weight_bytes, char arch[32]   (the model it belongs to),
 *   u32 n_tokens, i32 tokens[n_tokens],
 *   u64 kv_bytes, the cache rows in kv_io's layout (backend.h) for every layer,
 *   u64 FNV-1a of every byte before it.
 * The rows are in the cache's own type, so a file restores into a context
 * with the same KV type, on any backend. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/core.h"
#include "model/model.h"

#define STATE_MAGIC "TLSQ"
#define STATE_VERSION 1u

typedef struct state_head {
  uint32_t n_layer, n_head_kv, head_dim, n_embd, n_vocab, kv_type;
  uint64_t n_params, weight_bytes;
  char arch[32];
} state_head;

static state_head head_of(const tl_context *c) {
  const tl_model *m = c->model;
  state_head h;
  memset(&h, 0, sizeof h);
  h.n_layer = (uint32_t)m->hp.n_layer;
  h.n_head_kv = (uint32_t)m->hp.n_head_kv;
  h.head_dim = (uint32_t)m->hp.head_dim;
  h.n_embd = (uint32_t)m->hp.n_embd;
  h.n_vocab = (uint32_t)m->hp.n_vocab;
  h.kv_type = (uint32_t)c->kv_type;
  h.n_params = m->n_params;
  h.weight_bytes = m->weight_bytes;
  const size_t al = strnlen(m->arch_name, sizeof h.arch - 1);
  memcpy(h.arch, m->arch_name, al); /* the rest stays zero */
  return h;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}
#define FNV0 0xcbf29ce484222325ull

/* the bytes of n cached positions of every layer */
static bool kv_bytes(const tl_context *c, int32_t n, uint64_t *out) {
  const tl_hparams *hp = &c->model->hp;
  const uint64_t row = tl_kv_row_bytes(c->kv_type, hp->head_dim);
  *out = (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv * 2u * (uint64_t)n * row;
  return *out / row == (uint64_t)hp->n_layer * (uint64_t)hp->n_head_kv * 2u * (uint64_t)n;
}

/* a buffer writer that checksums what it writes */
typedef struct wr {
  FILE *f;
  uint64_t h;
  bool ok;
} wr;
static void put(wr *w, const void *p, size_t n) {
  if (!w->ok) return;
  w->h = fnv(w->h, p, n);
  w->ok = fwrite(p, 1, n, w->f) == n;
}
static void put32(wr *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(w, b, 4);
}
static void put64(wr *w, uint64_t v) {
  put32(w, (uint32_t)v);
  put32(w, (uint32_t)(v >> 32));
}

tl_status tl_state_seq_save_file(tl_context *c, const char *path, int32_t seq,
                                 const tl_token *tokens, size_t n_tokens) {
  if (!c || !path || (!tokens && n_tokens))
    return tl_fail(TL_ERR_INVALID_ARG, "tl_state_seq_save_file: invalid arguments");
  if (seq < 0 || seq >= c->n_seq)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "tl_state_seq_save_file: sequence %d is out of range (0..%d)", seq,
                   c->n_seq - 1);
  const int32_t n = c->seq_len[seq];
  if ((size_t)n != n_tokens)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "tl_state_seq_save_file: %zu tokens given, but sequence %d holds %d cached "
                   "positions",
                   n_tokens, seq, n);
  uint64_t kvb;
  if (!kv_bytes(c, n, &kvb) || kvb > SIZE_MAX)
    return tl_fail(TL_ERR_NOMEM, "tl_state_seq_save_file: state too large");
  uint8_t *buf = kvb ? malloc((size_t)kvb) : NULL;
  if (kvb && !buf)
    return tl_fail(TL_ERR_NOMEM, "out of memory for a state of %.1f MiB", (double)kvb / 1048576.0);
  /* the parts' layers in order make the model's */
  size_t off = 0;
  for (int i = 0; i < c->n_part && n > 0; i++) {
    const tl_part *P = &c->part[i];
    tl_status s = P->be->kv_io(P->be, seq, 0, n, buf + off, false);
    if (s) {
      free(buf);
      return s;
    }
    off += (size_t)(kvb / (uint64_t)c->model->hp.n_layer * (uint64_t)(P->l1 - P->l0));
  }
  /* written to PATH.tmp, then renamed: a failed save leaves no half file */
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 5);
  if (!tmp) {
    free(buf);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  memcpy(tmp, path, pl);
  memcpy(tmp + pl, ".tmp", 5);
  wr w = {fopen(tmp, "wb"), FNV0, true};
  if (!w.f) {
    tl_status s = tl_fail(TL_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    free(tmp);
    free(buf);
    return s;
  }
  const state_head h = head_of(c);
  put(&w, STATE_MAGIC, 4);
  put32(&w, STATE_VERSION);
  put32(&w, h.n_layer);
  put32(&w, h.n_head_kv);
  put32(&w, h.head_dim);
  put32(&w, h.n_embd);
  put32(&w, h.n_vocab);
  put32(&w, h.kv_type);
  put64(&w, h.n_params);
  put64(&w, h.weight_bytes);
  put(&w, h.arch, sizeof h.arch);
  put32(&w, (uint32_t)n);
  for (int32_t i = 0; i < n; i++) put32(&w, (uint32_t)tokens[i]);
  put64(&w, kvb);
  put(&w, buf, (size_t)kvb);
  const uint64_t sum = w.h;
  put64(&w, sum);
  free(buf);
  const bool closed = fclose(w.f) == 0;
  if (!w.ok || !closed || rename(tmp, path) != 0) {
    tl_status s = tl_fail(TL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return s;
  }
  free(tmp);
  return TL_OK;
}

/* a reader over the file's bytes, every read checked against its length */
typedef struct rd {
  const uint8_t *p;
  size_t n, at;
} rd;
static bool get(rd *r, void *out, size_t n) {
  if (n > r->n - r->at) return false;
  memcpy(out, r->p + r->at, n);
  r->at += n;
  return true;
}
static bool get32(rd *r, uint32_t *v) {
  uint8_t b[4];
  if (!get(r, b, 4)) return false;
  *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  return true;
}
static bool get64(rd *r, uint64_t *v) {
  uint32_t lo, hi;
  if (!get32(r, &lo) || !get32(r, &hi)) return false;
  *v = (uint64_t)hi << 32 | lo;
  return true;
}

/* the whole file in memory (NULL, errno set, on failure) */
static uint8_t *read_all(const char *path, size_t *size) {
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  struct stat st;
  uint8_t *data = NULL;
  if (fstat(fileno(f), &st) != 0) {
    fclose(f);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    fclose(f);
    errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    return NULL;
  }
  const size_t len = (size_t)st.st_size;
  if ((data = malloc(len ? len : 1)) != NULL && fread(data, 1, len, f) != len) {
    free(data);
    data = NULL;
    errno = EIO;
  }
  fclose(f);
  if (data) *size = len;
  return data;
}

static const char *kv_name(uint32_t t) {
  return t == TL_KV_F32 ? "f32" : t == TL_KV_F16 ? "f16" : t == TL_KV_Q8_0 ? "q8_0" : "unknown";
}

tl_status tl_state_seq_load_file(tl_context *c, const char *path, int32_t seq, tl_token *tokens,
                                 size_t cap, size_t *n_tokens) {
  if (!c || !path || (!tokens && cap) || !n_tokens)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_state_seq_load_file: invalid arguments");
  *n_tokens = 0;
  if (seq < 0 || seq >= c->n_seq)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "tl_state_seq_load_file: sequence %d is out of range (0..%d)", seq,
                   c->n_seq - 1);
  size_t size = 0;
  uint8_t *data = read_all(path, &size);
  if (!data) return tl_fail(TL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  tl_status s = TL_OK;
  rd r = {data, size, 0};
  char magic[4];
  uint32_t ver = 0, n = 0;
  state_head h, want = head_of(c);
  memset(&h, 0, sizeof h);
  uint64_t kvb = 0, sum = 0, need = 0;
  if (!get(&r, magic, 4) || memcmp(magic, STATE_MAGIC, 4) != 0) {
    s = tl_fail(TL_ERR_FORMAT, "'%s' is not a torchless state file", path);
  } else if (!get32(&r, &ver)) {
    s = tl_fail(TL_ERR_FORMAT, "'%s': truncated", path);
  } else if (ver != STATE_VERSION) {
    s = tl_fail(TL_ERR_UNSUPPORTED,
                "'%s' is a state file of version %u; this build reads version %u", path, ver,
                STATE_VERSION);
  } else if (!get32(&r, &h.n_layer) || !get32(&r, &h.n_head_kv) || !get32(&r, &h.head_dim) ||
             !get32(&r, &h.n_embd) || !get32(&r, &h.n_vocab) || !get32(&r, &h.kv_type) ||
             !get64(&r, &h.n_params) || !get64(&r, &h.weight_bytes) ||
             !get(&r, h.arch, sizeof h.arch) || !get32(&r, &n)) {
    s = tl_fail(TL_ERR_FORMAT, "'%s': truncated header", path);
  } else if (memcmp(h.arch, want.arch, sizeof h.arch) != 0 || h.n_layer != want.n_layer ||
             h.n_head_kv != want.n_head_kv || h.head_dim != want.head_dim ||
             h.n_embd != want.n_embd || h.n_vocab != want.n_vocab || h.n_params != want.n_params ||
             h.weight_bytes != want.weight_bytes) {
    h.arch[sizeof h.arch - 1] = 0;
    s = tl_fail(TL_ERR_INVALID_ARG,
                "'%s' holds the state of another model (%s, %u layers, %llu parameters, %llu "
                "bytes of weights), not of this one (%s, %u layers, %llu parameters, %llu bytes)",
                path, h.arch, h.n_layer, (unsigned long long)h.n_params,
                (unsigned long long)h.weight_bytes, want.arch, want.n_layer,
                (unsigned long long)want.n_params, (unsigned long long)want.weight_bytes);
  } else if (h.kv_type != want.kv_type) {
    s = tl_fail(TL_ERR_INVALID_ARG,
                "'%s' was saved from a %s KV cache; this context's is %s (use --kv %s)", path,
                kv_name(h.kv_type), kv_name(want.kv_type), kv_name(h.kv_type));
  } else if (n > (uint32_t)c->n_ctx) {
    s = tl_fail(TL_ERR_INVALID_ARG, "'%s' holds %u positions, more than this context's %d", path, n,
                c->n_ctx);
  } else if (n > cap) {
    s = tl_fail(TL_ERR_INVALID_ARG, "'%s' holds %u tokens; room was given for %zu", path, n, cap);
  } else {
    for (uint32_t i = 0; i < n && !s; i++) {
      uint32_t t;
      if (!get32(&r, &t))
        s = tl_fail(TL_ERR_FORMAT, "'%s': truncated tokens", path);
      else if ((int32_t)t < 0 || (int32_t)t >= (int32_t)want.n_vocab)
        s = tl_fail(TL_ERR_FORMAT, "'%s': token %d is outside the vocabulary", path, (int32_t)t);
      else
        tokens[i] = (tl_token)t;
    }
    if (!s &&
        (!get64(&r, &kvb) || !kv_bytes(c, (int32_t)n, &need) || kvb != need || kvb > r.n - r.at))
      s = tl_fail(TL_ERR_FORMAT,
                  "'%s' is truncated or damaged: its cache should be %llu bytes (file of %zu "
                  "bytes)",
                  path, (unsigned long long)need, size);
    if (!s) {
      const uint64_t h2 = fnv(FNV0, data, r.at + (size_t)kvb);
      const uint8_t *kv = data + r.at;
      r.at += (size_t)kvb;
      if (!get64(&r, &sum) || r.at != size)
        s = tl_fail(TL_ERR_FORMAT, "'%s': truncated or with bytes after its end", path);
      else if (sum != h2)
        s = tl_fail(TL_ERR_FORMAT, "'%s': checksum mismatch (the file is damaged)", path);
      /* the sequence is replaced: cleared first, so a failure leaves it empty */
      if (!s) c->seq_len[seq] = 0;
      size_t off = 0;
      for (int i = 0; i < c->n_part && !s && n > 0; i++) {
        const tl_part *P = &c->part[i];
        s = P->be->kv_io(P->be, seq, 0, (int32_t)n, (void *)(kv + off), true);
        off += (size_t)(need / want.n_layer * (uint64_t)(P->l1 - P->l0));
      }
      if (!s) {
        c->seq_len[seq] = (int32_t)n;
        *n_tokens = n;
      }
    }
  }
  free(data);
  return s;
}
