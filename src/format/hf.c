/* Hugging Face folder -> GGUF view: see hf.h. Keys and tensor names follow
 * llama.cpp's convert_hf_to_gguf.py and gguf-py (constants.py,
 * tensor_mapping.py). */
#include "format/hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "format/json.h"
#include "format/safetensors.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"

typedef enum fam {
  F_LLAMA,
  F_MISTRAL,
  F_QWEN2,
  F_QWEN3,
  F_PHI2,
  F_PHI3,
  F_GEMMA,
  F_GEMMA2,
  F_GEMMA3,
  F_MIXTRAL,
  F_QWEN3MOE,
} fam;

static const struct {
  const char *model_type;
  const char *arch;
  fam f;
} k_types[] = {
    {"llama", "llama", F_LLAMA},
    {"mistral", "llama", F_MISTRAL},
    {"qwen2", "qwen2", F_QWEN2},
    {"qwen3", "qwen3", F_QWEN3},
    {"phi", "phi2", F_PHI2},
    {"phi3", "phi3", F_PHI3},
    {"gemma", "gemma", F_GEMMA},
    {"gemma2", "gemma2", F_GEMMA2},
    {"gemma3_text", "gemma3", F_GEMMA3},
    {"gemma3", "gemma3", F_GEMMA3},
    {"mixtral", "llama", F_MIXTRAL}, /* llama.cpp converts Mixtral to "llama" with experts */
    {"qwen3_moe", "qwen3moe", F_QWEN3MOE},
};

typedef struct hf {
  const char *dir;
  tl_gguf *g;
  const cJSON *root; /* config.json */
  const cJSON *c;    /* its hyper-parameters (root, or text_config of multimodal gemma3) */
  const char *arch;
  fam f;
  bool tied;
  int64_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_rot;
  double rope_attn; /* YaRN / LongRoPE cos-sin magnitude, squared into the query scale */
  /* mixture of experts: the Hub's one tensor per expert, [layer][gate, up,
   * down][expert], stacked into llama.cpp's ffn_*_exps once all are read */
  int64_t n_expert;
  const tl_st_tensor **exps;
} hf;

static bool is_moe(fam f) {
  return f == F_MIXTRAL || f == F_QWEN3MOE;
}

static bool is_gemma(fam f) {
  return f == F_GEMMA || f == F_GEMMA2 || f == F_GEMMA3;
}

bool tl_hf_is_folder(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* ---- config.json values --------------------------------------------------- */

/* A member that is present and not null. */
static const cJSON *jget(const cJSON *o, const char *k) {
  const cJSON *j = tl_json_get(o, k);
  return j && !cJSON_IsNull(j) ? j : NULL;
}

static tl_status bad(const hf *h, const char *k, const char *want, const cJSON *j) {
  return tl_fail(TL_ERR_FORMAT, "'%s/config.json': '%s' must be %s (it is %s)", h->dir, k, want,
                 tl_json_type(j));
}

static tl_status cfg_int(const hf *h, const cJSON *o, const char *k, bool required, int64_t def,
                         int64_t lo, int64_t hi, int64_t *out) {
  const cJSON *j = jget(o, k);
  if (!j) {
    if (required) return tl_fail(TL_ERR_FORMAT, "'%s/config.json' has no '%s'", h->dir, k);
    *out = def;
    return TL_OK;
  }
  if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || floor(j->valuedouble) != j->valuedouble)
    return bad(h, k, "an integer", j);
  double d = j->valuedouble;
  if (d < (double)lo || d > (double)hi)
    return tl_fail(TL_ERR_FORMAT, "'%s/config.json': '%s' = %.17g is out of range [%lld, %lld]",
                   h->dir, k, d, (long long)lo, (long long)hi);
  *out = (int64_t)d;
  return TL_OK;
}

/* A finite number; *present tells whether it was there (and not null). */
static tl_status cfg_num(const hf *h, const cJSON *o, const char *k, double def, bool *present,
                         double *out) {
  const cJSON *j = jget(o, k);
  if (present) *present = j != NULL;
  if (!j) {
    *out = def;
    return TL_OK;
  }
  if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) return bad(h, k, "a finite number", j);
  *out = j->valuedouble;
  return TL_OK;
}

static tl_status cfg_pos(const hf *h, const cJSON *o, const char *k, double def, double *out) {
  tl_status s = cfg_num(h, o, k, def, NULL, out);
  if (!s && !(*out > 0))
    s = tl_fail(TL_ERR_FORMAT, "'%s/config.json': '%s' must be positive", h->dir, k);
  return s;
}

static tl_status cfg_bool(const hf *h, const cJSON *o, const char *k, bool def, bool *out) {
  const cJSON *j = jget(o, k);
  if (!j) {
    *out = def;
    return TL_OK;
  }
  if (!cJSON_IsBool(j)) return bad(h, k, "true or false", j);
  *out = cJSON_IsTrue(j);
  return TL_OK;
}

/* NULL when absent or null. */
static tl_status cfg_str(const hf *h, const cJSON *o, const char *k, const char **out) {
  const cJSON *j = jget(o, k);
  *out = NULL;
  if (!j) return TL_OK;
  if (!cJSON_IsString(j) || !j->valuestring) return bad(h, k, "a string", j);
  *out = j->valuestring;
  return TL_OK;
}

/* An object member (NULL when absent or null). */
static tl_status cfg_obj(const hf *h, const cJSON *o, const char *k, const cJSON **out) {
  const cJSON *j = jget(o, k);
  *out = NULL;
  if (!j) return TL_OK;
  if (!cJSON_IsObject(j)) return bad(h, k, "an object", j);
  *out = j;
  return TL_OK;
}

/* ---- view keys ------------------------------------------------------------- */

static const char *akey(const hf *h, const char *suffix, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.%s", h->arch, suffix);
  return buf;
}

static tl_status put_u32(hf *h, const char *suffix, int64_t v) {
  char k[128];
  if (v < 0 || v > UINT32_MAX)
    return tl_fail(TL_ERR_FORMAT, "'%s/config.json': %s = %lld is out of range", h->dir, suffix,
                   (long long)v);
  return tl_gguf_set_u32(h->g, akey(h, suffix, k, sizeof k), (uint32_t)v);
}

static tl_status put_f32(hf *h, const char *suffix, double v) {
  char k[128];
  return tl_gguf_set_f32(h->g, akey(h, suffix, k, sizeof k), (float)v);
}

/* ---- RoPE ------------------------------------------------------------------ */

typedef struct rope_spec {
  double theta;
  const char *type; /* "default", "linear", "llama3", ... */
  double factor, low, high, orig, attn_factor, beta_fast, beta_slow;
  bool has_orig, has_factor, has_attn_factor, truncate;
  const cJSON *long_factor, *short_factor; /* LongRoPE arrays */
} rope_spec;

/* Read a rope_parameters / rope_scaling object into r (fields present only). */
static tl_status rope_read(const hf *h, const cJSON *o, rope_spec *r) {
  tl_status s;
  const char *type;
  bool present;
  double v;
  if ((s = cfg_str(h, o, "rope_type", &type))) return s;
  if (!type && (s = cfg_str(h, o, "type", &type))) return s;
  if (type) { /* a new scaling: forget what an older spelling said */
    r->type = type;
    r->factor = 1.0;
    r->low = 1.0;
    r->high = 4.0;
    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = true;
    r->long_factor = r->short_factor = NULL;
    r->has_orig = r->has_factor = r->has_attn_factor = false;
  }
  if ((s = cfg_num(h, o, "beta_fast", 0, &present, &v))) return s;
  if (present) r->beta_fast = v;
  if ((s = cfg_num(h, o, "beta_slow", 0, &present, &v))) return s;
  if (present) r->beta_slow = v;
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(o, "truncate");
  if (tr && !cJSON_IsNull(tr)) {
    if (!cJSON_IsBool(tr))
      return tl_fail(TL_ERR_FORMAT, "'%s/config.json': rope 'truncate' must be a boolean", h->dir);
    r->truncate = cJSON_IsTrue(tr);
  }
  const cJSON *lf = cJSON_GetObjectItemCaseSensitive(o, "long_factor");
  const cJSON *sf = cJSON_GetObjectItemCaseSensitive(o, "short_factor");
  if (lf) r->long_factor = lf;
  if (sf) r->short_factor = sf;
  if ((s = cfg_num(h, o, "rope_theta", 0, &present, &v))) return s;
  if (present) r->theta = v;
  if ((s = cfg_num(h, o, "factor", 0, &present, &v))) return s;
  if (present) {
    r->factor = v;
    r->has_factor = true;
  }
  if ((s = cfg_num(h, o, "low_freq_factor", 0, &present, &v))) return s;
  if (present) r->low = v;
  if ((s = cfg_num(h, o, "high_freq_factor", 0, &present, &v))) return s;
  if (present) r->high = v;
  if ((s = cfg_num(h, o, "original_max_position_embeddings", 0, &present, &v))) return s;
  if (present) {
    r->orig = v;
    r->has_orig = true;
  }
  if ((s = cfg_num(h, o, "attention_factor", 0, &present, &v))) return s;
  if (present) {
    r->attn_factor = v;
    r->has_attn_factor = true;
  }
  return TL_OK;
}

/* Store n frequency divisors f (owned by the file from here on) as rope_freqs.weight. */
static tl_status put_divisors(hf *h, float *f, int64_t n) {
  tl_status s = tl_gguf_own(h->g, f, free);
  if (s) return s;
  int64_t ne[1] = {n};
  return tl_gguf_add_tensor(h->g, "rope_freqs.weight", TL_TYPE_F32, 1, ne, f,
                            (uint64_t)n * sizeof(float));
}

/* LLaMA 3 frequency divisors, as llama.cpp's converter computes them. */
static tl_status rope_llama3(hf *h, const rope_spec *r) {
  double orig = r->orig;
  if (!r->has_orig) {
    bool present;
    tl_status s = cfg_num(h, h->c, "original_max_position_embeddings", 8192, &present, &orig);
    if (s) return s;
  }
  if (!(orig > 0) || !(r->factor > 0) || !(r->low > 0) || !(r->high > r->low))
    return tl_fail(
        TL_ERR_FORMAT,
        "'%s/config.json': llama3 rope scaling needs factor > 0, "
        "0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0",
        h->dir);
  int64_t n = h->n_rot / 2;
  float *f = tl_malloc_array((size_t)n, sizeof *f);
  if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
  const double pi = 3.14159265358979323846;
  double low_wavelen = orig / r->low, high_wavelen = orig / r->high;
  for (int64_t i = 0; i < n; i++) {
    double freq = 1.0 / pow(r->theta, (double)(2 * i) / (double)h->n_rot);
    double wavelen = 2 * pi / freq, div;
    if (wavelen < high_wavelen) {
      div = 1.0;
    } else if (wavelen > low_wavelen) {
      div = r->factor;
    } else {
      double smooth = (orig / wavelen - r->low) / (r->high - r->low);
      div = 1.0 / ((1.0 - smooth) / r->factor + smooth);
    }
    f[i] = (float)div;
  }
  return put_divisors(h, f, n);
}

/* The training context of a scaled RoPE: the scaling's, else the config's, else def. */
static tl_status rope_orig(const hf *h, const rope_spec *r, double def, double *orig) {
  if (r->has_orig) {
    *orig = r->orig;
    return TL_OK;
  }
  return cfg_num(h, h->c, "original_max_position_embeddings", def, NULL, orig);
}

/* YaRN, written as llama.cpp's metadata (rope.scaling.type "yarn", factor,
 * original_context_length, attn_factor / betas where not the defaults); the
 * loader (model.c, yarn_fold) computes transformers' / ggml's blend. */
static tl_status rope_yarn(hf *h, const rope_spec *r) {
  double orig;
  tl_status s = rope_orig(h, r, 0, &orig);
  if (s) return s;
  if (!(orig > 0)) {
    s = cfg_num(h, h->c, "max_position_embeddings", 0, NULL, &orig);
    if (s) return s;
  }
  if (!(orig > 0) || !(r->factor > 0) || !(r->beta_fast > 0) || !(r->beta_slow > 0) ||
      (r->has_attn_factor && !(r->attn_factor > 0)))
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': yarn rope scaling needs factor, beta_fast, beta_slow, "
                   "attention_factor and original_max_position_embeddings > 0",
                   h->dir);
  if (orig != floor(orig) || orig > 2147483647.0)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': original_max_position_embeddings must be an integer", h->dir);
  if (!r->truncate)
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "'%s/config.json': yarn with truncate false has no GGUF spelling", h->dir);
  /* llama.cpp's metadata; its loader multiplies attn_factor by 1 + 0.1 ln factor,
   * transformers' explicit attention_factor (or 1 for factor <= 1) replaces it */
  double af = r->has_attn_factor ? r->attn_factor
              : r->factor > 1    ? 0.1 * log(r->factor) + 1.0
                                 : 1.0;
  af /= 1.0 + 0.1 * log(r->factor);
  char k[128];
  if ((s = tl_gguf_set_str(h->g, akey(h, "rope.scaling.type", k, sizeof k), "yarn", 4)) ||
      (s = put_f32(h, "rope.scaling.factor", r->factor)) ||
      (s = put_u32(h, "rope.scaling.original_context_length", (int64_t)orig)))
    return s;
  if (fabs(af - 1.0) > 1e-7 && (s = put_f32(h, "rope.scaling.attn_factor", af))) return s;
  if (r->beta_fast != 32.0 && (s = put_f32(h, "rope.scaling.yarn_beta_fast", r->beta_fast)))
    return s;
  if (r->beta_slow != 1.0 && (s = put_f32(h, "rope.scaling.yarn_beta_slow", r->beta_slow)))
    return s;
  return TL_OK;
}

/* LongRoPE (Phi-3), written as llama.cpp writes it: the factors as tensors
 * rope_factors_long.weight / rope_factors_short.weight, the cos-sin magnitude
 * (attention_factor, default sqrt(1 + ln(max/orig) / ln(orig))) as
 * rope.scaling.attn_factor. transformers switches from the short to the long
 * factors once the sequence outgrows the original context; the loader uses
 * the long ones at every position (identical for any sequence longer than it). */
static tl_status rope_longrope(hf *h, const rope_spec *r) {
  double orig, max;
  tl_status s = rope_orig(h, r, 0, &orig);
  if (!s) s = cfg_num(h, h->c, "max_position_embeddings", 0, NULL, &max);
  if (s) return s;
  if (!(orig > 1) || !(max > 0))
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': longrope needs original_max_position_embeddings > 1 "
                   "and max_position_embeddings > 0",
                   h->dir);
  int64_t n = h->n_rot / 2;
  const cJSON *a = r->long_factor;
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n || !cJSON_IsArray(r->short_factor) ||
      cJSON_GetArraySize(r->short_factor) != n)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': longrope long_factor and short_factor must be arrays of "
                   "%lld numbers (rotary dimensions / 2)",
                   h->dir, (long long)n);
  static const char *const names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
  const cJSON *arrs[2] = {r->long_factor, r->short_factor};
  for (int t = 0; t < 2; t++) {
    float *f = tl_malloc_array((size_t)n, sizeof *f);
    if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
      const cJSON *e = cJSON_GetArrayItem(arrs[t], (int)i);
      if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble)) {
        free(f);
        return tl_fail(TL_ERR_FORMAT, "'%s/config.json': longrope factors must be positive numbers",
                       h->dir);
      }
      f[i] = (float)e->valuedouble;
    }
    if ((s = tl_gguf_own(h->g, f, free))) return s;
    int64_t ne[1] = {n};
    if ((s = tl_gguf_add_tensor(h->g, names[t], TL_TYPE_F32, 1, ne, f,
                                (uint64_t)n * sizeof(float))))
      return s;
  }
  double factor = max / orig, af;
  if (r->has_attn_factor) {
    if (!(r->attn_factor > 0))
      return tl_fail(TL_ERR_FORMAT, "'%s/config.json': attention_factor must be positive", h->dir);
    af = r->attn_factor;
  } else {
    af = factor <= 1 ? 1.0 : sqrt(1 + log(factor) / log(orig));
  }
  /* llama.cpp's Phi-3 metadata: ggml's cos-sin magnitude and the original context */
  if (orig != floor(orig) || orig > 2147483647.0)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': original_max_position_embeddings must be an integer", h->dir);
  if ((s = put_u32(h, "rope.scaling.original_context_length", (int64_t)orig))) return s;
  return af != 1.0 ? put_f32(h, "rope.scaling.attn_factor", af) : TL_OK;
}

static tl_status rope_scaling(hf *h, const rope_spec *r, const char *which) {
  const char *t = r->type;
  if (!t || strcmp(t, "default") == 0 || strcmp(t, "none") == 0) return TL_OK;
  if (strcmp(t, "linear") == 0) {
    if (!(r->factor > 0))
      return tl_fail(TL_ERR_FORMAT, "'%s/config.json': linear rope scaling needs factor > 0",
                     h->dir);
    char k[128];
    tl_status s = tl_gguf_set_str(h->g, akey(h, "rope.scaling.type", k, sizeof k), "linear", 6);
    if (!s) s = put_f32(h, "rope.scaling.factor", r->factor);
    return s;
  }
  if (strcmp(t, "llama3") == 0) return rope_llama3(h, r);
  if (strcmp(t, "dynamic") == 0) {
    /* Dynamic NTK only changes the frequencies beyond the training context
     * (context_length); within it, it is the plain RoPE. */
    tl_log(TL_LOG_INFO, "'%s': dynamic rope scaling applies only beyond the training context",
           h->dir);
    return TL_OK;
  }
  if (strcmp(t, "yarn") == 0) return rope_yarn(h, r);
  if (strcmp(t, "longrope") == 0) return rope_longrope(h, r);
  return tl_fail(TL_ERR_UNSUPPORTED, "'%s/config.json': rope scaling '%.32s'%s is not supported",
                 h->dir, t, which);
}

static tl_status set_rope(hf *h) {
  const cJSON *c = h->c;
  tl_status s;
  rope_spec full = {.theta = h->f == F_GEMMA3 ? 1e6 : 1e4, .type = "default", .factor = 1.0};
  rope_spec swa = {.theta = 1e4, .type = "default", .factor = 1.0};
  full.low = swa.low = 1.0;
  full.high = swa.high = 4.0;
  bool present;
  double v;
  /* transformers 4 spelling */
  if ((s = cfg_num(h, c, "rope_theta", 0, &present, &v))) return s;
  if (present) full.theta = v;
  if ((s = cfg_num(h, c, "rope_local_base_freq", 0, &present, &v))) return s;
  if (present) swa.theta = v;
  const cJSON *rs, *rp;
  if ((s = cfg_obj(h, c, "rope_scaling", &rs))) return s;
  if (rs && (s = rope_read(h, rs, &full))) return s;
  /* transformers 5 spelling, possibly per layer type */
  if ((s = cfg_obj(h, c, "rope_parameters", &rp))) return s;
  double prf = h->f == F_PHI2 ? 0.5 : 1.0;
  if ((s = cfg_num(h, c, "partial_rotary_factor", prf, NULL, &prf))) return s;
  if (rp) {
    const cJSON *fa, *sa;
    if ((s = cfg_obj(h, rp, "full_attention", &fa)) ||
        (s = cfg_obj(h, rp, "sliding_attention", &sa)))
      return s;
    if (fa || sa) {
      if (fa && (s = rope_read(h, fa, &full))) return s;
      if (sa && (s = rope_read(h, sa, &swa))) return s;
      if (fa && (s = cfg_num(h, fa, "partial_rotary_factor", prf, NULL, &prf))) return s;
    } else {
      if ((s = rope_read(h, rp, &full))) return s;
      if ((s = cfg_num(h, rp, "partial_rotary_factor", prf, NULL, &prf))) return s;
    }
  }
  if (!(full.theta > 0) || !(swa.theta > 0))
    return tl_fail(TL_ERR_FORMAT, "'%s/config.json': the rope base must be positive", h->dir);
  h->n_rot = h->head_dim;
  if (h->f == F_PHI2 || h->f == F_PHI3) {
    if (!(prf > 0 && prf <= 1))
      return tl_fail(TL_ERR_FORMAT, "'%s/config.json': partial_rotary_factor must be in (0, 1]",
                     h->dir);
    h->n_rot = (int64_t)((double)h->head_dim * prf);
  }
  if (h->n_rot < 2 || h->n_rot % 2)
    return tl_fail(TL_ERR_UNSUPPORTED, "'%s/config.json': %lld rotary dimensions", h->dir,
                   (long long)h->n_rot);
  if ((s = put_f32(h, "rope.freq_base", full.theta)) ||
      (s = put_u32(h, "rope.dimension_count", h->n_rot)) || (s = rope_scaling(h, &full, "")))
    return s;
  if (h->f == F_GEMMA3) {
    if ((s = put_f32(h, "rope.freq_base_swa", swa.theta))) return s;
    if (strcmp(swa.type, "default") != 0)
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "'%s/config.json': rope scaling '%.32s' on sliding-window layers is not "
                     "supported",
                     h->dir, swa.type);
  }
  return TL_OK;
}

/* ---- sliding windows and Gemma specifics ------------------------------------ */

static tl_status set_sliding(hf *h) {
  const cJSON *c = h->c;
  tl_status s;
  int64_t sw, n = h->n_layer;
  bool wanted = false, def_gemma = h->f == F_GEMMA2 || h->f == F_GEMMA3;
  if ((s = cfg_int(h, c, "sliding_window", false, def_gemma ? 4096 : 0, 1, INT32_MAX, &sw)))
    return s;
  switch (h->f) {
    case F_GEMMA2:
    case F_GEMMA3:
      wanted = true;
      break;
    case F_MISTRAL:
    case F_MIXTRAL:
    case F_PHI3:
      wanted = sw > 0;
      break;
    case F_QWEN2:
    case F_QWEN3:
    case F_QWEN3MOE: {
      bool use;
      if ((s = cfg_bool(h, c, "use_sliding_window", false, &use))) return s;
      wanted = use && sw > 0;
      break;
    }
    default:
      break;
  }
  if (!wanted) return TL_OK;
  uint8_t *pat = calloc((size_t)n, 1);
  if (!pat) return tl_fail(TL_ERR_NOMEM, "out of memory");
  const cJSON *lt = jget(c, "layer_types");
  if (lt) {
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != n) {
      free(pat);
      return tl_fail(TL_ERR_FORMAT,
                     "'%s/config.json': 'layer_types' must be an array of %lld "
                     "strings",
                     h->dir, (long long)n);
    }
    int64_t il = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt) {
      if (!cJSON_IsString(e) || !e->valuestring) {
        free(pat);
        return bad(h, "layer_types[]", "a string", e);
      }
      if (strcmp(e->valuestring, "sliding_attention") == 0) {
        pat[il] = 1;
      } else if (strcmp(e->valuestring, "full_attention") != 0) {
        free(pat);
        return tl_fail(TL_ERR_UNSUPPORTED, "'%s/config.json': layer type '%.32s' is not supported",
                       h->dir, e->valuestring);
      }
      il++;
    }
  } else if (h->f == F_GEMMA2) {
    for (int64_t il = 0; il < n; il++) pat[il] = il % 2 == 0;
  } else if (h->f == F_GEMMA3) {
    int64_t p;
    if (jget(c, "sliding_window_pattern"))
      s = cfg_int(h, c, "sliding_window_pattern", false, 6, 1, INT32_MAX, &p);
    else
      s = cfg_int(h, c, "_sliding_window_pattern", false, 6, 1, INT32_MAX, &p);
    if (s) {
      free(pat);
      return s;
    }
    for (int64_t il = 0; il < n; il++) pat[il] = (il + 1) % p != 0;
  } else if (h->f == F_QWEN2 || h->f == F_QWEN3 || h->f == F_QWEN3MOE) {
    int64_t mwl;
    if ((s = cfg_int(h, c, "max_window_layers", false, 0, 0, INT32_MAX, &mwl))) {
      free(pat);
      return s;
    }
    for (int64_t il = 0; il < n; il++) pat[il] = il >= mwl;
  } else {
    memset(pat, 1, (size_t)n);
  }
  char k[128];
  s = put_u32(h, "attention.sliding_window", sw);
  if (!s)
    s = tl_gguf_set_arr(h->g, akey(h, "attention.sliding_window_pattern", k, sizeof k),
                        TL_GGUF_BOOL, pat, (uint64_t)n);
  free(pat);
  return s;
}

static tl_status set_gemma(hf *h) {
  const cJSON *c = h->c;
  tl_status s;
  if (h->f == F_GEMMA2 || h->f == F_GEMMA3) {
    /* absent: the transformers defaults (50 / 30 for Gemma 2); null: none */
    static const char *const caps[2] = {"attn_logit_softcapping", "final_logit_softcapping"};
    for (int i = 0; i < 2; i++) {
      double v = h->f == F_GEMMA2 ? (i == 0 ? 50.0 : 30.0) : 0.0;
      if (cJSON_GetObjectItemCaseSensitive(c, caps[i]) && (s = cfg_num(h, c, caps[i], 0, NULL, &v)))
        return s;
      if (v < 0)
        return tl_fail(TL_ERR_FORMAT, "'%s/config.json': '%s' must not be negative", h->dir,
                       caps[i]);
      if (v > 0 && (s = put_f32(h, caps[i], v))) return s;
    }
    double q;
    if ((s = cfg_pos(h, c, "query_pre_attn_scalar", 256, &q)) ||
        (s = put_f32(h, "attention.scale", h->rope_attn * h->rope_attn / sqrt(q))))
      return s;
  } else if (h->rope_attn != 1.0) {
    /* a YaRN / LongRoPE cos-sin magnitude scales q and k: the scores by its square */
    if ((s = put_f32(h, "attention.scale",
                     h->rope_attn * h->rope_attn / sqrt((double)h->head_dim))))
      return s;
  }
  return TL_OK;
}

/* ---- hyper-parameters ------------------------------------------------------ */

/* Mixture of experts: llama.cpp's keys from num_local_experts (Mixtral) or
 * num_experts (Qwen3-MoE), num_experts_per_tok, moe_intermediate_size and
 * norm_topk_prob (Qwen3-MoE; Mixtral always renormalizes). Only models whose
 * every layer is sparse are taken. */
static tl_status set_experts(hf *h) {
  if (!is_moe(h->f)) return TL_OK;
  const cJSON *c = h->c;
  tl_status s;
  int64_t ne, used, ff_exp = 0, step;
  const char *nk =
      h->f == F_QWEN3MOE && jget(c, "num_experts") ? "num_experts" : "num_local_experts";
  if ((s = cfg_int(h, c, nk, true, 0, 1, 4096, &ne)) ||
      (s = cfg_int(h, c, "num_experts_per_tok", true, 0, 1, 4096, &used)))
    return s;
  if (used > ne)
    return tl_fail(TL_ERR_FORMAT,
                   "'%s/config.json': num_experts_per_tok %lld is more than the %lld experts",
                   h->dir, (long long)used, (long long)ne);
  bool norm = true;
  if (h->f == F_QWEN3MOE) {
    const cJSON *mlo = jget(c, "mlp_only_layers");
    if ((s = cfg_int(h, c, "moe_intermediate_size", true, 0, 1, 1 << 30, &ff_exp)) ||
        (s = cfg_int(h, c, "decoder_sparse_step", false, 1, 1, 1 << 16, &step)) ||
        (s = cfg_bool(h, c, "norm_topk_prob", false, &norm)))
      return s;
    if (mlo && (!cJSON_IsArray(mlo) || cJSON_GetArraySize(mlo) != 0))
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "'%s/config.json': dense layers among the experts "
                     "(mlp_only_layers) are not supported",
                     h->dir);
    if (step != 1)
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "'%s/config.json': decoder_sparse_step %lld (dense layers "
                     "among the experts) is not supported",
                     h->dir, (long long)step);
  }
  char k[128];
  if ((s = put_u32(h, "expert_count", ne)) || (s = put_u32(h, "expert_used_count", used)) ||
      (ff_exp > 0 && (s = put_u32(h, "expert_feed_forward_length", ff_exp))) ||
      (!norm && (s = tl_gguf_set_bool(h->g, akey(h, "expert_weights_norm", k, sizeof k), false))))
    return s;
  h->n_expert = ne;
  uint64_t n;
  if (!tl_mul_u64((uint64_t)h->n_layer * 3, (uint64_t)ne, &n) || n > (1u << 24))
    return tl_fail(TL_ERR_FORMAT, "'%s/config.json': %lld layers of %lld experts are too many",
                   h->dir, (long long)h->n_layer, (long long)ne);
  if (!(h->exps = tl_calloc_array((size_t)n, sizeof *h->exps)))
    return tl_fail(TL_ERR_NOMEM, "out of memory");
  return TL_OK;
}

static tl_status set_hparams(hf *h) {
  const cJSON *c = h->c;
  tl_status s;
  const int64_t big = 1 << 30;
  int64_t n_ff, ctx, vocab;
  if ((s = cfg_int(h, c, "num_hidden_layers", true, 0, 1, 1 << 16, &h->n_layer)) ||
      (s = cfg_int(h, c, "hidden_size", true, 0, 1, big, &h->n_embd)) ||
      (s = cfg_int(h, c, "num_attention_heads", true, 0, 1, 1 << 16, &h->n_head)) ||
      (s = cfg_int(h, c, "num_key_value_heads", false, h->n_head, 1, 1 << 16, &h->n_head_kv)) ||
      (s = cfg_int(h, c, "intermediate_size", h->f != F_PHI2, 4 * h->n_embd, 1, big, &n_ff)))
    return s;
  if (jget(c, "max_position_embeddings") || !jget(c, "n_positions"))
    s = cfg_int(h, c, "max_position_embeddings", false, 0, 0, big, &ctx);
  else
    s = cfg_int(h, c, "n_positions", false, 0, 0, big, &ctx);
  if (s || (s = cfg_int(h, c, "vocab_size", false, 0, 0, big, &vocab))) return s;
  if (jget(c, "head_dim")) {
    if ((s = cfg_int(h, c, "head_dim", false, 0, 1, 1 << 16, &h->head_dim))) return s;
  } else {
    if (h->n_embd % h->n_head)
      return tl_fail(TL_ERR_FORMAT,
                     "'%s/config.json': hidden_size %lld is not a multiple of "
                     "num_attention_heads %lld",
                     h->dir, (long long)h->n_embd, (long long)h->n_head);
    h->head_dim = h->n_embd / h->n_head;
  }
  if ((s = put_u32(h, "block_count", h->n_layer)) ||
      (ctx > 0 && (s = put_u32(h, "context_length", ctx))) ||
      (s = put_u32(h, "embedding_length", h->n_embd)) ||
      (s = put_u32(h, "feed_forward_length", n_ff)) ||
      (s = put_u32(h, "attention.head_count", h->n_head)) ||
      (s = put_u32(h, "attention.head_count_kv", h->n_head_kv)) ||
      (s = put_u32(h, "attention.key_length", h->head_dim)) ||
      (s = put_u32(h, "attention.value_length", h->head_dim)) ||
      (vocab > 0 && (s = put_u32(h, "vocab_size", vocab))))
    return s;
  double eps;
  if (h->f == F_PHI2) {
    if ((s = cfg_pos(h, c, "layer_norm_eps", 1e-5, &eps)) ||
        (s = put_f32(h, "attention.layer_norm_epsilon", eps)))
      return s;
  } else {
    if ((s = cfg_pos(h, c, "rms_norm_eps", h->f == F_PHI3 ? 1e-5 : 1e-6, &eps)) ||
        (s = put_f32(h, "attention.layer_norm_rms_epsilon", eps)))
      return s;
  }
  bool tied;
  if ((s = cfg_bool(h, h->root, "tie_word_embeddings", is_gemma(h->f), &tied))) return s;
  if (h->c != h->root && (s = cfg_bool(h, h->c, "tie_word_embeddings", tied, &tied))) return s;
  h->tied = tied;
  if ((s = set_rope(h)) || (s = set_sliding(h)) || (s = set_gemma(h))) return s;
  if ((s = set_experts(h))) return s;
  if (h->f == F_LLAMA || h->f == F_MISTRAL || h->f == F_MIXTRAL) {
    /* Hugging Face LLaMA weights rotate halves; llama.cpp's converter permutes
     * Q/K into adjacent pairs instead. The view keeps the HF layout. */
    if ((s = tl_gguf_set_str(h->g, "torchless.rope.type", "neox", 4))) return s;
  }
  return TL_OK;
}

/* ---- tensors ---------------------------------------------------------------- */

static const struct {
  const char *hf, *gguf;
} k_layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.dense", "attn_output"},
    {"self_attn.qkv_proj", "attn_qkv"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"self_attn.q_layernorm", "attn_q_norm"},
    {"self_attn.k_layernorm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"}, /* Gemma 2/3: post_attention_norm */
    {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"mlp.gate_up_proj", "ffn_up"},
    {"mlp.fc1", "ffn_up"},
    {"mlp.fc2", "ffn_down"},
    {"block_sparse_moe.gate", "ffn_gate_inp"}, /* Mixtral's router */
    {"mlp.gate", "ffn_gate_inp"},              /* Qwen3-MoE's router */
};

/* The GGUF name of a Hugging Face tensor; false when it has none. */
static bool map_name_f(fam f, int64_t n_layer, bool tied, const char *name, char *out, size_t cap) {
  static const struct {
    const char *from, *to;
  } prefixes[] = {{"model.language_model.", "model."},
                  {"language_model.model.", "model."},
                  {"language_model.lm_head.", "lm_head."}};
  char buf[512];
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    size_t n = strlen(prefixes[i].from);
    if (strncmp(name, prefixes[i].from, n) == 0) {
      snprintf(buf, sizeof buf, "%s%s", prefixes[i].to, name + n);
      name = buf;
      break;
    }
  }
  const char *dot = strrchr(name, '.');
  if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0)) return false;
  size_t blen = (size_t)(dot - name);
  const char *suffix = dot + 1;
#define BASE_IS(s) (blen == strlen(s) && memcmp(name, s, blen) == 0)
  if (BASE_IS("model.embed_tokens")) return snprintf(out, cap, "token_embd.%s", suffix) > 0;
  if (BASE_IS("model.norm") || BASE_IS("model.final_layernorm"))
    return snprintf(out, cap, "output_norm.%s", suffix) > 0;
  if (BASE_IS("lm_head")) return !tied && snprintf(out, cap, "output.%s", suffix) > 0;
#undef BASE_IS
  static const char lp[] = "model.layers.";
  if (strncmp(name, lp, sizeof lp - 1) != 0) return false;
  const char *p = name + sizeof lp - 1;
  int64_t il = 0;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') {
    il = il * 10 + (*p++ - '0');
    if (il >= n_layer) return false;
  }
  if (*p++ != '.' || p > dot) return false;
  size_t rlen = (size_t)(dot - p);
  for (size_t i = 0; i < sizeof k_layer_names / sizeof k_layer_names[0]; i++) {
    const char *from = k_layer_names[i].hf;
    if (strlen(from) != rlen || memcmp(p, from, rlen) != 0) continue;
    const char *to = k_layer_names[i].gguf;
    if ((f == F_GEMMA2 || f == F_GEMMA3) && strcmp(from, "post_attention_layernorm") == 0)
      to = "post_attention_norm";
    snprintf(out, cap, "blk.%lld.%s.%s", (long long)il, to, suffix);
    return true;
  }
  return false;
}

static bool map_name(const hf *h, const char *name, char *out, size_t cap) {
  return map_name_f(h->f, h->n_layer, h->tied, name, out, cap);
}

bool tl_hf_tensor_name(const char *arch, const char *hf_name, char *out, size_t cap) {
  if (!arch || !hf_name || !out || cap == 0) return false;
  size_t i = 0, nt = sizeof k_types / sizeof k_types[0];
  while (i < nt && strcmp(k_types[i].arch, arch) != 0) i++;
  if (i == nt) return false;
  char buf[256];
  if (!map_name_f(k_types[i].f, 1 << 20, false, hf_name, buf, sizeof buf)) return false;
  size_t n = strlen(buf);
  if (n >= cap) return false;
  memcpy(out, buf, n + 1);
  return true;
}

static tl_status add_tensor(hf *h, const char *gname, const tl_st_tensor *t) {
  if (t->n_dims > TL_GGUF_MAX_DIMS)
    return tl_fail(TL_ERR_UNSUPPORTED, "tensor '%s' has %u dimensions", t->name, t->n_dims);
  int64_t ne[TL_GGUF_MAX_DIMS] = {1, 1, 1, 1};
  uint32_t nd = t->n_dims ? t->n_dims : 1;
  for (uint32_t d = 0; d < t->n_dims; d++) ne[d] = t->shape[t->n_dims - 1 - d];
  if (is_gemma(h->f) && ends_with(gname, "norm.weight")) {
    /* llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w */
    float *f = tl_malloc_array(t->numel ? (size_t)t->numel : 1, sizeof *f);
    if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
    const uint8_t *src = t->data;
    for (uint64_t i = 0; i < t->numel; i++) {
      float v;
      if (t->type == TL_TYPE_F32)
        memcpy(&v, src + 4 * i, 4);
      else if (t->type == TL_TYPE_F16)
        v = tl_f16_to_f32(tl_rd_u16(src + 2 * i));
      else
        v = tl_bf16_to_f32(tl_rd_u16(src + 2 * i));
      f[i] = v + 1.0f;
    }
    tl_status s = tl_gguf_own(h->g, f, free);
    if (s) return s;
    return tl_gguf_add_tensor(h->g, gname, TL_TYPE_F32, nd, ne, f, t->numel * sizeof(float));
  }
  return tl_gguf_add_tensor(h->g, gname, t->type, nd, ne, t->data, t->nbytes);
}

/* An expert's tensor, "model.layers.L.block_sparse_moe.experts.E.w1|w3|w2.weight"
 * (Mixtral) or "model.layers.L.mlp.experts.E.gate_proj|up_proj|down_proj.weight"
 * (Qwen3-MoE): its layer, which (0 gate, 1 up, 2 down) and expert. */
static bool expert_of(const hf *h, const char *name, int64_t *il, int *which, int64_t *e) {
  static const char lp[] = "model.layers.";
  if (strncmp(name, lp, sizeof lp - 1) != 0) return false;
  const char *p = name + sizeof lp - 1;
  int64_t v[2];
  const char *mid = h->f == F_MIXTRAL ? ".block_sparse_moe.experts." : ".mlp.experts.";
  for (int i = 0; i < 2; i++) {
    if (*p < '0' || *p > '9') return false;
    v[i] = 0;
    while (*p >= '0' && *p <= '9') {
      v[i] = v[i] * 10 + (*p++ - '0');
      if (v[i] > (1 << 20)) return false;
    }
    if (i == 0) {
      if (strncmp(p, mid, strlen(mid)) != 0) return false;
      p += strlen(mid);
    }
  }
  static const char *const mixtral[3] = {".w1.weight", ".w3.weight", ".w2.weight"};
  static const char *const qwen[3] = {".gate_proj.weight", ".up_proj.weight", ".down_proj.weight"};
  for (int k = 0; k < 3; k++)
    if (!strcmp(p, h->f == F_MIXTRAL ? mixtral[k] : qwen[k])) {
      *il = v[0];
      *which = k;
      *e = v[1];
      return true;
    }
  return false;
}

/* The experts of each layer stacked as llama.cpp's converter writes them:
 * ffn_{gate,up,down}_exps of shape [cols, rows, n_expert] (a copy: the Hub
 * keeps one tensor per expert). */
static tl_status stack_experts(hf *h) {
  static const char *const names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
  for (int64_t il = 0; il < h->n_layer; il++)
    for (int k = 0; k < 3; k++) {
      const tl_st_tensor **ts = h->exps + (il * 3 + k) * h->n_expert;
      for (int64_t e = 0; e < h->n_expert; e++) {
        const tl_st_tensor *t = ts[e];
        if (!t)
          return tl_fail(TL_ERR_FORMAT, "'%s': layer %lld has no %s of expert %lld", h->dir,
                         (long long)il,
                         k == 0   ? "gate"
                         : k == 1 ? "up"
                                  : "down",
                         (long long)e);
        if (t->n_dims != 2 || t->type != ts[0]->type || t->shape[0] != ts[0]->shape[0] ||
            t->shape[1] != ts[0]->shape[1])
          return tl_fail(TL_ERR_FORMAT,
                         "'%s': tensor '%s' is not a matrix of the shape and type of expert 0's",
                         h->dir, t->name);
      }
      uint64_t bytes;
      if (!tl_mul_u64(ts[0]->nbytes, (uint64_t)h->n_expert, &bytes) || bytes > SIZE_MAX)
        return tl_fail(TL_ERR_FORMAT, "'%s': the experts of layer %lld are too large", h->dir,
                       (long long)il);
      uint8_t *buf = malloc(bytes ? (size_t)bytes : 1);
      if (!buf)
        return tl_fail(TL_ERR_NOMEM, "out of memory for the experts of layer %lld", (long long)il);
      tl_status s = tl_gguf_own(h->g, buf, free);
      if (s) return s;
      for (int64_t e = 0; e < h->n_expert; e++)
        memcpy(buf + (size_t)e * (size_t)ts[0]->nbytes, ts[e]->data, (size_t)ts[0]->nbytes);
      int64_t ne[TL_GGUF_MAX_DIMS] = {(int64_t)ts[0]->shape[1], (int64_t)ts[0]->shape[0],
                                      h->n_expert, 1};
      char gname[128];
      snprintf(gname, sizeof gname, "blk.%lld.%s.weight", (long long)il, names[k]);
      if ((s = tl_gguf_add_tensor(h->g, gname, ts[0]->type, 3, ne, buf, bytes))) return s;
    }
  return TL_OK;
}

static tl_status add_hf_tensor(hf *h, const tl_st_tensor *t) {
  int64_t il, e;
  int which;
  if (h->exps && expert_of(h, t->name, &il, &which, &e)) {
    if (il >= h->n_layer || e >= h->n_expert)
      return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%s' is beyond %lld layers of %lld experts",
                     h->dir, t->name, (long long)h->n_layer, (long long)h->n_expert);
    const tl_st_tensor **slot = &h->exps[(il * 3 + which) * h->n_expert + e];
    if (*slot) return tl_fail(TL_ERR_FORMAT, "'%s': tensor '%s' appears twice", h->dir, t->name);
    *slot = t;
    return TL_OK;
  }
  char gname[256];
  if (!map_name(h, t->name, gname, sizeof gname)) {
    tl_log(TL_LOG_DEBUG, "'%s': ignoring tensor '%s'", h->dir, t->name);
    return TL_OK;
  }
  tl_status s = add_tensor(h, gname, t);
  if (s) tl_fail_prefix(s, "'%s'", h->dir);
  return s;
}

static void st_free_void(void *p) {
  tl_st_free(p);
}

/* Open a safetensors file whose lifetime the view takes over. */
static tl_status open_owned(hf *h, const char *path, tl_st_file **out) {
  tl_status s = tl_st_open(path, out);
  if (s) return s;
  return tl_gguf_own_map(h->g, *out, st_free_void, &(*out)->map);
}

static tl_status read_json(const char *path, const char *what, cJSON **out) {
  *out = NULL;
  tl_mmap m;
  tl_status s = tl_mmap_open(path, &m);
  if (s) return s;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts((const char *)m.data, m.size, &end, false);
  size_t at = j || !end ? 0 : (size_t)(end - (const char *)m.data);
  tl_mmap_close(&m);
  if (!j) return tl_fail(TL_ERR_FORMAT, "'%s' is not valid JSON (near byte %zu)", what, at);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return tl_fail(TL_ERR_FORMAT, "'%s' is not a JSON object", what);
  }
  *out = j;
  return TL_OK;
}

static bool shard_name_ok(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n < 256 && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 &&
         strcmp(s, "..") != 0;
}

static tl_status load_sharded(hf *h, const char *index_path) {
  cJSON *idx;
  tl_status s = read_json(index_path, index_path, &idx);
  if (s) return s;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
  const char **names = NULL;
  tl_st_file **files = NULL;
  size_t n_files = 0;
  if (!cJSON_IsObject(wm)) {
    s = tl_fail(TL_ERR_FORMAT, "'%s' has no 'weight_map' object", index_path);
    goto done;
  }
  size_t n = (size_t)cJSON_GetArraySize(wm);
  names = tl_calloc_array(n ? n : 1, sizeof *names);
  files = tl_calloc_array(n ? n : 1, sizeof *files);
  if (!names || !files) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
    goto done;
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, wm) {
    if (!cJSON_IsString(e) || !e->valuestring || !e->string) {
      s = tl_fail(TL_ERR_FORMAT, "'%s': weight_map['%s'] is not a file name", index_path,
                  e->string ? e->string : "");
      goto done;
    }
    const char *file = e->valuestring;
    if (!shard_name_ok(file)) {
      s = tl_fail(TL_ERR_FORMAT, "'%s': shard name '%.64s' is not a plain file name", index_path,
                  file);
      goto done;
    }
    size_t k = 0;
    while (k < n_files && strcmp(names[k], file) != 0) k++;
    if (k == n_files) {
      char *path = join(h->dir, file);
      if (!path) {
        s = tl_fail(TL_ERR_NOMEM, "out of memory");
        goto done;
      }
      s = open_owned(h, path, &files[k]);
      free(path);
      if (s) {
        tl_fail_prefix(s, "shard of '%s'", index_path);
        goto done;
      }
      names[k] = file;
      n_files++;
    }
    const tl_st_tensor *t = tl_st_find(files[k], e->string);
    if (!t) {
      s = tl_fail(TL_ERR_FORMAT, "'%s' places tensor '%s' in '%s', which does not hold it",
                  index_path, e->string, file);
      goto done;
    }
    if ((s = add_hf_tensor(h, t))) goto done;
  }
done:
  free(names);
  free(files);
  cJSON_Delete(idx);
  return s;
}

static tl_status load_weights(hf *h) {
  char *single = join(h->dir, "model.safetensors");
  char *index = join(h->dir, "model.safetensors.index.json");
  tl_status s = TL_OK;
  if (!single || !index) {
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
  } else if (is_file(single)) {
    tl_st_file *st;
    if (!(s = open_owned(h, single, &st)))
      for (uint64_t i = 0; i < st->n_tensors && !s; i++) s = add_hf_tensor(h, &st->tensors[i]);
  } else if (is_file(index)) {
    s = load_sharded(h, index);
  } else {
    s = tl_fail(TL_ERR_IO, "'%s' has no model.safetensors or model.safetensors.index.json", h->dir);
  }
  free(single);
  free(index);
  if (!s && h->exps) s = stack_experts(h);
  return s;
}

/* ---- the folder -------------------------------------------------------------- */

static tl_status build(hf *h) {
  const char *mt;
  tl_status s = cfg_str(h, h->root, "model_type", &mt);
  if (s) return s;
  if (!mt) return tl_fail(TL_ERR_FORMAT, "'%s/config.json' has no 'model_type'", h->dir);
  size_t i = 0, nt = sizeof k_types / sizeof k_types[0];
  while (i < nt && strcmp(k_types[i].model_type, mt) != 0) i++;
  if (i == nt)
    return tl_fail(TL_ERR_UNSUPPORTED, "'%s': model_type '%.64s' is not supported", h->dir, mt);
  h->arch = k_types[i].arch;
  h->f = k_types[i].f;
  h->c = h->root;
  if (strcmp(mt, "gemma3") == 0) { /* multimodal Gemma 3: its text model */
    const cJSON *tc;
    if ((s = cfg_obj(h, h->root, "text_config", &tc))) return s;
    if (tc) h->c = tc;
  }
  if ((s = tl_gguf_set_str(h->g, "general.architecture", h->arch, strlen(h->arch))) ||
      (s = set_hparams(h)) || (s = load_weights(h)))
    return s;
  s = tl_hf_tokenizer_load(h->g, h->dir);
  if (s == TL_ERR_UNSUPPORTED) {
    tl_log(TL_LOG_WARN, "%s (the model loads without a tokenizer)", tl_last_error());
    tl_clear_error();
    s = TL_OK;
  }
  return s;
}

tl_status tl_hf_open(const char *dir, tl_gguf **out) {
  if (!out) return tl_fail(TL_ERR_INVALID_ARG, "tl_hf_open: out is NULL");
  *out = NULL;
  if (!dir) return tl_fail(TL_ERR_INVALID_ARG, "tl_hf_open: dir is NULL");
  if (!tl_hf_is_folder(dir)) return tl_fail(TL_ERR_IO, "'%s' is not a directory", dir);
  char *cfg_path = join(dir, "config.json");
  if (!cfg_path) return tl_fail(TL_ERR_NOMEM, "out of memory");
  if (!is_file(cfg_path)) {
    free(cfg_path);
    return tl_fail(TL_ERR_FORMAT, "'%s' has no config.json", dir);
  }
  hf h = {.dir = dir, .rope_attn = 1.0};
  cJSON *root;
  tl_status s = read_json(cfg_path, cfg_path, &root);
  free(cfg_path);
  if (s) return s;
  h.root = root;
  if (!(s = tl_gguf_new_virtual(&h.g))) s = build(&h);
  cJSON_Delete(root);
  free(h.exps);
  if (s) {
    tl_gguf_free(h.g);
    return s;
  }
  *out = h.g;
  return TL_OK;
}
