/* Low-memory mode's weight streaming (lowmem.c). */
#ifndef TL_MODEL_LOWMEM_H
#define TL_MODEL_LOWMEM_H

#include <stddef.h>

#include "core/core.h"

typedef struct tl_lowmem tl_lowmem;
struct tl_context;

/* For a context whose parts are made: the CPU's layers and output head as
 * units, at most budget bytes of their mapped weights resident at once. */
tl_status tl_lowmem_new(const struct tl_context *c, size_t budget, tl_lowmem **out);
void tl_lowmem_free(tl_lowmem *lm);
/* The unit of part `part`'s layer il (il < 0: the output head); -1 where it
 * is not one (another backend's, or lm NULL). */
int tl_lowmem_unit(const tl_lowmem *lm, int part, int il);
/* Before unit k runs: its weights mapped (the read-ahead window asked for);
 * after it has run: its weights dropped from the process. Nothing for k < 0
 * or lm NULL. */
void tl_lowmem_enter(tl_lowmem *lm, int k);
void tl_lowmem_leave(tl_lowmem *lm, int k);

#endif
