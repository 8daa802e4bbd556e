/* A model's metadata by key (torchless.h: tl_model_meta_*), read from the
 * GGUF view every format is loaded through. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

/* text appended to a bounded buffer, its full length counted */
typedef struct sbuf {
  char *buf;
  size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->cap > 0 && b->len < b->cap - 1) {
    size_t k = b->cap - 1 - b->len;
    memcpy(b->buf + b->len, s, n < k ? n : k);
  }
  b->len += n;
}

static void putf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(sbuf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_scalar(sbuf *b, uint32_t type, uint64_t u, int64_t i, double f) {
  switch (type) {
    case TL_GGUF_BOOL:
      put(b, u ? "true" : "false", u ? 4 : 5);
      break;
    case TL_GGUF_U8:
    case TL_GGUF_U16:
    case TL_GGUF_U32:
    case TL_GGUF_U64:
      putf(b, "%" PRIu64, u);
      break;
    case TL_GGUF_F32:
    case TL_GGUF_F64:
      putf(b, "%.9g", f);
      break;
    default:
      putf(b, "%" PRId64, i);
      break;
  }
}

static void put_quoted(sbuf *b, tl_str s) {
  put(b, "\"", 1);
  for (uint64_t k = 0; k < s.len; k++) {
    if (s.ptr[k] == '"' || s.ptr[k] == '\\') put(b, "\\", 1);
    put(b, s.ptr + k, 1);
  }
  put(b, "\"", 1);
}

static void put_value(sbuf *b, const tl_gguf_value *v) {
  switch (v->type) {
    case TL_GGUF_STRING:
      put(b, v->v.str.ptr, v->v.str.len);
      return;
    case TL_GGUF_ARRAY: {
      put(b, "[", 1);
      for (uint64_t k = 0; k < v->v.arr.n; k++) {
        if (k) put(b, ", ", 2);
        const uint32_t et = v->v.arr.elem_type;
        if (et == TL_GGUF_STRING)
          put_quoted(b, v->v.arr.strs[k]);
        else if (et == TL_GGUF_ARRAY)
          put_value(b, &v->v.arr.elems[k]);
        else
          put_scalar(b, et, (uint64_t)tl_gguf_arr_i64(v, k), tl_gguf_arr_i64(v, k),
                     tl_gguf_arr_f64(v, k));
      }
      put(b, "]", 1);
      return;
    }
    default:
      put_scalar(b, v->type, v->v.u64, v->v.i64, v->v.f64);
      return;
  }
}

static int32_t finish(sbuf *b) {
  if (b->cap > 0) b->buf[b->len < b->cap - 1 ? b->len : b->cap - 1] = 0;
  return b->len > INT32_MAX ? INT32_MAX : (int32_t)b->len;
}

int32_t tl_model_meta_count(const tl_model *m) {
  return m && m->gguf ? (int32_t)m->gguf->n_kv : 0;
}

int32_t tl_model_meta_key_by_index(const tl_model *m, int32_t i, char *buf, size_t cap) {
  if (!m || !m->gguf || i < 0 || (uint64_t)i >= m->gguf->n_kv) {
    if (buf && cap) buf[0] = 0;
    return -1;
  }
  sbuf b = {buf, buf ? cap : 0, 0};
  put(&b, m->gguf->kv[i].key.ptr, m->gguf->kv[i].key.len);
  return finish(&b);
}

int32_t tl_model_meta_str(const tl_model *m, const char *key, char *buf, size_t cap) {
  const tl_gguf_value *v = m && m->gguf && key ? tl_gguf_get(m->gguf, key) : NULL;
  if (!v) {
    if (buf && cap) buf[0] = 0;
    tl_fail(TL_ERR_INVALID_ARG, "the model has no metadata key '%s'", key ? key : "(null)");
    return -1;
  }
  sbuf b = {buf, buf ? cap : 0, 0};
  put_value(&b, v);
  return finish(&b);
}
