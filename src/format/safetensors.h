/* Reader for .safetensors files (Hugging Face): an 8-byte little-endian
 * header length, a JSON header mapping tensor names to {dtype, shape,
 * data_offsets}, then the data section. The file is memory-mapped; tensor
 * data are views into the mapping. Every field is validated: JSON types,
 * dtypes (F32, F16, BF16), shapes (no overflow), offsets inside the data
 * section, byte sizes matching the shapes, no overlaps, no duplicate names. */
#ifndef TL_SAFETENSORS_H
#define TL_SAFETENSORS_H

#include "core/core.h"

#define TL_ST_MAX_DIMS 8

typedef struct tl_st_tensor {
  char *name;                    /* NUL-terminated, owned by the file */
  uint32_t type;                 /* TL_TYPE_F32, TL_TYPE_F16 or TL_TYPE_BF16 */
  uint32_t n_dims;               /* 0 for a scalar */
  int64_t shape[TL_ST_MAX_DIMS]; /* safetensors order: shape[n_dims-1] is innermost */
  uint64_t numel;
  uint64_t nbytes;
  const void *data; /* into the mapping (or the borrowed buffer) */
} tl_st_tensor;

typedef struct tl_st_file {
  tl_mmap map;
  uint64_t n_tensors;
  tl_st_tensor *tensors; /* sorted by name */
} tl_st_file;

/* Map and validate a file. */
tl_status tl_st_open(const char *path, tl_st_file **out);
/* Validate a buffer (borrowed: it must outlive the result). what names the
 * buffer in error messages (a path, or NULL). */
tl_status tl_st_parse(const void *data, size_t size, const char *what, tl_st_file **out);
void tl_st_free(tl_st_file *f);

/* The tensor with this name, or NULL. */
const tl_st_tensor *tl_st_find(const tl_st_file *f, const char *name);

/* Name of a safetensors dtype for a type id ("F32", "F16", "BF16"). */
const char *tl_st_dtype_name(uint32_t type);

#endif
