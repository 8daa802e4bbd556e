/* The model quantizer's internal entry points (convert/quantize_model.c;
 * the public ones, tl_model_quantize and tl_synth_model, are in torchless.h). */
#ifndef TL_CONVERT_QUANTIZE_MODEL_H
#define TL_CONVERT_QUANTIZE_MODEL_H

#include "format/gguf.h"
#include "quant/quant.h"

/* Quantize the tensors of an already opened model (any format viewed as a
 * GGUF) into a GGUF file at out_path. */
tl_status tl_quantize_gguf(const tl_gguf *src, const char *out_path, const tl_quantize_params *p);

/* The tensor type llama.cpp's llama-quantize picks for each tensor of a
 * model under an ftype (see docs/quantization.md). names/ne/n_dims describe
 * n tensors; out[i] receives the type of tensor i, or src_types[i] when the
 * tensor is kept as it is. n_layer, n_head, n_head_kv: the model's. */
tl_status tl_quant_choose_types(const char *arch, tl_ftype ftype, bool pure, int32_t n_layer,
                                int32_t n_head, int32_t n_head_kv, uint64_t n,
                                const char *const *names, const int64_t (*ne)[4],
                                const uint32_t *src_types, uint32_t *out);

/* The order in which llama.cpp writes (and counts) tensors: by layer number
 * ("blk.N." prefix, others first), then by name. */
int tl_quant_name_cmp(const char *a, const char *b);

#endif
