/* A fixed pool of worker threads that run one parallel task at a time.
 * The caller's thread is worker 0, so a pool of n threads starts n-1 workers. */
#ifndef TL_THREADPOOL_H
#define TL_THREADPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

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

/* Per-thread speeds (rate[i] for thread i, initially all 1) that a caller
 * may keep up to date and split work by (tl_split_rated): the pool's cores
 * need not be equally fast (a shared virtual machine's often are not). Only
 * thread i writes rate[i], from its task; the caller reads them between runs. */
float *tl_pool_rates(tl_pool *p);

/* Split n items evenly: the half-open range of thread ith. */
static inline void tl_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
  int64_t per = n / nth, rem = n % nth;
  *begin = ith * per + (ith < rem ? ith : rem);
  *end = *begin + per + (ith < rem ? 1 : 0);
}

/* Split n items in proportion to rate[0..nth): the half-open range of
 * thread ith (ranges in thread order, covering [0, n)). */
static inline void tl_split_rated(int64_t n, const float *rate, int ith, int nth, int64_t *begin,
                                  int64_t *end) {
  double total = 0, before = 0;
  for (int i = 0; i < nth; i++) {
    total += rate[i];
    if (i < ith) before += rate[i];
  }
  if (!(total > 0)) { /* no usable rates: even */
    tl_split(n, ith, nth, begin, end);
    return;
  }
  *begin = (int64_t)((double)n * before / total + 0.5);
  *end = ith == nth - 1 ? n : (int64_t)((double)n * (before + rate[ith]) / total + 0.5);
}

/* rate[0..nth) brought within a factor of two of their mean into out, so
 * that no thread's share of a rated split (and with it its next measurement)
 * vanishes. */
static inline void tl_rates_clamped(const float *rate, int nth, float *out) {
  float mean = 0;
  for (int i = 0; i < nth; i++) mean += rate[i] / (float)nth;
  for (int i = 0; i < nth; i++)
    out[i] = rate[i] < 0.5f * mean ? 0.5f * mean : rate[i] > 2 * mean ? 2 * mean : rate[i];
}

/* Fold the work a thread did since `since` (CLOCK_MONOTONIC) into its rate,
 * smoothed over runs: rate = 0.8 rate + 0.2 work/ns. */
static inline void tl_rate_record(float *rate, double work, const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const double ns =
      (double)(now.tv_sec - since->tv_sec) * 1e9 + (double)(now.tv_nsec - since->tv_nsec);
  if (work > 0 && ns > 0) *rate = 0.8f * *rate + 0.2f * (float)(work / ns);
}

#endif
