/* Torchless .bin reader: see native.h. */
#include "format/native.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "format/hf.h"
#include "format/json.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

#define GROUP 64
#define MAX_EXACT 9007199254740992.0 /* 2^53: integers a double holds exactly */

bool tl_native_sniff(const void *head, size_t n) {
  const uint8_t *p = head;
  if (!p || n < 9) return false;
  if (memcmp(p, "GGUF", 4) == 0) return false;
  /* any size from 2 up: one past the end of the file is for the reader to
   * report (a safetensors file looks the same; the reader says so) */
  if (tl_rd_u64(p) < 2) return false;
  size_t i = 8, lim = n < 8 + 16 ? n : 8 + 16;
  while (i < lim && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
  return i < lim && p[i] == '{';
}

bool tl_native_file(const char *path) {
  if (!path) return false;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t buf[32];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  return n > 0 && tl_native_sniff(buf, (size_t)n);
}

/* ---- the reader ---------------------------------------------------------- */

typedef struct rd {
  const char *path;
  tl_gguf *g;
  const uint8_t *payload;
  uint64_t payload_size;
  int64_t hidden, ff, n_layer, n_head, n_kv, vocab, ctx, window, head_dim;
  double theta, eps;
} rd;

/* A metadata value as text: a string (the classic form) or a JSON number. */
static bool meta_text(const cJSON *j, char *buf, size_t cap) {
  if (cJSON_IsString(j) && j->valuestring) {
    size_t n = strlen(j->valuestring);
    if (n == 0 || n >= cap) return false;
    memcpy(buf, j->valuestring, n + 1);
    return true;
  }
  if (cJSON_IsNumber(j) && isfinite(j->valuedouble)) {
    snprintf(buf, cap, "%.17g", j->valuedouble);
    return true;
  }
  return false;
}

/* A decimal integer in [lo, hi]: digits only (a JSON number must be integral). */
static tl_status meta_int(const rd *r, const cJSON *md, const char *k, bool required, int64_t def,
                          int64_t lo, int64_t hi, int64_t *out) {
  const cJSON *j = tl_json_get(md, k);
  if (!j) {
    if (required) return tl_fail(TL_ERR_FORMAT, "'%s': metadata has no '%s'", r->path, k);
    *out = def;
    return TL_OK;
  }
  char buf[64];
  if (!meta_text(j, buf, sizeof buf))
    return tl_fail(TL_ERR_FORMAT, "'%s': metadata '%s' must be an integer string (it is %s)",
                   r->path, k, tl_json_type(j));
  size_t n = strlen(buf);
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i] < '0' || buf[i] > '9' || v > (INT64_MAX - 9) / 10)
      return tl_fail(TL_ERR_FORMAT, "'%s': metadata '%s' = '%.40s' is not a non-negative integer",
                     r->path, k, buf);
    v = v * 10 + (buf[i] - '0');
  }
  if (v < lo || v > hi)
    return tl_fail(TL_ERR_FORMAT, "'%s': metadata '%s' = %lld is out of range [%lld, %lld]", r->path,
                   k, (long long)v, (long long)lo, (long long)hi);
  *out = v;
  return TL_OK;
}

/* A finite positive number ("10000.0", "1e-05"). */
static tl_status meta_pos(const rd *r, const cJSON *md, const char *k, double *out) {
  const cJSON *j = tl_json_get(md, k);
  if (!j) return tl_fail(TL_ERR_FORMAT, "'%s': metadata has no '%s'", r->path, k);
  char buf[64];
  if (!meta_text(j, buf, sizeof buf))
    return tl_fail(TL_ERR_FORMAT, "'%s': metadata '%s' must be a number string (it is %s)",
                   r->path, k, tl_json_type(j));
  char *end;
  errno = 0;
  double v = strtod(buf, &end);
  if (end == buf || *end || errno || !isfinite(v) || !(v > 0))
    return tl_fail(TL_ERR_FORMAT, "'%s': metadata '%s' = '%.40s' is not a positive number",
                   r->path, k, buf);
  *out = v;
  return TL_OK;
}

static tl_status put_u32(rd *r, const char *k, int64_t v) {
  return tl_gguf_set_u32(r->g, k, (uint32_t)v);
}

static tl_status read_metadata(rd *r, const cJSON *md) {
  if (!cJSON_IsObject(md))
    return tl_fail(TL_ERR_FORMAT, "'%s': the header has no 'metadata' object", r->path);
  tl_status s;
  const int64_t big = 1 << 30;
  if ((s = meta_int(r, md, "hidden_size", true, 0, 1, big, &r->hidden)) ||
      (s = meta_int(r, md, "intermediate_size", true, 0, 1, big, &r->ff)) ||
      (s = meta_int(r, md, "n_layers", true, 0, 1, 4096, &r->n_layer)) ||
      (s = meta_int(r, md, "n_heads", true, 0, 1, 4096, &r->n_head)) ||
      (s = meta_int(r, md, "n_kv_heads", true, 0, 1, 4096, &r->n_kv)) ||
      (s = meta_int(r, md, "vocab_size", true, 0, 1, 1 << 24, &r->vocab)) ||
      (s = meta_int(r, md, "max_position_embeddings", true, 0, 1, big, &r->ctx)) ||
      (s = meta_pos(r, md, "rope_theta", &r->theta)) || (s = meta_pos(r, md, "norm_eps", &r->eps)))
    return s;
  if (r->n_head % r->n_kv)
    return tl_fail(TL_ERR_FORMAT, "'%s': %lld heads cannot share %lld kv heads", r->path,
                   (long long)r->n_head, (long long)r->n_kv);
  /* sliding_window: an integer, or None / null / 0 for none */
  r->window = 0;
  const cJSON *sw = tl_json_get(md, "sliding_window");
  if (sw && !cJSON_IsNull(sw) &&
      !(cJSON_IsString(sw) && (!strcmp(sw->valuestring, "None") ||
                               !strcmp(sw->valuestring, "null") || !sw->valuestring[0]))) {
    if ((s = meta_int(r, md, "sliding_window", false, 0, 0, INT32_MAX, &r->window))) return s;
  }
  if (tl_json_get(md, "head_dim")) {
    if ((s = meta_int(r, md, "head_dim", false, 0, 2, 4096, &r->head_dim))) return s;
  } else {
    if (r->hidden % r->n_head)
      return tl_fail(TL_ERR_FORMAT, "'%s': hidden_size %lld is not a multiple of n_heads %lld",
                     r->path, (long long)r->hidden, (long long)r->n_head);
    r->head_dim = r->hidden / r->n_head;
  }
  if (r->head_dim % 2)
    return tl_fail(TL_ERR_UNSUPPORTED, "'%s': head size %lld is odd", r->path,
                   (long long)r->head_dim);
  const cJSON *act = tl_json_get(md, "act_type");
  if (act) {
    if (!cJSON_IsString(act))
      return tl_fail(TL_ERR_FORMAT, "'%s': metadata 'act_type' is not a string", r->path);
    if (strcmp(act->valuestring, "silu") != 0 && strcmp(act->valuestring, "swish") != 0)
      return tl_fail(TL_ERR_UNSUPPORTED, "'%s': activation '%.32s' is not supported (only silu)",
                     r->path, act->valuestring);
  }
  const cJSON *q = tl_json_get(md, "quant");
  if (q && (!cJSON_IsString(q) ||
            (strcmp(q->valuestring, "f32") != 0 && strcmp(q->valuestring, "int8") != 0)))
    return tl_fail(TL_ERR_FORMAT, "'%s': metadata 'quant' must be \"f32\" or \"int8\"", r->path);
  tl_gguf *g = r->g;
  if ((s = tl_gguf_set_str(g, "general.architecture", "llama", 5)) ||
      (s = tl_gguf_set_str(g, "general.name", "torchless", 9)) ||
      (s = put_u32(r, "llama.block_count", r->n_layer)) ||
      (s = put_u32(r, "llama.context_length", r->ctx)) ||
      (s = put_u32(r, "llama.embedding_length", r->hidden)) ||
      (s = put_u32(r, "llama.feed_forward_length", r->ff)) ||
      (s = put_u32(r, "llama.attention.head_count", r->n_head)) ||
      (s = put_u32(r, "llama.attention.head_count_kv", r->n_kv)) ||
      (s = put_u32(r, "llama.attention.key_length", r->head_dim)) ||
      (s = put_u32(r, "llama.attention.value_length", r->head_dim)) ||
      (s = put_u32(r, "llama.rope.dimension_count", r->head_dim)) ||
      (s = put_u32(r, "llama.vocab_size", r->vocab)) ||
      (s = tl_gguf_set_f32(g, "llama.rope.freq_base", (float)r->theta)) ||
      (s = tl_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", (float)r->eps)) ||
      (s = tl_gguf_set_str(g, "torchless.rope.type", "neox", 4)))
    return s;
  if (r->window > 0 && (s = put_u32(r, "llama.attention.sliding_window", r->window))) return s;
  return TL_OK;
}

/* ---- tensors ------------------------------------------------------------- */

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_u53(const cJSON *j, uint64_t *out) {
  int64_t v;
  if (!tl_json_int(j, 0, MAX_EXACT, &v)) return false;
  *out = (uint64_t)v;
  return true;
}

/* The shape (HF order, outermost first) the metadata implies for a GGUF
 * tensor name; 0 dims when the name is not one we check. */
static int expected_shape(const rd *r, const char *gname, int64_t want[2], int64_t *layer) {
  int64_t d = r->hidden, qd = r->n_head * r->head_dim, kvd = r->n_kv * r->head_dim;
  *layer = -1;
  if (!strcmp(gname, "token_embd.weight") || !strcmp(gname, "output.weight")) {
    want[0] = r->vocab, want[1] = d;
    return 2;
  }
  if (!strcmp(gname, "output_norm.weight")) {
    want[0] = d;
    return 1;
  }
  if (strncmp(gname, "blk.", 4) != 0) return 0;
  const char *p = gname + 4;
  int64_t il = 0;
  while (*p >= '0' && *p <= '9' && il < (1 << 24)) il = il * 10 + (*p++ - '0');
  if (*p++ != '.') return 0;
  *layer = il;
  static const struct {
    const char *name;
    int dims, rows, cols; /* 0 hidden, 1 q dim, 2 kv dim, 3 ff */
  } k[] = {{"attn_norm.weight", 1, 0, 0},   {"ffn_norm.weight", 1, 0, 0},
           {"attn_q.weight", 2, 1, 0},      {"attn_k.weight", 2, 2, 0},
           {"attn_v.weight", 2, 2, 0},      {"attn_output.weight", 2, 0, 1},
           {"ffn_gate.weight", 2, 3, 0},    {"ffn_up.weight", 2, 3, 0},
           {"ffn_down.weight", 2, 0, 3}};
  int64_t dim[4] = {d, qd, kvd, r->ff};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    if (strcmp(p, k[i].name) != 0) continue;
    want[0] = dim[k[i].rows];
    want[1] = dim[k[i].cols];
    return k[i].dims;
  }
  return 0;
}

static tl_status add_one(rd *r, const cJSON *e) {
  const char *name = e->string ? e->string : "";
  if (!cJSON_IsObject(e))
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' is not an object", r->path, name);
  const cJSON *dt = tl_json_get(e, "dtype"), *sh = tl_json_get(e, "shape");
  bool i8;
  if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "f32"))
    i8 = false;
  else if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "int8"))
    i8 = true;
  else
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' has dtype %s%.16s%s (f32 or int8 expected)",
                   r->path, name, cJSON_IsString(dt) ? "'" : "",
                   cJSON_IsString(dt) ? dt->valuestring : tl_json_type(dt),
                   cJSON_IsString(dt) ? "'" : "");
  int nd = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
  if (nd < 1 || nd > TL_GGUF_MAX_DIMS)
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' needs a shape of 1 to 4 dimensions",
                   r->path, name);
  int64_t shape[TL_GGUF_MAX_DIMS];
  uint64_t numel = 1;
  for (int i = 0; i < nd; i++) {
    uint64_t v;
    if (!json_u53(cJSON_GetArrayItem(sh, i), &v) || v == 0 || v > ((uint64_t)1 << 40) ||
        !tl_mul_u64(numel, v, &numel) || numel > ((uint64_t)1 << 48))
      return tl_fail(TL_ERR_FORMAT,
                     "'%s': tensor '%.100s' has an invalid shape (a dimension is not a positive "
                     "integer, or their product overflows)",
                     r->path, name);
    shape[i] = (int64_t)v;
  }
  uint64_t off, nbytes = i8 ? numel : numel * 4, end;
  if (!json_u53(tl_json_get(e, "offset"), &off))
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' has no valid 'offset'", r->path, name);
  if (!tl_add_u64(off, nbytes, &end) || end > r->payload_size)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s': tensor '%.100s' (%llu bytes at offset %llu) lies outside the payload "
                   "(%llu bytes)",
                   r->path, name, (unsigned long long)nbytes, (unsigned long long)off,
                   (unsigned long long)r->payload_size);
  const uint8_t *data = r->payload + off;
  if (!i8 && (uintptr_t)data % 4)
    return tl_fail(TL_ERR_FORMAT, "'%s': f32 tensor '%.100s' is not 4-byte aligned", r->path, name);
  if (i8 && shape[nd - 1] % GROUP)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s': int8 tensor '%.100s' has rows of %lld values, not a multiple of %d",
                   r->path, name, (long long)shape[nd - 1], GROUP);
  char gname[256];
  if (!tl_hf_tensor_name("llama", name, gname, sizeof gname)) {
    tl_log(TL_LOG_DEBUG, "'%s': ignoring tensor '%s'", r->path, name);
    return TL_OK;
  }
  int64_t want[2], layer;
  int wd = expected_shape(r, gname, want, &layer);
  if (layer >= r->n_layer)
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' is for layer %lld, but n_layers is %lld",
                   r->path, name, (long long)layer, (long long)r->n_layer);
  if (wd && (wd != nd || shape[0] != want[0] || (nd == 2 && shape[1] != want[1]))) {
    char have[96] = "", need[64];
    for (int i = 0; i < nd; i++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", i ? ", " : "",
               (long long)shape[i]);
    if (wd == 1)
      snprintf(need, sizeof need, "%lld", (long long)want[0]);
    else
      snprintf(need, sizeof need, "%lld, %lld", (long long)want[0], (long long)want[1]);
    return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%.100s' has shape [%s], the metadata implies [%s]",
                   r->path, name, have, need);
  }
  int64_t ne[TL_GGUF_MAX_DIMS];
  for (int i = 0; i < nd; i++) ne[i] = shape[nd - 1 - i];
  tl_status s;
  if (!i8) return tl_gguf_add_tensor(r->g, gname, TL_TYPE_F32, (uint32_t)nd, ne, data, nbytes);
  /* int8: numel / 64 scales, groups never crossing a row (checked above) */
  uint64_t n_sc = numel / GROUP, soff = off + numel, ssize;
  const cJSON *so = tl_json_get(e, "scale_offset"), *ss = tl_json_get(e, "scale_size");
  if (so && !json_u53(so, &soff))
    return tl_fail(TL_ERR_FORMAT, "'%s': int8 tensor '%.100s' has an invalid 'scale_offset'",
                   r->path, name);
  if (ss) {
    /* the number of scales, or their size in bytes */
    if (!json_u53(ss, &ssize) || (ssize != n_sc && ssize != n_sc * 4))
      return tl_fail(TL_ERR_FORMAT,
                     "'%s': int8 tensor '%.100s' has scale_size %.0f, but %llu elements need %llu "
                     "scales",
                     r->path, name, cJSON_IsNumber(ss) ? ss->valuedouble : -1.0,
                     (unsigned long long)numel, (unsigned long long)n_sc);
  }
  if (!tl_add_u64(soff, n_sc * 4, &end) || end > r->payload_size)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s': the scales of int8 tensor '%.100s' (offset %llu) lie outside the payload",
                   r->path, name, (unsigned long long)soff);
  if ((uintptr_t)(r->payload + soff) % 4)
    return tl_fail(TL_ERR_FORMAT, "'%s': the scales of '%.100s' are not 4-byte aligned", r->path,
                   name);
  if ((s = tl_gguf_add_tensor(r->g, gname, TL_TYPE_I8, (uint32_t)nd, ne, data, nbytes))) return s;
  char sname[300];
  snprintf(sname, sizeof sname, "%s.scale", gname);
  int64_t sne[1] = {(int64_t)n_sc};
  return tl_gguf_add_tensor(r->g, sname, TL_TYPE_F32, 1, sne, r->payload + soff, n_sc * 4);
}

static tl_status read_tensors(rd *r, const cJSON *ts) {
  if (!cJSON_IsObject(ts))
    return tl_fail(TL_ERR_FORMAT, "'%s': the header has no 'tensors' object", r->path);
  const cJSON *e;
  cJSON_ArrayForEach(e, ts) {
    tl_status s = add_one(r, e);
    if (s) return s;
  }
  return TL_OK;
}

/* ---- tokenizer ------------------------------------------------------------ */

static bool vocab_has(const cJSON *vocab, const char *tok) {
  return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(vocab, tok));
}

/* SentencePiece style: byte tokens <0xXX> and the U+2581 space marker. */
static bool vocab_is_spm(const cJSON *vocab) {
  bool bytes = false, marker = false;
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    const char *s = e->string;
    if (!s) continue;
    if (strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>') bytes = true;
    if (strstr(s, "\xe2\x96\x81")) marker = true;
    if (bytes && marker) return true;
  }
  return false;
}

/* An optional string member of the tokenizer object (a torchless extension). */
static tl_status tok_str(const rd *r, const cJSON *tok, const char *k, const char **out) {
  const cJSON *j = tl_json_get(tok, k);
  *out = NULL;
  if (!j || cJSON_IsNull(j)) return TL_OK;
  if (!cJSON_IsString(j) || !j->valuestring[0] || strlen(j->valuestring) > 256)
    return tl_fail(TL_ERR_FORMAT, "'%s': tokenizer '%s' is not a token string", r->path, k);
  *out = j->valuestring;
  return TL_OK;
}

static tl_status add_special(cJSON *added, const cJSON *vocab, const char *tok) {
  if (!tok || !vocab_has(vocab, tok)) return TL_OK;
  const cJSON *c;
  cJSON_ArrayForEach(c, added) if (!strcmp(cJSON_GetObjectItem(c, "content")->valuestring, tok))
    return TL_OK;
  cJSON *e = cJSON_CreateObject();
  if (!e || !cJSON_AddItemToArray(added, e) ||
      !cJSON_AddNumberToObject(e, "id", cJSON_GetObjectItemCaseSensitive(vocab, tok)->valuedouble) ||
      !cJSON_AddStringToObject(e, "content", tok) || !cJSON_AddTrueToObject(e, "special"))
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  return TL_OK;
}

/* Build a tokenizer.json document around the file's vocab and merges (not
 * copied: referenced) and convert it as the Hugging Face loader does. */
static tl_status read_tokenizer(rd *r, const cJSON *tok) {
  if (!tok || cJSON_IsNull(tok)) {
    tl_log(TL_LOG_WARN, "'%s' has no tokenizer (the model loads without one)", r->path);
    return TL_OK;
  }
  const cJSON *vocab = tl_json_get(tok, "vocab"), *merges = tl_json_get(tok, "merges");
  if (!cJSON_IsObject(tok) || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
    return tl_fail(TL_ERR_FORMAT,
                   "'%s': 'tokenizer' must be an object with a 'vocab' object and a 'merges' "
                   "array",
                   r->path);
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0) || e->valuedouble >= (double)r->vocab ||
        floor(e->valuedouble) != e->valuedouble)
      return tl_fail(TL_ERR_FORMAT,
                     "'%s': token '%.64s' has an id that is not an integer in [0, vocab_size = "
                     "%lld)",
                     r->path, e->string ? e->string : "", (long long)r->vocab);
  }
  tl_status s;
  const char *pre, *bos, *eos;
  if ((s = tok_str(r, tok, "pre", &pre)) || (s = tok_str(r, tok, "bos_token", &bos)) ||
      (s = tok_str(r, tok, "eos_token", &eos)))
    return s;
  bool spm = vocab_is_spm(vocab);
  if (!bos && vocab_has(vocab, "<s>")) bos = "<s>";
  if (!eos && vocab_has(vocab, "</s>")) eos = "</s>";
  if (bos && !vocab_has(vocab, bos))
    return tl_fail(TL_ERR_FORMAT, "'%s': bos_token '%.64s' is not in the vocabulary", r->path, bos);
  if (eos && !vocab_has(vocab, eos))
    return tl_fail(TL_ERR_FORMAT, "'%s': eos_token '%.64s' is not in the vocabulary", r->path, eos);

  cJSON *doc = cJSON_CreateObject(), *model = NULL, *added = NULL;
  s = tl_fail(TL_ERR_NOMEM, "out of memory");
  if (!doc || !(model = cJSON_AddObjectToObject(doc, "model")) ||
      !cJSON_AddStringToObject(model, "type", "BPE") ||
      !cJSON_AddItemReferenceToObject(model, "vocab", (cJSON *)vocab) ||
      !cJSON_AddItemReferenceToObject(model, "merges", (cJSON *)merges) ||
      !cJSON_AddBoolToObject(model, "byte_fallback", spm) ||
      !(added = cJSON_AddArrayToObject(doc, "added_tokens")))
    goto done;
  if (spm) {
    cJSON *norm = cJSON_AddObjectToObject(doc, "normalizer"), *list, *p, *rp, *pat;
    if (!norm || !cJSON_AddStringToObject(norm, "type", "Sequence") ||
        !(list = cJSON_AddArrayToObject(norm, "normalizers")) || !(p = cJSON_CreateObject()) ||
        !cJSON_AddItemToArray(list, p) || !cJSON_AddStringToObject(p, "type", "Prepend") ||
        !cJSON_AddStringToObject(p, "prepend", "\xe2\x96\x81") || !(rp = cJSON_CreateObject()) ||
        !cJSON_AddItemToArray(list, rp) || !cJSON_AddStringToObject(rp, "type", "Replace") ||
        !(pat = cJSON_AddObjectToObject(rp, "pattern")) ||
        !cJSON_AddStringToObject(pat, "String", " ") ||
        !cJSON_AddStringToObject(rp, "content", "\xe2\x96\x81"))
      goto done;
    if (vocab_has(vocab, "<unk>") && !cJSON_AddStringToObject(model, "unk_token", "<unk>"))
      goto done;
    if ((s = add_special(added, vocab, "<unk>"))) goto done;
  } else {
    cJSON *pt = cJSON_AddObjectToObject(doc, "pre_tokenizer");
    if (!pt || !cJSON_AddStringToObject(pt, "type", "ByteLevel") ||
        !cJSON_AddBoolToObject(pt, "add_prefix_space", false) ||
        !cJSON_AddBoolToObject(pt, "use_regex", true))
      goto done;
  }
  if ((s = add_special(added, vocab, bos)) || (s = add_special(added, vocab, eos))) goto done;
  if (bos) {
    cJSON *post = cJSON_AddObjectToObject(doc, "post_processor"), *single, *first, *st;
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    if (!post || !cJSON_AddStringToObject(post, "type", "TemplateProcessing") ||
        !(single = cJSON_AddArrayToObject(post, "single")) || !(first = cJSON_CreateObject()) ||
        !cJSON_AddItemToArray(single, first) ||
        !(st = cJSON_AddObjectToObject(first, "SpecialToken")) ||
        !cJSON_AddStringToObject(st, "id", bos))
      goto done;
  }
  if ((s = tl_hf_tokenizer_from_json(r->g, r->path, doc))) goto done;
  if (eos) {
    int id = (int)cJSON_GetObjectItemCaseSensitive(vocab, eos)->valuedouble;
    if ((s = tl_gguf_set_u32(r->g, "tokenizer.ggml.eos_token_id", (uint32_t)id))) goto done;
  }
  if (pre && !spm && (s = tl_gguf_set_str(r->g, "tokenizer.ggml.pre", pre, strlen(pre))))
    goto done;
  s = TL_OK;
done:
  cJSON_Delete(doc);
  return s;
}

/* ---- the file ---------------------------------------------------------------- */

static tl_status parse(rd *r, const tl_mmap *m) {
  if (m->size < 9)
    return tl_fail(TL_ERR_FORMAT, "'%s' is too short for a Torchless .bin file (%zu bytes)",
                   r->path, m->size);
  uint64_t hs = tl_rd_u64(m->data);
  if (hs < 2 || hs > (uint64_t)m->size - 8)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s': header_size %llu does not fit the file (%zu bytes): truncated or not a "
                   "Torchless .bin file",
                   r->path, (unsigned long long)hs, m->size);
  const char *json = (const char *)m->data + 8;
  size_t jn = (size_t)hs;
  while (jn > 0 && json[jn - 1] == '\0') jn--; /* the NUL padding */
  if (memchr(json, '\0', jn))
    return tl_fail(TL_ERR_FORMAT, "'%s': the JSON header contains a NUL byte", r->path);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, jn, &end, false);
  if (!root) {
    size_t at = end ? (size_t)(end - json) : 0;
    return tl_fail(TL_ERR_FORMAT, "'%s': the header is not valid JSON (near byte %zu)", r->path,
                   at + 8);
  }
  tl_status s = TL_OK;
  for (const char *p = end; p < json + jn; p++)
    if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
      s = tl_fail(TL_ERR_FORMAT, "'%s': text after the JSON header (byte %zu)", r->path,
                  (size_t)(p - json) + 8);
      break;
    }
  if (!s && !cJSON_IsObject(root))
    s = tl_fail(TL_ERR_FORMAT, "'%s': the JSON header is not an object", r->path);
  if (!s && !tl_json_get(root, "metadata") && !tl_json_get(root, "tensors")) {
    /* the same framing as safetensors: say which one it is */
    const cJSON *e;
    bool st = tl_json_get(root, "__metadata__") != NULL;
    cJSON_ArrayForEach(e, root) if (tl_json_get(e, "data_offsets")) st = true;
    s = st ? tl_fail(TL_ERR_FORMAT,
                     "'%s' is a safetensors file, not a Torchless .bin (load the Hugging Face "
                     "folder that holds it)",
                     r->path)
           : tl_fail(TL_ERR_FORMAT,
                     "'%s': the JSON header has neither 'metadata' nor 'tensors' (not a "
                     "Torchless .bin file)",
                     r->path);
  }
  r->payload = m->data + 8 + hs;
  r->payload_size = (uint64_t)m->size - 8 - hs;
  if (!s) s = read_metadata(r, tl_json_get(root, "metadata"));
  if (!s) s = read_tensors(r, tl_json_get(root, "tensors"));
  if (!s) s = read_tokenizer(r, tl_json_get(root, "tokenizer"));
  cJSON_Delete(root);
  return s;
}

tl_status tl_native_open(const char *path, tl_gguf **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_native_open: out is NULL");
  *out = NULL;
  if (!path) return tl_fail(TL_ERR_INVALID_ARG, "tl_native_open: path is NULL");
  tl_gguf *g;
  tl_status s = tl_gguf_new_virtual(&g);
  if (s) return s;
  if ((s = tl_mmap_open(path, &g->map))) {
    tl_gguf_free(g);
    return s;
  }
  rd r = {.path = path, .g = g};
  if ((s = parse(&r, &g->map))) {
    tl_gguf_free(g);
    return s;
  }
  *out = g;
  return TL_OK;
}
