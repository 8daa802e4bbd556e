/* Torchless native binary models: the .bin files of the original Torchless
 * (C++) exporter, read as a GGUF view and written from any loadable
 * LLaMA/Mistral-family model.
 *
 * Layout: bytes 0-7 a little-endian uint64 header_size; then header_size
 * bytes of UTF-8 JSON (as Python's json.dumps writes it), padded with NUL
 * bytes so that the payload starts 64-byte aligned at 8 + header_size. The
 * JSON holds
 *   "metadata":  strings hidden_size, intermediate_size, n_layers, n_heads,
 *                n_kv_heads, vocab_size, max_position_embeddings,
 *                sliding_window, rope_theta, norm_eps, act_type, quant
 *                (f32 | int8), and head_dim when it is not hidden / heads
 *                (a torchless extension; classic files never have it);
 *   "tensors":   {HF name: {dtype f32 | int8, shape, offset
 *                [, scale_offset, scale_size]}}, offsets relative to the
 *                payload; int8 tensors hold int8 values then numel / 64
 *                float32 scales s (value = q / s, s = 127 / max|x| of each
 *                group of 64 consecutive values);
 *   "tokenizer": {vocab: {token: id}, merges: ["a b", ...]} as in a Hugging
 *                Face tokenizer.json BPE model. Torchless extensions, all
 *                optional: "pre" (tokenizer.ggml.pre of a byte-level
 *                vocabulary), "bos_token", "eos_token".
 *
 * The view: general.architecture "llama", llama.* keys, the Hugging Face
 * Q/K row layout ("torchless.rope.type" = "neox"), tensors with llama.cpp's
 * names (int8 ones as type I8 plus an F32 tensor "<name>.scale" of
 * numel / 64 scales, bound by the model loader), and tokenizer.ggml.* keys
 * (SentencePiece-style BPE with byte fallback when the vocabulary has <0xXX>
 * byte tokens and the "▁" space marker, byte-level GPT-2 style otherwise). */
#ifndef TL_NATIVE_H
#define TL_NATIVE_H

#include "format/gguf.h"

/* Content detection on the first n bytes of a file: an 8-byte header size of
 * a sane value followed by a JSON object. */
bool tl_native_sniff(const void *head, size_t n);
/* tl_native_sniff on the start of the file at path (false when unreadable). */
bool tl_native_file(const char *path);

/* Open, validate (header size against the file size, the JSON, every
 * metadata value, offset and shape) and map a .bin file as a GGUF view. */
tl_status tl_native_open(const char *path, tl_gguf **out);

#endif
