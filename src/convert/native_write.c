/* Torchless .bin writer (tl_model_convert_native): see format/native.h for the
 * layout. The source is loaded as a model (any format), so its weights come
 * through tl_weight_row_f32 whatever their type. llama.cpp's GGUF LLaMA files
 * hold Q and K with their rows permuted for adjacent-pair RoPE; those are
 * written back in the Hugging Face order the .bin format uses.
 *
 * The JSON header is written as Python's json.dumps(obj) writes it (separators
 * ", " and ": ", every character outside printable ASCII escaped as \\uXXXX,
 * surrogate pairs above U+FFFF). Quantization (int8): per group of 64
 * consecutive values, s = 127 / max|x| and q = round-half-even(x * s) clamped
 * to [-127, 127]; a group of zeros gets s = 1 and q = 0 (so x = q / s = 0). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/native.h"
#include "model/model.h"

#define GROUP 64
#define ALIGN 64

/* ---- a growable JSON text --------------------------------------------------- */

typedef struct jbuf {
  char *p;
  size_t n, cap;
  bool oom;
} jbuf;

static void jb_put(jbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = true;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void jb_s(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

static void jb_u64(jbuf *b, uint64_t v) {
  char t[32];
  jb_put(b, t, (size_t)snprintf(t, sizeof t, "%llu", (unsigned long long)v));
}

/* A JSON string as json.dumps (ensure_ascii) writes it; false on invalid UTF-8. */
static bool jb_str(jbuf *b, const char *s, size_t n) {
  jb_put(b, "\"", 1);
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    char t[16];
    if (c >= 0x20 && c < 0x7f) {
      if (c == '"' || c == '\\') {
        t[0] = '\\';
        t[1] = (char)c;
        jb_put(b, t, 2);
      } else {
        jb_put(b, (const char *)&s[i], 1);
      }
      i++;
      continue;
    }
    if (c < 0x80) {
      const char *e = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                    : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      if (e)
        jb_s(b, e);
      else
        jb_put(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", c));
      i++;
      continue;
    }
    int len = tl_utf8_check((const unsigned char *)s + i, n - i);
    if (len <= 0) return false;
    uint32_t cp;
    if (len == 2)
      cp = (uint32_t)(c & 0x1f) << 6 | (s[i + 1] & 0x3f);
    else if (len == 3)
      cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 | (s[i + 2] & 0x3f);
    else
      cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3f) << 12 |
           (uint32_t)(s[i + 2] & 0x3f) << 6 | (s[i + 3] & 0x3f);
    if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      jb_put(b, t,
             (size_t)snprintf(t, sizeof t, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff)));
    } else {
      jb_put(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", cp));
    }
    i += (size_t)len;
  }
  jb_put(b, "\"", 1);
  return true;
}

/* "key": "value" (metadata strings) */
static void jb_kv(jbuf *b, bool first, const char *k, const char *v) {
  if (!first) jb_s(b, ", ");
  jb_str(b, k, strlen(k));
  jb_s(b, ": ");
  jb_str(b, v, strlen(v));
}

/* A float as Python's repr writes the value of a float32 hyper-parameter:
 * the shortest digits that read back to the same float, fixed notation for
 * exponents in [-4, 16) ("1000000.0", "0.0001"), else "1e-05" style. */
static void py_float(float f, char *buf, size_t cap) {
  char e[64];
  int prec = 1;
  for (; prec <= 17; prec++) {
    snprintf(e, sizeof e, "%.*e", prec - 1, (double)f);
    if ((float)strtod(e, NULL) == f) break;
  }
  if (prec > 17) prec = 17;
  const char *ep = strchr(e, 'e');
  int exp = ep ? atoi(ep + 1) : 0;
  if (exp >= -4 && exp < 16) {
    int dec = prec - 1 - exp;
    snprintf(buf, cap, "%.*f", dec < 1 ? 1 : dec, (double)f);
  } else {
    snprintf(buf, cap, "%s", e);
  }
}

/* ---- the tensors -------------------------------------------------------------- */

typedef struct wt {
  char name[96];     /* Hugging Face name */
  const tl_weight *w; /* matrices */
  const float *vec;   /* vectors (norms) */
  int64_t rows, cols; /* vectors: rows = 1 */
  bool int8;
  int permute_heads; /* > 0: Q/K rows to un-permute, with this many heads */
  uint64_t offset, scale_offset, nbytes;
} wt;

static uint64_t align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

/* llama.cpp's permute: HF row (h, i, j) of [n_head, 2, hd/2] is GGUF row
 * h * hd + 2 j + i. */
static int64_t src_row(const wt *t, int64_t r) {
  if (t->permute_heads <= 0) return r;
  int64_t hd = t->rows / t->permute_heads, half = hd / 2;
  int64_t h = r / hd, k = r % hd, i = k / half, j = k % half;
  return h * hd + 2 * j + i;
}

static void quantize_row(const float *x, int64_t n, int8_t *q, float *scales) {
  for (int64_t g = 0; g < n / GROUP; g++) {
    const float *xg = x + g * GROUP;
    float amax = 0;
    for (int j = 0; j < GROUP; j++) amax = fmaxf(amax, fabsf(xg[j]));
    float s = amax > 0 ? 127.0f / amax : 1.0f;
    for (int j = 0; j < GROUP; j++) {
      float v = nearbyintf(xg[j] * s);
      q[g * GROUP + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    scales[g] = s;
  }
}

typedef struct writer {
  const char *out_path;
  char *tmp;
  FILE *f;
  uint64_t pos; /* bytes written after the header */
} writer;

static tl_status wr(writer *w, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, w->f) != n)
    return tl_fail(TL_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
  w->pos += n;
  return TL_OK;
}

static tl_status pad_to(writer *w, uint64_t at) {
  static const uint8_t zeros[ALIGN];
  while (w->pos < at) {
    size_t n = at - w->pos < ALIGN ? (size_t)(at - w->pos) : ALIGN;
    tl_status s = wr(w, zeros, n);
    if (s) return s;
  }
  return TL_OK;
}

static tl_status write_tensor(writer *w, const wt *t, float *row, int8_t *q, float *sc) {
  tl_status s = pad_to(w, t->offset);
  if (s) return s;
  if (t->vec) {
    for (int64_t i = 0; i < t->cols; i++)
      if (!isfinite(t->vec[i]))
        return tl_fail(TL_ERR_FORMAT, "tensor '%s' holds a non-finite value", t->name);
    return wr(w, t->vec, (size_t)t->cols * sizeof(float));
  }
  /* int8: all values first, then all scales (kept in memory: rows * cols / 64) */
  float *all_sc = NULL;
  if (t->int8 && !(all_sc = tl_malloc_array((size_t)(t->rows * (t->cols / GROUP)), sizeof(float))))
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  for (int64_t r = 0; r < t->rows && !s; r++) {
    tl_weight_row_f32(t->w, src_row(t, r), row);
    for (int64_t c = 0; c < t->cols; c++)
      if (!isfinite(row[c])) {
        s = tl_fail(TL_ERR_FORMAT, "tensor '%s' holds a non-finite value", t->name);
        break;
      }
    if (s) break;
    if (t->int8) {
      quantize_row(row, t->cols, q, sc);
      memcpy(all_sc + r * (t->cols / GROUP), sc, (size_t)(t->cols / GROUP) * sizeof(float));
      s = wr(w, q, (size_t)t->cols);
    } else {
      s = wr(w, row, (size_t)t->cols * sizeof(float));
    }
  }
  if (!s && t->int8) s = wr(w, all_sc, (size_t)(t->rows * (t->cols / GROUP)) * sizeof(float));
  free(all_sc);
  return s;
}

/* ---- the tokenizer --------------------------------------------------------------- */

typedef struct merge {
  tl_token l, r;
  float score;
  int64_t seq; /* insertion order (a stable sort) */
} merge;

static int merge_cmp(const void *a, const void *b) {
  const merge *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int local_cmp(const void *a, const void *b) {
  const merge *x = a, *y = b;
  if (x->l != y->l) return x->l < y->l ? -1 : 1;
  return x->r < y->r ? -1 : x->r > y->r;
}

/* SentencePiece merges as transformers' SpmConverter derives them: for every
 * piece, each split into two pieces of the vocabulary (at character
 * boundaries), ordered by the ids of the halves; all ordered by the piece's
 * score, highest first. Only normal pieces are merge results. */
static tl_status spm_merges(const tl_vocab *v, merge **out, int64_t *n_out) {
  int64_t n = 0, cap = 1024;
  merge *ms = malloc((size_t)cap * sizeof *ms);
  if (!ms) return tl_fail(TL_ERR_NOMEM, "out of memory");
  for (tl_token t = 0; t < v->n; t++) {
    if (v->type[t] != TL_TOKTYPE_NORMAL) continue;
    size_t len;
    const char *s = tl_vocab_text(v, t, &len);
    int64_t first = n;
    for (size_t k = 0; k < len;) {
      size_t cl = tl_utf8_len((const unsigned char *)s + k, len - k);
      if (cl == 0) cl = 1;
      k += cl;
      if (k >= len) break;
      tl_token l = tl_vocab_find(v, s, k), r = tl_vocab_find(v, s + k, len - k);
      if (l < 0 || r < 0) continue;
      if (n == cap) {
        cap *= 2;
        merge *nm = realloc(ms, (size_t)cap * sizeof *nm);
        if (!nm) {
          free(ms);
          return tl_fail(TL_ERR_NOMEM, "out of memory");
        }
        ms = nm;
      }
      ms[n++] = (merge){l, r, v->score[t], 0};
    }
    qsort(ms + first, (size_t)(n - first), sizeof *ms, local_cmp);
  }
  for (int64_t i = 0; i < n; i++) ms[i].seq = i;
  qsort(ms, (size_t)n, sizeof *ms, merge_cmp);
  *out = ms;
  *n_out = n;
  return TL_OK;
}

static tl_status write_tokenizer_json(jbuf *b, const tl_model *m) {
  const tl_vocab *v = m->vocab;
  jb_s(b, "\"tokenizer\": {\"vocab\": {");
  for (tl_token t = 0; t < v->n; t++) {
    size_t len;
    const char *s = tl_vocab_text(v, t, &len);
    if (t) jb_s(b, ", ");
    if (!jb_str(b, s, len))
      return tl_fail(TL_ERR_FORMAT, "token %d is not valid UTF-8", (int)t);
    jb_s(b, ": ");
    jb_u64(b, (uint64_t)t);
  }
  jb_s(b, "}, \"merges\": [");
  if (v->kind == TL_VOCAB_SPM) {
    merge *ms = NULL;
    int64_t n = 0;
    tl_status s = spm_merges(v, &ms, &n);
    if (s) return s;
    for (int64_t i = 0; i < n; i++) {
      size_t ll, rl;
      const char *l = tl_vocab_text(v, ms[i].l, &ll), *r = tl_vocab_text(v, ms[i].r, &rl);
      char *cat = malloc(ll + rl + 2);
      if (!cat) {
        free(ms);
        return tl_fail(TL_ERR_NOMEM, "out of memory");
      }
      memcpy(cat, l, ll);
      cat[ll] = ' ';
      memcpy(cat + ll + 1, r, rl);
      if (i) jb_s(b, ", ");
      jb_str(b, cat, ll + 1 + rl);
      free(cat);
    }
    free(ms);
  } else {
    const tl_gguf_value *mg = tl_gguf_get_arr(m->gguf, "tokenizer.ggml.merges", TL_GGUF_STRING);
    for (uint64_t i = 0; mg && i < mg->v.arr.n; i++) {
      if (i) jb_s(b, ", ");
      if (!jb_str(b, mg->v.arr.strs[i].ptr, (size_t)mg->v.arr.strs[i].len))
        return tl_fail(TL_ERR_FORMAT, "merge %llu is not valid UTF-8", (unsigned long long)i);
    }
  }
  jb_s(b, "]");
  /* torchless extensions: what the classic layout cannot say */
  if (v->kind == TL_VOCAB_BPE) {
    tl_str pre;
    if (tl_gguf_get_str(m->gguf, "tokenizer.ggml.pre", &pre) && pre.len > 0 && pre.len < 64) {
      jb_s(b, ", \"pre\": ");
      jb_str(b, pre.ptr, (size_t)pre.len);
    }
  }
  static const char *const keys[2] = {"bos_token", "eos_token"};
  static const char *const classic[2] = {"<s>", "</s>"};
  tl_token ids[2] = {tl_vocab_bos(v), tl_vocab_eos(v)};
  for (int k = 0; k < 2; k++) {
    if (ids[k] < 0) continue;
    size_t len;
    const char *s = tl_vocab_text(v, ids[k], &len);
    if (len == strlen(classic[k]) && !memcmp(s, classic[k], len)) continue;
    jb_s(b, ", \"");
    jb_s(b, keys[k]);
    jb_s(b, "\": ");
    jb_str(b, s, len);
  }
  jb_s(b, "}");
  return TL_OK;
}

/* ---- the model -------------------------------------------------------------------- */

static tl_status check_model(const tl_model *m) {
  const tl_hparams *hp = &m->hp;
  if (strcmp(m->arch_name, "llama") != 0)
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "architecture '%s': the Torchless .bin format holds LLaMA/Mistral models only",
                   m->arch_name);
  if (!m->vocab || (m->vocab->kind != TL_VOCAB_SPM && m->vocab->kind != TL_VOCAB_BPE))
    return tl_fail(TL_ERR_UNSUPPORTED, "the model has no tokenizer the .bin format can hold");
  if (hp->rope_freq_factors || hp->rope_freq_scale != 1.0f)
    return tl_fail(TL_ERR_UNSUPPORTED, "RoPE scaling cannot be written to a .bin file");
  if (hp->n_rot != hp->head_dim)
    return tl_fail(TL_ERR_UNSUPPORTED, "partial RoPE cannot be written to a .bin file");
  if (fabsf(hp->attn_scale * sqrtf((float)hp->head_dim) - 1.0f) > 1e-6f)
    return tl_fail(TL_ERR_UNSUPPORTED, "a custom attention scale cannot be written to a .bin file");
  for (int il = 0; il < hp->n_layer; il++) {
    const tl_layer *L = &m->layers[il];
    if (L->bq || L->bk || L->bv || L->bo || L->b_up || L->b_down || L->q_norm ||
        L->post_attn_norm || L->post_ffn_norm || L->attn_norm_b || L->ffn_norm_b ||
        !L->ffn_norm || !L->w_gate.data)
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "layer %d has tensors the LLaMA-only .bin format cannot hold", il);
    if (L->window != hp->swa_window && L->window != 0)
      return tl_fail(TL_ERR_UNSUPPORTED, "per-layer sliding windows cannot be written");
    if ((L->window == 0) != (m->layers[0].window == 0))
      return tl_fail(TL_ERR_UNSUPPORTED, "per-layer sliding windows cannot be written");
  }
  if (m->output_b || m->output_norm_b)
    return tl_fail(TL_ERR_UNSUPPORTED, "an output bias cannot be written to a .bin file");
  return TL_OK;
}

static tl_status build_list(const tl_model *m, bool int8, wt **out, int *n_out) {
  const tl_hparams *hp = &m->hp;
  int n = 3 + 9 * hp->n_layer, k = 0;
  wt *ts = tl_calloc_array((size_t)n, sizeof *ts);
  if (!ts) return tl_fail(TL_ERR_NOMEM, "out of memory");
  bool norm_rope = hp->rope_kind == TL_ROPE_NORM; /* llama.cpp's permuted Q/K */
#define MAT(nm, wp, q8, ph)                                                     \
  do {                                                                          \
    wt *t = &ts[k++];                                                           \
    snprintf(t->name, sizeof t->name, "%s", nm);                                \
    t->w = (wp);                                                                \
    t->rows = (wp)->rows;                                                       \
    t->cols = (wp)->cols;                                                       \
    t->int8 = (q8) && t->cols % GROUP == 0;                                     \
    t->permute_heads = (ph);                                                    \
  } while (0)
#define VEC(nm, vp, len)                        \
  do {                                          \
    wt *t = &ts[k++];                           \
    snprintf(t->name, sizeof t->name, "%s", nm); \
    t->vec = (vp);                              \
    t->rows = 1;                                \
    t->cols = (len);                            \
  } while (0)
  char nm[96];
  MAT("model.embed_tokens.weight", &m->tok_embd, false, 0);
  for (int il = 0; il < hp->n_layer; il++) {
    const tl_layer *L = &m->layers[il];
#define N(x) (snprintf(nm, sizeof nm, "model.layers.%d." x, il), nm)
    VEC(N("input_layernorm.weight"), L->attn_norm, hp->n_embd);
    MAT(N("self_attn.q_proj.weight"), &L->wq, int8, norm_rope ? hp->n_head : 0);
    MAT(N("self_attn.k_proj.weight"), &L->wk, int8, norm_rope ? hp->n_head_kv : 0);
    MAT(N("self_attn.v_proj.weight"), &L->wv, int8, 0);
    MAT(N("self_attn.o_proj.weight"), &L->wo, int8, 0);
    VEC(N("post_attention_layernorm.weight"), L->ffn_norm, hp->n_embd);
    MAT(N("mlp.gate_proj.weight"), &L->w_gate, int8, 0);
    MAT(N("mlp.up_proj.weight"), &L->w_up, int8, 0);
    MAT(N("mlp.down_proj.weight"), &L->w_down, int8, 0);
#undef N
  }
  VEC("model.norm.weight", m->output_norm, hp->n_embd);
  MAT("lm_head.weight", &m->output, false, 0);
#undef MAT
#undef VEC
  uint64_t off = 0;
  for (int i = 0; i < k; i++) {
    wt *t = &ts[i];
    uint64_t numel = (uint64_t)t->rows * (uint64_t)t->cols;
    t->offset = align_up(off);
    t->nbytes = t->int8 ? numel + numel / GROUP * 4 : numel * 4;
    t->scale_offset = t->offset + numel;
    off = t->offset + t->nbytes;
  }
  *out = ts;
  *n_out = k;
  return TL_OK;
}

static tl_status header_json(const tl_model *m, bool int8, const wt *ts, int n, jbuf *b) {
  const tl_hparams *hp = &m->hp;
  char v[64];
  jb_s(b, "{\"metadata\": {");
#define META_I(k, x, first) (snprintf(v, sizeof v, "%lld", (long long)(x)), jb_kv(b, first, k, v))
  META_I("hidden_size", hp->n_embd, true);
  META_I("intermediate_size", hp->n_ff, false);
  META_I("n_layers", hp->n_layer, false);
  META_I("n_heads", hp->n_head, false);
  META_I("n_kv_heads", hp->n_head_kv, false);
  META_I("vocab_size", hp->n_vocab, false);
  META_I("max_position_embeddings", hp->n_ctx_train, false);
  if (m->layers[0].window > 0)
    META_I("sliding_window", hp->swa_window, false);
  else
    jb_kv(b, false, "sliding_window", "None");
  py_float(hp->rope_theta, v, sizeof v);
  jb_kv(b, false, "rope_theta", v);
  py_float(hp->norm_eps, v, sizeof v);
  jb_kv(b, false, "norm_eps", v);
  jb_kv(b, false, "act_type", "silu");
  jb_kv(b, false, "quant", int8 ? "int8" : "f32");
  if (hp->n_embd % hp->n_head || hp->head_dim != hp->n_embd / hp->n_head)
    META_I("head_dim", hp->head_dim, false);
#undef META_I
  jb_s(b, "}, \"tensors\": {");
  for (int i = 0; i < n; i++) {
    const wt *t = &ts[i];
    if (i) jb_s(b, ", ");
    jb_str(b, t->name, strlen(t->name));
    jb_s(b, t->int8 ? ": {\"dtype\": \"int8\", \"shape\": [" : ": {\"dtype\": \"f32\", \"shape\": [");
    if (t->vec) {
      jb_u64(b, (uint64_t)t->cols);
    } else {
      jb_u64(b, (uint64_t)t->rows);
      jb_s(b, ", ");
      jb_u64(b, (uint64_t)t->cols);
    }
    jb_s(b, "], \"offset\": ");
    jb_u64(b, t->offset);
    if (t->int8) {
      jb_s(b, ", \"scale_offset\": ");
      jb_u64(b, t->scale_offset);
      jb_s(b, ", \"scale_size\": ");
      jb_u64(b, (uint64_t)t->rows * (uint64_t)t->cols / GROUP);
    }
    jb_s(b, "}");
  }
  jb_s(b, "}, ");
  tl_status s = write_tokenizer_json(b, m);
  if (s) return s;
  jb_s(b, "}");
  return b->oom ? tl_fail(TL_ERR_NOMEM, "out of memory") : TL_OK;
}

static tl_status open_tmp(writer *w) {
  size_t n = strlen(w->out_path) + 16;
  w->tmp = malloc(n);
  if (!w->tmp) return tl_fail(TL_ERR_NOMEM, "out of memory");
  snprintf(w->tmp, n, "%s.tmpXXXXXX", w->out_path);
  int fd = mkstemp(w->tmp);
  if (fd < 0) {
    tl_status s = tl_fail(TL_ERR_IO, "cannot create '%s': %s", w->tmp, strerror(errno));
    free(w->tmp);
    w->tmp = NULL;
    return s;
  }
  fchmod(fd, 0644);
  w->f = fdopen(fd, "wb");
  if (!w->f) {
    close(fd);
    unlink(w->tmp);
    free(w->tmp);
    w->tmp = NULL;
    return tl_fail(TL_ERR_IO, "cannot open a stream on the temporary file");
  }
  return TL_OK;
}

static tl_status convert(const tl_model *m, const char *out_path, bool int8, tl_progress_fn progress,
                         void *user) {
  tl_status s = check_model(m);
  if (s) return s;
  wt *ts = NULL;
  int n = 0;
  if ((s = build_list(m, int8, &ts, &n))) return s;
  jbuf b = {0};
  writer w = {.out_path = out_path};
  int64_t maxc = m->hp.n_embd > m->hp.n_ff ? m->hp.n_embd : m->hp.n_ff;
  if (m->hp.n_head * m->hp.head_dim > maxc) maxc = m->hp.n_head * m->hp.head_dim;
  float *row = tl_malloc_array((size_t)maxc, sizeof(float));
  float *sc = tl_malloc_array((size_t)maxc / GROUP + 1, sizeof(float));
  int8_t *q = malloc((size_t)maxc);
  if (!row || !sc || !q) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  if ((s = header_json(m, int8, ts, n, &b))) goto done;
  /* NUL padding: the payload starts 64-byte aligned at 8 + header_size */
  uint64_t hs = align_up(8 + (uint64_t)b.n) - 8;
  uint8_t hsb[8];
  for (int i = 0; i < 8; i++) hsb[i] = (uint8_t)(hs >> (8 * i));
  if ((s = open_tmp(&w))) goto done;
  if ((s = wr(&w, hsb, 8)) || (s = wr(&w, b.p, b.n)) || (s = pad_to(&w, 8 + hs))) goto done;
  w.pos = 0; /* offsets count from the payload */
  for (int i = 0; i < n; i++) {
    const wt *t = &ts[i];
    if (progress) {
      uint64_t numel = (uint64_t)t->rows * (uint64_t)t->cols;
      tl_quantize_progress p = {.index = i,
                                .count = n,
                                .name = t->name,
                                .src_type = t->vec ? "F32" : tl_type_name(t->w->type),
                                .dst_type = t->int8 ? "I8" : "F32",
                                .ne = {t->cols, t->rows, 1, 1},
                                .src_bytes = t->vec ? numel * 4 : (uint64_t)t->rows * t->w->row_bytes,
                                .dst_bytes = t->nbytes};
      if (!progress(&p, user)) {
        s = tl_fail(TL_ERR_ABORTED, "cancelled");
        goto done;
      }
    }
    if ((s = write_tensor(&w, t, row, q, sc))) goto done;
  }
  if ((s = pad_to(&w, align_up(w.pos)))) goto done;
  if (fflush(w.f) != 0 || fsync(fileno(w.f)) != 0) {
    s = tl_fail(TL_ERR_IO, "cannot write '%s': %s", w.tmp, strerror(errno));
    goto done;
  }
  if (fclose(w.f) != 0) {
    w.f = NULL;
    s = tl_fail(TL_ERR_IO, "cannot write '%s': %s", w.tmp, strerror(errno));
    goto done;
  }
  w.f = NULL;
  if (rename(w.tmp, out_path) != 0)
    s = tl_fail(TL_ERR_IO, "cannot rename '%s' to '%s': %s", w.tmp, out_path, strerror(errno));
done:
  if (w.f) fclose(w.f);
  if (s && w.tmp) unlink(w.tmp);
  free(w.tmp);
  free(b.p);
  free(ts);
  free(row);
  free(sc);
  free(q);
  return s;
}

tl_status tl_model_convert_native(const char *in_path, const char *out_path, bool int8,
                                  tl_progress_fn progress, void *progress_user) {
  if (!in_path || !out_path)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_model_convert_native: NULL path");
  tl_model *m;
  tl_status s = tl_model_load(in_path, NULL, &m);
  if (s) return s;
  s = convert(m, out_path, int8, progress, progress_user);
  if (s) tl_fail_prefix(s, "converting '%s' to '%s'", in_path, out_path);
  tl_model_free(m);
  return s;
}
