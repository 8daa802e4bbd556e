/* libFuzzer target: the .safetensors reader (header length, JSON header,
 * dtypes, shapes, data offsets, overlaps, duplicates). */
#include <stdlib.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tl_st_file *f = NULL;
  tl_status s = tl_st_parse(data, size, "fuzz", &f);
  if (s != TL_OK) {
    if (f || !tl_last_error()[0]) abort();
    return 0;
  }
  volatile uint8_t sink = 0;
  for (uint64_t i = 0; i < f->n_tensors; i++) {
    const tl_st_tensor *t = &f->tensors[i];
    if (tl_st_find(f, t->name) != t) abort(); /* sorted, no duplicates */
    if (t->nbytes) {
      const uint8_t *p = t->data;
      if (p < data || p + t->nbytes > data + size) abort();
      sink ^= p[0] ^ p[t->nbytes - 1];
    }
    (void)tl_st_dtype_name(t->type);
  }
  (void)tl_st_find(f, "model.embed_tokens.weight");
  (void)sink;
  tl_st_free(f);
  return 0;
}
