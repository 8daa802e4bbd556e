/* SentencePiece BPE tokenization, as llama.cpp's SPM tokenizer does it:
 *  1. special tokens (control and unknown ones only with parse_special,
 *     user-defined ones always) split the text into fragments, longest
 *     token first (front.c);
 *  2. each text fragment gets a leading space when it opens the text or
 *     follows a special token (add_space_prefix), spaces become U+2581;
 *  3. BPE from UTF-8 characters: repeatedly merge the adjacent pair whose
 *     concatenation is the vocabulary token with the highest score (ties:
 *     leftmost), using a priority queue;
 *  4. symbols that are not tokens become byte tokens <0xXX> (or UNK). */
#include <stdlib.h>

#include "core/heap.h"
#include "tokenizer/tokenizer.h"

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
static tl_status spm_fragment(session *s, const char *text, size_t n, tl_tok_out *e) {
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
      tl_tok_emit(e, t);
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
      tl_tok_emit(e, bt);
    }
  }
  return TL_OK;
}

tl_status tl_spm_encode(const tl_vocab *v, const char *text, size_t len, const tl_tok_frag *frags,
                        size_t n_frags, tl_tok_out *o) {
  session s = {v, NULL, NULL, {0}};
  tl_heap_init(&s.q, sizeof(bigram), bg_before);
  char *buf = NULL;
  tl_status st = TL_OK;

  size_t maxlen = 0;
  for (size_t i = 0; i < n_frags; i++) {
    if (frags[i].token < 0 && frags[i].len > maxlen) maxlen = frags[i].len;
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
  for (size_t i = 0; i < n_frags; i++) {
    const tl_tok_frag *f = &frags[i];
    if (f->token >= 0) {
      tl_tok_emit(o, f->token);
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
    st = spm_fragment(&s, buf, m, o);
    if (st != TL_OK) goto done;
    prev_special = false;
  }

done:
  free(s.syms);
  tl_heap_free(&s.q);
  free(buf);
  return st;
}
