/* Hugging Face tokenizer files -> GGUF tokenizer.ggml.* keys (on a view),
 * the way llama.cpp's convert_hf_to_gguf.py writes them:
 *  - tokenizer.json with a byte-level BPE model (GPT-2 / LLaMA 3 / Qwen2
 *    pre-tokenizer regex): model "gpt2" with tokens, token types and merges;
 *  - tokenizer.json with a SentencePiece-style BPE model (byte_fallback, "▁"
 *    for spaces, e.g. Gemma 3): model "llama"; SentencePiece's algorithm
 *    merges the pair whose result has the highest score, Hugging Face's the
 *    pair with the lowest merge rank, so each token scores -(rank of the
 *    first merge that makes it);
 *  - tokenizer.model (a SentencePiece ModelProto, read with a minimal
 *    protobuf decoder): model "llama" with its pieces, scores and types;
 * plus tokenizer_config.json (special tokens, add_bos/eos, chat template),
 * chat_template.jinja and generation_config.json (end-of-generation ids). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "format/json.h"
#include "tokenizer/tokenizer.h"

#define MAX_TOKENS (1 << 24)
#define MAX_FILE ((size_t)1 << 31)

/* ---- files ----------------------------------------------------------------- */

/* Reads dir/name into a NUL-terminated buffer. *exists false (and TL_OK) when
 * the file is absent. */
static tl_status read_file(const char *dir, const char *name, char **out, size_t *size,
                           bool *exists) {
  *out = NULL;
  *size = 0;
  *exists = false;
  size_t pl = strlen(dir) + strlen(name) + 2;
  char *path = malloc(pl);
  if (!path) return tl_fail(TL_ERR_NOMEM, "out of memory");
  snprintf(path, pl, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    tl_status st = TL_OK;
    if (e != ENOENT) st = tl_fail(TL_ERR_IO, "cannot open %s: %s", path, strerror(e));
    free(path);
    return st;
  }
  *exists = true;
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size >= MAX_FILE) {
    fclose(f);
    tl_status st = tl_fail(TL_ERR_IO, "%s is not a regular file of a sensible size", path);
    free(path);
    return st;
  }
  size_t n = (size_t)sb.st_size;
  char *buf = malloc(n + 1);
  if (!buf) {
    fclose(f);
    free(path);
    return tl_fail(TL_ERR_NOMEM, "out of memory reading %s", name);
  }
  size_t got = fread(buf, 1, n, f);
  fclose(f);
  if (got != n) {
    free(buf);
    tl_status st = tl_fail(TL_ERR_IO, "cannot read %s", path);
    free(path);
    return st;
  }
  free(path);
  buf[n] = '\0';
  *out = buf;
  *size = n;
  return TL_OK;
}

static tl_status parse_json(const char *dir, const char *name, cJSON **out, bool *exists) {
  *out = NULL;
  char *buf = NULL;
  size_t n = 0;
  tl_status st = read_file(dir, name, &buf, &n, exists);
  if (st != TL_OK || !*exists) return st;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(buf, n, &end, false);
  if (!j) {
    size_t at = end ? (size_t)(end - buf) : 0;
    free(buf);
    return tl_fail(TL_ERR_FORMAT, "%s/%s: invalid JSON (near byte %zu)", dir, name, at);
  }
  free(buf);
  *out = j;
  return TL_OK;
}

static bool is_type(const cJSON *o, const char *type) {
  const cJSON *t = tl_json_get(o, "type");
  return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

/* ---- the token table being built --------------------------------------------- */

typedef struct {
  const char *dir;
  const char *file; /* for error messages */
  int32_t n;
  tl_str *tok;    /* [n] texts (views into JSON / proto / pool) */
  float *score;   /* [n] */
  int32_t *type;  /* [n] */
  uint8_t *flags; /* [n] TL_TOKFLAG_* of added tokens (tokenizer.json's) */
  bool has_flags; /* the file has added tokens: their flags are the vocabulary's */
  int32_t *hash;  /* text -> id */
  uint32_t hash_mask;
  char **pool; /* strings allocated here */
  size_t n_pool, pool_cap;
  bool spm;                    /* "llama" model (else "gpt2") */
  tl_token bos, eos, unk, pad; /* -2: not set */
  int add_bos, add_eos;        /* -1: not set */
} builder;

static uint64_t hash_str(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 31);
}

static void builder_free(builder *b) {
  free(b->tok);
  free(b->score);
  free(b->type);
  free(b->flags);
  free(b->hash);
  for (size_t i = 0; i < b->n_pool; i++) free(b->pool[i]);
  free(b->pool);
}

static tl_status builder_init(builder *b, int32_t n) {
  b->n = n;
  b->tok = tl_calloc_array((size_t)n, sizeof(tl_str));
  b->score = tl_calloc_array((size_t)n, sizeof(float));
  b->type = tl_calloc_array((size_t)n, sizeof(int32_t));
  b->flags = tl_calloc_array((size_t)n, 1);
  uint32_t cap = 16;
  while (cap < (uint32_t)n * 2u) cap <<= 1;
  b->hash = tl_malloc_array(cap, sizeof(int32_t));
  if (!b->tok || !b->score || !b->type || !b->flags || !b->hash) {
    return tl_fail(TL_ERR_NOMEM, "out of memory for %d tokens", (int)n);
  }
  memset(b->hash, 0xff, (size_t)cap * sizeof(int32_t));
  b->hash_mask = cap - 1;
  return TL_OK;
}

static char *pool_add(builder *b, size_t n) {
  if (b->n_pool == b->pool_cap) {
    size_t nc = b->pool_cap ? b->pool_cap * 2 : 64;
    char **p = realloc(b->pool, nc * sizeof *p);
    if (!p) return NULL;
    b->pool = p;
    b->pool_cap = nc;
  }
  char *s = malloc(n + 1);
  if (s) b->pool[b->n_pool++] = s;
  return s;
}

/* Index all texts (a later id with the same text wins, as llama.cpp). */
static void builder_index(builder *b) {
  for (int32_t id = 0; id < b->n; id++) {
    tl_str s = b->tok[id];
    uint32_t i = (uint32_t)hash_str(s.ptr, (size_t)s.len) & b->hash_mask;
    for (;;) {
      int32_t cur = b->hash[i];
      if (cur < 0 || (b->tok[cur].len == s.len && memcmp(b->tok[cur].ptr, s.ptr, s.len) == 0)) {
        b->hash[i] = id;
        break;
      }
      i = (i + 1) & b->hash_mask;
    }
  }
}

static tl_token builder_find(const builder *b, const char *s, size_t n) {
  uint32_t i = (uint32_t)hash_str(s, n) & b->hash_mask;
  for (;;) {
    int32_t id = b->hash[i];
    if (id < 0) return -1;
    if (b->tok[id].len == n && memcmp(b->tok[id].ptr, s, n) == 0) return id;
    i = (i + 1) & b->hash_mask;
  }
}

/* Gaps in the ids become unused "[PADn]" tokens (as convert_hf_to_gguf.py). */
static tl_status fill_gaps(builder *b) {
  for (int32_t i = 0; i < b->n; i++) {
    if (b->tok[i].ptr) continue;
    char *s = pool_add(b, 24);
    if (!s) return tl_fail(TL_ERR_NOMEM, "out of memory");
    int l = snprintf(s, 24, "[PAD%d]", (int)i);
    b->tok[i] = (tl_str){s, (uint64_t)l};
    b->type[i] = TL_TOKTYPE_UNUSED;
  }
  return TL_OK;
}

static tl_status write_tokens(tl_gguf *g, builder *b) {
  tl_status st;
  if ((st = tl_gguf_set_str(g, "tokenizer.ggml.model", b->spm ? "llama" : "gpt2",
                            b->spm ? 5 : 4)) != TL_OK ||
      (st = tl_gguf_set_str_arr(g, "tokenizer.ggml.tokens", b->tok, (uint64_t)b->n)) != TL_OK ||
      (st = tl_gguf_set_arr(g, "tokenizer.ggml.token_type", TL_GGUF_I32, b->type,
                            (uint64_t)b->n)) != TL_OK) {
    return st;
  }
  if (b->spm) {
    st = tl_gguf_set_arr(g, "tokenizer.ggml.scores", TL_GGUF_F32, b->score, (uint64_t)b->n);
  }
  /* tokenizer.json's added-token flags (GGUF has no key of its own for them) */
  if (st == TL_OK && b->has_flags)
    st = tl_gguf_set_arr(g, TL_TOKEN_FLAGS_KEY, TL_GGUF_U8, b->flags, (uint64_t)b->n);
  return st;
}

/* ---- tokenizer.json ------------------------------------------------------------ */

#define JFAIL(b, ...) json_fail(b, __VA_ARGS__)

static tl_status json_fail(const builder *b, const char *fmt, ...) TL_PRINTF(2, 3);
static tl_status json_fail(const builder *b, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tl_fail(TL_ERR_FORMAT, "%s/%s: %s", b->dir, b->file, msg);
}

/* Finds the pre-tokenizer pieces that matter: a ByteLevel (its use_regex) and
 * a Split regex, inside a Sequence or alone. */
typedef struct {
  bool byte_level, bl_regex, metaspace, metaspace_prefix;
  const char *split_regex;
  const char *other; /* an unsupported pre-tokenizer type */
} pre_info;

static void scan_pre(const cJSON *p, pre_info *pi) {
  if (!cJSON_IsObject(p)) return;
  const cJSON *t = tl_json_get(p, "type");
  if (!cJSON_IsString(t)) return;
  const char *type = t->valuestring;
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *e;
    cJSON_ArrayForEach(e, tl_json_get(p, "pretokenizers")) scan_pre(e, pi);
  } else if (strcmp(type, "ByteLevel") == 0) {
    pi->byte_level = true;
    const cJSON *ur = tl_json_get(p, "use_regex");
    pi->bl_regex = !cJSON_IsBool(ur) || cJSON_IsTrue(ur);
  } else if (strcmp(type, "Split") == 0) {
    const cJSON *re = tl_json_get(tl_json_get(p, "pattern"), "Regex");
    if (cJSON_IsString(re)) {
      pi->split_regex = re->valuestring;
    } else {
      /* Split on a plain string (Gemma 3's " " after the normalizer made
       * every space a "▁": nothing left to split) */
      const cJSON *str = tl_json_get(tl_json_get(p, "pattern"), "String");
      if (!cJSON_IsString(str) || strcmp(str->valuestring, " ") != 0) pi->other = "Split";
    }
  } else if (strcmp(type, "Metaspace") == 0) {
    pi->metaspace = true;
    const cJSON *ps = tl_json_get(p, "prepend_scheme"), *aps = tl_json_get(p, "add_prefix_space");
    pi->metaspace_prefix = cJSON_IsString(ps) ? strcmp(ps->valuestring, "never") != 0
                                              : (!cJSON_IsBool(aps) || cJSON_IsTrue(aps));
  } else {
    pi->other = type;
  }
}

/* SentencePiece-style normalizers: Replace " " -> "▁", Prepend "▁". */
typedef struct {
  bool nfc, replace_space, prepend;
  const char *other;
} norm_info;

static void scan_norm(const cJSON *n, norm_info *ni) {
  if (!cJSON_IsObject(n)) return;
  const cJSON *t = tl_json_get(n, "type");
  if (!cJSON_IsString(t)) {
    ni->other = "(no type)";
    return;
  }
  const char *type = t->valuestring;
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *e;
    cJSON_ArrayForEach(e, tl_json_get(n, "normalizers")) scan_norm(e, ni);
  } else if (strcmp(type, "NFC") == 0) {
    ni->nfc = true;
  } else if (strcmp(type, "Replace") == 0) {
    const cJSON *pat = tl_json_get(tl_json_get(n, "pattern"), "String"),
                *c = tl_json_get(n, "content");
    if (cJSON_IsString(pat) && cJSON_IsString(c) && strcmp(pat->valuestring, " ") == 0 &&
        strcmp(c->valuestring, "\xe2\x96\x81") == 0) {
      ni->replace_space = true;
    } else {
      ni->other = "Replace";
    }
  } else if (strcmp(type, "Prepend") == 0) {
    const cJSON *p = tl_json_get(n, "prepend");
    if (cJSON_IsString(p) && strcmp(p->valuestring, "\xe2\x96\x81") == 0) {
      ni->prepend = true;
    } else {
      ni->other = "Prepend";
    }
  } else {
    ni->other = type;
  }
}

static bool str_has_space(const char *s) {
  return strchr(s, ' ') != NULL;
}

/* "<0xXX>" */
static bool is_byte_token(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

static tl_status load_tokenizer_json(tl_gguf *g, builder *b, const cJSON *root) {
  if (!b->file) b->file = "tokenizer.json";
  if (!cJSON_IsObject(root)) return JFAIL(b, "the top level is not an object");
  const cJSON *model = tl_json_get(root, "model");
  if (!cJSON_IsObject(model)) return JFAIL(b, "'model' is missing or not an object");
  const cJSON *mt = tl_json_get(model, "type");
  if (mt && !cJSON_IsString(mt)) return JFAIL(b, "'model.type' is not a string");
  if (mt && strcmp(mt->valuestring, "BPE") != 0) {
    return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: model type '%s' is not supported (only BPE)", b->dir,
                   b->file, mt->valuestring);
  }
  const cJSON *vocab = tl_json_get(model, "vocab");
  if (!cJSON_IsObject(vocab)) return JFAIL(b, "'model.vocab' is missing or not an object");
  const cJSON *merges = tl_json_get(model, "merges");
  if (!cJSON_IsArray(merges)) return JFAIL(b, "'model.merges' is missing or not an array");
  const cJSON *added = tl_json_get(root, "added_tokens");
  if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added)) {
    return JFAIL(b, "'added_tokens' is not an array");
  }

  /* the vocabulary size: the largest id + 1 */
  int64_t max_id = -1;
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    int64_t id;
    if (!tl_json_int(e, 0, MAX_TOKENS - 1, &id)) {
      return JFAIL(b, "'model.vocab' entry '%.64s' is not a token id in [0, %d)", e->string,
                   MAX_TOKENS);
    }
    if (id > max_id) max_id = id;
  }
  cJSON_ArrayForEach(e, added) {
    int64_t id;
    const cJSON *c = tl_json_get(e, "content");
    if (!cJSON_IsObject(e) || !tl_json_int(tl_json_get(e, "id"), 0, MAX_TOKENS - 1, &id) ||
        !cJSON_IsString(c)) {
      return JFAIL(b, "an 'added_tokens' entry lacks an integer 'id' or a string 'content'");
    }
    static const char *const bools[] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
    for (size_t k = 0; k < sizeof bools / sizeof bools[0]; k++) {
      const cJSON *f = tl_json_get(e, bools[k]);
      if (f && !cJSON_IsBool(f))
        return JFAIL(b, "'added_tokens' '%.64s': '%s' is not a boolean", c->valuestring, bools[k]);
    }
    if (id > max_id) max_id = id;
  }
  if (max_id < 0) return JFAIL(b, "the vocabulary is empty");
  /* ids without a token become [PAD] tokens; a tiny file must not claim
   * millions of them (time and memory) */
  int64_t n_entries = cJSON_GetArraySize(vocab) + (added ? cJSON_GetArraySize(added) : 0);
  if (max_id + 1 > 2 * n_entries + 65536)
    return JFAIL(b, "token id %lld leaves most ids below it without a token (%lld entries)",
                 (long long)max_id, (long long)n_entries);
  tl_status st = builder_init(b, (int32_t)(max_id + 1));
  if (st != TL_OK) return st;
  cJSON_ArrayForEach(e, vocab) {
    int32_t id = (int32_t)e->valuedouble;
    if (b->tok[id].ptr) return JFAIL(b, "'model.vocab' gives id %d twice", (int)id);
    b->tok[id] = (tl_str){e->string, strlen(e->string)};
    b->type[id] = TL_TOKTYPE_NORMAL;
  }

  /* byte-level or SentencePiece style? */
  pre_info pi = {0};
  norm_info ni = {0};
  scan_pre(tl_json_get(root, "pre_tokenizer"), &pi);
  scan_norm(tl_json_get(root, "normalizer"), &ni);
  const cJSON *bf = tl_json_get(model, "byte_fallback");
  if (bf && !cJSON_IsBool(bf)) return JFAIL(b, "'model.byte_fallback' is not a boolean");
  const cJSON *im = tl_json_get(model, "ignore_merges");
  if (im && !cJSON_IsBool(im)) return JFAIL(b, "'model.ignore_merges' is not a boolean");
  b->spm = !pi.byte_level && (cJSON_IsTrue(bf) || ni.replace_space || pi.metaspace);

  if (b->spm) {
    if (ni.other || ni.nfc) {
      return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: normalizer '%s' is not supported", b->dir, b->file,
                     ni.other ? ni.other : "NFC");
    }
    if (pi.other || pi.split_regex) {
      return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: pre-tokenizer '%s' is not supported", b->dir,
                     b->file, pi.other ? pi.other : "Split");
    }
    if ((st = tl_gguf_set_bool(g, "tokenizer.ggml.add_space_prefix",
                               ni.prepend || (pi.metaspace && pi.metaspace_prefix))) != TL_OK) {
      return st;
    }
  } else {
    if (!pi.byte_level) {
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "%s/%s: a BPE model without a ByteLevel pre-tokenizer or SentencePiece-style "
                     "byte fallback is not supported",
                     b->dir, b->file);
    }
    if (pi.other) {
      return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: pre-tokenizer '%s' is not supported", b->dir,
                     b->file, pi.other);
    }
    if (ni.other) {
      return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: normalizer '%s' is not supported", b->dir, b->file,
                     ni.other);
    }
    const char *pre = NULL;
    if (pi.split_regex) {
      pre = tl_pretok_name_for_regex(pi.split_regex, strlen(pi.split_regex));
      if (!pre) {
        return tl_fail(TL_ERR_UNSUPPORTED, "%s/%s: unknown pre-tokenizer regex '%.200s'", b->dir,
                       b->file, pi.split_regex);
      }
    } else if (pi.bl_regex) {
      pre = "gpt-2";
    } else {
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "%s/%s: a ByteLevel pre-tokenizer without a regex is not supported", b->dir,
                     b->file);
    }
    if ((st = tl_gguf_set_str(g, "tokenizer.ggml.pre", pre, strlen(pre))) != TL_OK) return st;
    if (ni.nfc && (st = tl_gguf_set_str(g, "tokenizer.ggml.normalizer", "nfc", 3)) != TL_OK) {
      return st;
    }
    if ((st = tl_gguf_set_bool(g, "tokenizer.ggml.ignore_merges", cJSON_IsTrue(im))) != TL_OK) {
      return st;
    }
  }

  /* added tokens: control (special) or user-defined */
  cJSON_ArrayForEach(e, added) {
    int32_t id = (int32_t)tl_json_get(e, "id")->valuedouble;
    const char *c = tl_json_get(e, "content")->valuestring;
    b->tok[id] = (tl_str){c, strlen(c)};
    const bool special = cJSON_IsTrue(tl_json_get(e, "special"));
    b->type[id] = special ? TL_TOKTYPE_CONTROL : TL_TOKTYPE_USER_DEFINED;
    /* as Hugging Face's AddedToken: normalized defaults to !special */
    const cJSON *nz = tl_json_get(e, "normalized");
    b->flags[id] =
        (uint8_t)((cJSON_IsTrue(tl_json_get(e, "lstrip")) ? TL_TOKFLAG_LSTRIP : 0) |
                  (cJSON_IsTrue(tl_json_get(e, "rstrip")) ? TL_TOKFLAG_RSTRIP : 0) |
                  (cJSON_IsTrue(tl_json_get(e, "single_word")) ? TL_TOKFLAG_SINGLE_WORD : 0) |
                  ((nz ? cJSON_IsTrue(nz) : !special) ? TL_TOKFLAG_NORMALIZED : 0));
    b->has_flags = true;
  }
  if ((st = fill_gaps(b)) != TL_OK) return st;
  builder_index(b);

  const cJSON *unk = tl_json_get(model, "unk_token");
  if (unk && !cJSON_IsString(unk) && !cJSON_IsNull(unk)) {
    return JFAIL(b, "'model.unk_token' is not a string");
  }
  if (cJSON_IsString(unk)) {
    tl_token t = builder_find(b, unk->valuestring, strlen(unk->valuestring));
    if (t < 0) return JFAIL(b, "'model.unk_token' '%.64s' is not a token", unk->valuestring);
    b->unk = t;
    if (b->spm) b->type[t] = TL_TOKTYPE_UNKNOWN;
  }

  /* merges: "a b" strings or [a, b] pairs */
  int n_merges = cJSON_GetArraySize(merges);
  tl_str *ms = tl_calloc_array(n_merges > 0 ? (size_t)n_merges : 1, sizeof(tl_str));
  if (!ms) return tl_fail(TL_ERR_NOMEM, "out of memory");
  int k = 0;
  cJSON_ArrayForEach(e, merges) {
    const char *l = NULL, *r = NULL;
    size_t ll = 0, rl = 0;
    if (cJSON_IsString(e)) {
      const char *s = e->valuestring;
      const char *sp = s[0] ? strchr(s + 1, ' ') : NULL;
      if (!sp) {
        free(ms);
        return JFAIL(b, "'model.merges[%d]' is not 'left right'", k);
      }
      l = s;
      ll = (size_t)(sp - s);
      r = sp + 1;
      rl = strlen(r);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
      l = cJSON_GetArrayItem(e, 0)->valuestring;
      r = cJSON_GetArrayItem(e, 1)->valuestring;
      ll = strlen(l);
      rl = strlen(r);
      if (!b->spm && (ll == 0 || str_has_space(l) || str_has_space(r))) {
        free(ms);
        return JFAIL(b, "'model.merges[%d]' has a part that GGUF cannot store", k);
      }
    } else {
      free(ms);
      return JFAIL(b, "'model.merges[%d]' is neither a string nor a pair of strings", k);
    }
    if (b->spm) {
      /* the score of the merge's result: -(its first rank) */
      char stackbuf[256];
      char *cat = ll + rl <= sizeof stackbuf ? stackbuf : malloc(ll + rl);
      if (!cat) {
        free(ms);
        return tl_fail(TL_ERR_NOMEM, "out of memory");
      }
      memcpy(cat, l, ll);
      memcpy(cat + ll, r, rl);
      tl_token t = builder_find(b, cat, ll + rl);
      if (cat != stackbuf) free(cat);
      if (t >= 0 && b->score[t] == 0.0f && b->type[t] != TL_TOKTYPE_UNUSED) {
        b->score[t] = -(float)k - 1.0f;
      }
    } else {
      char *m = pool_add(b, ll + 1 + rl);
      if (!m) {
        free(ms);
        return tl_fail(TL_ERR_NOMEM, "out of memory");
      }
      memcpy(m, l, ll);
      m[ll] = ' ';
      memcpy(m + ll + 1, r, rl);
      ms[k] = (tl_str){m, ll + 1 + rl};
    }
    k++;
  }
  if (!b->spm) {
    st = tl_gguf_set_str_arr(g, "tokenizer.ggml.merges", ms, (uint64_t)k);
    free(ms);
    if (st != TL_OK) return st;
  } else {
    free(ms);
    /* tokens no merge makes: below every merge (single characters never
     * compete, byte and added tokens are not merge results) */
    for (int32_t i = 0; i < b->n; i++) {
      if (is_byte_token(b->tok[i].ptr, (size_t)b->tok[i].len) && b->type[i] == TL_TOKTYPE_NORMAL) {
        b->type[i] = TL_TOKTYPE_BYTE;
      }
      if (b->score[i] == 0.0f) {
        size_t cl = tl_utf8_len((const unsigned char *)b->tok[i].ptr, (size_t)b->tok[i].len);
        if (cl != b->tok[i].len) b->score[i] = -(float)k - 1.0f;
      }
    }
  }

  /* a template post-processor that starts with a special token adds BOS */
  const cJSON *post = tl_json_get(root, "post_processor");
  if (is_type(post, "TemplateProcessing")) {
    const cJSON *single = tl_json_get(post, "single");
    const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
    const cJSON *stok = tl_json_get(tl_json_get(first, "SpecialToken"), "id");
    if (cJSON_IsString(stok)) {
      tl_token t = builder_find(b, stok->valuestring, strlen(stok->valuestring));
      if (t >= 0) {
        if (b->bos == -2) b->bos = t;
        b->add_bos = 1;
      }
    } else if (first) {
      b->add_bos = 0;
    }
  }
  return TL_OK;
}

/* ---- tokenizer.model (SentencePiece ModelProto) -------------------------------- */

typedef struct {
  const uint8_t *p, *end;
} pb;

static bool pb_varint(pb *r, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return false;
    uint8_t c = *r->p++;
    if (shift == 63 && (c & 0x7E)) return false; /* more than 64 bits */
    v |= (uint64_t)(c & 0x7F) << shift;
    if (!(c & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

typedef struct {
  uint32_t field, wire;
  uint64_t v;         /* varint / fixed value */
  const uint8_t *buf; /* wire 2 */
  size_t len;
} pb_field;

/* Next field; false at the end, *err on a malformed one. */
static bool pb_next(pb *r, pb_field *f, bool *err) {
  *err = false;
  if (r->p >= r->end) return false;
  uint64_t key;
  if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) {
    *err = true;
    return false;
  }
  f->field = (uint32_t)(key >> 3);
  f->wire = (uint32_t)(key & 7);
  switch (f->wire) {
    case 0:
      if (!pb_varint(r, &f->v)) break;
      return true;
    case 1:
      if (r->end - r->p < 8) break;
      f->v = 0;
      for (int i = 7; i >= 0; i--) f->v = (f->v << 8) | r->p[i];
      r->p += 8;
      return true;
    case 5:
      if (r->end - r->p < 4) break;
      f->v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
             (uint32_t)r->p[3] << 24;
      r->p += 4;
      return true;
    case 2: {
      uint64_t n;
      if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) break;
      f->buf = r->p;
      f->len = (size_t)n;
      r->p += n;
      return true;
    }
    default: /* groups (3, 4) and reserved wire types */
      break;
  }
  *err = true;
  return false;
}

static tl_status load_tokenizer_model(tl_gguf *g, builder *b, const uint8_t *data, size_t size) {
  b->file = "tokenizer.model";
  b->spm = true;
  /* first pass: count the pieces */
  pb r = {data, data + size};
  pb_field f;
  bool err = false;
  int64_t n = 0;
  const uint8_t *trainer = NULL, *normalizer = NULL;
  size_t trainer_len = 0, normalizer_len = 0;
  while (pb_next(&r, &f, &err)) {
    if (f.field == 1 && f.wire == 2) n++;
    if (f.field == 2 && f.wire == 2) trainer = f.buf, trainer_len = f.len;
    if (f.field == 3 && f.wire == 2) normalizer = f.buf, normalizer_len = f.len;
  }
  if (err) return JFAIL(b, "malformed protobuf (ModelProto)");
  if (n == 0 || n >= MAX_TOKENS) return JFAIL(b, "%lld pieces", (long long)n);

  /* trainer_spec: model type, special ids */
  int64_t model_type = 1, unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  pb tr = {trainer, trainer ? trainer + trainer_len : NULL}; /* NULL + 0 is UB */
  while (trainer && pb_next(&tr, &f, &err)) {
    if (f.wire != 0) continue;
    int64_t v = (int64_t)(int32_t)(uint32_t)f.v; /* int32 fields, negatives sign-extended */
    if (f.field == 3) model_type = v;
    if (f.field == 40) unk_id = v;
    if (f.field == 41) bos_id = v;
    if (f.field == 42) eos_id = v;
    if (f.field == 43) pad_id = v;
  }
  if (err) return JFAIL(b, "malformed protobuf (trainer_spec)");
  if (model_type != 2) {
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "%s/%s: SentencePiece model type %lld is not supported (only BPE = 2)", b->dir,
                   b->file, (long long)model_type);
  }
  /* normalizer_spec: add_dummy_prefix (default true) */
  bool dummy_prefix = true;
  pb nr = {normalizer, normalizer ? normalizer + normalizer_len : NULL};
  while (normalizer && pb_next(&nr, &f, &err)) {
    if (f.field == 3 && f.wire == 0) dummy_prefix = f.v != 0;
  }
  if (err) return JFAIL(b, "malformed protobuf (normalizer_spec)");

  tl_status st = builder_init(b, (int32_t)n);
  if (st != TL_OK) return st;
  r = (pb){data, data + size};
  int32_t i = 0;
  while (pb_next(&r, &f, &err)) {
    if (f.field != 1 || f.wire != 2) continue;
    pb pr = {f.buf, f.buf + f.len};
    pb_field pf;
    bool perr = false, have_piece = false;
    float score = 0.0f;
    int64_t type = TL_TOKTYPE_NORMAL;
    while (pb_next(&pr, &pf, &perr)) {
      if (pf.field == 1 && pf.wire == 2) {
        b->tok[i] = (tl_str){(const char *)pf.buf, pf.len};
        have_piece = true;
      } else if (pf.field == 2 && pf.wire == 5) {
        uint32_t u = (uint32_t)pf.v;
        memcpy(&score, &u, 4);
      } else if (pf.field == 3 && pf.wire == 0) {
        type = (int64_t)pf.v;
      }
    }
    if (perr || !have_piece) return JFAIL(b, "piece %d is malformed", (int)i);
    if (type < TL_TOKTYPE_NORMAL || type > TL_TOKTYPE_BYTE) {
      return JFAIL(b, "piece %d has type %lld", (int)i, (long long)type);
    }
    if (isnan(score)) return JFAIL(b, "piece %d has a NaN score", (int)i);
    if (!tl_utf8_valid(b->tok[i].ptr, (size_t)b->tok[i].len)) {
      return JFAIL(b, "piece %d is not valid UTF-8", (int)i);
    }
    b->score[i] = score;
    b->type[i] = (int32_t)type;
    i++;
  }
  if (err) return JFAIL(b, "malformed protobuf (ModelProto)");
  builder_index(b);
  int64_t ids[4] = {unk_id, bos_id, eos_id, pad_id};
  tl_token *dst[4] = {&b->unk, &b->bos, &b->eos, &b->pad};
  for (int k = 0; k < 4; k++) {
    if (ids[k] >= n)
      return JFAIL(b, "trainer_spec special id %lld is out of range", (long long)ids[k]);
    *dst[k] = ids[k] < 0 ? -1 : (tl_token)ids[k];
  }
  if (b->add_bos < 0) b->add_bos = 1; /* LlamaTokenizer's default */
  return tl_gguf_set_bool(g, "tokenizer.ggml.add_space_prefix", dummy_prefix);
}

/* ---- tokenizer_config.json, generation_config.json --------------------------- */

/* A special token given as a string, {"content": ...} or null. *id: -1 for
 * null, unchanged when absent. */
static tl_status config_token(builder *b, const cJSON *cfg, const char *key, tl_token *id) {
  const cJSON *t = tl_json_get(cfg, key);
  if (!t) return TL_OK;
  if (cJSON_IsNull(t)) {
    *id = -1;
    return TL_OK;
  }
  if (cJSON_IsObject(t)) t = tl_json_get(t, "content");
  if (!cJSON_IsString(t))
    return JFAIL(b, "'%s' is not a string, an object with content or null", key);
  tl_token found = builder_find(b, t->valuestring, strlen(t->valuestring));
  if (found < 0) {
    return JFAIL(b, "'%s' is '%.64s', which is not a token of the vocabulary", key, t->valuestring);
  }
  *id = found;
  return TL_OK;
}

static tl_status config_bool(builder *b, const cJSON *cfg, const char *key, int *out) {
  const cJSON *t = tl_json_get(cfg, key);
  if (!t || cJSON_IsNull(t)) return TL_OK;
  if (!cJSON_IsBool(t)) return JFAIL(b, "'%s' is not a boolean", key);
  *out = cJSON_IsTrue(t) ? 1 : 0;
  return TL_OK;
}

static tl_status set_template(tl_gguf *g, builder *b, const cJSON *ct) {
  if (!ct || cJSON_IsNull(ct)) return TL_OK;
  if (cJSON_IsString(ct)) {
    return tl_gguf_set_str(g, "tokenizer.chat_template", ct->valuestring, strlen(ct->valuestring));
  }
  if (!cJSON_IsArray(ct)) return JFAIL(b, "'chat_template' is not a string or a list");
  const cJSON *e;
  cJSON_ArrayForEach(e, ct) {
    const cJSON *name = tl_json_get(e, "name"), *tmpl = tl_json_get(e, "template");
    if (!cJSON_IsString(name) || !cJSON_IsString(tmpl)) {
      return JFAIL(b, "a 'chat_template' entry lacks a string 'name' or 'template'");
    }
    char key[256];
    if (strcmp(name->valuestring, "default") == 0) {
      snprintf(key, sizeof key, "tokenizer.chat_template");
    } else {
      snprintf(key, sizeof key, "tokenizer.chat_template.%.200s", name->valuestring);
    }
    tl_status st = tl_gguf_set_str(g, key, tmpl->valuestring, strlen(tmpl->valuestring));
    if (st != TL_OK) return st;
  }
  return TL_OK;
}

static tl_status load_config(tl_gguf *g, builder *b, const char *dir) {
  cJSON *cfg = NULL;
  bool exists = false;
  tl_status st = parse_json(dir, "tokenizer_config.json", &cfg, &exists);
  if (st != TL_OK) return st;
  b->file = "tokenizer_config.json";
  if (exists && !cJSON_IsObject(cfg)) st = JFAIL(b, "the top level is not an object");
  if (st == TL_OK && exists) {
    if ((st = config_token(b, cfg, "bos_token", &b->bos)) == TL_OK &&
        (st = config_token(b, cfg, "eos_token", &b->eos)) == TL_OK &&
        (st = config_token(b, cfg, "unk_token", &b->unk)) == TL_OK &&
        (st = config_token(b, cfg, "pad_token", &b->pad)) == TL_OK &&
        (st = config_bool(b, cfg, "add_bos_token", &b->add_bos)) == TL_OK &&
        (st = config_bool(b, cfg, "add_eos_token", &b->add_eos)) == TL_OK) {
      st = set_template(g, b, tl_json_get(cfg, "chat_template"));
    }
  }
  cJSON_Delete(cfg);
  if (st != TL_OK) return st;

  /* newer folders keep the template in its own file */
  if (!tl_gguf_get(g, "tokenizer.chat_template")) {
    char *tmpl = NULL;
    size_t tn = 0;
    st = read_file(dir, "chat_template.jinja", &tmpl, &tn, &exists);
    if (st != TL_OK) return st;
    if (exists) {
      if (!tl_utf8_valid(tmpl, tn)) {
        free(tmpl);
        return tl_fail(TL_ERR_FORMAT, "%s/chat_template.jinja is not valid UTF-8", dir);
      }
      st = tl_gguf_set_str(g, "tokenizer.chat_template", tmpl, tn);
      free(tmpl);
      if (st != TL_OK) return st;
    }
  }

  /* generation_config.json: eos_token_id, an int or a list */
  cJSON *gen = NULL;
  st = parse_json(dir, "generation_config.json", &gen, &exists);
  if (st != TL_OK) return st;
  b->file = "generation_config.json";
  int32_t eog[64];
  int n_eog = 0;
  if (exists) {
    const cJSON *e = tl_json_get(gen, "eos_token_id");
    if (!cJSON_IsObject(gen)) {
      st = JFAIL(b, "the top level is not an object");
    } else if (e && !cJSON_IsNull(e)) {
      const cJSON *it;
      if (cJSON_IsNumber(e)) {
        int64_t id;
        if (!tl_json_int(e, 0, b->n - 1, &id))
          st = JFAIL(b, "'eos_token_id' is not a token id");
        else
          eog[n_eog++] = (int32_t)id;
      } else if (cJSON_IsArray(e)) {
        cJSON_ArrayForEach(it, e) {
          int64_t id;
          if (!tl_json_int(it, 0, b->n - 1, &id)) {
            st = JFAIL(b, "'eos_token_id' has an entry that is not a token id");
            break;
          }
          if (n_eog < 64) eog[n_eog++] = (int32_t)id;
        }
      } else {
        st = JFAIL(b, "'eos_token_id' is neither an integer nor a list");
      }
    }
  }
  cJSON_Delete(gen);
  if (st != TL_OK) return st;
  if (b->eos == -2 && n_eog > 0) b->eos = eog[0];
  int32_t extra[64];
  int n_extra = 0;
  for (int i = 0; i < n_eog; i++) {
    if (eog[i] != b->eos) extra[n_extra++] = eog[i];
  }
  if (n_extra > 0) {
    st = tl_gguf_set_arr(g, "tokenizer.ggml.eog_token_ids", TL_GGUF_I32, extra, (uint64_t)n_extra);
  }
  return st;
}

static tl_status write_specials(tl_gguf *g, builder *b) {
  static const char *const keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id",
                                      "tokenizer.ggml.padding_token_id"};
  tl_token ids[4] = {b->bos, b->eos, b->unk, b->pad};
  tl_status st;
  for (int k = 0; k < 4; k++) {
    if (ids[k] == -2) continue;
    st = ids[k] >= 0 ? tl_gguf_set_u32(g, keys[k], (uint32_t)ids[k])
                     : tl_gguf_set_i32(g, keys[k], -1);
    if (st != TL_OK) return st;
  }
  if ((st = tl_gguf_set_bool(g, "tokenizer.ggml.add_bos_token", b->add_bos == 1)) != TL_OK) {
    return st;
  }
  return tl_gguf_set_bool(g, "tokenizer.ggml.add_eos_token", b->add_eos == 1);
}

tl_status tl_hf_tokenizer_load(tl_gguf *view, const char *dir) {
  if (!view || !dir) return tl_fail(TL_ERR_INVALID_ARG, "tl_hf_tokenizer_load: NULL argument");
  builder b = {
      .dir = dir, .bos = -2, .eos = -2, .unk = -2, .pad = -2, .add_bos = -1, .add_eos = -1};
  tl_status st;
  cJSON *tj = NULL;
  char *proto = NULL;
  bool exists = false;
  st = parse_json(dir, "tokenizer.json", &tj, &exists);
  if (st != TL_OK) goto done;
  if (exists) {
    st = load_tokenizer_json(view, &b, tj);
  } else {
    size_t n = 0;
    st = read_file(dir, "tokenizer.model", &proto, &n, &exists);
    if (st != TL_OK) goto done;
    if (!exists) {
      st = tl_fail(TL_ERR_FORMAT, "%s has neither tokenizer.json nor tokenizer.model", dir);
      goto done;
    }
    st = load_tokenizer_model(view, &b, (const uint8_t *)proto, n);
  }
  if (st != TL_OK) goto done;
  if (b.add_bos < 0) b.add_bos = 0;
  if ((st = load_config(view, &b, dir)) != TL_OK) goto done;
  if ((st = write_tokens(view, &b)) != TL_OK) goto done;
  st = write_specials(view, &b);
done:
  cJSON_Delete(tj);
  free(proto);
  builder_free(&b);
  return st;
}

tl_status tl_hf_tokenizer_from_json(tl_gguf *view, const char *what, const struct cJSON *root) {
  if (!view || !what || !root)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_hf_tokenizer_from_json: NULL argument");
  builder b = {.dir = what,
               .file = "tokenizer",
               .bos = -2,
               .eos = -2,
               .unk = -2,
               .pad = -2,
               .add_bos = -1,
               .add_eos = -1};
  tl_status st = load_tokenizer_json(view, &b, root);
  if (st == TL_OK) {
    if (b.add_bos < 0) b.add_bos = 0;
    if ((st = write_tokens(view, &b)) == TL_OK) st = write_specials(view, &b);
  }
  builder_free(&b);
  return st;
}
