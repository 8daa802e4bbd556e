/* Hugging Face model folders (config.json + safetensors weights + tokenizer
 * files) loaded as a GGUF view: the metadata keys and tensor names that
 * llama.cpp's convert_hf_to_gguf.py would write, with tensor data pointing
 * into the mapped safetensors files (except small tensors the converter
 * rewrites: Gemma's RMSNorm weights as 1 + w, LLaMA 3's rope_freqs). */
#ifndef TL_HF_H
#define TL_HF_H

#include "format/gguf.h"

/* True when path is a directory (a candidate Hugging Face model folder). */
bool tl_hf_is_folder(const char *path);

/* Build the view of the folder dir: config.json, model.safetensors or
 * model.safetensors.index.json with its shards, and the tokenizer (through
 * tl_hf_tokenizer_load, tokenizer/tokenizer.h). Free the result with tl_gguf_free. */
tl_status tl_hf_open(const char *dir, tl_gguf **out);

/* The GGUF tensor name of a Hugging Face tensor name for a GGUF architecture
 * ("llama", "qwen2", ...), as the folder loader maps it (untied lm_head ->
 * output.weight; no bound on the layer number). False when it has none or
 * out (cap bytes) is too small. */
bool tl_hf_tensor_name(const char *arch, const char *hf_name, char *out, size_t cap);

#endif
