/* GGUF v2/v3 reader. The file is memory-mapped; strings and tensor data are
 * views into the mapping. Every count, length, offset and shape is checked
 * against the file size while parsing. */
#ifndef TL_GGUF_H
#define TL_GGUF_H

#include "core/core.h"

enum tl_gguf_vtype {
  TL_GGUF_U8 = 0,
  TL_GGUF_I8 = 1,
  TL_GGUF_U16 = 2,
  TL_GGUF_I16 = 3,
  TL_GGUF_U32 = 4,
  TL_GGUF_I32 = 5,
  TL_GGUF_F32 = 6,
  TL_GGUF_BOOL = 7,
  TL_GGUF_STRING = 8,
  TL_GGUF_ARRAY = 9,
  TL_GGUF_U64 = 10,
  TL_GGUF_I64 = 11,
  TL_GGUF_F64 = 12,
  TL_GGUF_NTYPES
};

typedef struct tl_gguf_value {
  uint32_t type; /* tl_gguf_vtype */
  union {
    uint64_t u64; /* unsigned ints and bool */
    int64_t i64;  /* signed ints */
    double f64;   /* f32 and f64 */
    tl_str str;
    struct {
      uint32_t elem_type;
      uint64_t n;
      const uint8_t *data;         /* numeric elements: little-endian, packed, in the file */
      tl_str *strs;                /* string elements */
      struct tl_gguf_value *elems; /* nested arrays */
    } arr;
  } v;
} tl_gguf_value;

typedef struct tl_gguf_kv {
  tl_str key;
  tl_gguf_value val;
} tl_gguf_kv;

#define TL_GGUF_MAX_DIMS 4

typedef struct tl_gguf_tensor {
  tl_str name;
  uint32_t type; /* ggml type id (tl_type) */
  uint32_t n_dims;
  int64_t ne[TL_GGUF_MAX_DIMS]; /* ne[0] is the innermost (row length); unused dims are 1 */
  uint64_t offset;              /* relative to the data section */
  uint64_t nbytes;
  const void *data;
} tl_gguf_tensor;

typedef struct tl_gguf_blob tl_gguf_blob;

typedef struct tl_gguf {
  tl_mmap map;
  tl_gguf_blob *blobs; /* memory owned by a virtual (built) file */
  uint64_t kv_cap, tensors_cap;
  uint32_t version;
  uint64_t n_kv;
  tl_gguf_kv *kv;
  uint64_t n_tensors;
  tl_gguf_tensor *tensors;
  uint64_t alignment;
  uint64_t data_offset; /* start of the tensor data section in the file */
} tl_gguf;

/* Open and validate a file. */
tl_status tl_gguf_open(const char *path, tl_gguf **out);
/* Parse a buffer (borrowed: it must outlive the result). */
tl_status tl_gguf_parse(const void *data, size_t size, tl_gguf **out);
void tl_gguf_free(tl_gguf *g);

/* Bytes of a scalar metadata type; 0 for strings, arrays and unknown types. */
size_t tl_gguf_scalar_size(uint32_t type);

const tl_gguf_value *tl_gguf_get(const tl_gguf *g, const char *key);
/* Typed getters: false when absent or not convertible (integers must fit). */
bool tl_gguf_get_u32(const tl_gguf *g, const char *key, uint32_t *out);
bool tl_gguf_get_f32(const tl_gguf *g, const char *key, float *out);
bool tl_gguf_get_bool(const tl_gguf *g, const char *key, bool *out);
bool tl_gguf_get_str(const tl_gguf *g, const char *key, tl_str *out);
/* An array whose elements have the given type (NULL otherwise). */
const tl_gguf_value *tl_gguf_get_arr(const tl_gguf *g, const char *key, uint32_t elem_type);
/* Element i of a numeric array as double / int64. */
double tl_gguf_arr_f64(const tl_gguf_value *arr, uint64_t i);
int64_t tl_gguf_arr_i64(const tl_gguf_value *arr, uint64_t i);

const tl_gguf_tensor *tl_gguf_find_tensor(const tl_gguf *g, const char *name);

/* ---- virtual files -------------------------------------------------------
 * Other formats (Hugging Face folders, Torchless .bin) are loaded by building
 * a GGUF view with llama.cpp's metadata keys and tensor names whose tensor
 * data points into their own mappings. Keys, strings and arrays are copied
 * into memory owned by the view; tensor data is not copied. */
tl_status tl_gguf_new_virtual(tl_gguf **out);
/* Keep p alive until the view is freed, then release it with free_fn(p). */
tl_status tl_gguf_own(tl_gguf *g, void *p, void (*free_fn)(void *));
/* tl_gguf_own for memory that holds a read-only file mapping (a
 * safetensors file): tensor data inside map can then be found by
 * tl_gguf_map_of. */
tl_status tl_gguf_own_map(tl_gguf *g, void *p, void (*free_fn)(void *), const tl_mmap *map);
/* The file mapping (the file's own, or one owned with tl_gguf_own_map)
 * wholly holding [p, p + n); NULL for memory that is not a file's (tensors
 * a loader converted or copied). */
const tl_mmap *tl_gguf_map_of(const tl_gguf *g, const void *p, size_t n);
/* Copy n bytes into memory owned by the view. */
void *tl_gguf_dup(tl_gguf *g, const void *p, size_t n);
/* Set a key (replacing an existing one). */
tl_status tl_gguf_set_u32(tl_gguf *g, const char *key, uint32_t v);
tl_status tl_gguf_set_i32(tl_gguf *g, const char *key, int32_t v);
tl_status tl_gguf_set_f32(tl_gguf *g, const char *key, float v);
tl_status tl_gguf_set_bool(tl_gguf *g, const char *key, bool v);
tl_status tl_gguf_set_str(tl_gguf *g, const char *key, const char *s, size_t len);
/* Arrays: n elements of a numeric type (data packed little-endian) or strings. */
tl_status tl_gguf_set_arr(tl_gguf *g, const char *key, uint32_t elem_type, const void *data,
                          uint64_t n);
tl_status tl_gguf_set_str_arr(tl_gguf *g, const char *key, const tl_str *strs, uint64_t n);
/* Add a tensor (ne[0] innermost); data must stay valid while the view lives
 * (use tl_gguf_own). The byte size is checked against the type and shape. */
tl_status tl_gguf_add_tensor(tl_gguf *g, const char *name, uint32_t type, uint32_t n_dims,
                             const int64_t *ne, const void *data, uint64_t nbytes);

#endif
