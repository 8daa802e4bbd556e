/* GGUF reader: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
 * Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, the key/value
 * pairs, the tensor infos, padding to general.alignment, the tensor data. */
#include "format/gguf.h"

#include <stddef.h>
#include <stdlib.h>

#include "quant/quant.h"

typedef struct reader {
  const uint8_t *p;
  size_t size;
  size_t off;
} reader;

/* Deepest array nesting accepted (real files use one level). */
#define MAX_NEST 4

static tl_status need(reader *r, uint64_t n, const char *what) {
  if (n > r->size - r->off)
    return tl_fail(TL_ERR_FORMAT, "truncated file: %s at offset %zu needs %llu bytes, %zu left",
                   what, r->off, (unsigned long long)n, r->size - r->off);
  return TL_OK;
}

static tl_status rd_u32(reader *r, uint32_t *v, const char *what) {
  tl_status s = need(r, 4, what);
  if (s) return s;
  *v = tl_rd_u32(r->p + r->off);
  r->off += 4;
  return TL_OK;
}

static tl_status rd_u64(reader *r, uint64_t *v, const char *what) {
  tl_status s = need(r, 8, what);
  if (s) return s;
  *v = tl_rd_u64(r->p + r->off);
  r->off += 8;
  return TL_OK;
}

static tl_status rd_str(reader *r, tl_str *out, const char *what) {
  uint64_t n;
  tl_status s = rd_u64(r, &n, what);
  if (s) return s;
  s = need(r, n, what);
  if (s) return s;
  out->ptr = (const char *)r->p + r->off;
  out->len = n;
  r->off += (size_t)n;
  return TL_OK;
}

size_t tl_gguf_scalar_size(uint32_t t) {
  switch (t) {
    case TL_GGUF_U8:
    case TL_GGUF_I8:
    case TL_GGUF_BOOL:
      return 1;
    case TL_GGUF_U16:
    case TL_GGUF_I16:
      return 2;
    case TL_GGUF_U32:
    case TL_GGUF_I32:
    case TL_GGUF_F32:
      return 4;
    case TL_GGUF_U64:
    case TL_GGUF_I64:
    case TL_GGUF_F64:
      return 8;
    default:
      return 0;
  }
}

/* Decode a scalar of type t at p into the value. */
static void decode_scalar(uint32_t t, const uint8_t *p, tl_gguf_value *v) {
  v->type = t;
  switch (t) {
    case TL_GGUF_U8:
    case TL_GGUF_BOOL:
      v->v.u64 = p[0];
      break;
    case TL_GGUF_I8:
      v->v.i64 = (int8_t)p[0];
      break;
    case TL_GGUF_U16:
      v->v.u64 = tl_rd_u16(p);
      break;
    case TL_GGUF_I16:
      v->v.i64 = (int16_t)tl_rd_u16(p);
      break;
    case TL_GGUF_U32:
      v->v.u64 = tl_rd_u32(p);
      break;
    case TL_GGUF_I32:
      v->v.i64 = (int32_t)tl_rd_u32(p);
      break;
    case TL_GGUF_F32: {
      float f;
      memcpy(&f, p, 4);
      v->v.f64 = f;
      break;
    }
    case TL_GGUF_U64:
      v->v.u64 = tl_rd_u64(p);
      break;
    case TL_GGUF_I64:
      v->v.i64 = (int64_t)tl_rd_u64(p);
      break;
    case TL_GGUF_F64:
      memcpy(&v->v.f64, p, 8);
      break;
    default:
      break;
  }
}

static void free_value(tl_gguf_value *v) {
  if (v->type != TL_GGUF_ARRAY) return;
  free(v->v.arr.strs);
  if (v->v.arr.elems) {
    for (uint64_t i = 0; i < v->v.arr.n; i++) free_value(&v->v.arr.elems[i]);
    free(v->v.arr.elems);
  }
}

static tl_status read_value(reader *r, uint32_t type, tl_gguf_value *v, int depth);

static tl_status read_array(reader *r, tl_gguf_value *v, int depth) {
  uint32_t et;
  uint64_t n;
  tl_status s = rd_u32(r, &et, "array element type");
  if (s) return s;
  s = rd_u64(r, &n, "array length");
  if (s) return s;
  v->type = TL_GGUF_ARRAY;
  v->v.arr.elem_type = et;
  v->v.arr.n = n;
  v->v.arr.data = NULL;
  v->v.arr.strs = NULL;
  v->v.arr.elems = NULL;
  size_t left = r->size - r->off;
  size_t es = tl_gguf_scalar_size(et);
  if (es) {
    uint64_t bytes;
    if (!tl_mul_u64(n, es, &bytes) || bytes > left)
      return tl_fail(TL_ERR_FORMAT, "array of %llu elements of %zu bytes runs past the end of file",
                     (unsigned long long)n, es);
    v->v.arr.data = r->p + r->off;
    r->off += (size_t)bytes;
    return TL_OK;
  }
  if (et == TL_GGUF_STRING) {
    if (n > left / 8)
      return tl_fail(TL_ERR_FORMAT, "string array of %llu elements cannot fit in the file",
                     (unsigned long long)n);
    v->v.arr.strs = tl_malloc_array((size_t)n ? (size_t)n : 1, sizeof(tl_str));
    if (!v->v.arr.strs) return tl_fail(TL_ERR_NOMEM, "out of memory for a string array");
    for (uint64_t i = 0; i < n; i++) {
      s = rd_str(r, &v->v.arr.strs[i], "array string");
      if (s) return s;
    }
    return TL_OK;
  }
  if (et == TL_GGUF_ARRAY) {
    if (depth >= MAX_NEST) return tl_fail(TL_ERR_FORMAT, "arrays nested deeper than %d", MAX_NEST);
    if (n > left / 12)
      return tl_fail(TL_ERR_FORMAT, "nested array of %llu elements cannot fit in the file",
                     (unsigned long long)n);
    v->v.arr.elems = tl_calloc_array((size_t)n ? (size_t)n : 1, sizeof(tl_gguf_value));
    if (!v->v.arr.elems) return tl_fail(TL_ERR_NOMEM, "out of memory for a nested array");
    for (uint64_t i = 0; i < n; i++) {
      s = read_array(r, &v->v.arr.elems[i], depth + 1);
      if (s) {
        v->v.arr.n = i + 1; /* free only what was read */
        return s;
      }
    }
    return TL_OK;
  }
  return tl_fail(TL_ERR_FORMAT, "unknown array element type %u", et);
}

static tl_status read_value(reader *r, uint32_t type, tl_gguf_value *v, int depth) {
  size_t es = tl_gguf_scalar_size(type);
  if (es) {
    tl_status s = need(r, es, "metadata value");
    if (s) return s;
    decode_scalar(type, r->p + r->off, v);
    r->off += es;
    return TL_OK;
  }
  if (type == TL_GGUF_STRING) {
    v->type = type;
    return rd_str(r, &v->v.str, "metadata string");
  }
  if (type == TL_GGUF_ARRAY) return read_array(r, v, depth);
  return tl_fail(TL_ERR_FORMAT, "unknown metadata value type %u", type);
}

struct tl_gguf_blob {
  const tl_mmap *map; /* a file mapping inside p (tl_gguf_own_map), or NULL */
  void *p;
  void (*free_fn)(void *);
  tl_gguf_blob *next;
};

void tl_gguf_free(tl_gguf *g) {
  if (!g) return;
  if (g->kv) {
    for (uint64_t i = 0; i < g->n_kv; i++) free_value(&g->kv[i].val);
    free(g->kv);
  }
  free(g->tensors);
  tl_mmap_close(&g->map);
  while (g->blobs) {
    tl_gguf_blob *b = g->blobs;
    g->blobs = b->next;
    b->free_fn(b->p);
    free(b);
  }
  free(g);
}

static int cmp_str(const void *pa, const void *pb) {
  const tl_str *a = pa, *b = pb;
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  return a->len ? memcmp(a->ptr, b->ptr, (size_t)a->len) : 0;
}

/* Finds a string that occurs twice among the tl_str fields (at byte offset
 * field) of n items of the given size; dup->ptr is NULL when all differ.
 * Sorting keeps this O(n log n): a file may hold a million keys or tensors,
 * and comparing every pair took minutes. */
static tl_status find_dup(const void *items, uint64_t n, size_t size, size_t field, tl_str *dup) {
  dup->ptr = NULL;
  dup->len = 0;
  if (n < 2) return TL_OK;
  tl_str *v = tl_malloc_array((size_t)n, sizeof *v);
  if (!v) return tl_fail(TL_ERR_NOMEM, "out of memory checking for duplicate names");
  for (uint64_t i = 0; i < n; i++)
    memcpy(&v[i], (const uint8_t *)items + i * size + field, sizeof *v);
  qsort(v, (size_t)n, sizeof *v, cmp_str);
  for (uint64_t i = 1; i < n; i++)
    if (!cmp_str(&v[i - 1], &v[i])) {
      *dup = v[i];
      break;
    }
  free(v);
  return TL_OK;
}

static _Thread_local const tl_gguf_tensor *g_sort_tensors; /* for cmp_offset */
static int cmp_offset(const void *pa, const void *pb) {
  const tl_gguf_tensor *a = &g_sort_tensors[*(const uint64_t *)pa];
  const tl_gguf_tensor *b = &g_sort_tensors[*(const uint64_t *)pb];
  if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
  return a->nbytes < b->nbytes ? -1 : a->nbytes > b->nbytes;
}

static tl_status parse(tl_gguf *g) {
  reader r = {g->map.data, g->map.size, 0};
  tl_status s = need(&r, 4, "magic");
  if (s) return s;
  if (memcmp(r.p, "GGUF", 4) != 0) return tl_fail(TL_ERR_FORMAT, "not a GGUF file (bad magic)");
  r.off = 4;
  if ((s = rd_u32(&r, &g->version, "version"))) return s;
  if (g->version != 2 && g->version != 3)
    return tl_fail(TL_ERR_UNSUPPORTED, "GGUF version %u is not supported (2 and 3 are)",
                   g->version);
  uint64_t n_tensors, n_kv;
  if ((s = rd_u64(&r, &n_tensors, "tensor count"))) return s;
  if ((s = rd_u64(&r, &n_kv, "metadata count"))) return s;
  /* every kv takes at least 8+4+1 bytes, every tensor info at least 8+4+4+8 */
  size_t left = r.size - r.off;
  if (n_kv > left / 13 || n_kv > (1u << 20))
    return tl_fail(TL_ERR_FORMAT, "metadata count %llu cannot fit in a file of %zu bytes",
                   (unsigned long long)n_kv, r.size);
  if (n_tensors > left / 24 || n_tensors > (1u << 20))
    return tl_fail(TL_ERR_FORMAT, "tensor count %llu cannot fit in a file of %zu bytes",
                   (unsigned long long)n_tensors, r.size);
  g->kv = tl_calloc_array((size_t)n_kv ? (size_t)n_kv : 1, sizeof(tl_gguf_kv));
  if (!g->kv) return tl_fail(TL_ERR_NOMEM, "out of memory for metadata");
  g->kv_cap = n_kv ? n_kv : 1;
  for (uint64_t i = 0; i < n_kv; i++) {
    tl_gguf_kv *kv = &g->kv[i];
    g->n_kv = i + 1;
    if ((s = rd_str(&r, &kv->key, "metadata key"))) return s;
    uint32_t type;
    if ((s = rd_u32(&r, &type, "metadata type"))) return s;
    if ((s = read_value(&r, type, &kv->val, 0)))
      return tl_fail_prefix(s, "metadata '%.*s'", (int)(kv->key.len > 200 ? 200 : kv->key.len),
                            kv->key.ptr);
  }
  tl_str dup;
  if ((s = find_dup(g->kv, n_kv, sizeof *g->kv, offsetof(tl_gguf_kv, key), &dup))) return s;
  if (dup.ptr)
    return tl_fail(TL_ERR_FORMAT, "duplicate metadata key '%.*s'",
                   (int)(dup.len > 200 ? 200 : dup.len), dup.ptr);
  g->alignment = 32;
  const tl_gguf_value *al = tl_gguf_get(g, "general.alignment");
  if (al) {
    uint32_t a;
    if (!tl_gguf_get_u32(g, "general.alignment", &a) || a == 0 || (a & (a - 1)) != 0 || a > 65536)
      return tl_fail(TL_ERR_FORMAT, "general.alignment must be a power of two up to 65536");
    g->alignment = a;
  }

  g->tensors = tl_calloc_array((size_t)n_tensors ? (size_t)n_tensors : 1, sizeof(tl_gguf_tensor));
  if (!g->tensors) return tl_fail(TL_ERR_NOMEM, "out of memory for tensor infos");
  g->tensors_cap = n_tensors ? n_tensors : 1;
  g->n_tensors = n_tensors;
  for (uint64_t i = 0; i < n_tensors; i++) {
    tl_gguf_tensor *t = &g->tensors[i];
    if ((s = rd_str(&r, &t->name, "tensor name"))) return s;
    if (t->name.len == 0 || t->name.len > 256)
      return tl_fail(TL_ERR_FORMAT, "tensor %llu has a name of length %llu", (unsigned long long)i,
                     (unsigned long long)t->name.len);
    int nl = (int)t->name.len;
    if ((s = rd_u32(&r, &t->n_dims, "tensor dims"))) return s;
    if (t->n_dims == 0 || t->n_dims > TL_GGUF_MAX_DIMS)
      return tl_fail(TL_ERR_FORMAT, "tensor '%.*s' has %u dimensions", nl, t->name.ptr, t->n_dims);
    uint64_t numel = 1;
    for (int d = 0; d < TL_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
      uint64_t ne;
      if ((s = rd_u64(&r, &ne, "tensor shape"))) return s;
      if (ne == 0 || ne > (uint64_t)INT64_MAX || !tl_mul_u64(numel, ne, &numel) ||
          numel > (uint64_t)INT64_MAX)
        return tl_fail(TL_ERR_FORMAT, "tensor '%.*s' has an invalid shape (dim %u = %llu)", nl,
                       t->name.ptr, d, (unsigned long long)ne);
      t->ne[d] = (int64_t)ne;
    }
    if ((s = rd_u32(&r, &t->type, "tensor type"))) return s;
    if ((s = rd_u64(&r, &t->offset, "tensor offset"))) return s;
    if (!tl_type_get(t->type))
      return tl_fail(TL_ERR_FORMAT, "tensor '%.*s' has unknown type id %u", nl, t->name.ptr,
                     t->type);
    uint64_t row, nb;
    if (!tl_type_row_size(t->type, t->ne[0], &row))
      return tl_fail(TL_ERR_FORMAT,
                     "tensor '%.*s': row length %lld is not a multiple of the %s block", nl,
                     t->name.ptr, (long long)t->ne[0], tl_type_name(t->type));
    if (!tl_mul_u64(row, numel / (uint64_t)t->ne[0], &nb))
      return tl_fail(TL_ERR_FORMAT, "tensor '%.*s' is too large", nl, t->name.ptr);
    t->nbytes = nb;
    if (t->offset % g->alignment != 0)
      return tl_fail(TL_ERR_FORMAT, "tensor '%.*s' offset %llu is not aligned to %llu", nl,
                     t->name.ptr, (unsigned long long)t->offset, (unsigned long long)g->alignment);
  }
  if ((s = find_dup(g->tensors, n_tensors, sizeof *g->tensors, offsetof(tl_gguf_tensor, name),
                    &dup)))
    return s;
  if (dup.ptr) return tl_fail(TL_ERR_FORMAT, "duplicate tensor name '%.*s'", (int)dup.len, dup.ptr);
  uint64_t data_off = ((uint64_t)r.off + g->alignment - 1) / g->alignment * g->alignment;
  if (n_tensors > 0 && data_off > r.size)
    return tl_fail(TL_ERR_FORMAT, "truncated file: the tensor data section is missing");
  g->data_offset = data_off;
  uint64_t data_size = n_tensors > 0 ? r.size - data_off : 0;
  for (uint64_t i = 0; i < n_tensors; i++) {
    tl_gguf_tensor *t = &g->tensors[i];
    uint64_t end;
    if (!tl_add_u64(t->offset, t->nbytes, &end) || end > data_size)
      return tl_fail(TL_ERR_FORMAT,
                     "tensor '%.*s' (offset %llu, %llu bytes) runs past the end of the file "
                     "(data section is %llu bytes): the file is truncated or corrupt",
                     (int)t->name.len, t->name.ptr, (unsigned long long)t->offset,
                     (unsigned long long)t->nbytes, (unsigned long long)data_size);
    t->data = g->map.data + data_off + t->offset;
  }
  /* tensor data must not partly overlap (a crafted file could make one
   * tensor's bytes another's of a different type or shape); identical ranges
   * (aliases, e.g. tied weights) are allowed */
  if (n_tensors > 1) {
    uint64_t *ord = tl_malloc_array((size_t)n_tensors, sizeof *ord);
    if (!ord) return tl_fail(TL_ERR_NOMEM, "out of memory checking tensor overlaps");
    for (uint64_t i = 0; i < n_tensors; i++) ord[i] = i;
    g_sort_tensors = g->tensors;
    qsort(ord, (size_t)n_tensors, sizeof *ord, cmp_offset);
    for (uint64_t i = 1; i < n_tensors; i++) {
      const tl_gguf_tensor *a = &g->tensors[ord[i - 1]], *b = &g->tensors[ord[i]];
      if (b->offset == a->offset && b->nbytes == a->nbytes) continue;
      if (b->offset < a->offset + a->nbytes) {
        free(ord);
        return tl_fail(TL_ERR_FORMAT, "tensors '%.*s' and '%.*s' overlap in the data section",
                       (int)a->name.len, a->name.ptr, (int)b->name.len, b->name.ptr);
      }
    }
    free(ord);
  }
  return TL_OK;
}

static tl_status finish(tl_gguf *g, tl_gguf **out) {
  tl_status s = parse(g);
  if (s) {
    tl_gguf_free(g);
    return s;
  }
  *out = g;
  return TL_OK;
}

tl_status tl_gguf_parse(const void *data, size_t size, tl_gguf **out) {
  *out = NULL;
  tl_gguf *g = calloc(1, sizeof *g);
  if (!g) return tl_fail(TL_ERR_NOMEM, "out of memory");
  g->map.data = data;
  g->map.size = size;
  return finish(g, out);
}

tl_status tl_gguf_open(const char *path, tl_gguf **out) {
  *out = NULL;
  tl_gguf *g = calloc(1, sizeof *g);
  if (!g) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status s = tl_mmap_open(path, &g->map);
  if (s) {
    free(g);
    return s;
  }
  return finish(g, out);
}

const tl_gguf_value *tl_gguf_get(const tl_gguf *g, const char *key) {
  size_t n = strlen(key);
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (g->kv[i].key.len == n && memcmp(g->kv[i].key.ptr, key, n) == 0) return &g->kv[i].val;
  return NULL;
}

static bool is_uint(uint32_t t) {
  return t == TL_GGUF_U8 || t == TL_GGUF_U16 || t == TL_GGUF_U32 || t == TL_GGUF_U64 ||
         t == TL_GGUF_BOOL;
}
static bool is_int(uint32_t t) {
  return t == TL_GGUF_I8 || t == TL_GGUF_I16 || t == TL_GGUF_I32 || t == TL_GGUF_I64;
}

bool tl_gguf_get_u32(const tl_gguf *g, const char *key, uint32_t *out) {
  const tl_gguf_value *v = tl_gguf_get(g, key);
  if (!v) return false;
  if (is_uint(v->type) && v->type != TL_GGUF_BOOL && v->v.u64 <= UINT32_MAX) {
    *out = (uint32_t)v->v.u64;
    return true;
  }
  if (is_int(v->type) && v->v.i64 >= 0 && v->v.i64 <= (int64_t)UINT32_MAX) {
    *out = (uint32_t)v->v.i64;
    return true;
  }
  return false;
}

bool tl_gguf_get_f32(const tl_gguf *g, const char *key, float *out) {
  const tl_gguf_value *v = tl_gguf_get(g, key);
  if (!v) return false;
  if (v->type == TL_GGUF_F32 || v->type == TL_GGUF_F64) {
    *out = (float)v->v.f64;
    return true;
  }
  if (is_uint(v->type) && v->type != TL_GGUF_BOOL) {
    *out = (float)v->v.u64;
    return true;
  }
  if (is_int(v->type)) {
    *out = (float)v->v.i64;
    return true;
  }
  return false;
}

bool tl_gguf_get_bool(const tl_gguf *g, const char *key, bool *out) {
  const tl_gguf_value *v = tl_gguf_get(g, key);
  if (!v || v->type != TL_GGUF_BOOL) return false;
  *out = v->v.u64 != 0;
  return true;
}

bool tl_gguf_get_str(const tl_gguf *g, const char *key, tl_str *out) {
  const tl_gguf_value *v = tl_gguf_get(g, key);
  if (!v || v->type != TL_GGUF_STRING) return false;
  *out = v->v.str;
  return true;
}

const tl_gguf_value *tl_gguf_get_arr(const tl_gguf *g, const char *key, uint32_t elem_type) {
  const tl_gguf_value *v = tl_gguf_get(g, key);
  if (!v || v->type != TL_GGUF_ARRAY || v->v.arr.elem_type != elem_type) return NULL;
  return v;
}

double tl_gguf_arr_f64(const tl_gguf_value *arr, uint64_t i) {
  tl_gguf_value v;
  uint32_t et = arr->v.arr.elem_type;
  size_t es = tl_gguf_scalar_size(et);
  if (!es || i >= arr->v.arr.n) return 0;
  decode_scalar(et, arr->v.arr.data + i * es, &v);
  if (et == TL_GGUF_F32 || et == TL_GGUF_F64) return v.v.f64;
  if (is_int(et)) return (double)v.v.i64;
  return (double)v.v.u64;
}

int64_t tl_gguf_arr_i64(const tl_gguf_value *arr, uint64_t i) {
  tl_gguf_value v;
  uint32_t et = arr->v.arr.elem_type;
  size_t es = tl_gguf_scalar_size(et);
  if (!es || i >= arr->v.arr.n) return 0;
  decode_scalar(et, arr->v.arr.data + i * es, &v);
  if (et == TL_GGUF_F32 || et == TL_GGUF_F64) /* NaN and out of range: 0, not UB */
    return v.v.f64 > -9.2e18 && v.v.f64 < 9.2e18 ? (int64_t)v.v.f64 : 0;
  if (is_int(et)) return v.v.i64;
  return (int64_t)v.v.u64;
}

const tl_gguf_tensor *tl_gguf_find_tensor(const tl_gguf *g, const char *name) {
  size_t n = strlen(name);
  for (uint64_t i = 0; i < g->n_tensors; i++)
    if (g->tensors[i].name.len == n && memcmp(g->tensors[i].name.ptr, name, n) == 0)
      return &g->tensors[i];
  return NULL;
}

/* ---- virtual files ------------------------------------------------------- */

tl_status tl_gguf_new_virtual(tl_gguf **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return tl_fail(TL_ERR_NOMEM, "out of memory");
  (*out)->version = 3;
  (*out)->alignment = 32;
  return TL_OK;
}

tl_status tl_gguf_own(tl_gguf *g, void *p, void (*free_fn)(void *)) {
  tl_gguf_blob *b = malloc(sizeof *b);
  if (!b) {
    free_fn(p);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  b->p = p;
  b->map = NULL;
  b->free_fn = free_fn;
  b->next = g->blobs;
  g->blobs = b;
  return TL_OK;
}

tl_status tl_gguf_own_map(tl_gguf *g, void *p, void (*free_fn)(void *), const tl_mmap *map) {
  tl_status s = tl_gguf_own(g, p, free_fn);
  if (!s) g->blobs->map = map;
  return s;
}

const tl_mmap *tl_gguf_map_of(const tl_gguf *g, const void *p, size_t n) {
  if (!g || !p) return NULL;
  if (tl_mmap_holds(&g->map, p, n)) return &g->map;
  for (const tl_gguf_blob *b = g->blobs; b; b = b->next)
    if (b->map && tl_mmap_holds(b->map, p, n)) return b->map;
  return NULL;
}

void *tl_gguf_dup(tl_gguf *g, const void *p, size_t n) {
  void *d = malloc(n ? n : 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  if (tl_gguf_own(g, d, free)) return NULL;
  return d;
}

/* The slot for a key: an existing one (its old value freed) or a new one. */
static tl_gguf_kv *kv_slot(tl_gguf *g, const char *key) {
  size_t n = strlen(key);
  for (uint64_t i = 0; i < g->n_kv; i++)
    if (g->kv[i].key.len == n && memcmp(g->kv[i].key.ptr, key, n) == 0) {
      free_value(&g->kv[i].val);
      memset(&g->kv[i].val, 0, sizeof g->kv[i].val);
      return &g->kv[i];
    }
  if (g->n_kv == g->kv_cap) {
    uint64_t cap = g->kv_cap ? g->kv_cap * 2 : 32;
    tl_gguf_kv *nk = realloc(g->kv, (size_t)cap * sizeof *nk);
    if (!nk) return NULL;
    g->kv = nk;
    g->kv_cap = cap;
  }
  const char *k = tl_gguf_dup(g, key, n);
  if (!k) return NULL;
  tl_gguf_kv *kv = &g->kv[g->n_kv++];
  memset(kv, 0, sizeof *kv);
  kv->key.ptr = k;
  kv->key.len = n;
  return kv;
}

static tl_status set_scalar(tl_gguf *g, const char *key, uint32_t type, const void *p) {
  tl_gguf_kv *kv = kv_slot(g, key);
  if (!kv) return tl_fail(TL_ERR_NOMEM, "out of memory");
  decode_scalar(type, p, &kv->val);
  return TL_OK;
}

tl_status tl_gguf_set_u32(tl_gguf *g, const char *key, uint32_t v) {
  return set_scalar(g, key, TL_GGUF_U32, &v);
}
tl_status tl_gguf_set_i32(tl_gguf *g, const char *key, int32_t v) {
  return set_scalar(g, key, TL_GGUF_I32, &v);
}
tl_status tl_gguf_set_f32(tl_gguf *g, const char *key, float v) {
  return set_scalar(g, key, TL_GGUF_F32, &v);
}
tl_status tl_gguf_set_bool(tl_gguf *g, const char *key, bool v) {
  uint8_t b = v;
  return set_scalar(g, key, TL_GGUF_BOOL, &b);
}

tl_status tl_gguf_set_str(tl_gguf *g, const char *key, const char *s, size_t len) {
  const char *d = tl_gguf_dup(g, s, len);
  tl_gguf_kv *kv = d ? kv_slot(g, key) : NULL;
  if (!kv) return tl_fail(TL_ERR_NOMEM, "out of memory");
  kv->val.type = TL_GGUF_STRING;
  kv->val.v.str.ptr = d;
  kv->val.v.str.len = len;
  return TL_OK;
}

tl_status tl_gguf_set_arr(tl_gguf *g, const char *key, uint32_t elem_type, const void *data,
                          uint64_t n) {
  size_t es = tl_gguf_scalar_size(elem_type);
  size_t bytes;
  if (!es || !tl_mul_size((size_t)n, es, &bytes))
    return tl_fail(TL_ERR_INVALID_ARG, "invalid array for '%s'", key);
  const uint8_t *d = tl_gguf_dup(g, data, bytes);
  tl_gguf_kv *kv = d ? kv_slot(g, key) : NULL;
  if (!kv) return tl_fail(TL_ERR_NOMEM, "out of memory");
  kv->val.type = TL_GGUF_ARRAY;
  kv->val.v.arr.elem_type = elem_type;
  kv->val.v.arr.n = n;
  kv->val.v.arr.data = d;
  return TL_OK;
}

tl_status tl_gguf_set_str_arr(tl_gguf *g, const char *key, const tl_str *strs, uint64_t n) {
  size_t total = 0;
  for (uint64_t i = 0; i < n; i++) total += (size_t)strs[i].len;
  char *pool = malloc(total ? total : 1);
  tl_str *arr = tl_malloc_array((size_t)n ? (size_t)n : 1, sizeof(tl_str));
  if (!pool || !arr) {
    free(pool);
    free(arr);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  tl_status s = tl_gguf_own(g, pool, free);
  if (s) {
    free(arr);
    return s;
  }
  size_t off = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (strs[i].len) memcpy(pool + off, strs[i].ptr, (size_t)strs[i].len);
    arr[i].ptr = pool + off;
    arr[i].len = strs[i].len;
    off += (size_t)strs[i].len;
  }
  tl_gguf_kv *kv = kv_slot(g, key);
  if (!kv) {
    free(arr);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  kv->val.type = TL_GGUF_ARRAY;
  kv->val.v.arr.elem_type = TL_GGUF_STRING;
  kv->val.v.arr.n = n;
  kv->val.v.arr.strs = arr; /* freed by free_value */
  return TL_OK;
}

tl_status tl_gguf_add_tensor(tl_gguf *g, const char *name, uint32_t type, uint32_t n_dims,
                             const int64_t *ne, const void *data, uint64_t nbytes) {
  if (tl_gguf_find_tensor(g, name)) return tl_fail(TL_ERR_FORMAT, "duplicate tensor '%s'", name);
  if (n_dims == 0 || n_dims > TL_GGUF_MAX_DIMS || !tl_type_get(type))
    return tl_fail(TL_ERR_FORMAT, "tensor '%s' has an invalid shape or type", name);
  tl_gguf_tensor t = {0};
  uint64_t numel = 1;
  for (int d = 0; d < TL_GGUF_MAX_DIMS; d++) t.ne[d] = 1;
  for (uint32_t d = 0; d < n_dims; d++) {
    if (ne[d] <= 0 || !tl_mul_u64(numel, (uint64_t)ne[d], &numel) || numel > (uint64_t)INT64_MAX)
      return tl_fail(TL_ERR_FORMAT, "tensor '%s' has an invalid shape", name);
    t.ne[d] = ne[d];
  }
  uint64_t row, want;
  if (!tl_type_row_size(type, ne[0], &row) || !tl_mul_u64(row, numel / (uint64_t)ne[0], &want))
    return tl_fail(TL_ERR_FORMAT, "tensor '%s': row length %lld does not fit type %s", name,
                   (long long)ne[0], tl_type_name(type));
  if (want != nbytes)
    return tl_fail(TL_ERR_FORMAT, "tensor '%s' holds %llu bytes, its shape and type need %llu",
                   name, (unsigned long long)nbytes, (unsigned long long)want);
  if (g->n_tensors == g->tensors_cap) {
    uint64_t cap = g->tensors_cap ? g->tensors_cap * 2 : 64;
    tl_gguf_tensor *nt = realloc(g->tensors, (size_t)cap * sizeof *nt);
    if (!nt) return tl_fail(TL_ERR_NOMEM, "out of memory");
    g->tensors = nt;
    g->tensors_cap = cap;
  }
  size_t nl = strlen(name);
  const char *nm = tl_gguf_dup(g, name, nl);
  if (!nm) return tl_fail(TL_ERR_NOMEM, "out of memory");
  t.name.ptr = nm;
  t.name.len = nl;
  t.type = type;
  t.n_dims = n_dims;
  t.nbytes = nbytes;
  t.data = data;
  g->tensors[g->n_tensors++] = t;
  return TL_OK;
}
