/* Byte-level BPE tokenization (GGUF tokenizer.ggml.model = "gpt2"), as
 * Hugging Face tokenizers and llama.cpp do it:
 *  1. special tokens split the text into fragments, longest first
 *     (user-defined ones always, control and unknown ones with
 *     parse_special; front.c);
 *  2. each text fragment is NFC-normalized when the vocabulary asks for it,
 *     then cut into pieces by the pre-tokenizer regex;
 *  3. inside a piece every byte starts as the token of its GPT-2
 *     bytes_to_unicode character; the adjacent pair with the lowest merge
 *     rank (ties: leftmost) merges until no merge rule applies;
 *  4. with ignore_merges, a piece that is a whole token is that token. */
#include <stdlib.h>

#include "core/heap.h"
#include "tokenizer/tokenizer.h"

const tl_bpe_merge *tl_bpe_find_merge(const tl_vocab *v, tl_token left, tl_token right) {
  if (!v || !v->merges) return NULL;
  uint32_t i = tl_bpe_pair_hash(left, right) & v->merge_mask;
  for (;;) {
    const tl_bpe_merge *m = &v->merges[i];
    if (m->left < 0) return NULL;
    if (m->left == left && m->right == right) return m;
    i = (i + 1) & v->merge_mask;
  }
}

/* ---- the merges ------------------------------------------------------------ */

typedef struct {
  int32_t prev, next;
  tl_token id; /* -1: dead (merged into its left neighbour) */
  uint32_t off, n;
} sym;

typedef struct {
  int32_t left, right;
  int32_t rank;
  tl_token lid, rid;
} cand;

static bool cand_before(const void *pa, const void *pb) {
  const cand *a = pa, *b = pb;
  return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct {
  const tl_vocab *v;
  const char *text; /* the (normalized) fragment */
  tl_tok_out *e;
  sym *syms;
  size_t syms_cap;
  char *word; /* a piece as bytes_to_unicode characters */
  size_t word_cap;
  tl_heap q;
} session;

static bool add_cand(session *s, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return true;
  tl_token l = s->syms[left].id, r = s->syms[right].id;
  if (l < 0 || r < 0) return true;
  const tl_bpe_merge *m = tl_bpe_find_merge(s->v, l, r);
  if (!m) return true;
  cand c = {left, right, m->rank, l, r};
  return tl_heap_push(&s->q, &c);
}

static tl_status nomem(void) {
  return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
}

/* Appends the UTF-8 form of code point cp (< 0x800 here) to buf. */
static size_t put_cp(char *buf, uint32_t cp) {
  if (cp < 0x80) {
    buf[0] = (char)cp;
    return 1;
  }
  buf[0] = (char)(0xC0 | (cp >> 6));
  buf[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

/* One pre-tokenizer piece text[off, off+len). */
static tl_status bpe_piece(void *user, size_t off, size_t len) {
  session *s = user;
  const tl_vocab *v = s->v;
  const unsigned char *p = (const unsigned char *)s->text + off;
  if (len == 0) return TL_OK;

  if (v->ignore_merges) {
    size_t m = 0;
    for (size_t i = 0; i < len; i++) m += put_cp(s->word + m, tl_byte_to_cp(p[i]));
    tl_token t = tl_vocab_find(v, s->word, m);
    if (t >= 0) {
      tl_tok_emit(s->e, t);
      return TL_OK;
    }
  }

  /* one symbol per byte */
  s->q.n = 0;
  int32_t n = (int32_t)len;
  for (int32_t i = 0; i < n; i++) {
    sym *y = &s->syms[i];
    y->prev = i - 1;
    y->next = i + 1 < n ? i + 1 : -1;
    y->id = v->byte_tok[p[i]];
    y->off = (uint32_t)i;
    y->n = 1;
  }
  for (int32_t i = 1; i < n; i++) {
    if (!add_cand(s, i - 1, i)) return nomem();
  }
  while (s->q.n > 0) {
    cand c;
    tl_heap_pop(&s->q, &c);
    sym *l = &s->syms[c.left], *r = &s->syms[c.right];
    /* stale: a side has merged since the pair was queued */
    if (l->id != c.lid || r->id != c.rid || l->next != c.right || l->n == 0 || r->n == 0) {
      continue;
    }
    const tl_bpe_merge *m = tl_bpe_find_merge(v, c.lid, c.rid);
    l->id = m->result;
    l->n += r->n;
    r->n = 0;
    r->id = -1;
    l->next = r->next;
    if (r->next >= 0) s->syms[r->next].prev = c.left;
    if (!add_cand(s, l->prev, c.left) || !add_cand(s, c.left, l->next)) return nomem();
  }
  for (int32_t i = 0; i >= 0; i = s->syms[i].next) {
    const sym *y = &s->syms[i];
    if (y->id >= 0) {
      tl_tok_emit(s->e, y->id);
      continue;
    }
    /* a byte with no token: the unknown token, if any */
    if (v->unk < 0) {
      return tl_fail(TL_ERR_TOKENIZER,
                     "byte 0x%02x has no token in this vocabulary (and there is no unknown token)",
                     (unsigned)p[y->off]);
    }
    tl_tok_emit(s->e, v->unk);
  }
  return TL_OK;
}

tl_status tl_bpe_encode(const tl_vocab *v, const char *text, size_t len, const tl_tok_frag *frags,
                        size_t n_frags, tl_tok_out *o) {
  session s = {.v = v, .e = o};
  tl_heap_init(&s.q, sizeof(cand), cand_before);
  char *norm = NULL;
  tl_status st = TL_OK;

  for (size_t i = 0; i < n_frags; i++) {
    const tl_tok_frag *f = &frags[i];
    if (f->token >= 0) {
      tl_tok_emit(o, f->token);
      continue;
    }
    const char *ftext = text + f->off;
    size_t flen = f->len;
    if (v->nfc) {
      free(norm);
      norm = NULL;
      st = tl_utf8_nfc(ftext, flen, &norm, &flen);
      if (st != TL_OK) goto done;
      ftext = norm;
    }
    /* the longest piece is at most the fragment */
    if (flen + 1 > s.syms_cap) {
      if (flen >= INT32_MAX / 2) {
        st = tl_fail(TL_ERR_INVALID_ARG, "tokenize: the text is too long (%zu bytes)", len);
        goto done;
      }
      free(s.syms);
      free(s.word);
      s.syms_cap = flen + 1;
      s.syms = tl_malloc_array(s.syms_cap, sizeof(sym));
      s.word = malloc(s.syms_cap * 2);
      if (!s.syms || !s.word) {
        s.syms_cap = 0;
        st = nomem();
        goto done;
      }
    }
    s.text = ftext;
    st = tl_pretok_split(v->pretok, ftext, flen, bpe_piece, &s);
    if (st != TL_OK) goto done;
  }

done:
  free(s.syms);
  free(s.word);
  tl_heap_free(&s.q);
  free(norm);
  return st;
}
