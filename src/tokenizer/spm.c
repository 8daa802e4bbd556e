/* SentencePiece BPE tokenization, as llama.cpp's SPM tokenizer does it:
 *  1. special tokens (control and unknown ones only with parse_special,
 *     user-defined ones always) split the text into fragments, longest
 *     token first;
 *  2. each text fragment gets a leading space when it opens the text or
 *     follows a special token (add_space_prefix), spaces become U+2581;
 *  3. BPE from UTF-8 characters: repeatedly merge the adjacent pair whose
 *     concatenation is the vocabulary token with the highest score (ties:
 *     leftmost), using a priority queue;
 *  4. symbols that are not tokens become byte tokens <0xXX> (or UNK). */
#include <ctype.h>
#include <stdlib.h>

#include "core/heap.h"
#include "tokenizer/tokenizer.h"

typedef struct {
  tl_token *out;
  size_t cap;
  size_t n;
} emitter;

static void emit(emitter *e, tl_token t) {
  if (e->n < e->cap) e->out[e->n] = t;
  e->n++;
}

typedef struct {
  bool is_token;
  tl_token token;
  size_t off, len; /* raw text fragments */
} frag;

typedef struct {
  frag *v;
  size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, frag f) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    frag *p = realloc(l->v, nc * sizeof *p);
    if (!p) return false;
    l->v = p;
    l->cap = nc;
  }
  l->v[l->n++] = f;
  return true;
}

typedef struct {
  int32_t prev, next;
  uint32_t off, n; /* bytes text[off, off+n) */
} sym;

typedef struct {
  int32_t left, right;
  float score;
  uint32_t size;
} bigram;

/* a comes out of the queue before b */
static bool bg_before(const void *pa, const void *pb) {
  const bigram *a = pa, *b = pb;
  return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
  const tl_vocab *v;
  const char *text;
  sym *syms;
  tl_heap q;
} session;

static bool try_add_bigram(session *s, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return true;
  uint32_t size = s->syms[left].n + s->syms[right].n;
  tl_token t = tl_vocab_find(s->v, s->text + s->syms[left].off, size);
  if (t < 0) return true;
  bigram b = {left, right, s->v->score[t], size};
  return tl_heap_push(&s->q, &b);
}

/* Tokenize one escaped fragment text[0, n) (valid UTF-8). */
static tl_status spm_fragment(session *s, const char *text, size_t n, emitter *e) {
  s->text = text;
  s->q.n = 0;
  int32_t nsym = 0;
  for (size_t off = 0; off < n;) {
    size_t l = tl_utf8_len((const unsigned char *)text + off, n - off);
    if (l == 0) l = 1; /* cannot happen: the input was validated */
    sym *y = &s->syms[nsym];
    y->off = (uint32_t)off;
    y->n = (uint32_t)l;
    y->prev = nsym - 1;
    off += l;
    y->next = off == n ? -1 : nsym + 1;
    nsym++;
  }
  for (int32_t i = 1; i < nsym; i++) {
    if (!try_add_bigram(s, i - 1, i)) return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
  }
  while (s->q.n > 0) {
    bigram b;
    tl_heap_pop(&s->q, &b);
    sym *l = &s->syms[b.left], *r = &s->syms[b.right];
    /* skip pairs whose symbols have changed since they were queued */
    if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) s->syms[r->next].prev = b.left;
    if (!try_add_bigram(s, l->prev, b.left) || !try_add_bigram(s, b.left, l->next)) {
      return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
    }
  }
  for (int32_t i = nsym > 0 ? 0 : -1; i >= 0; i = s->syms[i].next) {
    const sym *y = &s->syms[i];
    tl_token t = tl_vocab_find(s->v, text + y->off, y->n);
    if (t >= 0) {
      emit(e, t);
      continue;
    }
    for (uint32_t j = 0; j < y->n; j++) {
      tl_token bt = s->v->byte_tok[(unsigned char)text[y->off + j]];
      if (bt < 0) bt = s->v->unk;
      if (bt < 0) {
        return tl_fail(TL_ERR_TOKENIZER,
                       "the text has a character the vocabulary cannot represent "
                       "(no byte tokens and no unknown token)");
      }
      emit(e, bt);
    }
  }
  return TL_OK;
}

/* Split every raw fragment of *in on occurrences of special token id. */
static tl_status split_on(const tl_vocab *v, tl_token id, const char *text, frag_list *in,
                          frag_list *tmp) {
  const char *tok = v->text + v->text_off[id];
  size_t tl = v->text_len[id];
  uint8_t flags = v->flags[id];
  bool any = false;
  for (size_t i = 0; i < in->n && !any; i++) {
    const frag *f = &in->v[i];
    if (!f->is_token && f->len >= tl && memmem(text + f->off, f->len, tok, tl)) any = true;
  }
  if (!any) return TL_OK;
  tmp->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    frag f = in->v[i];
    if (f.is_token) {
      if (!frag_push(tmp, f)) return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
      continue;
    }
    size_t off = f.off, len = f.len;
    while (len > 0) {
      const char *m = len >= tl ? memmem(text + off, len, tok, tl) : NULL;
      if (!m) {
        frag r = {false, -1, off, len};
        if (!frag_push(tmp, r)) return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
        break;
      }
      size_t mo = (size_t)(m - text);
      size_t left_len = mo - off;
      if (flags & TL_TOKFLAG_LSTRIP) {
        while (left_len > 0 && isspace((unsigned char)text[off + left_len - 1])) left_len--;
      }
      if (left_len > 0) {
        frag l = {false, -1, off, left_len};
        if (!frag_push(tmp, l)) return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
      }
      frag t = {true, id, 0, 0};
      if (!frag_push(tmp, t)) return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
      size_t end = off + len;
      off = mo + tl;
      len = end - off;
      if (flags & TL_TOKFLAG_RSTRIP) {
        while (len > 0 && isspace((unsigned char)text[off])) {
          off++;
          len--;
        }
      }
    }
  }
  frag_list swap = *in;
  *in = *tmp;
  *tmp = swap;
  return TL_OK;
}

static size_t invalid_utf8_at(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t l = tl_utf8_len(p + i, n - i);
    if (l == 0) return i;
    i += l;
  }
  return n;
}

tl_status tl_vocab_tokenize(const tl_vocab *v, const char *text, size_t len, bool add_bos,
                            bool parse_special, tl_token *out, size_t cap, size_t *n_out) {
  if (n_out) *n_out = 0;
  if (!v || !n_out || (!text && len > 0) || (!out && cap > 0)) {
    return tl_fail(TL_ERR_INVALID_ARG, "tokenize: NULL argument");
  }
  if (v->kind == TL_VOCAB_BPE) {
    return tl_bpe_tokenize(v, text, len, add_bos, parse_special, out, cap, n_out);
  }
  if (v->kind != TL_VOCAB_SPM) return tl_fail(TL_ERR_UNSUPPORTED, "tokenize: no tokenizer");
  if (!tl_utf8_valid(text, len)) {
    size_t at = invalid_utf8_at(text, len);
    return tl_fail(TL_ERR_TOKENIZER, "the text is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                   (unsigned)(unsigned char)text[at], at);
  }

  emitter e = {out, cap, 0};
  frag_list frags = {0}, tmp = {0};
  session s = {v, NULL, NULL, {0}};
  tl_heap_init(&s.q, sizeof(bigram), bg_before);
  char *buf = NULL;
  tl_status st = TL_OK;

  if (add_bos && v->bos >= 0) emit(&e, v->bos);

  if (len > 0) {
    frag whole = {false, -1, 0, len};
    if (!frag_push(&frags, whole)) {
      st = tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
      goto done;
    }
    for (int32_t k = 0; k < v->n_special; k++) {
      tl_token id = v->special[k];
      uint8_t ty = v->type[id];
      if (!parse_special && (ty == TL_TOKTYPE_CONTROL || ty == TL_TOKTYPE_UNKNOWN)) continue;
      st = split_on(v, id, text, &frags, &tmp);
      if (st != TL_OK) goto done;
    }
  }

  size_t maxlen = 0;
  for (size_t i = 0; i < frags.n; i++) {
    if (!frags.v[i].is_token && frags.v[i].len > maxlen) maxlen = frags.v[i].len;
  }
  if (maxlen > 0) {
    if (maxlen > (SIZE_MAX - 3) / 3 || maxlen + 1 > UINT32_MAX / 4) {
      st = tl_fail(TL_ERR_INVALID_ARG, "tokenize: the text is too long (%zu bytes)", len);
      goto done;
    }
    buf = malloc(maxlen * 3 + 3);
    s.syms = tl_malloc_array(maxlen + 1, sizeof(sym));
    if (!buf || !s.syms) {
      st = tl_fail(TL_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
      goto done;
    }
  }

  bool prev_special = true; /* a space prefix for the first fragment */
  for (size_t i = 0; i < frags.n; i++) {
    const frag *f = &frags.v[i];
    if (f->is_token) {
      emit(&e, f->token);
      prev_special = true;
      continue;
    }
    size_t m = 0;
    if (v->add_space_prefix && prev_special) {
      memcpy(buf, "\xe2\x96\x81", 3);
      m = 3;
    }
    for (size_t j = 0; j < f->len; j++) {
      char c = text[f->off + j];
      if (c == ' ') {
        memcpy(buf + m, "\xe2\x96\x81", 3);
        m += 3;
      } else {
        buf[m++] = c;
      }
    }
    st = spm_fragment(&s, buf, m, &e);
    if (st != TL_OK) goto done;
    prev_special = false;
  }

  *n_out = e.n;
  if (e.n > cap) {
    st =
        tl_fail(TL_ERR_INVALID_ARG, "tokenize: %zu tokens do not fit in a buffer of %zu", e.n, cap);
  }

done:
  free(frags.v);
  free(tmp.v);
  free(s.syms);
  tl_heap_free(&s.q);
  free(buf);
  return st;
}
