/* Writes small seed files for the fuzz targets (run by make_seeds.sh):
 *   gen_seeds OUTDIR DATA_DIR
 * OUTDIR/gguf: a tiny LLaMA model (F32 and Q8_0 matrices, 8 tokens), and the
 *   vocabularies of the SentencePiece and byte-level BPE fixtures as GGUF;
 * OUTDIR/safetensors: a small valid file, and each fixture's header with the
 *   start of its data. Seeds are generated, never committed. */
#include <stdio.h>
#include <stdlib.h>

#include "format/gguf_write.h"
#include "format/hf.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

static void check(tl_status s, const char *what) {
  if (s != TL_OK) {
    fprintf(stderr, "gen_seeds: %s: %s\n", what, tl_last_error());
    exit(1);
  }
}

static float *floats(tl_gguf *g, size_t n, float base, float scale) {
  float *f = malloc(n * sizeof *f);
  if (!f) exit(1);
  uint32_t r = 1234;
  for (size_t i = 0; i < n; i++) {
    r = r * 1664525u + 1013904223u;
    f[i] = base + scale * ((float)(r >> 8) / 16777216.0f - 0.5f);
  }
  check(tl_gguf_own(g, f, free), "own");
  return f;
}

static void add(tl_gguf *g, const char *name, uint32_t type, int64_t ne0, int64_t ne1, bool norm) {
  int64_t ne[2] = {ne0, ne1};
  uint32_t nd = ne1 > 1 ? 2 : 1;
  uint64_t row;
  tl_type_row_size(type, ne0, &row);
  uint64_t nb = row * (uint64_t)ne1;
  void *data;
  if (type == TL_TYPE_F32) {
    data = floats(g, (size_t)(ne0 * ne1), norm ? 1.0f : 0.0f, norm ? 0.2f : 1.0f);
  } else { /* Q8_0: scale 1/64 and small quants */
    uint8_t *q = calloc((size_t)nb, 1);
    if (!q) exit(1);
    for (uint64_t b = 0; b < nb; b += 34) {
      uint16_t h = tl_f32_to_f16(1.0f / 64.0f);
      memcpy(q + b, &h, 2);
      for (int i = 0; i < 32; i++) q[b + 2 + i] = (uint8_t)((int)(b / 34 + (uint64_t)i) % 7 - 3);
    }
    check(tl_gguf_own(g, q, free), "own");
    data = q;
  }
  check(tl_gguf_add_tensor(g, name, type, nd, ne, data, nb), name);
}

static void tiny_model(const char *path, uint32_t mtype) {
  tl_gguf *g;
  check(tl_gguf_new_virtual(&g), "virtual");
  const int d = 32, nh = 2, nkv = 1, ff = 64, nv = 8, hd = d / nh;
  check(tl_gguf_set_str(g, "general.architecture", "llama", 5), "kv");
  check(tl_gguf_set_str(g, "general.name", "fuzz seed", 9), "kv");
  check(tl_gguf_set_u32(g, "llama.block_count", 1), "kv");
  check(tl_gguf_set_u32(g, "llama.context_length", 64), "kv");
  check(tl_gguf_set_u32(g, "llama.embedding_length", d), "kv");
  check(tl_gguf_set_u32(g, "llama.feed_forward_length", ff), "kv");
  check(tl_gguf_set_u32(g, "llama.attention.head_count", nh), "kv");
  check(tl_gguf_set_u32(g, "llama.attention.head_count_kv", nkv), "kv");
  check(tl_gguf_set_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f), "kv");
  check(tl_gguf_set_f32(g, "llama.rope.freq_base", 10000.0f), "kv");
  check(tl_gguf_set_str(g, "tokenizer.ggml.model", "llama", 5), "kv");
  static const char *const toks[8] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "<0xC3>",
                                      ("\xe2\x96\x81" "a"), "ab"};
  tl_str ts[8];
  for (int i = 0; i < 8; i++) ts[i] = (tl_str){toks[i], strlen(toks[i])};
  const int32_t types[8] = {2, 3, 3, 1, 1, 6, 1, 1};
  const float scores[8] = {0, 0, 0, -1, -2, -2, -1.5f, -3};
  check(tl_gguf_set_str_arr(g, "tokenizer.ggml.tokens", ts, 8), "kv");
  check(tl_gguf_set_arr(g, "tokenizer.ggml.token_type", TL_GGUF_I32, types, 8), "kv");
  check(tl_gguf_set_arr(g, "tokenizer.ggml.scores", TL_GGUF_F32, scores, 8), "kv");
  check(tl_gguf_set_u32(g, "tokenizer.ggml.bos_token_id", 1), "kv");
  check(tl_gguf_set_u32(g, "tokenizer.ggml.eos_token_id", 2), "kv");
  add(g, "token_embd.weight", mtype, d, nv, false);
  add(g, "output_norm.weight", TL_TYPE_F32, d, 1, true);
  add(g, "output.weight", mtype, d, nv, false);
  add(g, "blk.0.attn_norm.weight", TL_TYPE_F32, d, 1, true);
  add(g, "blk.0.attn_q.weight", mtype, d, nh * hd, false);
  add(g, "blk.0.attn_k.weight", mtype, d, nkv * hd, false);
  add(g, "blk.0.attn_v.weight", mtype, d, nkv * hd, false);
  add(g, "blk.0.attn_output.weight", mtype, nh * hd, d, false);
  add(g, "blk.0.ffn_norm.weight", TL_TYPE_F32, d, 1, true);
  add(g, "blk.0.ffn_gate.weight", mtype, d, ff, false);
  add(g, "blk.0.ffn_up.weight", mtype, d, ff, false);
  add(g, "blk.0.ffn_down.weight", mtype, ff, d, false);
  check(tl_gguf_write(g, path), path);
  tl_gguf_free(g);
  tl_model *m;
  check(tl_model_load(path, NULL, &m), path); /* the seed must load */
  tl_model_free(m);
}

static void vocab_gguf(const char *dir, const char *path) {
  tl_gguf *g;
  check(tl_gguf_new_virtual(&g), "virtual");
  check(tl_hf_tokenizer_load(g, dir), dir);
  check(tl_gguf_set_str(g, "general.architecture", "llama", 5), "kv");
  check(tl_gguf_write(g, path), path);
  tl_gguf_free(g);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static void st_seeds(const char *out, const char *data_dir) {
  char path[2048];
  static const char hdr[] =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"
      "\"c\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[22,24]},"
      "\"d\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[24,24]}}";
  size_t hl = sizeof hdr - 1, n = 8 + hl + 24;
  uint8_t *b = calloc(n, 1);
  if (!b) exit(1);
  uint64_t h = hl;
  memcpy(b, &h, 8);
  memcpy(b + 8, hdr, hl);
  snprintf(path, sizeof path, "%s/safetensors/small.safetensors", out);
  write_file(path, b, n);
  free(b);
  static const char *const archs[] = {"llama", "mistral", "phi2", "gemma3", "qwen2"};
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
    snprintf(path, sizeof path, "%s/%s/model.safetensors", data_dir, archs[i]);
    tl_mmap m;
    if (tl_mmap_open(path, &m) != TL_OK || m.size < 8) continue;
    uint64_t hlen = tl_rd_u64(m.data);
    size_t keep = hlen + 8 + 64 < m.size ? (size_t)hlen + 8 + 64 : m.size;
    snprintf(path, sizeof path, "%s/safetensors/%s-head.safetensors", out, archs[i]);
    write_file(path, m.data, keep);
    tl_mmap_close(&m);
  }
}


/* A tiny Torchless native .bin (f32 LLaMA, byte-level vocabulary). */
static void native_seed(const char *path) {
  static const struct {
    const char *name;
    int rows, cols;
  } t[] = {{"model.embed_tokens.weight", 8, 32},
           {"model.norm.weight", 32, 0},
           {"lm_head.weight", 8, 32},
           {"model.layers.0.input_layernorm.weight", 32, 0},
           {"model.layers.0.self_attn.q_proj.weight", 32, 32},
           {"model.layers.0.self_attn.k_proj.weight", 16, 32},
           {"model.layers.0.self_attn.v_proj.weight", 16, 32},
           {"model.layers.0.self_attn.o_proj.weight", 32, 32},
           {"model.layers.0.post_attention_layernorm.weight", 32, 0},
           {"model.layers.0.mlp.gate_proj.weight", 64, 32},
           {"model.layers.0.mlp.up_proj.weight", 64, 32},
           {"model.layers.0.mlp.down_proj.weight", 32, 64}};
  char json[8192];
  int n = snprintf(json, sizeof json,
                   "{\"metadata\": {\"hidden_size\": \"32\", \"intermediate_size\": \"64\", "
                   "\"n_layers\": \"1\", \"n_heads\": \"2\", \"n_kv_heads\": \"1\", "
                   "\"vocab_size\": \"8\", \"max_position_embeddings\": \"64\", "
                   "\"sliding_window\": \"None\", \"rope_theta\": \"10000.0\", "
                   "\"norm_eps\": \"1e-05\", \"act_type\": \"silu\", \"quant\": \"f32\"}, "
                   "\"tensors\": {");
  size_t off = 0;
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t cnt = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
    if (t[i].cols)
      n += snprintf(json + n, sizeof json - (size_t)n,
                    "%s\"%s\": {\"dtype\": \"f32\", \"shape\": [%d, %d], \"offset\": %zu}",
                    i ? ", " : "", t[i].name, t[i].rows, t[i].cols, off);
    else
      n += snprintf(json + n, sizeof json - (size_t)n,
                    "%s\"%s\": {\"dtype\": \"f32\", \"shape\": [%d], \"offset\": %zu}",
                    i ? ", " : "", t[i].name, t[i].rows, off);
    off += cnt * 4;
  }
  n += snprintf(json + n, sizeof json - (size_t)n,
                "}, \"tokenizer\": {\"vocab\": {\"<s>\": 0, \"</s>\": 1, \"a\": 2, \"b\": 3, "
                "\"\\u0120\": 4, \"ab\": 5, \"\\u0120a\": 6, \"c\": 7}, "
                "\"merges\": [\"a b\", \"\\u0120 a\"], \"bos_token\": \"<s>\", "
                "\"eos_token\": \"</s>\"}}");
  size_t hs = ((size_t)n + 8 + 63) / 64 * 64 - 8;
  size_t total = 8 + hs + off;
  uint8_t *b = calloc(total, 1);
  if (!b) exit(1);
  uint64_t h = hs;
  memcpy(b, &h, 8);
  memcpy(b + 8, json, (size_t)n);
  float *w = (float *)(b + 8 + hs);
  uint32_t r = 99;
  for (size_t i = 0; i < off / 4; i++) {
    r = r * 1664525u + 1013904223u;
    w[i] = 0.5f + ((float)(r >> 8) / 16777216.0f - 0.5f) * 0.2f;
  }
  write_file(path, b, total);
  free(b);
  tl_model *m;
  if (tl_model_load(path, NULL, &m) == TL_OK)
    tl_model_free(m);
  else
    fprintf(stderr, "gen_seeds: note: the native seed does not load: %s\n", tl_last_error());
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gen_seeds OUTDIR DATA_DIR\n");
    return 2;
  }
  const char *out = argv[1], *data = argv[2];
  char path[2048], dir[2048];
  snprintf(path, sizeof path, "%s/gguf/tiny-llama-f32.gguf", out);
  tiny_model(path, TL_TYPE_F32);
  snprintf(path, sizeof path, "%s/gguf/tiny-llama-q8_0.gguf", out);
  tiny_model(path, TL_TYPE_Q8_0);
  static const char *const vocabs[] = {"llama", "qwen2", "llama3"};
  for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
    snprintf(dir, sizeof dir, "%s/%s", data, vocabs[i]);
    snprintf(path, sizeof path, "%s/gguf/vocab-%s.gguf", out, vocabs[i]);
    vocab_gguf(dir, path);
  }
  st_seeds(out, data);
  snprintf(path, sizeof path, "%s/native/tiny.bin", out);
  native_seed(path);
  return 0;
}
