/* Low-memory mode (tl_context_params.low_mem): the CPU's weights streamed
 * through the process a few layers at a time.
 *
 * The units are the CPU parts' layers in order, then the output head where
 * the last part is the CPU's; a unit's ranges are the parts of its weights
 * that lie in a read-only file mapping (the GGUF or .bin file, a
 * safetensors shard; what a loader converted into its own memory is left
 * alone). Before a unit runs, the window of units from it onwards whose
 * weights fit the budget is asked of a reader thread, which maps them in
 * order (MADV_POPULATE_READ: read from the file where the page cache lacks
 * them, while the caller computes); the caller waits for its own unit only.
 * After a unit has run, its pages are dropped from the process (MADV_DONTNEED
 * on the file mapping: the page cache may keep them, the process's resident
 * memory does not), so the weights resident at any time are at most the
 * window's. Where the whole model fits the budget nothing is dropped.
 *
 * The order of units is predicted as a cycle (layer after layer, token after
 * token); a step that skips a unit (no logits wanted: no output head) just
 * starts the window again where it is. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/core.h"
#include "model/lowmem.h"
#include "model/model.h"

typedef struct {
  const uint8_t *p;
  size_t n; /* whole pages */
} lm_range;

typedef struct {
  lm_range *r;
  int n_r;
  size_t bytes;
} lm_unit;

struct tl_lowmem {
  lm_unit *u;
  int n_u;
  int base[2]; /* unit of a part's first layer (-1: not the CPU's) */
  int head;    /* unit of the output head (-1: none) */
  size_t budget;
  bool keep_all; /* the whole model fits the budget */
  pthread_t th;
  bool th_ok, sync_ok; /* the reader thread; the mutex and conditions */
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  bool *resident;
  int win0, win_n; /* the window asked for: units win0, win0 + 1, ... (cyclic) */
  int busy;        /* the unit the reader is mapping, -1: none */
  bool stop;
  uint64_t read_units; /* units the reader mapped (for the log) */
};

static void range_add(lm_unit *u, const void *p, size_t n, size_t pg) {
  const uintptr_t a = (uintptr_t)p;
  const uintptr_t lo = a / pg * pg, hi = (a + n + pg - 1) / pg * pg;
  if (hi <= lo) return;
  lm_range *r = realloc(u->r, (size_t)(u->n_r + 1) * sizeof *r);
  if (!r) return; /* a range less: it is just not streamed */
  u->r = r;
  u->r[u->n_r++] = (lm_range){(const uint8_t *)lo, hi - lo};
  u->bytes += hi - lo;
}

static void unit_add_weight(lm_unit *u, const tl_gguf *g, const tl_weight *w, size_t pg) {
  if (!w->data || w->rows <= 0) return;
  const size_t n = w->row_bytes * (size_t)w->rows;
  if (tl_gguf_map_of(g, w->data, n)) range_add(u, w->data, n, pg);
}

static void unit_map(const lm_unit *u) {
  for (int i = 0; i < u->n_r; i++) {
#ifdef MADV_POPULATE_READ
    if (madvise((void *)u->r[i].p, u->r[i].n, MADV_POPULATE_READ) == 0) continue;
#endif
    /* older kernels: fault the pages in by reading one byte of each */
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    volatile uint8_t sink = 0;
    for (size_t off = 0; off < u->r[i].n; off += pg) sink ^= u->r[i].p[off];
    (void)sink;
  }
}

static void unit_drop(const lm_unit *u) {
  for (int i = 0; i < u->n_r; i++)
    madvise((void *)u->r[i].p, u->r[i].n, MADV_DONTNEED); /* a hint */
}

static bool in_window(const tl_lowmem *lm, int k) {
  int d = k - lm->win0;
  if (d < 0) d += lm->n_u;
  return d < lm->win_n;
}

static void *reader(void *arg) {
  tl_lowmem *lm = arg;
  pthread_mutex_lock(&lm->mu);
  while (!lm->stop) {
    /* the first unit of the window not mapped yet */
    int k = -1;
    for (int i = 0; i < lm->win_n; i++) {
      int j = (lm->win0 + i) % lm->n_u;
      if (!lm->resident[j]) {
        k = j;
        break;
      }
    }
    if (k < 0) {
      pthread_cond_wait(&lm->cv_work, &lm->mu);
      continue;
    }
    lm->busy = k;
    pthread_mutex_unlock(&lm->mu);
    unit_map(&lm->u[k]);
    pthread_mutex_lock(&lm->mu);
    lm->busy = -1;
    lm->resident[k] = true;
    lm->read_units++;
    pthread_cond_broadcast(&lm->cv_done);
  }
  pthread_mutex_unlock(&lm->mu);
  return NULL;
}

/* Units from k on (cyclic) whose bytes fit the budget: at least k itself. */
static int window_from(const tl_lowmem *lm, int k) {
  size_t sum = 0;
  int n = 0;
  while (n < lm->n_u) {
    const size_t b = lm->u[(k + n) % lm->n_u].bytes;
    if (n > 0 && sum + b > lm->budget) break;
    sum += b;
    n++;
  }
  return n;
}

tl_status tl_lowmem_new(const tl_context *c, size_t budget, tl_lowmem **out) {
  *out = NULL;
  tl_lowmem *lm = calloc(1, sizeof *lm);
  if (!lm) return tl_fail(TL_ERR_NOMEM, "out of memory");
  const tl_gguf *g = c->model->gguf;
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  int n = 0;
  for (int ip = 0; ip < c->n_part; ip++)
    if (!strcmp(c->part[ip].be->name, "cpu")) n += c->part[ip].l1 - c->part[ip].l0;
  const tl_part *last = &c->part[c->n_part - 1];
  const bool head = !strcmp(last->be->name, "cpu");
  lm->n_u = n + (head ? 1 : 0);
  lm->budget = budget;
  lm->busy = -1;
  lm->u = calloc((size_t)(lm->n_u ? lm->n_u : 1), sizeof *lm->u);
  lm->resident = calloc((size_t)(lm->n_u ? lm->n_u : 1), sizeof *lm->resident);
  if (!lm->u || !lm->resident) {
    tl_lowmem_free(lm);
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  }
  int k = 0;
  for (int ip = 0; ip < 2; ip++) {
    lm->base[ip] = -1;
    if (ip >= c->n_part || strcmp(c->part[ip].be->name, "cpu") != 0) continue;
    const tl_part *P = &c->part[ip];
    lm->base[ip] = k;
    for (int il = 0; il < P->l1 - P->l0; il++, k++) {
      const tl_layer *L = &P->w.layers[il];
      const tl_weight *w[] = {&L->wq,          &L->wk,        &L->wv,         &L->wo,
                              &L->w_gate,      &L->w_up,      &L->w_down,     &L->w_gate_inp,
                              &L->w_gate_exps, &L->w_up_exps, &L->w_down_exps};
      for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        /* fused tensors (Phi-3's qkv_proj) are row ranges of one tensor:
         * each range once */
        bool seen = false;
        for (size_t j = 0; j < i; j++)
          if (w[j]->data == w[i]->data) seen = true;
        if (!seen) unit_add_weight(&lm->u[k], g, w[i], pg);
      }
    }
  }
  lm->head = head ? k : -1;
  if (head) unit_add_weight(&lm->u[k], g, &last->w.output, pg);
  size_t total = 0, largest = 0;
  for (int i = 0; i < lm->n_u; i++) {
    total += lm->u[i].bytes;
    if (lm->u[i].bytes > largest) largest = lm->u[i].bytes;
  }
  lm->keep_all = total <= budget;
  if (largest > budget)
    tl_log(TL_LOG_WARN,
           "low-memory mode: the budget (%.0f MiB) is below one layer's weights (%.0f MiB): one "
           "layer at a time",
           (double)budget / 1048576.0, (double)largest / 1048576.0);
  tl_log(TL_LOG_INFO, "low-memory mode: %d units, %.0f MiB of mapped weights, budget %.0f MiB%s",
         lm->n_u, (double)total / 1048576.0, (double)budget / 1048576.0,
         lm->keep_all ? " (the whole model fits: nothing is dropped)" : "");
  if (pthread_mutex_init(&lm->mu, NULL) != 0) {
    tl_lowmem_free(lm);
    return tl_fail(TL_ERR_NOMEM, "low-memory mode: cannot make a mutex");
  }
  pthread_cond_init(&lm->cv_work, NULL);
  pthread_cond_init(&lm->cv_done, NULL);
  lm->sync_ok = true;
  lm->th_ok = lm->n_u > 0 && pthread_create(&lm->th, NULL, reader, lm) == 0;
  *out = lm;
  return TL_OK;
}

void tl_lowmem_free(tl_lowmem *lm) {
  if (!lm) return;
  if (lm->th_ok) {
    pthread_mutex_lock(&lm->mu);
    lm->stop = true;
    pthread_cond_broadcast(&lm->cv_work);
    pthread_mutex_unlock(&lm->mu);
    pthread_join(lm->th, NULL);
  }
  if (lm->sync_ok) {
    pthread_cond_destroy(&lm->cv_work);
    pthread_cond_destroy(&lm->cv_done);
    pthread_mutex_destroy(&lm->mu);
  }
  if (lm->u)
    for (int i = 0; i < lm->n_u; i++) free(lm->u[i].r);
  free(lm->u);
  free(lm->resident);
  free(lm);
}

int tl_lowmem_unit(const tl_lowmem *lm, int part, int il) {
  if (!lm) return -1;
  if (il < 0) return lm->head;
  return part >= 0 && part < 2 && lm->base[part] >= 0 ? lm->base[part] + il : -1;
}

void tl_lowmem_enter(tl_lowmem *lm, int k) {
  if (!lm || k < 0 || k >= lm->n_u) return;
  if (!lm->th_ok) { /* no reader: map it here */
    if (!lm->resident[k]) unit_map(&lm->u[k]);
    lm->resident[k] = true;
    return;
  }
  pthread_mutex_lock(&lm->mu);
  lm->win0 = k;
  lm->win_n = window_from(lm, k);
  /* what an earlier prediction mapped outside the window goes */
  if (!lm->keep_all)
    for (int j = 0; j < lm->n_u; j++)
      if (lm->resident[j] && j != lm->busy && !in_window(lm, j)) {
        unit_drop(&lm->u[j]);
        lm->resident[j] = false;
      }
  pthread_cond_signal(&lm->cv_work);
  while (!lm->resident[k]) pthread_cond_wait(&lm->cv_done, &lm->mu);
  pthread_mutex_unlock(&lm->mu);
}

void tl_lowmem_leave(tl_lowmem *lm, int k) {
  if (!lm || k < 0 || k >= lm->n_u || lm->keep_all) return;
  if (!lm->th_ok) {
    unit_drop(&lm->u[k]);
    lm->resident[k] = false;
    return;
  }
  pthread_mutex_lock(&lm->mu);
  unit_drop(&lm->u[k]);
  lm->resident[k] = false;
  /* the window moves on to the predicted next unit */
  const int nx = (k + 1) % lm->n_u;
  lm->win0 = nx;
  lm->win_n = window_from(lm, nx);
  if (lm->win_n >= lm->n_u) lm->win_n = lm->n_u - 1; /* never k's next turn before k has gone */
  pthread_cond_signal(&lm->cv_work);
  pthread_mutex_unlock(&lm->mu);
}
