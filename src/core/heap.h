/* A binary min-heap of fixed-size elements ordered by a "comes first"
 * predicate (the tokenizers' merge queues). */
#ifndef TL_HEAP_H
#define TL_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tl_heap {
  unsigned char *v;
  size_t n, cap, size;
  bool (*before)(const void *a, const void *b); /* a comes out before b */
} tl_heap;

static inline void tl_heap_init(tl_heap *h, size_t elem_size,
                                bool (*before)(const void *, const void *)) {
  h->v = NULL;
  h->n = h->cap = 0;
  h->size = elem_size;
  h->before = before;
}
/* Copy elem in; false when out of memory. */
bool tl_heap_push(tl_heap *h, const void *elem);
/* Copy the first element to out and remove it (h->n > 0). */
void tl_heap_pop(tl_heap *h, void *out);
void tl_heap_free(tl_heap *h);

#endif
