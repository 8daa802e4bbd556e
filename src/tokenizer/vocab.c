/* Vocabulary loading (tokenizer.ggml.* metadata), lookups and pieces. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

tl_token tl_vocab_find(const tl_vocab *v, const char *s, size_t n) {
  uint32_t i = (uint32_t)hash_bytes(s, n) & v->hash_mask;
  for (;;) {
    int32_t id = v->hash[i];
    if (id < 0) return -1;
    if (v->text_len[id] == n && memcmp(v->text + v->text_off[id], s, n) == 0) return id;
    i = (i + 1) & v->hash_mask;
  }
}

/* Insert token id; a later duplicate text replaces the earlier one (as
 * llama.cpp's token_to_id map does). */
static void hash_insert(tl_vocab *v, tl_token id) {
  const char *s = v->text + v->text_off[id];
  size_t n = v->text_len[id];
  uint32_t i = (uint32_t)hash_bytes(s, n) & v->hash_mask;
  for (;;) {
    int32_t cur = v->hash[i];
    if (cur < 0) {
      v->hash[i] = id;
      return;
    }
    if (v->text_len[cur] == n && memcmp(v->text + v->text_off[cur], s, n) == 0) {
      v->hash[i] = id;
      return;
    }
    i = (i + 1) & v->hash_mask;
  }
}

void tl_vocab_free(tl_vocab *v) {
  if (!v) return;
  free(v->text);
  free(v->text_off);
  free(v->text_len);
  free(v->piece);
  free(v->piece_off);
  free(v->piece_len);
  free(v->score);
  free(v->type);
  free(v->flags);
  if (v->word_re) pcre2_code_free(v->word_re);
  free(v->hash);
  free(v->special);
  free(v->merges);
  tl_pretok_free(v->pretok);
  free(v);
}

/* An optional token id key: absent -> keep *id; present -> must be an
 * integer in [0, n). */
static tl_status read_id(const tl_gguf *g, const char *key, int32_t n, tl_token *id) {
  const tl_gguf_value *val = tl_gguf_get(g, key);
  if (!val) return TL_OK;
  uint32_t u;
  if (!tl_gguf_get_u32(g, key, &u)) {
    /* Some converters write -1 (as a signed integer) for "none". */
    if ((val->type == TL_GGUF_I32 || val->type == TL_GGUF_I64) && val->v.i64 == -1) {
      *id = -1;
      return TL_OK;
    }
    return tl_fail(TL_ERR_FORMAT, "%s is not a non-negative 32-bit integer", key);
  }
  if (u >= (uint32_t)n) {
    return tl_fail(TL_ERR_FORMAT, "%s = %u is out of range (the vocabulary has %d tokens)", key, u,
                   (int)n);
  }
  *id = (tl_token)u;
  return TL_OK;
}

static tl_status read_bool(const tl_gguf *g, const char *key, bool *out) {
  if (!tl_gguf_get(g, key)) return TL_OK;
  bool b;
  if (!tl_gguf_get_bool(g, key, &b)) return tl_fail(TL_ERR_FORMAT, "%s is not a boolean", key);
  *out = b;
  return TL_OK;
}

static bool is_int_type(uint32_t t) {
  return t == TL_GGUF_U8 || t == TL_GGUF_I8 || t == TL_GGUF_U16 || t == TL_GGUF_I16 ||
         t == TL_GGUF_U32 || t == TL_GGUF_I32 || t == TL_GGUF_U64 || t == TL_GGUF_I64;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "<0xXX>" -> the byte, -1 if the text has another form. */
static int parse_byte_token(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int hi = hexval(s[3]), lo = hexval(s[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

typedef struct {
  uint32_t len;
  tl_token id;
  bool normalized;
} special_ent;

/* Tokens matched on the raw text first, then the normalized ones (Hugging
 * Face's two passes); within each, longest first. */
static int cmp_special(const void *a, const void *b) {
  const special_ent *x = a, *y = b;
  if (x->normalized != y->normalized) return x->normalized ? 1 : -1;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static void add_eog(tl_vocab *v, tl_token t) {
  if (t < 0) return;
  for (int32_t i = 0; i < v->n_eog; i++) {
    if (v->eog[i] == t) return;
  }
  if (v->n_eog < TL_VOCAB_MAX_EOG) v->eog[v->n_eog++] = t;
}

static bool name_contains(tl_str name, const char *needle) {
  size_t m = strlen(needle);
  for (uint64_t i = 0; i + m <= name.len; i++) {
    size_t j = 0;
    while (j < m && tolower((unsigned char)name.ptr[i + j]) == needle[j]) j++;
    if (j == m) return true;
  }
  return false;
}

/* tokenizer.ggml.eog_token_ids (a torchless extension written for Hugging
 * Face folders whose generation_config.json lists several eos ids). */
static tl_status read_eog_ids(const tl_gguf *g, tl_vocab *v) {
  const tl_gguf_value *a = tl_gguf_get(g, "tokenizer.ggml.eog_token_ids");
  if (!a) return TL_OK;
  if (a->type != TL_GGUF_ARRAY || !is_int_type(a->v.arr.elem_type)) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.eog_token_ids is not an array of integers");
  }
  for (uint64_t i = 0; i < a->v.arr.n; i++) {
    int64_t t = tl_gguf_arr_i64(a, i);
    if (t < 0 || t >= v->n) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.eog_token_ids[%llu] = %lld is out of range",
                     (unsigned long long)i, (long long)t);
    }
    add_eog(v, (tl_token)t);
  }
  return TL_OK;
}

/* Byte-level BPE: the pre-tokenizer and the merge rules. */
static tl_status load_bpe(const tl_gguf *g, tl_vocab *v) {
  tl_str pre = {"default", 7};
  const tl_gguf_value *pv = tl_gguf_get(g, "tokenizer.ggml.pre");
  if (pv) {
    if (pv->type != TL_GGUF_STRING)
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.pre is not a string");
    pre = pv->v.str;
  }
  tl_status st = tl_pretok_new(pre.ptr, (size_t)pre.len, &v->pretok);
  if (st != TL_OK) return st;
  /* as llama.cpp: LLaMA 3 vocabularies skip the merges for whole tokens */
  v->ignore_merges = strcmp(tl_pretok_kind(v->pretok), "llama3") == 0;
  if ((st = read_bool(g, "tokenizer.ggml.ignore_merges", &v->ignore_merges)) != TL_OK) return st;
  const tl_gguf_value *nv = tl_gguf_get(g, "tokenizer.ggml.normalizer");
  if (nv) {
    if (nv->type != TL_GGUF_STRING) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.normalizer is not a string");
    }
    if (tl_str_eq(nv->v.str, "nfc")) {
      v->nfc = true;
    } else if (nv->v.str.len > 0 && !tl_str_eq(nv->v.str, "none")) {
      int shown = nv->v.str.len > 64 ? 64 : (int)nv->v.str.len;
      return tl_fail(TL_ERR_UNSUPPORTED, "tokenizer.ggml.normalizer '%.*s' is not supported", shown,
                     nv->v.str.ptr);
    }
  }

  const tl_gguf_value *mv = tl_gguf_get(g, "tokenizer.ggml.merges");
  if (!mv) return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.merges is missing (BPE vocabulary)");
  if (mv->type != TL_GGUF_ARRAY || mv->v.arr.elem_type != TL_GGUF_STRING) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.merges is not an array of strings");
  }
  uint64_t nm = mv->v.arr.n;
  if (nm >= (uint64_t)INT32_MAX / 4) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.merges has %llu entries", (unsigned long long)nm);
  }
  uint32_t cap = 16;
  while ((uint64_t)cap < nm + nm / 2 + 1) cap <<= 1;
  v->merges = tl_malloc_array(cap, sizeof(tl_bpe_merge));
  if (!v->merges)
    return tl_fail(TL_ERR_NOMEM, "out of memory loading %llu merges", (unsigned long long)nm);
  for (uint32_t i = 0; i < cap; i++) v->merges[i].left = -1;
  v->merge_mask = cap - 1;
  int32_t n_skipped = 0;
  char *buf = NULL;
  size_t buf_cap = 0;
  for (uint64_t i = 0; i < nm; i++) {
    tl_str m = mv->v.arr.strs[i];
    /* "left right": the first space after the first character */
    const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', (size_t)m.len - 1) : NULL;
    if (!sp) {
      free(buf);
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.merges[%llu] is not 'left right'",
                     (unsigned long long)i);
    }
    size_t ll = (size_t)(sp - m.ptr), rl = (size_t)m.len - ll - 1;
    tl_token l = tl_vocab_find(v, m.ptr, ll), r = tl_vocab_find(v, sp + 1, rl);
    if (ll + rl > buf_cap) {
      buf_cap = (ll + rl) * 2;
      char *nb = realloc(buf, buf_cap);
      if (!nb) {
        free(buf);
        return tl_fail(TL_ERR_NOMEM, "out of memory");
      }
      buf = nb;
    }
    memcpy(buf, m.ptr, ll);
    memcpy(buf + ll, sp + 1, rl);
    tl_token res = tl_vocab_find(v, buf, ll + rl);
    if (l < 0 || r < 0 || res < 0) {
      n_skipped++; /* a rule over strings that are not tokens can never apply */
      continue;
    }
    for (uint32_t k = tl_bpe_pair_hash(l, r) & v->merge_mask;; k = (k + 1) & v->merge_mask) {
      tl_bpe_merge *e = &v->merges[k];
      if (e->left < 0) {
        *e = (tl_bpe_merge){l, r, (int32_t)i, res};
        v->n_merges++;
        break;
      }
      if (e->left == l && e->right == r) break; /* a duplicate: the first rank wins */
    }
  }
  free(buf);
  if (n_skipped > 0) {
    tl_log(TL_LOG_WARN, "%d BPE merge rules name strings that are not tokens: ignored",
           (int)n_skipped);
  }
  return TL_OK;
}

/* s[0..n) into dst with each SentencePiece '▁' (U+2581) as a space; the
 * length written. */
static uint32_t spm_spaces(char *dst, const char *s, uint32_t n) {
  uint32_t m = 0;
  for (uint32_t j = 0; j < n;) {
    if (j + 3 <= n && memcmp(s + j, "\xe2\x96\x81", 3) == 0) {
      dst[m++] = ' ';
      j += 3;
    } else {
      dst[m++] = s[j++];
    }
  }
  return m;
}

static tl_status build_pieces(tl_vocab *v) {
  /* A piece is never longer than its text, except byte tokens (1 byte). */
  uint64_t total = 0;
  for (int32_t i = 0; i < v->n; i++) total += (uint64_t)v->text_len[i] + 1;
  v->piece = malloc((size_t)total + 1);
  v->piece_off = tl_malloc_array((size_t)v->n, sizeof(uint32_t));
  v->piece_len = tl_malloc_array((size_t)v->n, sizeof(uint32_t));
  if (!v->piece || !v->piece_off || !v->piece_len) {
    return tl_fail(TL_ERR_NOMEM, "out of memory building the token pieces");
  }
  uint32_t off = 0;
  for (int32_t i = 0; i < v->n; i++) {
    const char *s = v->text + v->text_off[i];
    uint32_t n = v->text_len[i];
    char *dst = v->piece + off;
    uint32_t m = 0;
    switch (v->type[i]) {
      case TL_TOKTYPE_NORMAL:
        if (v->kind == TL_VOCAB_BPE) {
          /* bytes_to_unicode characters back to their bytes */
          for (uint32_t j = 0; j < n;) {
            size_t l = tl_utf8_len((const unsigned char *)s + j, n - j);
            int b = -1;
            if (l == 2) {
              uint32_t cp = ((uint32_t)(s[j] & 0x1F) << 6) | (uint32_t)(s[j + 1] & 0x3F);
              b = tl_cp_to_byte(cp);
            } else if (l == 1) {
              b = tl_cp_to_byte((unsigned char)s[j]);
            }
            if (b >= 0) {
              dst[m++] = (char)b;
            } else { /* not a byte character: the text as it is */
              if (l == 0) l = 1;
              memcpy(dst + m, s + j, l);
              m += (uint32_t)l;
            }
            j += (uint32_t)(l ? l : 1);
          }
          break;
        }
        m = spm_spaces(dst, s, n);
        break;
      case TL_TOKTYPE_USER_DEFINED:
        if (v->kind == TL_VOCAB_SPM) {
          /* as Hugging Face decodes added tokens: '▁' is a space */
          m = spm_spaces(dst, s, n);
          break;
        }
        memcpy(dst, s, n);
        m = n;
        break;
      case TL_TOKTYPE_BYTE:
        dst[m++] = (char)parse_byte_token(s, n);
        break;
      default: /* control, unknown, unused, undefined: no text */
        break;
    }
    v->piece_off[i] = off;
    v->piece_len[i] = m;
    off += m;
  }
  return TL_OK;
}

static tl_status load(const tl_gguf *g, tl_vocab *v) {
  const tl_gguf_value *model = tl_gguf_get(g, "tokenizer.ggml.model");
  if (!model)
    return tl_fail(TL_ERR_UNSUPPORTED, "the file has no tokenizer (no tokenizer.ggml.model)");
  if (model->type != TL_GGUF_STRING) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.model is not a string");
  }
  if (tl_str_eq(model->v.str, "llama")) {
    v->kind = TL_VOCAB_SPM;
  } else if (tl_str_eq(model->v.str, "gpt2")) {
    v->kind = TL_VOCAB_BPE;
  } else {
    int shown = model->v.str.len > 64 ? 64 : (int)model->v.str.len;
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "tokenizer model '%.*s' is not supported (only 'llama' and 'gpt2')", shown,
                   model->v.str.ptr);
  }
  bool bpe = v->kind == TL_VOCAB_BPE;

  const tl_gguf_value *toks = tl_gguf_get(g, "tokenizer.ggml.tokens");
  if (!toks) return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.tokens is missing");
  if (toks->type != TL_GGUF_ARRAY || toks->v.arr.elem_type != TL_GGUF_STRING) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.tokens is not an array of strings");
  }
  uint64_t n64 = toks->v.arr.n;
  if (n64 == 0 || n64 >= (uint64_t)INT32_MAX / 2) {
    return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries",
                   (unsigned long long)n64);
  }
  int32_t n = (int32_t)n64;
  v->n = n;

  uint64_t total = 0;
  for (int32_t i = 0; i < n; i++) {
    total += toks->v.arr.strs[i].len + 1;
    if (total >= UINT32_MAX) return tl_fail(TL_ERR_FORMAT, "the token texts are too large");
  }
  v->text = malloc((size_t)total);
  v->text_off = tl_malloc_array((size_t)n, sizeof(uint32_t));
  v->text_len = tl_malloc_array((size_t)n, sizeof(uint32_t));
  v->score = tl_calloc_array((size_t)n, sizeof(float));
  v->type = tl_malloc_array((size_t)n, 1);
  v->flags = tl_calloc_array((size_t)n, 1);
  uint32_t hcap = 16;
  while (hcap < (uint32_t)n * 2u) hcap <<= 1;
  v->hash = tl_malloc_array(hcap, sizeof(int32_t));
  if (!v->text || !v->text_off || !v->text_len || !v->score || !v->type || !v->flags || !v->hash) {
    return tl_fail(TL_ERR_NOMEM, "out of memory loading a vocabulary of %d tokens", (int)n);
  }
  v->hash_mask = hcap - 1;
  memset(v->hash, 0xff, (size_t)hcap * sizeof(int32_t));

  uint32_t off = 0;
  for (int32_t i = 0; i < n; i++) {
    tl_str s = toks->v.arr.strs[i];
    if (s.len > 0) memcpy(v->text + off, s.ptr, s.len);
    v->text[off + s.len] = '\0';
    v->text_off[i] = off;
    v->text_len[i] = (uint32_t)s.len;
    off += (uint32_t)s.len + 1;
    v->type[i] = TL_TOKTYPE_NORMAL;
  }

  const tl_gguf_value *scores = tl_gguf_get(g, "tokenizer.ggml.scores");
  if (scores) {
    if (scores->type != TL_GGUF_ARRAY ||
        (scores->v.arr.elem_type != TL_GGUF_F32 && scores->v.arr.elem_type != TL_GGUF_F64)) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.scores is not an array of floats");
    }
    if (scores->v.arr.n != n64) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries, expected %d",
                     (unsigned long long)scores->v.arr.n, (int)n);
    }
    for (int32_t i = 0; i < n; i++) {
      double d = tl_gguf_arr_f64(scores, (uint64_t)i);
      if (isnan(d)) return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.scores[%d] is NaN", (int)i);
      v->score[i] = (float)d;
    }
  }

  const tl_gguf_value *types = tl_gguf_get(g, "tokenizer.ggml.token_type");
  if (types) {
    if (types->type != TL_GGUF_ARRAY || !is_int_type(types->v.arr.elem_type)) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.token_type is not an array of integers");
    }
    if (types->v.arr.n != n64) {
      return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries, expected %d",
                     (unsigned long long)types->v.arr.n, (int)n);
    }
    for (int32_t i = 0; i < n; i++) {
      int64_t t = tl_gguf_arr_i64(types, (uint64_t)i);
      if (t < 0 || t > TL_TOKTYPE_BYTE) {
        return tl_fail(TL_ERR_FORMAT, "tokenizer.ggml.token_type[%d] = %lld is not a token type",
                       (int)i, (long long)t);
      }
      v->type[i] = (uint8_t)t;
    }
  }

  for (int32_t i = 0; i < n; i++) {
    if (v->type[i] == TL_TOKTYPE_BYTE &&
        parse_byte_token(v->text + v->text_off[i], v->text_len[i]) < 0) {
      return tl_fail(TL_ERR_FORMAT, "byte token %d has text '%.16s', not <0xXX>", (int)i,
                     v->text + v->text_off[i]);
    }
    hash_insert(v, i);
  }
  for (int b = 0; b < 256 && bpe; b++) {
    /* the token of the byte's bytes_to_unicode character */
    uint32_t cp = tl_byte_to_cp((uint8_t)b);
    char buf[2];
    size_t l = 1;
    if (cp < 0x80) {
      buf[0] = (char)cp;
    } else {
      buf[0] = (char)(0xC0 | (cp >> 6));
      buf[1] = (char)(0x80 | (cp & 0x3F));
      l = 2;
    }
    v->byte_tok[b] = tl_vocab_find(v, buf, l);
  }
  for (int b = 0; b < 256 && !bpe; b++) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    tl_token t = tl_vocab_find(v, buf, 6);
    if (t < 0) {
      /* as llama.cpp: fall back to the byte itself as a token */
      char c = (char)b;
      t = tl_vocab_find(v, &c, 1);
    }
    v->byte_tok[b] = t;
  }

  /* special tokens: defaults of llama.cpp for SentencePiece vocabularies */
  v->bos = n > 1 && !bpe ? 1 : -1;
  v->eos = n > 2 && !bpe ? 2 : -1;
  v->unk = bpe ? -1 : 0;
  v->eot = -1;
  v->eom = -1;
  tl_status st;
  if ((st = read_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos)) != TL_OK) return st;
  if ((st = read_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos)) != TL_OK) return st;
  if ((st = read_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk)) != TL_OK) return st;
  if ((st = read_id(g, "tokenizer.ggml.eot_token_id", n, &v->eot)) != TL_OK) return st;
  if ((st = read_id(g, "tokenizer.ggml.eom_token_id", n, &v->eom)) != TL_OK) return st;
  v->add_bos = !bpe; /* byte-level BPE: BOS only when the file asks for it */
  v->add_eos = false;
  v->add_space_prefix = !bpe;
  if ((st = read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos)) != TL_OK) return st;
  if ((st = read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos)) != TL_OK) return st;
  if ((st = read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix)) != TL_OK) {
    return st;
  }

  /* end of generation: eos, eot, eom, and the end-of-turn markers that
   * llama.cpp recognises by their text when they are control tokens */
  add_eog(v, v->eos);
  add_eog(v, v->eot);
  add_eog(v, v->eom);
  if ((st = read_eog_ids(g, v)) != TL_OK) return st;
  static const char *const eog_texts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<|eom_id|>", "<EOT>"};
  for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
    tl_token t = tl_vocab_find(v, eog_texts[k], strlen(eog_texts[k]));
    if (t >= 0 && (v->type[t] == TL_TOKTYPE_CONTROL || v->type[t] == TL_TOKTYPE_USER_DEFINED)) {
      add_eog(v, t);
    }
  }

  /* special tokens matched before BPE, longest first */
  /* tokenizer.json's added-token flags, where the view carries them */
  const tl_gguf_value *fl = tl_gguf_get(g, TL_TOKEN_FLAGS_KEY);
  if (fl) {
    if (fl->type != TL_GGUF_ARRAY || fl->v.arr.elem_type != TL_GGUF_U8 || fl->v.arr.n != n64)
      return tl_fail(TL_ERR_FORMAT, "%s is not an array of %d bytes", TL_TOKEN_FLAGS_KEY, (int)n);
    bool single = false;
    for (int32_t i = 0; i < n; i++) {
      v->flags[i] = (uint8_t)(tl_gguf_arr_i64(fl, (uint64_t)i) & 15);
      single |= (v->flags[i] & TL_TOKFLAG_SINGLE_WORD) != 0;
    }
    if (single) {
      /* a word character, as Rust's regex \w (Unicode): letters, marks,
       * decimal digits, connector punctuation, joiners */
      int err = 0;
      PCRE2_SIZE erroff = 0;
      v->word_re =
          pcre2_compile((PCRE2_SPTR) "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                        PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED, &err, &erroff, NULL);
      if (!v->word_re) return tl_fail(TL_ERR_NOMEM, "cannot compile the word-character class");
    }
  }

  int32_t ns = 0;
  for (int32_t i = 0; i < n; i++) {
    uint8_t t = v->type[i];
    if ((t == TL_TOKTYPE_CONTROL || t == TL_TOKTYPE_USER_DEFINED || t == TL_TOKTYPE_UNKNOWN) &&
        v->text_len[i] > 0) {
      ns++;
    }
  }
  if (ns > 0) {
    special_ent *ents = tl_malloc_array((size_t)ns, sizeof *ents);
    v->special = tl_malloc_array((size_t)ns, sizeof(tl_token));
    if (!ents || !v->special) {
      free(ents);
      return tl_fail(TL_ERR_NOMEM, "out of memory");
    }
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
      uint8_t t = v->type[i];
      if ((t == TL_TOKTYPE_CONTROL || t == TL_TOKTYPE_USER_DEFINED || t == TL_TOKTYPE_UNKNOWN) &&
          v->text_len[i] > 0) {
        ents[k].len = v->text_len[i];
        ents[k].id = i;
        ents[k].normalized = (v->flags[i] & TL_TOKFLAG_NORMALIZED) != 0;
        k++;
      }
    }
    qsort(ents, (size_t)ns, sizeof *ents, cmp_special);
    for (int32_t i = 0; i < ns; i++) v->special[i] = ents[i].id;
    free(ents);
  }
  v->n_special = ns;

  /* As llama.cpp: Phi-3's added tokens strip the whitespace to their right
   * (its tokenizer.json says rstrip, which GGUF does not record). */
  tl_str name;
  if (!fl && tl_gguf_get_str(g, "general.name", &name) &&
      (name_contains(name, "phi-3") || name_contains(name, "phi3"))) {
    for (int32_t i = 0; i < ns; i++) v->flags[v->special[i]] |= TL_TOKFLAG_RSTRIP;
    static const char *const no_rstrip[] = {"<unk>", "<s>", "<|endoftext|>"};
    tl_token t = tl_vocab_find(v, "</s>", 4);
    if (t >= 0) v->flags[t] |= TL_TOKFLAG_RSTRIP;
    for (size_t k = 0; k < 3; k++) {
      t = tl_vocab_find(v, no_rstrip[k], strlen(no_rstrip[k]));
      if (t >= 0) v->flags[t] &= (uint8_t)~TL_TOKFLAG_RSTRIP;
    }
  }

  if (bpe && (st = load_bpe(g, v)) != TL_OK) return st;
  return build_pieces(v);
}

tl_status tl_vocab_from_gguf(const tl_gguf *g, tl_vocab **out) {
  if (!g || !out) return tl_fail(TL_ERR_INVALID_ARG, "tl_vocab_from_gguf: NULL argument");
  *out = NULL;
  tl_vocab *v = calloc(1, sizeof *v);
  if (!v) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status st = load(g, v);
  if (st != TL_OK) {
    tl_vocab_free(v);
    return st;
  }
  *out = v;
  return TL_OK;
}

tl_vocab_kind tl_vocab_get_kind(const tl_vocab *v) {
  return v ? v->kind : TL_VOCAB_NONE;
}
int32_t tl_vocab_n_tokens(const tl_vocab *v) {
  return v ? v->n : 0;
}
tl_token tl_vocab_bos(const tl_vocab *v) {
  return v ? v->bos : -1;
}
tl_token tl_vocab_eos(const tl_vocab *v) {
  return v ? v->eos : -1;
}
bool tl_vocab_add_bos(const tl_vocab *v) {
  return v && v->add_bos && v->bos >= 0;
}

bool tl_vocab_is_eog(const tl_vocab *v, tl_token t) {
  if (!v || t < 0) return false;
  for (int32_t i = 0; i < v->n_eog; i++) {
    if (v->eog[i] == t) return true;
  }
  return false;
}

const char *tl_vocab_text(const tl_vocab *v, tl_token t, size_t *len) {
  if (!v || t < 0 || t >= v->n) return NULL;
  if (len) *len = v->text_len[t];
  return v->text + v->text_off[t];
}

int32_t tl_vocab_type(const tl_vocab *v, tl_token t) {
  if (!v || t < 0 || t >= v->n) return -1;
  return v->type[t];
}

int32_t tl_vocab_piece(const tl_vocab *v, tl_token t, char *buf, size_t cap) {
  if (!v || t < 0 || t >= v->n) return -1;
  uint32_t n = v->piece_len[t];
  size_t m = n < cap ? n : cap;
  if (m > 0 && buf) memcpy(buf, v->piece + v->piece_off[t], m);
  return (int32_t)n;
}

/* ---- streaming detokenizer ------------------------------------------------ */

struct tl_detok {
  const tl_vocab *v;
  unsigned char *pend; /* bytes of pieces not yet emitted */
  size_t n, cap;
};

tl_status tl_vocab_detok_new(const tl_vocab *v, tl_detok **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_detok_new: NULL argument");
  *out = NULL;
  if (!v) return tl_fail(TL_ERR_INVALID_ARG, "tl_detok_new: the model has no vocabulary");
  tl_detok *d = calloc(1, sizeof *d);
  if (!d) return tl_fail(TL_ERR_NOMEM, "out of memory");
  d->v = v;
  *out = d;
  return TL_OK;
}

void tl_vocab_detok_free(tl_detok *d) {
  if (!d) return;
  free(d->pend);
  free(d);
}

/* Emit the complete characters of the pending bytes that fit in cap-1 bytes;
 * final: the incomplete tail becomes U+FFFD too. */
static size_t detok_drain(tl_detok *d, char *buf, size_t cap, bool final) {
  if (!buf || cap == 0) return 0;
  size_t limit = cap - 1, w = 0, i = 0;
  while (i < d->n) {
    int r = tl_utf8_check(d->pend + i, d->n - i);
    if (r > 0) {
      if (w + (size_t)r > limit) break;
      memcpy(buf + w, d->pend + i, (size_t)r);
      w += (size_t)r;
      i += (size_t)r;
      continue;
    }
    if (r == 0 && !final) break; /* wait for the rest of the character */
    if (w + 3 > limit) break;
    memcpy(buf + w, "\xef\xbf\xbd", 3);
    w += 3;
    i = r == 0 ? d->n : i + 1;
  }
  if (i > 0) {
    memmove(d->pend, d->pend + i, d->n - i);
    d->n -= i;
  }
  buf[w] = '\0';
  return w;
}

size_t tl_vocab_detok_push(tl_detok *d, tl_token t, char *buf, size_t cap) {
  if (!d) return 0;
  int32_t len = tl_vocab_piece(d->v, t, NULL, 0);
  if (len > 0) {
    size_t need = d->n + (size_t)len;
    if (need > d->cap) {
      size_t nc = d->cap ? d->cap : 64;
      while (nc < need) nc *= 2;
      unsigned char *p = realloc(d->pend, nc);
      if (!p) {
        /* cannot buffer: drop the piece rather than fail mid-stream */
        tl_log(TL_LOG_WARN, "detokenizer: out of memory, token %d dropped", (int)t);
        return detok_drain(d, buf, cap, false);
      }
      d->pend = p;
      d->cap = nc;
    }
    tl_vocab_piece(d->v, t, (char *)d->pend + d->n, (size_t)len);
    d->n = need;
  }
  return detok_drain(d, buf, cap, false);
}

size_t tl_vocab_detok_flush(tl_detok *d, char *buf, size_t cap) {
  if (!d) return 0;
  return detok_drain(d, buf, cap, true);
}
