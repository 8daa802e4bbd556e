/* Private to the CPU backend: the scalar references of the quantized-activation
 * path (qact.c), shared by the scalar kernel table and the SIMD sets. */
#ifndef TL_QKERNELS_H
#define TL_QKERNELS_H

#include "backend/backend.h"

void tl_qact_q8_32_scalar(const float *x, void *row, int64_t n);
void tl_qact_q8_256_scalar(const float *x, void *row, int64_t n);

void tl_gemm_q4_0_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q4_1_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q5_0_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q5_1_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q8_0_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q2_k_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q3_k_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q4_k_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q5_k_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);
void tl_gemm_q6_k_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx,
                         int64_t nt, int64_t n, float *y, int64_t ldy);

/* AVX2 activation quantizers and integer gemm for every quantized type
 * (gemm_avx2.c, x86 only); tl_cpu_fill_avx2 calls it. */
void tl_cpu_fill_avx2_gemm(tl_cpu_kernels *k);

#endif
