#include "core/heap.h"

#include <stdlib.h>
#include <string.h>

#define AT(h, i) ((h)->v + (i) * (h)->size)

bool tl_heap_push(tl_heap *h, const void *elem) {
  if (h->n == h->cap) {
    size_t nc = h->cap ? h->cap * 2 : 64;
    unsigned char *p = realloc(h->v, nc * h->size);
    if (!p) return false;
    h->v = p;
    h->cap = nc;
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!h->before(elem, AT(h, parent))) break;
    memcpy(AT(h, i), AT(h, parent), h->size);
    i = parent;
  }
  memcpy(AT(h, i), elem, h->size);
  return true;
}

void tl_heap_pop(tl_heap *h, void *out) {
  memcpy(out, AT(h, 0), h->size);
  size_t last = --h->n, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->before(AT(h, c + 1), AT(h, c))) c++;
    if (!h->before(AT(h, c), AT(h, last))) break;
    memcpy(AT(h, i), AT(h, c), h->size);
    i = c;
  }
  if (h->n > 0) memcpy(AT(h, i), AT(h, last), h->size);
}

void tl_heap_free(tl_heap *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}
