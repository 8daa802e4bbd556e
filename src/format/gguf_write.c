/* GGUF v3 writer: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md */
#include "format/gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/quant.h"

struct tl_gguf_writer {
  FILE *f;
  char *tmp_path;
  char *path;
  uint64_t alignment;
  uint64_t n_tensors;
  uint64_t *nbytes; /* per tensor */
  uint64_t cur;     /* tensor being written */
  uint64_t done;    /* bytes of it written so far */
  tl_status err;    /* first write error */
};

static tl_status io_fail(tl_gguf_writer *w, const char *what) {
  int e = errno;
  if (!w->err)
    w->err = tl_fail(TL_ERR_IO, "cannot %s '%s': %s", what, w->tmp_path, strerror(e ? e : EIO));
  return w->err;
}

static tl_status put(tl_gguf_writer *w, const void *p, size_t n) {
  if (w->err) return w->err;
  if (n && fwrite(p, 1, n, w->f) != n) return io_fail(w, "write");
  return TL_OK;
}
static tl_status put_u32(tl_gguf_writer *w, uint32_t v) {
  return put(w, &v, 4);
}
static tl_status put_u64(tl_gguf_writer *w, uint64_t v) {
  return put(w, &v, 8);
}
static tl_status put_str(tl_gguf_writer *w, tl_str s) {
  tl_status st = put_u64(w, s.len);
  return st ? st : put(w, s.ptr, (size_t)s.len);
}
static tl_status put_zeros(tl_gguf_writer *w, uint64_t n) {
  static const uint8_t z[64];
  while (n) {
    size_t k = n > sizeof z ? sizeof z : (size_t)n;
    tl_status s = put(w, z, k);
    if (s) return s;
    n -= k;
  }
  return TL_OK;
}


/* Encode a scalar value in its little-endian wire form. */
static void encode_scalar(const tl_gguf_value *v, uint8_t out[8]) {
  uint64_t u = v->v.u64;
  switch (v->type) {
    case TL_GGUF_I8:
    case TL_GGUF_I16:
    case TL_GGUF_I32:
    case TL_GGUF_I64:
      u = (uint64_t)v->v.i64;
      break;
    case TL_GGUF_F32: {
      float f = (float)v->v.f64;
      uint32_t b;
      memcpy(&b, &f, 4);
      u = b;
      break;
    }
    case TL_GGUF_F64:
      memcpy(&u, &v->v.f64, 8);
      break;
    default:
      break;
  }
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(u >> (8 * i));
}

static tl_status put_array(tl_gguf_writer *w, const tl_gguf_value *v, int depth);

static tl_status put_value(tl_gguf_writer *w, const tl_gguf_value *v, int depth) {
  size_t es = tl_gguf_scalar_size(v->type);
  if (es) {
    uint8_t b[8];
    encode_scalar(v, b);
    return put(w, b, es);
  }
  if (v->type == TL_GGUF_STRING) return put_str(w, v->v.str);
  if (v->type == TL_GGUF_ARRAY) return put_array(w, v, depth);
  return tl_fail(TL_ERR_INVALID_ARG, "metadata value of unknown type %u", v->type);
}

static tl_status put_array(tl_gguf_writer *w, const tl_gguf_value *v, int depth) {
  if (depth > 8) return tl_fail(TL_ERR_INVALID_ARG, "metadata arrays nested too deeply");
  uint32_t et = v->v.arr.elem_type;
  uint64_t n = v->v.arr.n;
  tl_status s;
  if ((s = put_u32(w, et)) || (s = put_u64(w, n))) return s;
  size_t es = tl_gguf_scalar_size(et);
  if (es) {
    if (n && !v->v.arr.data) return tl_fail(TL_ERR_INVALID_ARG, "numeric array without data");
    uint64_t bytes;
    if (!tl_mul_u64(n, es, &bytes)) return tl_fail(TL_ERR_INVALID_ARG, "array too large");
    return put(w, v->v.arr.data, (size_t)bytes);
  }
  if (et == TL_GGUF_STRING) {
    if (n && !v->v.arr.strs) return tl_fail(TL_ERR_INVALID_ARG, "string array without strings");
    for (uint64_t i = 0; i < n; i++)
      if ((s = put_str(w, v->v.arr.strs[i]))) return s;
    return TL_OK;
  }
  if (et == TL_GGUF_ARRAY) {
    if (n && !v->v.arr.elems) return tl_fail(TL_ERR_INVALID_ARG, "nested array without elements");
    for (uint64_t i = 0; i < n; i++) {
      if (v->v.arr.elems[i].type != TL_GGUF_ARRAY)
        return tl_fail(TL_ERR_INVALID_ARG, "nested array element is not an array");
      if ((s = put_array(w, &v->v.arr.elems[i], depth + 1))) return s;
    }
    return TL_OK;
  }
  return tl_fail(TL_ERR_INVALID_ARG, "array of unknown element type %u", et);
}

static uint64_t pad_to(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

static void writer_free(tl_gguf_writer *w) {
  free(w->tmp_path);
  free(w->path);
  free(w->nbytes);
  free(w);
}

void tl_gguf_writer_abort(tl_gguf_writer *w) {
  if (!w) return;
  if (w->f) fclose(w->f);
  unlink(w->tmp_path);
  writer_free(w);
}

/* The alignment a key list asks for (32 by default). */
static tl_status kv_alignment(const tl_gguf_kv *kv, uint64_t n_kv, uint64_t *out) {
  *out = 32;
  for (uint64_t i = 0; i < n_kv; i++) {
    if (!tl_str_eq(kv[i].key, "general.alignment")) continue;
    const tl_gguf_value *v = &kv[i].val;
    uint64_t a;
    if (v->type == TL_GGUF_U32 || v->type == TL_GGUF_U64 || v->type == TL_GGUF_U16 ||
        v->type == TL_GGUF_U8)
      a = v->v.u64;
    else if ((v->type == TL_GGUF_I32 || v->type == TL_GGUF_I64) && v->v.i64 > 0)
      a = (uint64_t)v->v.i64;
    else
      return tl_fail(TL_ERR_INVALID_ARG, "general.alignment must be an unsigned integer");
    if (a == 0 || (a & (a - 1)) || a > 65536)
      return tl_fail(TL_ERR_INVALID_ARG, "general.alignment must be a power of two up to 65536");
    *out = a;
  }
  return TL_OK;
}

tl_status tl_gguf_writer_open(const char *path, const tl_gguf_kv *kv, uint64_t n_kv,
                              const tl_gguf_wtensor *tensors, uint64_t n_tensors,
                              tl_gguf_writer **out) {
  *out = NULL;
  if (!path || !*path || (n_kv && !kv) || (n_tensors && !tensors))
    return tl_fail(TL_ERR_INVALID_ARG, "tl_gguf_writer_open: invalid arguments");
  uint64_t align;
  tl_status s = kv_alignment(kv, n_kv, &align);
  if (s) return s;
  tl_gguf_writer *w = calloc(1, sizeof *w);
  if (!w) return tl_fail(TL_ERR_NOMEM, "out of memory");
  size_t pl = strlen(path);
  w->path = tl_strndup(path, pl);
  w->tmp_path = malloc(pl + 16);
  w->nbytes = tl_calloc_array((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof(uint64_t));
  if (!w->path || !w->tmp_path || !w->nbytes) {
    writer_free(w);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  w->alignment = align;
  w->n_tensors = n_tensors;
  for (uint64_t i = 0; i < n_tensors; i++) {
    const tl_gguf_wtensor *t = &tensors[i];
    uint64_t numel = 1, row;
    bool ok = t->name && t->name[0] && strlen(t->name) < 65536 && t->n_dims >= 1 &&
              t->n_dims <= TL_GGUF_MAX_DIMS && tl_type_get(t->type);
    for (uint32_t d = 0; ok && d < t->n_dims; d++)
      ok = t->ne[d] > 0 && tl_mul_u64(numel, (uint64_t)t->ne[d], &numel);
    ok = ok && tl_type_row_size(t->type, t->ne[0], &row) &&
         tl_mul_u64(row, numel / (uint64_t)t->ne[0], &w->nbytes[i]);
    if (!ok) {
      s = tl_fail(TL_ERR_INVALID_ARG, "tensor %llu ('%s') has an invalid name, shape or type",
                  (unsigned long long)i, t->name ? t->name : "");
      writer_free(w);
      return s;
    }
  }
  snprintf(w->tmp_path, pl + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(w->tmp_path);
  if (fd < 0) {
    s = tl_fail(TL_ERR_IO, "cannot create '%s.tmp-XXXXXX' for '%s': %s", path, path,
                strerror(errno));
    writer_free(w);
    return s;
  }
  fchmod(fd, 0644); /* mkstemp creates 0600; a model file is usually shared */
  w->f = fdopen(fd, "wb");
  if (!w->f) {
    s = tl_fail(TL_ERR_IO, "cannot open '%s': %s", w->tmp_path, strerror(errno));
    close(fd);
    unlink(w->tmp_path);
    writer_free(w);
    return s;
  }
  setvbuf(w->f, NULL, _IOFBF, 1 << 20);
  /* header */
  if ((s = put(w, "GGUF", 4)) || (s = put_u32(w, 3)) || (s = put_u64(w, n_tensors)) ||
      (s = put_u64(w, n_kv)))
    goto fail;
  for (uint64_t i = 0; i < n_kv; i++) {
    if ((s = put_str(w, kv[i].key)) || (s = put_u32(w, kv[i].val.type)) ||
        (s = put_value(w, &kv[i].val, 0))) {
      tl_fail_prefix(s, "metadata '%.*s'", (int)(kv[i].key.len > 200 ? 200 : kv[i].key.len),
                     kv[i].key.ptr);
      goto fail;
    }
  }
  uint64_t off = 0;
  for (uint64_t i = 0; i < n_tensors; i++) {
    const tl_gguf_wtensor *t = &tensors[i];
    tl_str name = {t->name, strlen(t->name)};
    if ((s = put_str(w, name)) || (s = put_u32(w, t->n_dims))) goto fail;
    for (uint32_t d = 0; d < t->n_dims; d++)
      if ((s = put_u64(w, (uint64_t)t->ne[d]))) goto fail;
    if ((s = put_u32(w, t->type)) || (s = put_u64(w, off))) goto fail;
    off = pad_to(off + w->nbytes[i], align);
  }
  long pos = ftell(w->f);
  if (pos < 0) {
    s = io_fail(w, "write");
    goto fail;
  }
  if (n_tensors && (s = put_zeros(w, pad_to((uint64_t)pos, align) - (uint64_t)pos))) goto fail;
  /* skip empty tensors (none: shapes are positive) */
  *out = w;
  return TL_OK;
fail:
  tl_gguf_writer_abort(w);
  return s;
}

uint64_t tl_gguf_writer_pending(const tl_gguf_writer *w) {
  return w->cur < w->n_tensors ? w->nbytes[w->cur] - w->done : 0;
}

tl_status tl_gguf_writer_write(tl_gguf_writer *w, const void *data, size_t n) {
  const uint8_t *p = data;
  while (n) {
    if (w->err) return w->err;
    if (w->cur >= w->n_tensors)
      return tl_fail(TL_ERR_INVALID_ARG, "'%s': more tensor data than the tensors hold", w->path);
    uint64_t left = w->nbytes[w->cur] - w->done;
    size_t k = n < left ? n : (size_t)left;
    tl_status s = put(w, p, k);
    if (s) return s;
    p += k;
    n -= k;
    w->done += k;
    if (w->done == w->nbytes[w->cur]) {
      if ((s = put_zeros(w, pad_to(w->done, w->alignment) - w->done))) return s;
      w->cur++;
      w->done = 0;
    }
  }
  return TL_OK;
}

tl_status tl_gguf_writer_finish(tl_gguf_writer *w) {
  tl_status s = w->err;
  if (!s && w->cur < w->n_tensors)
    s = tl_fail(TL_ERR_INVALID_ARG, "'%s': tensor %llu of %llu has no data yet", w->path,
                (unsigned long long)w->cur, (unsigned long long)w->n_tensors);
  if (!s && fflush(w->f) != 0) s = io_fail(w, "write");
  if (!s && fsync(fileno(w->f)) != 0) s = io_fail(w, "sync");
  if (s) {
    tl_gguf_writer_abort(w);
    return s;
  }
  int rc = fclose(w->f);
  w->f = NULL;
  if (rc != 0) {
    s = io_fail(w, "close");
    tl_gguf_writer_abort(w);
    return s;
  }
  if (rename(w->tmp_path, w->path) != 0) {
    s = tl_fail(TL_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp_path, w->path, strerror(errno));
    tl_gguf_writer_abort(w);
    return s;
  }
  /* make the rename durable: sync the directory (best effort) */
  char *dir = tl_strndup(w->path, strlen(w->path));
  if (dir) {
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
      d = "/";
    else if (slash) {
      *slash = 0;
      d = dir;
    }
    int dfd = open(d, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    free(dir);
  }
  writer_free(w);
  return TL_OK;
}

tl_status tl_gguf_write(const tl_gguf *g, const char *path) {
  tl_gguf_wtensor *ts = tl_calloc_array(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *ts);
  char **names = tl_calloc_array(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *names);
  tl_status s = TL_OK;
  tl_gguf_writer *w = NULL;
  if (!ts || !names) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    const tl_gguf_tensor *t = &g->tensors[i];
    if (!(names[i] = tl_strndup(t->name.ptr, (size_t)t->name.len))) {
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
      goto done;
    }
    ts[i].name = names[i];
    ts[i].type = t->type;
    ts[i].n_dims = t->n_dims;
    memcpy(ts[i].ne, t->ne, sizeof ts[i].ne);
  }
  if ((s = tl_gguf_writer_open(path, g->kv, g->n_kv, ts, g->n_tensors, &w))) goto done;
  for (uint64_t i = 0; i < g->n_tensors && !s; i++) {
    const tl_gguf_tensor *t = &g->tensors[i];
    if (!t->data) {
      s = tl_fail(TL_ERR_INVALID_ARG, "tensor '%s' has no data", names[i]);
      break;
    }
    s = tl_gguf_writer_write(w, t->data, (size_t)t->nbytes);
  }
  if (s)
    tl_gguf_writer_abort(w);
  else
    s = tl_gguf_writer_finish(w);
done:
  if (names)
    for (uint64_t i = 0; i < g->n_tensors; i++) free(names[i]);
  free(names);
  free(ts);
  return s;
}
