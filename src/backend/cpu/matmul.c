#include "backend/backend.h"

typedef struct mm_task {
  const tl_cpu_kernels *k;
  const tl_weight *w;
  const float *x;
  int64_t n_tok;
  float *y;
  int64_t ldy;
} mm_task;

/* Each thread takes a contiguous range of weight rows; within it, tiles of
 * rows are reused across all tokens while they are hot in cache. */
static void mm_run(void *arg, int ith, int nth) {
  const mm_task *t = arg;
  const tl_weight *w = t->w;
  tl_vec_dot_fn dot = t->k->vec_dot[w->type];
  int64_t r0, r1;
  tl_split(w->rows, ith, nth, &r0, &r1);
  const int64_t tile = 16;
  if (w->scales) { /* Torchless .bin int8 with a scale per 64 values */
    tl_vec_dot_i8s_fn dot8 = t->k->vec_dot_i8s;
    const int64_t gpr = w->cols / TL_I8S_GROUP;
    for (int64_t rb = r0; rb < r1; rb += tile) {
      int64_t re = rb + tile < r1 ? rb + tile : r1;
      for (int64_t tok = 0; tok < t->n_tok; tok++) {
        const float *xr = t->x + tok * w->cols;
        float *yr = t->y + tok * t->ldy;
        for (int64_t r = rb; r < re; r++)
          yr[r] = dot8((const int8_t *)w->data + (size_t)r * w->row_bytes, w->scales + r * gpr, xr,
                       w->cols);
      }
    }
    return;
  }
  for (int64_t rb = r0; rb < r1; rb += tile) {
    int64_t re = rb + tile < r1 ? rb + tile : r1;
    for (int64_t tok = 0; tok < t->n_tok; tok++) {
      const float *xr = t->x + tok * w->cols;
      float *yr = t->y + tok * t->ldy;
      for (int64_t r = rb; r < re; r++)
        yr[r] = dot((const uint8_t *)w->data + (size_t)r * w->row_bytes, xr, w->cols);
    }
  }
}

void tl_cpu_matmul(tl_pool *pool, const tl_cpu_kernels *k, const tl_weight *w, const float *x,
                   int64_t n_tok, float *y, int64_t ldy) {
  mm_task t = {k, w, x, n_tok, y, ldy};
  tl_pool_run(pool, mm_run, &t);
}

void tl_weight_row_f32(const tl_weight *w, int64_t i, float *out) {
  if (w->scales) {
    const int8_t *q = (const int8_t *)w->data + (size_t)i * w->row_bytes;
    const float *s = w->scales + i * (w->cols / TL_I8S_GROUP);
    for (int64_t c = 0; c < w->cols; c++) out[c] = (float)q[c] / s[c / TL_I8S_GROUP];
    return;
  }
  tl_type_get(w->type)->to_float((const uint8_t *)w->data + (size_t)i * w->row_bytes, out,
                                 w->cols);
}
