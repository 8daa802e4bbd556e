/* The model quantizer (torchless quantize) and the synthetic model writer
 * (torchless synth).
 *
 * Per-tensor types follow llama.cpp's llama-quantize (src/llama-quant.cpp,
 * llama_tensor_get_type) for the file types implemented here:
 * - Only tensors with at least 2 dimensions (trailing 1s ignored) whose name
 *   ends in "weight" and is not a norm ("_norm.weight"), an expert router
 *   ("ffn_gate_inp.weight") or a small special tensor are converted; the
 *   others (norms, biases, rope_freqs) are copied in their own type.
 * - F32 / F16 / BF16 targets: every convertible tensor in that type.
 * - output.weight (and token_embd.weight when there is no output.weight,
 *   i.e. tied embeddings): Q6_K for every quantized type except Q8_0 (kept);
 *   Q8_0 when its row length is not a multiple of the base type's block.
 * - attn_v.weight (also attn_qkv / attn_kv_b), counted i = 0.. in file order
 *   over n of them: Q2_K -> Q4_K if n_head / n_head_kv >= 4 else Q3_K;
 *   Q3_K_M -> Q5_K for i < 2 else Q4_K; Q3_K_L -> Q5_K;
 *   Q4_K_M, Q5_K_M -> Q6_K where use_more_bits(i, n); Q4_K_S -> Q5_K for i < 4;
 *   IQ4_NL, IQ4_XS -> Q5_K if n_head / n_head_kv >= 4;
 *   a 70B LLaMA (80 layers, GQA) gets Q5_K instead of Q3_K / Q4_K.
 * - ffn_down.weight, counted i = 0.. over n_layer: Q2_K -> Q3_K;
 *   Q3_K_M -> Q5_K for i < n/16, else Q4_K; Q3_K_L -> Q5_K;
 *   Q4_K_M, Q5_K_M -> Q6_K where use_more_bits(i, n); Q4_K_S -> Q5_K for i < n/8;
 *   IQ4_NL, IQ4_XS -> Q5_K for i < n/8 (no importance matrix here).
 * - attn_output.weight: Q2_K -> Q3_K; Q3_K_M -> Q4_K; Q3_K_L -> Q5_K.
 * - With 8 experts (the router's rows): attn_v and attn_k Q8_0; attn_output
 *   Q5_K for Q2_K, Q3_K_S/M, Q4_K_S/M (instead of the rule above). Stacked
 *   experts (ffn_*_exps, 3-D) follow the ffn_* rules, counted per layer.
 * - Vectors (norms, biases) and the expert router (ffn_gate_inp) stay as they
 *   are, but F32 where they were 16-bit (a Hugging Face folder's), as
 *   llama.cpp's converter writes them.
 * - use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
 * - Fallback when the row length is not a multiple of the chosen type's
 *   block: Q2_K, Q3_K -> Q4_0 (llama.cpp of Feb 2025 used IQ4_NL, which
 *   torchless cannot write); IQ4_XS -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; if
 *   that still does not divide the row (or for a 32-block base type), F16.
 * Tensors are counted and written in llama.cpp's order: by layer number,
 * then by name (tl_quant_name_cmp). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "convert/quantize_model.h"
#include "core/threadpool.h"
#include "format/gguf_write.h"
#include "format/hf.h"
#include "quant/quantize.h"

/* ---- file types ---------------------------------------------------------- */

typedef struct ftype_info {
  tl_ftype ftype;
  const char *name;
  uint32_t base; /* tl_type of most tensors */
} ftype_info;

static const ftype_info g_ftypes[] = {
    {TL_FTYPE_F32, "F32", TL_TYPE_F32},          {TL_FTYPE_F16, "F16", TL_TYPE_F16},
    {TL_FTYPE_BF16, "BF16", TL_TYPE_BF16},       {TL_FTYPE_Q8_0, "Q8_0", TL_TYPE_Q8_0},
    {TL_FTYPE_Q4_0, "Q4_0", TL_TYPE_Q4_0},       {TL_FTYPE_Q4_1, "Q4_1", TL_TYPE_Q4_1},
    {TL_FTYPE_Q5_0, "Q5_0", TL_TYPE_Q5_0},       {TL_FTYPE_Q5_1, "Q5_1", TL_TYPE_Q5_1},
    {TL_FTYPE_Q2_K, "Q2_K", TL_TYPE_Q2_K},       {TL_FTYPE_Q3_K_S, "Q3_K_S", TL_TYPE_Q3_K},
    {TL_FTYPE_Q3_K_M, "Q3_K_M", TL_TYPE_Q3_K},   {TL_FTYPE_Q3_K_L, "Q3_K_L", TL_TYPE_Q3_K},
    {TL_FTYPE_Q4_K_S, "Q4_K_S", TL_TYPE_Q4_K},   {TL_FTYPE_Q4_K_M, "Q4_K_M", TL_TYPE_Q4_K},
    {TL_FTYPE_Q5_K_S, "Q5_K_S", TL_TYPE_Q5_K},   {TL_FTYPE_Q5_K_M, "Q5_K_M", TL_TYPE_Q5_K},
    {TL_FTYPE_Q6_K, "Q6_K", TL_TYPE_Q6_K},       {TL_FTYPE_IQ4_NL, "IQ4_NL", TL_TYPE_IQ4_NL},
    {TL_FTYPE_IQ4_XS, "IQ4_XS", TL_TYPE_IQ4_XS},
};
#define N_FTYPES (sizeof g_ftypes / sizeof g_ftypes[0])

static const ftype_info *ftype_find(tl_ftype f) {
  for (size_t i = 0; i < N_FTYPES; i++)
    if (g_ftypes[i].ftype == f) return &g_ftypes[i];
  return NULL;
}

static bool name_ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
  return *a == *b;
}

tl_status tl_ftype_from_name(const char *name, tl_ftype *out) {
  if (!name || !out) return tl_fail(TL_ERR_INVALID_ARG, "tl_ftype_from_name: NULL argument");
  static const struct {
    const char *alias;
    tl_ftype f;
  } aliases[] = {{"Q3_K", TL_FTYPE_Q3_K_M}, {"Q4_K", TL_FTYPE_Q4_K_M}, {"Q5_K", TL_FTYPE_Q5_K_M}};
  for (size_t i = 0; i < N_FTYPES; i++)
    if (name_ieq(name, g_ftypes[i].name)) {
      *out = g_ftypes[i].ftype;
      return TL_OK;
    }
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (name_ieq(name, aliases[i].alias)) {
      *out = aliases[i].f;
      return TL_OK;
    }
  return tl_fail(TL_ERR_INVALID_ARG,
                 "unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, "
                 "q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs)",
                 name);
}

const char *tl_ftype_name(tl_ftype f) {
  const ftype_info *fi = ftype_find(f);
  return fi ? fi->name : NULL;
}

tl_quantize_params tl_quantize_default_params(void) {
  tl_quantize_params p = {.ftype = TL_FTYPE_Q8_0};
  return p;
}

/* ---- per-tensor type choice ---------------------------------------------- */

typedef enum cat {
  CAT_TOKEN_EMBD,
  CAT_ATTN_Q,
  CAT_ATTN_V,
  CAT_ATTN_K,
  CAT_ATTN_QKV,
  CAT_ATTN_KV_B,
  CAT_ATTN_OUTPUT,
  CAT_FFN_UP,
  CAT_FFN_GATE,
  CAT_FFN_DOWN,
  CAT_OUTPUT,
  CAT_OTHER
} cat;

static cat category(const char *name) {
  if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
  if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight"))
    return CAT_TOKEN_EMBD;
  if (strstr(name, "attn_qkv.weight")) return CAT_ATTN_QKV;
  if (strstr(name, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
  if (strstr(name, "attn_v.weight")) return CAT_ATTN_V;
  if (strstr(name, "attn_k.weight")) return CAT_ATTN_K;
  if (strstr(name, "attn_q.weight")) return CAT_ATTN_Q;
  if (strstr(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
  if (strstr(name, "ffn_up")) return CAT_FFN_UP;
  if (strstr(name, "ffn_gate")) return CAT_FFN_GATE;
  if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
  return CAT_OTHER;
}

static bool cat_is_attn_v(cat c) {
  return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* Dimensions without the trailing 1s (ggml_n_dims). */
static int eff_dims(const int64_t ne[4]) {
  int n = 1;
  for (int d = 1; d < 4; d++)
    if (ne[d] > 1) n = d + 1;
  return n;
}

static bool allows_quantization(const char *name, const int64_t ne[4]) {
  if (eff_dims(ne) < 2) return false;
  size_t n = strlen(name);
  if (n < 6 || strcmp(name + n - 6, "weight") != 0) return false;
  static const char *const never[] = {"_norm.weight",
                                      "ffn_gate_inp.weight",
                                      "altup",
                                      "laurel",
                                      "per_layer_model_proj",
                                      "ssm_conv1d",
                                      "shortconv.conv.weight",
                                      "time_mix_",
                                      "attn_rel_b.weight",
                                      ".position_embd",
                                      ".patch_embd"};
  for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
    if (strstr(name, never[i])) return false;
  return strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
}

static bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

typedef struct qstate {
  tl_ftype ftype;
  int n_expert; /* from the router or the stacked experts' shape; 0: dense */
  bool falcon, is_70b, has_output;
  int n_gqa;
  int n_attention_wv, i_attention_wv;
  int n_ffn_down, i_ffn_down;
} qstate;

static uint32_t mix_type(qstate *qs, uint32_t t, const char *name, int64_t nx, cat c) {
  const tl_ftype f = qs->ftype;
  if (c == CAT_OUTPUT || (!qs->has_output && c == CAT_TOKEN_EMBD)) {
    if (qs->falcon || nx % tl_type_get(t)->blck != 0)
      t = TL_TYPE_Q8_0;
    else if (t != TL_TYPE_Q8_0)
      t = TL_TYPE_Q6_K;
  } else if (c == CAT_TOKEN_EMBD) {
    /* only the IQ / TQ file types change it */
  } else if (cat_is_attn_v(c)) {
    int i = qs->i_attention_wv, n = qs->n_attention_wv;
    if (f == TL_FTYPE_Q2_K)
      t = qs->n_gqa >= 4 ? TL_TYPE_Q4_K : TL_TYPE_Q3_K;
    else if (f == TL_FTYPE_Q3_K_M)
      t = i < 2 ? TL_TYPE_Q5_K : TL_TYPE_Q4_K;
    else if (f == TL_FTYPE_Q3_K_L)
      t = TL_TYPE_Q5_K;
    else if ((f == TL_FTYPE_IQ4_NL || f == TL_FTYPE_IQ4_XS) && qs->n_gqa >= 4)
      t = TL_TYPE_Q5_K;
    else if ((f == TL_FTYPE_Q4_K_M || f == TL_FTYPE_Q5_K_M) && use_more_bits(i, n))
      t = TL_TYPE_Q6_K;
    else if (f == TL_FTYPE_Q4_K_S && i < 4)
      t = TL_TYPE_Q5_K;
    if (qs->is_70b && (t == TL_TYPE_Q3_K || t == TL_TYPE_Q4_K)) t = TL_TYPE_Q5_K;
    if (qs->n_expert == 8) t = TL_TYPE_Q8_0; /* llama.cpp: "for the 8-expert model" */
    qs->i_attention_wv++;
  } else if (c == CAT_ATTN_K) {
    if (qs->n_expert == 8) t = TL_TYPE_Q8_0;
  } else if (c == CAT_FFN_DOWN) {
    int i = qs->i_ffn_down, n = qs->n_ffn_down;
    if (f == TL_FTYPE_Q2_K)
      t = TL_TYPE_Q3_K;
    else if (f == TL_FTYPE_Q3_K_M)
      t = i < n / 16                           ? TL_TYPE_Q5_K
          : !qs->falcon || use_more_bits(i, n) ? TL_TYPE_Q4_K
                                               : TL_TYPE_Q3_K;
    else if (f == TL_FTYPE_Q3_K_L)
      t = qs->falcon ? TL_TYPE_Q4_K : TL_TYPE_Q5_K;
    else if (f == TL_FTYPE_Q4_K_M) {
      if (qs->falcon)
        t = i < n / 16 ? TL_TYPE_Q6_K : use_more_bits(i, n) ? TL_TYPE_Q5_K : TL_TYPE_Q4_K;
      else if (use_more_bits(i, n))
        t = TL_TYPE_Q6_K;
    } else if (i < n / 8 && (f == TL_FTYPE_IQ4_NL || f == TL_FTYPE_IQ4_XS))
      t = TL_TYPE_Q5_K;
    else if (f == TL_FTYPE_Q5_K_M && use_more_bits(i, n))
      t = TL_TYPE_Q6_K;
    else if (f == TL_FTYPE_Q4_K_S && !qs->falcon && i < n / 8)
      t = TL_TYPE_Q5_K;
    qs->i_ffn_down++;
  } else if (c == CAT_ATTN_OUTPUT) {
    if (!qs->falcon && qs->n_expert == 8) {
      if (f == TL_FTYPE_Q2_K || f == TL_FTYPE_Q3_K_S || f == TL_FTYPE_Q3_K_M ||
          f == TL_FTYPE_Q4_K_S || f == TL_FTYPE_Q4_K_M)
        t = TL_TYPE_Q5_K;
    } else if (!qs->falcon) {
      if (f == TL_FTYPE_Q2_K)
        t = TL_TYPE_Q3_K;
      else if (f == TL_FTYPE_Q3_K_M)
        t = TL_TYPE_Q4_K;
      else if (f == TL_FTYPE_Q3_K_L)
        t = TL_TYPE_Q5_K;
    } else if (f == TL_FTYPE_Q3_K_L) {
      t = TL_TYPE_Q4_K;
    }
  } else if (c == CAT_ATTN_QKV) {
    (void)name; /* handled with attn_v above, as llama.cpp does */
  }
  return t;
}

static uint32_t fallback_type(uint32_t t, int64_t nx) {
  if (nx % tl_type_get(t)->blck == 0) return t;
  uint32_t r;
  switch (t) {
    case TL_TYPE_Q2_K:
    case TL_TYPE_Q3_K:
      r = TL_TYPE_Q4_0;
      break;
    case TL_TYPE_Q4_K:
      r = TL_TYPE_Q5_0;
      break;
    case TL_TYPE_Q5_K:
      r = TL_TYPE_Q5_1;
      break;
    case TL_TYPE_Q6_K:
      r = TL_TYPE_Q8_0;
      break;
    case TL_TYPE_IQ4_XS:
      r = TL_TYPE_IQ4_NL;
      break;
    default:
      r = TL_TYPE_F16;
      break;
  }
  if (nx % tl_type_get(r)->blck != 0) r = TL_TYPE_F16;
  return r;
}

/* The layer of "blk.N...." (-1 for other names). */
static long layer_of(const char *s) {
  if (strncmp(s, "blk.", 4) != 0 || !isdigit((unsigned char)s[4])) return -1;
  return strtol(s + 4, NULL, 10);
}

int tl_quant_name_cmp(const char *a, const char *b) {
  long la = layer_of(a), lb = layer_of(b);
  if (la != lb) return la < lb ? -1 : 1;
  return strcmp(a, b);
}

tl_status tl_quant_choose_types(const char *arch, tl_ftype ftype, bool pure, int32_t n_layer,
                                int32_t n_head, int32_t n_head_kv, uint64_t n,
                                const char *const *names, const int64_t (*ne)[4],
                                const uint32_t *src_types, uint32_t *out) {
  const ftype_info *fi = ftype_find(ftype);
  if (!fi) return tl_fail(TL_ERR_INVALID_ARG, "unknown file type %d", (int)ftype);
  qstate qs = {.ftype = ftype, .falcon = arch && !strcmp(arch, "falcon")};
  qs.n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 1;
  qs.is_70b = arch && !strcmp(arch, "llama") && n_layer == 80 && n_head != n_head_kv;
  qs.n_ffn_down = n_layer;
  for (uint64_t i = 0; i < n; i++) {
    cat c = category(names[i]);
    if (cat_is_attn_v(c)) qs.n_attention_wv++;
    if (c == CAT_OUTPUT) qs.has_output = true;
    /* the expert count (llama.cpp reads it from the metadata; the router's
     * rows and the stacked experts' third dimension say the same) */
    if (strstr(names[i], "ffn_gate_inp.weight"))
      qs.n_expert = (int)ne[i][1];
    else if (strstr(names[i], "_exps.weight") && !qs.n_expert)
      qs.n_expert = (int)ne[i][2];
  }
  const bool quantized =
      fi->base != TL_TYPE_F32 && fi->base != TL_TYPE_F16 && fi->base != TL_TYPE_BF16;
  for (uint64_t i = 0; i < n; i++) {
    if (!allows_quantization(names[i], ne[i])) {
      out[i] = src_types[i];
      /* llama.cpp's converter writes vectors (norms, biases) and the expert
       * router in F32, and its CPU backend multiplies by no 16-bit norm: a
       * Hugging Face view's 16-bit ones become F32 (llama.cpp's own files
       * have none) */
      if ((eff_dims(ne[i]) < 2 || strstr(names[i], "ffn_gate_inp.weight")) &&
          (src_types[i] == TL_TYPE_F16 || src_types[i] == TL_TYPE_BF16))
        out[i] = TL_TYPE_F32;
      continue;
    }
    uint32_t t = fi->base;
    if (quantized) {
      if (!pure) t = mix_type(&qs, t, names[i], ne[i][0], category(names[i]));
      t = fallback_type(t, ne[i][0]);
    }
    out[i] = t;
  }
  return TL_OK;
}

/* ---- parallel row conversion --------------------------------------------- */

/* Where the float rows come from: a tensor's data or the seeded generator. */
typedef struct row_src {
  const uint8_t *data; /* NULL: generated */
  uint32_t type;
  size_t row_bytes;
  /* generator */
  uint64_t seed;
  float mean, std;
  /* > 0: rows are permuted from Hugging Face's rotate-half order to the
   * interleaved order of llama.cpp's converter, in heads of perm_hd rows */
  int64_t perm_hd;
} row_src;

/* The source row of output row r (convert_hf_to_gguf.py's permute(): within
 * each head, row 2i + j comes from row j * hd/2 + i). */
static int64_t src_row(const row_src *s, int64_t r) {
  if (s->perm_hd <= 0) return r;
  int64_t hd = s->perm_hd, h = r / hd, k = r % hd;
  return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Row r: approximately normal values (the sum of four 16-bit uniforms),
 * reproducible from (seed, r) alone, whatever the thread split. */
static void gen_row(const row_src *s, int64_t r, float *dst, int64_t n) {
  uint64_t st = s->seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ull);
  splitmix64(&st);
  /* the sum of 4 uniforms on [0, 65536) has mean 131070 and variance
   * 4 * (65536^2 - 1) / 12 */
  const float k = s->std / 37837.23f;
  for (int64_t i = 0; i < n; i++) {
    uint64_t z = splitmix64(&st);
    int32_t sum = (int32_t)(z & 0xffff) + (int32_t)((z >> 16) & 0xffff) +
                  (int32_t)((z >> 32) & 0xffff) + (int32_t)(z >> 48);
    dst[i] = s->mean + (float)(sum - 131070) * k;
  }
}

typedef struct conv_job {
  const row_src *src;
  int64_t ncols, row0, nrows;
  const tl_type_info *dst;
  size_t dst_row_bytes;
  uint8_t *out;
  float **scratch; /* per thread, ncols floats */
} conv_job;

static void conv_task(void *arg, int ith, int nth) {
  const conv_job *j = arg;
  int64_t b, e;
  tl_split(j->nrows, ith, nth, &b, &e);
  float *buf = j->scratch[ith];
  const tl_type_info *st = j->src->data ? tl_type_get(j->src->type) : NULL;
  for (int64_t r = b; r < e; r++) {
    int64_t row = j->row0 + r;
    if (st)
      st->to_float(j->src->data + (size_t)src_row(j->src, row) * j->src->row_bytes, buf, j->ncols);
    else
      gen_row(j->src, row, buf, j->ncols);
    j->dst->from_float(buf, j->out + (size_t)r * j->dst_row_bytes, j->ncols);
  }
}

typedef struct converter {
  tl_pool *pool;
  int n_threads;
  float **scratch;
  int64_t scratch_cols;
  uint8_t *out;
  size_t out_cap;
} converter;

static void converter_free(converter *c) {
  if (c->scratch)
    for (int i = 0; i < c->n_threads; i++) free(c->scratch[i]);
  free(c->scratch);
  free(c->out);
  tl_pool_free(c->pool);
}

static tl_status converter_init(converter *c, int32_t n_threads) {
  memset(c, 0, sizeof *c);
  c->n_threads = n_threads > 0 ? n_threads : tl_physical_cores();
  if (c->n_threads < 1) c->n_threads = 1;
  if (c->n_threads > 256) c->n_threads = 256;
  c->scratch = tl_calloc_array((size_t)c->n_threads, sizeof(float *));
  if (!c->scratch) return tl_fail(TL_ERR_NOMEM, "out of memory");
  return tl_pool_new(c->n_threads, &c->pool);
}

#define CHUNK_BYTES ((size_t)32 << 20)

/* Convert rows [0, nrows) of ncols elements from src into type dst and
 * stream them to the writer, a chunk of rows at a time. */
static tl_status convert_rows(converter *c, tl_gguf_writer *w, const row_src *src, int64_t ncols,
                              int64_t nrows, uint32_t dst_type) {
  const tl_type_info *dt = tl_type_get(dst_type);
  uint64_t rb64;
  if (!dt || !dt->from_float || !tl_type_row_size(dst_type, ncols, &rb64))
    return tl_fail(TL_ERR_UNSUPPORTED, "cannot convert rows of %lld to %s", (long long)ncols,
                   tl_type_name(dst_type));
  size_t rb = (size_t)rb64;
  if (c->scratch_cols < ncols) {
    for (int i = 0; i < c->n_threads; i++) {
      free(c->scratch[i]);
      if (!(c->scratch[i] = tl_malloc_array((size_t)ncols, sizeof(float))))
        return tl_fail(TL_ERR_NOMEM, "out of memory");
    }
    c->scratch_cols = ncols;
  }
  int64_t chunk = (int64_t)(CHUNK_BYTES / rb);
  if (chunk < c->n_threads) chunk = c->n_threads;
  if (chunk > nrows) chunk = nrows;
  size_t need = (size_t)chunk * rb;
  if (need > c->out_cap) {
    free(c->out);
    if (!(c->out = malloc(need))) {
      c->out_cap = 0;
      return tl_fail(TL_ERR_NOMEM, "out of memory for a %zu-byte conversion buffer", need);
    }
    c->out_cap = need;
  }
  for (int64_t r0 = 0; r0 < nrows; r0 += chunk) {
    conv_job j = {.src = src,
                  .ncols = ncols,
                  .row0 = r0,
                  .nrows = nrows - r0 < chunk ? nrows - r0 : chunk,
                  .dst = dt,
                  .dst_row_bytes = rb,
                  .out = c->out,
                  .scratch = c->scratch};
    if (j.nrows < 4 * c->n_threads || c->n_threads == 1)
      conv_task(&j, 0, 1);
    else
      tl_pool_run(c->pool, conv_task, &j);
    tl_status s = tl_gguf_writer_write(w, c->out, (size_t)j.nrows * rb);
    if (s) return s;
  }
  return TL_OK;
}

/* Rows copied as they are, in src_row order. */
static tl_status copy_rows(tl_gguf_writer *w, const row_src *src, int64_t nrows) {
  for (int64_t r = 0; r < nrows; r++) {
    tl_status s = tl_gguf_writer_write(w, src->data + (size_t)src_row(src, r) * src->row_bytes,
                                       src->row_bytes);
    if (s) return s;
  }
  return TL_OK;
}

static tl_status copy_bytes(tl_gguf_writer *w, const void *data, uint64_t n) {
  const uint8_t *p = data;
  while (n) {
    size_t k = n > CHUNK_BYTES ? CHUNK_BYTES : (size_t)n;
    tl_status s = tl_gguf_writer_write(w, p, k);
    if (s) return s;
    p += k;
    n -= k;
  }
  return TL_OK;
}

static bool report(tl_progress_fn fn, void *user, int32_t i, int32_t n, const char *name,
                   uint32_t st, uint32_t dt, const int64_t ne[4], uint64_t sb, uint64_t db) {
  tl_log(TL_LOG_INFO, "[%4d/%4d] %-36s %-6s -> %-6s [%lld, %lld]", i + 1, n, name, tl_type_name(st),
         tl_type_name(dt), (long long)ne[0], (long long)ne[1]);
  if (!fn) return true;
  tl_quantize_progress p = {.index = i,
                            .count = n,
                            .name = name,
                            .src_type = tl_type_name(st),
                            .dst_type = tl_type_name(dt),
                            .src_bytes = sb,
                            .dst_bytes = db};
  memcpy(p.ne, ne, sizeof p.ne);
  return fn(&p, user);
}

static uint64_t tensor_bytes(uint32_t type, const int64_t ne[4]) {
  uint64_t row = 0, n = 0;
  tl_type_row_size(type, ne[0], &row);
  tl_mul_u64(row, (uint64_t)(ne[1] * ne[2] * ne[3]), &n);
  return n;
}

/* ---- quantize ------------------------------------------------------------ */

static int cmp_idx_names(const void *a, const void *b, void *names) {
  const char *const *nm = names;
  return tl_quant_name_cmp(nm[*(const uint64_t *)a], nm[*(const uint64_t *)b]);
}

/* qsort_r is a GNU extension; a small merge sort keeps this portable. */
static void sort_idx(uint64_t *idx, uint64_t *tmp, uint64_t n, char **names) {
  if (n < 2) return;
  uint64_t h = n / 2;
  sort_idx(idx, tmp, h, names);
  sort_idx(idx + h, tmp, n - h, names);
  uint64_t i = 0, j = h, k = 0;
  while (i < h && j < n)
    tmp[k++] = cmp_idx_names(&idx[j], &idx[i], names) < 0 ? idx[j++] : idx[i++];
  while (i < h) tmp[k++] = idx[i++];
  while (j < n) tmp[k++] = idx[j++];
  memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

static tl_status arch_u32(const tl_gguf *g, const char *arch, const char *suffix, uint32_t def,
                          uint32_t *out) {
  char key[192];
  snprintf(key, sizeof key, "%s.%s", arch, suffix);
  *out = def;
  if (tl_gguf_get(g, key) && !tl_gguf_get_u32(g, key, out))
    return tl_fail(TL_ERR_FORMAT, "metadata '%s' is not a count", key);
  return TL_OK;
}

tl_status tl_quantize_gguf(const tl_gguf *src, const char *out_path, const tl_quantize_params *p) {
  const ftype_info *fi = ftype_find(p->ftype);
  if (!fi) return tl_fail(TL_ERR_INVALID_ARG, "unknown file type %d", (int)p->ftype);
  tl_str arch_s = {"", 0};
  tl_gguf_get_str(src, "general.architecture", &arch_s);
  char arch[64];
  snprintf(arch, sizeof arch, "%.*s", (int)(arch_s.len < 63 ? arch_s.len : 63), arch_s.ptr);
  uint64_t n = src->n_tensors;
  size_t nn = n ? (size_t)n : 1;
  char **names = tl_calloc_array(nn, sizeof(char *));
  uint64_t *order = tl_calloc_array(nn, sizeof(uint64_t)), *tmp = tl_calloc_array(nn, 8);
  int64_t(*ne)[4] = tl_calloc_array(nn, sizeof *ne);
  uint32_t *st = tl_calloc_array(nn, 4), *dt = tl_calloc_array(nn, 4);
  const char **onames = tl_calloc_array(nn, sizeof(char *));
  tl_gguf_wtensor *wt = tl_calloc_array(nn, sizeof *wt);
  tl_gguf_kv *kv = tl_calloc_array((size_t)src->n_kv + 2, sizeof *kv);
  tl_gguf_writer *w = NULL;
  converter conv = {0};
  tl_status s = TL_OK;
  if (!names || !order || !tmp || !ne || !st || !dt || !onames || !wt || !kv) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (uint64_t i = 0; i < n; i++) {
    const tl_gguf_tensor *t = &src->tensors[i];
    if (!(names[i] = tl_strndup(t->name.ptr, (size_t)t->name.len))) {
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
      goto done;
    }
    order[i] = i;
  }
  sort_idx(order, tmp, n, names);
  for (uint64_t k = 0; k < n; k++) {
    const tl_gguf_tensor *t = &src->tensors[order[k]];
    onames[k] = names[order[k]];
    memcpy(ne[k], t->ne, sizeof ne[k]);
    st[k] = t->type;
  }
  uint32_t n_layer = 0, n_head = 0, n_head_kv = 0;
  if ((s = arch_u32(src, arch, "block_count", 0, &n_layer)) ||
      (s = arch_u32(src, arch, "attention.head_count", 0, &n_head)) ||
      (s = arch_u32(src, arch, "attention.head_count_kv", n_head, &n_head_kv)))
    goto done;
  /* A Hugging Face LLaMA view keeps HF's rotate-half Q/K rows (and says so
   * with torchless.rope.type = neox); llama.cpp expects its converter's
   * interleaved rows, so permute them back and drop the key. */
  tl_str rope_type;
  bool permute_qk = !strcmp(arch, "llama") &&
                    tl_gguf_get_str(src, "torchless.rope.type", &rope_type) &&
                    tl_str_eq(rope_type, "neox");
  if (n_layer == 0) /* no block_count: count the layers */
    for (uint64_t i = 0; i < n; i++)
      if (layer_of(names[i]) >= (long)n_layer) n_layer = (uint32_t)layer_of(names[i]) + 1;
  if ((s = tl_quant_choose_types(arch, p->ftype, p->pure, (int32_t)n_layer, (int32_t)n_head,
                                 (int32_t)n_head_kv, n, onames, (const int64_t(*)[4])ne, st, dt)))
    goto done;
  for (uint64_t k = 0; k < n; k++) {
    const tl_gguf_tensor *t = &src->tensors[order[k]];
    if (dt[k] != st[k] && !tl_type_get(st[k])->to_float) {
      s = tl_fail(TL_ERR_UNSUPPORTED, "tensor '%s' has type %s, which cannot be converted",
                  onames[k], tl_type_name(st[k]));
      goto done;
    }
    if (dt[k] != st[k] && st[k] != TL_TYPE_F32 && st[k] != TL_TYPE_F16 && st[k] != TL_TYPE_BF16)
      tl_log(TL_LOG_WARN, "requantizing '%s' from %s to %s loses precision", onames[k],
             tl_type_name(st[k]), tl_type_name(dt[k]));
    wt[k].name = onames[k];
    wt[k].type = dt[k];
    wt[k].n_dims = t->n_dims;
    memcpy(wt[k].ne, t->ne, sizeof wt[k].ne);
  }
  /* metadata: the source's, minus split keys; quantization_version and
   * file_type moved to the end (as gguf's set_val does) */
  uint64_t nk = 0;
  tl_str tok_model = {"", 0};
  tl_gguf_get_str(src, "tokenizer.ggml.model", &tok_model);
  const bool bpe = tl_str_eq(tok_model, "gpt2");
  for (uint64_t i = 0; i < src->n_kv; i++) {
    tl_str k = src->kv[i].key;
    /* a Hugging Face view's "no such token" (-1, e.g. Qwen's absent BOS):
     * llama.cpp's converter leaves the key out, and its loader refuses a
     * signed id; for a byte-level BPE vocabulary (and any padding id),
     * absent means none to both */
    if ((bpe || tl_str_eq(k, "tokenizer.ggml.padding_token_id")) &&
        src->kv[i].val.type == TL_GGUF_I32 && (int32_t)(uint32_t)src->kv[i].val.v.u64 < 0 &&
        k.len > 24 && !memcmp(k.ptr, "tokenizer.ggml.", 15) &&
        !memcmp(k.ptr + k.len - 9, "_token_id", 9))
      continue;
    if (tl_str_eq(k, "split.no") || tl_str_eq(k, "split.count") ||
        tl_str_eq(k, "split.tensors.count") || tl_str_eq(k, "general.quantization_version") ||
        tl_str_eq(k, "general.file_type") || (permute_qk && tl_str_eq(k, "torchless.rope.type")))
      continue;
    kv[nk++] = src->kv[i];
  }
  kv[nk].key = (tl_str){"general.quantization_version", strlen("general.quantization_version")};
  kv[nk].val.type = TL_GGUF_U32;
  kv[nk++].val.v.u64 = 2;
  kv[nk].key = (tl_str){"general.file_type", strlen("general.file_type")};
  kv[nk].val.type = TL_GGUF_U32;
  kv[nk++].val.v.u64 = (uint64_t)p->ftype;

  if ((s = converter_init(&conv, p->n_threads))) goto done;
  if ((s = tl_gguf_writer_open(out_path, kv, nk, wt, n, &w))) goto done;
  for (uint64_t k = 0; k < n; k++) {
    const tl_gguf_tensor *t = &src->tensors[order[k]];
    uint64_t db = tensor_bytes(dt[k], t->ne);
    if (!report(p->progress, p->progress_user, (int32_t)k, (int32_t)n, onames[k], st[k], dt[k],
                t->ne, t->nbytes, db)) {
      s = tl_fail(TL_ERR_ABORTED, "cancelled");
      goto done;
    }
    uint64_t rb;
    tl_type_row_size(st[k], t->ne[0], &rb);
    row_src rs = {.data = t->data, .type = st[k], .row_bytes = (size_t)rb};
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (permute_qk && (strstr(onames[k], "attn_q.bias") || strstr(onames[k], "attn_k.bias"))) {
      s = tl_fail(TL_ERR_UNSUPPORTED,
                  "tensor '%s': Q/K biases of a Hugging Face LLaMA cannot be "
                  "converted yet",
                  onames[k]);
      goto done;
    }
    if (permute_qk && (strstr(onames[k], "attn_q.weight") || strstr(onames[k], "attn_k.weight"))) {
      int64_t heads = strstr(onames[k], "attn_q.") ? n_head : n_head_kv;
      if (heads <= 0 || rows % heads || (rows / heads) % 2) {
        s = tl_fail(TL_ERR_FORMAT, "tensor '%s': %lld rows do not split into %lld heads", onames[k],
                    (long long)rows, (long long)heads);
        goto done;
      }
      rs.perm_hd = rows / heads;
    }
    if (dt[k] == st[k])
      s = rs.perm_hd ? copy_rows(w, &rs, rows) : copy_bytes(w, t->data, t->nbytes);
    else
      s = convert_rows(&conv, w, &rs, t->ne[0], rows, dt[k]);
    if (s) {
      tl_fail_prefix(s, "tensor '%s'", onames[k]);
      goto done;
    }
  }
  s = tl_gguf_writer_finish(w);
  w = NULL;
done:
  tl_gguf_writer_abort(w);
  converter_free(&conv);
  if (names)
    for (uint64_t i = 0; i < n; i++) free(names[i]);
  free(names);
  free(order);
  free(tmp);
  free(ne);
  free(st);
  free(dt);
  free(onames);
  free(wt);
  free(kv);
  return s;
}

tl_status tl_model_quantize(const char *in_path, const char *out_path,
                            const tl_quantize_params *params) {
  if (!in_path || !out_path) return tl_fail(TL_ERR_INVALID_ARG, "tl_model_quantize: NULL path");
  tl_quantize_params def = tl_quantize_default_params();
  if (!params) params = &def;
  if (!ftype_find(params->ftype))
    return tl_fail(TL_ERR_INVALID_ARG, "unknown file type %d", (int)params->ftype);
  /* any loadable format, viewed as a GGUF */
  tl_gguf *g = NULL;
  tl_status s = tl_hf_is_folder(in_path) ? tl_hf_open(in_path, &g) : tl_gguf_open(in_path, &g);
  if (s) return tl_fail_prefix(s, "loading '%s'", in_path);
  s = tl_quantize_gguf(g, out_path, params);
  tl_gguf_free(g);
  if (s) tl_fail_prefix(s, "quantizing '%s' to '%s'", in_path, out_path);
  return s;
}

/* ---- synthetic models ----------------------------------------------------- */

typedef struct preset {
  const char *name, *arch, *label;
  int32_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
  float rope_theta, norm_eps;
  bool qkv_bias;
  /* head size where it is not n_embd / n_head; per-head q/k norms (Qwen 3) */
  int32_t head_dim;
  bool qk_norm;
  /* mixture of experts: n_expert of width n_ff_exp, n_expert_used per token
   * (n_ff: the dense width the metadata states, unused) */
  int32_t n_expert, n_expert_used, n_ff_exp;
} preset;

/* Shapes and hyper-parameters from the models' config.json files. */
static const preset g_presets[] = {
    {"tinyllama-1.1b", "llama", "1.1B", 22, 2048, 5632, 32, 4, 32000, 2048, 10000.0f, 1e-5f, false},
    {"mistral-7b", "llama", "7B", 32, 4096, 14336, 32, 8, 32000, 32768, 1000000.0f, 1e-5f, false},
    {"llama3-8b", "llama", "8B", 32, 4096, 14336, 32, 8, 128256, 8192, 500000.0f, 1e-5f, false},
    {"qwen2.5-7b", "qwen2", "7B", 28, 3584, 18944, 28, 4, 152064, 32768, 1000000.0f, 1e-6f, true},
    /* Qwen3-30B-A3B: 128 experts of 768, 8 per token, head_dim 128 */
    {"qwen3-30b-a3b", "qwen3moe", "30B-A3B", 48, 2048, 6144, 32, 4, 151936, 40960, 1000000.0f,
     1e-6f, false, 128, true, 128, 8, 768},
    /* a small shape for tests (vocabulary larger than the demo's 4096) */
    {"tiny", "llama", "10M", 2, 256, 512, 4, 2, 8192, 256, 10000.0f, 1e-5f, false},
};
#define N_PRESETS (sizeof g_presets / sizeof g_presets[0])

const char *const *tl_synth_presets(void) {
  static const char *names[N_PRESETS + 1];
  for (size_t i = 0; i < N_PRESETS; i++) names[i] = g_presets[i].name;
  names[N_PRESETS] = NULL;
  return names;
}

tl_synth_params tl_synth_default_params(void) {
  tl_synth_params p = {.preset = "tinyllama-1.1b", .ftype = TL_FTYPE_Q8_0, .seed = 1234};
  return p;
}

typedef enum tkind { K_MATRIX, K_NORM, K_BIAS } tkind;

typedef struct stensor {
  char name[64];
  int64_t ne[4];
  uint32_t n_dims;
  tkind kind;
} stensor;

/* Everything a synthetic file's metadata points to, freed together. */
typedef struct sbuf {
  void **p;
  size_t n, cap;
} sbuf;

static void *sbuf_keep(sbuf *b, void *p) {
  if (!p) return NULL;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    void **np = realloc(b->p, cap * sizeof *np);
    if (!np) {
      free(p);
      return NULL;
    }
    b->p = np;
    b->cap = cap;
  }
  b->p[b->n++] = p;
  return p;
}

static void sbuf_free(sbuf *b) {
  for (size_t i = 0; i < b->n; i++) free(b->p[i]);
  free(b->p);
}

static tl_str cstr(const char *s) {
  return (tl_str){s, strlen(s)};
}

typedef struct kvlist {
  tl_gguf_kv *kv;
  uint64_t n, cap;
} kvlist;

static tl_gguf_kv *kv_add(kvlist *l, sbuf *b, const char *key, uint32_t type) {
  if (l->n == l->cap) {
    uint64_t cap = l->cap ? l->cap * 2 : 64;
    tl_gguf_kv *nk = realloc(l->kv, (size_t)cap * sizeof *nk);
    if (!nk) return NULL;
    l->kv = nk;
    l->cap = cap;
  }
  char *k = sbuf_keep(b, tl_strndup(key, strlen(key)));
  if (!k) return NULL;
  tl_gguf_kv *e = &l->kv[l->n++];
  memset(e, 0, sizeof *e);
  e->key = cstr(k);
  e->val.type = type;
  return e;
}

#define KV_OR_NOMEM(e)                                       \
  do {                                                       \
    if (!(e)) return tl_fail(TL_ERR_NOMEM, "out of memory"); \
  } while (0)

static tl_status kv_u32(kvlist *l, sbuf *b, const char *key, uint32_t v) {
  tl_gguf_kv *e = kv_add(l, b, key, TL_GGUF_U32);
  KV_OR_NOMEM(e);
  e->val.v.u64 = v;
  return TL_OK;
}
static tl_status kv_f32(kvlist *l, sbuf *b, const char *key, float v) {
  tl_gguf_kv *e = kv_add(l, b, key, TL_GGUF_F32);
  KV_OR_NOMEM(e);
  e->val.v.f64 = v;
  return TL_OK;
}
static tl_status kv_str(kvlist *l, sbuf *b, const char *key, const char *v) {
  tl_gguf_kv *e = kv_add(l, b, key, TL_GGUF_STRING);
  KV_OR_NOMEM(e);
  char *s = sbuf_keep(b, tl_strndup(v, strlen(v)));
  KV_OR_NOMEM(s);
  e->val.v.str = cstr(s);
  return TL_OK;
}

/* The tokenizer keys of the donor, the per-token arrays padded to n_vocab
 * with "<unused_N>" tokens of type UNUSED (5) and score -1e9. */
static tl_status copy_tokenizer(const tl_gguf *tok, int32_t n_vocab, kvlist *l, sbuf *b) {
  const tl_gguf_value *tokens = tl_gguf_get_arr(tok, "tokenizer.ggml.tokens", TL_GGUF_STRING);
  if (!tokens) return tl_fail(TL_ERR_FORMAT, "the tokenizer model has no tokenizer.ggml.tokens");
  uint64_t n0 = tokens->v.arr.n;
  if (n0 > (uint64_t)n_vocab)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "the tokenizer has %llu tokens, more than the preset's vocabulary of %d",
                   (unsigned long long)n0, n_vocab);
  uint64_t n = (uint64_t)n_vocab;
  for (uint64_t i = 0; i < tok->n_kv; i++) {
    const tl_gguf_kv *src = &tok->kv[i];
    if (src->key.len < 10 || memcmp(src->key.ptr, "tokenizer.", 10) != 0) continue;
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(src->key.len < 255 ? src->key.len : 255), src->key.ptr);
    const tl_gguf_value *v = &src->val;
    bool per_token =
        v->type == TL_GGUF_ARRAY && v->v.arr.n == n0 &&
        (!strcmp(key, "tokenizer.ggml.tokens") || !strcmp(key, "tokenizer.ggml.scores") ||
         !strcmp(key, "tokenizer.ggml.token_type"));
    tl_gguf_kv *e = kv_add(l, b, key, v->type);
    KV_OR_NOMEM(e);
    e->val = *v; /* a view into the donor (it outlives the write) */
    if (!per_token || n == n0) continue;
    uint32_t et = v->v.arr.elem_type;
    e->val.v.arr.n = n;
    if (et == TL_GGUF_STRING) {
      tl_str *strs = sbuf_keep(b, tl_malloc_array((size_t)n, sizeof(tl_str)));
      char *pool = sbuf_keep(b, malloc((size_t)(n - n0) * 24));
      KV_OR_NOMEM(strs);
      KV_OR_NOMEM(pool);
      memcpy(strs, v->v.arr.strs, (size_t)n0 * sizeof(tl_str));
      char *q = pool;
      for (uint64_t t = n0; t < n; t++) {
        int k = snprintf(q, 24, "<unused_%llu>", (unsigned long long)(t - n0));
        strs[t] = (tl_str){q, (uint64_t)k};
        q += k;
      }
      e->val.v.arr.strs = strs;
    } else if (et == TL_GGUF_F32 || et == TL_GGUF_I32 || et == TL_GGUF_U32) {
      uint8_t *d = sbuf_keep(b, tl_malloc_array((size_t)n, 4));
      KV_OR_NOMEM(d);
      memcpy(d, v->v.arr.data, (size_t)n0 * 4);
      for (uint64_t t = n0; t < n; t++) {
        if (et == TL_GGUF_F32) {
          float f = -1e9f;
          memcpy(d + 4 * t, &f, 4);
        } else {
          int32_t x = 5; /* LLAMA_TOKEN_TYPE_UNUSED */
          memcpy(d + 4 * t, &x, 4);
        }
      }
      e->val.v.arr.data = d;
    } else {
      return tl_fail(TL_ERR_UNSUPPORTED, "cannot pad '%s' (element type %u)", key, et);
    }
  }
  return TL_OK;
}

static int32_t preset_head_dim(const preset *ps) {
  return ps->head_dim > 0 ? ps->head_dim : ps->n_embd / ps->n_head;
}

static tl_status synth_tensors(const preset *ps, int32_t n_layer, stensor **out, uint64_t *n_out) {
  uint64_t per = (ps->qkv_bias ? 12 : 9) + (ps->qk_norm ? 2 : 0) + (ps->n_expert > 0 ? 1 : 0);
  stensor *t = tl_calloc_array((size_t)(3 + per * (uint64_t)n_layer), sizeof *t);
  if (!t) return tl_fail(TL_ERR_NOMEM, "out of memory");
  uint64_t n = 0;
  const int64_t d = ps->n_embd, hd = preset_head_dim(ps);
  const int64_t qd = hd * ps->n_head, kvd = hd * ps->n_head_kv;
#define ADD(nm, kd, a, b_)                         \
  do {                                             \
    stensor *x_ = &t[n++];                         \
    snprintf(x_->name, sizeof x_->name, "%s", nm); \
    x_->ne[0] = (a);                               \
    x_->ne[1] = (b_);                              \
    x_->ne[2] = x_->ne[3] = 1;                     \
    x_->n_dims = (b_) > 1 ? 2 : 1;                 \
    x_->kind = (kd);                               \
  } while (0)
  ADD("token_embd.weight", K_MATRIX, d, ps->n_vocab);
  ADD("output_norm.weight", K_NORM, d, 1);
  ADD("output.weight", K_MATRIX, d, ps->n_vocab);
  for (int32_t il = 0; il < n_layer; il++) {
    char nm[64];
#define L(x) (snprintf(nm, sizeof nm, "blk.%d." x, il), nm)
    ADD(L("attn_norm.weight"), K_NORM, d, 1);
    ADD(L("attn_q.weight"), K_MATRIX, d, qd);
    ADD(L("attn_k.weight"), K_MATRIX, d, kvd);
    ADD(L("attn_v.weight"), K_MATRIX, d, kvd);
    if (ps->qkv_bias) {
      ADD(L("attn_q.bias"), K_BIAS, qd, 1);
      ADD(L("attn_k.bias"), K_BIAS, kvd, 1);
      ADD(L("attn_v.bias"), K_BIAS, kvd, 1);
    }
    if (ps->qk_norm) {
      ADD(L("attn_q_norm.weight"), K_NORM, hd, 1);
      ADD(L("attn_k_norm.weight"), K_NORM, hd, 1);
    }
    ADD(L("attn_output.weight"), K_MATRIX, qd, d);
    ADD(L("ffn_norm.weight"), K_NORM, d, 1);
    if (ps->n_expert > 0) { /* llama.cpp's stacked experts [cols, rows, n_expert] */
      ADD(L("ffn_gate_inp.weight"), K_MATRIX, d, ps->n_expert);
      ADD(L("ffn_gate_exps.weight"), K_MATRIX, d, ps->n_ff_exp);
      t[n - 1].ne[2] = ps->n_expert;
      t[n - 1].n_dims = 3;
      ADD(L("ffn_up_exps.weight"), K_MATRIX, d, ps->n_ff_exp);
      t[n - 1].ne[2] = ps->n_expert;
      t[n - 1].n_dims = 3;
      ADD(L("ffn_down_exps.weight"), K_MATRIX, ps->n_ff_exp, d);
      t[n - 1].ne[2] = ps->n_expert;
      t[n - 1].n_dims = 3;
      continue;
    }
    ADD(L("ffn_gate.weight"), K_MATRIX, d, ps->n_ff);
    ADD(L("ffn_up.weight"), K_MATRIX, d, ps->n_ff);
    ADD(L("ffn_down.weight"), K_MATRIX, ps->n_ff, d);
#undef L
  }
#undef ADD
  *out = t;
  *n_out = n;
  return TL_OK;
}

static int cmp_stensor(const void *a, const void *b) {
  return tl_quant_name_cmp(((const stensor *)a)->name, ((const stensor *)b)->name);
}

tl_status tl_synth_model(const char *out_path, const tl_synth_params *p) {
  if (!out_path || !p || !p->preset)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_synth_model: NULL argument");
  const preset *ps = NULL;
  for (size_t i = 0; i < N_PRESETS; i++)
    if (name_ieq(p->preset, g_presets[i].name)) ps = &g_presets[i];
  if (!ps)
    return tl_fail(TL_ERR_INVALID_ARG,
                   "unknown preset '%s' (tinyllama-1.1b, mistral-7b, llama3-8b, qwen2.5-7b, "
                   "qwen3-30b-a3b)",
                   p->preset);
  const ftype_info *fi = ftype_find(p->ftype);
  if (!fi) return tl_fail(TL_ERR_INVALID_ARG, "unknown file type %d", (int)p->ftype);
  if (!p->tokenizer_model)
    return tl_fail(TL_ERR_INVALID_ARG, "tl_synth_model: a tokenizer model is required");
  int32_t n_layer = p->n_layer > 0 ? p->n_layer : ps->n_layer;
  if (n_layer > 4096) return tl_fail(TL_ERR_INVALID_ARG, "too many layers (%d)", n_layer);

  tl_gguf *tok = NULL;
  stensor *ts = NULL;
  uint64_t n = 0;
  kvlist kl = {0};
  sbuf b = {0};
  tl_gguf_wtensor *wt = NULL;
  const char **names = NULL;
  int64_t(*ne)[4] = NULL;
  uint32_t *st = NULL, *dt = NULL;
  tl_gguf_writer *w = NULL;
  converter conv = {0};
  tl_status s = tl_gguf_open(p->tokenizer_model, &tok);
  if (s) {
    tl_fail_prefix(s, "loading the tokenizer from '%s'", p->tokenizer_model);
    goto done;
  }
  if ((s = synth_tensors(ps, n_layer, &ts, &n))) goto done;
  qsort(ts, (size_t)n, sizeof *ts, cmp_stensor);
  wt = tl_calloc_array((size_t)n, sizeof *wt);
  names = tl_calloc_array((size_t)n, sizeof *names);
  ne = tl_calloc_array((size_t)n, sizeof *ne);
  st = tl_calloc_array((size_t)n, 4);
  dt = tl_calloc_array((size_t)n, 4);
  if (!wt || !names || !ne || !st || !dt) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (uint64_t i = 0; i < n; i++) {
    names[i] = ts[i].name;
    memcpy(ne[i], ts[i].ne, sizeof ne[i]);
    st[i] = TL_TYPE_F32;
  }
  if ((s = tl_quant_choose_types(ps->arch, p->ftype, false, n_layer, ps->n_head, ps->n_head_kv, n,
                                 names, (const int64_t(*)[4])ne, st, dt)))
    goto done;
  for (uint64_t i = 0; i < n; i++) {
    wt[i].name = ts[i].name;
    wt[i].type = dt[i];
    wt[i].n_dims = ts[i].n_dims;
    memcpy(wt[i].ne, ts[i].ne, sizeof wt[i].ne);
  }
  /* metadata, in the order llama.cpp's converter writes it */
  char key[128], name[96];
  const char *a = ps->arch;
  int32_t hd = preset_head_dim(ps);
  snprintf(name, sizeof name, "synthetic %s", ps->name);
#define AK(sfx) (snprintf(key, sizeof key, "%s." sfx, a), key)
  if ((s = kv_str(&kl, &b, "general.architecture", a)) ||
      (s = kv_str(&kl, &b, "general.type", "model")) ||
      (s = kv_str(&kl, &b, "general.name", name)) ||
      (s = kv_str(&kl, &b, "general.size_label", ps->label)) ||
      (s = kv_u32(&kl, &b, AK("block_count"), (uint32_t)n_layer)) ||
      (s = kv_u32(&kl, &b, AK("context_length"), (uint32_t)ps->n_ctx)) ||
      (s = kv_u32(&kl, &b, AK("embedding_length"), (uint32_t)ps->n_embd)) ||
      (s = kv_u32(&kl, &b, AK("feed_forward_length"), (uint32_t)ps->n_ff)) ||
      (s = kv_u32(&kl, &b, AK("attention.head_count"), (uint32_t)ps->n_head)) ||
      (s = kv_u32(&kl, &b, AK("attention.head_count_kv"), (uint32_t)ps->n_head_kv)) ||
      (s = kv_f32(&kl, &b, AK("rope.freq_base"), ps->rope_theta)) ||
      (s = kv_f32(&kl, &b, AK("attention.layer_norm_rms_epsilon"), ps->norm_eps)) ||
      (s = kv_u32(&kl, &b, AK("attention.key_length"), (uint32_t)hd)) ||
      (s = kv_u32(&kl, &b, AK("attention.value_length"), (uint32_t)hd)) ||
      (s = kv_u32(&kl, &b, AK("vocab_size"), (uint32_t)ps->n_vocab)) ||
      (s = kv_u32(&kl, &b, AK("rope.dimension_count"), (uint32_t)hd)) ||
      (ps->n_expert > 0 &&
       ((s = kv_u32(&kl, &b, AK("expert_count"), (uint32_t)ps->n_expert)) ||
        (s = kv_u32(&kl, &b, AK("expert_used_count"), (uint32_t)ps->n_expert_used)) ||
        (s = kv_u32(&kl, &b, AK("expert_feed_forward_length"), (uint32_t)ps->n_ff_exp)))) ||
      (s = copy_tokenizer(tok, ps->n_vocab, &kl, &b)) ||
      (s = kv_str(&kl, &b, "torchless.synth.preset", ps->name)) ||
      (s = kv_u32(&kl, &b, "general.quantization_version", 2)) ||
      (s = kv_u32(&kl, &b, "general.file_type", (uint32_t)p->ftype)))
    goto done;
#undef AK
  {
    tl_gguf_kv *e = kv_add(&kl, &b, "torchless.synth.seed", TL_GGUF_U64);
    if (!e) {
      s = tl_fail(TL_ERR_NOMEM, "out of memory");
      goto done;
    }
    e->val.v.u64 = p->seed;
  }
  if ((s = converter_init(&conv, p->n_threads))) goto done;
  if ((s = tl_gguf_writer_open(out_path, kl.kv, kl.n, wt, n, &w))) goto done;
  for (uint64_t i = 0; i < n; i++) {
    const stensor *t = &ts[i];
    uint64_t db = tensor_bytes(dt[i], t->ne);
    if (!report(p->progress, p->progress_user, (int32_t)i, (int32_t)n, t->name, TL_TYPE_F32, dt[i],
                t->ne, tensor_bytes(TL_TYPE_F32, t->ne), db)) {
      s = tl_fail(TL_ERR_ABORTED, "cancelled");
      goto done;
    }
    /* a seed per tensor from its name, so that a tensor's values do not
     * depend on the layer count or the tensor order */
    uint64_t h = p->seed ^ 0x6a09e667f3bcc908ull;
    for (const char *c = t->name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    row_src rs = {.seed = h, .mean = t->kind == K_NORM ? 1.0f : 0.0f, .std = 0.02f};
    if ((s = convert_rows(&conv, w, &rs, t->ne[0], t->ne[1] * t->ne[2], dt[i]))) {
      tl_fail_prefix(s, "tensor '%s'", t->name);
      goto done;
    }
  }
  s = tl_gguf_writer_finish(w);
  w = NULL;
  if (s) tl_fail_prefix(s, "writing '%s'", out_path);
done:
  tl_gguf_writer_abort(w);
  converter_free(&conv);
  free(kl.kv);
  sbuf_free(&b);
  free(wt);
  free(names);
  free(ne);
  free(st);
  free(dt);
  free(ts);
  tl_gguf_free(tok);
  return s;
}
