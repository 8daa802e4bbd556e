/* GGUF v3 writer. Metadata values are tl_gguf_value (so a parsed or virtual
 * file's key/value pairs are written as they are); tensor data is streamed
 * in tensor order, each tensor padded to general.alignment (32 if absent).
 * The file is created as "<path>.tmp-XXXXXX" in the same directory and only
 * renamed to path (after fsync) by tl_gguf_writer_finish, so an interrupted
 * or failed write never leaves a partial file under path. */
#ifndef TL_GGUF_WRITE_H
#define TL_GGUF_WRITE_H

#include "format/gguf.h"

typedef struct tl_gguf_wtensor {
  const char *name; /* NUL-terminated */
  uint32_t type;    /* tl_type */
  uint32_t n_dims;
  int64_t ne[TL_GGUF_MAX_DIMS];
} tl_gguf_wtensor;

typedef struct tl_gguf_writer tl_gguf_writer;

/* Create the temporary file and write the header: n_kv key/value pairs (a
 * "general.alignment" among them sets the alignment) and the tensor infos
 * with offsets computed from the types and shapes. */
tl_status tl_gguf_writer_open(const char *path, const tl_gguf_kv *kv, uint64_t n_kv,
                              const tl_gguf_wtensor *tensors, uint64_t n_tensors,
                              tl_gguf_writer **out);
/* Append n bytes of tensor data. Data may span tensors: the writer inserts
 * the padding when a tensor's byte count is complete. */
tl_status tl_gguf_writer_write(tl_gguf_writer *w, const void *data, size_t n);
/* Bytes the current tensor still needs (0 when all are complete). */
uint64_t tl_gguf_writer_pending(const tl_gguf_writer *w);
/* Check that all tensor data was written, flush, fsync, close and rename
 * the file to its final name. Frees w (also on failure, removing the
 * temporary file). */
tl_status tl_gguf_writer_finish(tl_gguf_writer *w);
/* Close and remove the temporary file, free w. NULL is a no-op. */
void tl_gguf_writer_abort(tl_gguf_writer *w);

/* Write a whole parsed or virtual file (metadata and tensor data). */
tl_status tl_gguf_write(const tl_gguf *g, const char *path);

#endif
