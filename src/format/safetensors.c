/* .safetensors reader: see safetensors.h. */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "quant/quant.h"

#define ST_MAX_HEADER (100u * 1024u * 1024u) /* as the reference implementation */
#define ST_MAX_INT 9007199254740992.0        /* 2^53: integers exact in a double */

const char *tl_st_dtype_name(uint32_t type) {
  switch (type) {
    case TL_TYPE_F32:
      return "F32";
    case TL_TYPE_F16:
      return "F16";
    case TL_TYPE_BF16:
      return "BF16";
    default:
      return "?";
  }
}

static bool dtype_from_name(const char *s, uint32_t *type, uint64_t *size) {
  if (strcmp(s, "F32") == 0) {
    *type = TL_TYPE_F32;
    *size = 4;
  } else if (strcmp(s, "F16") == 0) {
    *type = TL_TYPE_F16;
    *size = 2;
  } else if (strcmp(s, "BF16") == 0) {
    *type = TL_TYPE_BF16;
    *size = 2;
  } else {
    return false;
  }
  return true;
}

/* A JSON number that is a non-negative integer exactly representable. */
static bool json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double d = j->valuedouble;
  if (!isfinite(d) || d < 0 || d > ST_MAX_INT || floor(d) != d) return false;
  *out = (uint64_t)d;
  return true;
}

void tl_st_free(tl_st_file *f) {
  if (!f) return;
  if (f->tensors) {
    for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
  }
  tl_mmap_close(&f->map);
  free(f);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const tl_st_tensor *)a)->name, ((const tl_st_tensor *)b)->name);
}

typedef struct span {
  uint64_t begin, end;
  const char *name;
} span;

static int cmp_span(const void *pa, const void *pb) {
  const span *a = pa, *b = pb;
  if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end) return a->end < b->end ? -1 : 1;
  return 0;
}

/* One entry of the header. */
static tl_status parse_tensor(const cJSON *j, const char *what, const uint8_t *data,
                              uint64_t data_size, tl_st_tensor *t) {
  const char *nm = j->string;
  if (!cJSON_IsObject(j))
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s' is not a JSON object", what, nm);
  const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
  const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
  if (!cJSON_IsString(jd) || !jd->valuestring)
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s' has no string 'dtype'", what, nm);
  if (!cJSON_IsArray(js))
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s' has no array 'shape'", what, nm);
  if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s' needs 'data_offsets' [begin, end]", what, nm);
  uint64_t esize;
  if (!dtype_from_name(jd->valuestring, &t->type, &esize))
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "%s: tensor '%s' has dtype '%.32s'; only F32, F16 and BF16 are supported", what,
                   nm, jd->valuestring);
  int nd = cJSON_GetArraySize(js);
  if (nd > TL_ST_MAX_DIMS)
    return tl_fail(TL_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (at most %d)", what, nm,
                   nd, TL_ST_MAX_DIMS);
  t->n_dims = (uint32_t)nd;
  uint64_t numel = 1;
  int d = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, js) {
    uint64_t v;
    if (!json_uint(e, &v))
      return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                     what, nm, d);
    if (!tl_mul_u64(numel, v, &numel) || numel > (uint64_t)INT64_MAX)
      return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s': the shape overflows", what, nm);
    t->shape[d++] = (int64_t)v;
  }
  uint64_t nbytes;
  if (!tl_mul_u64(numel, esize, &nbytes))
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s': the shape overflows", what, nm);
  uint64_t begin, end;
  if (!json_uint(jo->child, &begin) || !json_uint(jo->child->next, &end))
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers",
                   what, nm);
  if (begin > end || end > data_size)
    return tl_fail(TL_ERR_FORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu] are outside the data section "
                   "(%llu bytes)",
                   what, nm, (unsigned long long)begin, (unsigned long long)end,
                   (unsigned long long)data_size);
  if (end - begin != nbytes)
    return tl_fail(TL_ERR_FORMAT, "%s: tensor '%s' spans %llu bytes, its shape and dtype need %llu",
                   what, nm, (unsigned long long)(end - begin), (unsigned long long)nbytes);
  t->numel = numel;
  t->nbytes = nbytes;
  t->data = data + begin;
  return TL_OK;
}

static tl_status parse(const uint8_t *p, size_t size, const char *what, tl_st_file *f) {
  if (size < 8)
    return tl_fail(TL_ERR_FORMAT, "%s is too short for a safetensors file (%zu bytes)", what, size);
  uint64_t hlen = tl_rd_u64(p);
  if (hlen > size - 8)
    return tl_fail(TL_ERR_FORMAT,
                   "%s: the header length %llu runs past the end of the file "
                   "(%zu bytes)",
                   what, (unsigned long long)hlen, size);
  if (hlen < 2 || hlen > ST_MAX_HEADER)
    return tl_fail(TL_ERR_FORMAT, "%s: invalid header length %llu", what, (unsigned long long)hlen);
  const char *hdr = (const char *)p + 8;
  const uint8_t *data = p + 8 + hlen;
  uint64_t data_size = size - 8 - hlen;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, false);
  if (!root) {
    size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
    return tl_fail(TL_ERR_FORMAT, "%s: the header is not valid JSON (near byte %zu)", what, at + 8);
  }
  tl_status s = TL_OK;
  for (const char *q = end; q && q < hdr + hlen; q++)
    if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n' && *q != 0) {
      s = tl_fail(TL_ERR_FORMAT, "%s: trailing bytes after the JSON header", what);
      goto done;
    }
  if (!cJSON_IsObject(root)) {
    s = tl_fail(TL_ERR_FORMAT, "%s: the header is not a JSON object", what);
    goto done;
  }
  size_t n = 0;
  const cJSON *j;
  cJSON_ArrayForEach(j, root) n++;
  f->tensors = tl_calloc_array(n ? n : 1, sizeof *f->tensors);
  if (!f->tensors) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  cJSON_ArrayForEach(j, root) {
    if (!j->string) {
      s = tl_fail(TL_ERR_FORMAT, "%s: header entry without a name", what);
      goto done;
    }
    if (strcmp(j->string, "__metadata__") == 0) {
      if (!cJSON_IsObject(j)) {
        s = tl_fail(TL_ERR_FORMAT, "%s: __metadata__ is not a JSON object", what);
        goto done;
      }
      continue;
    }
    tl_st_tensor *t = &f->tensors[f->n_tensors];
    if ((s = parse_tensor(j, what, data, data_size, t))) goto done;
    t->name = tl_strndup(j->string, strlen(j->string));
    if (!t->name) {
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
      goto done;
    }
    f->n_tensors++;
  }
  if (f->n_tensors > 1) {
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
    for (uint64_t i = 1; i < f->n_tensors; i++)
      if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
        s = tl_fail(TL_ERR_FORMAT, "%s: duplicate tensor '%s'", what, f->tensors[i].name);
        goto done;
      }
    span *sp = tl_malloc_array((size_t)f->n_tensors, sizeof *sp);
    if (!sp) {
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
      goto done;
    }
    size_t m = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
      const tl_st_tensor *t = &f->tensors[i];
      if (!t->nbytes) continue; /* empty tensors occupy nothing */
      uint64_t b = (uint64_t)((const uint8_t *)t->data - data);
      sp[m++] = (span){b, b + t->nbytes, t->name};
    }
    qsort(sp, m, sizeof *sp, cmp_span);
    for (size_t i = 1; i < m; i++)
      if (sp[i].begin < sp[i - 1].end) {
        s = tl_fail(TL_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", what, sp[i - 1].name,
                    sp[i].name);
        break;
      }
    free(sp);
  }
done:
  cJSON_Delete(root);
  return s;
}

tl_status tl_st_parse(const void *data, size_t size, const char *what, tl_st_file **out) {
  if (!out || (!data && size)) return tl_fail(TL_ERR_INVALID_ARG, "tl_st_parse: bad arguments");
  *out = NULL;
  tl_st_file *f = calloc(1, sizeof *f);
  if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status s = parse(data, size, what ? what : "safetensors buffer", f);
  if (s) {
    tl_st_free(f);
    return s;
  }
  *out = f;
  return TL_OK;
}

tl_status tl_st_open(const char *path, tl_st_file **out) {
  if (!out || !path) return tl_fail(TL_ERR_INVALID_ARG, "tl_st_open: bad arguments");
  *out = NULL;
  tl_st_file *f = calloc(1, sizeof *f);
  if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
  tl_status s = tl_mmap_open(path, &f->map);
  if (!s) {
    char what[1200];
    snprintf(what, sizeof what, "'%s'", path);
    s = parse(f->map.data, f->map.size, what, f);
  }
  if (s) {
    tl_st_free(f);
    return s;
  }
  *out = f;
  return TL_OK;
}

const tl_st_tensor *tl_st_find(const tl_st_file *f, const char *name) {
  size_t lo = 0, hi = (size_t)f->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->tensors[mid].name, name);
    if (c == 0) return &f->tensors[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}
