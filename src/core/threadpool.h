/* A fixed pool of worker threads that run one parallel task at a time.
 * The caller's thread is worker 0, so a pool of n threads starts n-1 workers. */
#ifndef TL_THREADPOOL_H
#define TL_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "torchless.h"

typedef struct tl_pool tl_pool;

/* fn(arg, ith, nth) is called once per thread, ith in [0, nth). */
typedef void (*tl_task_fn)(void *arg, int ith, int nth);

tl_status tl_pool_new(int n_threads, tl_pool **out);
void tl_pool_free(tl_pool *p);
int tl_pool_size(const tl_pool *p);
/* Run fn on every thread and wait until all have returned. */
void tl_pool_run(tl_pool *p, tl_task_fn fn, void *arg);

/* A 64-byte aligned buffer of at least bytes owned by the pool, grown as
 * needed and kept for later calls (NULL when out of memory). The pool runs one
 * task at a time: its caller may fill it and hand it to the task's threads,
 * and must not hold it across another caller's use of the pool. */
void *tl_pool_scratch(tl_pool *p, size_t bytes);

/* Split n items evenly: the half-open range of thread ith. */
static inline void tl_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
  int64_t per = n / nth, rem = n % nth;
  *begin = ith * per + (ith < rem ? ith : rem);
  *end = *begin + per + (ith < rem ? 1 : 0);
}

#endif
