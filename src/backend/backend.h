/* Backend operations used by the forward pass. Only the CPU backend exists
 * today; its kernels sit behind a dispatch table (scalar reference first,
 * SIMD variants chosen at run time are added next to it). */
#ifndef TL_BACKEND_H
#define TL_BACKEND_H

#include "core/core.h"
#include "core/threadpool.h"
#include "quant/quant.h"

/* A weight matrix for y = W x: rows output features, cols input features,
 * stored row-major in its file type (a view into the mapped file). */
typedef struct tl_weight {
  uint32_t type;
  int64_t rows, cols;
  size_t row_bytes;
  const void *data;
  /* Torchless .bin int8 weights (type TL_TYPE_I8): one float per group of 64
   * values of a row, value = q / scale; row r's scales start at
   * scales + r * cols / 64. NULL for every other type. */
  const float *scales;
} tl_weight;

/* Group size of the int8 weights with separate scales. */
#define TL_I8S_GROUP 64

/* dot(row of W in its type, x[n]) for n a multiple of the type's block. */
typedef float (*tl_vec_dot_fn)(const void *row, const float *x, int64_t n);

/* y[i] += a * x[i] for x in its type (F32 or F16: KV cache rows). */
typedef void (*tl_axpy_fn)(float a, const void *x, float *y, int64_t n);

/* dot(int8 row q[n] with scales[n / 64] (value = q / scale), x[n]) for n a
 * multiple of 64. */
typedef float (*tl_vec_dot_i8s_fn)(const int8_t *q, const float *scales, const float *x,
                                   int64_t n);

typedef struct tl_cpu_kernels {
  const char *name;
  tl_vec_dot_fn vec_dot[TL_TYPE_COUNT];
  tl_axpy_fn axpy[TL_TYPE_COUNT];
  tl_vec_dot_i8s_fn vec_dot_i8s;
} tl_cpu_kernels;

/* Fill a kernel table with the SIMD variants (x86 only). */
void tl_cpu_fill_avx2(tl_cpu_kernels *k);
void tl_cpu_fill_avx512(tl_cpu_kernels *k);
bool tl_cpu_has_avx2(void);
bool tl_cpu_has_avx512(void);

/* The scalar reference kernels. */
const tl_cpu_kernels *tl_cpu_kernels_scalar(void);
/* The kernels selected for this CPU (TL_CPU_KERNELS=scalar forces the reference). */
const tl_cpu_kernels *tl_cpu_kernels_best(void);
/* Every kernel set this CPU can run, the scalar reference first. */
int tl_cpu_kernel_sets(const tl_cpu_kernels **out, int max);
/* Whether the CPU backend can multiply a weight of this type. */
bool tl_cpu_supports_type(uint32_t type);

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok; x is [n_tok][cols],
 * y is [n_tok][rows] (row stride ldy). */
void tl_cpu_matmul(tl_pool *pool, const tl_cpu_kernels *k, const tl_weight *w, const float *x,
                   int64_t n_tok, float *y, int64_t ldy);

/* Row i of W as float32 into out[cols]. */
void tl_weight_row_f32(const tl_weight *w, int64_t i, float *out);

#endif
