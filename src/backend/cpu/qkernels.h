/* Private to the CPU backend: the scalar references of the quantized-activation
 * path (qact.c), shared by the scalar kernel table and the SIMD sets. */
#ifndef TL_QKERNELS_H
#define TL_QKERNELS_H

#include "backend/cpu/cpu.h"

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

/* The IQ types (qact.c): the 8-bit-activation scalar gemm, and the integer
 * form of a block (32 elements for IQ4_NL, else 256): the block's values are
 * f * sc[e / 16] * q[e]; returns f. */
float tl_iq_unpack(uint32_t type, const uint8_t *block, int8_t *q, int16_t *sc);
#define TL_IQ_GEMM_DECL(name)                                                                    \
  void tl_gemm_##name##_scalar(const void *w, size_t ldw, int64_t nr, const void *x, size_t ldx, \
                               int64_t nt, int64_t n, float *y, int64_t ldy);
TL_IQ_GEMM_DECL(iq4_nl)
TL_IQ_GEMM_DECL(iq4_xs)
TL_IQ_GEMM_DECL(iq2_xxs)
TL_IQ_GEMM_DECL(iq2_xs)
TL_IQ_GEMM_DECL(iq2_s)
TL_IQ_GEMM_DECL(iq3_xxs)
TL_IQ_GEMM_DECL(iq3_s)
TL_IQ_GEMM_DECL(iq1_s)
TL_IQ_GEMM_DECL(iq1_m)

/* AVX2 activation quantizers and integer gemm for every quantized type, and
 * the float types' prefill gemm (gemm_avx2.c, x86 only); tl_cpu_fill_avx2
 * calls it. */
void tl_cpu_fill_avx2_gemm(tl_cpu_kernels *k);
/* The AVX2 set's float dot products (kernels_x86.c), which its float gemm
 * takes for one token. */
float tl_avx2_dot_f32(const void *row, const float *x, int64_t n);
float tl_avx2_dot_f16(const void *row, const float *x, int64_t n);
float tl_avx2_dot_bf16(const void *row, const float *x, int64_t n);
/* Call fn(..., G) with g (1..8: query heads of the attention tile kernels,
 * tokens of the Q4_0 prefill tile) as a constant, so that the kernel's
 * accumulators, one per head or token, live in registers. */
// clang-format off
#define TL_SWITCH_G8(fn, g, ...) \
  switch (g) { \
    case 1: fn(__VA_ARGS__, 1); break; \
    case 2: fn(__VA_ARGS__, 2); break; \
    case 3: fn(__VA_ARGS__, 3); break; \
    case 4: fn(__VA_ARGS__, 4); break; \
    case 5: fn(__VA_ARGS__, 5); break; \
    case 6: fn(__VA_ARGS__, 6); break; \
    case 7: fn(__VA_ARGS__, 7); break; \
    default: fn(__VA_ARGS__, 8); break; \
  }
// clang-format on

/* The attention tile kernels (attn_x86.c): tl_cpu_fill_avx2 and
 * tl_cpu_fill_avx512 call them. */
void tl_cpu_fill_avx2_attn(tl_cpu_kernels *k);
void tl_cpu_fill_avx512_attn(tl_cpu_kernels *k);

/* For the x86 gemm files: call fn(..., R, T) for the tile size nr x nt (1..4
 * each) as constants. */
// clang-format off
#define TILE_SWITCH(fn, nr, nt, ...) \
  switch ((nr) * 8 + (nt)) { \
    case 9: fn(__VA_ARGS__, 1, 1); break; \
    case 10: fn(__VA_ARGS__, 1, 2); break; \
    case 11: fn(__VA_ARGS__, 1, 3); break; \
    case 12: fn(__VA_ARGS__, 1, 4); break; \
    case 17: fn(__VA_ARGS__, 2, 1); break; \
    case 18: fn(__VA_ARGS__, 2, 2); break; \
    case 19: fn(__VA_ARGS__, 2, 3); break; \
    case 20: fn(__VA_ARGS__, 2, 4); break; \
    case 25: fn(__VA_ARGS__, 3, 1); break; \
    case 26: fn(__VA_ARGS__, 3, 2); break; \
    case 27: fn(__VA_ARGS__, 3, 3); break; \
    case 28: fn(__VA_ARGS__, 3, 4); break; \
    case 33: fn(__VA_ARGS__, 4, 1); break; \
    case 34: fn(__VA_ARGS__, 4, 2); break; \
    case 35: fn(__VA_ARGS__, 4, 3); break; \
    default: fn(__VA_ARGS__, 4, 4); break; \
  }
// clang-format on

#endif
