/* The CPU backend's kernels: a dispatch table per instruction set (the
 * scalar reference first, SIMD variants chosen at run time next to it), and
 * the matrix multiplication that runs them on the thread pool. Only
 * src/backend/cpu/ and the kernel tests use this header; the model sees the
 * backend interface (backend/backend.h) alone. */
#ifndef TL_BACKEND_CPU_H
#define TL_BACKEND_CPU_H

#include "backend/backend.h"
#include "core/core.h"
#include "core/threadpool.h"
#include "quant/quant.h"

/* dot(row of W in its type, x[n]) for n a multiple of the type's block. */
typedef float (*tl_vec_dot_fn)(const void *row, const float *x, int64_t n);

/* y[i] += a * x[i] for x in its type (F32 or F16: KV cache rows). */
typedef void (*tl_axpy_fn)(float a, const void *x, float *y, int64_t n);

/* Attention over a tile of n cached positions of one kv head, for nq query
 * heads (q + g * hd), reading the cache in place in its element type (f16:
 * IEEE half, else f32). Keys are stored transposed: the key of position r has
 * its value d at kt[d * ldk + r], so that one cache line holds one value of 16
 * or 32 positions; values are rows, position r's row at v + r * hd.
 *   att_scores: s[g * lds + r] = scale * k.q, the sum over d = 0..hd-1 in
 *               order, one fused multiply-add per d, from 0; and where smax
 *               is not NULL, smax[g] = the largest of s[g * lds + 0..n) (NaNs
 *               left out; -inf if none);
 *   att_accum:  o[g * hd + i] updated by one fused multiply-add
 *               p[g * ldp + r] * v[r][i] per row r, in row order; and where
 *               sum is not NULL, sum[g] += p[g * ldp + r] for each row in
 *               order, one float addition each.
 * Every set that has them gives the same bits (they fix the order of the
 * operations); NULL where a set has none (the forward pass then runs plain
 * loops, which round differently). */
typedef void (*tl_att_scores_fn)(const void *kt, bool f16, int64_t ldk, int n, const float *q,
                                 int nq, int hd, float scale, float *s, int64_t lds, float *smax);
typedef void (*tl_att_accum_fn)(const void *v, bool f16, int n, const float *p, int64_t ldp, int nq,
                                int hd, float *o, float *sum);

/* y[i] = expf(x[i] - m) for i < n (y may be x): bit for bit what the C
 * library's expf returns, whichever set computes it (the scalar set calls it). */
typedef void (*tl_exp_sub_fn)(const float *x, float m, float *y, int64_t n);
/* y[i] = x[i] / (1 + expf(-x[i])) * g[i] (SiLU, gated), or without the
 * factor when g is NULL; y may be x. Bit for bit the scalar expression. */
typedef void (*tl_silu_fn)(const float *x, const float *g, float *y, int64_t n);

/* dot(int8 row q[n] with scales[n / 64] (value = q / scale), x[n]) for n a
 * multiple of 64. */
typedef float (*tl_vec_dot_i8s_fn)(const int8_t *q, const float *scales, const float *x, int64_t n);

/* Activation formats: how tl_cpu_matmul hands its f32 input rows to a weight
 * type's gemm kernel. Quantized weights take int8 activations quantized once
 * per call (what llama.cpp does); float weights keep the f32 rows. A row of n
 * values (n a multiple of the format's block) is tl_act_row_bytes long:
 *   Q8_32:  int8 q[n] | float d[n / 32] | float s[n / 32]   (x ~ d * q, s = d * sum(q))
 *   Q8_256: int8 q[n] | float d[n / 256] | int16 bsum[n / 16] (sums of q per 16)
 * q starts at the row start; the other arrays at tl_act_d / tl_act_s / tl_act_bsum. */
typedef enum tl_act_fmt { TL_ACT_F32 = 0, TL_ACT_Q8_32 = 1, TL_ACT_Q8_256 = 2 } tl_act_fmt;
#define TL_ACT_FMT_COUNT 3

/* The activation format a weight type's gemm kernel takes. */
tl_act_fmt tl_cpu_act_fmt(uint32_t type);
/* Bytes of one activation row of n values (a multiple of 64, so rows stay aligned). */
size_t tl_act_row_bytes(tl_act_fmt f, int64_t n);
static inline size_t tl_act_q_bytes(int64_t n) {
  return ((size_t)n + 63) & ~(size_t)63;
}
static inline const float *tl_act_d(const void *row, int64_t n) {
  return (const float *)((const uint8_t *)row + tl_act_q_bytes(n));
}
static inline const float *tl_act_s(const void *row, int64_t n) {
  return tl_act_d(row, n) + n / 32;
}
static inline const int16_t *tl_act_bsum(const void *row, int64_t n) {
  return (const int16_t *)(tl_act_d(row, n) + n / 256);
}

/* Quantize one activation row of n values into a row of the format. */
typedef void (*tl_quant_act_fn)(const float *x, void *row, int64_t n);

/* y[t * ldy + r] = dot(weight row r, activation row t) for r < nr, t < nt:
 * weight rows ldw bytes apart, activation rows (in the type's format; f32 rows
 * for TL_ACT_F32) ldx bytes apart, n values each. */
typedef void (*tl_gemm_fn)(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                           int64_t nt, int64_t n, float *y, int64_t ldy);

typedef struct tl_cpu_kernels {
  const char *name;
  tl_vec_dot_fn vec_dot[TL_TYPE_COUNT];
  tl_axpy_fn axpy[TL_TYPE_COUNT];
  tl_att_scores_fn att_scores;
  tl_att_accum_fn att_accum;
  tl_exp_sub_fn exp_sub;
  tl_silu_fn silu;
  tl_vec_dot_i8s_fn vec_dot_i8s;
  /* Matrix-matrix kernels; NULL: tl_cpu_matmul uses vec_dot per row and token. */
  tl_gemm_fn gemm[TL_TYPE_COUNT];
  tl_quant_act_fn quant_act[TL_ACT_FMT_COUNT];
} tl_cpu_kernels;

/* Fill a kernel table with the SIMD variants (x86 only). */
void tl_cpu_fill_avx2(tl_cpu_kernels *k);
void tl_cpu_fill_avx512(tl_cpu_kernels *k);
/* AVX-512 plus VNNI: integer matrix kernels on quantized activations. */
void tl_cpu_fill_avx512vnni(tl_cpu_kernels *k);
bool tl_cpu_has_avx2(void);
bool tl_cpu_has_avx512(void);
bool tl_cpu_has_avx512vnni(void);
/* AArch64 (kernels_neon.c, gemm_neon.c): baseline ASIMD ("neon"), and with
 * the dot product instructions ("neon_dotprod"); chosen by HWCAP. */
void tl_cpu_fill_neon(tl_cpu_kernels *k);
void tl_cpu_fill_neon_dotprod(tl_cpu_kernels *k);
bool tl_cpu_has_neon(void);
bool tl_cpu_has_neon_dotprod(void);

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

/* Mixture of experts (backend.h's tl_matmul_id_op): the tokens routed to
 * each expert grouped, each chosen expert's rows read once; an error only
 * for an invalid op or no memory for the grouping. */
tl_status tl_cpu_matmul_id(tl_pool *pool, const tl_cpu_kernels *k, const tl_matmul_id_op *op);
/* The router's top-k (backend.h's tl_moe_route_op). */
void tl_cpu_moe_route(const tl_moe_route_op *op);

/* n halves to floats (vectorized when the CPU allows). */
void tl_cpu_f16_to_f32(const void *src, float *dst, int64_t n);
/* n values (a multiple of 32) of Q8_0 blocks to floats, bit-identical to
 * tl_dequant_q8_0 (vectorized when the CPU allows). */
void tl_cpu_q8_0_to_f32(const void *src, float *dst, int64_t n);

/* A CPU backend's per-thread attention speeds, n of them (tests set them to
 * check that uneven shares give the same logits). */
float *tl_backend_cpu_att_rates(tl_backend *be, int *n);

#endif
