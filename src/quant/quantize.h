/* Float -> quantized row conversion (ggml's reference quantizers,
 * quantize_row_*_ref, reproduced byte for byte). The model quantizer that
 * uses them is in convert/quantize_model.h. */
#ifndef TL_QUANTIZE_H
#define TL_QUANTIZE_H

#include "quant/quant.h"

/* n is a multiple of the block size; dst receives n / blck blocks. */
void tl_quant_q4_0(const float *src, void *dst, int64_t n);
void tl_quant_q4_1(const float *src, void *dst, int64_t n);
void tl_quant_q5_0(const float *src, void *dst, int64_t n);
void tl_quant_q5_1(const float *src, void *dst, int64_t n);
void tl_quant_q2_k(const float *src, void *dst, int64_t n);
void tl_quant_q3_k(const float *src, void *dst, int64_t n);
void tl_quant_q4_k(const float *src, void *dst, int64_t n);
void tl_quant_q5_k(const float *src, void *dst, int64_t n);
void tl_quant_q6_k(const float *src, void *dst, int64_t n);

#endif
