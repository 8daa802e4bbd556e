/* The in-memory model: hyper-parameters, architecture traits, weights
 * (views into the mapped file), tokenizer. */
#ifndef TL_MODEL_H
#define TL_MODEL_H

#include "backend/backend.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

typedef enum tl_norm_kind { TL_NORM_RMS = 0, TL_NORM_LAYER = 1 } tl_norm_kind;
/* RoPE pairing: NORM rotates adjacent pairs (x[2i], x[2i+1]) as in GGUF
 * LLaMA files (whose Q/K rows llama.cpp permuted); NEOX rotates the halves
 * (x[i], x[i + n_rot/2]) as Hugging Face's rotate_half. */
typedef enum tl_rope_kind { TL_ROPE_NORM = 0, TL_ROPE_NEOX = 1 } tl_rope_kind;
typedef enum tl_act_kind { TL_ACT_SILU = 0, TL_ACT_GELU_TANH = 1, TL_ACT_GELU = 2 } tl_act_kind;

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
  int swa_default;   /* layers with sliding attention when the file gives no pattern:
                        0 none, 2 even layers (Gemma 2), 6 all but every 6th (Gemma 3) */
} tl_arch;

const tl_arch *tl_arch_find(const char *name, size_t len);

typedef struct tl_hparams {
  int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
  float norm_eps;
  float rope_theta;
  float rope_theta_swa;  /* RoPE base of sliding-window layers (Gemma 3) */
  float rope_freq_scale; /* linear RoPE scaling: positions multiplied by this */
  tl_rope_kind rope_kind;
  float *rope_freq_factors; /* [n_rot/2] divisors of the frequencies (LLaMA 3), or NULL */
  float attn_scale;         /* query scale (1/sqrt(head_dim) unless the model says) */
  float attn_softcap;       /* 0: off */
  float final_softcap;      /* 0: off */
  int32_t swa_window;       /* sliding window length for sliding layers */
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
  /* owned f32 vectors (norms, biases) to free */
  float **owned;
  int n_owned, cap_owned;
};

const tl_vocab *tl_model_vocab(const tl_model *m);

/* Positions per attention tile, and per block of transposed keys in an f16
 * or f32 KV cache (a tile never crosses a block). */
#define TL_ATT_TILE 64

/* The KV cache and scratch for running the decoder. */
struct tl_context {
  tl_model *model;
  int32_t n_ctx, n_seq, n_batch, n_threads;
  int32_t kv_ctx; /* cached positions per head: n_ctx rounded up to a whole block */
  tl_kv_type kv_type;
  /* bytes of one cached position (n_head_kv * head_dim values in kv_type:
   * f32, f16, or Q8_0 blocks of 32 along each head) and of one head's slice */
  size_t kv_row_bytes, kv_head_bytes;
  /* [n_layer][n_seq][n_head_kv][kv_ctx] positions of kv_head_bytes each. Values
   * are rows (position-major). Keys are rows too in a Q8_0 cache (blocks of 32
   * along the head); in an f16 or f32 cache they are transposed in blocks of
   * TL_ATT_TILE positions: value d of position j at element
   * (j - j % TL_ATT_TILE) * head_dim + d * TL_ATT_TILE + j % TL_ATT_TILE. */
  void *k_cache, *v_cache;
  int32_t *seq_len; /* cached positions per sequence */
  tl_pool *pool;
  const tl_cpu_kernels *kernels;
  /* scratch for n_batch tokens */
  float *x, *xn, *xb, *q, *k, *v, *att, *ffn_a, *ffn_b;
  float *att_scratch; /* per thread: K and V tiles, scores, running max and sum */
  size_t att_scratch_per_thread;
  float *att_rates; /* per thread: attention work (query heads x positions) per ns, smoothed */
  int att_tile; /* positions per tile: TL_ATT_TILE, or TL_ATT_TILE=n from the environment (tests) */
  /* logits of the requested tokens */
  float *logits;
  int32_t n_logits;
  int32_t logits_cap;
};

/* Run the decoder on up to n_batch tokens; fills ctx->logits for the tokens
 * with want_logits[i] != 0 (in order). */
tl_status tl_forward(tl_context *ctx, int32_t n, const tl_token *tokens, const int32_t *pos,
                     const int32_t *seq, const int8_t *want_logits, float *logits_out);

#endif
