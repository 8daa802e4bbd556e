/* The in-memory model: hyper-parameters, architecture traits, weights
 * (views into the mapped file), tokenizer. */
#ifndef TL_MODEL_H
#define TL_MODEL_H

#include "backend/backend.h"
#include "quant/quant.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

/* One row of traits per architecture; forward.c applies them. Optional
 * tensors (biases, q/k norms, post norms, fused QKV) are used whenever the
 * file has them, so only what changes the computation is a trait. */
typedef struct tl_arch {
  const char *name;
  tl_norm_kind norm;
  tl_act_kind act;
  bool gated_ffn;    /* act(gate(x)) * up(x), else act(up(x)) */
  tl_rope_kind rope; /* pairing used by llama.cpp's GGUF files of this arch */
  bool parallel;     /* attention and MLP both read one norm of x (Phi-2) */
  bool embd_scale;   /* embeddings times sqrt(n_embd) (Gemma) */
  bool ffn_norm;     /* has a separate pre-MLP norm (all but Phi-2) */
  /* Sliding-window layers when the file gives no pattern: with a period p,
   * layer i slides unless (i + 1) % p == 0 (2: the even layers, Gemma 2; 6:
   * five of every six, Gemma 3); 0: every layer when the file gives a
   * window (Mistral), else none. */
  int swa_period;
  /* sliding layers use their own RoPE base (rope.freq_base_swa; Gemma 3) */
  bool swa_rope_base;
  /* Query scale default 1/sqrt(n_embd / n_head) instead of 1/sqrt(head_dim)
   * for the variant with this many layers, where llama.cpp's files carry no
   * attention.scale (Gemma 2 27B: 46, Gemma 3 27B: 62); the file's
   * attention.scale, or an override of it, wins. 0: none. */
  int scale_by_embd_layers;
  /* Mixture of experts: whether the router's top-k weights are divided by
   * their sum when the file does not say (<arch>.expert_weights_norm). A
   * layer is sparse when the file has its router (ffn_gate_inp). */
  bool moe_norm;
} tl_arch;

const tl_arch *tl_arch_find(const char *name, size_t len);

typedef struct tl_hparams {
  int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
  float norm_eps;
  float rope_theta;
  float rope_theta_swa;  /* RoPE base of sliding-window layers (Gemma 3) */
  float rope_freq_scale; /* linear RoPE scaling: positions multiplied by this */
  /* YaRN (rope.scaling.type "yarn"): factor > 0 turns it on; folded at load
   * into rope_freq_factors and attn_scale */
  float yarn_factor, yarn_ext, yarn_attn, yarn_beta_fast, yarn_beta_slow;
  int32_t yarn_orig_ctx;
  tl_rope_kind rope_kind;
  float *rope_freq_factors; /* [n_rot/2] divisors of the frequencies (LLaMA 3), or NULL */
  float attn_scale;         /* query scale (1/sqrt(head_dim) unless the model says) */
  float attn_softcap;       /* 0: off */
  float final_softcap;      /* 0: off */
  int32_t swa_window;       /* sliding window length for sliding layers */
  /* mixture of experts (n_expert 0: a dense model): n_expert_used experts
   * of n_ff_exp per token, their weights renormalized when expert_norm */
  int32_t n_expert, n_expert_used, n_ff_exp;
  bool expert_norm;
} tl_hparams;

typedef struct tl_layer {
  float *attn_norm, *attn_norm_b;
  float *ffn_norm, *ffn_norm_b;
  float *post_attn_norm, *post_ffn_norm; /* Gemma 2/3 */
  float *q_norm, *k_norm;                /* per-head RMS norms (Qwen 3, Gemma 3) */
  tl_weight wq, wk, wv, wo;              /* views; with a fused QKV tensor, row ranges of it */
  float *bq, *bk, *bv, *bo;
  tl_weight w_gate, w_up, w_down;
  float *b_up, *b_down;
  /* mixture of experts: the router [n_expert][n_embd] and the experts
   * stacked (rows n_expert * n_ff_exp, or n_expert * n_embd for down) */
  tl_weight w_gate_inp, w_gate_exps, w_up_exps, w_down_exps;
  int32_t window; /* 0: full attention, else sliding window length */
  float rope_theta;
} tl_layer;

struct tl_model {
  char *path;
  char desc[128];
  char arch_name[64];
  const tl_arch *arch;
  tl_hparams hp;
  tl_gguf *gguf;
  tl_vocab *vocab;
  bool has_weights;
  tl_weight tok_embd;
  tl_weight output;
  float *output_b;
  float *output_norm, *output_norm_b;
  tl_layer *layers;
  uint64_t n_params;
  uint64_t weight_bytes;
  /* tokenizer.chat_template, NUL-terminated (NULL: none or empty) */
  char *chat_template;
  /* owned f32 vectors (norms, biases) to free */
  float **owned;
  int n_owned, cap_owned;
};

const tl_vocab *tl_model_vocab(const tl_model *m);

/* A model's weights as one backend sees them (a copy of the model's views
 * with each tensor replaced by the backend's: tl_backend.prepare_*). */
typedef struct tl_weights {
  tl_weight tok_embd, output;
  const float *output_b, *output_norm, *output_norm_b;
  const float *rope_freqs; /* hp.rope_freq_factors, or NULL */
  tl_layer *layers;        /* [n_layer], owned */
} tl_weights;

/* A context: the backend (which owns the KV cache, threads and compute),
 * the activation buffers in its memory, and what the model level keeps of
 * the cache (each sequence's length). */
/* One backend's share of a context: the layers [l0, l1) (w.layers[i] is
 * layer l0 + i, and the backend's KV cache numbers them from 0), the token
 * embedding on the first part, the output head on the last, and the
 * activation buffers for n_batch tokens in the backend's memory. */
typedef struct tl_part {
  tl_backend *be;
  int32_t l0, l1;
  tl_weights w;
  float *x, *xn, *xb, *q, *k, *v, *att, *ffn_a, *ffn_b;
  /* mixture of experts: router logits [n_batch][n_expert], the choice
   * (ids as int32) and weights [n_batch][n_expert_used] */
  float *moe_logits, *moe_w;
  int32_t *moe_ids;
  float *logits_dev; /* the wanted rows' logits (last part) */
  int32_t logits_dev_cap;
} tl_part;

struct tl_context {
  tl_model *model;
  int32_t n_ctx, n_seq, n_batch, n_threads;
  tl_kv_type kv_type;
  tl_backend *be; /* part[0].be: the backend the context was asked for */
  /* one part, or two with n_gpu_layers: a GPU backend's layers first, then
   * the CPU's with the output head; the residual stream crosses once per
   * step through handoff (host memory, n_batch rows) */
  tl_part part[2];
  int32_t n_part;
  float *handoff;
  int32_t *seq_len;  /* cached positions per sequence */
  int32_t *out_rows; /* [n_batch]: a step's rows whose logits are wanted */
  bool (*abort_cb)(void *user);
  void *abort_user;
  bool low_mem;             /* tl_context_params.low_mem */
  struct tl_lowmem *lowmem; /* its weight streaming (model/lowmem.c), or NULL */
  /* logits of the requested tokens, on the host */
  float *logits;
  int32_t n_logits;
  int32_t logits_cap;
  /* the last batch's position -> logits row (-1: none requested) */
  int32_t *row_of;
  int32_t row_cap, n_last;
};

/* The context's backend. */
const tl_backend *tl_context_get_backend(const tl_context *c);

/* Run the decoder on up to n_batch tokens; fills ctx->logits for the tokens
 * with want_logits[i] != 0 (in order). */
tl_status tl_forward(tl_context *ctx, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out);

#endif
