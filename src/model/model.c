/* Loading a model from a GGUF file: hyper-parameters, weights mapped to
 * their slots with every shape and type checked, and the tokenizer
 * (tl_model_load_as_is; tl_model_load, in convert/load.c, quantizes first
 * when asked). */
#include "model/model.h"

#include "format/hf.h"
#include "format/native.h"
#include "model/load.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

tl_model_params tl_model_default_params(void) {
  tl_model_params p = {
      .vocab_only = false, .kv_overrides = NULL, .quant_ftype = -1, .use_mlock = false};
  return p;
}

/* "KEY=TYPE:VALUE" onto the metadata. */
static tl_status apply_override(tl_gguf *g, const char *spec) {
  const char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
  if (!eq || !colon || eq == spec || eq - spec > 200)
    return tl_fail(TL_ERR_INVALID_ARG, "override '%s' is not KEY=TYPE:VALUE", spec);
  char key[256];
  memcpy(key, spec, (size_t)(eq - spec));
  key[eq - spec] = 0;
  size_t tl = (size_t)(colon - eq - 1);
  const char *val = colon + 1;
  char *end;
  if (tl == 3 && !strncmp(eq + 1, "int", 3)) {
    long long v = strtoll(val, &end, 10);
    if (end == val || *end || v < INT32_MIN || v > UINT32_MAX)
      return tl_fail(TL_ERR_INVALID_ARG, "override '%s': bad integer", spec);
    return v < 0 ? tl_gguf_set_i32(g, key, (int32_t)v) : tl_gguf_set_u32(g, key, (uint32_t)v);
  }
  if (tl == 5 && !strncmp(eq + 1, "float", 5)) {
    float v = strtof(val, &end);
    if (end == val || *end || !isfinite(v))
      return tl_fail(TL_ERR_INVALID_ARG, "override '%s': bad number", spec);
    return tl_gguf_set_f32(g, key, v);
  }
  if (tl == 4 && !strncmp(eq + 1, "bool", 4)) {
    if (strcmp(val, "true") && strcmp(val, "false"))
      return tl_fail(TL_ERR_INVALID_ARG, "override '%s': bool must be true or false", spec);
    return tl_gguf_set_bool(g, key, !strcmp(val, "true"));
  }
  if (tl == 3 && !strncmp(eq + 1, "str", 3)) return tl_gguf_set_str(g, key, val, strlen(val));
  return tl_fail(TL_ERR_INVALID_ARG, "override '%s': type must be int, float, bool or str", spec);
}

const tl_vocab *tl_model_vocab(const tl_model *m) {
  return m->vocab;
}

/* "<arch>.<suffix>" */
static const char *akey(const tl_model *m, const char *suffix, char *buf, size_t cap) {
  snprintf(buf, cap, "%s.%s", m->arch_name, suffix);
  return buf;
}

static tl_status get_u32(const tl_model *m, const char *suffix, bool required, int32_t def,
                         int32_t *out) {
  char key[256];
  akey(m, suffix, key, sizeof key);
  uint32_t v;
  if (!tl_gguf_get(m->gguf, key)) {
    if (required) return tl_fail(TL_ERR_FORMAT, "missing metadata '%s'", key);
    *out = def;
    return TL_OK;
  }
  if (!tl_gguf_get_u32(m->gguf, key, &v) || v > (1u << 30))
    return tl_fail(TL_ERR_FORMAT, "metadata '%s' is not a valid count", key);
  *out = (int32_t)v;
  return TL_OK;
}

static tl_status get_f32(const tl_model *m, const char *suffix, float def, float *out) {
  char key[256];
  akey(m, suffix, key, sizeof key);
  if (!tl_gguf_get(m->gguf, key)) {
    *out = def;
    return TL_OK;
  }
  if (!tl_gguf_get_f32(m->gguf, key, out) || !isfinite(*out))
    return tl_fail(TL_ERR_FORMAT, "metadata '%s' is not a finite number", key);
  return TL_OK;
}

static tl_status load_hparams(tl_model *m) {
  tl_hparams *hp = &m->hp;
  tl_status s;
  if ((s = get_u32(m, "block_count", true, 0, &hp->n_layer)) ||
      (s = get_u32(m, "embedding_length", true, 0, &hp->n_embd)) ||
      (s = get_u32(m, "feed_forward_length", false, 0, &hp->n_ff)) ||
      (s = get_u32(m, "attention.head_count", true, 0, &hp->n_head)) ||
      (s = get_u32(m, "context_length", false, 4096, &hp->n_ctx_train)))
    return s;
  if (hp->n_layer < 1 || hp->n_embd < 1 || hp->n_head < 1 || hp->n_ctx_train < 1 ||
      hp->n_layer > 4096 || hp->n_head > 4096)
    return tl_fail(TL_ERR_FORMAT,
                   "hyper-parameters out of range (layers %d, embd %d, heads %d, "
                   "ctx %d)",
                   hp->n_layer, hp->n_embd, hp->n_head, hp->n_ctx_train);
  if ((s = get_u32(m, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv))) return s;
  if (hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv != 0)
    return tl_fail(TL_ERR_FORMAT, "%d query heads cannot share %d kv heads", hp->n_head,
                   hp->n_head_kv);
  int32_t def_hd = hp->n_embd / hp->n_head, vlen;
  if ((s = get_u32(m, "attention.key_length", false, def_hd, &hp->head_dim)) ||
      (s = get_u32(m, "attention.value_length", false, hp->head_dim, &vlen)))
    return s;
  if (hp->head_dim < 2 || hp->head_dim % 2 || hp->head_dim > 4096 || vlen != hp->head_dim)
    return tl_fail(TL_ERR_UNSUPPORTED, "head size %d (value size %d) is not supported",
                   hp->head_dim, vlen);
  if ((s = get_u32(m, "rope.dimension_count", false, hp->head_dim, &hp->n_rot))) return s;
  if (hp->n_rot < 2 || hp->n_rot % 2 || hp->n_rot > hp->head_dim)
    return tl_fail(TL_ERR_FORMAT, "rope dimension %d is invalid for head size %d", hp->n_rot,
                   hp->head_dim);
  float eps_rms, eps_ln;
  if ((s = get_f32(m, "attention.layer_norm_rms_epsilon", 1e-5f, &eps_rms)) ||
      (s = get_f32(m, "attention.layer_norm_epsilon", 1e-5f, &eps_ln)) ||
      (s = get_f32(m, "rope.freq_base", 10000.0f, &hp->rope_theta)) ||
      (s = get_f32(m, "rope.freq_base_swa", 10000.0f, &hp->rope_theta_swa)) ||
      (s = get_f32(m, "attn_logit_softcapping", 0.0f, &hp->attn_softcap)) ||
      (s = get_f32(m, "final_logit_softcapping", 0.0f, &hp->final_softcap)))
    return s;
  hp->norm_eps = m->arch->norm == TL_NORM_LAYER ? eps_ln : eps_rms;
  if (!(hp->norm_eps > 0) || !(hp->rope_theta > 0) || !(hp->rope_theta_swa > 0) ||
      hp->attn_softcap < 0 || hp->final_softcap < 0)
    return tl_fail(TL_ERR_FORMAT, "norm epsilon, rope bases and soft-caps must be positive");
  /* Query scale: the file's, else 1/sqrt(head_dim); llama.cpp's GGUF files of
   * Gemma 2/3 27B carry none and use 1/sqrt(hidden/heads), as we do. */
  float def_scale = 1.0f / sqrtf((float)hp->head_dim);
  if (m->arch->scale_by_embd_layers > 0 && hp->n_layer == m->arch->scale_by_embd_layers)
    def_scale = 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head);
  if ((s = get_f32(m, "attention.scale", def_scale, &hp->attn_scale))) return s;
  if (!(hp->attn_scale > 0)) return tl_fail(TL_ERR_FORMAT, "attention scale must be positive");
  hp->rope_freq_scale = 1.0f;
  char key[256];
  tl_str stype;
  if (tl_gguf_get_str(m->gguf, akey(m, "rope.scaling.type", key, sizeof key), &stype) &&
      !tl_str_eq(stype, "none")) {
    bool yarn = tl_str_eq(stype, "yarn");
    if (!yarn && !tl_str_eq(stype, "linear"))
      return tl_fail(TL_ERR_UNSUPPORTED, "rope scaling '%.*s' is not supported",
                     (int)(stype.len > 64 ? 64 : stype.len), stype.ptr);
    float factor;
    if ((s = get_f32(m, "rope.scaling.factor", 1.0f, &factor))) return s;
    if (!(factor > 0)) return tl_fail(TL_ERR_FORMAT, "rope scaling factor must be positive");
    if (!yarn) {
      hp->rope_freq_scale = 1.0f / factor;
    } else {
      /* llama.cpp's keys and defaults (ext_factor < 0 means 1 for YaRN) */
      hp->yarn_factor = factor;
      if ((s = get_u32(m, "rope.scaling.original_context_length", true, 0, &hp->yarn_orig_ctx)) ||
          (s = get_f32(m, "rope.scaling.yarn_ext_factor", -1.0f, &hp->yarn_ext)) ||
          (s = get_f32(m, "rope.scaling.attn_factor", 1.0f, &hp->yarn_attn)) ||
          (s = get_f32(m, "rope.scaling.yarn_beta_fast", 32.0f, &hp->yarn_beta_fast)) ||
          (s = get_f32(m, "rope.scaling.yarn_beta_slow", 1.0f, &hp->yarn_beta_slow)))
        return s;
      if (hp->yarn_ext < 0) hp->yarn_ext = 1.0f;
      if (hp->yarn_orig_ctx <= 0 || !(hp->yarn_attn > 0) || !(hp->yarn_beta_fast > 0) ||
          !(hp->yarn_beta_slow > 0) || !(hp->yarn_ext <= 1))
        return tl_fail(TL_ERR_FORMAT,
                       "yarn rope scaling needs original_context_length, attn_factor and betas "
                       "> 0 and ext_factor <= 1");
    }
  }
  if (hp->yarn_factor == 0) {
    /* ggml's cos-sin magnitude outside YaRN (LongRoPE): the scores by its square */
    float af;
    if ((s = get_f32(m, "rope.scaling.attn_factor", 1.0f, &af))) return s;
    if (!(af > 0)) return tl_fail(TL_ERR_FORMAT, "rope.scaling.attn_factor must be positive");
    hp->attn_scale *= af * af;
  }
  hp->rope_kind = m->arch->rope;
  tl_str rt;
  if (tl_gguf_get_str(m->gguf, "torchless.rope.type", &rt)) {
    if (tl_str_eq(rt, "neox"))
      hp->rope_kind = TL_ROPE_NEOX;
    else if (tl_str_eq(rt, "norm"))
      hp->rope_kind = TL_ROPE_NORM;
    else
      return tl_fail(TL_ERR_FORMAT, "unknown torchless.rope.type");
  }
  int32_t window;
  if ((s = get_u32(m, "attention.sliding_window", false, 0, &window))) return s;
  hp->swa_window = window;
  /* mixture of experts */
  if ((s = get_u32(m, "expert_count", false, 0, &hp->n_expert)) ||
      (s = get_u32(m, "expert_used_count", false, 0, &hp->n_expert_used)))
    return s;
  if (hp->n_expert > 0 || hp->n_expert_used > 0) {
    if (hp->n_expert < 1 || hp->n_expert > 4096 || hp->n_expert_used < 1 ||
        hp->n_expert_used > hp->n_expert)
      return tl_fail(TL_ERR_FORMAT,
                     "%s.expert_used_count %d and expert_count %d: the experts used per token "
                     "must be 1 to expert_count (at most 4096)",
                     m->arch_name, hp->n_expert_used, hp->n_expert);
    hp->expert_norm = m->arch->moe_norm;
    if (tl_gguf_get(m->gguf, akey(m, "expert_weights_norm", key, sizeof key)) &&
        !tl_gguf_get_bool(m->gguf, key, &hp->expert_norm))
      return tl_fail(TL_ERR_FORMAT, "metadata '%s' is not a bool", key);
  }
  return TL_OK;
}

/* Remember an owned vector so tl_model_free releases it. */
static tl_status own(tl_model *m, float *p) {
  if (m->n_owned == m->cap_owned) {
    int cap = m->cap_owned ? m->cap_owned * 2 : 64;
    float **n = realloc(m->owned, (size_t)cap * sizeof *n);
    if (!n) {
      free(p);
      return tl_fail(TL_ERR_NOMEM, "out of memory");
    }
    m->owned = n;
    m->cap_owned = cap;
  }
  m->owned[m->n_owned++] = p;
  return TL_OK;
}

/* YaRN as ggml's rope_yarn computes it: each frequency blended between
 * interpolation (divided by factor) and extrapolation by ext_factor times a
 * ramp over the correction dims of beta_fast / beta_slow; folded into
 * per-dimension divisors (times any rope_freqs.weight) and the cos-sin
 * magnitude attn_factor * (1 + 0.1 ln factor), squared, into the query scale. */
static tl_status yarn_fold(tl_model *m) {
  tl_hparams *hp = &m->hp;
  const double pi = 3.14159265358979323846;
  double dim = hp->n_rot, base = hp->rope_theta, orig = hp->yarn_orig_ctx;
  double lo = floor(dim * log(orig / (hp->yarn_beta_fast * 2 * pi)) / (2 * log(base)));
  double hi = ceil(dim * log(orig / (hp->yarn_beta_slow * 2 * pi)) / (2 * log(base)));
  if (lo < 0) lo = 0;
  if (hi > dim - 1) hi = dim - 1;
  int n = hp->n_rot / 2;
  float *f = tl_malloc_array((size_t)n, sizeof *f);
  if (!f) return tl_fail(TL_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    double y = ((double)i - lo) / (hi - lo > 0.001 ? hi - lo : 0.001);
    double mix = (1.0 - (y < 0 ? 0 : y > 1 ? 1 : y)) * hp->yarn_ext;
    double div = 1.0 / ((1.0 - mix) / hp->yarn_factor + mix);
    f[i] = (float)(div * (hp->rope_freq_factors ? hp->rope_freq_factors[i] : 1.0));
  }
  tl_status s = own(m, f);
  if (s) return s;
  hp->rope_freq_factors = f;
  double ms = hp->yarn_attn * (hp->yarn_ext != 0 ? 1.0 + 0.1 * log(hp->yarn_factor) : 1.0);
  hp->attn_scale = (float)(hp->attn_scale * ms * ms);
  return TL_OK;
}

/* Bind a tensor by name, checking its shape (ne0 = row length). */
static tl_status bind(tl_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                      const tl_gguf_tensor **out) {
  const tl_gguf_tensor *t = tl_gguf_find_tensor(m->gguf, name);
  *out = t;
  if (!t) return required ? tl_fail(TL_ERR_FORMAT, "missing tensor '%s'", name) : TL_OK;
  int64_t want[4] = {ne0, ne1, 1, 1};
  for (int d = 0; d < 4; d++)
    if (t->ne[d] != want[d])
      return tl_fail(TL_ERR_FORMAT,
                     "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                     (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                     (long long)t->ne[3], (long long)ne0, (long long)ne1);
  return TL_OK;
}

static tl_status bind_matrix(tl_model *m, const char *name, int64_t cols, int64_t rows,
                             bool required, tl_weight *w) {
  const tl_gguf_tensor *t;
  tl_status s = bind(m, name, cols, rows, required, &t);
  if (s || !t) return s;
  if (t->type == TL_TYPE_I8) {
    /* Torchless .bin int8: the scales are the F32 tensor "<name>.scale" */
    char sn[300];
    snprintf(sn, sizeof sn, "%s.scale", name);
    const tl_gguf_tensor *st = tl_gguf_find_tensor(m->gguf, sn);
    if (!st)
      return tl_fail(TL_ERR_UNSUPPORTED,
                     "tensor '%s' has type I8 without scales ('%s'), which "
                     "is not supported",
                     name, sn);
    if (st->type != TL_TYPE_F32)
      return tl_fail(TL_ERR_FORMAT, "the scales '%s' of int8 tensor '%s' are not F32", sn, name);
    if (cols % TL_I8S_GROUP || st->nbytes != (uint64_t)rows * (uint64_t)(cols / TL_I8S_GROUP) * 4)
      return tl_fail(TL_ERR_FORMAT,
                     "int8 tensor '%s': %lld columns and %llu bytes of scales do "
                     "not make groups of %d",
                     name, (long long)cols, (unsigned long long)st->nbytes, TL_I8S_GROUP);
    if ((uintptr_t)st->data % sizeof(float))
      return tl_fail(TL_ERR_FORMAT, "the scales of '%s' are not aligned", name);
    const float *sc = st->data;
    for (uint64_t i = 0; i < st->nbytes / 4; i++)
      if (!(sc[i] > 0) || !isfinite(sc[i]))
        return tl_fail(TL_ERR_FORMAT,
                       "int8 tensor '%s' has a scale that is not a positive "
                       "finite number",
                       name);
    *w = (tl_weight){.type = t->type,
                     .rows = rows,
                     .cols = cols,
                     .data = t->data,
                     .row_bytes = (size_t)cols,
                     .scales = sc};
    m->n_params += (uint64_t)rows * (uint64_t)cols;
    m->weight_bytes += t->nbytes + st->nbytes;
    return TL_OK;
  }
  if (!tl_backend_type_supported(t->type))
    return tl_fail(TL_ERR_UNSUPPORTED, "tensor '%s' has type %s, which is not supported yet", name,
                   tl_type_name(t->type));
  w->type = t->type;
  w->rows = rows;
  w->cols = cols;
  w->data = t->data;
  uint64_t rb;
  tl_type_row_size(t->type, cols, &rb); /* validated by the parser */
  w->row_bytes = (size_t)rb;
  m->n_params += (uint64_t)rows * (uint64_t)cols;
  m->weight_bytes += t->nbytes;
  return TL_OK;
}

/* Stacked experts: a 3-D tensor [cols, rows, n_expert] as one weight of
 * n_expert * rows rows (expert e's rows from e * rows). */
static tl_status bind_experts(tl_model *m, const char *name, int64_t cols, int64_t rows,
                              int64_t n_expert, tl_weight *w) {
  const tl_gguf_tensor *t = tl_gguf_find_tensor(m->gguf, name);
  if (!t) return tl_fail(TL_ERR_FORMAT, "missing tensor '%s'", name);
  int64_t want[4] = {cols, rows, n_expert, 1};
  for (int d = 0; d < 4; d++)
    if (t->ne[d] != want[d])
      return tl_fail(TL_ERR_FORMAT,
                     "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld]",
                     name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                     (long long)t->ne[3], (long long)cols, (long long)rows, (long long)n_expert);
  if (t->type == TL_TYPE_I8 || !tl_backend_type_supported(t->type))
    return tl_fail(TL_ERR_UNSUPPORTED,
                   "tensor '%s' has type %s, which is not supported for experts", name,
                   tl_type_name(t->type));
  uint64_t rb;
  tl_type_row_size(t->type, cols, &rb); /* validated by the parser */
  *w = (tl_weight){.type = t->type,
                   .rows = rows * n_expert,
                   .cols = cols,
                   .row_bytes = (size_t)rb,
                   .data = t->data};
  m->n_params += (uint64_t)(rows * n_expert) * (uint64_t)cols;
  m->weight_bytes += t->nbytes;
  return TL_OK;
}

/* Rows [r0, r0 + n) of a weight, as a weight of its own (fused tensors). */
static tl_weight row_range(const tl_weight *w, int64_t r0, int64_t n) {
  tl_weight v = *w;
  v.rows = n;
  v.data = (const uint8_t *)w->data + (size_t)r0 * w->row_bytes;
  if (w->scales) v.scales = w->scales + r0 * (w->cols / TL_I8S_GROUP);
  return v;
}

/* A vector (norm weight, bias) converted to an owned float array. */
static tl_status bind_vector(tl_model *m, const char *name, int64_t n, bool required, float **out) {
  const tl_gguf_tensor *t;
  *out = NULL;
  tl_status s = bind(m, name, n, 1, required, &t);
  if (s || !t) return s;
  const tl_type_info *ti = tl_type_get(t->type);
  if (!ti->to_float || n % ti->blck)
    return tl_fail(TL_ERR_UNSUPPORTED, "tensor '%s' has type %s, which is not supported yet", name,
                   ti->name);
  float *v = tl_malloc_array((size_t)n, sizeof(float));
  if (!v || (s = own(m, v))) return v ? s : tl_fail(TL_ERR_NOMEM, "out of memory");
  ti->to_float(t->data, v, n);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return tl_fail(TL_ERR_FORMAT, "tensor '%s' holds a non-finite value", name);
  *out = v;
  m->n_params += (uint64_t)n;
  m->weight_bytes += t->nbytes;
  return TL_OK;
}

/* Which layers use sliding-window attention. */
static tl_status sliding_layers(tl_model *m) {
  tl_hparams *hp = &m->hp;
  char key[256];
  const tl_gguf_value *pat =
      tl_gguf_get(m->gguf, akey(m, "attention.sliding_window_pattern", key, sizeof key));
  for (int il = 0; il < hp->n_layer; il++) {
    bool swa = false;
    if (pat && pat->type == TL_GGUF_ARRAY && pat->v.arr.elem_type == TL_GGUF_BOOL) {
      if (pat->v.arr.n != (uint64_t)hp->n_layer)
        return tl_fail(TL_ERR_FORMAT, "%s has %llu entries for %d layers", key,
                       (unsigned long long)pat->v.arr.n, hp->n_layer);
      swa = pat->v.arr.data[il] != 0;
    } else if (pat) {
      uint32_t period;
      if (!tl_gguf_get_u32(m->gguf, key, &period) || period == 0)
        return tl_fail(TL_ERR_FORMAT, "%s must be a positive period or an array", key);
      swa = (uint32_t)(il + 1) % period != 0;
    } else if (m->arch->swa_period > 0) {
      swa = (il + 1) % m->arch->swa_period != 0;
    } else {
      swa = hp->swa_window > 0; /* Mistral-style: every layer */
    }
    if (swa && hp->swa_window <= 0)
      return tl_fail(TL_ERR_FORMAT, "layer %d uses sliding attention but no window is given", il);
    m->layers[il].window = swa ? hp->swa_window : 0;
    m->layers[il].rope_theta = swa && m->arch->swa_rope_base ? hp->rope_theta_swa : hp->rope_theta;
  }
  return TL_OK;
}

static tl_status load_weights(tl_model *m) {
  tl_hparams *hp = &m->hp;
  const tl_arch *A = m->arch;
  tl_status s;
  const tl_gguf_tensor *emb = tl_gguf_find_tensor(m->gguf, "token_embd.weight");
  if (!emb) return tl_fail(TL_ERR_FORMAT, "missing tensor 'token_embd.weight'");
  if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
    return tl_fail(TL_ERR_FORMAT, "token_embd.weight has an invalid vocabulary size");
  hp->n_vocab = (int32_t)emb->ne[1];
  /* The MLP width comes from the tensors (some converters write a wrong
   * feed_forward_length, e.g. llama.cpp's for Phi-2). */
  const bool moe = hp->n_expert > 0;
  const char *down_name = moe ? "blk.0.ffn_down_exps.weight" : "blk.0.ffn_down.weight";
  const tl_gguf_tensor *down = tl_gguf_find_tensor(m->gguf, down_name);
  if (!down) return tl_fail(TL_ERR_FORMAT, "missing tensor '%s'", down_name);
  if (down->ne[0] < 1 || down->ne[0] > (1 << 24))
    return tl_fail(TL_ERR_FORMAT, "%s has an invalid shape", down_name);
  if (moe) {
    /* the experts' width: the tensors', which the metadata must not contradict */
    int32_t ffe;
    if ((s = get_u32(m, "expert_feed_forward_length", false, (int32_t)down->ne[0], &ffe))) return s;
    if (ffe != down->ne[0])
      return tl_fail(TL_ERR_FORMAT,
                     "%s.expert_feed_forward_length says %d but the experts are %lld wide",
                     m->arch_name, ffe, (long long)down->ne[0]);
    hp->n_ff_exp = ffe;
    hp->n_ff = ffe; /* no dense MLP: only the experts' width */
  } else {
    if (hp->n_ff != 0 && hp->n_ff != down->ne[0])
      tl_log(TL_LOG_WARN, "feed_forward_length says %d but the tensors are %lld wide; using %lld",
             hp->n_ff, (long long)down->ne[0], (long long)down->ne[0]);
    hp->n_ff = (int32_t)down->ne[0];
  }
  int32_t d = hp->n_embd, qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
  int32_t ff = hp->n_ff;
  if ((s = bind_matrix(m, "token_embd.weight", d, hp->n_vocab, true, &m->tok_embd))) return s;
  if (!m->tok_embd.scales && !tl_type_get(m->tok_embd.type)->to_float)
    return tl_fail(TL_ERR_UNSUPPORTED, "embedding type %s is not supported",
                   tl_type_name(m->tok_embd.type));
  bool ln = A->norm == TL_NORM_LAYER;
  if ((s = bind_vector(m, "output_norm.weight", d, true, &m->output_norm)) ||
      (s = bind_vector(m, "output_norm.bias", d, ln, &m->output_norm_b)) ||
      (s = bind_matrix(m, "output.weight", d, hp->n_vocab, false, &m->output)) ||
      (s = bind_vector(m, "output.bias", hp->n_vocab, false, &m->output_b)))
    return s;
  if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
  if ((s = bind_vector(m, "rope_freqs.weight", hp->n_rot / 2, false, &hp->rope_freq_factors)))
    return s;
  if (hp->rope_freq_factors)
    for (int i = 0; i < hp->n_rot / 2; i++)
      if (!(hp->rope_freq_factors[i] > 0))
        return tl_fail(TL_ERR_FORMAT, "rope_freqs.weight must be positive");
  /* LongRoPE (llama.cpp's Phi-3 tensors): the long factors at every position,
   * as transformers uses them for any sequence longer than the original context */
  float *lf = NULL, *sf = NULL;
  if ((s = bind_vector(m, "rope_factors_long.weight", hp->n_rot / 2, false, &lf)) ||
      (s = bind_vector(m, "rope_factors_short.weight", hp->n_rot / 2, false, &sf)))
    return s;
  if (lf) {
    if (hp->rope_freq_factors)
      return tl_fail(TL_ERR_FORMAT, "both rope_freqs.weight and rope_factors_long.weight");
    for (int i = 0; i < hp->n_rot / 2; i++)
      if (!(lf[i] > 0)) return tl_fail(TL_ERR_FORMAT, "rope_factors_long.weight must be positive");
    hp->rope_freq_factors = lf;
  }
  if (hp->yarn_factor > 0 && (s = yarn_fold(m))) return s;
  m->layers = tl_calloc_array((size_t)hp->n_layer, sizeof(tl_layer));
  if (!m->layers) return tl_fail(TL_ERR_NOMEM, "out of memory");
  for (int il = 0; il < hp->n_layer; il++) {
    tl_layer *L = &m->layers[il];
    char n[128];
#define NAME(x) (snprintf(n, sizeof n, "blk.%d." x, il), n)
    if ((s = bind_vector(m, NAME("attn_norm.weight"), d, true, &L->attn_norm)) ||
        (s = bind_vector(m, NAME("attn_norm.bias"), d, ln, &L->attn_norm_b)))
      return s;
    if (tl_gguf_find_tensor(m->gguf, NAME("attn_qkv.weight"))) {
      tl_weight qkv = {0};
      float *b = NULL;
      if ((s = bind_matrix(m, n, d, qd + 2 * kvd, true, &qkv)) ||
          (s = bind_vector(m, NAME("attn_qkv.bias"), qd + 2 * kvd, false, &b)))
        return s;
      L->wq = row_range(&qkv, 0, qd);
      L->wk = row_range(&qkv, qd, kvd);
      L->wv = row_range(&qkv, qd + kvd, kvd);
      if (b) {
        L->bq = b;
        L->bk = b + qd;
        L->bv = b + qd + kvd;
      }
    } else if ((s = bind_matrix(m, NAME("attn_q.weight"), d, qd, true, &L->wq)) ||
               (s = bind_matrix(m, NAME("attn_k.weight"), d, kvd, true, &L->wk)) ||
               (s = bind_matrix(m, NAME("attn_v.weight"), d, kvd, true, &L->wv)) ||
               (s = bind_vector(m, NAME("attn_q.bias"), qd, false, &L->bq)) ||
               (s = bind_vector(m, NAME("attn_k.bias"), kvd, false, &L->bk)) ||
               (s = bind_vector(m, NAME("attn_v.bias"), kvd, false, &L->bv))) {
      return s;
    }
    if ((s = bind_vector(m, NAME("attn_q_norm.weight"), hp->head_dim, false, &L->q_norm)) ||
        (s = bind_vector(m, NAME("attn_k_norm.weight"), hp->head_dim, false, &L->k_norm)) ||
        (s = bind_matrix(m, NAME("attn_output.weight"), qd, d, true, &L->wo)) ||
        (s = bind_vector(m, NAME("attn_output.bias"), d, false, &L->bo)) ||
        (s = bind_vector(m, NAME("post_attention_norm.weight"), d, false, &L->post_attn_norm)) ||
        (s = bind_vector(m, NAME("post_ffw_norm.weight"), d, false, &L->post_ffn_norm)) ||
        (s = bind_vector(m, NAME("ffn_norm.weight"), d, A->ffn_norm, &L->ffn_norm)) ||
        (s = bind_vector(m, NAME("ffn_norm.bias"), d, false, &L->ffn_norm_b)))
      return s;
    if ((L->q_norm == NULL) != (L->k_norm == NULL))
      return tl_fail(TL_ERR_FORMAT, "layer %d has only one of attn_q_norm and attn_k_norm", il);
    if (moe) {
      /* llama.cpp's stacked experts: [cols, rows, n_expert] each, and the router */
      const int32_t ne = hp->n_expert;
      if ((s = bind_matrix(m, NAME("ffn_gate_inp.weight"), d, ne, true, &L->w_gate_inp)) ||
          (s = bind_experts(m, NAME("ffn_gate_exps.weight"), d, ff, ne, &L->w_gate_exps)) ||
          (s = bind_experts(m, NAME("ffn_up_exps.weight"), d, ff, ne, &L->w_up_exps)) ||
          (s = bind_experts(m, NAME("ffn_down_exps.weight"), ff, d, ne, &L->w_down_exps)))
        return s;
      if (!A->gated_ffn || A->parallel)
        return tl_fail(TL_ERR_UNSUPPORTED, "experts in a %s model are not supported", m->arch_name);
      continue;
    }
    if (tl_gguf_find_tensor(m->gguf, NAME("ffn_gate_inp.weight")))
      return tl_fail(TL_ERR_FORMAT,
                     "layer %d has a router (ffn_gate_inp) but %s.expert_count "
                     "is not given",
                     il, m->arch_name);
    if ((s = bind_matrix(m, NAME("ffn_down.weight"), ff, d, true, &L->w_down)) ||
        (s = bind_vector(m, NAME("ffn_down.bias"), d, false, &L->b_down)))
      return s;
    const tl_gguf_tensor *up = tl_gguf_find_tensor(m->gguf, NAME("ffn_up.weight"));
    if (A->gated_ffn && !tl_gguf_find_tensor(m->gguf, NAME("ffn_gate.weight")) && up &&
        up->ne[1] == 2 * (int64_t)ff) {
      /* gate and up fused in ffn_up (Phi-3): gate rows first */
      tl_weight gu = {0};
      if ((s = bind_matrix(m, NAME("ffn_up.weight"), d, 2 * ff, true, &gu))) return s;
      L->w_gate = row_range(&gu, 0, ff);
      L->w_up = row_range(&gu, ff, ff);
    } else {
      if ((s = bind_matrix(m, NAME("ffn_up.weight"), d, ff, true, &L->w_up)) ||
          (s = bind_vector(m, NAME("ffn_up.bias"), ff, false, &L->b_up)))
        return s;
      if (A->gated_ffn && (s = bind_matrix(m, NAME("ffn_gate.weight"), d, ff, true, &L->w_gate)))
        return s;
    }
#undef NAME
  }
  return sliding_layers(m);
}

static const char *size_label(uint64_t n, char *buf, size_t cap) {
  if (n >= 1000000000ull)
    snprintf(buf, cap, "%.1fB", (double)n / 1e9);
  else if (n >= 1000000ull)
    snprintf(buf, cap, "%.0fM", (double)n / 1e6);
  else
    snprintf(buf, cap, "%.0fK", (double)n / 1e3);
  return buf;
}

static tl_status load(tl_model *m, const char *path, const tl_model_params *p) {
  tl_status s;
  if (tl_hf_is_folder(path)) {
    /* a Hugging Face folder; for tokenizing, the tokenizer files suffice */
    if (p->vocab_only) {
      if ((s = tl_gguf_new_virtual(&m->gguf)) || (s = tl_hf_tokenizer_load(m->gguf, path)))
        return s;
    } else if ((s = tl_hf_open(path, &m->gguf))) {
      return s;
    }
  } else if (tl_native_file(path)) { /* Torchless .bin, detected by content */
    if ((s = tl_native_open(path, &m->gguf))) return s;
  } else if ((s = tl_gguf_open(path, &m->gguf))) {
    return s;
  }
  for (const char *const *o = p->kv_overrides; o && *o; o++)
    if ((s = apply_override(m->gguf, *o))) return s;
  tl_str arch;
  if (!tl_gguf_get_str(m->gguf, "general.architecture", &arch)) {
    if (p->vocab_only)
      arch = (tl_str){"tokenizer", 9};
    else
      return tl_fail(TL_ERR_FORMAT, "missing metadata 'general.architecture'");
  }
  if (arch.len == 0 || arch.len >= sizeof m->arch_name)
    return tl_fail(TL_ERR_FORMAT, "invalid general.architecture");
  memcpy(m->arch_name, arch.ptr, arch.len);
  m->arch_name[arch.len] = 0;
  for (size_t i = 0; i < arch.len; i++)
    if ((unsigned char)m->arch_name[i] < 0x20 || (unsigned char)m->arch_name[i] > 0x7e)
      m->arch_name[i] = '?';
  s = tl_vocab_from_gguf(m->gguf, &m->vocab);
  if (s == TL_ERR_UNSUPPORTED && !p->vocab_only) {
    tl_log(TL_LOG_WARN, "%s (the model loads; tokenize text elsewhere and pass token ids)",
           tl_last_error());
    m->vocab = NULL;
  } else if (s) {
    return s;
  }
  if (p->vocab_only) {
    snprintf(m->desc, sizeof m->desc, "%s vocabulary", m->arch_name);
    return TL_OK;
  }
  m->arch = tl_arch_find(arch.ptr, arch.len);
  if (!m->arch) return tl_fail(TL_ERR_UNSUPPORTED, "unknown model architecture '%s'", m->arch_name);
  if ((s = load_hparams(m)) || (s = load_weights(m))) return s;
  if (m->vocab && tl_vocab_n_tokens(m->vocab) != m->hp.n_vocab)
    return tl_fail(TL_ERR_FORMAT, "the tokenizer has %d tokens but the embedding has %d rows",
                   tl_vocab_n_tokens(m->vocab), m->hp.n_vocab);
  m->has_weights = true;
  char sz[32];
  snprintf(m->desc, sizeof m->desc, "%s %s %s", m->arch_name,
           size_label(m->n_params, sz, sizeof sz), tl_type_name(m->layers[0].wq.type));
  return TL_OK;
}

tl_status tl_model_load_as_is(const char *path, const tl_model_params *params, tl_model **out) {
  tl_model *m = calloc(1, sizeof *m);
  if (!m) return tl_fail(TL_ERR_NOMEM, "out of memory");
  m->path = tl_strndup(path, strlen(path));
  tl_status s = load(m, path, params);
  if (!s && params->use_mlock && mlockall(MCL_CURRENT) != 0)
    s = tl_fail(TL_ERR_NOMEM,
                "cannot lock %.1f MiB of weights in memory (%s): raise the limit "
                "(ulimit -l) or run without --mlock",
                (double)m->weight_bytes / (1024.0 * 1024.0), strerror(errno));
  tl_str ct;
  if (!s && m->gguf && tl_gguf_get_str(m->gguf, "tokenizer.chat_template", &ct) && ct.len > 0 &&
      !(m->chat_template = tl_strndup(ct.ptr, (size_t)ct.len)))
    s = tl_fail(TL_ERR_NOMEM, "out of memory");
  if (s) {
    tl_fail_prefix(s, "loading '%s'", path);
    tl_model_free(m);
    return s;
  }
  *out = m;
  return TL_OK;
}

uint64_t tl_model_bytes_absent(const tl_model *m) {
  return m && m->gguf ? tl_mmap_absent(&m->gguf->map) : 0;
}

tl_status tl_model_prefetch(const tl_model *m,
                            bool (*progress)(uint64_t done, uint64_t total, void *user),
                            void *user) {
  if (!m) return tl_fail(TL_ERR_INVALID_ARG, "tl_model_prefetch: model is NULL");
  return m->gguf ? tl_mmap_prefetch(&m->gguf->map, progress, user) : TL_OK;
}

void tl_model_free(tl_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->layers);
  tl_vocab_free(m->vocab);
  tl_gguf_free(m->gguf);
  free(m->path);
  free(m->chat_template);
  free(m);
}

const char *tl_model_arch(const tl_model *m) {
  return m->arch_name;
}
const char *tl_model_desc(const tl_model *m) {
  return m->desc;
}
int32_t tl_model_n_vocab(const tl_model *m) {
  return m->has_weights ? m->hp.n_vocab : (m->vocab ? tl_vocab_n_tokens(m->vocab) : 0);
}
int32_t tl_model_n_ctx_train(const tl_model *m) {
  return m->hp.n_ctx_train;
}
int32_t tl_model_n_layer(const tl_model *m) {
  return m->hp.n_layer;
}
uint64_t tl_model_n_params(const tl_model *m) {
  return m->n_params;
}
uint64_t tl_model_size_bytes(const tl_model *m) {
  return m->weight_bytes;
}
bool tl_model_has_weights(const tl_model *m) {
  return m->has_weights;
}

tl_token tl_token_bos(const tl_model *m) {
  return m->vocab ? tl_vocab_bos(m->vocab) : -1;
}
tl_token tl_token_eos(const tl_model *m) {
  return m->vocab ? tl_vocab_eos(m->vocab) : -1;
}
bool tl_token_is_eog(const tl_model *m, tl_token t) {
  return m->vocab && tl_vocab_is_eog(m->vocab, t);
}
bool tl_model_add_bos(const tl_model *m) {
  return m->vocab && tl_vocab_add_bos(m->vocab);
}

tl_status tl_tokenize(const tl_model *m, const char *text, size_t len, bool add_bos,
                      bool parse_special, tl_token *out, size_t cap, size_t *n_out) {
  if (!m || (!text && len) || !n_out || (!out && cap))
    return tl_fail(TL_ERR_INVALID_ARG, "tl_tokenize: invalid arguments");
  if (!m->vocab)
    return tl_fail(TL_ERR_UNSUPPORTED, "model '%s' has no tokenizer that torchless supports yet",
                   m->path);
  return tl_vocab_tokenize(m->vocab, text, len, add_bos, parse_special, out, cap, n_out);
}

int32_t tl_token_to_piece(const tl_model *m, tl_token t, char *buf, size_t cap) {
  if (!m || !m->vocab) return -1;
  return tl_vocab_piece(m->vocab, t, buf, cap);
}
