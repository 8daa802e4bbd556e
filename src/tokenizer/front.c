/* The front end of tokenization, the same for every vocabulary kind: the
 * argument and UTF-8 checks, BOS, and the partition of the text by special
 * tokens (llama.cpp's tokenizer_st_partition): the special tokens, longest
 * first, cut the text fragments at each of their occurrences; user-defined
 * ones always, control and unknown ones only with parse_special; a token
 * with lstrip / rstrip takes the white space before / after it. The text
 * fragments then go to the encoder of the vocabulary's kind (spm.c, bpe.c). */
#include <ctype.h>
#include <stdlib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

typedef struct {
  tl_tok_frag *v;
  size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, tl_token token, size_t off, size_t len) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 16;
    tl_tok_frag *p = realloc(l->v, nc * sizeof *p);
    if (!p) return false;
    l->v = p;
    l->cap = nc;
  }
  l->v[l->n++] = (tl_tok_frag){token, off, len};
  return true;
}

static tl_status nomem(void) {
  return tl_fail(TL_ERR_NOMEM, "out of memory tokenizing");
}

/* Whether the character that ends at text[at] (before) or starts there
 * (!before) is a word character (vocab's word_re); false at either end of
 * the text. */
static bool word_char(const tl_vocab *v, const char *text, size_t len, size_t at, bool before) {
  size_t a, b;
  if (before) {
    if (at == 0) return false;
    a = at - 1;
    while (a > 0 && ((unsigned char)text[a] & 0xC0) == 0x80) a--;
    b = at;
  } else {
    if (at >= len) return false;
    a = at;
    b = at + 1;
    while (b < len && ((unsigned char)text[b] & 0xC0) == 0x80) b++;
  }
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md) return false;
  int rc = pcre2_match(v->word_re, (PCRE2_SPTR)(text + a), b - a, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  return rc > 0;
}

/* Cut the text fragments of *in at every occurrence of special token id
 * (len: the whole text's, for single_word tokens' neighbours). */
static tl_status split_special(const tl_vocab *v, tl_token id, const char *text, size_t len,
                               frag_list *in, frag_list *tmp) {
  const char *tok = v->text + v->text_off[id];
  size_t tl = v->text_len[id];
  bool any = false;
  for (size_t i = 0; i < in->n && !any; i++) {
    const tl_tok_frag *f = &in->v[i];
    any = f->token < 0 && f->len >= tl && memmem(text + f->off, f->len, tok, tl) != NULL;
  }
  if (!any) return TL_OK;
  tmp->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    tl_tok_frag f = in->v[i];
    if (f.token >= 0) {
      if (!frag_push(tmp, f.token, 0, 0)) return nomem();
      continue;
    }
    size_t off = f.off, end = f.off + f.len, from = off;
    while (off < end) {
      const char *m = end - from >= tl ? memmem(text + from, end - from, tok, tl) : NULL;
      if (!m) {
        if (!frag_push(tmp, -1, off, end - off)) return nomem();
        break;
      }
      size_t mo = (size_t)(m - text), left = mo - off;
      /* single_word: an occurrence touching a word character is not one
       * (the search goes on after it, as a non-overlapping scan does) */
      if ((v->flags[id] & TL_TOKFLAG_SINGLE_WORD) && v->word_re &&
          (word_char(v, text, len, mo, true) || word_char(v, text, len, mo + tl, false))) {
        from = mo + tl;
        continue;
      }
      if (v->flags[id] & TL_TOKFLAG_LSTRIP) {
        while (left > 0 && isspace((unsigned char)text[off + left - 1])) left--;
      }
      if (left > 0 && !frag_push(tmp, -1, off, left)) return nomem();
      if (!frag_push(tmp, id, 0, 0)) return nomem();
      off = mo + tl;
      if (v->flags[id] & TL_TOKFLAG_RSTRIP) {
        while (off < end && isspace((unsigned char)text[off])) off++;
      }
      from = off;
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
  if (v->kind == TL_VOCAB_BPE && !v->pretok) {
    return tl_fail(TL_ERR_UNSUPPORTED, "tokenize: not a byte-level BPE vocabulary");
  }
  if (v->kind != TL_VOCAB_SPM && v->kind != TL_VOCAB_BPE) {
    return tl_fail(TL_ERR_UNSUPPORTED, "tokenize: no tokenizer");
  }
  if (!tl_utf8_valid(text, len)) {
    size_t at = invalid_utf8_at(text, len);
    return tl_fail(TL_ERR_TOKENIZER, "the text is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                   (unsigned)(unsigned char)text[at], at);
  }

  tl_tok_out o = {out, cap, 0};
  frag_list frags = {0}, tmp = {0};
  tl_status st = TL_OK;

  if (add_bos && v->bos >= 0) tl_tok_emit(&o, v->bos);

  if (len > 0) {
    if (!frag_push(&frags, -1, 0, len)) {
      st = nomem();
      goto done;
    }
    for (int32_t k = 0; k < v->n_special; k++) {
      tl_token id = v->special[k];
      uint8_t ty = v->type[id];
      if (!parse_special && (ty == TL_TOKTYPE_CONTROL || ty == TL_TOKTYPE_UNKNOWN)) continue;
      st = split_special(v, id, text, len, &frags, &tmp);
      if (st != TL_OK) goto done;
    }
  }

  st = v->kind == TL_VOCAB_BPE ? tl_bpe_encode(v, text, len, frags.v, frags.n, &o)
                               : tl_spm_encode(v, text, len, frags.v, frags.n, &o);
  if (st != TL_OK) goto done;

  *n_out = o.n;
  if (o.n > cap) {
    st =
        tl_fail(TL_ERR_INVALID_ARG, "tokenize: %zu tokens do not fit in a buffer of %zu", o.n, cap);
  }

done:
  free(frags.v);
  free(tmp.v);
  return st;
}
