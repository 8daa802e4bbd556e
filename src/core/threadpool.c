/* A small pool of pthreads driven by a generation counter: the caller
 * publishes a task, bumps the generation and joins in as thread 0; workers
 * spin briefly then sleep on a condition variable until the next task. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

struct tl_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;
  atomic_int pending;
  atomic_bool quit;
  tl_task_fn fn;
  void *arg;
  void *scratch;
  size_t scratch_cap;
  float *rates;
};

typedef struct worker_arg {
  tl_pool *p;
  int ith;
} worker_arg;

static void *worker(void *a) {
  worker_arg wa = *(worker_arg *)a;
  free(a);
  tl_pool *p = wa.p;
  unsigned seen = 0;
  for (;;) {
    unsigned g;
    int spins = 0;
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
           !atomic_load(&p->quit)) {
      if (++spins < 20000) continue;
      if (spins < 20100) { /* give the core away before sleeping (oversubscribed machines) */
        sched_yield();
        continue;
      }
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
        pthread_cond_wait(&p->cv, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->quit)) return NULL;
    seen = g;
    p->fn(p->arg, wa.ith, p->n);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
  }
}

tl_status tl_pool_new(int n_threads, tl_pool **out) {
  *out = NULL;
  if (n_threads < 1 || n_threads > 1024)
    return tl_fail(TL_ERR_INVALID_ARG, "thread count %d is out of range (1..1024)", n_threads);
  tl_pool *p = calloc(1, sizeof *p);
  if (!p) return tl_fail(TL_ERR_NOMEM, "out of memory");
  p->n = n_threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  atomic_init(&p->gen, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->quit, false);
  p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
  p->rates = malloc(sizeof(float) * (size_t)n_threads);
  if (!p->threads || !p->rates) {
    free(p->threads);
    free(p->rates);
    free(p);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < n_threads; i++) p->rates[i] = 1.0f;
  for (int i = 1; i < n_threads; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa || pthread_create(&p->threads[i], NULL, worker, (wa->p = p, wa->ith = i, wa)) != 0) {
      free(wa);
      p->n = i;
      tl_pool_free(p);
      return tl_fail(TL_ERR_NOMEM, "cannot start thread %d", i);
    }
  }
  *out = p;
  return TL_OK;
}

void tl_pool_free(tl_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, true);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->threads);
  free(p->scratch);
  free(p->rates);
  free(p);
}

float *tl_pool_rates(tl_pool *p) {
  return p->rates;
}

void *tl_pool_scratch(tl_pool *p, size_t bytes) {
  if (bytes <= p->scratch_cap) return p->scratch;
  size_t cap = (bytes + bytes / 4 + 63) & ~(size_t)63;
  void *n = aligned_alloc(64, cap);
  if (!n) return NULL;
  free(p->scratch);
  p->scratch = n;
  p->scratch_cap = cap;
  return n;
}

int tl_pool_size(const tl_pool *p) {
  return p->n;
}

void tl_pool_run(tl_pool *p, tl_task_fn fn, void *arg) {
  if (p->n == 1) {
    fn(arg, 0, 1);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  atomic_store(&p->pending, p->n - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  fn(arg, 0, p->n);
  for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++)
    if (spins > 2000) sched_yield();
}

int32_t tl_physical_cores(void) {
  /* Count distinct (physical id, core id) pairs from /proc/cpuinfo. */
  FILE *f = fopen("/proc/cpuinfo", "r");
  int n_logical = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n_logical < 1) n_logical = 1;
  if (!f) return n_logical;
  char line[512];
  int phys = -1, pairs[4096][2], n = 0;
  while (fgets(line, sizeof line, f)) {
    int v;
    if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
    if (sscanf(line, "core id : %d", &v) == 1) {
      bool found = false;
      for (int i = 0; i < n; i++)
        if (pairs[i][0] == phys && pairs[i][1] == v) found = true;
      if (!found && n < 4096) {
        pairs[n][0] = phys;
        pairs[n][1] = v;
        n++;
      }
    }
  }
  fclose(f);
  return n > 0 && n <= n_logical ? n : n_logical;
}

int64_t tl_time_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
