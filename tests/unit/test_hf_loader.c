/* Hugging Face folders as GGUF views: the ten fixture folders (keys, tensor
 * names, shapes, types and bytes checked against the safetensors files read
 * by an independent parser here), sharded checkpoints written by the test,
 * config spelling variants (transformers 4 vs 5), and hostile safetensors /
 * config.json / index files. Runs under ASan/UBSan: hostile buffers are
 * allocations of exactly their size. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/hf.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

/* ---- an independent safetensors reader ---------------------------------- */

typedef struct st_t {
  const char *name;
  const char *dtype;
  int nd;
  int64_t shape[8];
  const uint8_t *data;
  size_t nbytes;
} st_t;

typedef struct st_file {
  char *buf;
  size_t size;
  cJSON *hdr;
  int n;
  st_t t[512];
} st_file;

static st_file *st_load(const char *path) {
  st_file *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->buf = tl_test_read_file(path, &f->size);
  assert_non_null(f->buf);
  uint64_t hl;
  memcpy(&hl, f->buf, 8);
  f->hdr = cJSON_ParseWithLength(f->buf + 8, (size_t)hl);
  assert_non_null(f->hdr);
  const uint8_t *data = (const uint8_t *)f->buf + 8 + hl;
  const cJSON *e;
  cJSON_ArrayForEach(e, f->hdr) {
    if (strcmp(e->string, "__metadata__") == 0) continue;
    assert_true(f->n < 512);
    st_t *t = &f->t[f->n++];
    t->name = e->string;
    t->dtype = cJSON_GetObjectItem(e, "dtype")->valuestring;
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(e, "shape")) t->shape[t->nd++] =
        (int64_t)d->valuedouble;
    const cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
    size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    t->data = data + b;
    t->nbytes = en - b;
  }
  return f;
}

static const st_t *st_get(const st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  return NULL;
}

static void st_close(st_file *f) {
  cJSON_Delete(f->hdr);
  free(f->buf);
  free(f);
}

static float bf16f(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* ---- temporary folders ------------------------------------------------------ */

static char *tmp_dir(void) {
  char *p = tl_test_tmpfile("_hf");
  assert_int_equal(mkdir(p, 0700), 0);
  return p;
}

static void rm_dir(char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
  free(dir);
}

static void put_file(const char *dir, const char *name, const void *data, size_t n) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  assert_int_equal(tl_test_write_file(p, data, n), 0);
}

static void put_text(const char *dir, const char *name, const char *text) {
  put_file(dir, name, text, strlen(text));
}

static char *fixture_dir(const char *arch) {
  char rel[256];
  snprintf(rel, sizeof rel, "%s/config.json", arch);
  char *p = tl_test_fixture(rel);
  if (!p) return NULL;
  p[strlen(p) - strlen("/config.json")] = 0;
  return p;
}

/* Copy a fixture's non-weight files into dir. */
static void copy_small_files(const char *fdir, const char *dir) {
  static const char *const names[] = {"config.json", "generation_config.json", "tokenizer.json",
                                      "tokenizer.model", "tokenizer_config.json"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", fdir, names[i]);
    size_t n;
    char *b = tl_test_read_file(p, &n);
    if (!b) continue;
    put_file(dir, names[i], b, n);
    free(b);
  }
}

static void link_weights(const char *fdir, const char *dir) {
  char src[4096], dst[4096];
  snprintf(src, sizeof src, "%s/model.safetensors", fdir);
  snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
  assert_int_equal(symlink(src, dst), 0);
}

/* ---- expectations per architecture -------------------------------------------- */

typedef enum layout {
  L_LLAMA,
  L_QWEN2,
  L_QWEN3,
  L_PHI2,
  L_PHI3,
  L_GEMMA,
  L_GEMMA2,
  L_GEMMA3
} layout;

typedef struct arch_case {
  const char *dir, *arch;
  layout lay;
  uint32_t n_head, n_head_kv, head_dim, n_rot;
  float rope_base, rope_base_swa, eps;
  bool neox, tied;
} arch_case;

static const arch_case k_cases[] = {
    {"llama", "llama", L_LLAMA, 4, 2, 64, 64, 1e4f, 0, 1e-5f, true, false},
    {"llama3", "llama", L_LLAMA, 4, 2, 64, 64, 5e5f, 0, 1e-5f, true, false},
    {"mistral", "llama", L_LLAMA, 4, 2, 64, 64, 1e6f, 0, 1e-5f, true, false},
    {"qwen2", "qwen2", L_QWEN2, 4, 2, 64, 64, 1e6f, 0, 1e-6f, false, true},
    {"qwen3", "qwen3", L_QWEN3, 4, 2, 64, 64, 1e6f, 0, 1e-6f, false, true},
    {"phi2", "phi2", L_PHI2, 4, 4, 64, 32, 1e4f, 0, 1e-5f, false, false},
    {"phi3", "phi3", L_PHI3, 4, 4, 64, 64, 1e4f, 0, 1e-5f, false, false},
    {"gemma", "gemma", L_GEMMA, 4, 1, 128, 128, 1e4f, 0, 1e-6f, false, true},
    {"gemma2", "gemma2", L_GEMMA2, 4, 2, 128, 128, 1e4f, 0, 1e-6f, false, true},
    {"gemma3", "gemma3", L_GEMMA3, 4, 2, 128, 128, 1e6f, 1e4f, 1e-6f, false, true},
};

typedef struct expect {
  char gguf[96], hf[128];
} expect;

static int add_exp(expect *e, int n, const char *g, const char *h) {
  snprintf(e[n].gguf, sizeof e[n].gguf, "%s", g);
  snprintf(e[n].hf, sizeof e[n].hf, "%s", h);
  return n + 1;
}

static int layer_exp(expect *e, int n, int il, const char *g, const char *h) {
  char a[96], b[128];
  snprintf(a, sizeof a, "blk.%d.%s", il, g);
  snprintf(b, sizeof b, "model.layers.%d.%s", il, h);
  return add_exp(e, n, a, b);
}

static int expected_tensors(const arch_case *c, expect *e) {
  int n = 0;
  layout L = c->lay;
  bool g23 = L == L_GEMMA2 || L == L_GEMMA3;
  n = add_exp(e, n, "token_embd.weight", "model.embed_tokens.weight");
  if (L == L_PHI2) {
    n = add_exp(e, n, "output_norm.weight", "model.final_layernorm.weight");
    n = add_exp(e, n, "output_norm.bias", "model.final_layernorm.bias");
    n = add_exp(e, n, "output.bias", "lm_head.bias");
  } else {
    n = add_exp(e, n, "output_norm.weight", "model.norm.weight");
  }
  if (!c->tied) n = add_exp(e, n, "output.weight", "lm_head.weight");
  for (int il = 0; il < 2; il++) {
    n = layer_exp(e, n, il, "attn_norm.weight", "input_layernorm.weight");
    if (L == L_PHI3) {
      n = layer_exp(e, n, il, "attn_qkv.weight", "self_attn.qkv_proj.weight");
    } else {
      n = layer_exp(e, n, il, "attn_q.weight", "self_attn.q_proj.weight");
      n = layer_exp(e, n, il, "attn_k.weight", "self_attn.k_proj.weight");
      n = layer_exp(e, n, il, "attn_v.weight", "self_attn.v_proj.weight");
    }
    if (L == L_QWEN2 || L == L_PHI2) {
      n = layer_exp(e, n, il, "attn_q.bias", "self_attn.q_proj.bias");
      n = layer_exp(e, n, il, "attn_k.bias", "self_attn.k_proj.bias");
      n = layer_exp(e, n, il, "attn_v.bias", "self_attn.v_proj.bias");
    }
    if (L == L_PHI2) {
      n = layer_exp(e, n, il, "attn_norm.bias", "input_layernorm.bias");
      n = layer_exp(e, n, il, "attn_output.weight", "self_attn.dense.weight");
      n = layer_exp(e, n, il, "attn_output.bias", "self_attn.dense.bias");
      n = layer_exp(e, n, il, "ffn_up.weight", "mlp.fc1.weight");
      n = layer_exp(e, n, il, "ffn_up.bias", "mlp.fc1.bias");
      n = layer_exp(e, n, il, "ffn_down.weight", "mlp.fc2.weight");
      n = layer_exp(e, n, il, "ffn_down.bias", "mlp.fc2.bias");
      continue;
    }
    n = layer_exp(e, n, il, "attn_output.weight", "self_attn.o_proj.weight");
    if (L == L_QWEN3 || L == L_GEMMA3) {
      n = layer_exp(e, n, il, "attn_q_norm.weight", "self_attn.q_norm.weight");
      n = layer_exp(e, n, il, "attn_k_norm.weight", "self_attn.k_norm.weight");
    }
    if (g23) {
      n = layer_exp(e, n, il, "post_attention_norm.weight", "post_attention_layernorm.weight");
      n = layer_exp(e, n, il, "ffn_norm.weight", "pre_feedforward_layernorm.weight");
      n = layer_exp(e, n, il, "post_ffw_norm.weight", "post_feedforward_layernorm.weight");
    } else {
      n = layer_exp(e, n, il, "ffn_norm.weight", "post_attention_layernorm.weight");
    }
    if (L == L_PHI3) {
      n = layer_exp(e, n, il, "ffn_up.weight", "mlp.gate_up_proj.weight");
    } else {
      n = layer_exp(e, n, il, "ffn_gate.weight", "mlp.gate_proj.weight");
      n = layer_exp(e, n, il, "ffn_up.weight", "mlp.up_proj.weight");
    }
    n = layer_exp(e, n, il, "ffn_down.weight", "mlp.down_proj.weight");
  }
  return n;
}

static uint32_t dtype_type(const char *d) {
  if (strcmp(d, "F32") == 0) return TL_TYPE_F32;
  if (strcmp(d, "F16") == 0) return TL_TYPE_F16;
  if (strcmp(d, "BF16") == 0) return TL_TYPE_BF16;
  fail_msg("unexpected dtype %s", d);
  return 0;
}

/* The metadata key "ARCH.SUFFIX" (in a static buffer). */
static const char *arch_key(const char *arch, const char *suffix) {
  static char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, suffix);
  return k;
}

static uint32_t key_u32(const tl_gguf *g, const char *arch, const char *suffix) {
  uint32_t v = 0;
  if (!tl_gguf_get_u32(g, arch_key(arch, suffix), &v))
    fail_msg("missing u32 key %s.%s", arch, suffix);
  return v;
}

static float key_f32(const tl_gguf *g, const char *arch, const char *suffix) {
  float v = 0;
  if (!tl_gguf_get_f32(g, arch_key(arch, suffix), &v))
    fail_msg("missing f32 key %s.%s", arch, suffix);
  return v;
}

static bool has_key(const tl_gguf *g, const char *arch, const char *suffix) {
  return tl_gguf_get(g, arch_key(arch, suffix)) != NULL;
}

static void check_pattern(const tl_gguf *g, const char *arch, const bool *want, int n) {
  char k[128];
  snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", arch);
  const tl_gguf_value *a = tl_gguf_get_arr(g, k, TL_GGUF_BOOL);
  if (!a) fail_msg("missing bool array %s", k);
  assert_int_equal(a->v.arr.n, n);
  for (int i = 0; i < n; i++) assert_int_equal(tl_gguf_arr_i64(a, i) != 0, want[i]);
}

/* The LLaMA 3 divisors, computed here from the formula. */
static void check_llama3_freqs(const tl_gguf *g, double base, int n_rot, double factor, double low,
                               double high, double orig) {
  const tl_gguf_tensor *t = tl_gguf_find_tensor(g, "rope_freqs.weight");
  assert_non_null(t);
  assert_int_equal(t->type, TL_TYPE_F32);
  assert_int_equal(t->n_dims, 1);
  assert_int_equal(t->ne[0], n_rot / 2);
  const float *v = t->data;
  int n_one = 0, n_factor = 0, n_mid = 0;
  for (int i = 0; i < n_rot / 2; i++) {
    double freq = pow(base, -(2.0 * i) / n_rot);
    double wl = 2 * M_PI / freq, want;
    if (wl < orig / high) {
      want = 1;
      n_one++;
    } else if (wl > orig / low) {
      want = factor;
      n_factor++;
    } else {
      double sm = (orig / wl - low) / (high - low);
      want = 1 / ((1 - sm) / factor + sm);
      n_mid++;
    }
    assert_true(fabs(v[i] - want) <= 1e-6 * want);
  }
  /* the fixture exercises all three branches */
  assert_true(n_one > 0 && n_factor > 0 && n_mid > 0);
}

static void check_keys(const arch_case *c, const tl_gguf *g) {
  tl_str s;
  assert_true(tl_gguf_get_str(g, "general.architecture", &s));
  assert_true(tl_str_eq(s, c->arch));
  const char *a = c->arch;
  assert_int_equal(key_u32(g, a, "block_count"), 2);
  assert_int_equal(key_u32(g, a, "embedding_length"), 256);
  assert_int_equal(key_u32(g, a, "feed_forward_length"), 512);
  assert_int_equal(key_u32(g, a, "context_length"), 256);
  assert_int_equal(key_u32(g, a, "vocab_size"), 512);
  assert_int_equal(key_u32(g, a, "attention.head_count"), c->n_head);
  assert_int_equal(key_u32(g, a, "attention.head_count_kv"), c->n_head_kv);
  assert_int_equal(key_u32(g, a, "attention.key_length"), c->head_dim);
  assert_int_equal(key_u32(g, a, "attention.value_length"), c->head_dim);
  assert_int_equal(key_u32(g, a, "rope.dimension_count"), c->n_rot);
  assert_float_equal(key_f32(g, a, "rope.freq_base"), c->rope_base, 0);
  if (c->lay == L_PHI2) {
    assert_float_equal(key_f32(g, a, "attention.layer_norm_epsilon"), c->eps, 0);
    assert_false(has_key(g, a, "attention.layer_norm_rms_epsilon"));
  } else {
    assert_float_equal(key_f32(g, a, "attention.layer_norm_rms_epsilon"), c->eps, 0);
  }
  if (c->rope_base_swa > 0)
    assert_float_equal(key_f32(g, a, "rope.freq_base_swa"), c->rope_base_swa, 0);
  else
    assert_false(has_key(g, a, "rope.freq_base_swa"));
  tl_str rt;
  bool neox = tl_gguf_get_str(g, "torchless.rope.type", &rt);
  assert_int_equal(neox, c->neox);
  if (neox) assert_true(tl_str_eq(rt, "neox"));
  bool g23 = c->lay == L_GEMMA2 || c->lay == L_GEMMA3;
  if (g23) {
    assert_int_equal(key_u32(g, a, "attention.sliding_window"), 8);
    assert_float_equal(key_f32(g, a, "attention.scale"), 0.125f, 1e-9);
    static const bool pat[2] = {true, false};
    check_pattern(g, a, pat, 2);
  } else {
    assert_false(has_key(g, a, "attention.sliding_window"));
    assert_false(has_key(g, a, "attention.sliding_window_pattern"));
    assert_false(has_key(g, a, "attention.scale"));
  }
  if (c->lay == L_GEMMA2) {
    assert_float_equal(key_f32(g, a, "attn_logit_softcapping"), 50.0f, 0);
    assert_float_equal(key_f32(g, a, "final_logit_softcapping"), 30.0f, 0);
  } else {
    assert_false(has_key(g, a, "attn_logit_softcapping"));
    assert_false(has_key(g, a, "final_logit_softcapping"));
  }
  assert_false(has_key(g, a, "rope.scaling.type"));
  if (strcmp(c->dir, "llama3") == 0)
    check_llama3_freqs(g, 500000.0, 64, 8.0, 1.0, 4.0, 64.0);
  else
    assert_null(tl_gguf_find_tensor(g, "rope_freqs.weight"));
}

static void check_tensors(const arch_case *c, const tl_gguf *g, const st_file *st) {
  static expect e[128];
  int n = expected_tensors(c, e);
  bool gemma = c->lay == L_GEMMA || c->lay == L_GEMMA2 || c->lay == L_GEMMA3;
  int extra = strcmp(c->dir, "llama3") == 0; /* rope_freqs.weight */
  if ((int)g->n_tensors != n + extra)
    fail_msg("%s: %d tensors in the view, expected %d", c->dir, (int)g->n_tensors, n + extra);
  for (int i = 0; i < n; i++) {
    const tl_gguf_tensor *t = tl_gguf_find_tensor(g, e[i].gguf);
    if (!t) fail_msg("%s: missing tensor %s", c->dir, e[i].gguf);
    const st_t *s = st_get(st, e[i].hf);
    if (!s) fail_msg("%s: fixture has no %s", c->dir, e[i].hf);
    assert_int_equal(t->n_dims, s->nd);
    for (int d = 0; d < s->nd; d++) assert_int_equal(t->ne[d], s->shape[s->nd - 1 - d]);
    for (int d = s->nd; d < 4; d++) assert_int_equal(t->ne[d], 1);
    size_t len = strlen(e[i].gguf);
    if (gemma && len >= 11 && strcmp(e[i].gguf + len - 11, "norm.weight") == 0) {
      assert_string_equal(s->dtype, "BF16");
      assert_int_equal(t->type, TL_TYPE_F32);
      assert_int_equal(t->nbytes, s->nbytes * 2);
      const float *v = t->data;
      for (size_t k = 0; k < s->nbytes / 2; k++) assert_true(v[k] == 1.0f + bf16f(s->data + 2 * k));
    } else {
      assert_int_equal(t->type, dtype_type(s->dtype));
      assert_int_equal(t->nbytes, s->nbytes);
      assert_memory_equal(t->data, s->data, s->nbytes);
    }
  }
}

static tl_gguf *open_ok(const char *dir) {
  tl_gguf *g = NULL;
  tl_status s = tl_hf_open(dir, &g);
  if (s) fail_msg("tl_hf_open(%s): %s", dir, tl_last_error());
  assert_non_null(g);
  return g;
}

static void test_fixtures(void **state) {
  (void)state;
  int done = 0;
  for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
    const arch_case *c = &k_cases[i];
    char *dir = fixture_dir(c->dir);
    if (!dir) {
      printf("SKIPPED: %s (fixture not found)\n", c->dir);
      continue;
    }
    assert_true(tl_hf_is_folder(dir));
    tl_gguf *g = open_ok(dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_file *st = st_load(p);
    check_keys(c, g);
    check_tensors(c, g, st);
    st_close(st);
    tl_gguf_free(g);
    free(dir);
    done++;
  }
  if (!done) skip();
}

static void test_is_folder(void **state) {
  (void)state;
  char *dir = tmp_dir();
  assert_true(tl_hf_is_folder(dir));
  put_text(dir, "f", "x");
  char p[4096];
  snprintf(p, sizeof p, "%s/f", dir);
  assert_false(tl_hf_is_folder(p));
  snprintf(p, sizeof p, "%s/nope", dir);
  assert_false(tl_hf_is_folder(p));
  assert_false(tl_hf_is_folder(NULL));
  rm_dir(dir);
}

/* tl_hf_tokenizer_load (hf_tokenizer.c) adds the vocabulary to every view. */
static void test_tokenizer_keys(void **state) {
  (void)state;
  int done = 0;
  for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
    char *dir = fixture_dir(k_cases[i].dir);
    if (!dir) continue;
    tl_gguf *g = open_ok(dir);
    free(dir);
    tl_str m;
    assert_true(tl_gguf_get_str(g, "tokenizer.ggml.model", &m));
    const tl_gguf_value *toks = tl_gguf_get_arr(g, "tokenizer.ggml.tokens", TL_GGUF_STRING);
    if (!toks) fail_msg("%s: no tokenizer.ggml.tokens", k_cases[i].dir);
    assert_true(toks->v.arr.n > 0 && toks->v.arr.n <= 512);
    tl_gguf_free(g);
    done++;
  }
  if (!done) skip();
}

/* ---- sharded checkpoints --------------------------------------------------------- */

typedef struct wbuf {
  uint8_t *p;
  size_t n;
} wbuf;

static void w_put(wbuf *b, const void *d, size_t n) {
  b->p = realloc(b->p, b->n + n);
  assert_non_null(b->p);
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

/* A safetensors file of the given tensors (indices into st). */
static void write_shard(const char *dir, const char *name, const st_file *st, const int *idx,
                        int n) {
  cJSON *h = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
  cJSON_AddStringToObject(meta, "format", "pt");
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    const st_t *t = &st->t[idx[i]];
    cJSON *o = cJSON_AddObjectToObject(h, t->name);
    cJSON_AddStringToObject(o, "dtype", t->dtype);
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->nd; d++)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
    cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t->nbytes)));
    off += t->nbytes;
  }
  char *js = cJSON_PrintUnformatted(h);
  cJSON_Delete(h);
  size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
  wbuf b = {0};
  uint64_t hl = padded;
  w_put(&b, &hl, 8);
  w_put(&b, js, jl);
  for (size_t i = jl; i < padded; i++) w_put(&b, " ", 1);
  free(js);
  for (int i = 0; i < n; i++) w_put(&b, st->t[idx[i]].data, st->t[idx[i]].nbytes);
  put_file(dir, name, b.p, b.n);
  free(b.p);
}

/* Split a fixture into two shards + index.json in a fresh folder. */
static char *make_sharded(const char *fdir, const st_file *st, const char *shard_a_name) {
  char *dir = tmp_dir();
  copy_small_files(fdir, dir);
  int ia[512], ib[512], na = 0, nb = 0;
  for (int i = 0; i < st->n; i++) {
    if (i % 2)
      ia[na++] = i;
    else
      ib[nb++] = i;
  }
  static const char *const b_name = "model-00002-of-00002.safetensors";
  write_shard(dir, "model-00001-of-00002.safetensors", st, ia, na);
  write_shard(dir, b_name, st, ib, nb);
  cJSON *idx = cJSON_CreateObject();
  cJSON_AddObjectToObject(cJSON_AddObjectToObject(idx, "metadata"), "x");
  cJSON *wm = cJSON_AddObjectToObject(idx, "weight_map");
  for (int i = 0; i < st->n; i++)
    cJSON_AddStringToObject(wm, st->t[i].name, i % 2 ? shard_a_name : b_name);
  char *js = cJSON_Print(idx);
  cJSON_Delete(idx);
  put_text(dir, "model.safetensors.index.json", js);
  free(js);
  return dir;
}

static void test_sharded(void **state) {
  (void)state;
  static const char *const archs[] = {"llama3", "gemma2", "phi2"};
  int done = 0;
  for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
    char *fdir = fixture_dir(archs[a]);
    if (!fdir) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", fdir);
    st_file *st = st_load(p);
    char *dir = make_sharded(fdir, st, "model-00001-of-00002.safetensors");
    tl_gguf *g1 = open_ok(fdir), *g2 = open_ok(dir);
    assert_int_equal(g1->n_tensors, g2->n_tensors);
    assert_int_equal(g1->n_kv, g2->n_kv);
    for (uint64_t i = 0; i < g1->n_tensors; i++) {
      const tl_gguf_tensor *t1 = &g1->tensors[i];
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)t1->name.len, t1->name.ptr);
      const tl_gguf_tensor *t2 = tl_gguf_find_tensor(g2, name);
      if (!t2) fail_msg("sharded %s: missing %s", archs[a], name);
      assert_int_equal(t1->type, t2->type);
      assert_int_equal(t1->n_dims, t2->n_dims);
      assert_memory_equal(t1->ne, t2->ne, sizeof t1->ne);
      assert_int_equal(t1->nbytes, t2->nbytes);
      assert_memory_equal(t1->data, t2->data, t1->nbytes);
    }
    /* the same checks as the single-file folder */
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++)
      if (strcmp(k_cases[i].dir, archs[a]) == 0) {
        check_keys(&k_cases[i], g2);
        check_tensors(&k_cases[i], g2, st);
      }
    tl_gguf_free(g1);
    tl_gguf_free(g2);
    rm_dir(dir);
    st_close(st);
    free(fdir);
    done++;
  }
  if (!done) skip();
}

static void expect_fail(const char *dir, tl_status want, const char *needle) {
  tl_gguf *g = (tl_gguf *)(uintptr_t)1;
  tl_clear_error();
  tl_status s = tl_hf_open(dir, &g);
  if (s == TL_OK) fail_msg("tl_hf_open(%s) succeeded, expected failure (%s)", dir, needle);
  assert_null(g);
  const char *msg = tl_last_error();
  assert_true(strlen(msg) > 0);
  if (want) {
    if (s != want)
      fail_msg("status %s, expected %s: %s", tl_status_name(s), tl_status_name(want), msg);
  }
  if (needle && !strstr(msg, needle)) fail_msg("message '%s' lacks '%s'", msg, needle);
}

static void test_sharded_hostile(void **state) {
  (void)state;
  char *fdir = fixture_dir("qwen2");
  if (!fdir) skip();
  char p[4096];
  snprintf(p, sizeof p, "%s/model.safetensors", fdir);
  st_file *st = st_load(p);
  /* a shard name with a path */
  char *dir = make_sharded(fdir, st, "../model-00001-of-00002.safetensors");
  expect_fail(dir, TL_ERR_FORMAT, "not a plain file name");
  rm_dir(dir);
  /* a missing shard */
  dir = make_sharded(fdir, st, "model-00003-of-00002.safetensors");
  expect_fail(dir, TL_ERR_IO, "model-00003-of-00002.safetensors");
  rm_dir(dir);
  /* the index places a tensor in the wrong shard */
  dir = make_sharded(fdir, st, "model-00002-of-00002.safetensors");
  expect_fail(dir, TL_ERR_FORMAT, "does not hold it");
  rm_dir(dir);
  /* bad index files */
  static const char *const bad_idx[] = {"{", "[]", "{\"weight_map\": 3}",
                                        "{\"weight_map\": {\"a\": 3}}"};
  for (size_t i = 0; i < sizeof bad_idx / sizeof bad_idx[0]; i++) {
    dir = tmp_dir();
    copy_small_files(fdir, dir);
    put_text(dir, "model.safetensors.index.json", bad_idx[i]);
    expect_fail(dir, TL_ERR_FORMAT, NULL);
    rm_dir(dir);
  }
  st_close(st);
  free(fdir);
}

/* ---- config.json variants ----------------------------------------------------------- */

/* A folder with the fixture's weights and its config.json edited by fn. */
static char *variant(const char *fdir, void (*fn)(cJSON *cfg)) {
  char p[4096];
  snprintf(p, sizeof p, "%s/config.json", fdir);
  char *txt = tl_test_read_file(p, NULL);
  assert_non_null(txt);
  cJSON *cfg = cJSON_Parse(txt);
  free(txt);
  assert_non_null(cfg);
  fn(cfg);
  char *dir = tmp_dir();
  copy_small_files(fdir, dir);
  char *js = cJSON_Print(cfg);
  cJSON_Delete(cfg);
  put_text(dir, "config.json", js);
  free(js);
  link_weights(fdir, dir);
  return dir;
}

static void drop_v5(cJSON *c) {
  cJSON_DeleteItemFromObject(c, "rope_parameters");
}
static void drop_v4(cJSON *c) {
  cJSON_DeleteItemFromObject(c, "rope_theta");
  cJSON_DeleteItemFromObject(c, "rope_scaling");
  cJSON_DeleteItemFromObject(c, "rope_local_base_freq");
}
static void drop_layer_types(cJSON *c) {
  cJSON_DeleteItemFromObject(c, "layer_types");
}
static void set_linear(cJSON *c) {
  drop_v5(c);
  cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
  cJSON_AddStringToObject(rs, "type", "linear");
  cJSON_AddNumberToObject(rs, "factor", 4.0);
}
static void set_window(cJSON *c) {
  cJSON_ReplaceItemInObject(c, "sliding_window", cJSON_CreateNumber(16));
}

static void test_config_variants(void **state) {
  (void)state;
  const arch_case *llama3 = &k_cases[1], *gemma3 = &k_cases[9], *gemma2 = &k_cases[8];
  const arch_case *tests[2] = {llama3, gemma3};
  for (int v = 0; v < 2; v++)
    for (int a = 0; a < 2; a++) { /* either spelling alone gives the same view */
      const arch_case *c = tests[a];
      char *fdir = fixture_dir(c->dir);
      if (!fdir) continue;
      char *dir = variant(fdir, v ? drop_v5 : drop_v4);
      tl_gguf *g = open_ok(dir);
      check_keys(c, g);
      tl_gguf_free(g);
      rm_dir(dir);
      free(fdir);
    }
  char *fdir = fixture_dir("gemma2");
  if (fdir) { /* Gemma 2 default pattern: even layers slide */
    char *dir = variant(fdir, drop_layer_types);
    tl_gguf *g = open_ok(dir);
    check_keys(gemma2, g);
    tl_gguf_free(g);
    rm_dir(dir);
    free(fdir);
  }
  fdir = fixture_dir("gemma3");
  if (fdir) { /* Gemma 3 default pattern (6): layers 0 and 1 both slide */
    char *dir = variant(fdir, drop_layer_types);
    tl_gguf *g = open_ok(dir);
    static const bool pat[2] = {true, true};
    check_pattern(g, "gemma3", pat, 2);
    tl_gguf_free(g);
    rm_dir(dir);
    free(fdir);
  }
  fdir = fixture_dir("llama");
  if (fdir) {
    char *dir = variant(fdir, set_linear);
    tl_gguf *g = open_ok(dir);
    tl_str s;
    assert_true(tl_gguf_get_str(g, "llama.rope.scaling.type", &s));
    assert_true(tl_str_eq(s, "linear"));
    assert_float_equal(key_f32(g, "llama", "rope.scaling.factor"), 4.0f, 0);
    tl_gguf_free(g);
    rm_dir(dir);
    free(fdir);
  }
  fdir = fixture_dir("mistral");
  if (fdir) {
    char *dir = variant(fdir, set_window);
    tl_gguf *g = open_ok(dir);
    assert_int_equal(key_u32(g, "llama", "attention.sliding_window"), 16);
    static const bool pat[2] = {true, true};
    check_pattern(g, "llama", pat, 2);
    tl_gguf_free(g);
    rm_dir(dir);
    free(fdir);
  }
}

/* ---- hostile config.json ---------------------------------------------------------------- */

static char *g_edit_key;
static cJSON *g_edit_val;
static void edit(cJSON *c) {
  if (cJSON_GetObjectItem(c, g_edit_key))
    cJSON_ReplaceItemInObject(c, g_edit_key, g_edit_val);
  else
    cJSON_AddItemToObject(c, g_edit_key, g_edit_val);
}

static void expect_edit_fails(const char *arch, const char *key, const char *json, tl_status want,
                              const char *needle) {
  char *fdir = fixture_dir(arch);
  if (!fdir) return;
  g_edit_key = (char *)key;
  g_edit_val = cJSON_Parse(json);
  assert_non_null(g_edit_val);
  char *dir = variant(fdir, edit);
  expect_fail(dir, want, needle);
  rm_dir(dir);
  free(fdir);
}

static void test_config_hostile(void **state) {
  (void)state;
  char *dir = tmp_dir();
  expect_fail(dir, TL_ERR_FORMAT, "has no config.json");
  put_text(dir, "config.json", "{\"model_type\": ");
  expect_fail(dir, TL_ERR_FORMAT, "not valid JSON");
  put_text(dir, "config.json", "[1, 2]");
  expect_fail(dir, TL_ERR_FORMAT, "not a JSON object");
  put_text(dir, "config.json", "{}");
  expect_fail(dir, TL_ERR_FORMAT, "model_type");
  put_text(dir, "config.json", "{\"model_type\": 7}");
  expect_fail(dir, TL_ERR_FORMAT, "model_type");
  put_text(dir, "config.json", "{\"model_type\": \"gpt_neox\"}");
  expect_fail(dir, TL_ERR_UNSUPPORTED, "gpt_neox");
  /* a valid config without weights */
  put_text(dir, "config.json",
           "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 256, "
           "\"num_attention_heads\": 4, \"intermediate_size\": 512}");
  expect_fail(dir, TL_ERR_IO, "model.safetensors");
  rm_dir(dir);
  expect_fail("/nonexistent/tl_hf_dir", TL_ERR_IO, NULL);
  tl_gguf *g;
  assert_int_equal(tl_hf_open(NULL, &g), TL_ERR_INVALID_ARG);
  assert_int_equal(tl_hf_open(".", NULL), TL_ERR_INVALID_ARG);

  expect_edit_fails("llama", "num_hidden_layers", "\"two\"", TL_ERR_FORMAT, "num_hidden_layers");
  expect_edit_fails("llama", "num_hidden_layers", "2.5", TL_ERR_FORMAT, "num_hidden_layers");
  expect_edit_fails("llama", "num_hidden_layers", "0", TL_ERR_FORMAT, "num_hidden_layers");
  expect_edit_fails("llama", "num_hidden_layers", "1e300", TL_ERR_FORMAT, "num_hidden_layers");
  expect_edit_fails("llama", "hidden_size", "-256", TL_ERR_FORMAT, "hidden_size");
  expect_edit_fails("llama", "num_attention_heads", "null", TL_ERR_FORMAT, "num_attention_heads");
  expect_edit_fails("llama", "num_key_value_heads", "[2]", TL_ERR_FORMAT, "num_key_value_heads");
  expect_edit_fails("llama", "head_dim", "{}", TL_ERR_FORMAT, "head_dim");
  expect_edit_fails("llama", "rms_norm_eps", "\"1e-5\"", TL_ERR_FORMAT, "rms_norm_eps");
  expect_edit_fails("llama", "rms_norm_eps", "0", TL_ERR_FORMAT, "rms_norm_eps");
  expect_edit_fails("llama", "tie_word_embeddings", "1", TL_ERR_FORMAT, "tie_word_embeddings");
  expect_edit_fails("llama", "rope_parameters", "\"abc\"", TL_ERR_FORMAT, "rope_parameters");
  expect_edit_fails("llama", "rope_parameters",
                    "{\"rope_type\": \"yarn\", \"factor\": 4, \"truncate\": false}",
                    TL_ERR_UNSUPPORTED, "truncate");
  expect_edit_fails("llama", "rope_parameters", "{\"rope_type\": \"yarn\", \"factor\": -1}",
                    TL_ERR_FORMAT, "yarn");
  expect_edit_fails("llama", "rope_parameters",
                    "{\"rope_type\": \"longrope\", \"long_factor\": [1, 2], "
                    "\"short_factor\": [1, 2], \"original_max_position_embeddings\": 8}",
                    TL_ERR_FORMAT, "long_factor");
  expect_edit_fails("llama", "rope_parameters", "{\"rope_type\": \"longrope\"}", TL_ERR_FORMAT,
                    "longrope");
  expect_edit_fails("llama", "rope_parameters", "{\"rope_theta\": -1}", TL_ERR_FORMAT, "rope");
  expect_edit_fails("llama", "rope_parameters", "{\"rope_type\": 5}", TL_ERR_FORMAT, "rope_type");
  expect_edit_fails("llama3", "rope_parameters",
                    "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
                    "\"high_freq_factor\": 1, \"rope_theta\": 500000}",
                    TL_ERR_FORMAT, "llama3");
  expect_edit_fails("gemma2", "layer_types", "[\"sliding_attention\"]", TL_ERR_FORMAT,
                    "layer_types");
  expect_edit_fails("gemma2", "layer_types", "[\"sliding_attention\", 3]", TL_ERR_FORMAT,
                    "layer_types");
  expect_edit_fails("gemma2", "layer_types", "[\"sliding_attention\", \"chunked_attention\"]",
                    TL_ERR_UNSUPPORTED, "chunked_attention");
  expect_edit_fails("gemma2", "query_pre_attn_scalar", "0", TL_ERR_FORMAT, "query_pre_attn_scalar");
  expect_edit_fails("gemma3", "rope_parameters",
                    "{\"full_attention\": {\"rope_theta\": 1e6}, \"sliding_attention\": "
                    "{\"rope_type\": \"linear\", \"factor\": 2}}",
                    TL_ERR_UNSUPPORTED, "sliding");
  /* mixtures of experts */
  expect_edit_fails("mixtral", "num_experts_per_tok", "5", TL_ERR_FORMAT, "num_experts_per_tok");
  expect_edit_fails("mixtral", "num_experts_per_tok", "0", TL_ERR_FORMAT, "num_experts_per_tok");
  expect_edit_fails("mixtral", "num_local_experts", "0", TL_ERR_FORMAT, "num_local_experts");
  expect_edit_fails("mixtral", "num_local_experts", "\"4\"", TL_ERR_FORMAT, "num_local_experts");
  expect_edit_fails("mixtral", "num_local_experts", "5", TL_ERR_FORMAT, "expert 4");
  expect_edit_fails("mixtral", "num_local_experts", "3", TL_ERR_FORMAT, "experts");
  expect_edit_fails("qwen3moe", "mlp_only_layers", "[1]", TL_ERR_UNSUPPORTED, "mlp_only_layers");
  expect_edit_fails("qwen3moe", "decoder_sparse_step", "2", TL_ERR_UNSUPPORTED,
                    "decoder_sparse_step");
  expect_edit_fails("qwen3moe", "norm_topk_prob", "1", TL_ERR_FORMAT, "norm_topk_prob");
  expect_edit_fails("qwen3moe", "moe_intermediate_size", "-1", TL_ERR_FORMAT,
                    "moe_intermediate_size");
  expect_edit_fails("phi2", "partial_rotary_factor", "\"half\"", TL_ERR_FORMAT,
                    "partial_rotary_factor");
  expect_edit_fails("phi2", "rope_parameters",
                    "{\"rope_theta\": 1e4, \"partial_rotary_factor\": 2}", TL_ERR_FORMAT,
                    "partial_rotary_factor");
}

/* ---- hostile safetensors ------------------------------------------------------------------ */

/* An exact-size buffer: length prefix, header, then n_data bytes. */
static uint8_t *st_buf(const char *hdr, uint64_t hlen, size_t n_data, size_t *n) {
  size_t hl = strlen(hdr);
  *n = 8 + hl + n_data;
  uint8_t *b = malloc(*n);
  assert_non_null(b);
  memcpy(b, &hlen, 8);
  memcpy(b + 8, hdr, hl);
  for (size_t i = 0; i < n_data; i++) b[8 + hl + i] = (uint8_t)i;
  return b;
}

static void st_expect(const char *hdr, size_t n_data, tl_status want, const char *needle) {
  size_t n;
  uint8_t *b = st_buf(hdr, strlen(hdr), n_data, &n);
  tl_st_file *f = (tl_st_file *)(uintptr_t)1;
  tl_clear_error();
  tl_status s = tl_st_parse(b, n, "test.safetensors", &f);
  if (s == TL_OK) fail_msg("parse of %s succeeded", hdr);
  assert_null(f);
  if (want && s != want)
    fail_msg("%s: status %s, expected %s (%s)", hdr, tl_status_name(s), tl_status_name(want),
             tl_last_error());
  if (needle && !strstr(tl_last_error(), needle))
    fail_msg("%s: message '%s' lacks '%s'", hdr, tl_last_error(), needle);
  free(b);
}

#define T1(dt, sh, off) \
  "{\"a\": {\"dtype\": \"" dt "\", \"shape\": " sh ", \"data_offsets\": " off "}}"

static void test_st_hostile(void **state) {
  (void)state;
  size_t n;
  tl_st_file *f;
  /* too short, header length past EOF, huge */
  uint8_t tiny[4] = {1, 0, 0, 0};
  uint8_t *t4 = malloc(4);
  memcpy(t4, tiny, 4);
  assert_int_equal(tl_st_parse(t4, 4, "t", &f), TL_ERR_FORMAT);
  free(t4);
  uint8_t *b = st_buf("{}", 1000, 0, &n);
  assert_int_equal(tl_st_parse(b, n, "t", &f), TL_ERR_FORMAT);
  assert_non_null(strstr(tl_last_error(), "past the end"));
  free(b);
  b = st_buf("{}", UINT64_MAX, 0, &n);
  assert_int_equal(tl_st_parse(b, n, "t", &f), TL_ERR_FORMAT);
  free(b);
  b = st_buf("{}", 0, 0, &n);
  assert_int_equal(tl_st_parse(b, n, "t", &f), TL_ERR_FORMAT);
  free(b);
  /* the same through a file */
  char *dir = tmp_dir();
  b = st_buf("{}", 1000, 0, &n);
  put_file(dir, "x.safetensors", b, n);
  free(b);
  char p[4096];
  snprintf(p, sizeof p, "%s/x.safetensors", dir);
  assert_int_equal(tl_st_open(p, &f), TL_ERR_FORMAT);
  assert_non_null(strstr(tl_last_error(), "x.safetensors"));
  rm_dir(dir);

  st_expect("{not json}", 0, TL_ERR_FORMAT, "not valid JSON");
  st_expect("[1, 2]", 0, TL_ERR_FORMAT, "not a JSON object");
  st_expect("{} trailing", 0, TL_ERR_FORMAT, "trailing");
  st_expect("{\"a\": 5}", 0, TL_ERR_FORMAT, "'a'");
  st_expect("{\"__metadata__\": 5}", 0, TL_ERR_FORMAT, "__metadata__");
  st_expect("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, TL_ERR_FORMAT, "dtype");
  st_expect("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, TL_ERR_FORMAT, "shape");
  st_expect("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, TL_ERR_FORMAT, "data_offsets");
  st_expect(T1("I64", "[1]", "[0, 8]"), 8, TL_ERR_UNSUPPORTED, "I64");
  st_expect(T1("I64", "[1]", "[0, 8]"), 8, TL_ERR_UNSUPPORTED, "'a'");
  st_expect(T1("F32", "[-1]", "[0, 4]"), 4, TL_ERR_FORMAT, "shape");
  st_expect(T1("F32", "[1.5]", "[0, 4]"), 4, TL_ERR_FORMAT, "shape");
  st_expect(T1("F32", "[\"1\"]", "[0, 4]"), 4, TL_ERR_FORMAT, "shape");
  st_expect(T1("F32", "[1e300]", "[0, 4]"), 4, TL_ERR_FORMAT, "shape");
  st_expect(T1("F32", "[4294967296, 4294967296, 4294967296]", "[0, 4]"), 4, TL_ERR_FORMAT,
            "overflow");
  st_expect(T1("F32", "[2147483648, 2147483648, 2]", "[0, 4]"), 4, TL_ERR_FORMAT, "overflow");
  st_expect(T1("F32", "[1, 2, 3, 4, 5, 6, 7, 8, 9]", "[0, 4]"), 4, TL_ERR_UNSUPPORTED,
            "dimensions");
  st_expect(T1("F32", "[100]", "[0, 400]"), 16, TL_ERR_FORMAT, "outside");
  st_expect(T1("F32", "[1]", "[8, 4]"), 16, TL_ERR_FORMAT, "outside");
  st_expect(T1("F32", "[1]", "[0]"), 16, TL_ERR_FORMAT, "data_offsets");
  st_expect(T1("F32", "[1]", "[0, -4]"), 16, TL_ERR_FORMAT, "data_offsets");
  st_expect(T1("F32", "[1]", "[0, \"4\"]"), 16, TL_ERR_FORMAT, "data_offsets");
  st_expect(T1("F32", "[2]", "[0, 4]"), 16, TL_ERR_FORMAT, "need 8");
  st_expect(T1("BF16", "[2]", "[0, 8]"), 16, TL_ERR_FORMAT, "need 4");
  st_expect(
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
      "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
      16, TL_ERR_FORMAT, "overlap");
  st_expect(
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
      "\"b\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [0, 8]}}",
      16, TL_ERR_FORMAT, "overlap");
  st_expect(
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
      "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
      16, TL_ERR_FORMAT, "duplicate");
}

static void test_st_valid_and_truncated(void **state) {
  (void)state;
  const char *hdr =
      "{\"__metadata__\": {\"format\": \"pt\"}, "
      "\"b\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [8, 10]}, "
      "\"e\": {\"dtype\": \"F16\", \"shape\": [0, 3], \"data_offsets\": [10, 10]}, "
      "\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
      "\"c\": {\"dtype\": \"F16\", \"shape\": [1, 3], \"data_offsets\": [10, 16]}}   ";
  size_t n;
  uint8_t *b = st_buf(hdr, strlen(hdr), 16, &n);
  tl_st_file *f;
  assert_int_equal(tl_st_parse(b, n, "t", &f), TL_OK);
  assert_int_equal(f->n_tensors, 4);
  const uint8_t *data = b + 8 + strlen(hdr);
  const tl_st_tensor *t = tl_st_find(f, "a");
  assert_non_null(t);
  assert_int_equal(t->type, TL_TYPE_F32);
  assert_int_equal(t->n_dims, 1);
  assert_int_equal(t->shape[0], 2);
  assert_ptr_equal(t->data, data);
  t = tl_st_find(f, "b");
  assert_int_equal(t->n_dims, 0);
  assert_int_equal(t->numel, 1);
  assert_ptr_equal(t->data, data + 8);
  t = tl_st_find(f, "e");
  assert_int_equal(t->numel, 0);
  t = tl_st_find(f, "c");
  assert_int_equal(t->type, TL_TYPE_F16);
  assert_int_equal(t->nbytes, 6);
  assert_null(tl_st_find(f, "d"));
  assert_null(tl_st_find(f, "__metadata__"));
  tl_st_free(f);
  /* every truncation fails cleanly */
  for (size_t len = 0; len < n; len++) {
    uint8_t *c = malloc(len ? len : 1);
    memcpy(c, b, len);
    f = (tl_st_file *)(uintptr_t)1;
    assert_int_not_equal(tl_st_parse(c, len, "t", &f), TL_OK);
    assert_null(f);
    free(c);
  }
  free(b);
  /* a fixture file through the mapping */
  char *p = tl_test_fixture("qwen3/model.safetensors");
  if (p) {
    assert_int_equal(tl_st_open(p, &f), TL_OK);
    assert_non_null(tl_st_find(f, "model.layers.1.self_attn.q_norm.weight"));
    tl_st_free(f);
    free(p);
  }
}

/* The YaRN / LongRoPE divisors and query scales the loader derives, against
 * numbers worked by hand from transformers' formulas. qwen2yarn: 64 rotary
 * dims, base 1e6, original context 32, factor 4: the correction dims are
 * floor(64 ln(32 / (32 * 2 pi)) / (2 ln 1e6)) = floor(-4.26) -> 0 and
 * ceil(64 ln(32 / (1 * 2 pi)) / (2 ln 1e6)) = ceil(3.77) = 4, so the ramp
 * i / 4 gives divisors 1 / ((i/4) / 4 + 1 - i/4) for i <= 4 and 4 beyond;
 * the cos-sin magnitude 1 + 0.1 ln 4, squared, multiplies 1/sqrt(64).
 * phi3long: the long factors themselves, and (1 + ln 32 / ln 8) = 8/3 times
 * 1/sqrt(64). */
static void test_rope_variants(void **state) {
  (void)state;
  const char *dirs[] = {"qwen2yarn/config.json", "phi3long/config.json"};
  for (int d = 0; d < 2; d++) {
    char *cfg = tl_test_fixture_or_skip(dirs[d]);
    if (!cfg) continue;
    *strrchr(cfg, '/') = 0;
    tl_model *m = NULL;
    if (tl_model_load(cfg, NULL, &m) != TL_OK) fail_msg("%s: %s", cfg, tl_last_error());
    const tl_hparams *hp = &m->hp;
    assert_int_equal(hp->n_rot, 64);
    assert_non_null(hp->rope_freq_factors);
    for (int i = 0; i < 32; i++) {
      double want;
      if (d == 0) {
        double r = i < 4 ? i / 4.0 : 1.0;
        want = 1.0 / (r / 4.0 + (1.0 - r));
      } else {
        want = i == 0 ? 1.0 : 1.0 + 0.6 * i; /* the fixture's long_factor */
      }
      if (fabs(hp->rope_freq_factors[i] - want) > 1e-5 * want)
        fail_msg("%s: divisor %d is %g, expected %g", dirs[d], i, hp->rope_freq_factors[i], want);
    }
    double ms2 = d == 0 ? pow(1.0 + 0.1 * log(4.0), 2) : 8.0 / 3.0;
    assert_true(fabs(hp->attn_scale - ms2 / 8.0) <= 1e-6 * ms2);
    tl_model_free(m);
    free(cfg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_st_valid_and_truncated),
      cmocka_unit_test(test_st_hostile),
      cmocka_unit_test(test_is_folder),
      cmocka_unit_test(test_fixtures),
      cmocka_unit_test(test_config_variants),
      cmocka_unit_test(test_sharded),
      cmocka_unit_test(test_sharded_hostile),
      cmocka_unit_test(test_config_hostile),
      cmocka_unit_test(test_tokenizer_keys),
      cmocka_unit_test(test_rope_variants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
